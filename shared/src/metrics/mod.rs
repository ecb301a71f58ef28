//! Prometheus metrics: the process's registry, its text exposition, and the metric families the
//! mesh shares (the consumer loop's, the Kafka clients', readiness).
//!
//! The crate is tikv's `prometheus` rather than the Prometheus org's `prometheus-client`: both
//! give atomic counters behind pre-resolved label handles, but `prometheus-client`'s histogram
//! takes a lock on every observation, and monitoring observes one per record; tikv's histogram
//! is lock-free (two atomic shards, swapped on scrape). `metrics` + `metrics-exporter-prometheus`
//! would add a global recorder, an upkeep task and an HTTP stack of its own.
//!
//! Hot paths never look a label up: they hold the handle (`IntCounter`, `Histogram`, an `Arc`
//! around an atomic) resolved once, at start-up or at a topic's first record.

pub mod clients;
pub mod pipeline;
pub mod readiness;

use std::sync::{LazyLock, OnceLock};

/// The crate, for the daemons' own metrics.
pub use prometheus;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of this process.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);
    &REGISTRY
}

/// The Prometheus text exposition of every metric (`GET /metrics`).
pub fn render() -> String {
    let mut out = String::new();
    prometheus::TextEncoder::new()
        .encode_utf8(&registry().gather(), &mut out)
        .expect("the text encoder writes to a String");
    out
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The name this process goes by in its metrics and readiness answers (`fraud`, `api`, …),
/// set once by `daemon::init`; `pedidos` for programs that never set it (tests, loadgen).
pub fn set_daemon(name: &str) {
    let _ = DAEMON.set(name.to_string());
}

pub fn daemon() -> &'static str {
    DAEMON.get().map_or("pedidos", String::as_str)
}

static DAEMON: OnceLock<String> = OnceLock::new();

/// Registers a counter family (names are fixed in code: a bad one is a bug).
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry()
        .register(Box::new(family.clone()))
        .expect("each metric registered once");
    family
}

pub fn counter(name: &str, help: &str) -> IntCounter {
    let counter = IntCounter::new(name, help).expect("valid metric");
    registry()
        .register(Box::new(counter.clone()))
        .expect("each metric registered once");
    counter
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let family = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry()
        .register(Box::new(family.clone()))
        .expect("each metric registered once");
    family
}

pub fn gauge(name: &str, help: &str) -> IntGauge {
    let gauge = IntGauge::new(name, help).expect("valid metric");
    registry()
        .register(Box::new(gauge.clone()))
        .expect("each metric registered once");
    gauge
}

/// Float gauges (seconds).
pub fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    let family = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry()
        .register(Box::new(family.clone()))
        .expect("each metric registered once");
    family
}

/// Latency buckets from 0.5 ms to about 33 s, doubling: the mesh's latencies sit between a
/// millisecond (an acknowledgement on loopback) and the 30 s of a delivery timeout.
pub fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 17).expect("valid buckets")
}

pub fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
    let family = HistogramVec::new(opts, labels).expect("valid metric");
    registry()
        .register(Box::new(family.clone()))
        .expect("each metric registered once");
    family
}

pub fn histogram(name: &str, help: &str) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(latency_buckets());
    let histogram = Histogram::with_opts(opts).expect("valid metric");
    registry()
        .register(Box::new(histogram.clone()))
        .expect("each metric registered once");
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_the_registered_families_with_their_help_and_type() {
        let c = counter_vec("pedidos_test_things_total", "Things.", &["kind"]);
        c.with_label_values(&["a"]).inc_by(3);
        let text = render();
        assert!(
            text.contains("# HELP pedidos_test_things_total Things."),
            "{text}"
        );
        assert!(
            text.contains("# TYPE pedidos_test_things_total counter"),
            "{text}"
        );
        assert!(
            text.contains("pedidos_test_things_total{kind=\"a\"} 3"),
            "{text}"
        );
    }
}
