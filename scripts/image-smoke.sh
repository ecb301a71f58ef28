#!/usr/bin/env bash
# Smoke test of the images scripts/images.sh built: each daemon's image runs as a container
# (buildah from + buildah run: chroot isolation, the host's network) against an Apache Kafka node
# of its own (scripts/kafka.sh, on free ports), and
#   - each image's entry point, read from the image, is the daemon it names; its label carries
#     the version the binary's --version prints; the process runs as the image's user (10001);
#   - the API image with its defaults (0.0.0.0, api.auth = "none") refuses to start without
#     api.allow_anonymous, naming it;
#   - every container answers /ready; an order posted to the containerised API gets its verdict
#     from the containerised fraud (GET ?wait), notification and monitoring count it, and the
#     API's SQLite file is on the mounted volume;
#   - each container stops on SIGTERM with exit status 0 within 30 s.
# buildah run does not pass signals on, so SIGTERM goes to the container's main process, as a
# container runtime's stop does. The admin ports are free ports on 0.0.0.0 (not the images'
# defaults, which a mesh already running on this machine may hold).
#
# Usage: scripts/image-smoke.sh        (after scripts/images.sh; root)
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
. scripts/lib/daemons.sh
. scripts/lib/buildah.sh
. scripts/lib/images.sh

log() { printf 'image-smoke.sh: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}
((EUID == 0)) || die "buildah runs the containers as root here; run as root"
for daemon in "${DAEMONS[@]}"; do
  bh_has_image "$(image_name "$daemon")" || die "no image $(image_name "$daemon"): run scripts/images.sh"
done

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

work=$(mktemp -d "${TMPDIR:-/tmp}/pedidos-image-smoke.XXXXXX")
broker_pid=''
declare -A run_pid=() container=()
cleanup() {
  local status=$? daemon pid
  set +e
  # Only what this script started, by pid: the containers' main processes, then the broker.
  for daemon in "${!run_pid[@]}"; do
    pid=$(main_pid "$daemon")
    [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
    wait "${run_pid[$daemon]}" 2>/dev/null
  done
  for daemon in "${!container[@]}"; do bh rm "${container[$daemon]}" >/dev/null 2>&1; done
  [[ -n $broker_pid ]] && scripts/kafka.sh stop "$broker_pid" >/dev/null
  if ((status != 0)); then
    for daemon in "${DAEMONS[@]}"; do
      if [[ -s $work/$daemon.log ]]; then
        log "last lines of $daemon's container:"
        tail -n 15 -- "$work/$daemon.log" >&2
      fi
    done
  fi
  rm -rf -- "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# main_pid DAEMON: the pid of the daemon's binary under its `buildah run` (empty when gone).
main_pid() {
  local root=${run_pid[$1]:-} pids pid
  [[ -n $root ]] || return 0
  pids=("$root")
  while ((${#pids[@]})); do
    pid=${pids[0]}
    pids=("${pids[@]:1}")
    if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]]; then
      printf '%s\n' "$pid"
      return 0
    fi
    # shellcheck disable=SC2207 # pids are words
    pids+=($(cat "/proc/$pid/task/"*/children 2>/dev/null))
  done
}

# entrypoint_and_version DAEMON: the image's entry point (one line) and its version label.
entrypoint_and_version() {
  bh inspect --type image "$(image_name "$1")" | python3 -c '
import json, sys
config = json.load(sys.stdin)["OCIv1"]["config"]
print(" ".join(config.get("Entrypoint") or []))
print((config.get("Labels") or {}).get("org.opencontainers.image.version", ""))'
}

kafka_port=$(free_port)
scripts/kafka.sh install >/dev/null
broker_pid=$(scripts/kafka.sh start --dir "$work/broker" --port "$kafka_port" \
  --controller-port "$(free_port)" | tail -n 1) || die "the broker did not start"
log "broker on 127.0.0.1:$kafka_port (pid $broker_pid)"

declare -A port=() entrypoint=()
for daemon in "${DAEMONS[@]}"; do
  container[$daemon]=$(bh from --pull=never --name "pedidos-smoke-$daemon-$$" "$(image_name "$daemon")")
  port[$daemon]=$(free_port)
  { read -r entrypoint[$daemon] && read -r label; } < <(entrypoint_and_version "$daemon")
  [[ ${entrypoint[$daemon]} == "/usr/local/bin/$daemon" ]] ||
    die "$(image_name "$daemon")'s entry point is '${entrypoint[$daemon]}', not /usr/local/bin/$daemon"
  version=$(bh run "${container[$daemon]}" -- "${entrypoint[$daemon]}" --version) ||
    die "$(image_name "$daemon"): ${entrypoint[$daemon]} --version does not run (status $?)"
  [[ $version == "$daemon $label" ]] ||
    die "$(image_name "$daemon"): --version prints '$version', the label says $label"
done
log "entry points, --version and labels agree ($PEDIDOS_VERSION)"

# The API image's own defaults: every interface, no authentication: refused unless meant.
set +e
refusal=$(bh run --env "PEDIDOS_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port" "${container[api]}" -- \
  "${entrypoint[api]}" 2>&1)
status=$?
set -e
((status != 0)) && grep -q allow_anonymous <<<"$refusal" ||
  die "the API image started anonymous on 0.0.0.0 without api.allow_anonymous (status $status): $refusal"
log "the API image refuses api.auth = \"none\" on 0.0.0.0 without api.allow_anonymous (exit $status)"

# The API's order view on a volume, owned by the image's user, as a named volume would be.
install -d -o 10001 -g 10001 "$work/api-data"
for daemon in "${DAEMONS[@]}"; do
  args=(--env "PEDIDOS_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$kafka_port"
    --env "$(daemon_env_var "$daemon")=0.0.0.0:${port[$daemon]}" --env RUST_LOG=info)
  if [[ $daemon == api ]]; then
    args+=(--env PEDIDOS_API__ALLOW_ANONYMOUS=true --volume "$work/api-data:/var/lib/pedidos")
  fi
  bh run "${args[@]}" "${container[$daemon]}" -- "${entrypoint[$daemon]}" >"$work/$daemon.log" 2>&1 &
  run_pid[$daemon]=$!
done

for daemon in "${DAEMONS[@]}"; do
  for ((i = 0; i < 600; i++)); do
    if [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[$daemon]}/ready") == 200 ]]; then break; fi
    kill -0 "${run_pid[$daemon]}" 2>/dev/null || die "$daemon's container exited before it was ready"
    sleep 0.1
  done
  ((i < 600)) || die "$daemon's container not ready within 60 s"
  pid=$(main_pid "$daemon")
  uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
  ((uid == 10001)) || die "$daemon runs as uid $uid, not the image's 10001"
done
log "all four containers ready, each as uid 10001"

api=http://127.0.0.1:${port[api]}
order=$(curl -sf -X POST "$api/pedidos" -H 'content-type: application/json' \
  -d '{"usuario":"ana","produto":"livro","quantidade":2,"valor":19.90}') || die "POST /pedidos failed"
id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["id"])' "$order")
answer=$(curl -sf "$api/pedidos/$id?wait=20") || die "GET /pedidos/$id failed"
verdict=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$answer")
[[ $verdict == Aprovado || $verdict == Recusado ]] || die "order $id has status $verdict after 20 s: $answer"
log "order $id: $verdict, decided by the fraud container"

# notification and monitoring saw it: their counters, as Prometheus would scrape them.
metric() {
  curl -sf "http://127.0.0.1:${port[$1]}/metrics" |
    awk -v name="$2" '$1 ~ "^"name"({|$)" { sum += $2 } END { print sum + 0 }'
}
for ((i = 0; i < 100; i++)); do
  sent=$(metric notification pedidos_notifications_sent_total)
  audited=$(metric monitoring pedidos_audit_lines_written_total)
  if ((${sent%.*} >= 2 && ${audited%.*} >= 4)); then break; fi
  sleep 0.1
done
((${sent%.*} >= 2)) || die "notification told $sent status changes, expected the order's 2"
((${audited%.*} >= 4)) || die "monitoring audited $audited records, expected at least 4"
[[ -s $work/api-data/pedidos-api.db ]] || die "no SQLite file on the API's volume"
log "notification told $sent changes, monitoring audited $audited records, the view is on the volume"

# SIGTERM, each in turn: a graceful stop within 30 s, exit status 0.
for daemon in "${DAEMONS[@]}"; do
  pid=$(main_pid "$daemon")
  [[ -n $pid ]] || die "$daemon's process is gone before SIGTERM"
  start=$SECONDS
  kill -TERM "$pid"
  for ((i = 0; i < 300; i++)); do
    kill -0 "${run_pid[$daemon]}" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "${run_pid[$daemon]}" 2>/dev/null && die "$daemon still running 30 s after SIGTERM"
  set +e
  wait "${run_pid[$daemon]}"
  status=$?
  set -e
  unset "run_pid[$daemon]"
  ((status == 0)) || die "$daemon exited with status $status on SIGTERM"
  log "$daemon stopped on SIGTERM in $((SECONDS - start)) s, exit 0"
done
log "smoke test passed"
