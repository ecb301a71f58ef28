#!/usr/bin/env bash
# The pedidos benchmark, in one command, on private Apache Kafka nodes: each measured run gets a
# fresh, empty single-node KRaft cluster (broker + controller in one JVM, `scripts/kafka.sh run`)
# in a new temp dir on free ports, stopped with SIGTERM when the run is over.
#
#   1. the broker's raw capacity for the mesh's records (`loadgen raw`: ~250-byte JSON keyed by
#      customer, the daemons' producer settings, 3 partitions): produced, consumed back, and put
#      through the mesh's shape with no daemons (the "pipeline": per order 4 records produced by
#      2 producers and 7 consumed by 3 consumers, live) — the capacity the mesh is compared with;
#   2. the idle mesh (api + fraud + notification + monitoring, release builds, RUST_LOG=warn):
#      each daemon's RSS after start-up, and the CPU of each daemon and of the broker over
#      IDLE_SECS without traffic; then the mesh driven by loadgen at full speed;
#   3. the mesh at a fixed RATE orders/s, for latency (p50/p99 POST → verdict);
#   4. (INFO_RUN=1, the default) the full-speed run again with the daemons at RUST_LOG=info.
#
# BENCH_PHASES picks some of them (raw, max, rate, info; e.g. BENCH_PHASES=max for the idle mesh
# and the full-speed run alone); the report then has those sections and targets only, and is
# written nowhere unless BENCH_OUT is set. BENCH_AUTH=jwt runs the API with api.auth = "jwt" and
# an HS256 secret generated for the run (never printed), and loadgen sends an operator token
# minted with `loadgen token bench --ops` (LOADGEN_TOKEN): the cost of verifying a token per order.
# Each mesh gets a new, empty order store: BENCH_STORE=sqlite (the default, a file in the temp
# dir) or BENCH_STORE=postgres (a PostgreSQL server of the bench's own, Debian's `postgresql`
# package, one database per mesh). BENCH_GETS=1 has loadgen GET every order right after its 202
# (`--get-after-202`): the GET's latency under load, and whether any was not found.
#
# It reports the CPU each process used during every run, checks the targets (end-to-end ≥ 25 % of
# the pipeline's capacity; p99 POST → verdict ≤ 25 ms at 1,000 orders/s; the four idle daemons
# ≤ 2 % of one core together; idle RSS ≤ 30 MB per daemon), and writes the figures between the
# `bench:begin` / `bench:end` markers of BENCHMARKS.md (BENCH_OUT= to skip, or another path).
#
# Usage: scripts/bench.sh [--short]
#   --short  a quick check that the script works end to end (about a minute after the build):
#            small runs, no info run, figures printed but not written anywhere unless BENCH_OUT
#            is set. Its figures are not comparable with a full run's.
# Environment, with the defaults (--short's in brackets):
#   RAW_RECORDS=200000 [20000]  PIPELINE_UNITS=50000 [5000]  MAX_SECS=20 [3]  RATE_SECS=20 [3]
#   IDLE_SECS=30 [5]  WARM_SECS=5 [1]  CONCURRENCY=64  RATE=1000  INFO_RUN=1 [0]
#   BROKER_HEAP=512m  BENCH_OUT=BENCHMARKS.md [unset]  KEEP=0 (1: keep the temp dir: logs, JSON,
#   the brokers' data)  BENCH_PHASES="raw max rate info"  BENCH_AUTH=none (or jwt)
#   BENCH_STORE=sqlite (or postgres)  BENCH_GETS=0 (or 1)
# Needs Java 17+ (and Maven the first time, to fetch Kafka: see scripts/kafka.sh), Python 3, curl.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)

log() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'bench: error: %s\n' "$*" >&2
  exit 1
}

SHORT=0
while (($#)); do
  case $1 in
    --short) SHORT=1 ;;
    -h | --help)
      sed -n '2,/^set -euo/{/^set -euo/d; s/^# \{0,1\}//; p}' "$0"
      exit 0
      ;;
    *) die "unknown argument $1 (usage: scripts/bench.sh [--short])" ;;
  esac
  shift
done
# pick FULL SHORT: this mode's default.
pick() { if [[ $SHORT == 1 ]]; then printf '%s' "$2"; else printf '%s' "$1"; fi; }

RAW_RECORDS=${RAW_RECORDS:-$(pick 200000 20000)}
PIPELINE_UNITS=${PIPELINE_UNITS:-$(pick 50000 5000)}
MAX_SECS=${MAX_SECS:-$(pick 20 3)}
RATE_SECS=${RATE_SECS:-$(pick 20 3)}
IDLE_SECS=${IDLE_SECS:-$(pick 30 5)}
WARM_SECS=${WARM_SECS:-$(pick 5 1)}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-1000}
INFO_RUN=${INFO_RUN:-$(pick 1 0)}
BROKER_HEAP=${BROKER_HEAP:-512m}
KEEP=${KEEP:-0}
BENCH_AUTH=${BENCH_AUTH:-none}
[[ $BENCH_AUTH == none || $BENCH_AUTH == jwt ]] || die "BENCH_AUTH must be none or jwt, not ${BENCH_AUTH@Q}"
BENCH_STORE=${BENCH_STORE:-sqlite}
[[ $BENCH_STORE == sqlite || $BENCH_STORE == postgres ]] || die "BENCH_STORE must be sqlite or postgres, not ${BENCH_STORE@Q}"
BENCH_GETS=${BENCH_GETS:-0}
GET_FLAG=()
[[ $BENCH_GETS == 1 ]] && GET_FLAG=(--get-after-202)
export BENCH_STORE BENCH_GETS
ALL_PHASES="raw max rate info"
BENCH_PHASES=${BENCH_PHASES:-$ALL_PHASES}
BENCH_PHASES=${BENCH_PHASES//,/ }
for phase in $BENCH_PHASES; do
  [[ " $ALL_PHASES " == *" $phase "* ]] || die "unknown phase ${phase@Q} in BENCH_PHASES (raw, max, rate, info)"
done
has_phase() { [[ " $BENCH_PHASES " == *" $1 "* ]]; }
# Some phases only: their figures are no replacement for BENCHMARKS.md's full block.
if [[ $BENCH_PHASES != "$ALL_PHASES" ]]; then
  BENCH_OUT=${BENCH_OUT-}
else
  BENCH_OUT=${BENCH_OUT-$(pick BENCHMARKS.md "")}
fi
# A start takes 5-10 s on an idle machine; far longer when other jobs hold the cores.
BROKER_START_SECS=120
DAEMONS=(api fraud notification monitoring)

# ---------------------------------------------------------------------------------------------
# Processes. Every process this script starts is in PIDS (name -> pid); cleanup stops them all,
# on any exit. Long commands run in the background and are waited for, because bash runs a trap
# only once the foreground command has finished.
WORK=$(mktemp -d /tmp/pedidos-bench.XXXXXX)
cut -d' ' -f1-3 /proc/loadavg >"$WORK/loadavg-start"
{ git rev-parse --short HEAD && git status --porcelain --untracked-files=no | wc -l; } >"$WORK/commit" 2>/dev/null || true
declare -A PIDS=()

spawn() { # spawn NAME CMD...: start CMD in the background as PIDS[NAME]
  local name=$1
  shift
  "$@" &
  PIDS[$name]=$!
}

await() { # await NAME: wait for PIDS[NAME] to end; its exit status
  local rc=0
  wait "${PIDS[$1]}" || rc=$?
  unset "PIDS[$1]"
  return "$rc"
}

pause() { # pause SECONDS: a sleep that a signal interrupts at once
  spawn sleep sleep "$1"
  await sleep
}

# stop_pid NAME [SECONDS]: SIGTERM, wait (15 s by default), then SIGKILL. A process that leads
# its own process group (the broker) is signalled with the whole group, so that nothing it
# started (kafka.sh's formatting JVM, if stopped that early) outlives it.
stop_pid() {
  local name=$1 secs=${2:-15} pid=${PIDS[$1]:-} target i
  [[ -n $pid ]] || return 0
  target=$pid
  [[ $(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ') == "$pid" ]] && target=-$pid
  kill -TERM -- "$target" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 -- "$target" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 -- "$target" 2>/dev/null; then
    printf 'bench: %s did not stop within %s s after SIGTERM; killing it\n' "$name" "$secs" >&2
    kill -KILL -- "$target" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

stop_mesh() {
  local name
  for name in loadgen monitoring notification fraud api; do stop_pid "$name"; done
}

# A broker stops in 1-2 s; the daemons go first, as they commit offsets on the way out.
stop_broker() { stop_pid broker 60; }

cleanup() {
  trap '' INT TERM # a second Ctrl-C must not cut the cleanup short and leave a JVM behind
  stop_pid sleep
  # Stopped, loadgen would wait up to 10 s for outstanding verdicts; its report is of no use now.
  kill -KILL "${PIDS[loadgen]:-}" 2>/dev/null || true
  stop_mesh
  stop_broker
  stop_postgres
  if [[ $KEEP == 1 ]]; then
    printf 'bench: logs and JSON kept in %s\n' "$WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Measuring processes through /proc.
free_ports() { # free_ports N: N distinct free TCP ports on 127.0.0.1
  python3 -c '
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU ticks (user + system, fields 14 and 15) used so far by a process and all its threads.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

procs_json() { # procs_json FUNC NAME...: {"NAME": FUNC(pid of NAME), ...}
  local func=$1 name sep=
  shift
  printf '{'
  for name; do
    printf '%s"%s": %s' "$sep" "$name" "$("$func" "${PIDS[$name]}")"
    sep=', '
  done
  printf '}\n'
}

# Nanoseconds on a CPU so far, summed over the live threads of a process (schedstat: exact,
# where tick sampling over-charges a thread that wakes on the timer tick, as an idle one does;
# but the time of threads that exited is lost, so this is for the idle measurement only).
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f\n", s }'; }

# cpu_snapshot [NAME=TICKS...]: the time and the CPU ticks used so far by every process running
# (plus the given ones), as JSON; the report turns two snapshots into cores used in between.
# CPU_CLOCK=ns measures with cpu_ns instead of ticks.
cpu_snapshot() {
  local name pair sep= measure=cpu_ticks tck
  tck=$(getconf CLK_TCK)
  if [[ ${CPU_CLOCK:-ticks} == ns ]]; then measure=cpu_ns tck=1000000000; fi
  printf '{"t": %s, "clk_tck": %s, "ticks": {' "$(date +%s.%N)" "$tck"
  for name in "${!PIDS[@]}"; do
    [[ $name == sleep ]] && continue
    printf '%s"%s": %s' "$sep" "$name" "$("$measure" "${PIDS[$name]}")"
    sep=', '
  done
  for pair; do
    printf '%s"%s": %s' "$sep" "${pair%%=*}" "${pair#*=}"
    sep=', '
  done
  printf '}}\n'
}

# ---------------------------------------------------------------------------------------------
log "building release binaries"
cargo build --release --quiet -p api -p fraud -p notification -p monitoring -p loadgen
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/release
LOADGEN=$BIN/loadgen

KAFKA_SH=$ROOT/scripts/kafka.sh
"$KAFKA_SH" install >/dev/null # fetches the jars the first time; fails with the reason

# BENCH_AUTH=jwt: one configuration for the whole mesh, as in a deployment, in the environment
# (never on a command line, where `ps` would show it); loadgen's token minted once from it, and
# checked below against the API before anything is measured.
if [[ $BENCH_AUTH == jwt ]]; then
  PEDIDOS_API__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  export PEDIDOS_API__AUTH=jwt PEDIDOS_API__JWT_SECRET
  LOADGEN_TOKEN=$(cd "$WORK" && "$LOADGEN" token bench --ops --ttl-secs 21600) || die "loadgen token failed"
  export LOADGEN_TOKEN
fi

# BENCH_STORE=postgres: one server for the whole bench, in $WORK/postgres on a free port, run as
# the `postgres` user when the bench runs as root (PostgreSQL refuses root); one database per mesh.
PG_BIN='' PG_PORT=''
as_pg() { if ((EUID == 0)); then setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; else "$@"; fi; }
start_postgres() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [[ -x $PG_BIN/initdb ]] || die "BENCH_STORE=postgres: no PostgreSQL server found; install Debian's postgresql package"
  read -r PG_PORT < <(free_ports 1)
  mkdir -p "$WORK/postgres"
  ((EUID == 0)) && chown postgres: "$WORK/postgres" && chmod o+x "$WORK"
  as_pg "$PG_BIN/initdb" -D "$WORK/postgres/data" -U pedidos --auth=trust >"$WORK/postgres/initdb.log" 2>&1 ||
    die "initdb failed: see $WORK/postgres/initdb.log"
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/postgres/data" -l "$WORK/postgres/server.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=" start >/dev/null ||
    die "PostgreSQL did not start: see $WORK/postgres/server.log"
  log "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
}
stop_postgres() {
  [[ -n $PG_PORT ]] || return 0
  as_pg "$PG_BIN/pg_ctl" -D "$WORK/postgres/data" -m fast -w stop >/dev/null 2>&1 || true
  PG_PORT=''
}
# store_url TAG: a new, empty order store for the mesh TAG.
store_url() {
  if [[ $BENCH_STORE == postgres ]]; then
    "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U pedidos "$1" || die "createdb $1 failed"
    printf 'postgres://pedidos@127.0.0.1:%s/%s' "$PG_PORT" "$1"
  else
    printf 'sqlite:%s/pedidos-api-%s.db' "$WORK" "$1"
  fi
}
[[ $BENCH_STORE == postgres ]] && start_postgres

start_broker() { # start_broker TAG: a new, empty Kafka node on free ports, in $WORK/kafka-TAG
  local dir=$WORK/kafka-$1 controller_port i
  read -r KAFKA_PORT controller_port < <(free_ports 2)
  log "starting Apache Kafka on 127.0.0.1:$KAFKA_PORT (controller $controller_port, data in $dir)"
  # setsid: a process group of its own (kafka.sh execs the JVM, so the pid stays the JVM's), so
  # that stop_pid ends all it runs (before the broker, kafka.sh runs a JVM to format the data
  # dir), and a Ctrl-C at the terminal does not stop it before the daemons.
  spawn broker setsid "$KAFKA_SH" run --dir "$dir" --port "$KAFKA_PORT" \
    --controller-port "$controller_port" --heap "$BROKER_HEAP" >"$dir.log" 2>&1
  for ((i = 0; i < BROKER_START_SECS * 10; i++)); do
    grep -q 'Kafka Server started' "$dir.log" && break
    kill -0 "${PIDS[broker]}" 2>/dev/null || { tail -n 20 "$dir.log" >&2; die "the broker exited"; }
    sleep 0.1
  done
  grep -q 'Kafka Server started' "$dir.log" || die "the broker did not start within $BROKER_START_SECS s (log: $dir.log)"
  [[ -s $WORK/broker.json ]] || broker_facts "${PIDS[broker]}" >"$WORK/broker.json"
  # Every process runs in $WORK (no conf.toml or .env there) with its settings in the environment.
  export PEDIDOS_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
}

# broker_facts PID: what the report says about the broker, as JSON. The version is read from the
# kafka-clients jar the running JVM has open, as Kafka's AppInfoParser reads it: the broker's log
# does not have its "Kafka version: ..." line (AppInfoParser's INFO, silenced by
# scripts/kafka-log4j2.properties). If that fails, kafka.sh's KAFKA_VERSION, marked as such.
broker_facts() {
  python3 - "$1" "$("${JAVA:-java}" -version 2>&1 | head -n 1)" \
    "$(sed -n 's/^readonly KAFKA_VERSION=//p' "$KAFKA_SH")" <<'PY'
import glob, json, os, re, sys, zipfile

pid, java, launcher_version = sys.argv[1:]
facts = {"java": java, "version": None, "commit": None, "version_source": "the broker's kafka-clients jar"}
for fd in glob.glob(f"/proc/{pid}/fd/*"):
    try:
        path = os.readlink(fd)
    except OSError:
        continue
    if re.search(r"/kafka-clients-[^/]*\.jar$", path):
        text = zipfile.ZipFile(path).read("kafka/kafka-version.properties").decode()
        props = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        facts["version"], facts["commit"] = props.get("version"), props.get("commitId")
        break
if not facts["version"]:
    facts["version"], facts["version_source"] = launcher_version, "KAFKA_VERSION in scripts/kafka.sh"
heap = [a[4:] for a in open(f"/proc/{pid}/cmdline").read().split("\0") if a.startswith("-Xmx")]
facts["heap"] = heap[-1] if heap else "?"
print(json.dumps(facts))
PY
}

API_PORT=$(free_ports 1)
API_URL=http://127.0.0.1:$API_PORT
# The admin endpoints (/metrics, /ready) on free ports too: a mesh of run-local.sh on the default
# ones (9101-9103) may be running beside the benchmark.
read -r FRAUD_ADMIN NOTIFICATION_ADMIN MONITORING_ADMIN <<<"$(free_ports 3)"
export PEDIDOS_FRAUD__ADMIN_LISTEN=127.0.0.1:$FRAUD_ADMIN
export PEDIDOS_NOTIFICATION__ADMIN_LISTEN=127.0.0.1:$NOTIFICATION_ADMIN
export PEDIDOS_MONITORING__ADMIN_LISTEN=127.0.0.1:$MONITORING_ADMIN

start_mesh() { # start_mesh RUST_LOG_LEVEL TAG
  local level=$1 tag=$2 name i store
  store=$(store_url "$tag")
  for name in "${DAEMONS[@]}"; do
    RUST_LOG=$level PEDIDOS_API__LISTEN=127.0.0.1:$API_PORT PEDIDOS_API__STORE_URL=$store \
      PEDIDOS_MONITORING__AUDIT_FILE="$WORK/audit-$tag.jsonl" \
      spawn "$name" "$BIN/$name" >"$WORK/$name-$tag.log" 2>&1
  done
  for ((i = 0; i < 600; i++)); do
    curl -fsS "$API_URL/health" >/dev/null 2>&1 && break
    for name in "${DAEMONS[@]}"; do
      kill -0 "${PIDS[$name]}" 2>/dev/null || { tail -n 20 "$WORK/$name-$tag.log" >&2; die "$name exited"; }
    done
    sleep 0.05
  done
  curl -fsS "$API_URL/health" >/dev/null || die "the API did not answer on $API_URL"
  if [[ $BENCH_AUTH == jwt ]]; then
    # The token's header from standard input, off curl's command line.
    local with without
    without=$(curl -s -o /dev/null -w '%{http_code}' "$API_URL/pedidos")
    with=$(curl -s -o /dev/null -w '%{http_code}' -H @- "$API_URL/pedidos" <<<"Authorization: Bearer $LOADGEN_TOKEN")
    [[ $without == 401 && $with == 200 ]] ||
      die "api.auth = jwt: GET /pedidos answered $without without the token and $with with it (want 401, 200)"
  fi
}

fresh_mesh() { # fresh_mesh RUST_LOG_LEVEL TAG: a new empty broker, the four daemons on it
  stop_broker
  start_broker "$2"
  start_mesh "$1" "$2"
  pause 2 # let the consumers join their groups; nothing is sent yet
}

# A just-started JVM interprets until the JIT has compiled the hot paths: on a fresh node the
# first `loadgen raw` gave half the pipeline rate of the next ones. So every measured run follows
# WARM_SECS at full speed (which also sets up producer ids, group joins and connection pools, and
# proves every verdict comes back), and a few seconds for the consumers to catch up.
warm_up() { # warm_up TAG SEED
  spawn loadgen "$LOADGEN" --url "$API_URL" --quiet --json --concurrency "$CONCURRENCY" \
    --duration "${WARM_SECS}s" --seed "$2" >"$WORK/warmup-$1.json"
  await loadgen || die "the warm-up failed"
  pause 3
}

# raw_pass TAG RECORDS UNITS: one `loadgen raw` into $WORK/TAG.json, summed up on stderr.
raw_pass() {
  spawn loadgen "$LOADGEN" raw --records "$2" --pipeline-units "$3" --json >"$WORK/$1.json"
  await loadgen || die "loadgen raw failed ($1)"
  python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   %s: produced %.0f/s, consumed %.0f/s, live %.0f/s, pipeline %.0f/s (%.0f orders/s), value %.0f B" % (sys.argv[2], r["produced_per_s"], r["consumed_per_s"], r["live_per_s"], r["pipeline_records_per_s"], r["pipeline_units_per_s"], r["avg_value_bytes"]))' "$WORK/$1.json" "$1" >&2
}

# run_loadgen OUT.json ARGS...: runs loadgen, with a CPU snapshot of every process before and
# after (OUT.cpu0.json, OUT.cpu1.json). loadgen's own CPU is sampled while it runs: once it has
# exited, /proc no longer has it.
run_loadgen() {
  local out=$1 lg_ticks=0 now
  shift
  cpu_snapshot >"$out.cpu0.json"
  spawn loadgen "$LOADGEN" --url "$API_URL" --quiet --json "$@" >"$out"
  while kill -0 "${PIDS[loadgen]}" 2>/dev/null; do
    now=$(cpu_ticks "${PIDS[loadgen]}")
    [[ $now != 0 ]] && lg_ticks=$now
    sleep 0.2
  done
  await loadgen || die "loadgen failed ($*)"
  cpu_snapshot "loadgen=$lg_ticks" >"$out.cpu1.json"
}

# ---------------------------------------------------------------------------------------------
cd "$WORK"
log "phases: $BENCH_PHASES$([[ $INFO_RUN == 1 ]] || printf ' (INFO_RUN=0: no info)'); api.auth = $BENCH_AUTH"
if has_phase raw; then
  log "1. raw broker capacity: $RAW_RECORDS records, $PIPELINE_UNITS orders through the pipeline"
  start_broker raw
  # The warm-up pass deletes its topics and groups: the measured pass still finds an empty broker.
  raw_pass raw-warmup $((RAW_RECORDS / 4)) $((PIPELINE_UNITS / 4))
  raw_pass raw "$RAW_RECORDS" "$PIPELINE_UNITS"
fi

if has_phase max; then
  log "2. the idle mesh for ${IDLE_SECS}s, then full speed: RUST_LOG=warn, ${MAX_SECS}s, $CONCURRENCY in flight"
  fresh_mesh warn warn
  procs_json rss_kb "${DAEMONS[@]}" broker >"$WORK/rss-idle.json"
  # Idle CPU after the warm-up: without it the broker's figure is mostly its start-up (JIT, the
  # daemons' topic creation and group joins), which settles within ~20 s.
  warm_up max 1
  CPU_CLOCK=ns cpu_snapshot >"$WORK/idle.cpu0.json"
  pause "$IDLE_SECS"
  CPU_CLOCK=ns cpu_snapshot >"$WORK/idle.cpu1.json"
  run_loadgen "$WORK/max.json" --concurrency "$CONCURRENCY" --duration "${MAX_SECS}s" --seed 2 "${GET_FLAG[@]}"
  procs_json hwm_kb "${DAEMONS[@]}" broker >"$WORK/rss-peak.json"
  stop_mesh
fi

if has_phase rate; then
  log "3. the mesh at $RATE orders/s for ${RATE_SECS}s"
  fresh_mesh warn rate
  warm_up rate 6
  run_loadgen "$WORK/rate.json" --rate "$RATE" --duration "${RATE_SECS}s" --seed 3 "${GET_FLAG[@]}"
  stop_mesh
fi

if [[ $INFO_RUN == 1 ]] && has_phase info; then
  log "4. the mesh at full speed again with RUST_LOG=info"
  fresh_mesh info info
  warm_up info 4
  run_loadgen "$WORK/max-info.json" --concurrency "$CONCURRENCY" --duration "${MAX_SECS}s" --seed 5 "${GET_FLAG[@]}"
  stop_mesh
fi
stop_broker

# ---------------------------------------------------------------------------------------------
log "results"
cd "$ROOT"
python3 - "$WORK" "$BENCH_OUT" "$RAW_RECORDS" "$MAX_SECS" "$CONCURRENCY" "$RATE" "$RATE_SECS" \
  "$PIPELINE_UNITS" "$IDLE_SECS" "$WARM_SECS" "$SHORT" "$BENCH_PHASES" "$ALL_PHASES" "$BENCH_AUTH" <<'PY'
import datetime, json, os, subprocess, sys

(work, out_path, raw_records, max_secs, concurrency, rate, rate_secs, pipeline_units, idle_secs,
 warm_secs, short, phases, all_phases, auth) = sys.argv[1:15]
load = lambda name: json.load(open(os.path.join(work, name)))
have = lambda name: os.path.exists(os.path.join(work, name))
DAEMONS = ["api", "fraud", "notification", "monitoring"]
ORDER = ["broker", *DAEMONS, "loadgen"]

def cpu_seconds(tag):
    """CPU seconds each process used between the snapshots TAG.cpu0.json and TAG.cpu1.json, and
    the wall-clock seconds between them."""
    a, b = load(tag + ".cpu0.json"), load(tag + ".cpu1.json")
    wall, tck = b["t"] - a["t"], b["clk_tck"]
    used = {k: (v - a["ticks"].get(k, 0)) / tck for k, v in b["ticks"].items()}
    return {k: used[k] for k in ORDER if k in used}, wall

def cores(tag):
    """Cores each process used between the snapshots TAG.cpu0.json and TAG.cpu1.json."""
    used, wall = cpu_seconds(tag)
    return {k: v / wall for k, v in used.items()}

# BENCH_PHASES: what was run; every section below is there only when its phase was.
ran = phases.split()
partial = ran != all_phases.split()
broker = load("broker.json")
has_raw = have("raw.json")
if has_raw:
    raw, raw_cold = load("raw.json"), load("raw-warmup.json")
keys = [k for k in ["max", "rate", "max-info"] if have(k + ".json")]
runs = {k: load(k + ".json") for k in keys}
cpu = {k: cores(k + ".json") for k in keys}
cpu_secs = {k: cpu_seconds(k + ".json")[0] for k in keys}
has_max = "max" in runs
if has_max:
    rss_idle = load("rss-idle.json")
    rss_peak = load("rss-peak.json")
    idle = cores("idle")

# Records per order: produced (Pedidos, Notificacoes x2, Pedidos_validos|recusados) and consumed
# as the issue counts them (fraud 1, notification 2, monitoring 4) ...
P, C = 4, 7
# ... and as the mesh really reads them: the API's read model also follows Pedidos and
# Notificacoes (3 more per order).
C_ALL = 10
if has_raw:
    rp, rc = raw["produced_per_s"], raw["consumed_per_s"]
def mix_capacity(p, c):
    """Records/s the broker sustains for p produced + c consumed records (costs add up)."""
    return (p + c) / (p / rp + c / rc)

if has_max:
    mx = runs["max"]
    orders = mx["throughput"]["verdicted_per_s"] or 0.0
    mesh_records = orders * (P + C)
    idle_daemons = sum(idle[k] for k in DAEMONS)
if has_raw:
    # The capacity the mesh is compared with: the pipeline phase, the same records through the
    # same shape (4 produced, 7 consumed, live, by as many clients), without HTTP or daemons.
    shape_cap = raw["pipeline_records_per_s"]
    shape_orders = raw["pipeline_units_per_s"]
    # The older estimate from the isolated produce and catch-up-read rates, kept for comparison.
    cap = mix_capacity(P, C)
if has_raw and has_max:
    ratio = mesh_records / shape_cap
    ratio_formula = mesh_records / cap
    ratio_all = orders * (P + C_ALL) / mix_capacity(P, C_ALL)
if "rate" in runs:
    p99 = runs["rate"]["latency_ms"]["post_verdict"]["p99_ms"]
    rate_ok = runs["rate"]["throughput"]["verdicted_per_s"] or 0.0

def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"

L = []
w = L.append
w(f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ")
flag = " --short" if short == "1" else ""
extra = (f" BENCH_PHASES=\"{phases}\"" if partial else "") + (f" BENCH_AUTH={auth}" if auth != "none" else "")
store = os.environ.get("BENCH_STORE", "sqlite")
gets = os.environ.get("BENCH_GETS", "0") == "1"
extra += (f" BENCH_STORE={store}" if store != "sqlite" else "") + (" BENCH_GETS=1" if gets else "")
w(f"Command: `scripts/bench.sh{flag}` (RAW_RECORDS={raw_records} PIPELINE_UNITS={pipeline_units} MAX_SECS={max_secs} "
  f"CONCURRENCY={concurrency} RATE={rate} RATE_SECS={rate_secs} IDLE_SECS={idle_secs} WARM_SECS={warm_secs}{extra})  ")
if auth == "jwt":
    w("Auth: api.auth = \"jwt\", HS256 with a secret generated for the run; loadgen sends one operator token "
      "(`loadgen token bench --ops`) with every order, so each request is verified by the API.  ")
w("Order store: " + ("PostgreSQL, a server of the bench's own (default settings), one database per mesh"
                     if store == "postgres" else "SQLite, the default, one file per mesh in the temp dir")
  + ("; loadgen GETs every order right after its 202 (`--get-after-202`)" if gets else "") + ".  ")
data_fs = sh(f"df -PT {work} | awk 'NR == 2 {{ print $2 }}'") or "?"
build = f", commit {broker['commit']}" if broker.get("commit") else ""
if not broker["version_source"].startswith("the broker's"):
    build += f" (version from {broker['version_source']})"
w(f"Broker: Apache Kafka {broker['version']}{build}, one KRaft node (broker + controller in one JVM, "
  f"`scripts/kafka.sh run`), a fresh one per run; heap {broker['heap']}; {broker['java']}; data on {data_fs}  ")
w(f"Machine: `nproc` = {sh('nproc')}; `uname -a` = `{sh('uname -a')}`  ")
commit = open(os.path.join(work, "commit")).read().split() if have("commit") else []
if commit:
    dirty = f" plus uncommitted changes to {commit[1]} tracked files" if len(commit) > 1 and commit[1] != "0" else ""
    w(f"Code: commit {commit[0]}{dirty}  ")
w(f"Load average (1/5/15 min) when the benchmark started: {open(os.path.join(work, 'loadavg-start')).read().strip()}; "
  "other processes on the machine compete with the mesh for its cores.  ")
w("")
w("```")
w(sh("free -h"))
w("```")
w("")
if has_raw:
    w("### 1. Broker alone (`loadgen raw`)")
    w("")
    w(f"{raw['records']} records to a {raw['partitions']}-partition topic; key {raw['avg_key_bytes']:.0f} B, "
      f"value {raw['avg_value_bytes']:.0f} B JSON, headers {raw['avg_headers_bytes']:.0f} B; "
      "idempotent, acks=all, linger 1 ms, lz4 (`shared::kafka::producer`). Measured after a pass a quarter "
      f"the size on the just-started JVM (not counted: its pipeline ran at {raw_cold['pipeline_records_per_s']:,.0f} records/s, "
      f"produce at {raw_cold['produced_per_s']:,.0f}/s), whose topics and groups were deleted.")
    w("")
    w("| direction | records/s | seconds |")
    w("|---|---:|---:|")
    w(f"| produced (all acknowledged) | {rp:,.0f} | {raw['produce_seconds']:.2f} |")
    w(f"| consumed back (catch-up read from the start) | {rc:,.0f} | {raw['consume_seconds']:.2f} |")
    w(f"| live: produced while a consumer tails the topic, each record produced and read | {raw['live_per_s']:,.0f} | {raw['live_seconds']:.2f} |")
    w(f"| pipeline: {raw['pipeline_units']} orders through the mesh's shape (2 producers, 3 consumers, 4 topics; 4 produced + 7 consumed per order), no daemons | **{shape_cap:,.0f}** ({shape_orders:,.0f} orders/s) | {raw['pipeline_seconds']:.2f} |")
    w(f"| estimate from the isolated rates above, 4 produced + 7 consumed (earlier benchmarks' denominator) | {cap:,.0f} | |")
    w("")

def cpu_line(used):
    return ", ".join(f"{k} {v:.2f}" for k, v in used.items()) + f"; total {sum(used.values()):.2f}"

def run_table(title, key):
    r = runs[key]
    t = r["throughput"]
    w(f"### {title}")
    w("")
    s = r["settings"]
    pace = f"{s['target_rate']:.0f} orders/s" if s["target_rate"] else f"full speed, {s['concurrency']} in flight"
    w(f"{r['send_seconds']:.1f} s at {pace}, after {warm_secs} s at full speed to warm up: sent {r['sent']}, "
      f"accepted (202) {r['accepted']}, errors {r['errors']['total']} {r['errors']['by_kind'] or ''}, "
      f"verdicts {r['verdicts']} (Aprovado {r['aprovado']}, Recusado {r['recusado']}), verdicts missing {r['verdicts_missing']}.")
    w("")
    w(f"- accepted {t['accepted_per_s']:,.1f} orders/s, verdicted {t['verdicted_per_s']:,.1f} orders/s")
    if r.get("analise_after_verdict"):
        w(f"- {r['analise_after_verdict']} orders had their verdict on Notificacoes before their Analise event")
    if s["target_rate"]:
        w(f"- sender fell behind schedule by at most {r['max_schedule_lag_ms']:.1f} ms")
    w("")
    w("| latency (ms) | count | p50 | p90 | p99 | max |")
    w("|---|---:|---:|---:|---:|---:|")
    for name, k in [("POST → 202", "post_202"), ("202 → GET 200", "get_after_202"), ("POST → Analise", "post_analise"), ("POST → verdict", "post_verdict")]:
        l = r["latency_ms"].get(k)
        if not l:
            continue
        w(f"| {name} | {l['count']} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} |")
    w("")
    w(f"CPU used during the run (cores; the machine has {sh('nproc')}): {cpu_line(cpu[key])}.")
    w("")
    if r["accepted"]:
        # CPU time between the snapshots (the run and its drain) over the orders accepted.
        per_order = {k: v / r["accepted"] * 1e6 for k, v in cpu_secs[key].items()}
        daemons = sum(per_order.get(k, 0.0) for k in DAEMONS)
        w("CPU per accepted order (µs; CPU time during the run ÷ orders accepted): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in per_order.items()) + f"; the four daemons {daemons:,.0f}.")
        w("")

if has_max:
    run_table("2. The mesh at full speed (daemons at RUST_LOG=warn)", "max")
if "rate" in runs:
    run_table(f"3. The mesh at {rate} orders/s (RUST_LOG=warn)", "rate")
if "max-info" in runs:
    run_table("4. The mesh at full speed with default logging (RUST_LOG=info)", "max-info")

if has_max:
    w("### The idle mesh, and memory")
    w("")
    w(f"Idle CPU: {idle_secs} s without traffic, after run 2's warm-up and a 3-s pause (so the broker's "
      "start-up is not counted), in % of one core. Idle VmRSS: after start-up, before any order. "
      "Peak VmHWM: after run 2.")
    w("")
    w("| process | idle CPU (% of one core) | idle VmRSS (MB) | peak VmHWM (MB) |")
    w("|---|---:|---:|---:|")
    mb = lambda kb: f"{kb / 1024:.1f}"
    for k in DAEMONS:
        w(f"| {k} | {100 * idle[k]:.2f} | {mb(rss_idle[k])} | {mb(rss_peak[k])} |")
    w(f"| **the four daemons** | **{100 * idle_daemons:.2f}** | {mb(sum(rss_idle[k] for k in DAEMONS))} | |")
    w(f"| broker (Kafka JVM, heap {broker['heap']}) | {100 * idle['broker']:.2f} | {mb(rss_idle['broker'])} | {mb(rss_peak['broker'])} |")
    w("")

# The targets whose phases ran.
targets = []
if has_raw and has_max:
    targets.append(("end-to-end throughput ≥ 25 % of the broker's pipeline capacity for the same records",
        f"{orders:,.0f} orders/s × {P + C} = {mesh_records:,.0f} records/s = {ratio:.1%} of the pipeline's {shape_cap:,.0f} "
        f"({ratio_formula:.1%} of the isolated-rates estimate {cap:,.0f}; counting the API read model's 3 reads too: {ratio_all:.1%})",
        ratio >= 0.25))
if "rate" in runs:
    verdict_note = ""
    if runs["rate"]["verdicts_missing"]:
        verdict_note = f" ({runs['rate']['verdicts_missing']} verdicts missing)"
    targets.append((f"p99 POST → verdict ≤ 25 ms at {rate} orders/s",
        f"{p99:.2f} ms (verdicted {rate_ok:,.1f} orders/s){verdict_note}", p99 <= 25.0 and rate_ok >= 0.95 * float(rate)))
if has_max:
    max_rss = max(rss_idle[k] for k in DAEMONS) / 1024
    targets.append(("the four idle daemons together ≤ 2 % of one core",
        f"{100 * idle_daemons:.2f} % over {idle_secs} s (" + ", ".join(f"{k} {100 * idle[k]:.2f}" for k in DAEMONS)
        + f"; the broker, not counted: {100 * idle['broker']:.2f} %)", idle_daemons <= 0.02))
    targets.append(("idle RSS ≤ 30 MB per daemon", f"largest {max_rss:.1f} MB", max_rss <= 30.0))
if targets:
    w("### Targets")
    w("")
    w("| target | measured | met |")
    w("|---|---|---|")
    for name, measured, ok in targets:
        w(f"| {name} | {measured} | {'yes' if ok else '**no**'} |")

text = "\n".join(L) + "\n"
print(text)

if out_path:
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    block = f"{begin}\n{text}{end}"
    old = open(out_path).read() if os.path.exists(out_path) else "# Benchmarks\n\n" + begin + "\n" + end + "\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    open(out_path, "w").write(new)
    print(f"bench: figures written to {out_path}", file=sys.stderr)
PY
printf 'bench: done in %d min %02d s\n' $((SECONDS / 60)) $((SECONDS % 60)) >&2
