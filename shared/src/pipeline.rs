//! The one consumer loop every daemon runs, at-least-once:
//!
//! 1. receive a record, hand it to the daemon's [`Handler`] (pure, synchronous);
//! 2. produce the handler's output records (or, for a record the handler refuses, a copy of it to
//!    the input topic's dead-letter topic) without waiting — many records are in flight at once;
//! 3. once every output of a record is acknowledged (and any extra work it asked to wait for is
//!    done), store its offset. Completions are taken in consumption order, so a stored offset
//!    never passes a record whose outputs are not yet safe.
//!
//! Stored offsets are committed in the background by librdkafka and once more at shutdown.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::producer::DeliveryFuture;
use rdkafka::Message;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, TopicsConfig};
use crate::events::OutRecord;
use crate::kafka::{self, enqueue, Consumer, Producer, StartupError};

/// Header names on dead-letter records.
pub const DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
pub const DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
pub const DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";
pub const DLQ_ERROR: &str = "dlq-error";
pub const DLQ_CONSUMER_GROUP: &str = "dlq-consumer-group";
/// Set (to the original size) when a dead-letter copy had to be cut to fit a Kafka record.
pub const DLQ_PAYLOAD_TRUNCATED: &str = "dlq-payload-truncated";
/// Largest payload copied to a dead-letter topic whole: with the original headers added, a
/// copy of a record near the broker's size limit would otherwise be refused, and the daemon
/// would be stuck retrying it.
pub const DLQ_MAX_PAYLOAD: usize = 512 * 1024;

/// A consumed record, as the handler sees it: no Kafka client types.
#[derive(Clone, Copy)]
pub struct InRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    /// Milliseconds since the epoch, as stamped by the producer or broker.
    pub timestamp_ms: Option<i64>,
    headers: Option<&'a rdkafka::message::BorrowedHeaders>,
}

impl<'a> InRecord<'a> {
    /// A record built by hand (tests, or a handler reused outside Kafka).
    pub fn new(topic: &'a str, payload: Option<&'a [u8]>) -> Self {
        Self {
            topic,
            partition: 0,
            offset: 0,
            key: None,
            payload,
            timestamp_ms: None,
            headers: None,
        }
    }

    pub(crate) fn from_message(m: &'a BorrowedMessage<'a>) -> Self {
        Self {
            topic: m.topic(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key(),
            payload: m.payload(),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m.headers(),
        }
    }

    /// The headers, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        self.headers
            .into_iter()
            .flat_map(|h| h.iter().map(|h| (h.key, h.value)))
    }
}

/// What a handler wants done for one record before its offset may be stored.
#[derive(Debug, Default)]
pub struct Handled {
    /// Records to produce.
    pub records: Vec<OutRecord>,
    /// Extra work to wait for (e.g. an audit line reaching the file).
    pub ack: Option<oneshot::Receiver<()>>,
}

impl Handled {
    pub fn publish(records: Vec<OutRecord>) -> Self {
        Self { records, ack: None }
    }
    pub fn nothing() -> Self {
        Self::default()
    }
}

/// A record the handler cannot process: it goes to the dead-letter topic with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Poison {
    pub reason: String,
}

impl Poison {
    pub fn new(reason: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

/// A daemon's logic for one record. Synchronous and cheap: the loop does all the waiting.
pub trait Handler: Send + 'static {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison>;
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe { topics: String, source: KafkaError },
    #[error("the broker refused Kafka transactions ({0}); brokers without them need fraud.transactional = false")]
    TransactionsUnsupported(KafkaError),
    #[error("transaction failed beyond recovery: {0}")]
    Transaction(KafkaError),
}

/// What the loop needs besides the clients.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    pub group_id: String,
    pub topics: Vec<String>,
    pub max_in_flight: usize,
    pub dlq_suffix: String,
    /// How long shutdown waits for in-flight outputs before giving up on them (they are then
    /// replayed on the next start, since their offsets were not stored).
    pub drain_timeout: Duration,
}

/// Connects (failing fast when the cluster is unreachable or refuses us), creates missing
/// topics, then runs the loop until `shutdown` is cancelled.
pub async fn run_daemon<H: Handler>(
    config: &Config,
    group_id: &str,
    topics: Vec<String>,
    max_in_flight: usize,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    run_daemon_with(
        config,
        group_id,
        topics,
        max_in_flight,
        None,
        handler,
        shutdown,
    )
    .await
}

/// [`run_daemon`], optionally in Kafka transactions with the given `transactional.id`
/// (see [`crate::transactional`]).
pub async fn run_daemon_with<H: Handler>(
    config: &Config,
    group_id: &str,
    topics: Vec<String>,
    max_in_flight: usize,
    transactional_id: Option<&str>,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    kafka::check_connectivity(&config.kafka).await?;
    kafka::ensure_topics(&config.kafka, &config.topics).await?;
    let options = LoopOptions {
        group_id: group_id.to_string(),
        topics,
        max_in_flight,
        dlq_suffix: config.topics.dlq_suffix.clone(),
        drain_timeout: Duration::from_secs(30),
    };
    match transactional_id {
        None => {
            let producer = kafka::producer(&config.kafka, Duration::from_secs(30))?;
            let consumer = kafka::consumer(&config.kafka, group_id)?;
            run(&consumer, &producer, handler, &options, shutdown).await
        }
        Some(id) => {
            let producer = kafka::transactional_producer(&config.kafka, id)?;
            let consumer = kafka::transactional_consumer(&config.kafka, group_id)?;
            crate::transactional::run(&consumer, &producer, handler, &options, shutdown).await
        }
    }
}

type InFlight = Pin<Box<dyn Future<Output = (String, i32, i64)> + Send>>;

/// The loop itself, on clients the caller built.
pub async fn run<H: Handler>(
    consumer: &Consumer,
    producer: &Producer,
    mut handler: H,
    options: &LoopOptions,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    subscribe(consumer, options, "consuming")?;

    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut dead_lettered: u64 = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((topic, partition, offset)) = in_flight.next(), if !in_flight.is_empty() => {
                store(consumer, &topic, partition, offset);
            }
            received = consumer.recv(), if in_flight.len() < options.max_in_flight => {
                let message = match received {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "consumer error");
                        continue;
                    }
                };
                let record = InRecord::from_message(&message);
                let handled = handle_or_dead_letter(&mut handler, &record, options, &mut dead_lettered);
                let mut deliveries = Vec::with_capacity(handled.records.len());
                for out in handled.records {
                    let first = enqueue(producer, &out).await;
                    deliveries.push((out, first));
                }
                let producer = producer.clone();
                let (topic, partition, offset) = (record.topic.to_string(), record.partition, record.offset);
                let ack = handled.ack;
                in_flight.push_back(Box::pin(async move {
                    for (out, first) in deliveries {
                        deliver(&producer, &out, first).await;
                    }
                    if let Some(ack) = ack {
                        // Handlers drop the sender only when they are going away themselves.
                        let _ = ack.await;
                    }
                    (topic, partition, offset)
                }));
            }
        }
    }

    let pending = in_flight.len();
    if pending > 0 {
        tracing::info!(pending, "draining in-flight records");
    }
    let drained = tokio::time::timeout(options.drain_timeout, async {
        while let Some((topic, partition, offset)) = in_flight.next().await {
            store(consumer, &topic, partition, offset);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            left = in_flight.len(),
            "gave up waiting for in-flight records; they will be processed again on restart"
        );
    }
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        // Nothing stored since the last commit.
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "final offset commit failed"),
    }
    Ok(())
}

/// Subscribes to the loop's topics and says so.
pub(crate) fn subscribe(
    consumer: &Consumer,
    options: &LoopOptions,
    what: &str,
) -> Result<(), PipelineError> {
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| PipelineError::Subscribe {
            topics: options.topics.join(","),
            source,
        })?;
    tracing::info!(group = %options.group_id, topics = %options.topics.join(","), "{what}");
    Ok(())
}

/// The handler's outputs for a record, or — for a record it refuses — a copy of it for the
/// input topic's dead-letter topic.
pub(crate) fn handle_or_dead_letter<H: Handler>(
    handler: &mut H,
    record: &InRecord<'_>,
    options: &LoopOptions,
    dead_lettered: &mut u64,
) -> Handled {
    match handler.handle(record) {
        Ok(handled) => handled,
        Err(poison) => {
            *dead_lettered += 1;
            let dlq = TopicsConfig::dlq_with_suffix(record.topic, &options.dlq_suffix);
            tracing::warn!(
                topic = record.topic,
                partition = record.partition,
                offset = record.offset,
                dlq = %dlq,
                dead_lettered = *dead_lettered,
                error = %poison.reason,
                "record sent to dead-letter topic"
            );
            Handled::publish(vec![dead_letter(record, &dlq, &poison, &options.group_id)])
        }
    }
}

fn store(consumer: &Consumer, topic: &str, partition: i32, offset: i64) {
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        // The partition was revoked meanwhile: its new owner replays the record.
        tracing::debug!(topic, partition, offset, error = %e, "offset not stored");
    }
}

fn dead_letter(record: &InRecord<'_>, dlq: &str, poison: &Poison, group: &str) -> OutRecord {
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers()
        .map(|(k, v)| (k.to_string(), v.unwrap_or_default().to_vec()))
        .collect();
    let mut payload = record.payload.unwrap_or_default();
    if payload.len() > DLQ_MAX_PAYLOAD {
        headers.push((
            DLQ_PAYLOAD_TRUNCATED.to_string(),
            payload.len().to_string().into_bytes(),
        ));
        payload = &payload[..DLQ_MAX_PAYLOAD];
    }
    headers.extend([
        (
            DLQ_SOURCE_TOPIC.to_string(),
            record.topic.as_bytes().to_vec(),
        ),
        (
            DLQ_SOURCE_PARTITION.to_string(),
            record.partition.to_string().into_bytes(),
        ),
        (
            DLQ_SOURCE_OFFSET.to_string(),
            record.offset.to_string().into_bytes(),
        ),
        (DLQ_ERROR.to_string(), poison.reason.as_bytes().to_vec()),
        (DLQ_CONSUMER_GROUP.to_string(), group.as_bytes().to_vec()),
    ]);
    OutRecord {
        topic: dlq.to_string(),
        key: record.key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers,
    }
}

/// Waits for a record's acknowledgement, producing it again (with backoff) until the broker
/// takes it: an input's offset must never be stored while one of its outputs is lost.
async fn deliver(producer: &Producer, out: &OutRecord, first: DeliveryFuture) {
    let mut delivery = first;
    let mut backoff = Duration::from_millis(100);
    loop {
        match delivery.await {
            Ok(Ok(_)) => return,
            Ok(Err((e, _))) => {
                tracing::warn!(topic = %out.topic, error = %e, "delivery failed; producing again")
            }
            Err(_) => tracing::warn!(topic = %out.topic, "delivery abandoned; producing again"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        delivery = enqueue(producer, out).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a OutRecord, name: &str) -> Option<&'a [u8]> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn dead_letters_keep_the_bytes_and_say_where_they_came_from() {
        let mut record = InRecord::new("Pedidos", Some(&[0xff, 0x00, 0x7b]));
        record.partition = 2;
        record.offset = 41;
        record.key = Some(b"ana");
        let dlq = dead_letter(
            &record,
            "Pedidos_dlq",
            &Poison::new("payload is not UTF-8"),
            "fraud",
        );
        assert_eq!(dlq.topic, "Pedidos_dlq");
        assert_eq!(dlq.payload, vec![0xff, 0x00, 0x7b]);
        assert_eq!(dlq.key.as_deref(), Some(&b"ana"[..]));
        assert_eq!(header(&dlq, DLQ_SOURCE_TOPIC), Some(&b"Pedidos"[..]));
        assert_eq!(header(&dlq, DLQ_SOURCE_PARTITION), Some(&b"2"[..]));
        assert_eq!(header(&dlq, DLQ_SOURCE_OFFSET), Some(&b"41"[..]));
        assert_eq!(header(&dlq, DLQ_ERROR), Some(&b"payload is not UTF-8"[..]));
        assert_eq!(header(&dlq, DLQ_CONSUMER_GROUP), Some(&b"fraud"[..]));
        assert_eq!(header(&dlq, DLQ_PAYLOAD_TRUNCATED), None);
    }

    #[test]
    fn oversized_dead_letters_are_cut_and_marked() {
        let huge = vec![b'x'; DLQ_MAX_PAYLOAD + 10];
        let record = InRecord::new("Pedidos", Some(&huge));
        let dlq = dead_letter(&record, "Pedidos_dlq", &Poison::new("too big"), "fraud");
        assert_eq!(dlq.payload.len(), DLQ_MAX_PAYLOAD);
        let original = (DLQ_MAX_PAYLOAD + 10).to_string();
        assert_eq!(
            header(&dlq, DLQ_PAYLOAD_TRUNCATED),
            Some(original.as_bytes())
        );
    }
}
