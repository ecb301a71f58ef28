//! `[kafka]`: how every daemon reaches the cluster.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{at_least_one, InvalidValue, Properties, Secret};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Connection settings, named as in Confluent Cloud's "Create a configuration file" step.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanisms: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
    pub ssl_ca_location: Option<PathBuf>,
    /// How long a daemon waits at start-up for the cluster to answer before giving up.
    pub startup_timeout_secs: u64,
    /// Static group membership (KIP-345): a process restarted with the same id gets its
    /// partitions back at once, without a rebalance. Distinct per process of one group.
    pub group_instance_id: Option<String>,
    /// Any other librdkafka property, passed through verbatim to every client (applied last).
    pub properties: Properties,
    /// Like `properties`, for producers only (e.g. `linger.ms`): a consumer given a producer
    /// property logs a librdkafka warning at start-up. Applied after `properties`.
    pub producer_properties: Properties,
    /// Like `properties`, for consumers only (e.g. `fetch.min.bytes`).
    pub consumer_properties: Properties,
    /// From this many records a second on, a process's producer lingers 5 ms to send them in
    /// fuller requests; below it, it sends each record at once. 0: always at once. A `linger.ms`
    /// in `properties` or `producer_properties` fixes the linger instead.
    pub batch_above_records_per_sec: u32,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanisms: "PLAIN".into(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            ssl_ca_location: None,
            startup_timeout_secs: 30,
            group_instance_id: None,
            properties: Properties::default(),
            producer_properties: Properties::default(),
            consumer_properties: Properties::default(),
            batch_above_records_per_sec: 1_000,
        }
    }
}

impl KafkaConfig {
    const SASL_MECHANISMS: [&'static str; 4] =
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs)
    }

    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        validate_bootstrap_servers(&self.bootstrap_servers)
            .map_err(|m| InvalidValue::new("bootstrap_servers", m))?;
        if self.security_protocol.uses_sasl() {
            self.validate_sasl()?;
        }
        if let Some(ca) = &self.ssl_ca_location {
            if !ca.is_file() {
                return Err(InvalidValue::new(
                    "ssl_ca_location",
                    format!("no such file: {}", ca.display()),
                ));
            }
        }
        at_least_one("startup_timeout_secs", self.startup_timeout_secs)
    }

    fn validate_sasl(&self) -> Result<(), InvalidValue> {
        if !Self::SASL_MECHANISMS.contains(&self.sasl_mechanisms.as_str()) {
            return Err(InvalidValue::new(
                "sasl_mechanisms",
                format!(
                    "must be one of {:?}, got {:?}",
                    Self::SASL_MECHANISMS,
                    self.sasl_mechanisms
                ),
            ));
        }
        // OAUTHBEARER authenticates with a token, not a username and password.
        if self.sasl_mechanisms == "OAUTHBEARER" {
            return Ok(());
        }
        let protocol = self.security_protocol;
        if self.sasl_username.trim().is_empty() {
            return Err(InvalidValue::new(
                "sasl_username",
                format!("must not be empty with security_protocol = \"{protocol}\" (Confluent Cloud: the API key)"),
            ));
        }
        if self.sasl_password.is_empty() {
            return Err(InvalidValue::new(
                "sasl_password",
                format!("must not be empty with security_protocol = \"{protocol}\" (Confluent Cloud: the API secret)"),
            ));
        }
        Ok(())
    }

    /// Whether the value at `key` (within `[kafka]`) is secret, so that no message may quote it:
    /// the SASL password and the secret passthrough properties.
    pub(super) fn holds_secret(key: &str) -> bool {
        match key.split_once('.') {
            None => key == "sasl_password",
            Some((table, property)) => {
                matches!(
                    table,
                    "properties" | "producer_properties" | "consumer_properties"
                ) && Properties::is_secret(property)
            }
        }
    }
}

fn validate_bootstrap_servers(list: &str) -> Result<(), String> {
    if list.trim().is_empty() {
        return Err("must list at least one host:port".into());
    }
    for server in list.split(',') {
        let server = server.trim();
        let Some((host, port)) = server.rsplit_once(':') else {
            return Err(format!("{server:?} is not host:port"));
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(char::is_whitespace) || host.contains("://") {
            return Err(format!("{server:?} has no valid host"));
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("{server:?} has no valid port")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, load};

    #[test]
    fn confluent_cloud_file_is_read() {
        let c = load(
            r#"
            [kafka]
            bootstrap_servers = "pkc-123.us-east-1.aws.confluent.cloud:9092"
            security_protocol = "SASL_SSL"
            sasl_mechanisms = "PLAIN"
            sasl_username = "KEY"
            sasl_password = "SECRET"
            [kafka.properties]
            "linger.ms" = "20"
            "#,
            &[],
        )
        .unwrap();
        assert_eq!(c.kafka.security_protocol, SecurityProtocol::SaslSsl);
        assert_eq!(c.kafka.sasl_username, "KEY");
        assert_eq!(c.kafka.sasl_password.expose(), "SECRET");
        assert_eq!(c.kafka.properties["linger.ms"], "20");
    }

    #[test]
    fn sasl_without_password_is_rejected() {
        let e = err(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"key\"\nsasl_password = \"\"\n",
            &[],
        );
        assert!(e.contains("kafka.sasl_password"), "{e}");
        assert!(e.contains("must not be empty"), "{e}");
    }

    #[test]
    fn sasl_without_username_is_rejected() {
        let e = err(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_password = \"s\"\n",
            &[],
        );
        assert!(e.contains("kafka.sasl_username"), "{e}");
    }

    #[test]
    fn unknown_security_protocol_is_rejected() {
        let e = err("[kafka]\nsecurity_protocol = \"SASL_TLS\"\n", &[]);
        assert!(e.contains("kafka.security_protocol"), "{e}");
    }

    #[test]
    fn malformed_bootstrap_lists_are_rejected() {
        for bad in [
            "",
            "localhost",
            "host:",
            "host:notaport",
            ":9092",
            "a:1,,b:2",
            "host:0",
            "PLAINTEXT://h:1",
        ] {
            let e = err(&format!("[kafka]\nbootstrap_servers = {bad:?}\n"), &[]);
            assert!(e.contains("kafka.bootstrap_servers"), "{bad:?}: {e}");
        }
        let ok = load(
            "[kafka]\nbootstrap_servers = \"a:1, b.example.com:9092,[::1]:9093\"\n",
            &[],
        );
        assert!(ok.is_ok());
    }

    #[test]
    fn missing_ca_file_is_rejected() {
        let e = err("[kafka]\nssl_ca_location = \"/nonexistent/ca.pem\"\n", &[]);
        assert!(e.contains("kafka.ssl_ca_location"), "{e}");
    }

    #[test]
    fn secret_keys_are_known() {
        assert!(KafkaConfig::holds_secret("sasl_password"));
        assert!(KafkaConfig::holds_secret("properties.ssl.key.password"));
        assert!(KafkaConfig::holds_secret(
            "consumer_properties.sasl.oauthbearer.client.secret"
        ));
        assert!(!KafkaConfig::holds_secret("sasl_username"));
        assert!(!KafkaConfig::holds_secret("properties.linger.ms"));
    }
}
