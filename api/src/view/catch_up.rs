//! Says when the view holds every order published to `Pedidos` up to a moment, by any
//! instance: before a keyed POST trusts the view to tell whether its key was used, and once at
//! start-up, to log how long the view took to catch up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use shared::kafka::Consumer;
use tokio::sync::Notify;

/// How far the store holds each partition of `Pedidos`, for [`CatchUp::wait`].
#[derive(Default)]
pub(super) struct Applied {
    next: Mutex<HashMap<i32, i64>>,
    pub(super) changed: Notify,
    /// Records the view has taken in since this process started.
    pub(super) records: AtomicU64,
}

impl Applied {
    pub(super) fn advance(&self, partition: i32, next: i64) {
        let mut known = self.next.lock().unwrap();
        let at = known.entry(partition).or_insert(next);
        *at = (*at).max(next);
    }

    fn reached(&self, ends: &[(i32, i64)]) -> bool {
        let next = self.next.lock().unwrap();
        ends.iter()
            .all(|(p, end)| *end <= 0 || next.get(p).is_some_and(|n| n >= end))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error("cannot ask the broker where Pedidos ends: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the order view did not catch up with Pedidos within {0:?}")]
    Timeout(Duration),
}

/// Pause between two attempts to read where `Pedidos` ends.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Waits for the store to hold every order on `Pedidos` up to now.
#[derive(Clone)]
pub struct CatchUp {
    consumer: Arc<Consumer>,
    topic: String,
    partitions: Vec<i32>,
    applied: Arc<Applied>,
}

impl CatchUp {
    /// Waits on `applied` for `partitions` of `topic`, asking `consumer` where they end.
    pub(super) fn new(
        consumer: Arc<Consumer>,
        topic: String,
        partitions: Vec<i32>,
        applied: Arc<Applied>,
    ) -> Self {
        Self {
            consumer,
            topic,
            partitions,
            applied,
        }
    }

    /// Returns once the store holds `Pedidos` up to where it ends now (one offsets request
    /// for all partitions), or fails after `within`. Immediate when the reader is at the end
    /// already; after a restart, it lasts until the view has read what it missed.
    pub async fn wait(&self, within: Duration) -> Result<(), CatchUpError> {
        let deadline = tokio::time::Instant::now() + within;
        let ends = loop {
            match self.ends(within).await {
                Ok(ends) => break ends,
                // Right after a topic is created or a leader moves, brokers answer "not leader"
                // for a moment: ask again until the deadline.
                Err(e) if tokio::time::Instant::now() + RETRY_PAUSE < deadline => {
                    tracing::debug!(error = %e, "cannot read where Pedidos ends yet; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        loop {
            let changed = self.applied.changed.notified();
            if self.applied.reached(&ends) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Err(CatchUpError::Timeout(within));
            }
        }
    }

    /// Where each partition of `Pedidos` ends now: one ListOffsets request for all of them,
    /// the "latest" timestamp (-1) asking for each partition's end.
    async fn ends(&self, within: Duration) -> Result<Vec<(i32, i64)>, KafkaError> {
        let (consumer, topic, partitions) = (
            self.consumer.clone(),
            self.topic.clone(),
            self.partitions.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let mut latest = TopicPartitionList::new();
            for &p in &partitions {
                latest.add_partition_offset(&topic, p, Offset::End)?;
            }
            let found = consumer.offsets_for_times(latest, within)?;
            Ok(found
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset().to_raw().unwrap_or(0)))
                .collect())
        })
        .await
        .expect("offsets_for_times does not panic")
    }
}

/// Logs once the view holds everything published before start-up, and what it took.
pub(super) fn report_catch_up(catch_up: CatchUp, within: Duration) {
    let started = Instant::now();
    tokio::spawn(async move {
        match catch_up.wait(within).await {
            Ok(()) => tracing::info!(
                records = catch_up.applied.records.load(Ordering::Relaxed),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "order view caught up"
            ),
            Err(e) => tracing::warn!(error = %e, "order view has not caught up yet"),
        }
    });
}
