//! Layered configuration: built-in defaults (the local broker), then `conf.toml`, then
//! environment variables (`.env` included). One loader for every daemon.
//!
//! Environment variables are named `PEDIDOS_<SECTION>__<KEY>`, e.g.
//! `PEDIDOS_KAFKA__SASL_PASSWORD` or `PEDIDOS_FRAUD__REFUSAL_PROBABILITY`. Values are read as TOML
//! scalars or arrays (`5`, `true`, `["a","b"]`) and fall back to plain strings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rust_decimal::Decimal;
use serde::Deserialize;

/// Where the configuration file is looked for when neither `--config` nor `PEDIDOS_CONFIG` is given.
pub const DEFAULT_CONFIG_FILE: &str = "conf.toml";
/// Environment variable naming the configuration file.
pub const CONFIG_PATH_ENV: &str = "PEDIDOS_CONFIG";
const ENV_PREFIX: &str = "PEDIDOS_";

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

/// A string that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for handing to the Kafka client. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
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
}

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
}

/// librdkafka properties passed through verbatim. `Debug` hides the values of keys that hold
/// secrets (`sasl.password`, `ssl.key.password`, `sasl.oauthbearer.client.secret`, …).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Properties(pub BTreeMap<String, String>);

impl Properties {
    /// Whether a librdkafka property's value is a secret or private key material.
    pub fn is_secret(key: &str) -> bool {
        let key = key.to_ascii_lowercase();
        [
            "password",
            "secret",
            "key.pem",
            "oauthbearer.config",
            "keystore",
        ]
        .iter()
        .any(|s| key.contains(s))
    }
}

impl std::ops::Deref for Properties {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Properties {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if Self::is_secret(k) {
                    "***"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
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
        }
    }
}

impl KafkaConfig {
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout_secs)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicsConfig {
    pub pedidos: String,
    pub notificacoes: String,
    pub pedidos_validos: String,
    pub pedidos_recusados: String,
    /// Dead-letter topics are named `<input topic><dlq_suffix>`, one per input topic.
    pub dlq_suffix: String,
    /// Create missing topics at start-up.
    pub create: bool,
    pub partitions: i32,
    /// -1 lets the broker choose (Confluent Cloud: 3).
    pub replication_factor: i32,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            pedidos: "Pedidos".into(),
            notificacoes: "Notificacoes".into(),
            pedidos_validos: "Pedidos_validos".into(),
            pedidos_recusados: "Pedidos_recusados".into(),
            dlq_suffix: "_dlq".into(),
            create: true,
            partitions: 3,
            replication_factor: -1,
        }
    }
}

impl TopicsConfig {
    pub fn dlq(&self, input_topic: &str) -> String {
        Self::dlq_with_suffix(input_topic, &self.dlq_suffix)
    }
    pub fn dlq_with_suffix(input_topic: &str, suffix: &str) -> String {
        format!("{input_topic}{suffix}")
    }
    /// The four topics of the flow.
    pub fn flow(&self) -> [&str; 4] {
        [
            &self.pedidos,
            &self.notificacoes,
            &self.pedidos_validos,
            &self.pedidos_recusados,
        ]
    }
    /// Every topic the mesh uses: the flow plus the dead-letter topics of consumed inputs.
    pub fn all(&self) -> Vec<String> {
        let mut all: Vec<String> = self.flow().iter().map(|t| t.to_string()).collect();
        all.push(self.dlq(&self.pedidos));
        all.push(self.dlq(&self.notificacoes));
        all
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub listen: String,
    /// Longest wait for the broker to acknowledge an order before answering 503.
    pub publish_timeout_ms: u64,
    pub max_body_bytes: usize,
    /// Orders kept in memory for `GET /pedidos` (oldest forgotten first).
    pub max_tracked_orders: usize,
    /// How long a client has to send a complete request head (request line and headers),
    /// counted from the moment its connection opens or the end of the previous response: also
    /// the keep-alive idle timeout. A client that misses it is disconnected without an answer.
    pub head_timeout_ms: u64,
    /// How long a client has to send a request body once its head is in; a late body is
    /// answered 408.
    pub body_timeout_ms: u64,
    /// How long a response write may make no progress (the client stopped reading) before the
    /// connection is closed.
    pub write_timeout_ms: u64,
    /// On shutdown, how long in-flight requests may take to finish before their connections are
    /// cut.
    pub shutdown_timeout_ms: u64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8000".into(),
            publish_timeout_ms: 5_000,
            max_body_bytes: 16 * 1024,
            max_tracked_orders: 200_000,
            head_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            write_timeout_ms: 10_000,
            shutdown_timeout_ms: 10_000,
        }
    }
}

impl ApiConfig {
    /// The largest accepted HTTP timeout (one hour): anything longer is a typo, not a choice.
    pub const MAX_HTTP_TIMEOUT_MS: u64 = 3_600_000;

    pub fn head_timeout(&self) -> Duration {
        Duration::from_millis(self.head_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn write_timeout(&self) -> Duration {
        Duration::from_millis(self.write_timeout_ms)
    }
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FraudConfig {
    pub group_id: String,
    /// Seed mixed with each order id: the same order always draws the same number.
    pub seed: u64,
    /// Chance (0.0–1.0) that an otherwise valid order is refused at random.
    pub refusal_probability: f64,
    /// Refuse when the unit price exceeds this.
    pub max_valor: Option<Decimal>,
    /// Refuse when `valor × quantidade` exceeds this.
    pub max_total: Option<Decimal>,
    pub blocked_users: Vec<String>,
    pub blocked_products: Vec<String>,
    /// Orders processed concurrently (produced but not yet acknowledged).
    pub max_in_flight: usize,
    /// Exactly-once mode: decide and publish inside Kafka transactions (brokers with
    /// transactions only, e.g. Confluent Cloud).
    pub transactional: bool,
    /// The `transactional.id` in that mode; stable across restarts of one process, distinct
    /// between processes. Default: `<group_id>-<kafka.group_instance_id or "0">`.
    pub transactional_id: Option<String>,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            group_id: "fraud".into(),
            seed: 0,
            refusal_probability: 0.1,
            max_valor: Some(Decimal::new(10_000, 0)),
            max_total: Some(Decimal::new(50_000, 0)),
            blocked_users: Vec::new(),
            blocked_products: Vec::new(),
            max_in_flight: 2_000,
            transactional: false,
            transactional_id: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationConfig {
    pub group_id: String,
    /// How many recent event ids are remembered to drop replayed duplicates.
    pub dedup_window: usize,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            group_id: "notification".into(),
            dedup_window: 100_000,
        }
    }
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub format: LogFormat,
    /// `RUST_LOG`-style filter, used when `RUST_LOG` is not set.
    pub filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
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
            std::env::vars(),
        )
    }

    /// The pure part of [`Config::load`]: a file's text (if any) and environment variables.
    pub fn from_sources(
        file: Option<(&Path, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let file_name = file
            .map(|(p, _)| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".into());
        let mut table = match file {
            Some((path, text)) => {
                toml::from_str::<toml::Table>(text).map_err(|e| ConfigError::Syntax {
                    path: path.to_path_buf(),
                    message: e.message().to_string() + &line_hint(text, e.span()),
                })?
            }
            None => toml::Table::new(),
        };

        let overrides = env_overrides(env);
        for o in &overrides {
            insert_path(&mut table, &o.path, parse_env_value(&o.raw)).map_err(|message| {
                ConfigError::Invalid {
                    origin: format!("environment variable {}", o.var),
                    key: o.path.join("."),
                    message,
                }
            })?;
        }

        // An environment value that parsed as a number or bool but belongs in a string field
        // (a numeric password, say) is retried as the string it was written as.
        let mut retried = Vec::new();
        let config: Config = loop {
            let value = toml::Value::Table(table.clone());
            match serde_path_to_error::deserialize::<_, Config>(value) {
                Ok(c) => break c,
                Err(err) => {
                    let key = err.path().to_string();
                    let from_env = overrides.iter().find(|o| o.path.join(".") == key);
                    if let Some(o) = from_env {
                        if !retried.contains(&key)
                            && !matches!(parse_env_value(&o.raw), toml::Value::String(_))
                        {
                            retried.push(key);
                            let _ = insert_path(
                                &mut table,
                                &o.path,
                                toml::Value::String(o.raw.clone()),
                            );
                            continue;
                        }
                    }
                    let key = if key == "." { String::new() } else { key };
                    let message = err.into_inner().to_string();
                    // An unknown-field error points at the parent table; match the variable by
                    // the field it names.
                    let origin = overrides
                        .iter()
                        .find(|o| {
                            let joined = o.path.join(".");
                            joined == key
                                || (o.path[..o.path.len() - 1].join(".") == key
                                    && message.contains(&format!("`{}`", o.path[o.path.len() - 1])))
                        })
                        .map(|o| format!("environment variable {}", o.var))
                        .unwrap_or_else(|| file_name.clone());
                    return Err(ConfigError::Invalid {
                        origin,
                        key: if key.is_empty() {
                            "(top level)".into()
                        } else {
                            key
                        },
                        message,
                    });
                }
            }
        };

        config.validate(|key| {
            overrides
                .iter()
                .find(|o| o.path.join(".") == key)
                .map(|o| format!("environment variable {}", o.var))
                .unwrap_or_else(|| file_name.clone())
        })?;
        Ok(config)
    }

    fn validate(&self, origin_of: impl Fn(&str) -> String) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            origin: origin_of(key),
            key: key.to_string(),
            message,
        };
        validate_bootstrap_servers(&self.kafka.bootstrap_servers)
            .map_err(|m| invalid("kafka.bootstrap_servers", m))?;
        let k = &self.kafka;
        if k.security_protocol.uses_sasl() {
            const MECHANISMS: [&str; 4] =
                ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];
            if !MECHANISMS.contains(&k.sasl_mechanisms.as_str()) {
                return Err(invalid(
                    "kafka.sasl_mechanisms",
                    format!("must be one of {MECHANISMS:?}, got {:?}", k.sasl_mechanisms),
                ));
            }
            if k.sasl_mechanisms != "OAUTHBEARER" {
                if k.sasl_username.trim().is_empty() {
                    return Err(invalid(
                        "kafka.sasl_username",
                        format!("must not be empty with security_protocol = \"{}\" (Confluent Cloud: the API key)", k.security_protocol),
                    ));
                }
                if k.sasl_password.is_empty() {
                    return Err(invalid(
                        "kafka.sasl_password",
                        format!("must not be empty with security_protocol = \"{}\" (Confluent Cloud: the API secret)", k.security_protocol),
                    ));
                }
            }
        }
        if let Some(ca) = &k.ssl_ca_location {
            if !ca.is_file() {
                return Err(invalid(
                    "kafka.ssl_ca_location",
                    format!("no such file: {}", ca.display()),
                ));
            }
        }
        if k.startup_timeout_secs == 0 {
            return Err(invalid(
                "kafka.startup_timeout_secs",
                "must be at least 1".into(),
            ));
        }
        let t = &self.topics;
        for (key, name) in [
            ("topics.pedidos", &t.pedidos),
            ("topics.notificacoes", &t.notificacoes),
            ("topics.pedidos_validos", &t.pedidos_validos),
            ("topics.pedidos_recusados", &t.pedidos_recusados),
        ] {
            validate_topic_name(name).map_err(|m| invalid(key, m))?;
        }
        if t.partitions < 1 {
            return Err(invalid("topics.partitions", "must be at least 1".into()));
        }
        if t.replication_factor == 0 || t.replication_factor < -1 {
            return Err(invalid(
                "topics.replication_factor",
                "must be -1 (broker default) or at least 1".into(),
            ));
        }
        if self.api.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "api.listen",
                format!(
                    "must be an address like 127.0.0.1:8000, got {:?}",
                    self.api.listen
                ),
            ));
        }
        if self.api.publish_timeout_ms == 0 {
            return Err(invalid(
                "api.publish_timeout_ms",
                "must be at least 1".into(),
            ));
        }
        for (key, ms) in [
            ("api.head_timeout_ms", self.api.head_timeout_ms),
            ("api.body_timeout_ms", self.api.body_timeout_ms),
            ("api.write_timeout_ms", self.api.write_timeout_ms),
            ("api.shutdown_timeout_ms", self.api.shutdown_timeout_ms),
        ] {
            if !(1..=ApiConfig::MAX_HTTP_TIMEOUT_MS).contains(&ms) {
                return Err(invalid(
                    key,
                    format!(
                        "must be between 1 and {} (one hour), got {ms}",
                        ApiConfig::MAX_HTTP_TIMEOUT_MS
                    ),
                ));
            }
        }
        let f = &self.fraud;
        if !(0.0..=1.0).contains(&f.refusal_probability) {
            return Err(invalid(
                "fraud.refusal_probability",
                format!("must be between 0.0 and 1.0, got {}", f.refusal_probability),
            ));
        }
        if f.max_in_flight == 0 {
            return Err(invalid("fraud.max_in_flight", "must be at least 1".into()));
        }
        if self.notification.dedup_window == 0 {
            return Err(invalid(
                "notification.dedup_window",
                "must be at least 1".into(),
            ));
        }
        if self.monitoring.summary_interval_secs == 0 {
            return Err(invalid(
                "monitoring.summary_interval_secs",
                "must be at least 1".into(),
            ));
        }
        Ok(())
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

fn validate_topic_name(name: &str) -> Result<(), String> {
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > 249 || !name.chars().all(legal) {
        return Err(format!(
            "{name:?} is not a legal Kafka topic name (1-249 of [a-zA-Z0-9._-])"
        ));
    }
    Ok(())
}

struct EnvOverride {
    var: String,
    path: Vec<String>,
    raw: String,
}

fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> Vec<EnvOverride> {
    let mut out: Vec<EnvOverride> = env
        .into_iter()
        .filter_map(|(var, raw)| {
            let rest = var.strip_prefix(ENV_PREFIX)?;
            if !rest.contains("__") {
                return None; // PEDIDOS_CONFIG and friends are not config keys.
            }
            let path = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            Some(EnvOverride { var, path, raw })
        })
        .collect();
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

fn parse_env_value(raw: &str) -> toml::Value {
    // Parse as the value of a TOML key; anything that is not TOML is taken as a plain string.
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

fn line_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!(" (line {line})")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_sources(
            Some((Path::new("conf.toml"), file)),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    fn err(file: &str, env: &[(&str, &str)]) -> String {
        load(file, env)
            .expect_err("config should be rejected")
            .to_string()
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
    }

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
    fn environment_overrides_file() {
        let c = load(
            "[api]\nlisten = \"127.0.0.1:8000\"\n",
            &[
                ("PEDIDOS_API__LISTEN", "0.0.0.0:9000"),
                ("PEDIDOS_FRAUD__REFUSAL_PROBABILITY", "0.5"),
                ("PEDIDOS_FRAUD__BLOCKED_USERS", r#"["mallory", "eve"]"#),
                ("PEDIDOS_CONFIG", "ignored.toml"),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.api.listen, "0.0.0.0:9000");
        assert_eq!(c.fraud.refusal_probability, 0.5);
        assert_eq!(c.fraud.blocked_users, vec!["mallory", "eve"]);
    }

    #[test]
    fn numeric_password_from_environment_stays_a_string() {
        let c = load(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"k\"\n",
            &[("PEDIDOS_KAFKA__SASL_PASSWORD", "123456")],
        )
        .unwrap();
        assert_eq!(c.kafka.sasl_password.expose(), "123456");
    }

    #[test]
    fn unknown_key_is_named_with_its_file() {
        let e = err("[kafka]\nsasl_pasword = \"x\"\n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("sasl_pasword"), "{e}");
    }

    #[test]
    fn unknown_section_is_named() {
        let e = err("[kafak]\nbootstrap_servers = \"x:1\"\n", &[]);
        assert!(e.contains("kafak"), "{e}");
    }

    #[test]
    fn unknown_key_from_environment_names_the_variable() {
        let e = err("", &[("PEDIDOS_API__LISTN", "0.0.0.0:1")]);
        assert!(e.contains("listn"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_file() {
        let e = err("[topics]\npartitions = \"three\"\n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("topics.partitions"), "{e}");
    }

    #[test]
    fn wrong_type_from_environment_names_the_variable() {
        let e = err("", &[("PEDIDOS_TOPICS__PARTITIONS", "many")]);
        assert!(e.contains("PEDIDOS_TOPICS__PARTITIONS"), "{e}");
        assert!(e.contains("topics.partitions"), "{e}");
    }

    #[test]
    fn toml_syntax_error_names_file_and_line() {
        let e = err("[kafka]\nbootstrap_servers = \n", &[]);
        assert!(e.contains("conf.toml"), "{e}");
        assert!(e.contains("line 2"), "{e}");
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
    fn probability_out_of_range_is_rejected() {
        let e = err("[fraud]\nrefusal_probability = 1.5\n", &[]);
        assert!(e.contains("fraud.refusal_probability"), "{e}");
    }

    #[test]
    fn money_limits_are_exact_decimals() {
        let c = load("[fraud]\nmax_total = \"1000.10\"\n", &[]).unwrap();
        assert_eq!(c.fraud.max_total, Some(Decimal::new(100010, 2)));
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = load(
            "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"key\"\nsasl_password = \"hunter2-very-secret\"\n",
            &[],
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("***"));
    }

    #[test]
    fn secret_passthrough_properties_never_show_in_debug_output() {
        let c = load(
            r#"
            [kafka.properties]
            "ssl.key.password" = "pw-one-very-secret"
            "sasl.oauthbearer.client.secret" = "pw-two-very-secret"
            "client.dns.lookup" = "use_all_dns_ips"
            [kafka.consumer_properties]
            "sasl.password" = "pw-three-very-secret"
            "#,
            &[(
                "PEDIDOS_KAFKA__PRODUCER_PROPERTIES__SSL.KEYSTORE.PASSWORD",
                "pw-four-very-secret",
            )],
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        assert!(debug.contains("use_all_dns_ips"), "{debug}");
        assert_eq!(
            c.kafka.producer_properties["ssl.keystore.password"],
            "pw-four-very-secret"
        );
    }

    #[test]
    fn role_properties_come_from_file_and_environment() {
        let c = load(
            "[kafka.producer_properties]\n\"linger.ms\" = \"20\"\n",
            &[(
                "PEDIDOS_KAFKA__CONSUMER_PROPERTIES__FETCH.MIN.BYTES",
                "1000",
            )],
        )
        .unwrap();
        assert_eq!(c.kafka.producer_properties["linger.ms"], "20");
        assert_eq!(c.kafka.consumer_properties["fetch.min.bytes"], "1000");
        assert!(c.kafka.properties.is_empty());
    }

    #[test]
    fn http_timeouts_default_to_ten_seconds() {
        let c = Config::from_sources(None, Vec::new()).unwrap();
        assert_eq!(c.api.head_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.body_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.write_timeout(), Duration::from_secs(10));
        assert_eq!(c.api.shutdown_timeout(), Duration::from_secs(10));
    }

    #[test]
    fn http_timeouts_come_from_file_and_environment() {
        let file = "[api]\nhead_timeout_ms = 1500\nbody_timeout_ms = 2500\n\
                    write_timeout_ms = 3500\nshutdown_timeout_ms = 4500\n";
        let c = load(file, &[]).unwrap();
        assert_eq!(c.api.head_timeout(), Duration::from_millis(1_500));
        assert_eq!(c.api.body_timeout(), Duration::from_millis(2_500));
        assert_eq!(c.api.write_timeout(), Duration::from_millis(3_500));
        assert_eq!(c.api.shutdown_timeout(), Duration::from_millis(4_500));

        let c = load(
            file,
            &[
                ("PEDIDOS_API__HEAD_TIMEOUT_MS", "100"),
                ("PEDIDOS_API__BODY_TIMEOUT_MS", "200"),
                ("PEDIDOS_API__WRITE_TIMEOUT_MS", "300"),
                ("PEDIDOS_API__SHUTDOWN_TIMEOUT_MS", "400"),
            ],
        )
        .unwrap();
        assert_eq!(c.api.head_timeout_ms, 100);
        assert_eq!(c.api.body_timeout_ms, 200);
        assert_eq!(c.api.write_timeout_ms, 300);
        assert_eq!(c.api.shutdown_timeout_ms, 400);
    }

    #[test]
    fn the_example_file_is_valid_and_documents_the_api_defaults() {
        let example = include_str!("../../conf.example.toml");
        let c = load(example, &[]).unwrap();
        let defaults = ApiConfig::default();
        assert_eq!(c.api.head_timeout_ms, defaults.head_timeout_ms);
        assert_eq!(c.api.body_timeout_ms, defaults.body_timeout_ms);
        assert_eq!(c.api.write_timeout_ms, defaults.write_timeout_ms);
        assert_eq!(c.api.shutdown_timeout_ms, defaults.shutdown_timeout_ms);
        assert_eq!(c.api.publish_timeout_ms, defaults.publish_timeout_ms);
    }

    #[test]
    fn zero_or_absurd_http_timeouts_are_rejected_by_name() {
        for key in [
            "head_timeout_ms",
            "body_timeout_ms",
            "write_timeout_ms",
            "shutdown_timeout_ms",
        ] {
            for bad in ["0", "3600001", "9223372036854775807"] {
                let e = err(&format!("[api]\n{key} = {bad}\n"), &[]);
                assert!(e.contains("conf.toml"), "{key} = {bad}: {e}");
                assert!(e.contains(&format!("api.{key}")), "{key} = {bad}: {e}");
                assert!(e.contains("between 1 and 3600000"), "{key} = {bad}: {e}");
            }
            let var = format!("PEDIDOS_API__{}", key.to_ascii_uppercase());
            let e = err("", &[(var.as_str(), "0")]);
            assert!(e.contains(&var), "{e}");
            assert!(e.contains(&format!("api.{key}")), "{e}");

            let e = err(&format!("[api]\n{key} = -5\n"), &[]);
            assert!(e.contains(&format!("api.{key}")), "{key} = -5: {e}");
            let e = err(&format!("[api]\n{key} = \"10s\"\n"), &[]);
            assert!(e.contains(&format!("api.{key}")), "{key} = \"10s\": {e}");
        }
        let c = load("[api]\nbody_timeout_ms = 3600000\n", &[]).unwrap();
        assert_eq!(c.api.body_timeout(), Duration::from_secs(3_600));
    }

    #[test]
    fn explicit_missing_file_is_an_error() {
        let e = Config::load(Some(Path::new("/nonexistent/pedidos.toml"))).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/pedidos.toml"));
    }
}
