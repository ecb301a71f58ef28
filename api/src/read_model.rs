//! Keeps the order view in the [`Store`] up to date from `Pedidos` and `Notificacoes`: every
//! partition, resumed from the offsets the store holds (from the beginning only the first time);
//! and says, through [`CatchUp`], when the store holds every order published before a given
//! moment, by any instance.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::config::Config;
use shared::events::{decode, Order, Status, StatusEvent};
use shared::kafka::{self, Consumer, StartupError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::live::Live;
use crate::orders::OrderView;
use crate::store::{Changes, Posted, Store, StoreError, Writer};

/// Most records read into one batch for the writer.
const MAX_BATCH_RECORDS: usize = 1_000;

/// How far the store holds each partition of `Pedidos`, for [`CatchUp::wait`].
#[derive(Default)]
struct Applied {
    next: Mutex<HashMap<i32, i64>>,
    changed: Notify,
    /// Records the view has taken in since this process started.
    records: AtomicU64,
}

impl Applied {
    fn advance(&self, partition: i32, next: i64) {
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
    /// One that never connects (its reader points at nothing): for building documents in tests.
    #[cfg(test)]
    pub(crate) fn unconnected(config: &Config) -> Self {
        Self {
            consumer: Arc::new(kafka::reader(&config.kafka).expect("a reader")),
            topic: config.topics.pedidos.clone(),
            partitions: Vec::new(),
            applied: Arc::default(),
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

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Kafka(#[from] StartupError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the routes use of the view. Cheap to clone.
#[derive(Clone)]
pub struct ViewHandle {
    pub store: Store,
    pub writer: Writer,
    pub live: Arc<Live>,
    pub catch_up: CatchUp,
}

impl ViewHandle {
    /// One order's view, if the store knows it; for an order this instance accepted and has
    /// not committed yet, once it has (up to `within`).
    pub async fn order(&self, id: Uuid, within: Duration) -> Result<Option<OrderView>, StoreError> {
        self.committed(&[id], within).await?;
        self.store.get(id).await
    }

    /// A page of orders, newest first, and how many there are (see [`Store::page`]), with the
    /// orders this instance has accepted up to now in it.
    pub async fn page(
        &self,
        usuario: Option<&str>,
        offset: u64,
        limit: u64,
        within: Duration,
    ) -> Result<(u64, Vec<OrderView>), StoreError> {
        let accepted = self.writer.unwritten().of(usuario);
        self.committed(&accepted, within).await?;
        self.store.page(usuario, offset, limit).await
    }

    /// Waits until none of these orders is waiting for its commit.
    async fn committed(&self, ids: &[Uuid], within: Duration) -> Result<(), StoreError> {
        let unwritten = self.writer.unwritten();
        let deadline = tokio::time::Instant::now() + within;
        for &id in ids {
            if !unwritten.contains(id) {
                continue;
            }
            let watch = self.live.watch(id);
            loop {
                let woken = watch.armed();
                if !unwritten.contains(id) {
                    break;
                }
                if tokio::time::timeout_at(deadline, woken).await.is_err() {
                    return Err(StoreError::Unwritten { id, waited: within });
                }
            }
        }
        Ok(())
    }
}

/// The running view: its reader and its writer.
pub struct View {
    pub handle: ViewHandle,
    reader: tokio::task::JoinHandle<()>,
    reader_stop: CancellationToken,
    writer_task: tokio::task::JoinHandle<()>,
    writer_stop: CancellationToken,
}

impl View {
    /// Starts the writer, then the reader at the offsets the store holds.
    pub async fn start(config: &Config, store: Store) -> Result<Self, ViewError> {
        let live = Arc::new(Live::default());
        let posted = Arc::new(Posted::default());
        let applied = Arc::new(Applied::default());
        let pedidos = config.topics.pedidos.clone();
        let on_commit = {
            let applied = applied.clone();
            Box::new(move |changes: &Changes| {
                for (topic, partition, next) in changes.offsets() {
                    if topic == pedidos {
                        applied.advance(partition, next);
                    }
                }
                applied.changed.notify_waiters();
            })
        };
        let writer_stop = CancellationToken::new();
        let (writer, writer_task) = Writer::start(
            store.clone(),
            live.clone(),
            posted.clone(),
            on_commit,
            writer_stop.clone(),
        );
        let reader_stop = CancellationToken::new();
        let (reader, catch_up) = follow(
            config,
            &store,
            writer.clone(),
            posted,
            applied,
            reader_stop.clone(),
        )
        .await?;
        Ok(Self {
            handle: ViewHandle {
                store,
                writer,
                live,
                catch_up,
            },
            reader,
            reader_stop,
            writer_task,
            writer_stop,
        })
    }

    /// Stops reading, writes what was read, then stops writing.
    pub async fn stop(self) {
        self.reader_stop.cancel();
        let _ = self.reader.await;
        self.writer_stop.cancel();
        let _ = self.writer_task.await;
    }
}

/// Assigns all partitions of both topics at the offsets the store holds (the beginning for a
/// partition it has never read), then hands records to the writer in batches until `shutdown`.
/// Records that do not decode are skipped here (fraud and notification dead-letter them), but
/// their offsets are kept like any other's; so is what this instance's POSTs already wrote
/// (`posted`).
async fn follow(
    config: &Config,
    store: &Store,
    writer: Writer,
    posted: Arc<Posted>,
    applied: Arc<Applied>,
    shutdown: CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, CatchUp), ViewError> {
    let consumer = Arc::new(kafka::reader(&config.kafka)?);
    let pedidos = config.topics.pedidos.clone();
    let notificacoes = config.topics.notificacoes.clone();
    let stored = store.offsets().await?;
    let mut assignment = TopicPartitionList::new();
    let mut pedidos_partitions = Vec::new();
    let metadata = {
        let (consumer, timeout) = (consumer.clone(), config.kafka.startup_timeout());
        tokio::task::spawn_blocking(move || consumer.fetch_metadata(None, timeout))
            .await
            .expect("metadata fetch panicked")
            .map_err(|e| StartupError::Unreachable {
                servers: config.kafka.bootstrap_servers.clone(),
                protocol: config.kafka.security_protocol.to_string(),
                waited: config.kafka.startup_timeout(),
                reason: e.to_string(),
            })?
    };
    let mut resumed = 0;
    for topic in metadata.topics() {
        if topic.name() == pedidos || topic.name() == notificacoes {
            for p in topic.partitions() {
                let next = stored.get(&(topic.name().to_string(), p.id())).copied();
                if topic.name() == pedidos {
                    pedidos_partitions.push(p.id());
                    if let Some(next) = next {
                        applied.advance(p.id(), next);
                    }
                }
                resumed += usize::from(next.is_some());
                let offset = next.map_or(Offset::Beginning, Offset::Offset);
                assignment
                    .add_partition_offset(topic.name(), p.id(), offset)
                    .expect("valid offset");
            }
        }
    }
    tracing::info!(
        store = %config.api.store_label(),
        partitions = assignment.count(),
        resumed,
        "order view: reading from the offsets the store holds"
    );
    consumer.assign(&assignment).map_err(StartupError::Client)?;
    let catch_up = CatchUp {
        consumer: consumer.clone(),
        topic: pedidos.clone(),
        partitions: pedidos_partitions,
        applied: applied.clone(),
    };
    let task = tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = consumer.recv() => m,
            };
            let mut changes = Changes::default();
            let mut records = 0u64;
            let mut next = Some(first);
            // Whatever else is ready now joins the batch: one commit for many records.
            while let Some(message) = next.take() {
                match message {
                    Ok(m) => {
                        records += 1;
                        if m.topic() == pedidos {
                            if let Ok(order) = decode::<Order>(m.payload()) {
                                if !posted.claim_order(order.id) {
                                    changes.order(&order);
                                }
                            }
                        } else if let Ok(event) = decode::<StatusEvent>(m.payload()) {
                            let own = event.status == Status::Analise
                                && posted.claim_received(event.pedido_id);
                            if !own {
                                changes.status(&event);
                            }
                        }
                        changes.read_up_to(m.topic(), m.partition(), m.offset());
                    }
                    Err(e) => tracing::warn!(error = %e, "order view reader error"),
                }
                if records < MAX_BATCH_RECORDS as u64 {
                    next = consumer.recv().now_or_never();
                }
            }
            applied.records.fetch_add(records, Ordering::Relaxed);
            if !changes.is_empty() && writer.send(changes).await.is_err() {
                break;
            }
        }
    });
    Ok((task, catch_up))
}

/// Logs once the view holds everything published before start-up, and what it took.
pub fn report_catch_up(catch_up: CatchUp, within: Duration) {
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
