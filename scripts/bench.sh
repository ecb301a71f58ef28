#!/usr/bin/env bash
# The pedidos benchmark, in one command, on private local brokers (a fresh, empty one per run):
#
#   1. the broker's raw capacity for the mesh's records (`loadgen raw`: ~250-byte JSON keyed by
#      customer, the daemons' producer settings, 3 partitions): produced, consumed back, and put
#      through the mesh's shape with no daemons (the "pipeline": per order 4 records produced by
#      2 producers and 7 consumed by 3 consumers, live) — the capacity the mesh is compared with;
#   2. the whole mesh (api + fraud + notification + monitoring, release builds, RUST_LOG=warn)
#      driven by loadgen at full speed;
#   3. the mesh at a fixed 1,000 orders/s, for latency;
#   4. (INFO_RUN=1, the default) the full-speed run again with the daemons at RUST_LOG=info.
#
# It also reports each daemon's idle RSS (VmRSS after start-up, before any load) and the CPU each
# process used during the full-speed run, checks the targets, and writes the figures between the
# `bench:begin` / `bench:end` markers of BENCHMARKS.md (set BENCH_OUT= to skip, or a path).
#
# Usage: scripts/bench.sh
# Environment (defaults): RAW_RECORDS=200000 PIPELINE_UNITS=50000 MAX_SECS=20 CONCURRENCY=64
#   RATE=1000 RATE_SECS=20
#   INFO_RUN=1 BENCH_OUT=BENCHMARKS.md KEEP=0 (keep the temp dir with logs and JSON)
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd -P)

RAW_RECORDS=${RAW_RECORDS:-200000}
PIPELINE_UNITS=${PIPELINE_UNITS:-50000}
MAX_SECS=${MAX_SECS:-20}
CONCURRENCY=${CONCURRENCY:-64}
RATE=${RATE:-1000}
RATE_SECS=${RATE_SECS:-20}
INFO_RUN=${INFO_RUN:-1}
BENCH_OUT=${BENCH_OUT-BENCHMARKS.md}
KEEP=${KEEP:-0}

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

WORK=$(mktemp -d /tmp/pedidos-bench.XXXXXX)
cut -d' ' -f1-3 /proc/loadavg >"$WORK/loadavg-start"
{ git rev-parse --short HEAD && git status --porcelain --untracked-files=no | wc -l; } >"$WORK/commit" 2>/dev/null || true
declare -A PIDS=()   # name -> pid of every process this script started

stop_pid() { # stop_pid NAME: SIGTERM, wait up to 15 s, then SIGKILL
  local name=$1 pid=${PIDS[$1]:-} i
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || true
  unset "PIDS[$name]"
}

cleanup() {
  local name
  for name in loadgen monitoring notification fraud api; do stop_pid "$name"; done
  stop_pid broker
  if [[ $KEEP == 1 ]]; then
    printf 'bench: logs and JSON kept in %s\n' "$WORK" >&2
  else
    rm -rf -- "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # wait_port PORT SECONDS
  local i
  for ((i = 0; i < $2 * 20; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
# daemons_json FUNC: {"api": FUNC(pid of api), ...} for the four daemons.
daemons_json() {
  local name sep=
  printf '{'
  for name in "${DAEMONS[@]}"; do
    printf '%s"%s": %s' "$sep" "$name" "$("$1" "${PIDS[$name]}")"
    sep=', '
  done
  printf '}\n'
}
# CPU ticks (user + system) used so far by a process.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ---------------------------------------------------------------------------------------------
log "building release binaries"
cargo build --release --quiet -p api -p fraud -p notification -p monitoring -p loadgen
TARGET=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BIN=$TARGET/release
LOADGEN=$BIN/loadgen

if [[ -x scripts/install-broker.sh ]]; then
  NOIDA=$(scripts/install-broker.sh | tail -n 1)
else
  NOIDA=$(python3 -c "import noida_db,os;print(os.path.join(os.path.dirname(noida_db.__file__),'noida-db'))")
fi
[[ -x $NOIDA ]] || die "noida-db not found (pip install noida-db==0.2.3)"

# Every measurement starts on a fresh, empty broker. noida-db snapshots everything it holds about
# once a second, so its CPU grows with the data retained: after a 20-second full-speed run
# (~80,000 orders, ~165 MB) its `autosave` thread went from 0.10 to 0.36 cores at 1,000 orders/s
# and p99 POST -> verdict from 25 to 58 ms. A Kafka broker appends to segment files and does not
# pay that; without a fresh broker each run's figures would depend on the runs before it.
start_broker() { # start_broker TAG: a new noida-db on a free port, data in $WORK/noida-TAG
  local tag=$1
  KAFKA_PORT=$(free_port)
  log "starting noida-db on 127.0.0.1:$KAFKA_PORT (data in $WORK/noida-$tag)"
  "$NOIDA" start --only kafka --host 127.0.0.1 --kafka-port "$KAFKA_PORT" \
    --data-dir "$WORK/noida-$tag" >"$WORK/noida-$tag.log" 2>&1 &
  PIDS[broker]=$!
  wait_port "$KAFKA_PORT" 15 || { tail -n 20 "$WORK/noida-$tag.log" >&2; die "noida-db did not start"; }
  # Every process runs in $WORK (no conf.toml or .env there) with its settings in the environment.
  export PEDIDOS_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
}

cd "$WORK"
start_broker raw

# ---------------------------------------------------------------------------------------------
log "1. raw broker capacity: $RAW_RECORDS records, $PIPELINE_UNITS orders through the pipeline"
"$LOADGEN" raw --records "$RAW_RECORDS" --pipeline-units "$PIPELINE_UNITS" --json >"$WORK/raw.json"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("   produced %.0f/s, consumed %.0f/s, live %.0f/s, pipeline %.0f/s (%.0f orders/s), value %.0f B" % (r["produced_per_s"], r["consumed_per_s"], r["live_per_s"], r["pipeline_records_per_s"], r["pipeline_units_per_s"], r["avg_value_bytes"]))' "$WORK/raw.json" >&2

API_PORT=$(free_port)
API_URL=http://127.0.0.1:$API_PORT
DAEMONS=(api fraud notification monitoring)

start_mesh() { # start_mesh RUST_LOG_LEVEL TAG
  local level=$1 tag=$2 name i
  for name in "${DAEMONS[@]}"; do
    RUST_LOG=$level PEDIDOS_API__LISTEN=127.0.0.1:$API_PORT \
      PEDIDOS_MONITORING__AUDIT_FILE="$WORK/audit-$tag.jsonl" \
      "$BIN/$name" >"$WORK/$name-$tag.log" 2>&1 &
    PIDS[$name]=$!
  done
  for ((i = 0; i < 600; i++)); do
    curl -fsS "$API_URL/health" >/dev/null 2>&1 && break
    for name in "${DAEMONS[@]}"; do
      kill -0 "${PIDS[$name]}" 2>/dev/null || { tail -n 20 "$WORK/$name-$tag.log" >&2; die "$name exited"; }
    done
    sleep 0.05
  done
  curl -fsS "$API_URL/health" >/dev/null || die "the API did not answer on $API_URL"
}

stop_mesh() {
  local name
  for name in monitoring notification fraud api; do stop_pid "$name"; done
}

fresh_mesh() { # fresh_mesh RUST_LOG_LEVEL TAG: a new empty broker, the four daemons on it
  stop_pid broker
  start_broker "$2"
  start_mesh "$1" "$2"
  sleep 2 # let the consumers join their groups; nothing is sent yet
}

# Producer ids, group joins, connection pool; also proves every verdict comes back.
warm_up() { # warm_up TAG SEED
  "$LOADGEN" --url "$API_URL" --quiet --json --rate 200 --count 400 --seed "$2" >"$WORK/warmup-$1.json"
}

# run_loadgen OUT.json ARGS...: runs loadgen, sampling the CPU of every process meanwhile;
# writes OUT.json (the report) and OUT.cpu.json (CPU seconds per process, wall seconds).
run_loadgen() {
  local out=$1 name pid t0 t1 lg_ticks=0 now
  shift
  declare -A before=()
  for name in broker "${DAEMONS[@]}"; do before[$name]=$(cpu_ticks "${PIDS[$name]}"); done
  t0=$(date +%s.%N)
  "$LOADGEN" --url "$API_URL" --quiet --json "$@" >"$out" &
  PIDS[loadgen]=$!
  while kill -0 "${PIDS[loadgen]}" 2>/dev/null; do
    now=$(cpu_ticks "${PIDS[loadgen]}")
    [[ -n $now && $now != 0 ]] && lg_ticks=$now
    sleep 0.2
  done
  wait "${PIDS[loadgen]}" || die "loadgen failed ($*)"
  unset "PIDS[loadgen]"
  t1=$(date +%s.%N)
  {
    printf '{"wall_s": %s, "clk_tck": %s, "ticks": {' "$(python3 -c "print($t1 - $t0)")" "$(getconf CLK_TCK)"
    for name in broker "${DAEMONS[@]}"; do
      printf '"%s": %s, ' "$name" "$(($(cpu_ticks "${PIDS[$name]}") - ${before[$name]}))"
    done
    printf '"loadgen": %s}}\n' "$lg_ticks"
  } >"$out.cpu.json"
}

# ---------------------------------------------------------------------------------------------
log "2. the mesh at full speed: RUST_LOG=warn, ${MAX_SECS}s, $CONCURRENCY in flight"
fresh_mesh warn warn
# Idle CPU over 5 s: nothing is produced, so any CPU used is polling.
declare -A idle0=()
for name in broker "${DAEMONS[@]}"; do idle0[$name]=$(cpu_ticks "${PIDS[$name]}"); done
sleep 5
{
  printf '{"wall_s": 5, "clk_tck": %s, "ticks": {' "$(getconf CLK_TCK)"
  sep=
  for name in broker "${DAEMONS[@]}"; do
    printf '%s"%s": %s' "$sep" "$name" "$(($(cpu_ticks "${PIDS[$name]}") - ${idle0[$name]}))"
    sep=', '
  done
  printf '}}\n'
} >"$WORK/idle.cpu.json"
daemons_json rss_kb >"$WORK/rss-idle.json"
warm_up max 1
run_loadgen "$WORK/max.json" --concurrency "$CONCURRENCY" --duration "${MAX_SECS}s" --seed 2

daemons_json hwm_kb >"$WORK/rss-peak.json"
stop_mesh

log "3. the mesh at $RATE orders/s for ${RATE_SECS}s"
fresh_mesh warn rate
warm_up rate 6
run_loadgen "$WORK/rate.json" --rate "$RATE" --duration "${RATE_SECS}s" --seed 3
stop_mesh

if [[ $INFO_RUN == 1 ]]; then
  log "4. the mesh at full speed again with RUST_LOG=info"
  fresh_mesh info info
  warm_up info 4
  run_loadgen "$WORK/max-info.json" --concurrency "$CONCURRENCY" --duration "${MAX_SECS}s" --seed 5
  stop_mesh
fi

# ---------------------------------------------------------------------------------------------
log "results"
cd "$ROOT"
python3 - "$WORK" "$BENCH_OUT" "$RAW_RECORDS" "$MAX_SECS" "$CONCURRENCY" "$RATE" "$RATE_SECS" "$PIPELINE_UNITS" <<'PY'
import datetime, json, os, platform, subprocess, sys

work, out_path, raw_records, max_secs, concurrency, rate, rate_secs, pipeline_units = sys.argv[1:9]
load = lambda name: json.load(open(os.path.join(work, name)))
have = lambda name: os.path.exists(os.path.join(work, name))

raw = load("raw.json")
runs = {"max": load("max.json"), "rate": load("rate.json")}
cpu = {"max": load("max.json.cpu.json"), "rate": load("rate.json.cpu.json")}
if have("max-info.json"):
    runs["max-info"] = load("max-info.json")
    cpu["max-info"] = load("max-info.json.cpu.json")
rss_idle = load("rss-idle.json")
idle_cpu = load("idle.cpu.json")
rss_peak = load("rss-peak.json")

# Records per order: produced (Pedidos, Notificacoes x2, Pedidos_validos|recusados) and consumed
# as the issue counts them (fraud 1, notification 2, monitoring 4) ...
P, C = 4, 7
# ... and as the mesh really reads them: the API's read model also follows Pedidos and
# Notificacoes (3 more per order).
C_ALL = 10
rp, rc = raw["produced_per_s"], raw["consumed_per_s"]
def mix_capacity(p, c):
    """Records/s the broker sustains for p produced + c consumed records (costs add up)."""
    return (p + c) / (p / rp + c / rc)

mx = runs["max"]
orders = mx["throughput"]["verdicted_per_s"] or 0.0
mesh_records = orders * (P + C)
# The capacity the mesh is compared with: the pipeline phase, the same records through the
# same shape (4 produced, 7 consumed, live, by as many clients), without HTTP or daemons.
shape_cap = raw["pipeline_records_per_s"]
shape_orders = raw["pipeline_units_per_s"]
ratio = mesh_records / shape_cap
# The older estimate from the isolated produce and catch-up-read rates, kept for comparison.
cap = mix_capacity(P, C)
ratio_formula = mesh_records / cap
ratio_all = orders * (P + C_ALL) / mix_capacity(P, C_ALL)
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
w(f"Command: `scripts/bench.sh` (RAW_RECORDS={raw_records} PIPELINE_UNITS={pipeline_units} MAX_SECS={max_secs} CONCURRENCY={concurrency} RATE={rate} RATE_SECS={rate_secs})  ")
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
w("### 1. Broker alone (`loadgen raw`)")
w("")
w(f"{raw['records']} records to a {raw['partitions']}-partition topic; key {raw['avg_key_bytes']:.0f} B, "
  f"value {raw['avg_value_bytes']:.0f} B JSON, headers {raw['avg_headers_bytes']:.0f} B; "
  "idempotent, acks=all, linger 1 ms, lz4 (`shared::kafka::producer`).")
w("")
w("| direction | records/s | seconds |")
w("|---|---:|---:|")
w(f"| produced (all acknowledged) | {rp:,.0f} | {raw['produce_seconds']:.2f} |")
w(f"| consumed back (catch-up read from the start) | {rc:,.0f} | {raw['consume_seconds']:.2f} |")
w(f"| live: produced while a consumer tails the topic, each record produced and read | {raw['live_per_s']:,.0f} | {raw['live_seconds']:.2f} |")
w(f"| pipeline: {raw['pipeline_units']} orders through the mesh's shape (2 producers, 3 consumers, 4 topics; 4 produced + 7 consumed per order), no daemons | **{shape_cap:,.0f}** ({shape_orders:,.0f} orders/s) | {raw['pipeline_seconds']:.2f} |")
w(f"| estimate from the isolated rates above, 4 produced + 7 consumed (earlier benchmarks' denominator) | {cap:,.0f} | |")
w("")

def cpu_row(c):
    wall, tck = c["wall_s"], c["clk_tck"]
    return {k: v / tck / wall for k, v in c["ticks"].items()}

def run_table(title, key):
    r = runs[key]
    t = r["throughput"]
    w(f"### {title}")
    w("")
    s = r["settings"]
    pace = f"{s['target_rate']:.0f} orders/s" if s["target_rate"] else f"full speed, {s['concurrency']} in flight"
    w(f"{r['send_seconds']:.1f} s at {pace}: sent {r['sent']}, accepted (202) {r['accepted']}, "
      f"errors {r['errors']['total']} {r['errors']['by_kind'] or ''}, verdicts {r['verdicts']} "
      f"(Aprovado {r['aprovado']}, Recusado {r['recusado']}), verdicts missing {r['verdicts_missing']}.")
    w("")
    w(f"- accepted {t['accepted_per_s']:,.1f} orders/s, verdicted {t['verdicted_per_s']:,.1f} orders/s")
    if r.get("analise_after_verdict"):
        w(f"- {r['analise_after_verdict']} orders had their verdict on Notificacoes before their Analise event")
    if s["target_rate"]:
        w(f"- sender fell behind schedule by at most {r['max_schedule_lag_ms']:.1f} ms")
    w("")
    w("| latency (ms) | count | p50 | p90 | p99 | max |")
    w("|---|---:|---:|---:|---:|---:|")
    for name, k in [("POST → 202", "post_202"), ("POST → Analise", "post_analise"), ("POST → verdict", "post_verdict")]:
        l = r["latency_ms"][k]
        w(f"| {name} | {l['count']} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} |")
    w("")
    c = cpu_row(cpu[key])
    w("CPU used during the run (cores; the machine has " + sh("nproc") + "): " +
      ", ".join(f"{k} {v:.2f}" for k, v in c.items()) + f"; total {sum(c.values()):.2f}.")
    w("")

run_table("2. The mesh at full speed (daemons at RUST_LOG=warn)", "max")
run_table(f"3. The mesh at {rate} orders/s (RUST_LOG=warn)", "rate")
if "max-info" in runs:
    run_table("4. The mesh at full speed with default logging (RUST_LOG=info)", "max-info")

w("### Memory")
w("")
w("| daemon | idle VmRSS (MB) | peak VmHWM after run 2 (MB) |")
w("|---|---:|---:|")
for k in rss_idle:
    w(f"| {k} | {rss_idle[k] / 1024:.1f} | {rss_peak.get(k, 0) / 1024:.1f} |")
w("")

ic = cpu_row(idle_cpu)
w("CPU used by the idle mesh over 5 s, before any order (cores): " +
  ", ".join(f"{k} {v:.2f}" for k, v in ic.items()) + f"; total {sum(ic.values()):.2f}.")
w("")

max_rss = max(rss_idle.values()) / 1024
verdict_note = ""
if runs["rate"]["verdicts_missing"]:
    verdict_note = f" ({runs['rate']['verdicts_missing']} verdicts missing)"
targets = [
    (f"end-to-end throughput ≥ 25 % of the broker's raw capacity for the same records",
     f"{orders:,.0f} orders/s × {P + C} = {mesh_records:,.0f} records/s = {ratio:.1%} of the pipeline's {shape_cap:,.0f} "
     f"({ratio_formula:.1%} of the isolated-rates estimate {cap:,.0f}; counting the API read model's 3 reads too: {ratio_all:.1%})",
     ratio >= 0.25),
    (f"p99 POST → verdict ≤ 25 ms at {rate} orders/s",
     f"{p99:.2f} ms (verdicted {rate_ok:,.1f} orders/s){verdict_note}", p99 <= 25.0 and rate_ok >= 0.95 * float(rate)),
    ("idle RSS ≤ 30 MB per daemon", f"largest {max_rss:.1f} MB", max_rss <= 30.0),
]
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
