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
#   4. (INFO_RUN=1, the default) the full-speed run again with the daemons at RUST_LOG=info;
#   5. the paced sweep ("sweep"): for each rate of SWEEP_RATES a fresh node and mesh, SWEEP_SECS
#      at the rate with loadgen tracking verdicts (p50/p99 POST → 202 and POST → verdict), then
#      SWEEP_SECS with `loadgen --no-track` (only the mesh reads Kafka): every process's CPU per
#      order and the broker's requests per order by kind, counted by the broker itself, and
#      each daemon's (and the broker's) CPU and context switches per order by thread;
#   6. exactly-once ("eos"): on a fresh node the API alone takes EOS_ORDERS orders and stops; fraud
#      alone then reads that backlog at-least-once, and again (a new group) with
#      PEDIDOS_FRAUD__TRANSACTIONAL=true: orders/s and CPU per order of each.
#
# The broker runs with the Prometheus JMX exporter as a javaagent (fetched once from Maven
# Central with `mvn`, into the same cache as Kafka), serving its request counters
# (kafka.network:type=RequestMetrics,name=RequestsPerSec) on a free port; every measured run
# reads them before and after. The report is scripts/bench_report.py, which can be run again on
# a kept run (KEEP=1): `scripts/bench_report.py report /tmp/pedidos-bench.XXXXXX`.
#
# BENCH_PHASES picks some of them (raw, max, rate, info, sweep, eos; e.g. BENCH_PHASES=max for the idle mesh
# and the full-speed run alone); the report then has those sections and targets only, and is
# written nowhere unless BENCH_OUT is set. BENCH_AUTH=jwt runs the API with api.auth = "jwt" and
# an HS256 secret generated for the run (never printed), and loadgen sends an operator token
# minted with `loadgen token bench --ops` (LOADGEN_TOKEN): the cost of verifying a token per order.
# Each mesh gets a new, empty order store: BENCH_STORE=sqlite (the default, a file in the temp
# dir) or BENCH_STORE=postgres (a PostgreSQL server of the bench's own, Debian's `postgresql`
# package, one database per mesh). BENCH_GETS=1 has loadgen GET every order right after its 202
# (`--get-after-202`): the GET's latency under load, and whether any was not found.
#
# It reports the CPU each process used during every run, checks the targets of the phases that ran
# (issue 26's: the four daemons ≤ 0.10 cores and ≤ 9 broker requests per order at 100 orders/s,
# ≤ 2.5 at 1,000, p99 POST → verdict ≤ 50 ms at 1,000, end-to-end ≥ 30 % of the pipeline's
# capacity, exactly-once ≥ 70 % of at-least-once; and p99 ≤ 25 ms at RATE, the four idle daemons
# ≤ 2 % of one core together, idle RSS ≤ 30 MB per daemon), and writes the figures between the
# `bench:begin` / `bench:end` markers of BENCHMARKS.md (BENCH_OUT= to skip, or another path).
#
# Usage: scripts/bench.sh [--short]
#   --short  a quick check that the script works end to end (about a minute after the build):
#            small runs, no info run, figures printed but not written anywhere unless BENCH_OUT
#            is set. Its figures are not comparable with a full run's.
# Environment, with the defaults (--short's in brackets):
#   RAW_RECORDS=200000 [20000]  PIPELINE_UNITS=50000 [5000]  MAX_SECS=20 [3]  RATE_SECS=20 [3]
#   IDLE_SECS=30 [5]  WARM_SECS=5 [1]  CONCURRENCY=64  RATE=1000  INFO_RUN=1 [0]
#   SWEEP_RATES="100 300 1000"  SWEEP_SECS=20 [3]  SWEEP_WARM_SECS=30 [1]  EOS_ORDERS=100000 [5000]
#   BROKER_HEAP=512m  BENCH_OUT=BENCHMARKS.md [unset]  KEEP=0 (1: keep the temp dir: logs, JSON,
#   the brokers' data)  BENCH_PHASES="raw max rate info sweep eos"  BENCH_AUTH=none (or jwt)
#   BENCH_STORE=sqlite (or postgres)  BENCH_GETS=0 (or 1)
#   BENCH_BIN= (a directory with release binaries of api, fraud, notification, monitoring and
#   loadgen to run instead of building these: before/after runs of two commits)
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
SWEEP_RATES=${SWEEP_RATES:-100 300 1000}
SWEEP_SECS=${SWEEP_SECS:-$(pick 20 3)}
SWEEP_WARM_SECS=${SWEEP_WARM_SECS:-$(pick 30 1)}
EOS_ORDERS=${EOS_ORDERS:-$(pick 100000 5000)}
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
ALL_PHASES="raw max rate info sweep eos"
BENCH_PHASES=${BENCH_PHASES:-$ALL_PHASES}
BENCH_PHASES=${BENCH_PHASES//,/ }
for phase in $BENCH_PHASES; do
  [[ " $ALL_PHASES " == *" $phase "* ]] || die "unknown phase ${phase@Q} in BENCH_PHASES (${ALL_PHASES// /, })"
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
# shellcheck source=lib/daemons.sh
source "$ROOT/scripts/lib/daemons.sh"

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

stop_mesh() { # loadgen, then the daemons in the reverse of their start order
  local i
  stop_pid loadgen
  for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop_pid "${DAEMONS[i]}"; done
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

# threads_snapshot OUT: the daemons' and the broker's CPU time and context switches so far, by
# thread name (JSON).
threads_snapshot() {
  local name pairs=()
  for name in "${DAEMONS[@]}" broker; do [[ -n ${PIDS[$name]:-} ]] && pairs+=("$name=${PIDS[$name]}"); done
  "$ROOT/scripts/bench_report.py" threads "${pairs[@]}" >"$1"
}

# ---------------------------------------------------------------------------------------------
if [[ -n ${BENCH_BIN:-} ]]; then
  # Binaries built elsewhere (another commit, for before/after runs): used as they are.
  BIN=$(cd "$BENCH_BIN" && pwd)
  for name in "${DAEMONS[@]}" loadgen; do [[ -x $BIN/$name ]] || die "BENCH_BIN: no $name in $BIN"; done
  log "binaries from $BIN"
  # Its COMMIT file, if any, names the code they were built from ("<commit> <dirty files>").
  if [[ -f $BIN/COMMIT ]]; then cp "$BIN/COMMIT" "$WORK/commit"; else printf '%s 0\n' "$BIN" >"$WORK/commit"; fi
else
  log "building release binaries"
  # shellcheck disable=SC2046 # one word per line
  cargo build --release --quiet $(daemon_packages) -p loadgen
  TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BIN=$TARGET/release
fi
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

# The broker's request counters, through the Prometheus JMX exporter (a javaagent from Maven
# Central, fetched once into the same cache as Kafka's jars), limited to the counters the report
# reads so that a scrape costs the broker next to nothing.
readonly JMX_EXPORTER_VERSION=1.0.1
jmx_exporter() { # the agent's jar, fetched the first time; its path
  local dir jar
  dir=${XDG_CACHE_HOME:-$HOME/.cache}/pedidos/jmx-exporter
  jar=$dir/jmx_prometheus_javaagent-$JMX_EXPORTER_VERSION.jar
  if [[ ! -s $jar ]]; then
    log "fetching the Prometheus JMX exporter $JMX_EXPORTER_VERSION from Maven Central"
    "${MVN:-mvn}" -B -q dependency:copy -Dartifact="io.prometheus.jmx:jmx_prometheus_javaagent:$JMX_EXPORTER_VERSION" \
      -DoutputDirectory="$dir" >&2 || die "Maven could not fetch the Prometheus JMX exporter"
  fi
  printf '%s\n' "$jar"
}
JMX_JAR=$(jmx_exporter)
printf 'includeObjectNames: ["kafka.network:type=RequestMetrics,name=RequestsPerSec,*"]\n' >"$WORK/jmx-exporter.yaml"
JMX_PORT=''
# broker_requests OUT: the broker's request counters so far (Prometheus text), into OUT.
broker_requests() {
  [[ -n $JMX_PORT ]] || return 0
  curl -fsS "http://127.0.0.1:$JMX_PORT/metrics" 2>/dev/null | grep '^kafka_network_RequestMetrics_Count' >"$1" || true
}

start_broker() { # start_broker TAG: a new, empty Kafka node on free ports, in $WORK/kafka-TAG
  local dir=$WORK/kafka-$1 controller_port i
  # Free now, and none of the daemons' ports (free too while no mesh runs).
  local mesh_ports=" $API_PORT ${ADMIN_ADDR[*]//127.0.0.1:/} "
  while :; do
    read -r KAFKA_PORT controller_port JMX_PORT < <(free_ports 3)
    [[ $mesh_ports != *" $KAFKA_PORT "* && $mesh_ports != *" $controller_port "* && $mesh_ports != *" $JMX_PORT "* ]] && break
  done
  log "starting Apache Kafka on 127.0.0.1:$KAFKA_PORT (controller $controller_port, JMX exporter $JMX_PORT, data in $dir)"
  # setsid: a process group of its own (kafka.sh execs the JVM, so the pid stays the JVM's), so
  # that stop_pid ends all it runs (before the broker, kafka.sh runs a JVM to format the data
  # dir), and a Ctrl-C at the terminal does not stop it before the daemons.
  PEDIDOS_KAFKA_JVM_OPTS="-javaagent:$JMX_JAR=127.0.0.1:$JMX_PORT:$WORK/jmx-exporter.yaml" \
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
  "$ROOT/scripts/bench_report.py" broker-facts "$1" "$("${JAVA:-java}" -version 2>&1 | head -n 1)" \
    "$(sed -n 's/^readonly KAFKA_VERSION=//p' "$KAFKA_SH")"
}

# The admin endpoints (/metrics, /ready) on free ports too: a mesh of run-local.sh on the default
# ones (9101-9103) may be running beside the benchmark. The API's is API_PORT; every other
# daemon's admin address in its own variable. One call, so that no two are the same.
read -ra MESH_PORTS < <(free_ports "${#DAEMONS[@]}")
API_PORT=${MESH_PORTS[0]}
API_URL=http://127.0.0.1:$API_PORT
declare -A ADMIN_ADDR=()
for name in "${DAEMONS[@]}"; do
  [[ $name == api ]] && continue
  ADMIN_ADDR[$name]=127.0.0.1:${MESH_PORTS[${#ADMIN_ADDR[@]} + 1]}
  export "$(daemon_env_var "$name")=${ADMIN_ADDR[$name]}"
done

# start_mesh RUST_LOG_LEVEL TAG [DAEMON...]: the daemons (all by default), on a new order store.
start_mesh() {
  local level=$1 tag=$2 name i store
  shift 2
  local -a names=("$@")
  ((${#names[@]})) || names=("${DAEMONS[@]}")
  store=$(store_url "$tag")
  for name in "${names[@]}"; do
    RUST_LOG=$level PEDIDOS_API__LISTEN=127.0.0.1:$API_PORT PEDIDOS_API__STORE_URL=$store \
      PEDIDOS_MONITORING__AUDIT_FILE="$WORK/audit-$tag.jsonl" \
      spawn "$name" "$BIN/$name" >"$WORK/$name-$tag.log" 2>&1
  done
  for ((i = 0; i < 600; i++)); do
    curl -fsS "$API_URL/health" >/dev/null 2>&1 && break
    for name in "${names[@]}"; do
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
# proves every verdict comes back), and a few seconds for the consumers to catch up. The sweep
# warms up for SWEEP_WARM_SECS: after 5 s, the broker's JIT compiler still took about 40 % of its
# CPU at 100 orders/s (BENCHMARKS.md, 2026-12-07), a start-up cost, not the rate's.
warm_up() { # warm_up TAG SEED [SECONDS]
  spawn loadgen "$LOADGEN" --url "$API_URL" --quiet --json --concurrency "$CONCURRENCY" \
    --duration "${3:-$WARM_SECS}s" --seed "$2" >"$WORK/warmup-$1.json"
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
  broker_requests "$out.req0.prom"
  cpu_snapshot >"$out.cpu0.json"
  spawn loadgen "$LOADGEN" --url "$API_URL" --quiet --json "$@" >"$out"
  while kill -0 "${PIDS[loadgen]}" 2>/dev/null; do
    now=$(cpu_ticks "${PIDS[loadgen]}")
    [[ $now != 0 ]] && lg_ticks=$now
    sleep 0.2
  done
  await loadgen || die "loadgen failed ($*)"
  cpu_snapshot "loadgen=$lg_ticks" >"$out.cpu1.json"
  broker_requests "$out.req1.prom"
}

# metric_sum URL NAME: the sum of a Prometheus counter's series at URL.
metric_sum() { # 0 while the endpoint is not up yet
  { curl -fsS "$1" 2>/dev/null || true; } | awk -v name="$2" 'index($0, name "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

# fraud_backlog TAG TRANSACTIONAL ORDERS: fraud alone, in a group of its own, through a backlog of
# ORDERS orders on Pedidos; CPU and request snapshots at its first record (TAG.cpu0.json,
# TAG.req0.prom) and once all its outputs are acknowledged (2 per order; committed, in
# exactly-once mode), and TAG.json.
fraud_backlog() {
  local tag=$1 transactional=$2 orders=$3 url consumed produced i started=0
  url=http://${ADMIN_ADDR[fraud]}/metrics
  RUST_LOG=warn PEDIDOS_FRAUD__GROUP_ID=fraud-$tag PEDIDOS_FRAUD__TRANSACTIONAL=$transactional \
    spawn fraud "$BIN/fraud" >"$WORK/fraud-$tag.log" 2>&1
  for ((i = 0; i < 6000; i++)); do
    kill -0 "${PIDS[fraud]}" 2>/dev/null || { tail -n 20 "$WORK/fraud-$tag.log" >&2; die "fraud exited"; }
    if ((started == 0)); then
      consumed=$(metric_sum "$url" pedidos_records_consumed_total)
      if [[ -n $consumed && $consumed != 0 ]]; then
        broker_requests "$WORK/$tag.req0.prom"
        cpu_snapshot >"$WORK/$tag.cpu0.json"
        started=1
      fi
    else
      produced=$(metric_sum "$url" pedidos_records_produced_total)
      if ((produced >= 2 * orders)); then
        cpu_snapshot >"$WORK/$tag.cpu1.json"
        broker_requests "$WORK/$tag.req1.prom"
        printf '{"orders": %s, "transactional": %s}\n' "$orders" "$transactional" >"$WORK/$tag.json"
        stop_pid fraud
        return
      fi
    fi
    sleep 0.1
  done
  die "fraud ($tag) did not get through $orders orders within 10 min"
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

if has_phase sweep; then
  for r in $SWEEP_RATES; do
    log "5. the paced sweep: $r orders/s, ${SWEEP_SECS}s tracked, then ${SWEEP_SECS}s with --no-track"
    fresh_mesh warn "sweep-$r"
    warm_up "sweep-$r" 8 "$SWEEP_WARM_SECS"
    run_loadgen "$WORK/sweep-$r-track.json" --rate "$r" --duration "${SWEEP_SECS}s" --seed 9
    pause 2
    # The API's own view of the broker's acknowledgements, around the untracked run.
    curl -fsS "$API_URL/metrics" >"$WORK/sweep-$r.api0.prom" 2>/dev/null || true
    threads_snapshot "$WORK/sweep-$r.threads0.json"
    run_loadgen "$WORK/sweep-$r.json" --rate "$r" --duration "${SWEEP_SECS}s" --seed 10 --no-track
    threads_snapshot "$WORK/sweep-$r.threads1.json"
    curl -fsS "$API_URL/metrics" >"$WORK/sweep-$r.api1.prom" 2>/dev/null || true
    stop_mesh
  done
fi

if has_phase eos; then
  log "6. exactly-once: fraud alone on a backlog of $EOS_ORDERS orders, at-least-once then transactional"
  stop_broker
  start_broker eos
  start_mesh warn eos api
  spawn loadgen "$LOADGEN" --url "$API_URL" --quiet --json --no-track --concurrency "$CONCURRENCY" \
    --count "$EOS_ORDERS" --seed 11 >"$WORK/eos-preload.json"
  await loadgen || die "the exactly-once phase's preload failed"
  stop_mesh
  accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["accepted"])' "$WORK/eos-preload.json")
  fraud_backlog eos-alo false "$accepted"
  fraud_backlog eos-txn true "$accepted"
fi
stop_broker

# ---------------------------------------------------------------------------------------------
log "results"
cut -d' ' -f1-3 /proc/loadavg >"$WORK/loadavg-end"
python3 -c 'import json, sys
names = sys.argv[1::2]
values = sys.argv[2::2]
s = dict(zip(names, values))
knobs = {k: s.pop(k) for k in list(s) if k.isupper()}
print(json.dumps({"phases": s["phases"], "all_phases": s["all_phases"], "short": s["short"] == "1",
    "auth": s["auth"], "store": s["store"], "gets": s["gets"] == "1", "rate": s["rate"],
    "sweep_rates": s["sweep_rates"], "knobs": knobs}))' \
  phases "$BENCH_PHASES" all_phases "$ALL_PHASES" short "$SHORT" auth "$BENCH_AUTH" store "$BENCH_STORE" \
  gets "$BENCH_GETS" rate "$RATE" sweep_rates "$SWEEP_RATES" \
  RAW_RECORDS "$RAW_RECORDS" PIPELINE_UNITS "$PIPELINE_UNITS" MAX_SECS "$MAX_SECS" CONCURRENCY "$CONCURRENCY" \
  RATE "$RATE" RATE_SECS "$RATE_SECS" IDLE_SECS "$IDLE_SECS" WARM_SECS "$WARM_SECS" SWEEP_RATES "$SWEEP_RATES" \
  SWEEP_SECS "$SWEEP_SECS" SWEEP_WARM_SECS "$SWEEP_WARM_SECS" EOS_ORDERS "$EOS_ORDERS" >"$WORK/settings.json"
cd "$ROOT"
"$ROOT/scripts/bench_report.py" report "$WORK" --out "$BENCH_OUT"
printf 'bench: done in %d min %02d s\n' $((SECONDS / 60)) $((SECONDS % 60)) >&2
