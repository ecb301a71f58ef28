//! The exactly-once loop (an optional mode, for brokers with Kafka transactions — Confluent
//! Cloud has them): records are taken in batches, and each batch's outputs and its input
//! offsets are committed in one transaction. A crash mid-batch leaves an open transaction that
//! the restarted process (same `transactional.id`) aborts, so `read_committed` consumers never
//! see its outputs, and the batch is processed again.
//!
//! A commit costs a few round trips whatever the batch's size (the last outputs' flush, the
//! offsets, the end of the transaction), so the loop does not wait for it: while one batch
//! commits, the next is received and handled, its outputs held (up to [`MAX_HELD`] records)
//! until the commit ends and a new transaction can take them. That transaction then stays open
//! for [`MAX_AGE`] (or [`MAX_BATCH`] records), its outputs produced as they are handled, so on a
//! backlog the producer sends while the loop handles and a commit flushes only the tail: the
//! loop is bound by its CPU rather than by round trips or by one flush per batch. When records
//! trickle, a batch ends [`LINGER`] after its last record, as before.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use prometheus::IntCounter;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::dead_letter::DeadLetters;
use super::error::PipelineError;
use super::handler::{Handler, InRecord};
use super::history::Recall;
use super::options::LoopOptions;
use crate::events::OutRecord;
use crate::kafka::{enqueue, Consumer, Producer};
use crate::metrics::pipeline::LoopMetrics;

/// Records per transaction at most.
const MAX_BATCH: usize = 20_000;
/// Records taken while the previous batch commits at most: bounds the outputs held meanwhile.
const MAX_HELD: usize = 5_000;
/// How long a batch waits for more records after its last one.
const LINGER: Duration = Duration::from_millis(10);
/// How long a transaction stays open at most: about ten transactions a second at most, each a
/// few requests to the broker.
const MAX_AGE: Duration = Duration::from_millis(100);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// (topic, partition) → (first offset, last offset) of a batch.
type Span = BTreeMap<(String, i32), (i64, i64)>;
type Commit = Pin<Box<dyn Future<Output = Result<(), KafkaError>> + Send>>;

/// The records taken since the last commit began.
#[derive(Default)]
struct Batch {
    span: Span,
    acks: Vec<oneshot::Receiver<()>>,
    /// The outputs' counters, counted once the transaction commits.
    produced: Vec<IntCounter>,
    /// Outputs handled while the previous batch committed: no transaction could take them yet.
    held: Vec<OutRecord>,
    /// Whether this batch's transaction is open (its outputs go straight to the producer).
    in_transaction: bool,
    count: usize,
    /// When its transaction opened.
    opened: Option<Instant>,
    last: Option<Instant>,
}

impl Batch {
    /// When this batch should commit, if nothing else ends it first; never before its
    /// transaction is open.
    fn due(&self) -> Option<Instant> {
        Some((self.last? + LINGER).min(self.opened? + MAX_AGE))
    }

    /// Whether it takes no more records: as many as a transaction takes, or, before its
    /// transaction opens, as many as may be held.
    fn full(&self) -> bool {
        let most = if self.in_transaction {
            MAX_BATCH
        } else {
            MAX_HELD
        };
        self.count >= most
    }

    fn take(&mut self, record: &InRecord<'_>) {
        self.last = Some(Instant::now());
        self.count += 1;
        self.span
            .entry((record.topic.to_string(), record.partition))
            .and_modify(|(_, last)| *last = record.offset)
            .or_insert((record.offset, record.offset));
    }

    /// Opens this batch's transaction and hands it the outputs held so far.
    async fn open(&mut self, producer: &Producer) -> Result<(), PipelineError> {
        producer
            .base()
            .begin_transaction()
            .map_err(PipelineError::Transaction)?;
        self.in_transaction = true;
        for out in std::mem::take(&mut self.held) {
            // Delivery is confirmed by the commit, which flushes the transaction.
            drop(enqueue(producer, &out).await);
        }
        // Its age and linger count from here: the held records were taken before it could
        // open, and handing them over takes a while.
        let now = Instant::now();
        self.opened = Some(now);
        self.last = self.last.map(|_| now);
        Ok(())
    }
}

/// Runs until `shutdown`; the batch committing then, and the one whose transaction is open,
/// are finished (committed) first.
pub async fn run<H: Handler>(
    consumer: &Consumer,
    producer: &Producer,
    mut handler: H,
    options: &LoopOptions,
    mut dead_letters: DeadLetters,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    blocking(producer, |p| p.base().init_transactions(TXN_TIMEOUT))
        .await
        .map_err(PipelineError::TransactionsUnsupported)?;
    let mut recall = Recall::new(options.history_from.clone());
    options.subscribe(consumer, "exactly-once (transactions)")?;
    let mut metrics = LoopMetrics::new(&options.group_id, &options.topics);

    let mut batch = Batch::default();
    // The batch whose commit is running, and that commit.
    let mut committing: Option<(Batch, Commit)> = None;
    let mut commit_started = Instant::now();
    loop {
        if committing.is_none()
            && batch.count > 0
            && (batch.full() || batch.due().is_some_and(|due| due <= Instant::now()))
        {
            for ack in std::mem::take(&mut batch.acks) {
                // Handlers drop the sender only when they are going away themselves.
                let _ = ack.await;
            }
            let commit = commit(consumer, producer, &batch.span)?;
            committing = Some((std::mem::take(&mut batch), commit));
            commit_started = Instant::now();
        }
        let due = batch.due().filter(|_| committing.is_none());
        metrics
            .in_flight
            .set((batch.count + committing.as_ref().map_or(0, |(b, _)| b.count)) as i64);
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            result = async { committing.as_mut().expect("guarded").1.as_mut().await }, if committing.is_some() => {
                let (done, _) = committing.take().expect("guarded");
                tracing::debug!(
                    records = done.count,
                    commit_ms = commit_started.elapsed().as_millis() as u64,
                    taken_meanwhile = batch.count,
                    "transaction committed"
                );
                if let Err(e) = result {
                    recover(consumer, producer, e, done.span, &mut batch).await?;
                    continue;
                }
                done.produced.iter().for_each(IntCounter::inc);
                if batch.count > 0 {
                    batch.open(producer).await?;
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {}
            received = consumer.recv(), if !batch.full() => {
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
                    // Shut down during a rebuild: this record is not handled.
                    break;
                }
                if batch.count == 0 && committing.is_none() {
                    batch.open(producer).await?;
                }
                let refused = options.schema_refusal(&record, &shutdown).await;
                let handled = super::traced::handle_or_refuse(&mut dead_letters, &mut handler, &record, refused);
                for out in handled.records {
                    batch.produced.push(metrics.produced.get(&out.topic).clone());
                    if batch.in_transaction {
                        drop(enqueue(producer, &out).await);
                    } else {
                        batch.held.push(out);
                    }
                }
                batch.acks.extend(handled.ack);
                batch.take(&record);
            }
        }
    }

    // Shutting down: the running commit ends, and an open transaction is committed. Records
    // only held (no transaction took them yet) are dropped; their offsets were not committed,
    // so they are processed again on the next start.
    if let Some((done, commit)) = committing.take() {
        match commit.await {
            Ok(()) => done.produced.iter().for_each(IntCounter::inc),
            Err(e) => {
                tracing::warn!(error = %e, "the last commit failed; its records are processed again on the next start");
                return Ok(());
            }
        }
    }
    if batch.in_transaction && batch.count > 0 {
        for ack in std::mem::take(&mut batch.acks) {
            let _ = ack.await;
        }
        match commit(consumer, producer, &batch.span)?.await {
            Ok(()) => batch.produced.iter().for_each(IntCounter::inc),
            Err(e) => {
                tracing::warn!(error = %e, "the last commit failed; its records are processed again on the next start")
            }
        }
    }
    metrics.in_flight.set(0);
    Ok(())
}

/// A failed commit: a fatal error ends the loop; otherwise the transaction is aborted and the
/// consumer rewound to the failed batch's first records, and to those of the batch taken
/// meanwhile (handled, never produced), which is dropped. Their handler memory is rebuilt when
/// the rewound records come back (`pipeline::history`).
async fn recover(
    consumer: &Consumer,
    producer: &Producer,
    error: KafkaError,
    failed: Span,
    next: &mut Batch,
) -> Result<(), PipelineError> {
    if is_fatal(&error) {
        return Err(PipelineError::Transaction(error));
    }
    tracing::warn!(error = %error, partitions = failed.len(), "transaction failed; aborting and processing the batch again");
    blocking(producer, |p| p.base().abort_transaction(TXN_TIMEOUT))
        .await
        .map_err(PipelineError::Transaction)?;
    let mut from = failed;
    for (key, (first, last)) in std::mem::take(next).span {
        from.entry(key)
            .and_modify(|(f, _)| *f = (*f).min(first))
            .or_insert((first, last));
    }
    rewind(consumer, &from);
    Ok(())
}

/// Adds the batch's next offsets to its transaction and commits it, off the async runtime.
fn commit(consumer: &Consumer, producer: &Producer, span: &Span) -> Result<Commit, PipelineError> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), (_, last)) in span {
        offsets
            .add_partition_offset(topic, *partition, Offset::Offset(last + 1))
            .map_err(PipelineError::Transaction)?;
    }
    // Only missing before the consumer joined its group, which it has once it delivered records.
    let metadata =
        consumer
            .group_metadata()
            .ok_or(PipelineError::Transaction(KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::State,
            )))?;
    let producer = producer.clone();
    Ok(Box::pin(blocking(&producer, move |p| {
        p.base()
            .send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)?;
        // Not left to `commit_transaction`'s own flush, which waited 100 ms (`Producer::flush`).
        p.flush(TXN_TIMEOUT)?;
        p.base().commit_transaction(TXN_TIMEOUT)
    })))
}

/// Moves the consumer back to the start of an aborted batch so it is processed again.
fn rewind(consumer: &Consumer, span: &Span) {
    for ((topic, partition), (first, _)) in span {
        // A partition revoked meanwhile is replayed by its new owner from the committed offset.
        if let Err(e) = consumer.seek(
            topic,
            *partition,
            Offset::Offset(*first),
            Duration::from_secs(5),
        ) {
            tracing::debug!(topic, partition, error = %e, "cannot rewind partition");
        }
    }
}

/// A fenced or otherwise fatal producer cannot go on: another process with the same
/// `transactional.id` took over, or the broker lost the producer's state.
fn is_fatal(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(err) => err.is_fatal(),
        _ => false,
    }
}

/// Runs a blocking librdkafka call off the async runtime.
fn blocking<T: Send + 'static>(
    producer: &Producer,
    call: impl FnOnce(&Producer) -> Result<T, KafkaError> + Send + 'static,
) -> impl Future<Output = Result<T, KafkaError>> + Send + 'static {
    let producer = producer.clone();
    let task = tokio::task::spawn_blocking(move || call(&producer));
    async move { task.await.expect("transaction call panicked") }
}
