//! Layered configuration: built-in defaults (the local broker), then `conf.toml`, then
//! environment variables (`.env` included). One loader for every daemon.
//!
//! Environment variables are named `PEDIDOS_<SECTION>__<KEY>`, e.g.
//! `PEDIDOS_KAFKA__SASL_PASSWORD` or `PEDIDOS_FRAUD__REFUSAL_PROBABILITY`. Values are read as TOML
//! (`5`, `true`, `["a","b"]`) where that fits the key, else as the plain string written, so a
//! numeric password stays a string.
//!
//! Each section lives in its own module with its defaults and its own `validate`; a new key
//! touches only its section's module (and `conf.example.toml`, which documents every key).

mod api;
mod fraud;
mod kafka;
mod monitoring;
mod notification;
mod properties;
mod schema_registry;
mod secret;
mod sources;
mod telemetry;
#[cfg(test)]
mod testing;
mod topics;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use sources::Sources;

pub use api::{ApiConfig, AuthMode, StoreKind};
pub use fraud::FraudConfig;
pub use kafka::{KafkaConfig, SecurityProtocol};
pub use monitoring::MonitoringConfig;
pub use notification::NotificationConfig;
pub use properties::Properties;
pub use schema_registry::{Compatibility, SchemaRegistryConfig};
pub use secret::Secret;
pub use telemetry::{LogFormat, TelemetryConfig};
pub use topics::TopicsConfig;

/// Where the configuration file is looked for when neither `--config` nor `PEDIDOS_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "conf.toml";
/// Environment variable naming the configuration file.
pub const CONFIG_PATH_ENV: &str = "PEDIDOS_CONFIG";

/// A configuration error: always names where the bad value came from and which key it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub topics: TopicsConfig,
    pub api: ApiConfig,
    pub fraud: FraudConfig,
    pub notification: NotificationConfig,
    pub monitoring: MonitoringConfig,
    pub telemetry: TelemetryConfig,
    pub schema_registry: SchemaRegistryConfig,
}

impl Config {
    /// Loads `.env`, then the configuration file (`explicit_path`, else `PEDIDOS_CONFIG`, else
    /// `conf.toml` if it exists), then `PEDIDOS_*` environment variables.
    pub fn load(explicit_path: Option<&Path>) -> Result<Self, ConfigError> {
        // A missing .env is normal; a present one fills in variables not already set.
        let _ = dotenvy::dotenv();
        let env_path = std::env::var_os(CONFIG_PATH_ENV).map(PathBuf::from);
        let (path, required) = match (explicit_path, env_path) {
            (Some(p), _) => (p.to_path_buf(), true),
            (None, Some(p)) => (p, true),
            (None, None) => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => None,
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        Self::from_sources(
            text.as_deref().map(|t| (path.as_path(), t)),
            sources::process_env()?,
        )
    }

    /// The pure part of [`Config::load`]: a file's text (if any) and environment variables.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let sources = Sources::read(file, env)?;
        let config = sources.config()?;
        config
            .validate()
            .map_err(|refused| sources.blame(refused))?;
        Ok(config)
    }

    /// Whether the value at a dotted `key` is a secret, which no message may quote.
    fn holds_secret(key: &str) -> bool {
        key.strip_prefix("kafka.")
            .is_some_and(KafkaConfig::holds_secret)
            || key == "api.jwt_secret"
            || key == "api.store_url"
            || key
                .strip_prefix("schema_registry.")
                .is_some_and(SchemaRegistryConfig::holds_secret)
    }

    /// Every section checks its own values.
    fn validate(&self) -> Result<(), InvalidValue> {
        self.kafka.validate().map_err(|e| e.in_section("kafka"))?;
        self.topics.validate().map_err(|e| e.in_section("topics"))?;
        self.api.validate().map_err(|e| e.in_section("api"))?;
        self.fraud.validate().map_err(|e| e.in_section("fraud"))?;
        self.notification
            .validate()
            .map_err(|e| e.in_section("notification"))?;
        self.monitoring
            .validate()
            .map_err(|e| e.in_section("monitoring"))?;
        self.telemetry
            .validate()
            .map_err(|e| e.in_section("telemetry"))?;
        self.schema_registry
            .validate()
            .map_err(|e| e.in_section("schema_registry"))
    }
}

/// A value that deserialized but that its section refuses: the key (within the section until
/// [`InvalidValue::in_section`] names the section) and why.
#[derive(Debug)]
struct InvalidValue {
    key: String,
    message: String,
}

impl InvalidValue {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn in_section(self, section: &str) -> Self {
        Self {
            key: format!("{section}.{}", self.key),
            ..self
        }
    }
}

/// Refuses 0 for a count or a duration that must be at least 1.
fn at_least_one<T: PartialOrd + From<u8>>(key: &str, value: T) -> Result<(), InvalidValue> {
    if value < T::from(1) {
        return Err(InvalidValue::new(key, "must be at least 1"));
    }
    Ok(())
}

/// An `admin_listen` value: `""` (off) or an address like `127.0.0.1:9101`.
fn admin_listen(value: &str) -> Result<(), InvalidValue> {
    if value.is_empty() || value.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    Err(InvalidValue::new(
        "admin_listen",
        format!("must be an address like 127.0.0.1:9101, or \"\" for none, got {value:?}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_consuming_daemon_has_its_own_admin_port_which_can_be_turned_off() {
        let admin = |c: &Config| {
            [
                c.fraud.admin_listen.clone(),
                c.notification.admin_listen.clone(),
                c.monitoring.admin_listen.clone(),
            ]
        };
        let defaults = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(
            admin(&defaults),
            ["127.0.0.1:9101", "127.0.0.1:9102", "127.0.0.1:9103"]
        );
        let example = testing::load(include_str!("../../../conf.example.toml"), &[]).unwrap();
        assert_eq!(admin(&example), admin(&defaults));
        for section in ["fraud", "notification", "monitoring"] {
            let var = format!("PEDIDOS_{}__ADMIN_LISTEN", section.to_ascii_uppercase());
            let c = testing::load("", &[(var.as_str(), "")]).unwrap();
            assert!(admin(&c).contains(&String::new()), "{var}");
            let c = testing::load("", &[(var.as_str(), "0.0.0.0:9200")]).unwrap();
            assert!(admin(&c).contains(&"0.0.0.0:9200".to_string()), "{var}");
            let e = testing::err("", &[(var.as_str(), "localhost")]);
            assert!(e.contains(&var), "{e}");
            assert!(e.contains(&format!("{section}.admin_listen")), "{e}");
        }
    }

    #[test]
    fn no_file_means_local_broker_defaults() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.kafka.security_protocol, SecurityProtocol::Plaintext);
        assert_eq!(c.topics.pedidos, "Pedidos");
        assert_eq!(c.topics.partitions, 3);
        assert_eq!(c.api.listen, "127.0.0.1:8000");
        assert_eq!(c.kafka.startup_timeout_secs, 30);
        assert_eq!(c.kafka.batch_above_records_per_sec, 1_000);
        let example = testing::load(include_str!("../../../conf.example.toml"), &[]).unwrap();
        assert_eq!(example.kafka.batch_above_records_per_sec, 1_000);
    }

    #[test]
    fn every_consuming_daemon_bounds_its_records_in_flight() {
        let in_flight = |c: &Config| {
            [
                c.fraud.max_in_flight,
                c.notification.max_in_flight,
                c.monitoring.max_in_flight,
            ]
        };
        let defaults = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(in_flight(&defaults), [2_000, 10_000, 10_000]);
        let example = testing::load(include_str!("../../../conf.example.toml"), &[]).unwrap();
        assert_eq!(in_flight(&example), in_flight(&defaults));

        for section in ["fraud", "notification", "monitoring"] {
            let var = format!("PEDIDOS_{}__MAX_IN_FLIGHT", section.to_ascii_uppercase());
            let c = testing::load("", &[(var.as_str(), "7")]).unwrap();
            assert!(in_flight(&c).contains(&7), "{var}");

            let key = format!("{section}.max_in_flight");
            let e = testing::err(&format!("[{section}]\nmax_in_flight = 0\n"), &[]);
            assert!(e.contains("conf.toml"), "{e}");
            assert!(e.contains(&key), "{e}");
            assert!(e.contains("must be at least 1"), "{e}");
            let e = testing::err("", &[(var.as_str(), "0")]);
            assert!(e.contains(&var), "{e}");
            assert!(e.contains(&key), "{e}");
        }
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/pedidos.toml"))).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/pedidos.toml"));
    }
}
