//! `[monitoring]`: the daemon that audits every topic and summarises the traffic.

use std::path::PathBuf;

use serde::Deserialize;

use super::{admin_listen, at_least_one, InvalidValue};

/// The smallest `audit_max_bytes` other than 0: a rotated file holds at least a few lines.
pub const AUDIT_MIN_BYTES: u64 = 4096;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    pub group_id: String,
    /// Append-only JSON-lines file with every record seen.
    pub audit_file: PathBuf,
    /// Rotate the audit file before a line would take it past this size; 0: never by size.
    pub audit_max_bytes: u64,
    /// Rotate the audit file when a line falls in another period of this many seconds (counted
    /// from the Unix epoch, so 86400 rotates at 00:00 UTC) than the file's last line; 0: never
    /// by time.
    pub audit_rotate_secs: u64,
    /// Rotated audit files kept (the oldest beyond are deleted); 0: keep them all.
    pub audit_keep: usize,
    /// `fdatasync` the audit file before storing the offsets of its lines, so they survive a
    /// power loss too, not only a crash of the process.
    pub audit_fsync: bool,
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
            audit_max_bytes: 100 * 1024 * 1024,
            audit_rotate_secs: 0,
            audit_keep: 10,
            audit_fsync: false,
            summary_interval_secs: 5,
            max_in_flight: 10_000,
            admin_listen: "127.0.0.1:9103".into(),
        }
    }
}

impl MonitoringConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        admin_listen(&self.admin_listen)?;
        if self.audit_file.as_os_str().is_empty() || self.audit_file.file_name().is_none() {
            return Err(InvalidValue::new(
                "audit_file",
                format!("must name a file, got {:?}", self.audit_file.display()),
            ));
        }
        if self.audit_max_bytes != 0 && self.audit_max_bytes < AUDIT_MIN_BYTES {
            return Err(InvalidValue::new(
                "audit_max_bytes",
                format!(
                    "must be 0 (no rotation by size) or at least {AUDIT_MIN_BYTES}, got {}",
                    self.audit_max_bytes
                ),
            ));
        }
        at_least_one("summary_interval_secs", self.summary_interval_secs)?;
        at_least_one("max_in_flight", self.max_in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, load};

    #[test]
    fn the_audit_file_rotates_by_size_by_default_and_the_example_says_so() {
        let defaults = MonitoringConfig::default();
        assert_eq!(defaults.audit_max_bytes, 104_857_600);
        assert_eq!(defaults.audit_rotate_secs, 0);
        assert_eq!(defaults.audit_keep, 10);
        assert!(!defaults.audit_fsync);
        let example = load(include_str!("../../../conf.example.toml"), &[]).unwrap();
        let m = example.monitoring;
        assert_eq!(m.audit_file, defaults.audit_file);
        assert_eq!(m.audit_max_bytes, defaults.audit_max_bytes);
        assert_eq!(m.audit_rotate_secs, defaults.audit_rotate_secs);
        assert_eq!(m.audit_keep, defaults.audit_keep);
        assert_eq!(m.audit_fsync, defaults.audit_fsync);
    }

    #[test]
    fn rotation_keys_come_from_the_file_or_the_environment() {
        let c = load(
            "[monitoring]\naudit_max_bytes = 0\naudit_rotate_secs = 86400\naudit_keep = 0\n",
            &[("PEDIDOS_MONITORING__AUDIT_FSYNC", "true")],
        )
        .unwrap();
        assert_eq!(c.monitoring.audit_max_bytes, 0, "0 turns size rotation off");
        assert_eq!(c.monitoring.audit_rotate_secs, 86_400);
        assert_eq!(c.monitoring.audit_keep, 0);
        assert!(c.monitoring.audit_fsync);
    }

    #[test]
    fn a_tiny_rotation_size_or_a_directory_for_a_file_is_refused_naming_the_key() {
        let e = err("", &[("PEDIDOS_MONITORING__AUDIT_MAX_BYTES", "100")]);
        assert!(e.contains("monitoring.audit_max_bytes"), "{e}");
        assert!(e.contains("at least 4096"), "{e}");
        let e = err("[monitoring]\naudit_file = \"logs/..\"\n", &[]);
        assert!(e.contains("monitoring.audit_file"), "{e}");
    }
}
