//! The default loop, at-least-once:
//!
//! 1. receive a record, hand it to the daemon's [`Handler`];
//! 2. produce the handler's output records (or a dead-letter copy of a refused record) without
//!    waiting — many records are in flight at once;
//! 3. once every output of a record is acknowledged (and any extra work it asked to wait for is
//!    done), store its offset. Completions are taken in consumption order, so a stored offset
//!    never passes a record whose outputs are not yet safe.
//!
//! Stored offsets are committed in the background by librdkafka and once more at shutdown.
//! After a crash, records past the last commit are handled again: downstream deduplicates by
//! event id, and verdicts are deterministic.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::kafka::DeliveryFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::dead_letter::DeadLetters;
use super::error::PipelineError;
use super::handler::{Handler, InRecord};
use super::history::Recall;
use super::options::LoopOptions;
use crate::events::OutRecord;
use crate::kafka::{enqueue, Consumer, Producer};
use crate::metrics::pipeline::LoopMetrics;
use tokio_util::sync::CancellationToken;

/// How long shutdown waits for in-flight outputs before giving up on them: they are then
/// handled again on the next start, since their offsets were not stored. Below the 45 s a
/// supervisor such as systemd or Kubernetes typically grants after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

type InFlight = Pin<Box<dyn Future<Output = (String, i32, i64)> + Send>>;

/// The loop, on clients the caller built; see the module doc.
pub async fn run<H: Handler>(
    consumer: &Consumer,
    producer: &Producer,
    mut handler: H,
    options: &LoopOptions,
    mut dead_letters: DeadLetters,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    let mut recall = Recall::new(options.history_from.clone());
    options.subscribe(consumer, "at-least-once")?;

    let mut metrics = LoopMetrics::new(&options.group_id, &options.topics);
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((topic, partition, offset)) = in_flight.next(), if !in_flight.is_empty() => {
                store(consumer, &topic, partition, offset);
                metrics.in_flight.set(in_flight.len() as i64);
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
                metrics.consumed.get(record.topic).inc();
                if !recall.prepare(&mut handler, &record, &shutdown).await {
                    break;
                }
                let refused = options.schema_refusal(&record, &shutdown).await;
                let handled = super::traced::handle_or_refuse(&mut dead_letters, &mut handler, &record, refused);
                let mut deliveries = Vec::with_capacity(handled.records.len());
                for out in handled.records {
                    let first = enqueue(producer, &out).await;
                    let produced = metrics.produced.get(&out.topic).clone();
                    deliveries.push((out, first, produced));
                }
                let producer = producer.clone();
                let (topic, partition, offset) = (record.topic.to_string(), record.partition, record.offset);
                let ack = handled.ack;
                in_flight.push_back(Box::pin(async move {
                    for (out, first, produced) in deliveries {
                        deliver(&producer, &out, first).await;
                        produced.inc();
                    }
                    if let Some(ack) = ack {
                        // Handlers drop the sender only when they are going away themselves.
                        let _ = ack.await;
                    }
                    (topic, partition, offset)
                }));
                metrics.in_flight.set(in_flight.len() as i64);
            }
        }
    }

    let pending = in_flight.len();
    if pending > 0 {
        tracing::info!(pending, "draining in-flight records");
    }
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while let Some((topic, partition, offset)) = in_flight.next().await {
            store(consumer, &topic, partition, offset);
        }
    })
    .await;
    metrics.in_flight.set(in_flight.len() as i64);
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

fn store(consumer: &Consumer, topic: &str, partition: i32, offset: i64) {
    if let Err(e) = consumer.store_offset(topic, partition, offset) {
        // The partition was revoked meanwhile: its new owner replays the record.
        tracing::debug!(topic, partition, offset, error = %e, "offset not stored");
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
