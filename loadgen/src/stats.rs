//! Pure bookkeeping: latency histograms, percentiles, error kinds, rates, and the final reports
//! (text and JSON). No I/O, no clocks: callers pass durations in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest latency a histogram tracks exactly; longer ones are clamped to it (10 minutes).
const MAX_TRACKED_MICROS: u64 = 600_000_000;

/// A latency distribution, recorded in microseconds with 3 significant digits.
#[derive(Clone)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_TRACKED_MICROS, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(micros.max(1));
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> LatencySummary {
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| round3(micros as f64 / 1000.0);
        LatencySummary {
            count: self.hist.len(),
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p90_ms: ms(self.hist.value_at_quantile(0.90)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            mean_ms: round3(self.hist.mean() / 1000.0),
        }
    }
}

/// Percentiles of one latency, in milliseconds. All zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Why a request did not end in a 202 with an order in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorKind {
    /// Any status other than 202.
    Http(u16),
    /// Could not connect, or the connection broke mid-request.
    Connection,
    /// No complete answer within the request timeout.
    Timeout,
    /// A 202 whose body carries no order id.
    InvalidResponse,
}

impl ErrorKind {
    /// The key used in reports: `http_503`, `connection`, `timeout`, `invalid_response`.
    pub fn label(self) -> String {
        match self {
            ErrorKind::Http(code) => format!("http_{code}"),
            ErrorKind::Connection => "connection".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::InvalidResponse => "invalid_response".into(),
        }
    }
}

/// Error counts by kind, in a stable order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    counts: BTreeMap<ErrorKind, u64>,
}

impl ErrorCounts {
    pub fn add(&mut self, kind: ErrorKind) {
        *self.counts.entry(kind).or_default() += 1;
    }
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
    pub fn by_label(&self) -> BTreeMap<String, u64> {
        self.counts.iter().map(|(k, n)| (k.label(), *n)).collect()
    }
}

/// `count / elapsed`, 0 when no time passed.
pub fn per_second(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        round1(count as f64 / secs)
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `1.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms, 2m or 1h"))?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m or h)"
            ))
        }
    };
    let secs = value * scale;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// What was asked of the run, echoed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    pub url: String,
    /// Orders per second aimed at; `None` means as fast as `concurrency` allows.
    pub target_rate: Option<f64>,
    pub concurrency: usize,
    pub seed: u64,
    pub users: usize,
    /// Whether verdicts were tracked on Kafka.
    pub tracked: bool,
}

/// The raw material of a run's report.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    pub sent: u64,
    pub accepted: u64,
    pub errors: ErrorCounts,
    /// From the first request sent to the last response received.
    pub send_phase: Duration,
    pub post_202: Option<LatencySummary>,
    pub post_analise: Option<LatencySummary>,
    pub post_verdict: Option<LatencySummary>,
    /// Accepted orders whose `Analise` / verdict event was seen on `Notificacoes`.
    pub analise_seen: u64,
    pub verdicts: u64,
    pub aprovado: u64,
    pub recusado: u64,
    /// From the first request sent to the last verdict seen.
    pub verdict_phase: Duration,
    /// Status events on `Notificacoes` that matched no order of this run (other clients).
    pub foreign_events: u64,
    /// Orders whose verdict was on `Notificacoes` before their `Analise` event.
    pub analise_after_verdict: u64,
    /// Rate mode: how far the sender fell behind its schedule at worst.
    pub max_schedule_lag: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub sent_per_s: f64,
    pub accepted_per_s: f64,
    /// `None` when verdicts were not tracked.
    pub verdicted_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub total: u64,
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub post_202: Option<LatencySummary>,
    pub post_analise: Option<LatencySummary>,
    pub post_verdict: Option<LatencySummary>,
}

/// The final report of a load run; serialises to the `--json` object.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub settings: RunSettings,
    pub send_seconds: f64,
    pub sent: u64,
    pub accepted: u64,
    pub errors: Errors,
    pub verdicts: Option<u64>,
    pub aprovado: Option<u64>,
    pub recusado: Option<u64>,
    pub verdicts_missing: Option<u64>,
    pub analise_missing: Option<u64>,
    pub foreign_events: Option<u64>,
    /// Orders whose verdict reached `Notificacoes` before their `Analise` event.
    pub analise_after_verdict: Option<u64>,
    pub throughput: Throughput,
    pub latency_ms: Latencies,
    pub max_schedule_lag_ms: f64,
}

impl RunReport {
    pub fn new(settings: RunSettings, t: &RunTotals) -> Self {
        let tracked = settings.tracked;
        let when = |v: u64| tracked.then_some(v);
        Self {
            send_seconds: round3(t.send_phase.as_secs_f64()),
            sent: t.sent,
            accepted: t.accepted,
            errors: Errors {
                total: t.errors.total(),
                by_kind: t.errors.by_label(),
            },
            verdicts: when(t.verdicts),
            aprovado: when(t.aprovado),
            recusado: when(t.recusado),
            verdicts_missing: when(t.accepted.saturating_sub(t.verdicts)),
            analise_missing: when(t.accepted.saturating_sub(t.analise_seen)),
            foreign_events: when(t.foreign_events),
            analise_after_verdict: when(t.analise_after_verdict),
            throughput: Throughput {
                sent_per_s: per_second(t.sent, t.send_phase),
                accepted_per_s: per_second(t.accepted, t.send_phase),
                verdicted_per_s: tracked.then(|| per_second(t.verdicts, t.verdict_phase)),
            },
            latency_ms: Latencies {
                post_202: t.post_202,
                post_analise: t.post_analise.filter(|_| tracked),
                post_verdict: t.post_verdict.filter(|_| tracked),
            },
            max_schedule_lag_ms: round3(t.max_schedule_lag.as_secs_f64() * 1000.0),
            settings,
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let pace = match s.target_rate {
            Some(rate) => format!("{rate} orders/s (at most {} in flight)", s.concurrency),
            None => format!("max speed ({} in flight)", s.concurrency),
        };
        let _ = writeln!(
            out,
            "loadgen: {:.1} s at {pace} against {}, seed {}, {} users",
            self.send_seconds, s.url, s.seed, s.users
        );
        let t = &self.throughput;
        let _ = write!(
            out,
            "throughput  sent {:.1}/s  accepted {:.1}/s",
            t.sent_per_s, t.accepted_per_s
        );
        match t.verdicted_per_s {
            Some(v) => {
                let _ = writeln!(out, "  verdicted {v:.1}/s");
            }
            None => out.push_str("  verdicted (not tracked)\n"),
        }
        let _ = write!(
            out,
            "counts      sent {}  accepted (202) {}  errors {}",
            self.sent, self.accepted, self.errors.total
        );
        if !self.errors.by_kind.is_empty() {
            let kinds: Vec<String> = self
                .errors
                .by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = write!(out, " ({})", kinds.join(", "));
        }
        out.push('\n');
        if let (Some(v), Some(missing)) = (self.verdicts, self.verdicts_missing) {
            let _ = writeln!(
                out,
                "verdicts    {v} (Aprovado {}, Recusado {})  verdicts missing {missing}  Analise missing {}",
                self.aprovado.unwrap_or(0),
                self.recusado.unwrap_or(0),
                self.analise_missing.unwrap_or(0),
            );
        }
        if let Some(n) = self.analise_after_verdict.filter(|n| *n > 0) {
            let _ = writeln!(
                out,
                "order       {n} verdicts reached Notificacoes before their Analise event"
            );
        }
        if self.foreign_events.unwrap_or(0) > 0 {
            let _ = writeln!(
                out,
                "note        {} status events of other clients' orders were ignored",
                self.foreign_events.unwrap_or(0)
            );
        }
        if s.target_rate.is_some() {
            let _ = writeln!(
                out,
                "schedule    fell behind by at most {:.1} ms",
                self.max_schedule_lag_ms
            );
        }
        let _ = writeln!(
            out,
            "latency ms          count       p50       p90       p99       max"
        );
        let rows = [
            ("POST -> 202", self.latency_ms.post_202),
            ("POST -> Analise", self.latency_ms.post_analise),
            ("POST -> verdict", self.latency_ms.post_verdict),
        ];
        for (name, summary) in rows {
            match summary {
                Some(l) if l.count > 0 => {
                    let _ = writeln!(
                        out,
                        "  {name:<16}{:>8}{:>10.2}{:>10.2}{:>10.2}{:>10.2}",
                        l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
                    );
                }
                Some(_) => {
                    let _ = writeln!(
                        out,
                        "  {name:<16}       0         -         -         -         -"
                    );
                }
                None => {
                    let _ = writeln!(out, "  {name:<16}(not tracked)");
                }
            }
        }
        out
    }
}

/// The pipeline phase of `loadgen raw`: `units` orders, `records` records produced and consumed
/// for them in all, in `elapsed`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PipelineRun {
    pub units: u64,
    pub records: u64,
    pub elapsed: Duration,
}

/// Measured figures of `loadgen raw`.
#[derive(Debug, Clone, Serialize)]
pub struct RawReport {
    pub topic: String,
    pub partitions: i32,
    pub records: u64,
    pub avg_key_bytes: f64,
    pub avg_value_bytes: f64,
    pub avg_headers_bytes: f64,
    pub produce_seconds: f64,
    pub produced_per_s: f64,
    pub consume_seconds: f64,
    pub consumed_per_s: f64,
    /// Producing another `records` while a consumer tails the topic: from the first send to
    /// the last record read.
    pub live_seconds: f64,
    pub live_per_s: f64,
    /// Orders put through the mesh's shape (four topics, two producers, three consumers, all
    /// live); 0 when the phase was skipped, and then the three figures below are null.
    pub pipeline_units: u64,
    /// From the first send until the last record of the last order was read.
    pub pipeline_seconds: Option<f64>,
    pub pipeline_units_per_s: Option<f64>,
    /// Records produced and consumed per second: orders/s × 11.
    pub pipeline_records_per_s: Option<f64>,
}

impl RawReport {
    /// Builds the report from what was measured.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topic: String,
        partitions: i32,
        records: u64,
        sizes: (f64, f64, f64),
        produce: Duration,
        consumed: u64,
        consume: Duration,
        live: Duration,
        pipeline: Option<PipelineRun>,
    ) -> Self {
        Self {
            topic,
            partitions,
            records,
            avg_key_bytes: round1(sizes.0),
            avg_value_bytes: round1(sizes.1),
            avg_headers_bytes: round1(sizes.2),
            produce_seconds: round3(produce.as_secs_f64()),
            produced_per_s: per_second(records, produce),
            consume_seconds: round3(consume.as_secs_f64()),
            consumed_per_s: per_second(consumed, consume),
            live_seconds: round3(live.as_secs_f64()),
            live_per_s: per_second(records, live),
            pipeline_units: pipeline.map_or(0, |p| p.units),
            pipeline_seconds: pipeline.map(|p| round3(p.elapsed.as_secs_f64())),
            pipeline_units_per_s: pipeline.map(|p| per_second(p.units, p.elapsed)),
            pipeline_records_per_s: pipeline.map(|p| per_second(p.records, p.elapsed)),
        }
    }

    pub fn to_text(&self) -> String {
        let pipeline = match (
            self.pipeline_records_per_s,
            self.pipeline_units_per_s,
            self.pipeline_seconds,
        ) {
            (Some(records), Some(units), Some(seconds)) => format!(
                "pipeline    {records:.0} records/s ({units:.0} orders/s, {} orders in {seconds:.2} s; \
                 the mesh's shape: 4 produced + 7 consumed per order, 2 producers and 3 consumers live)\n",
                self.pipeline_units,
            ),
            _ => "pipeline    skipped (--pipeline-units 0)\n".to_string(),
        };
        let mut text = format!(
            "raw broker: {} records to {} ({} partitions); key {:.0} B, value {:.0} B, headers {:.0} B\n\
             produced    {:.0} records/s ({:.2} s, the daemons' producer settings: idempotent, acks=all, lz4)\n\
             consumed    {:.0} records/s ({:.2} s, reading back from the start)\n\
             live        {:.0} records/s ({:.2} s, produced while a consumer tails the topic)\n",
            self.records,
            self.topic,
            self.partitions,
            self.avg_key_bytes,
            self.avg_value_bytes,
            self.avg_headers_bytes,
            self.produced_per_s,
            self.produce_seconds,
            self.consumed_per_s,
            self.consume_seconds,
            self.live_per_s,
            self.live_seconds,
        );
        text.push_str(&pipeline);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_ms() {
        let mut l = Latency::new();
        for i in 1..=100 {
            l.record(ms(i));
        }
        let s = l.summary();
        assert_eq!(s.count, 100);
        // 3 significant digits: within 0.1 %.
        assert!((s.p50_ms - 50.0).abs() < 0.1, "{s:?}");
        assert!((s.p90_ms - 90.0).abs() < 0.1, "{s:?}");
        assert!((s.p99_ms - 99.0).abs() < 0.1, "{s:?}");
        assert!((s.max_ms - 100.0).abs() < 0.1, "{s:?}");
        assert!((s.mean_ms - 50.5).abs() < 0.1, "{s:?}");
    }

    #[test]
    fn one_slow_request_shows_in_max_and_not_in_p50() {
        let mut l = Latency::new();
        for _ in 0..999 {
            l.record(ms(2));
        }
        l.record(Duration::from_secs(3));
        let s = l.summary();
        assert!((s.p50_ms - 2.0).abs() < 0.01);
        assert!((s.p99_ms - 2.0).abs() < 0.01);
        assert!((s.max_ms - 3000.0).abs() < 3.0);
    }

    #[test]
    fn empty_histogram_summarises_to_zeros() {
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }

    #[test]
    fn sub_microsecond_and_huge_latencies_are_clamped_not_lost() {
        let mut l = Latency::new();
        l.record(Duration::from_nanos(10));
        l.record(Duration::from_secs(100_000));
        assert_eq!(l.count(), 2);
        assert!(l.summary().max_ms >= 599_000.0);
    }

    #[test]
    fn error_kinds_have_stable_labels_and_totals() {
        let mut e = ErrorCounts::default();
        e.add(ErrorKind::Http(503));
        e.add(ErrorKind::Http(503));
        e.add(ErrorKind::Timeout);
        e.add(ErrorKind::Connection);
        e.add(ErrorKind::Http(422));
        assert_eq!(e.total(), 5);
        let labels = e.by_label();
        assert_eq!(labels["http_503"], 2);
        assert_eq!(labels["http_422"], 1);
        assert_eq!(labels["timeout"], 1);
        assert_eq!(labels["connection"], 1);
        assert_eq!(ErrorKind::InvalidResponse.label(), "invalid_response");
    }

    #[test]
    fn rates() {
        assert_eq!(per_second(1000, Duration::from_secs(4)), 250.0);
        assert_eq!(per_second(10, Duration::ZERO), 0.0);
        assert_eq!(per_second(1, ms(3)), 333.3);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(ms(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    fn settings(tracked: bool) -> RunSettings {
        RunSettings {
            url: "http://127.0.0.1:8000".into(),
            target_rate: Some(1000.0),
            concurrency: 64,
            seed: 7,
            users: 500,
            tracked,
        }
    }

    fn totals() -> RunTotals {
        let mut lat = Latency::new();
        lat.record(ms(4));
        let mut errors = ErrorCounts::default();
        errors.add(ErrorKind::Http(503));
        errors.add(ErrorKind::Timeout);
        RunTotals {
            sent: 1002,
            accepted: 1000,
            errors,
            send_phase: Duration::from_secs(2),
            post_202: Some(lat.summary()),
            post_analise: Some(lat.summary()),
            post_verdict: Some(lat.summary()),
            analise_seen: 1000,
            verdicts: 990,
            aprovado: 900,
            recusado: 90,
            verdict_phase: Duration::from_secs(2),
            foreign_events: 0,
            analise_after_verdict: 4,
            max_schedule_lag: ms(3),
        }
    }

    #[test]
    fn report_counts_rates_and_missing_verdicts() {
        let r = RunReport::new(settings(true), &totals());
        assert_eq!(r.throughput.accepted_per_s, 500.0);
        assert_eq!(r.throughput.verdicted_per_s, Some(495.0));
        assert_eq!(r.verdicts_missing, Some(10));
        assert_eq!(r.analise_missing, Some(0));
        assert_eq!(r.errors.total, 2);
        let text = r.to_text();
        for needle in [
            "accepted 500.0/s",
            "verdicted 495.0/s",
            "errors 2 (http_503: 1, timeout: 1)",
            "verdicts missing 10",
            "POST -> verdict",
            "p99",
            "fell behind by at most 3.0 ms",
            "4 verdicts reached Notificacoes before their Analise event",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
    }

    #[test]
    fn report_json_is_one_object_with_the_documented_keys() {
        let r = RunReport::new(settings(true), &totals());
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["accepted"], 1000);
        assert_eq!(v["errors"]["by_kind"]["http_503"], 1);
        assert_eq!(v["verdicts_missing"], 10);
        assert_eq!(v["throughput"]["verdicted_per_s"], 495.0);
        assert_eq!(v["latency_ms"]["post_verdict"]["count"], 1);
        assert!(v["latency_ms"]["post_verdict"]["p99_ms"].as_f64().unwrap() > 3.9);
        assert_eq!(v["settings"]["seed"], 7);
    }

    #[test]
    fn untracked_report_says_so_instead_of_claiming_missing_verdicts() {
        let r = RunReport::new(settings(false), &totals());
        assert_eq!(r.verdicts_missing, None);
        assert_eq!(r.throughput.verdicted_per_s, None);
        assert!(r.latency_ms.post_verdict.is_none());
        let text = r.to_text();
        assert!(text.contains("verdicted (not tracked)"), "{text}");
        assert!(text.contains("(not tracked)"), "{text}");
        assert!(!text.contains("verdicts missing"), "{text}");
    }

    #[test]
    fn raw_report_rates() {
        let r = RawReport::new(
            "t".into(),
            3,
            200_000,
            (8.0, 250.4, 90.0),
            Duration::from_secs(2),
            200_000,
            Duration::from_secs(1),
            Duration::from_secs(4),
            Some(PipelineRun {
                units: 10_000,
                records: 110_000,
                elapsed: Duration::from_secs(4),
            }),
        );
        assert_eq!(r.produced_per_s, 100_000.0);
        assert_eq!(r.consumed_per_s, 200_000.0);
        assert_eq!(r.live_per_s, 50_000.0);
        assert_eq!(r.pipeline_units, 10_000);
        assert_eq!(r.pipeline_seconds, Some(4.0));
        assert_eq!(r.pipeline_units_per_s, Some(2_500.0));
        assert_eq!(r.pipeline_records_per_s, Some(27_500.0));
        let text = r.to_text();
        assert!(text.contains("produced    100000 records/s"), "{text}");
        assert!(
            text.contains("pipeline    27500 records/s (2500 orders/s, 10000 orders in 4.00 s"),
            "{text}"
        );
    }

    #[test]
    fn raw_report_without_pipeline_says_skipped_and_keeps_the_other_keys() {
        let r = RawReport::new(
            "t".into(),
            3,
            1_000,
            (8.0, 250.0, 90.0),
            Duration::from_secs(1),
            1_000,
            Duration::from_secs(1),
            Duration::from_secs(1),
            None,
        );
        assert!(
            r.to_text().contains("pipeline    skipped"),
            "{}",
            r.to_text()
        );
        let json = serde_json::to_value(&r).expect("serializes");
        for key in [
            "produced_per_s",
            "consumed_per_s",
            "live_per_s",
            "avg_key_bytes",
            "avg_value_bytes",
            "avg_headers_bytes",
            "records",
            "partitions",
            "produce_seconds",
            "consume_seconds",
            "live_seconds",
        ] {
            assert!(json[key].is_number(), "{key}: {json}");
        }
        assert_eq!(json["pipeline_units"], 0);
        for key in [
            "pipeline_seconds",
            "pipeline_units_per_s",
            "pipeline_records_per_s",
        ] {
            assert!(json[key].is_null(), "{key}: {json}");
        }
    }
}
