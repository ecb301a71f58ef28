//! `[notification]`: the daemon that tells each status change once.

use serde::Deserialize;

use super::{at_least_one, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    pub group_id: String,
    /// How many recent event ids are remembered to drop replayed duplicates.
    pub dedup_window: usize,
    /// Records received but not yet done (their offsets not yet stored), at most: the consumer
    /// loop's bound on memory, and on what a crash makes it read again.
    pub max_in_flight: usize,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            group_id: "notification".into(),
            dedup_window: 100_000,
            max_in_flight: 10_000,
        }
    }
}

impl NotificationConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        at_least_one("dedup_window", self.dedup_window)?;
        at_least_one("max_in_flight", self.max_in_flight)
    }
}
