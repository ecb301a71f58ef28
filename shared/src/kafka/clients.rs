//! Kafka clients built from configuration: connection and security settings, the mesh's
//! defaults for each kind of client, then the user's passthrough properties.

use std::time::Duration;

use rdkafka::config::{ClientConfig, FromClientConfigAndContext};
use rdkafka::consumer::StreamConsumer;
use rdkafka::producer::BaseProducer;

use super::{Context, Producer, StartupError};
use crate::config::KafkaConfig;
use crate::metrics::clients::Role;

pub type Consumer = StreamConsumer<Context>;

/// The value of a consumed record's first header called `name`, when it has one.
pub fn header_value<'a, M: rdkafka::Message>(message: &'a M, name: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers as _;
    message.headers()?.iter().find(|h| h.key == name)?.value
}

/// Which kind of client this is: it picks which of the user's per-kind passthrough tables apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientKind {
    Producer,
    Consumer,
    /// Admin clients: only `kafka.properties`.
    Other,
}

/// The base client configuration: servers, security and the passthrough properties.
pub fn client_config(k: &KafkaConfig) -> ClientConfig {
    with_settings(k, ClientKind::Other, &[])
}

/// Connection settings, then `settings`, then the user's passthrough properties (all clients',
/// then this kind's), which win over every default set here.
fn with_settings(k: &KafkaConfig, kind: ClientKind, settings: &[(&str, &str)]) -> ClientConfig {
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
    if kind != ClientKind::Other {
        // Lag, queue depth and round-trip times for the metrics (`Context::stats`); the user's
        // properties may change the interval.
        c.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
    }
    for (key, value) in settings {
        c.set(*key, *value);
    }
    let kind_properties = match kind {
        ClientKind::Producer => Some(&k.producer_properties),
        ClientKind::Consumer => Some(&k.consumer_properties),
        ClientKind::Other => None,
    };
    for (key, value) in k
        .properties
        .iter()
        .chain(kind_properties.into_iter().flat_map(|p| p.iter()))
    {
        c.set(key, value);
    }
    c
}

/// How often librdkafka reports statistics: often enough for a dashboard, rare enough to cost
/// nothing (one JSON document per client).
const STATISTICS_INTERVAL_MS: &str = "5000";

pub(super) fn build<T: FromClientConfigAndContext<Context>>(
    k: &KafkaConfig,
    kind: ClientKind,
    settings: &[(&str, &str)],
) -> Result<T, StartupError> {
    build_with(k, kind, settings, Context::default())
}

fn build_with<T: FromClientConfigAndContext<Context>>(
    k: &KafkaConfig,
    kind: ClientKind,
    settings: &[(&str, &str)],
    context: Context,
) -> Result<T, StartupError> {
    with_settings(k, kind, settings)
        .create_with_context(context)
        .map_err(StartupError::Client)
}

/// Every producer: no duplicates on retry, acknowledged by all in-sync replicas, compressed,
/// and sent at once (`linger.ms` 0). An order crosses three sends in a row on its way to a
/// verdict (api's `Analise` and order, fraud's verdict), so a linger is paid on every hop of it;
/// from `kafka.batch_above_records_per_sec` on, records go to a second client that lingers
/// [`BATCH_LINGER_MS`] (`kafka::pace`; BENCHMARKS.md, "A linger only when records flow").
const PRODUCER: [(&str, &str); 4] = [
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("linger.ms", "0"),
    ("compression.type", "lz4"),
];

/// The batching client's linger: librdkafka's default, and the Java client's since Kafka 4.0.
/// At 1,000 orders/s it halves the requests per order against sending at once.
const BATCH_LINGER_MS: &str = "5";

/// An idempotent, `acks=all` producer. `message_timeout` bounds how long a record may wait for
/// acknowledgement before its delivery future fails. A `linger.ms` the user sets is used by
/// one client for every record.
pub fn producer(k: &KafkaConfig, message_timeout: Duration) -> Result<Producer, StartupError> {
    let timeout = message_timeout.as_millis().to_string();
    let mut settings = PRODUCER.to_vec();
    settings.push(("message.timeout.ms", &timeout));
    let client = |settings: &[(&str, &str)], client| {
        let context = Context::with_metrics(Role::Producer { client });
        build_with::<BaseProducer<Context>>(k, ClientKind::Producer, settings, context)
    };
    let prompt = client(&settings, "producer")?;
    let Some(above_per_sec) = batching_from(k) else {
        return Ok(Producer::serve(prompt));
    };
    settings.push(("linger.ms", BATCH_LINGER_MS));
    let batching = client(&settings, "producer-batching")?;
    Ok(Producer::serve_pacing(prompt, batching, above_per_sec))
}

/// The rate from which a producer's records go to a lingering client, if it is to have one:
/// not when switched off, nor when the user fixes `linger.ms`.
fn batching_from(k: &KafkaConfig) -> Option<u32> {
    let linger_set = [&k.properties, &k.producer_properties]
        .iter()
        .any(|p| p.contains_key("linger.ms"));
    (k.batch_above_records_per_sec > 0 && !linger_set).then_some(k.batch_above_records_per_sec)
}

/// A transactional producer (exactly-once mode): idempotent, `acks=all`, with a
/// `transactional.id` that must stay the same across restarts of one process so a restarted
/// process fences its crashed predecessor. It always lingers [`BATCH_LINGER_MS`]: its records
/// are read only once their transaction commits, and the commit sends whatever lingers.
pub fn transactional_producer(
    k: &KafkaConfig,
    transactional_id: &str,
) -> Result<Producer, StartupError> {
    let mut settings = PRODUCER.to_vec();
    settings.extend([
        ("linger.ms", BATCH_LINGER_MS),
        ("transactional.id", transactional_id),
        ("transaction.timeout.ms", "60000"),
    ]);
    let context = Context::with_metrics(Role::Producer { client: "producer" });
    let base: BaseProducer<Context> = build_with(k, ClientKind::Producer, &settings, context)?;
    Ok(Producer::serve(base))
}

/// When a consumer's fetch comes back with the records that arrived.
///
/// The broker answers a fetch as soon as `fetch.min.bytes` have arrived, or after
/// `fetch.wait.max.ms`. At librdkafka's defaults (1 byte, 500 ms) a consumer gets every record
/// at once, and idles on one long poll every 500 ms; but when records trickle in, each one ends
/// a fetch, so every consumer sends a request per arrival: the four consumers of the mesh
/// together made 9-10 fetches per order at 100 orders/s (BENCHMARKS.md, 2026-12-06).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fetch {
    /// Each record at once (librdkafka's defaults): for a consumer on an order's way to its
    /// verdict, which someone is waiting for.
    #[default]
    Prompt,
    /// The records of up to [`BATCHED_FETCH_WAIT_MS`] in one fetch (or 64 KiB, whichever
    /// comes first): for a consumer nobody waits on, which then fetches about ten times a
    /// second whatever the rate, idle or busy.
    Batched,
    /// The records of up to [`BRIEF_FETCH_WAIT_MS`] in one fetch: for a read model whose
    /// readers may wait on it (the API's long-polls and event streams), which may lag by that
    /// much. Each fetch then carries every record of those milliseconds, not one arrival.
    Brief,
}

/// How long a [`Fetch::Batched`] consumer lets records gather.
pub const BATCHED_FETCH_WAIT_MS: &str = "100";
/// How long a [`Fetch::Brief`] consumer lets records gather.
pub const BRIEF_FETCH_WAIT_MS: &str = "20";

impl Fetch {
    fn settings(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Fetch::Prompt => &[],
            Fetch::Batched => &[
                ("fetch.wait.max.ms", BATCHED_FETCH_WAIT_MS),
                ("fetch.min.bytes", "65536"),
            ],
            Fetch::Brief => &[
                ("fetch.wait.max.ms", BRIEF_FETCH_WAIT_MS),
                ("fetch.min.bytes", "65536"),
            ],
        }
    }
}

/// A group consumer whose offsets are stored by hand after the outputs of each record were
/// acknowledged, and committed in the background (at-least-once).
pub fn consumer(k: &KafkaConfig, group_id: &str) -> Result<Consumer, StartupError> {
    consumer_fetching(k, group_id, Fetch::Prompt)
}

/// [`consumer`], fetching as `fetch` says.
pub fn consumer_fetching(
    k: &KafkaConfig,
    group_id: &str,
    fetch: Fetch,
) -> Result<Consumer, StartupError> {
    group_consumer(k, group_id, true, fetch)
}

/// A group consumer for the exactly-once mode: it commits nothing itself; offsets are committed
/// inside the producer's transactions.
pub fn transactional_consumer(
    k: &KafkaConfig,
    group_id: &str,
    fetch: Fetch,
) -> Result<Consumer, StartupError> {
    group_consumer(k, group_id, false, fetch)
}

fn group_consumer(
    k: &KafkaConfig,
    group_id: &str,
    auto_commit: bool,
    fetch: Fetch,
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
    settings.extend_from_slice(fetch.settings());
    let role = Role::Group {
        id: group_id.to_string(),
        committed: auto_commit,
    };
    build_with(
        k,
        ClientKind::Consumer,
        &settings,
        Context::with_metrics(role),
    )
}

/// A consumer for reading topics from the beginning (the API's read model, loadgen, tests).
/// librdkafka needs a `group.id` even for a consumer that assigns partitions itself: each
/// reader gets a fresh one, so it shares partitions with nobody. Nothing is committed.
pub fn reader(k: &KafkaConfig) -> Result<Consumer, StartupError> {
    reader_fetching(k, Fetch::Prompt)
}

/// [`reader`], fetching as `fetch` says (a read model that may lag by a batch, say).
pub fn reader_fetching(k: &KafkaConfig, fetch: Fetch) -> Result<Consumer, StartupError> {
    let group = format!("pedidos-reader-{}", uuid::Uuid::new_v4());
    let mut settings = vec![
        ("group.id", group.as_str()),
        ("enable.auto.commit", "false"),
        ("isolation.level", "read_committed"),
        ("auto.offset.reset", "earliest"),
        ("enable.partition.eof", "false"),
    ];
    settings.extend_from_slice(fetch.settings());
    build_with(
        k,
        ClientKind::Consumer,
        &settings,
        Context::with_metrics(Role::Reader),
    )
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
    fn a_producer_lingers_only_while_records_flow_unless_the_user_fixes_the_linger() {
        let k = KafkaConfig::default();
        assert_eq!(
            with_settings(&k, ClientKind::Producer, &PRODUCER).get("linger.ms"),
            Some("0")
        );
        assert_eq!(batching_from(&k), Some(1_000));

        let off = KafkaConfig {
            batch_above_records_per_sec: 0,
            ..KafkaConfig::default()
        };
        assert_eq!(batching_from(&off), None);

        for table in ["properties", "producer_properties"] {
            let mut fixed = KafkaConfig::default();
            let properties = match table {
                "properties" => &mut fixed.properties,
                _ => &mut fixed.producer_properties,
            };
            properties.insert("linger.ms".into(), "5".into());
            assert_eq!(batching_from(&fixed), None, "{table}");
        }
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
        let producer = with_settings(&k, ClientKind::Producer, &PRODUCER);
        assert_eq!(producer.get("linger.ms"), Some("50"));
        assert_eq!(producer.get("acks"), Some("all"));
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        let consumer = with_settings(&k, ClientKind::Consumer, &[("session.timeout.ms", "10000")]);
        assert_eq!(consumer.get("session.timeout.ms"), Some("30000"));
    }

    #[test]
    fn a_batched_consumer_waits_for_records_and_the_user_still_wins() {
        let k = KafkaConfig::default();
        let batched = with_settings(&k, ClientKind::Consumer, Fetch::Batched.settings());
        assert_eq!(
            batched.get("fetch.wait.max.ms"),
            Some(BATCHED_FETCH_WAIT_MS)
        );
        assert_eq!(batched.get("fetch.min.bytes"), Some("65536"));
        let brief = with_settings(&k, ClientKind::Consumer, Fetch::Brief.settings());
        assert_eq!(brief.get("fetch.wait.max.ms"), Some(BRIEF_FETCH_WAIT_MS));
        assert_eq!(brief.get("fetch.min.bytes"), Some("65536"));
        let prompt = with_settings(&k, ClientKind::Consumer, Fetch::Prompt.settings());
        assert_eq!(
            prompt.get("fetch.wait.max.ms"),
            None,
            "librdkafka's default"
        );
        let mut k = KafkaConfig::default();
        k.consumer_properties
            .insert("fetch.wait.max.ms".into(), "20".into());
        let overridden = with_settings(&k, ClientKind::Consumer, Fetch::Batched.settings());
        assert_eq!(overridden.get("fetch.wait.max.ms"), Some("20"));
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
    fn kind_properties_reach_only_their_role_and_win_over_the_common_ones() {
        let mut k = KafkaConfig::default();
        k.properties.insert("client.id".into(), "everyone".into());
        k.properties.insert("linger.ms".into(), "7".into());
        k.producer_properties
            .insert("linger.ms".into(), "20".into());
        k.consumer_properties
            .insert("fetch.min.bytes".into(), "1000".into());
        let producer = with_settings(&k, ClientKind::Producer, &PRODUCER);
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("fetch.min.bytes"), None);
        assert_eq!(producer.get("client.id"), Some("everyone"));
        let consumer = with_settings(&k, ClientKind::Consumer, &[]);
        assert_eq!(consumer.get("fetch.min.bytes"), Some("1000"));
        assert_eq!(consumer.get("linger.ms"), Some("7"));
        let admin = with_settings(&k, ClientKind::Other, &[]);
        assert_eq!(admin.get("fetch.min.bytes"), None);
        assert_eq!(admin.get("client.id"), Some("everyone"));
    }
}
