//! The exactly-once loop (an optional mode, for brokers with Kafka
//! transactions — Confluent Cloud has them): records are taken in small batches, and each
//! batch's outputs and its input offsets are committed in one transaction. A crash mid-batch
//! leaves an open transaction that the restarted process (same `transactional.id`) aborts, so
//! `read_committed` consumers never see its outputs, and the batch is processed again.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::dead_letter::DeadLetters;
use super::error::PipelineError;
use super::handler::{Handler, InRecord};
use super::history::Recall;
use super::options::LoopOptions;
use crate::kafka::{enqueue, Consumer, Producer};
use crate::metrics::pipeline::LoopMetrics;

/// Records per transaction at most.
const MAX_BATCH: usize = 500;
/// How long a batch waits for more records after its first.
const LINGER: Duration = Duration::from_millis(10);
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs until `shutdown`; a batch in progress is finished (committed) first.
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

    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = consumer.recv() => m,
        };
        let first = match first {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "consumer error");
                continue;
            }
        };
        producer
            .base()
            .begin_transaction()
            .map_err(PipelineError::Transaction)?;
        // (topic, partition) → (first offset, last offset) of this batch.
        let mut span: BTreeMap<(String, i32), (i64, i64)> = BTreeMap::new();
        let mut acks = Vec::new();
        // The batch's outputs' counters, counted once the transaction commits.
        let mut produced = Vec::new();
        let mut message = Some(first);
        let mut count = 0;
        while let Some(m) = message.take() {
            let record = InRecord::from_message(&m);
            metrics.consumed.get(record.topic).inc();
            if !recall.prepare(&mut handler, &record, &shutdown).await {
                // Shut down mid-batch: the open transaction is aborted when the producer goes.
                return Ok(());
            }
            let handled = super::traced::handle(&mut dead_letters, &mut handler, &record);
            for out in &handled.records {
                // Delivery is confirmed by the commit below, which flushes the transaction.
                drop(enqueue(producer, out).await);
                produced.push(metrics.produced.get(&out.topic).clone());
            }
            acks.extend(handled.ack);
            span.entry((record.topic.to_string(), record.partition))
                .and_modify(|(_, last)| *last = record.offset)
                .or_insert((record.offset, record.offset));
            count += 1;
            metrics.in_flight.set(count as i64);
            if count < MAX_BATCH {
                if let Ok(Ok(next)) = tokio::time::timeout(LINGER, consumer.recv()).await {
                    message = Some(next);
                }
            }
        }
        for ack in acks {
            let _ = ack.await;
        }
        let committed = commit(consumer, producer, &span).await;
        metrics.in_flight.set(0);
        match committed {
            Ok(()) => produced.iter().for_each(|c| c.inc()),
            Err(e) if is_fatal(&e) => return Err(PipelineError::Transaction(e)),
            Err(e) => {
                tracing::warn!(error = %e, records = count, "transaction failed; aborting and processing the batch again");
                if let Err(e) =
                    blocking(producer, |p| p.base().abort_transaction(TXN_TIMEOUT)).await
                {
                    return Err(PipelineError::Transaction(e));
                }
                rewind(consumer, &span);
            }
        }
    }
    Ok(())
}

/// Adds the batch's next offsets to the transaction and commits it.
async fn commit(
    consumer: &Consumer,
    producer: &Producer,
    span: &BTreeMap<(String, i32), (i64, i64)>,
) -> Result<(), KafkaError> {
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), (_, last)) in span {
        offsets.add_partition_offset(topic, *partition, Offset::Offset(last + 1))?;
    }
    // Only missing before the consumer joined its group, which it has once it delivered records.
    let metadata = consumer.group_metadata().ok_or(KafkaError::ConsumerCommit(
        rdkafka::types::RDKafkaErrorCode::State,
    ))?;
    blocking(producer, move |p| {
        p.base()
            .send_offsets_to_transaction(&offsets, &metadata, TXN_TIMEOUT)?;
        p.base().commit_transaction(TXN_TIMEOUT)
    })
    .await
}

/// Moves the consumer back to the start of an aborted batch so it is processed again.
fn rewind(consumer: &Consumer, span: &BTreeMap<(String, i32), (i64, i64)>) {
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
async fn blocking<T: Send + 'static>(
    producer: &Producer,
    call: impl FnOnce(&Producer) -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    let producer = producer.clone();
    tokio::task::spawn_blocking(move || call(&producer))
        .await
        .expect("transaction call panicked")
}
