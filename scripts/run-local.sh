#!/usr/bin/env bash
# Runs the whole pedidos mesh locally: the broker (started, and installed, if none is listening),
# then the daemons of scripts/lib/daemons.txt (api, fraud, notification, monitoring) with labelled
# output, and writes ops/prometheus/targets.json for a local Prometheus. Ctrl-C stops everything.
#
#   ./scripts/run-local.sh                  # debug build, Apache Kafka (needs Java 17 and Maven)
#   ./scripts/run-local.sh --release        # optimised build
#   ./scripts/run-local.sh --broker noida   # noida-db instead: a light stand-in for machines
#                                           # without Java (not the reference broker)
#
# The local Apache Kafka node keeps its data in .kafka/ (noida-db's in .noida-db/) across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/daemons.sh
. scripts/lib/daemons.sh

profile=debug
cargo_flags=()
broker_kind=kafka
while (($#)); do
  case $1 in
    --release)
      profile=release
      cargo_flags=(--release)
      ;;
    --broker)
      broker_kind=${2:-}
      shift
      ;;
    *)
      printf 'usage: %s [--release] [--broker kafka|noida]\n' "$0" >&2
      exit 2
      ;;
  esac
  shift
done
[[ $broker_kind == kafka || $broker_kind == noida ]] || {
  printf 'run-local: --broker is kafka or noida, not "%s"\n' "$broker_kind" >&2
  exit 2
}

bootstrap="${PEDIDOS_KAFKA__BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
first="${bootstrap%%,*}"
broker_host="${first%:*}"
broker_port="${first##*:}"
api_listen="${PEDIDOS_API__LISTEN:-127.0.0.1:8000}"

say() { printf '\033[1m[run-local]\033[0m %s\n' "$*" >&2; }

reachable() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Prefix every line of a process's output with its name, in a colour of its own.
# The labeller ignores Ctrl-C so it outlives the daemons and shows their last words.
label() {
  local name=$1 colour=$2
  trap '' INT
  sed -u "s/^/$(printf '\033[%sm%-12s\033[0m' "$colour" "[$name]") /"
}

pids=()
broker_pid=""
stopping=0
# $1 = the signal to send the daemons: none after a Ctrl-C (the terminal already sent them
# SIGINT, and a second signal would make them quit without finishing their work).
stop_all() {
  [[ $stopping == 1 ]] && return
  stopping=1
  local signal=${1:-TERM}
  say "stopping daemons..."
  if [[ $signal != none ]]; then
    for pid in "${pids[@]}"; do kill -"$signal" "$pid" 2>/dev/null || true; done
  fi
  for _ in $(seq 1 300); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive == 0 ]] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      say "pid $pid still running after 30 s; forcing it"
      kill -TERM "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$broker_pid" ]]; then
    say "stopping the local broker (data kept in .$broker_kind/)"
    if [[ $broker_kind == kafka ]]; then
      scripts/kafka.sh stop "$broker_pid"
    else
      kill -TERM "$broker_pid" 2>/dev/null || true
      wait "$broker_pid" 2>/dev/null || true
    fi
  fi
  say "all stopped"
}
trap 'stop_all none; exit 0' INT
trap 'stop_all TERM; exit 0' TERM
trap 'stop_all' EXIT

if reachable "$broker_host" "$broker_port"; then
  say "using the Kafka broker already listening on $broker_host:$broker_port"
else
  if [[ "$broker_host" != "127.0.0.1" && "$broker_host" != "localhost" ]]; then
    say "no broker reachable at $first, and it is not local: check conf.toml / PEDIDOS_KAFKA__BOOTSTRAP_SERVERS"
    exit 1
  fi
  if [[ $broker_kind == kafka ]]; then
    scripts/kafka.sh install >/dev/null
    say "starting Apache Kafka on 127.0.0.1:$broker_port (controller :$((broker_port + 1))), data and log in .kafka/"
    # Its own session (kafka.sh start uses setsid): a Ctrl-C must reach the daemons first, the
    # broker last.
    broker_pid=$(scripts/kafka.sh start --dir .kafka --port "$broker_port" \
      --controller-port "$((broker_port + 1))" | tail -n 1) || {
      say "the broker did not start; see .kafka/kafka.log"
      exit 1
    }
  else
    noida=$(scripts/install-noida.sh | tail -n 1)
    say "starting the local broker (noida-db) on 127.0.0.1:$broker_port, data in .noida-db/"
    setsid "$noida" start --only kafka --host 127.0.0.1 --kafka-port "$broker_port" --data-dir .noida-db \
      > >(label broker 90) 2>&1 &
    broker_pid=$!
    for _ in $(seq 1 100); do reachable 127.0.0.1 "$broker_port" && break; sleep 0.1; done
    reachable 127.0.0.1 "$broker_port" || { say "the broker did not start"; exit 1; }
  fi
fi

say "building the daemons ($profile)..."
mapfile -t packages < <(daemon_packages)
cargo build "${cargo_flags[@]}" "${packages[@]}" --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
bin="$target_dir/$profile"

export PEDIDOS_KAFKA__BOOTSTRAP_SERVERS="$bootstrap"
# What a local Prometheus scrapes (ops/prometheus/prometheus.yml reads it).
prometheus_targets >ops/prometheus/targets.json

# The API first (DAEMONS' order): it creates the topics; the others then find them.
for name in "${DAEMONS[@]}"; do
  "$bin/$name" > >(label "$name" "${DAEMON_COLOUR[$name]}") 2>&1 &
  pids+=($!)
  [[ $name == api ]] || continue
  for _ in $(seq 1 300); do
    curl -fsS "http://$api_listen/health" >/dev/null 2>&1 && break
    kill -0 "${pids[0]}" 2>/dev/null || { say "the API exited; see its output above"; exit 1; }
    sleep 0.1
  done
done

say "mesh running. Swagger UI: http://$api_listen/docs   (Ctrl-C stops everything)"
say "try: curl -X POST http://$api_listen/pedidos -H 'content-type: application/json' -d '{\"usuario\":\"ana\",\"produto\":\"livro\",\"quantidade\":1,\"valor\":39.90}'"

# Exit when any daemon dies, so a failure is not hidden behind the others' output.
while :; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      [[ $stopping == 1 ]] && exit 0
      say "a daemon (pid $pid) exited; stopping the others"
      exit 1
    fi
  done
  # `wait` (unlike a foreground sleep) is interrupted by Ctrl-C, so the trap runs at once.
  sleep 1 &
  wait $! || true
done
