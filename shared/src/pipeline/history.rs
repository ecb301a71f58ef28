//! A stateful handler's memory, rebuilt from the log: whenever a partition's next record is not
//! the one right after the last the handler saw of it (the first record after an assignment, a
//! restart, a rebalance that moved the partition away and back, an aborted transaction's
//! rewind), the handler forgets that partition and is fed its records again — from
//! [`Handler::history_span`] before this record's timestamp up to it — without producing
//! anything. Kafka Streams gets the same effect with changelog topics; reading the input back
//! needs none, only a retention that covers the span.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::handler::{Handler, InRecord};
use crate::config::KafkaConfig;
use crate::kafka;

/// How long one metadata request of a rebuild may take before it is tried again.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between attempts when the cluster cannot serve a rebuild.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Which record of each partition the handler expects next.
pub(super) struct Recall {
    kafka: Option<KafkaConfig>,
    next: HashMap<String, HashMap<i32, i64>>,
}

impl Recall {
    /// Reading back from the cluster `kafka` describes, for handlers that ask to.
    pub(super) fn new(kafka: Option<KafkaConfig>) -> Self {
        Self {
            kafka,
            next: HashMap::new(),
        }
    }

    /// Call before `record` reaches the handler. Returns `false` when `shutdown` came during a
    /// rebuild: the record must then not be handled.
    pub(super) async fn prepare<H: Handler>(
        &mut self,
        handler: &mut H,
        record: &InRecord<'_>,
        shutdown: &CancellationToken,
    ) -> bool {
        let Some(span) = handler.history_span() else {
            return true;
        };
        let expected = self
            .next
            .get(record.topic)
            .and_then(|partitions| partitions.get(&record.partition));
        if expected != Some(&record.offset) {
            handler.forget(record.topic, record.partition);
            let Some(kafka) = &self.kafka else {
                panic!("a handler with history needs LoopOptions::history_from");
            };
            let start_ms = record
                .timestamp_ms
                .map_or(0, |ts| ts.saturating_sub(span.as_millis() as i64))
                .max(0);
            if !rebuild(kafka, handler, record, start_ms, shutdown).await {
                return false;
            }
        }
        let next = record.offset + 1;
        match self.next.get_mut(record.topic) {
            Some(partitions) => {
                partitions.insert(record.partition, next);
            }
            // A topic's first record: the only allocation.
            None => {
                let partitions = HashMap::from([(record.partition, next)]);
                self.next.insert(record.topic.to_string(), partitions);
            }
        }
        true
    }
}

/// Feeds the handler `record`'s partition from the first record at or after `start_ms` up to
/// `record`, retrying while the cluster cannot serve it. `false` when shut down meanwhile.
async fn rebuild<H: Handler>(
    kafka: &KafkaConfig,
    handler: &mut H,
    record: &InRecord<'_>,
    start_ms: i64,
    shutdown: &CancellationToken,
) -> bool {
    let (topic, partition, end) = (record.topic, record.partition, record.offset);
    let started = Instant::now();
    loop {
        let attempt = read_back(kafka, handler, topic, partition, start_ms, end, shutdown);
        match attempt.await {
            Ok(None) => return false,
            Ok(Some(replayed)) => {
                tracing::info!(
                    topic,
                    partition,
                    replayed,
                    up_to_offset = end,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "handler state rebuilt from the log"
                );
                return true;
            }
            Err(e) => {
                tracing::warn!(topic, partition, error = %e, "cannot rebuild handler state yet; retrying");
                handler.forget(topic, partition);
                tokio::select! {
                    _ = shutdown.cancelled() => return false,
                    _ = tokio::time::sleep(RETRY_PAUSE) => {}
                }
            }
        }
    }
}

/// One attempt: how many records were replayed, or `None` when shut down meanwhile.
async fn read_back<H: Handler>(
    kafka: &KafkaConfig,
    handler: &mut H,
    topic: &str,
    partition: i32,
    start_ms: i64,
    end: i64,
    shutdown: &CancellationToken,
) -> Result<Option<u64>, KafkaError> {
    let reader =
        Arc::new(kafka::reader(kafka).map_err(|e| KafkaError::ClientCreation(e.to_string()))?);
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition_offset(topic, partition, Offset::Offset(start_ms))?;
    let lookup = reader.clone();
    let found =
        tokio::task::spawn_blocking(move || lookup.offsets_for_times(wanted, REQUEST_TIMEOUT))
            .await
            .expect("offsets_for_times does not panic")?;
    let start = match found.find_partition(topic, partition).map(|p| p.offset()) {
        Some(Offset::Offset(offset)) => offset,
        // No record at or after `start_ms`: nothing before `end` is recent enough.
        _ => return Ok(Some(0)),
    };
    if start >= end {
        return Ok(Some(0));
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
    reader.assign(&assignment)?;
    let mut replayed = 0;
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            m = reader.recv() => m?,
        };
        // `end` itself is readable (it was just delivered), so this ends even when the last
        // offsets before it are transaction markers, which are never delivered.
        if message.offset() >= end {
            break;
        }
        handler.remember(&InRecord::from_message(&message));
        replayed += 1;
        if message.offset() + 1 == end {
            break;
        }
    }
    Ok(Some(replayed))
}
