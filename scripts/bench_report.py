#!/usr/bin/env python3
"""The pedidos benchmark's report: turns a run's files (scripts/bench.sh's temp dir, kept with
KEEP=1) into the Markdown tables of BENCHMARKS.md, prints them, and optionally writes them between
the `bench:begin` / `bench:end` markers of a file.

    scripts/bench_report.py report WORK [--out BENCHMARKS.md]
    scripts/bench_report.py broker-facts PID JAVA_VERSION_LINE LAUNCHER_VERSION
    scripts/bench_report.py threads NAME=PID...

`report` reads WORK/settings.json (what bench.sh ran, with which knobs) and whatever the phases
left there: loadgen's JSON reports, CPU snapshots (TAG.cpu0.json / TAG.cpu1.json), the broker's
request counters (TAG.req0.prom / TAG.req1.prom, from its JMX exporter) and fraud's backlog runs.
`broker-facts` prints, as JSON, what the report says about a running broker. `threads` prints,
as JSON, each process's CPU time and context switches so far by thread name (TAG.threads0.json /
TAG.threads1.json around the sweep's untracked runs): which threads a rate's CPU goes to.
"""

import argparse
import datetime
import glob
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

# The mesh's daemons, in start order: scripts/lib/daemons.txt, the one list.
DAEMONS = [line.split()[0] for line in (Path(__file__).parent / "lib" / "daemons.txt").read_text().splitlines()
           if line.strip() and not line.startswith("#")]
ORDER = ["broker", *DAEMONS, "loadgen"]

# Records per order: produced (Pedidos, Notificacoes x2, Pedidos_validos|recusados) and consumed
# as the issue counts them (fraud 1, notification 2, monitoring 4) ...
P, C = 4, 7
# ... and as the mesh really reads them: the API's read model also follows Pedidos and
# Notificacoes (3 more per order).
C_ALL = 10

# The broker's requests by kind. The node's own (its broker half heartbeating its controller
# half) are not the mesh's and are left out of the per-order figures.
NODE_REQUESTS = {"BrokerHeartbeat", "BrokerRegistration", "ControllerRegistration", "Vote",
                 "BeginQuorumEpoch", "EndQuorumEpoch", "DescribeQuorum", "FetchSnapshot",
                 "UpdateRaftVoter", "AddRaftVoter", "RemoveRaftVoter"}
KINDS = ["produce", "fetch", "commit", "other"]
# Kafka also counts consumers' and followers' fetches apart, inside Fetch's count.
FETCH_SUBSETS = {"FetchConsumer", "FetchFollower"}


def request_kind(request):
    if request == "Produce":
        return "produce"
    if request == "Fetch":
        return "fetch"
    if request in ("OffsetCommit", "TxnOffsetCommit"):
        return "commit"
    if request in NODE_REQUESTS:
        return "node"
    if request in FETCH_SUBSETS:
        return None
    return "other"


class Run:
    """One bench.sh run's files."""

    def __init__(self, work):
        self.work = work
        self.settings = self.load("settings.json")

    def path(self, name):
        return os.path.join(self.work, name)

    def have(self, name):
        return os.path.exists(self.path(name))

    def load(self, name):
        with open(self.path(name)) as f:
            return json.load(f)

    def cpu_seconds(self, tag):
        """CPU seconds each process used between TAG.cpu0.json and TAG.cpu1.json, and the
        wall-clock seconds between them."""
        a, b = self.load(tag + ".cpu0.json"), self.load(tag + ".cpu1.json")
        wall, tck = b["t"] - a["t"], b["clk_tck"]
        used = {k: (v - a["ticks"].get(k, 0)) / tck for k, v in b["ticks"].items()}
        return {k: used[k] for k in ORDER if k in used}, wall

    def cores(self, tag):
        used, wall = self.cpu_seconds(tag)
        return {k: v / wall for k, v in used.items()}

    def requests(self, tag):
        """Requests the broker served between TAG.req0.prom and TAG.req1.prom, by request type;
        None when the broker's counters were not read."""
        if not (self.have(tag + ".req0.prom") and self.have(tag + ".req1.prom")):
            return None
        a, b = (parse_requests(self.path(tag + s)) for s in (".req0.prom", ".req1.prom"))
        return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0) > 0}


def parse_requests(path):
    """The broker's request counts by type (summed over versions) from a Prometheus scrape of
    kafka.network:type=RequestMetrics,name=RequestsPerSec."""
    counts = {}
    pattern = re.compile(r'^kafka_network_RequestMetrics_Count\{(.*)\}\s+(\S+)$')
    with open(path) as f:
        for line in f:
            m = pattern.match(line.strip())
            if not m or 'name="RequestsPerSec"' not in m.group(1):
                continue
            request = re.search(r'request="([^"]+)"', m.group(1)).group(1)
            counts[request] = counts.get(request, 0) + float(m.group(2))
    return counts


def histogram(path, name):
    """A Prometheus histogram's cumulative buckets (le -> count), summed over its series, with
    its _sum and _count."""
    buckets, total, count = {}, 0.0, 0.0
    with open(path) as f:
        for line in f:
            if line.startswith(name + "_bucket{"):
                le = re.search(r'le="([^"]+)"', line).group(1)
                buckets[float(le)] = buckets.get(float(le), 0.0) + float(line.split()[-1])
            elif line.startswith(name + "_sum"):
                total += float(line.split()[-1])
            elif line.startswith(name + "_count"):
                count += float(line.split()[-1])
    return buckets, total, count


def ack_between(run, tag):
    """The API's wait for the broker's acknowledgement between TAG.api0.prom and TAG.api1.prom
    (pedidos_broker_ack_duration_seconds): (p50 upper bucket bound, mean) in ms, and the
    producer's last average round trip (pedidos_broker_rtt_seconds, librdkafka's statistics)."""
    if not (run.have(tag + ".api0.prom") and run.have(tag + ".api1.prom")):
        return None
    name = "pedidos_broker_ack_duration_seconds"
    (b0, s0, c0), (b1, s1, c1) = (histogram(run.path(tag + x), name) for x in (".api0.prom", ".api1.prom"))
    n = c1 - c0
    if n <= 0:
        return None
    p50 = next((le for le in sorted(b1) if b1[le] - b0.get(le, 0.0) >= n / 2), float("inf"))
    rtt = []
    with open(run.path(tag + ".api1.prom")) as f:
        rtt = [float(line.split()[-1]) for line in f if line.startswith("pedidos_broker_rtt_seconds{")]
    return {"p50_le_ms": p50 * 1000, "mean_ms": (s1 - s0) / n * 1000, "acks": n,
            "rtt_ms": max(rtt) * 1000 if rtt else None}


def by_kind(requests):
    kinds = {k: 0.0 for k in [*KINDS, "node"]}
    for request, n in requests.items():
        kind = request_kind(request)
        if kind:
            kinds[kind] += n
    return kinds


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return "?"


def fmt_lat(l, key):
    return "–" if not l else f"{l[key]:.1f}"


def report(run):
    s = run.settings
    L = []
    w = L.append
    ran = s["phases"].split()
    partial = ran != s["all_phases"].split()
    broker = run.load("broker.json")
    nproc = sh("nproc")

    has_raw = run.have("raw.json")
    if has_raw:
        raw, raw_cold = run.load("raw.json"), run.load("raw-warmup.json")
        rp, rc = raw["produced_per_s"], raw["consumed_per_s"]
    keys = [k for k in ["max", "rate", "max-info"] if run.have(k + ".json")]
    runs = {k: run.load(k + ".json") for k in keys}
    cpu = {k: run.cores(k + ".json") for k in keys}
    cpu_secs = {k: run.cpu_seconds(k + ".json")[0] for k in keys}
    has_max = "max" in runs
    if has_max:
        rss_idle, rss_peak = run.load("rss-idle.json"), run.load("rss-peak.json")
        idle = run.cores("idle")

    def mix_capacity(p, c):
        """Records/s the broker sustains for p produced + c consumed records (costs add up)."""
        return (p + c) / (p / rp + c / rc)

    if has_max:
        mx = runs["max"]
        orders = mx["throughput"]["verdicted_per_s"] or 0.0
        mesh_records = orders * (P + C)
        idle_daemons = sum(idle[k] for k in DAEMONS)
    if has_raw:
        # The capacity the mesh is compared with: the pipeline phase, the same records through
        # the same shape (4 produced, 7 consumed, live, by as many clients), without HTTP or
        # daemons; and the older estimate from the isolated produce and catch-up-read rates.
        shape_cap = raw["pipeline_records_per_s"]
        shape_orders = raw["pipeline_units_per_s"]
        cap = mix_capacity(P, C)
    if has_raw and has_max:
        ratio = mesh_records / shape_cap
        ratio_formula = mesh_records / cap
        ratio_all = orders * (P + C_ALL) / mix_capacity(P, C_ALL)
    rate = s["rate"]
    if "rate" in runs:
        p99 = runs["rate"]["latency_ms"]["post_verdict"]["p99_ms"]
        rate_ok = runs["rate"]["throughput"]["verdicted_per_s"] or 0.0

    w(f"Date: {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}  ")
    flag = " --short" if s["short"] else ""
    auth, store, gets = s["auth"], s["store"], s["gets"]
    extra = (f" BENCH_PHASES=\"{s['phases']}\"" if partial else "") + (f" BENCH_AUTH={auth}" if auth != "none" else "")
    extra += (f" BENCH_STORE={store}" if store != "sqlite" else "") + (" BENCH_GETS=1" if gets else "")
    knobs = " ".join(f"{k}={s['knobs'][k]}" for k in s["knobs"])
    w(f"Command: `scripts/bench.sh{flag}` ({knobs}{extra})  ")
    if auth == "jwt":
        w("Auth: api.auth = \"jwt\", HS256 with a secret generated for the run; loadgen sends one operator token "
          "(`loadgen token bench --ops`) with every order, so each request is verified by the API.  ")
    w("Order store: " + ("PostgreSQL, a server of the bench's own (default settings), one database per mesh"
                         if store == "postgres" else "SQLite, the default, one file per mesh in the temp dir")
      + ("; loadgen GETs every order right after its 202 (`--get-after-202`)" if gets else "") + ".  ")
    data_fs = sh(f"df -PT {run.work} | awk 'NR == 2 {{ print $2 }}'") or "?"
    build = f", commit {broker['commit']}" if broker.get("commit") else ""
    if not broker["version_source"].startswith("the broker's"):
        build += f" (version from {broker['version_source']})"
    w(f"Broker: Apache Kafka {broker['version']}{build}, one KRaft node (broker + controller in one JVM, "
      f"`scripts/kafka.sh run`), a fresh one per run; heap {broker['heap']}; {broker['java']}; data on {data_fs}  ")
    w(f"Machine: `nproc` = {nproc}; `uname -a` = `{sh('uname -a')}`  ")
    commit = open(run.path("commit")).read().split() if run.have("commit") else []
    if commit:
        dirty = f" plus uncommitted changes to {commit[1]} tracked files" if len(commit) > 1 and commit[1] != "0" else ""
        w(f"Code: commit {commit[0]}{dirty}  ")
    loads = open(run.path("loadavg-start")).read().strip()
    if run.have("loadavg-end"):
        loads += f" at the start, {open(run.path('loadavg-end')).read().strip()} at the end"
    w(f"Load average (1/5/15 min): {loads}; other processes on the machine compete with the mesh for its "
      "cores, so throughput and latency move with them; request counts and CPU seconds per order much less.  ")
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
          "the daemons' producer settings (`shared::kafka::producer`). Measured after a pass a quarter "
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
        st = r["settings"]
        pace = f"{st['target_rate']:.0f} orders/s" if st["target_rate"] else f"full speed, {st['concurrency']} in flight"
        w(f"{r['send_seconds']:.1f} s at {pace}, after {s['knobs']['WARM_SECS']} s at full speed to warm up: sent {r['sent']}, "
          f"accepted (202) {r['accepted']}, errors {r['errors']['total']} {r['errors']['by_kind'] or ''}, "
          f"verdicts {r['verdicts']} (Aprovado {r['aprovado']}, Recusado {r['recusado']}), verdicts missing {r['verdicts_missing']}.")
        w("")
        w(f"- accepted {t['accepted_per_s']:,.1f} orders/s, verdicted {t['verdicted_per_s']:,.1f} orders/s")
        if r.get("analise_after_verdict"):
            w(f"- {r['analise_after_verdict']} orders had their verdict on Notificacoes before their Analise event")
        if st["target_rate"]:
            w(f"- sender fell behind schedule by at most {r['max_schedule_lag_ms']:.1f} ms")
        w("")
        w("| latency (ms) | count | p50 | p90 | p99 | max |")
        w("|---|---:|---:|---:|---:|---:|")
        for name, k in [("POST → 202", "post_202"), ("202 → GET 200", "get_after_202"),
                        ("POST → Analise", "post_analise"), ("POST → verdict", "post_verdict")]:
            l = r["latency_ms"].get(k)
            if not l:
                continue
            w(f"| {name} | {l['count']} | {l['p50_ms']:.2f} | {l['p90_ms']:.2f} | {l['p99_ms']:.2f} | {l['max_ms']:.2f} |")
        w("")
        w(f"CPU used during the run (cores; the machine has {nproc}): {cpu_line(cpu[key])}.")
        w("")
        if r["accepted"]:
            # CPU time between the snapshots (the run and its drain) over the orders accepted.
            per_order = {k: v / r["accepted"] * 1e6 for k, v in cpu_secs[key].items()}
            daemons = sum(per_order.get(k, 0.0) for k in DAEMONS)
            w("CPU per accepted order (µs; CPU time during the run ÷ orders accepted): "
              + ", ".join(f"{k} {v:,.0f}" for k, v in per_order.items()) + f"; the four daemons {daemons:,.0f}.")
            w("")
        req = run.requests(key + ".json")
        if req and r["accepted"]:
            w("Broker requests per accepted order (loadgen's own reads included): " + requests_line(req, r["accepted"]) + ".")
            w("")

    if has_max:
        run_table("2. The mesh at full speed (daemons at RUST_LOG=warn)", "max")
    if "rate" in runs:
        run_table(f"3. The mesh at {rate} orders/s (RUST_LOG=warn)", "rate")
    if "max-info" in runs:
        run_table("4. The mesh at full speed with default logging (RUST_LOG=info)", "max-info")

    sweep = sweep_section(run, w, nproc)
    eos = eos_section(run, w)

    if has_max:
        w("### The idle mesh, and memory")
        w("")
        w(f"Idle CPU: {s['knobs']['IDLE_SECS']} s without traffic, after run 2's warm-up and a 3-s pause (so the broker's "
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

    # The targets whose phases ran (issue 26's, then the older ones still checked).
    targets = []
    if sweep.get(100):
        x = sweep[100]
        targets.append(("the four daemons at 100 orders/s paced ≤ 0.10 cores", f"{x['daemon_cores']:.3f} cores",
                        x["daemon_cores"] <= 0.10))
        if x["req_total"] is not None:
            targets.append(("broker requests per order at 100 orders/s (mesh only) ≤ 9", f"{x['req_total']:.2f}",
                            x["req_total"] <= 9))
        targets.append(("broker CPU at 100 orders/s paced: at most half of issue 26's 0.41–0.87 cores (≤ 0.20)",
                        f"{x['cores'].get('broker', 0):.3f} cores", x["cores"].get("broker", 0) <= 0.205))
        if x["post_202"]:
            targets.append(("p50 POST → 202 at 100 orders/s: one broker round trip",
                            f"{x['post_202']['p50_ms']:.2f} ms (the API's produce round trip: see the sweep's notes)", None))
    if sweep.get(1000):
        x = sweep[1000]
        if x["req_total"] is not None:
            targets.append(("broker requests per order at 1,000 orders/s (mesh only) ≤ 2.5", f"{x['req_total']:.2f}",
                            x["req_total"] <= 2.5))
        if x["post_verdict"]:
            v = x["post_verdict"]["p99_ms"]
            targets.append(("p99 POST → verdict at 1,000 orders/s ≤ 50 ms", f"{v:.1f} ms", v <= 50.0))
    if has_raw and has_max:
        targets.append(("full speed ≥ 30 % of the broker's pipeline capacity for the same records (same run)",
            f"{orders:,.0f} orders/s × {P + C} = {mesh_records:,.0f} records/s = {ratio:.1%} of the pipeline's {shape_cap:,.0f} "
            f"({ratio_formula:.1%} of the isolated-rates estimate {cap:,.0f}; counting the API read model's 3 reads too: {ratio_all:.1%})",
            ratio >= 0.30))
    if eos:
        targets.append(("exactly-once ≥ 70 % of at-least-once, fraud on a backlog",
                        f"{eos:.1%}", eos >= 0.70))
    if "rate" in runs:
        verdict_note = ""
        if runs["rate"]["verdicts_missing"]:
            verdict_note = f" ({runs['rate']['verdicts_missing']} verdicts missing)"
        targets.append((f"p99 POST → verdict ≤ 25 ms at {rate} orders/s (the older target)",
            f"{p99:.2f} ms (verdicted {rate_ok:,.1f} orders/s){verdict_note}", p99 <= 25.0 and rate_ok >= 0.95 * float(rate)))
    if has_max:
        max_rss = max(rss_idle[k] for k in DAEMONS) / 1024
        targets.append(("the four idle daemons together ≤ 2 % of one core",
            f"{100 * idle_daemons:.2f} % over {s['knobs']['IDLE_SECS']} s (" + ", ".join(f"{k} {100 * idle[k]:.2f}" for k in DAEMONS)
            + f"; the broker, not counted: {100 * idle['broker']:.2f} %)", idle_daemons <= 0.02))
        targets.append(("idle RSS ≤ 30 MB per daemon", f"largest {max_rss:.1f} MB", max_rss <= 30.0))
    if targets:
        w("### Targets")
        w("")
        w("| target | measured | met |")
        w("|---|---|---|")
        for name, measured, ok in targets:
            met = "see below" if ok is None else ("yes" if ok else "**no**")
            w(f"| {name} | {measured} | {met} |")
    return "\n".join(L) + "\n"


def requests_line(req, orders):
    kinds = by_kind(req)
    mesh = sum(kinds[k] for k in KINDS)
    top = sorted(((n, r) for r, n in req.items() if request_kind(r) == "other"), reverse=True)[:4]
    others = ", ".join(f"{r} {n / orders:.2f}" for n, r in top)
    return (", ".join(f"{k} {kinds[k] / orders:.2f}" for k in KINDS) + f"; **total {mesh / orders:.2f}**"
            + (f" (other: {others})" if others else ""))


def sweep_section(run, w, nproc):
    """The paced sweep: per rate, a tracked run (latency) and an untracked one (CPU and the
    broker's requests, loadgen reading nothing), on one fresh mesh per rate."""
    rates = [int(r) for r in run.settings.get("sweep_rates", "").split()]
    found = {}
    for r in rates:
        tag = f"sweep-{r}"
        if not run.have(tag + ".json"):
            continue
        quiet, tracked = run.load(tag + ".json"), None
        if run.have(tag + "-track.json"):
            tracked = run.load(tag + "-track.json")
        used, wall = run.cpu_seconds(tag + ".json")
        n = quiet["accepted"] or 1
        req = run.requests(tag + ".json")
        kinds = by_kind(req) if req is not None else None
        found[r] = {
            "quiet": quiet, "tracked": tracked, "wall": wall,
            "cores": {k: v / wall for k, v in used.items()},
            "per_order": {k: v / n * 1e6 for k, v in used.items()},
            "daemon_cores": sum(used.get(k, 0) for k in DAEMONS) / wall,
            "req": req, "kinds": kinds,
            "req_total": sum(kinds[k] for k in KINDS) / n if kinds else None,
            "post_202": (tracked or quiet)["latency_ms"]["post_202"],
            "post_verdict": tracked["latency_ms"]["post_verdict"] if tracked else None,
        }
    if not found:
        return found
    secs = run.settings["knobs"].get("SWEEP_SECS", "?")
    w("### 5. Paced sweep: the mesh at 100, 300 and 1,000 orders/s")
    w("")
    warm = run.settings["knobs"].get("SWEEP_WARM_SECS", run.settings["knobs"]["WARM_SECS"])
    w(f"Per rate, one fresh node and mesh, {warm} s at full speed to warm up, then {secs} s "
      "at the rate with loadgen reading the verdicts back (the latencies), then "
      f"{secs} s at the rate with `loadgen --no-track` (nothing reads Kafka but the mesh: the CPU "
      "and the broker's requests). Requests are the broker's own count (JMX "
      "`kafka.network:type=RequestMetrics,name=RequestsPerSec`, read through the Prometheus JMX exporter) "
      "over the untracked run, divided by the orders accepted; every request the node served is "
      "counted except its own heartbeats to its controller half. *commit* is OffsetCommit and "
      "TxnOffsetCommit.")
    w("")
    w("| orders/s | accepted/s | POST → 202 p50 / p99 (ms) | POST → verdict p50 / p99 (ms) | four daemons (cores) | broker (cores) "
      f"| CPU µs per order: {' / '.join([*DAEMONS, 'broker'])} | requests per order: produce / fetch / commit / other = total |")
    w("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r, x in found.items():
        q = x["quiet"]
        p2, pv = x["post_202"], x["post_verdict"]
        po = x["per_order"]
        if x["kinds"]:
            n = q["accepted"] or 1
            req = " / ".join(f"{x['kinds'][k] / n:.2f}" for k in KINDS) + f" = **{x['req_total']:.2f}**"
        else:
            req = "not read"
        w(f"| {r:,} | {q['throughput']['accepted_per_s']:,.1f} | {fmt_lat(p2, 'p50_ms')} / {fmt_lat(p2, 'p99_ms')} "
          f"| {fmt_lat(pv, 'p50_ms')} / {fmt_lat(pv, 'p99_ms')} | {x['daemon_cores']:.3f} | {x['cores'].get('broker', 0):.3f} "
          f"| " + " / ".join(f"{po.get(k, 0):,.0f}" for k in [*DAEMONS, "broker"]) + f" | {req} |")
    w("")
    for r, x in found.items():
        t = x["tracked"]
        notes = []
        if t:
            if t["verdicts_missing"]:
                notes.append(f"{t['verdicts_missing']} verdicts missing")
            if t.get("analise_after_verdict"):
                notes.append(f"{t['analise_after_verdict']} verdicts on Notificacoes before their Analise")
            if t["errors"]["total"]:
                notes.append(f"{t['errors']['total']} errors {t['errors']['by_kind']}")
        if x["quiet"]["errors"]["total"]:
            notes.append(f"untracked run: {x['quiet']['errors']['total']} errors")
        if x["req"]:
            n = x["quiet"]["accepted"] or 1
            others = sorted(((v, k) for k, v in x["req"].items() if request_kind(k) == "other"), reverse=True)[:5]
            if others:
                notes.append("other: " + ", ".join(f"{k} {v / n:.2f}" for v, k in others))
        ack = ack_between(run, f"sweep-{r}")
        if ack:
            rtt = f"; the API producer's average round trip (librdkafka) {ack['rtt_ms']:.2f} ms" if ack["rtt_ms"] else ""
            notes.append(f"the API's waits for the broker's acknowledgement (`pedidos_broker_ack_duration_seconds`, "
                         f"{ack['acks'] / max(1, x['quiet']['accepted']):.1f} per order): mean {ack['mean_ms']:.2f} ms, "
                         f"p50 ≤ {ack['p50_le_ms']:g} ms{rtt}")
        if notes:
            w(f"- {r:,} orders/s: " + "; ".join(notes))
    w("")
    threads = {r: {name: threads_line(run, f"sweep-{r}", name, x["quiet"]["accepted"] or 1,
                                      most=6 if name == "broker" else None)
                   for name in [*DAEMONS, "broker"]}
               for r, x in found.items()}
    if any(line for by_name in threads.values() for line in by_name.values()):
        w("Where the CPU went over the untracked runs, by thread name (µs per order, with context "
          "switches per order in brackets; `/proc/<pid>/task/*/schedstat` and `status`; the broker's "
          "six busiest):")
        w("")
        for r, by_name in threads.items():
            for name, line in by_name.items():
                if line:
                    w(f"- {r:,} orders/s, {name}: {line}")
        w("")
    return found


def eos_section(run, w):
    """Fraud alone on a backlog, at-least-once then exactly-once; the ratio of their rates."""
    modes = [("eos-alo", "at-least-once"), ("eos-txn", "exactly-once (`fraud.transactional = true`)")]
    found = {tag: run.load(tag + ".json") for tag, _ in modes if run.have(tag + ".json")}
    if not found:
        return None
    preload = run.load("eos-preload.json") if run.have("eos-preload.json") else None
    w("### 6. Exactly-once: fraud alone on a backlog")
    w("")
    w(f"One fresh node; the API alone takes {preload['accepted'] if preload else '?'} orders from loadgen "
      "(`--no-track`, full speed) and is stopped; then fraud alone reads that backlog of `Pedidos` "
      "from the start, in a consumer group of its own, at-least-once, then again (a new group) "
      "exactly-once. Timed from the first record fraud took (its metrics, polled every 0.1 s) to "
      "the last output acknowledged (committed, in exactly-once mode).")
    w("")
    w("| mode | orders | seconds | orders/s | fraud (cores) | fraud CPU µs per order | broker CPU µs per order | requests per order: produce / fetch / commit / other = total |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|")
    rates = {}
    for tag, name in modes:
        if tag not in found:
            continue
        f = found[tag]
        used, wall = run.cpu_seconds(tag)
        n = f["orders"]
        rates[tag] = n / wall
        req = run.requests(tag)
        if req:
            kinds = by_kind(req)
            reqs = " / ".join(f"{kinds[k] / n:.3f}" for k in KINDS) + f" = {sum(kinds[k] for k in KINDS) / n:.3f}"
        else:
            reqs = "not read"
        w(f"| {name} | {n:,} | {wall:.2f} | {n / wall:,.0f} | {used.get('fraud', 0) / wall:.2f} "
          f"| {used.get('fraud', 0) / n * 1e6:.1f} | {used.get('broker', 0) / n * 1e6:.1f} | {reqs} |")
    w("")
    if len(rates) == 2:
        ratio = rates["eos-txn"] / rates["eos-alo"]
        w(f"Exactly-once at **{ratio:.1%}** of at-least-once's rate.")
        w("")
        return ratio
    return None


def write_block(out_path, text):
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    block = f"{begin}\n{text}{end}"
    old = open(out_path).read() if os.path.exists(out_path) else "# Benchmarks\n\n" + begin + "\n" + end + "\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    with open(out_path, "w") as f:
        f.write(new)
    print(f"bench: figures written to {out_path}", file=sys.stderr)


def broker_facts(pid, java, launcher_version):
    """The broker's version, read from the kafka-clients jar the running JVM has open, as Kafka's
    AppInfoParser reads it (its log line is silenced); kafka.sh's KAFKA_VERSION, marked as such,
    if that fails. And its heap."""
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
    return facts


def threads_snapshot(pairs):
    """NAME=PID pairs -> {"t": now, "procs": {NAME: {thread name: [ns on CPU, context switches,
    threads]}}}, from /proc/PID/task/*: schedstat (exact CPU time) and status (voluntary and
    involuntary switches). Threads that exited before the snapshot are not in it."""
    procs = {}
    for pair in pairs:
        name, pid = pair.split("=", 1)
        by_name = {}
        for task in glob.glob(f"/proc/{pid}/task/*"):
            try:
                with open(task + "/comm") as f:
                    comm = f.read().strip()
                with open(task + "/schedstat") as f:
                    ns = int(f.read().split()[0])
                switches = 0
                with open(task + "/status") as f:
                    for line in f:
                        key, _, value = line.partition(":")
                        if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                            switches += int(value)
            except (OSError, ValueError, IndexError):
                continue
            entry = by_name.setdefault(comm, [0, 0, 0])
            entry[0] += ns
            entry[1] += switches
            entry[2] += 1
        procs[name] = by_name
    return {"t": datetime.datetime.now().timestamp(), "procs": procs}


def threads_line(run, tag, name, orders, most=None):
    """NAME's threads between TAG.threads0.json and TAG.threads1.json: µs and context switches
    per order by thread name, the busiest first (the `most` busiest, if given); None when not
    measured."""
    if not (run.have(tag + ".threads0.json") and run.have(tag + ".threads1.json")):
        return None
    a, b = (run.load(tag + s)["procs"].get(name, {}) for s in (".threads0.json", ".threads1.json"))
    rows = []
    for comm, (ns, switches, count) in b.items():
        ns0, sw0, _ = a.get(comm, (0, 0, 0))
        if ns - ns0 > 0:
            rows.append(((ns - ns0) / 1e3 / orders, (switches - sw0) / orders, comm, count))
    rows.sort(reverse=True)
    if not rows:
        return None
    return ", ".join(f"{comm}{f' ×{count}' if count > 1 else ''} {us:,.0f} µs ({sw:.1f})"
                     for us, sw, comm, count in rows[:most] if us >= 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="print (and write) the report of a run's files")
    rep.add_argument("work", help="the run's directory (bench.sh's temp dir, kept with KEEP=1)")
    rep.add_argument("--out", default="", help="a file whose bench:begin/bench:end block gets the report")
    facts = sub.add_parser("broker-facts", help="what the report says about a running broker, as JSON")
    facts.add_argument("pid")
    facts.add_argument("java")
    facts.add_argument("launcher_version")
    threads = sub.add_parser("threads", help="each process's CPU time and context switches by thread name, as JSON")
    threads.add_argument("pairs", nargs="+", metavar="NAME=PID")
    args = parser.parse_args()
    if args.command == "threads":
        print(json.dumps(threads_snapshot(args.pairs)))
        return
    if args.command == "broker-facts":
        print(json.dumps(broker_facts(args.pid, args.java, args.launcher_version)))
        return
    text = report(Run(args.work))
    print(text)
    if args.out:
        write_block(args.out, text)


if __name__ == "__main__":
    main()
