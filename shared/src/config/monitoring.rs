//! `[monitoring]`: the daemon that audits every topic and summarises the traffic.

use std::path::PathBuf;

use serde::Deserialize;

use super::{admin_listen, at_least_one, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    pub group_id: String,
    /// Append-only JSON-lines file with every record seen.
    pub audit_file: PathBuf,
    pub summary_interval_secs: u64,
    /// Records received but not yet done (their offsets not yet stored), at most: the consumer
    /// loop's bound on memory, and on what a crash makes it read again.
    pub max_in_flight: usize,
    /// Where `/metrics`, `/health` and `/ready` are served (host:port); `""` serves nothing.
    pub admin_listen: String,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            group_id: "monitoring".into(),
            audit_file: PathBuf::from("monitoring.audit.jsonl"),
            summary_interval_secs: 5,
            max_in_flight: 10_000,
            admin_listen: "127.0.0.1:9103".into(),
        }
    }
}

impl MonitoringConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        admin_listen(&self.admin_listen)?;
        at_least_one("summary_interval_secs", self.summary_interval_secs)?;
        at_least_one("max_in_flight", self.max_in_flight)
    }
}
