//! notification's metrics: status changes told, by status, replayed events dropped, and late
//! `Analise` events not told.

use std::sync::LazyLock;

use shared::events::Status;
use shared::metrics::prometheus::{IntCounter, IntCounterVec};

static SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    shared::metrics::counter_vec(
        "pedidos_notifications_sent_total",
        "Status changes told to customers, by status.",
        &["status"],
    )
});

static DUPLICATES: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_notification_duplicates_total",
        "Replayed status events dropped (already told).",
    )
});

static AFTER_VERDICT: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_notification_analise_after_verdict_total",
        "Analise events not told because their order's verdict was told first (they arrived late).",
    )
});

/// The counters, resolved up front.
pub struct Counters {
    /// By `Status as usize`.
    sent: [IntCounter; 3],
    pub duplicates: IntCounter,
    pub after_verdict: IntCounter,
}

impl Counters {
    pub fn new() -> Self {
        Self {
            sent: [Status::Analise, Status::Aprovado, Status::Recusado]
                .map(|s| SENT.with_label_values(&[s.as_str()])),
            duplicates: DUPLICATES.clone(),
            after_verdict: AFTER_VERDICT.clone(),
        }
    }

    pub fn sent(&self, status: Status) {
        self.sent[status as usize].inc();
    }
}

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}
