//! `[notification]`: the daemon that tells each status change once.

use serde::Deserialize;

use super::{admin_listen, at_least_one, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    pub group_id: String,
    /// How many recent event ids are remembered to drop replayed duplicates.
    pub dedup_window: usize,
    /// Records received but not yet done (their offsets not yet stored), at most: the consumer
    /// loop's bound on memory, and on what a crash makes it read again.
    pub max_in_flight: usize,
    /// Where `/metrics`, `/health` and `/ready` are served (host:port); `""` serves nothing.
    pub admin_listen: String,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            group_id: "notification".into(),
            dedup_window: 100_000,
            max_in_flight: 10_000,
            admin_listen: "127.0.0.1:9102".into(),
        }
    }
}

impl NotificationConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        admin_listen(&self.admin_listen)?;
        at_least_one("dedup_window", self.dedup_window)?;
        at_least_one("max_in_flight", self.max_in_flight)
    }
}
