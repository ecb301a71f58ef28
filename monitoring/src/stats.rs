//! Traffic counters and verdict latency, summarised every few seconds.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

pub struct Stats {
    total: BTreeMap<String, u64>,
    interval: BTreeMap<String, u64>,
    parse_errors: u64,
    /// Order creation → verdict, milliseconds, since start.
    latency: Histogram<u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            total: BTreeMap::new(),
            interval: BTreeMap::new(),
            parse_errors: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000, 3).expect("valid histogram bounds"),
        }
    }
}

/// A point-in-time view, for logging.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub counts: BTreeMap<String, u64>,
    /// Records per second per topic over the last interval.
    pub rates: BTreeMap<String, f64>,
    pub parse_errors: u64,
    pub verdicts: u64,
    pub latency_p50_ms: u64,
    pub latency_p99_ms: u64,
    pub latency_max_ms: u64,
}

impl Stats {
    pub fn record(&mut self, topic: &str, parse_error: bool, verdict_latency_ms: Option<i64>) {
        *self.total.entry(topic.to_string()).or_default() += 1;
        *self.interval.entry(topic.to_string()).or_default() += 1;
        self.parse_errors += u64::from(parse_error);
        if let Some(ms) = verdict_latency_ms {
            // Clock skew between producers can make a latency negative: count it as 1 ms.
            self.latency.saturating_record(ms.max(1) as u64);
        }
    }

    /// The summary since start, with rates over `interval`; starts a new interval.
    pub fn summarise(&mut self, interval: Duration) -> Summary {
        let secs = interval.as_secs_f64().max(1e-3);
        let rates = self
            .total
            .keys()
            .map(|t| {
                (
                    t.clone(),
                    self.interval.get(t).copied().unwrap_or(0) as f64 / secs,
                )
            })
            .collect();
        self.interval.clear();
        Summary {
            counts: self.total.clone(),
            rates,
            parse_errors: self.parse_errors,
            verdicts: self.latency.len(),
            latency_p50_ms: self.latency.value_at_quantile(0.50),
            latency_p99_ms: self.latency.value_at_quantile(0.99),
            latency_max_ms: self.latency.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rates_and_latency_percentiles() {
        let mut s = Stats::default();
        for ms in 1..=100 {
            s.record("Pedidos_validos", false, Some(ms));
        }
        s.record("Pedidos", true, None);
        let sum = s.summarise(Duration::from_secs(2));
        assert_eq!(sum.counts["Pedidos_validos"], 100);
        assert_eq!(sum.counts["Pedidos"], 1);
        assert_eq!(sum.rates["Pedidos_validos"], 50.0);
        assert_eq!(sum.parse_errors, 1);
        assert_eq!(sum.verdicts, 100);
        assert_eq!(sum.latency_p50_ms, 50);
        assert_eq!(sum.latency_p99_ms, 99);
        assert_eq!(sum.latency_max_ms, 100);
        let next = s.summarise(Duration::from_secs(1));
        assert_eq!(next.rates["Pedidos_validos"], 0.0, "rates are per interval");
        assert_eq!(
            next.counts["Pedidos_validos"], 100,
            "counts are since start"
        );
    }
}
