//! Pure bookkeeping: latency histograms, percentiles, error kinds, rates, and the final reports
//! (text and JSON: [`run_report`] for driving the API, [`raw_report`] for `loadgen raw`). No
//! I/O, no clocks: callers pass durations in.

mod raw_report;
mod run_report;

pub use raw_report::{PipelineRun, RawReport};
pub use run_report::{RunReport, RunSettings, RunTotals};

use std::collections::BTreeMap;
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
    /// `--get-after-202`: the GET of an accepted order answered this status, not 200.
    Get(u16),
}

impl ErrorKind {
    /// The key used in reports: `http_503`, `connection`, `timeout`, `invalid_response`,
    /// `get_http_404`.
    pub fn label(self) -> String {
        match self {
            ErrorKind::Http(code) => format!("http_{code}"),
            ErrorKind::Connection => "connection".into(),
            ErrorKind::Timeout => "timeout".into(),
            ErrorKind::InvalidResponse => "invalid_response".into(),
            ErrorKind::Get(code) => format!("get_http_{code}"),
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
    /// Answers 401 and 403: the API refused the credentials (or their lack), which no retry
    /// fixes; counted here so that a run against `api.auth = "jwt"` cannot fail quietly.
    pub fn refused_credentials(&self) -> u64 {
        [401, 403]
            .iter()
            .map(|code| {
                self.counts
                    .get(&ErrorKind::Http(*code))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
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

pub(crate) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(crate) fn round3(x: f64) -> f64 {
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
        assert_eq!(e.refused_credentials(), 0);
        e.add(ErrorKind::Http(401));
        e.add(ErrorKind::Http(403));
        e.add(ErrorKind::Http(403));
        assert_eq!(e.refused_credentials(), 3);
        assert_eq!(e.by_label()["http_401"], 1);
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
}
