//! fraud's metrics: verdicts by status and by the rule that decided them.

use std::sync::LazyLock;

use shared::metrics::prometheus::{IntCounter, IntCounterVec};

use crate::rules::Rule;

static VERDICTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    shared::metrics::counter_vec(
        "pedidos_fraud_verdicts_total",
        "Orders decided, by status and by the rule that decided (approved: none refused).",
        &["status", "rule"],
    )
});

/// One counter per rule, resolved up front: counting a verdict is one atomic increment.
pub struct VerdictCounters([IntCounter; Rule::ALL.len()]);

impl VerdictCounters {
    pub fn new() -> Self {
        Self(
            Rule::ALL.map(|rule| {
                VERDICTS.with_label_values(&[&rule.status().to_string(), rule.as_str()])
            }),
        )
    }

    pub fn count(&self, rule: Rule) {
        self.0[rule as usize].inc();
    }
}

impl Default for VerdictCounters {
    fn default() -> Self {
        Self::new()
    }
}
