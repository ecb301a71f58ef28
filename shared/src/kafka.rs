//! The one place that turns configuration into Kafka clients, checks the cluster is reachable
//! and creates the topics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::types::RDKafkaErrorCode as Code;

use crate::config::{KafkaConfig, TopicsConfig};

/// Why a daemon could not start talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid Kafka client setting: {0}")]
    Client(#[source] KafkaError),
    #[error(
        "cannot connect to Kafka at {servers} (security.protocol={protocol}) within {waited:?}: {reason}"
    )]
    Unreachable {
        servers: String,
        protocol: String,
        waited: Duration,
        reason: String,
    },
    #[error("Kafka at {servers} rejected the credentials of user {username:?} (sasl.mechanisms={mechanism}): {reason}")]
    Authentication {
        servers: String,
        username: String,
        mechanism: String,
        reason: String,
    },
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("topic {topic} does not exist and topics.create is false")]
    MissingTopic { topic: String },
}

/// Client context shared by every client we build: routes librdkafka's logs and errors into
/// `tracing` and remembers the last error so start-up failures can say what the broker said.
#[derive(Clone, Default)]
pub struct Context {
    last_error: Arc<Mutex<Option<(RDKafkaErrorCode, String)>>>,
    /// The last broker failure librdkafka logged (facility FAIL), at any level: some failures
    /// (a TLS client on a plaintext port, a plaintext client on a TLS port) are only logged.
    last_failure: Arc<Mutex<Option<String>>>,
}

impl Context {
    fn last_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.last_error.lock().unwrap().clone()
    }
    fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap().clone()
    }
    fn clear(&self) {
        self.last_error.lock().unwrap().take();
        self.last_failure.lock().unwrap().take();
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            *self.last_failure.lock().unwrap() = Some(message.to_string());
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(Code::Unknown);
        // librdkafka retries on its own; these are worth a warning, not a crash, once running.
        if code == Code::AllBrokersDown {
            // A consequence, repeated on every attempt; its cause is reported on its own.
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        }
        let mut last = self.last_error.lock().unwrap();
        // "1/1 brokers are down" says less than the failure that took them down: keep that one.
        if code == Code::AllBrokersDown && last.is_some() {
            return;
        }
        *last = Some((code, reason.to_string()));
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = %parts.join(","), "partitions assigned");
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(count = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

pub type Producer = FutureProducer<Context>;
pub type Consumer = StreamConsumer<Context>;

/// The value of a consumed record's first header called `name`, when it has one.
pub fn header_value<'a, M: rdkafka::Message>(message: &'a M, name: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers as _;
    message.headers()?.iter().find(|h| h.key == name)?.value
}

/// Which of the user's role-specific passthrough tables a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Producer,
    Consumer,
    /// Admin clients: only `kafka.properties`.
    Other,
}

/// The base client configuration: servers, security and the passthrough properties.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    with_settings(k, Role::Other, &[])
}

/// Connection settings, then `settings`, then the user's passthrough properties (all clients',
/// then this role's), which win over every default set here.
fn with_settings(k: &KafkaConfig, role: Role, settings: &[(&str, &str)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("security.protocol", k.security_protocol.as_str())
        .set("client.id", "pedidos");
    if k.security_protocol.uses_sasl() {
        c.set("sasl.mechanisms", &k.sasl_mechanisms)
            .set("sasl.username", &k.sasl_username)
            .set("sasl.password", k.sasl_password.expose());
    }
    if let Some(ca) = &k.ssl_ca_location {
        c.set("ssl.ca.location", ca.display().to_string());
    }
    for (key, value) in settings {
        c.set(*key, *value);
    }
    let role_properties = match role {
        Role::Producer => Some(&k.producer_properties),
        Role::Consumer => Some(&k.consumer_properties),
        Role::Other => None,
    };
    for (key, value) in k
        .properties
        .iter()
        .chain(role_properties.into_iter().flat_map(|p| p.iter()))
    {
        c.set(key, value);
    }
    c
}

fn build<T: FromClientConfigAndContext<Context>>(
    k: &KafkaConfig,
    role: Role,
    settings: &[(&str, &str)],
) -> Result<T, StartupError> {
    with_settings(k, role, settings)
        .create_with_context(Context::default())
        .map_err(StartupError::Client)
}

/// Every producer: no duplicates on retry, acknowledged by all in-sync replicas, batched.
/// `linger.ms` is 1, not librdkafka's 5: an order crosses three producers in a row (api's
/// `Analise`, api's order, fraud's verdict), so the linger is paid three times on every order's
/// way to its verdict; under load records still batch while earlier requests are in flight
/// (BENCHMARKS.md: p50 POST → verdict 19 → 11 ms at 1,000 orders/s, same full-speed rate).
const PRODUCER: [(&str, &str); 4] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "1"),
    ("compression.type", "lz4"),
];

/// An idempotent, `acks=all` producer. `message_timeout` bounds how long a record may wait for
/// acknowledgement before its delivery future fails.
pub fn producer(k: &KafkaConfig, message_timeout: Duration) -> Result<Producer, StartupError> {
    let timeout = message_timeout.as_millis().to_string();
    let mut settings = PRODUCER.to_vec();
    settings.push(("message.timeout.ms", &timeout));
    build(k, Role::Producer, &settings)
}

/// A transactional producer (exactly-once mode): idempotent, `acks=all`, with a
/// `transactional.id` that must stay the same across restarts of one process so a restarted
/// process fences its crashed predecessor.
pub fn transactional_producer(
    k: &KafkaConfig,
    transactional_id: &str,
) -> Result<Producer, StartupError> {
    let mut settings = PRODUCER.to_vec();
    settings.extend([
        ("transactional.id", transactional_id),
        ("transaction.timeout.ms", "60000"),
    ]);
    build(k, Role::Producer, &settings)
}

/// A group consumer whose offsets are stored by hand after the outputs of each record were
/// acknowledged, and committed in the background (at-least-once).
pub fn consumer(k: &KafkaConfig, group_id: &str) -> Result<Consumer, StartupError> {
    group_consumer(k, group_id, true)
}

/// A group consumer for the exactly-once mode: it commits nothing itself; offsets are committed
/// inside the producer's transactions.
pub fn transactional_consumer(k: &KafkaConfig, group_id: &str) -> Result<Consumer, StartupError> {
    group_consumer(k, group_id, false)
}

fn group_consumer(
    k: &KafkaConfig,
    group_id: &str,
    auto_commit: bool,
) -> Result<Consumer, StartupError> {
    let mut settings = vec![
        ("group.id", group_id),
        (
            "enable.auto.commit",
            if auto_commit { "true" } else { "false" },
        ),
        ("enable.auto.offset.store", "false"),
        // Commit stored offsets every second: fewer replays after a crash or a coordinator move.
        ("auto.commit.interval.ms", "1000"),
        // Never see records of aborted (or still open) transactions.
        ("isolation.level", "read_committed"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "false"),
        // A crashed member's partitions move to the others after 10 s instead of 45 s
        // (Confluent Cloud accepts 6–300 s).
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "2000"),
    ];
    if let Some(id) = &k.group_instance_id {
        settings.push(("group.instance.id", id));
    }
    build(k, Role::Consumer, &settings)
}

/// A consumer without a group, for reading topics from the beginning (the API's read model,
/// tests). Nothing is committed.
pub fn reader(k: &KafkaConfig) -> Result<Consumer, StartupError> {
    let group = format!("pedidos-reader-{}", uuid::Uuid::new_v4());
    build(
        k,
        Role::Consumer,
        &[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
        ],
    )
}

/// Waits until the cluster answers a metadata request, or fails with what the broker said.
/// Runs the blocking librdkafka calls off the async runtime.
pub async fn check_connectivity(k: &KafkaConfig) -> Result<(), StartupError> {
    // A quiet probe: its own reconnect attempts would otherwise spam the log.
    let client: rdkafka::consumer::BaseConsumer<Context> =
        build(k, Role::Consumer, &[("log_level", "3")])?;
    let k = k.clone();
    tokio::task::spawn_blocking(move || probe(&client, &k))
        .await
        .expect("connectivity probe panicked")
}

fn probe(
    client: &rdkafka::consumer::BaseConsumer<Context>,
    k: &KafkaConfig,
) -> Result<(), StartupError> {
    use rdkafka::consumer::Consumer as _;
    let timeout = k.startup_timeout();
    let started = Instant::now();
    loop {
        let remaining = timeout.saturating_sub(started.elapsed());
        let attempt = remaining.min(Duration::from_secs(1));
        let result = client.fetch_metadata(None, attempt);
        // librdkafka's errors (and logs) wait in the client's queue (rdkafka sets log.queue)
        // and reach `Context` only when the client is polled: serve them all.
        while client.poll(Duration::from_millis(50)).is_some() {}
        if let Some((code, reason)) = client.context().last_error() {
            if is_auth_failure(code, &reason) {
                return Err(StartupError::Authentication {
                    servers: k.bootstrap_servers.clone(),
                    username: k.sasl_username.clone(),
                    mechanism: k.sasl_mechanisms.clone(),
                    reason,
                });
            }
            if is_permanent_tls_failure(code, &reason) {
                return Err(unreachable(k, started.elapsed(), reason));
            }
        }
        match result {
            Ok(_) => {
                client.context().clear();
                return Ok(());
            }
            Err(e) if started.elapsed() >= timeout => {
                let context = client.context();
                let reason = match (context.last_error(), context.last_failure()) {
                    (Some((code, r)), _) if code != Code::AllBrokersDown => r,
                    (_, Some(failure)) => failure,
                    (Some((_, r)), None) => r,
                    (None, None) => e.to_string(),
                };
                return Err(unreachable(k, started.elapsed(), reason));
            }
            Err(_) => {}
        }
    }
}

fn unreachable(k: &KafkaConfig, waited: Duration, reason: String) -> StartupError {
    StartupError::Unreachable {
        servers: k.bootstrap_servers.clone(),
        protocol: k.security_protocol.to_string(),
        waited,
        reason,
    }
}

fn is_auth_failure(code: RDKafkaErrorCode, reason: &str) -> bool {
    matches!(
        code,
        Code::Authentication | Code::SaslAuthenticationFailed | Code::TopicAuthorizationFailed
    ) || reason.contains("SASL authentication error")
}

/// A broken certificate chain will not heal by retrying: report it at once.
fn is_permanent_tls_failure(code: RDKafkaErrorCode, reason: &str) -> bool {
    code == Code::SSL
        && (reason.contains("certificate verify failed") || reason.contains("ssl.ca.location"))
}

/// Creates every topic the mesh uses that does not exist yet. Creating again is a no-op.
pub async fn ensure_topics(k: &KafkaConfig, topics: &TopicsConfig) -> Result<(), StartupError> {
    let admin: AdminClient<Context> = build(k, Role::Other, &[])?;
    let wanted = topics.all();
    let (existing, brokers): (Vec<String>, usize) = {
        let metadata = admin
            .inner()
            .fetch_metadata(None, k.startup_timeout())
            .map_err(|e| unreachable(k, k.startup_timeout(), e.to_string()))?;
        let names = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_string())
            .collect();
        (names, metadata.brokers().len())
    };
    let missing: Vec<&String> = wanted.iter().filter(|t| !existing.contains(t)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !topics.create {
        return Err(StartupError::MissingTopic {
            topic: missing[0].clone(),
        });
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                topics.partitions,
                TopicReplication::Fixed(topics.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(k.startup_timeout()));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(|e| StartupError::CreateTopic {
            topic: missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            reason: e.to_string(),
        })?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = topics.partitions, "created topic")
            }
            // Another daemon created it at the same moment.
            Err((_, Code::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(StartupError::CreateTopic {
                    topic,
                    reason: creation_failure(code, topics, brokers),
                })
            }
        }
    }
    wait_until_visible(&admin, k, &wanted).await
}

/// Why a topic could not be created, in the configuration's terms where the broker's code
/// allows (librdkafka hands over only the code, not the broker's message).
fn creation_failure(code: RDKafkaErrorCode, topics: &TopicsConfig, brokers: usize) -> String {
    match code {
        Code::InvalidReplicationFactor => {
            let asked = match topics.replication_factor {
                -1 => "topics.replication_factor = -1 (the cluster's default.replication.factor)"
                    .to_string(),
                n => format!("topics.replication_factor = {n}"),
            };
            let noun = if brokers == 1 { "broker" } else { "brokers" };
            format!("{code}: {asked}, but the cluster has {brokers} {noun}")
        }
        _ => code.to_string(),
    }
}

/// Waits until the cluster's metadata shows every topic with a leader for each partition. A
/// created topic reaches the brokers' metadata caches a moment after CreateTopics answers, and
/// a reader that assigns partitions from metadata (the API's read model) would otherwise miss
/// a topic altogether.
async fn wait_until_visible(
    admin: &AdminClient<Context>,
    k: &KafkaConfig,
    topics: &[String],
) -> Result<(), StartupError> {
    let deadline = tokio::time::Instant::now() + k.startup_timeout();
    loop {
        let metadata = admin
            .inner()
            .fetch_metadata(None, k.startup_timeout())
            .map_err(|e| unreachable(k, k.startup_timeout(), e.to_string()))?;
        let pending = topics.iter().find(|name| {
            !metadata.topics().iter().any(|t| {
                t.name() == name.as_str()
                    && !t.partitions().is_empty()
                    && t.partitions().iter().all(|p| p.leader() >= 0)
            })
        });
        let Some(pending) = pending else {
            return Ok(());
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(StartupError::CreateTopic {
                topic: pending.clone(),
                reason: format!(
                    "created, but not visible with a leader for every partition after {:?}",
                    k.startup_timeout()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SecurityProtocol};

    fn confluent() -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: "pkc-1.confluent.cloud:9092".into(),
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_username: "KEY".into(),
            sasl_password: Secret::new("SECRET"),
            ssl_ca_location: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            ..KafkaConfig::default()
        }
    }

    #[test]
    fn confluent_cloud_settings_map_onto_librdkafka_keys() {
        let c = client_config(&confluent());
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("pkc-1.confluent.cloud:9092")
        );
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanisms"), Some("PLAIN"));
        assert_eq!(c.get("sasl.username"), Some("KEY"));
        assert_eq!(c.get("sasl.password"), Some("SECRET"));
        assert_eq!(
            c.get("ssl.ca.location"),
            Some("/etc/ssl/certs/ca-certificates.crt")
        );
    }

    #[test]
    fn plaintext_sets_no_sasl_keys() {
        let c = client_config(&KafkaConfig::default());
        assert_eq!(c.get("security.protocol"), Some("PLAINTEXT"));
        assert_eq!(c.get("sasl.username"), None);
        assert_eq!(c.get("sasl.password"), None);
    }

    #[test]
    fn passthrough_properties_win_over_defaults() {
        let mut k = KafkaConfig::default();
        k.properties.insert("linger.ms".into(), "50".into());
        k.properties
            .insert("session.timeout.ms".into(), "30000".into());
        let producer = with_settings(&k, Role::Producer, &PRODUCER);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        let consumer = with_settings(&k, Role::Consumer, &[("session.timeout.ms", "10000")]);
        assert_eq!(consumer.get("session.timeout.ms"), Some("30000"));
    }

    #[test]
    fn header_value_finds_the_first_header_of_that_name() {
        use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "event-type",
                value: Some("x"),
            })
            .insert(Header {
                key: "correlation-id",
                value: Some("first"),
            })
            .insert(Header {
                key: "correlation-id",
                value: Some("second"),
            })
            .insert(Header::<&str> {
                key: "empty",
                value: None,
            });
        let message = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(headers),
        );
        assert_eq!(
            header_value(&message, "correlation-id"),
            Some(&b"first"[..])
        );
        assert_eq!(header_value(&message, "empty"), None);
        assert_eq!(header_value(&message, "missing"), None);
        let bare = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        assert_eq!(header_value(&bare, "correlation-id"), None);
    }

    #[test]
    fn role_properties_reach_only_their_role_and_win_over_the_common_ones() {
        let mut k = KafkaConfig::default();
        k.properties.insert("client.id".into(), "everyone".into());
        k.properties.insert("linger.ms".into(), "7".into());
        k.producer_properties
            .insert("linger.ms".into(), "20".into());
        k.consumer_properties
            .insert("fetch.min.bytes".into(), "1000".into());
        let producer = with_settings(&k, Role::Producer, &PRODUCER);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("fetch.min.bytes"), None);
        assert_eq!(producer.get("client.id"), Some("everyone"));
        let consumer = with_settings(&k, Role::Consumer, &[]);
        assert_eq!(consumer.get("fetch.min.bytes"), Some("1000"));
        assert_eq!(consumer.get("linger.ms"), Some("7"));
        let admin = with_settings(&k, Role::Other, &[]);
        assert_eq!(admin.get("fetch.min.bytes"), None);
        assert_eq!(admin.get("client.id"), Some("everyone"));
    }

    #[test]
    fn a_replication_factor_the_cluster_cannot_meet_is_explained_in_configuration_terms() {
        let mut topics = TopicsConfig {
            replication_factor: 4,
            ..TopicsConfig::default()
        };
        let reason = creation_failure(Code::InvalidReplicationFactor, &topics, 3);
        assert!(
            reason.contains("topics.replication_factor = 4, but the cluster has 3 brokers"),
            "{reason}"
        );
        assert!(
            reason.to_lowercase().contains("replication factor"),
            "{reason}"
        );
        topics.replication_factor = -1;
        let reason = creation_failure(Code::InvalidReplicationFactor, &topics, 1);
        assert!(
            reason.contains("default.replication.factor") && reason.contains("has 1 broker"),
            "{reason}"
        );
        assert_eq!(
            creation_failure(Code::PolicyViolation, &topics, 3),
            Code::PolicyViolation.to_string()
        );
    }

    #[test]
    fn authentication_failures_are_told_apart_from_outages() {
        assert!(is_auth_failure(
            Code::Authentication,
            "SASL authentication error: Authentication failed: Invalid username or password"
        ));
        assert!(is_auth_failure(Code::SaslAuthenticationFailed, "x"));
        assert!(!is_auth_failure(
            Code::AllBrokersDown,
            "1/1 brokers are down"
        ));
        assert!(is_permanent_tls_failure(
            Code::SSL,
            "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed"
        ));
        assert!(!is_permanent_tls_failure(
            Code::BrokerTransportFailure,
            "Connection refused"
        ));
    }
}
