//! `[monitoring]`: the daemon that audits every topic and summarises the traffic.

use std::path::PathBuf;

use serde::Deserialize;

use super::{at_least_one, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    pub group_id: String,
    /// Append-only JSON-lines file with every record seen.
    pub audit_file: PathBuf,
    pub summary_interval_secs: u64,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            group_id: "monitoring".into(),
            audit_file: PathBuf::from("monitoring.audit.jsonl"),
            summary_interval_secs: 5,
        }
    }
}

impl MonitoringConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        at_least_one("summary_interval_secs", self.summary_interval_secs)
    }
}
