//! monitoring's metrics: audit lines written, how long each write to the audit file takes, and
//! the POST → verdict latency of every verdict seen.

use std::sync::LazyLock;

use shared::metrics::prometheus::{Histogram, IntCounter};

pub static AUDIT_LINES: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_audit_lines_written_total",
        "Lines written to the audit file.",
    )
});

pub static AUDIT_WRITE: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_audit_write_duration_seconds",
        "Time to write one batch of lines to the audit file (the writer batches what is queued).",
    )
});

pub static VERDICT_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_verdict_latency_seconds",
        "From an order's dataSolicitacao (the API's POST) to its verdict's dataAvaliacao, per verdict seen.",
    )
});
