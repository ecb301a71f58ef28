//! Reading whole topics and writing raw records, for assertions in tests.

use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use shared::config::KafkaConfig;
use shared::events::OutRecord;
use shared::kafka::Consumer;
use tokio::time::Instant;

/// After the expected number of records arrived, [`read_topic`] keeps listening this long for
/// more (duplicates, strays) before returning.
const QUIET: Duration = Duration::from_millis(300);

/// One record as read from a topic, detached from the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// In record order; a header without a value has an empty one here.
    pub headers: Vec<(String, Vec<u8>)>,
    pub timestamp_ms: Option<i64>,
}

impl ConsumedRecord {
    /// The key as text (invalid UTF-8 replaced by U+FFFD), `None` without a key.
    pub fn key_str(&self) -> Option<String> {
        self.key
            .as_deref()
            .map(|k| String::from_utf8_lossy(k).into_owned())
    }

    /// The payload as text (invalid UTF-8 replaced by U+FFFD), `None` for a tombstone.
    pub fn payload_str(&self) -> Option<String> {
        self.payload
            .as_deref()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// The value of the first header called `name`, as text (invalid UTF-8 replaced).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The payload parsed as JSON.
    ///
    /// # Panics
    /// If there is no payload or it is not JSON; the message shows the payload.
    pub fn json(&self) -> serde_json::Value {
        let payload = self.payload.as_deref().unwrap_or_else(|| {
            panic!(
                "record {}[{}]@{} has no payload, expected JSON",
                self.topic, self.partition, self.offset
            )
        });
        serde_json::from_slice(payload).unwrap_or_else(|e| {
            panic!(
                "record {}[{}]@{} is not JSON ({e}): {:?}",
                self.topic,
                self.partition,
                self.offset,
                String::from_utf8_lossy(payload)
            )
        })
    }
}

impl From<&BorrowedMessage<'_>> for ConsumedRecord {
    fn from(m: &BorrowedMessage<'_>) -> Self {
        ConsumedRecord {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default(),
            timestamp_ms: m.timestamp().to_millis(),
        }
    }
}

/// Reads `topic` from the beginning, every partition, with a fresh consumer that commits
/// nothing (so it neither sees nor disturbs any consumer group's progress).
///
/// Returns once at least `expected` records were read and then none arrived for 300 ms (so
/// duplicates beyond `expected` are returned too), or when `timeout` expires, with whatever was
/// read by then — assert on the length. With `expected == 0` it returns after 300 ms without a
/// record, which is a quick emptiness check rather than a proof.
///
/// Records come in arrival order: per partition in offset order, partitions interleaved.
/// Transactional records are read with librdkafka's default `read_committed`: aborted ones are
/// not returned. If the topic does not exist before `timeout`, the result is empty.
///
/// # Panics
/// If the consumer cannot be created (invalid configuration).
pub async fn read_topic(
    kafka: &KafkaConfig,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + timeout;
    let consumer = shared::kafka::reader(kafka)
        .unwrap_or_else(|e| panic!("cannot create a reader for {topic}: {e}"));
    let name = topic.to_string();
    let std_deadline = deadline.into_std();
    let (consumer, partitions) = tokio::task::spawn_blocking(move || {
        let partitions = partition_count(&consumer, &name, std_deadline);
        (consumer, partitions)
    })
    .await
    .expect("metadata lookup panicked");
    if partitions == 0 {
        return Vec::new();
    }

    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("valid partition offset");
    }
    consumer
        .assign(&assignment)
        .unwrap_or_else(|e| panic!("cannot assign {topic}: {e}"));

    let mut records = Vec::new();
    let mut last_arrival = Instant::now();
    loop {
        let until = if records.len() >= expected {
            (last_arrival + QUIET).min(deadline)
        } else {
            deadline
        };
        if Instant::now() >= until {
            break;
        }
        match tokio::time::timeout_at(until, consumer.recv()).await {
            Ok(Ok(message)) => {
                records.push(ConsumedRecord::from(&message));
                last_arrival = Instant::now();
            }
            // Transient (e.g. the broker is restarting): librdkafka keeps retrying.
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_elapsed) => {}
        }
    }
    records
}

/// The topic's partition count, waiting for it to exist until `deadline`; 0 if it never did.
/// Blocking: call it off the async runtime.
pub fn partition_count(consumer: &Consumer, topic: &str, deadline: std::time::Instant) -> i32 {
    loop {
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() {
            return 0;
        }
        if let Ok(metadata) =
            consumer.fetch_metadata(Some(topic), remaining.min(Duration::from_secs(1)))
        {
            if let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none() && !t.partitions().is_empty() {
                    return t.partitions().len() as i32;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces one record with arbitrary bytes (invalid UTF-8 and non-JSON welcome) and waits for
/// the broker's acknowledgement. Returns where it landed: `(partition, offset)`.
///
/// Uses a new instance of the mesh's own idempotent `acks=all` producer
/// ([`shared::kafka::producer`]); its first record costs ~0.6 s (producer-id handshake), so use
/// [`produce_raw_many`] for more than a few records.
///
/// # Panics
/// If the record is not acknowledged within 10 s.
pub async fn produce_raw(
    kafka: &KafkaConfig,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
) -> (i32, i64) {
    produce_raw_many(kafka, topic, &[(key, payload)]).await[0]
}

/// Produces events already encoded (their keys and payloads; headers are left out), each
/// topic's through one [`produce_raw_many`], topics in the order they first appear.
pub async fn produce_events(kafka: &KafkaConfig, records: &[OutRecord]) {
    let mut topics: Vec<&str> = Vec::new();
    for r in records {
        if !topics.contains(&r.topic.as_str()) {
            topics.push(&r.topic);
        }
    }
    for topic in topics {
        let raw: Vec<(Option<&[u8]>, &[u8])> = records
            .iter()
            .filter(|r| r.topic == topic)
            .map(|r| (r.key.as_deref(), r.payload.as_slice()))
            .collect();
        produce_raw_many(kafka, topic, &raw).await;
    }
}

/// The `id` of every record on `topic` (orders on `Pedidos`), waiting up to `timeout` for at
/// least `at_least` of them.
pub async fn order_ids(
    kafka: &KafkaConfig,
    topic: &str,
    at_least: usize,
    timeout: Duration,
) -> Vec<String> {
    read_topic(kafka, topic, at_least, timeout)
        .await
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Like [`produce_raw`] for many records through one producer, all in flight at once; returns
/// `(partition, offset)` of each, in the order given. Records with the same key keep their
/// order.
///
/// # Panics
/// If a record is not acknowledged within 10 s.
pub async fn produce_raw_many(
    kafka: &KafkaConfig,
    topic: &str,
    records: &[(Option<&[u8]>, &[u8])],
) -> Vec<(i32, i64)> {
    let timeout = Duration::from_secs(10);
    let producer = shared::kafka::producer(kafka, timeout)
        .unwrap_or_else(|e| panic!("cannot create a producer for {topic}: {e}"));
    let mut deliveries = Vec::with_capacity(records.len());
    for &(key, payload) in records {
        let record = OutRecord {
            topic: topic.to_string(),
            key: key.map(<[u8]>::to_vec),
            payload: payload.to_vec(),
            headers: Vec::new(),
        };
        loop {
            match producer.send(&record) {
                Ok(delivery) => break deliveries.push(delivery),
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot produce to {topic}: {e}"),
            }
        }
    }
    let mut positions = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        match delivery.await {
            Ok(Ok(d)) => positions.push((d.partition, d.offset)),
            Ok(Err((e, _))) => panic!(
                "producing to {topic} at {} failed: {e}",
                kafka.bootstrap_servers
            ),
            Err(_canceled) => panic!("producer for {topic} dropped a delivery report"),
        }
    }
    positions
}

/// Commits `group`'s offsets on every partition of `topic` back to the earliest record kept,
/// as `kafka-consumer-groups --reset-offsets --to-earliest --execute` does. The group must
/// have no live member (stop its consumers first), or the broker refuses the commit.
///
/// # Panics
/// If the topic does not exist within 10 s or the commit is refused.
pub async fn reset_group_to_earliest(kafka: &KafkaConfig, group: &str, topic: &str) {
    let (kafka, group, topic) = (kafka.clone(), group.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || {
        let consumer: Consumer = shared::kafka::consumer(&kafka, &group)
            .unwrap_or_else(|e| panic!("cannot create a consumer in {group}: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let partitions = partition_count(&consumer, &topic, deadline);
        assert!(partitions > 0, "{topic} does not exist");
        let mut earliest = TopicPartitionList::new();
        for partition in 0..partitions {
            let (low, _) = consumer
                .fetch_watermarks(&topic, partition, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("watermarks of {topic}[{partition}]: {e}"));
            earliest
                .add_partition_offset(&topic, partition, Offset::Offset(low))
                .expect("valid partition offset");
        }
        consumer
            .commit(&earliest, rdkafka::consumer::CommitMode::Sync)
            .unwrap_or_else(|e| panic!("cannot reset {group} on {topic}: {e}"));
    })
    .await
    .expect("the reset does not panic");
}
