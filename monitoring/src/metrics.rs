//! monitoring's metrics: audit lines written, how long each write to the audit file takes,
//! whether the file refuses writes, its rotations, and the POST → verdict latency of every
//! verdict seen.

use std::sync::LazyLock;

use shared::metrics::prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};

pub static AUDIT_LINES: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_audit_lines_written_total",
        "Lines written to the audit file.",
    )
});

pub static AUDIT_WRITE: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_audit_write_duration_seconds",
        "Time to write one batch of lines to the audit file (the writer batches what is queued), retries included.",
    )
});

pub static AUDIT_BLOCKED: LazyLock<IntGauge> = LazyLock::new(|| {
    shared::metrics::gauge(
        "pedidos_audit_write_blocked",
        "1 while the audit file refuses writes (a full disk): no offset is stored meanwhile.",
    )
});

pub static REPLAYS_SKIPPED: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_audit_replays_skipped_total",
        "Records handed again after a rebalance, in the same process, whose audit line was \
         already queued or written: not written twice.",
    )
});

pub static AUDIT_WRITE_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_audit_write_errors_total",
        "Failed attempts to write or open the audit file (each is retried).",
    )
});

pub static AUDIT_ROTATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    shared::metrics::counter_vec(
        "pedidos_audit_rotations_total",
        "Audit file rotations by reason: size, time, or reopen (SIGHUP).",
        &["reason"],
    )
});

pub static AUDIT_FILE_BYTES: LazyLock<IntGauge> = LazyLock::new(|| {
    shared::metrics::gauge(
        "pedidos_audit_file_bytes",
        "Size of the current audit file.",
    )
});

pub static VERDICT_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_verdict_latency_seconds",
        "From an order's dataSolicitacao (the API's POST) to its verdict's dataAvaliacao, per verdict seen.",
    )
});
