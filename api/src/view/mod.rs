//! The order view: each order's status and history, kept in a [`store`] from the events on
//! `Pedidos` and `Notificacoes`, and the way the rest of the API reads it ([`ViewHandle`]).
//!
//! A record's way in: the [`reader`] reads both topics from the offsets the store holds and
//! hands batches of [`Changes`] to the [`writer`], the one task that commits; a POST's order
//! joins it there too, ahead of the reader's batches ([`ViewHandle::record_accepted`]). After
//! each commit the writer wakes who waits on the orders it touched ([`live`]) and moves the
//! [`catch_up`] marks along. [`order`] says what an order's rows mean (its status, its
//! history); `store/` holds the SQL and nothing else.

mod blocked;
mod catch_up;
mod changes;
mod live;
mod order;
mod origin;
mod posted;
mod reader;
mod retention;
mod status_changes;
mod unwritten;
mod writer;

pub mod store;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use rdkafka::consumer::Consumer as _;
use shared::config::{Config, KafkaConfig};
use shared::events::{Order, StatusEvent};
use shared::kafka::{self, Consumer, Fetch, StartupError};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::catch_up::CatchUpError;
pub use self::changes::Changes;
pub use self::order::{HistoryEntry, OrderView};
pub use self::origin::{Changed, OriginError};
pub use self::retention::prune_past;
pub use self::store::{Store, StoreError};
pub use self::writer::WriterError;

use self::catch_up::{Applied, CatchUp};
use self::live::Live;
use self::posted::Posted;
use self::unwritten::Unwritten;
use self::writer::Writer;
use crate::auth::Caller;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    Kafka(#[from] StartupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Origin(#[from] OriginError),
}

/// What the rest of the API reads of the view, and how a POST records its order. Cheap to
/// clone.
#[derive(Clone)]
pub struct ViewHandle {
    store: Store,
    writer: Writer,
    live: Arc<Live>,
    catch_up: CatchUp,
    /// How long a read waits for an order this instance accepted to be committed, a POST for
    /// the writer to take its order, and a keyed POST for the view to catch up
    /// (`api.publish_timeout_ms`).
    within: Duration,
}

impl ViewHandle {
    /// One order's view, if the store knows it; for an order this instance accepted and has
    /// not committed yet, once it has.
    pub async fn order(&self, id: Uuid) -> Result<Option<OrderView>, StoreError> {
        self.committed(&[id]).await?;
        self.store.get(id).await
    }

    /// The order's view if `caller` may see it, waiting up to `wait` for its verdict (a
    /// long-poll): the answer comes as soon as the order is final, or at the deadline with what
    /// it is then. An unknown order is not waited for: the instance that took it has written
    /// it, or is this one and [`order`](Self::order) waited for it.
    pub async fn order_for(
        &self,
        caller: &Caller,
        id: Uuid,
        wait: Option<Duration>,
    ) -> Result<Option<OrderView>, StoreError> {
        let visible = |view: Option<OrderView>| view.filter(|v| caller.may_act_for(&v.usuario));
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            return Ok(visible(self.order(id).await?));
        };
        let deadline = tokio::time::Instant::now() + wait;
        let watch = self.live.watch(id);
        loop {
            let changed = watch.armed();
            let view = visible(self.order(id).await?);
            if view.as_ref().is_none_or(OrderView::is_final) {
                return Ok(view);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(view);
            }
        }
    }

    /// A page of orders, newest first, and how many there are (see [`Store::page`]), with the
    /// orders this instance has accepted up to now in it.
    pub async fn page(
        &self,
        usuario: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<OrderView>), StoreError> {
        let accepted = self.writer.unwritten().of(usuario);
        self.committed(&accepted).await?;
        self.store.page(usuario, offset, limit).await
    }

    /// How many orders the view holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.store.count().await
    }

    /// When the keyed order `id` was placed, if the view's retention pruned it.
    pub async fn pruned_key(&self, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.store.pruned_key(id).await
    }

    /// Writes an order this instance accepted (the broker has it) and its `Analise`, ahead of
    /// what the reader read. On the shared store it waits for the commit, so a GET on any
    /// instance finds the order; on the embedded one only for the writer to take it, and a read
    /// of it waits for its commit instead (see [`writer`]).
    pub async fn record_accepted(
        &self,
        order: &Order,
        received: &StatusEvent,
    ) -> Result<(), WriterError> {
        let changes = Changes::accepted(order, received);
        self.writer.post(changes, self.within).await
    }

    /// Returns once the view holds every order on `Pedidos` up to now, by any instance.
    pub async fn wait_caught_up(&self) -> Result<(), CatchUpError> {
        self.catch_up.wait(self.within).await
    }

    /// `current`'s history after the event `after` (all of it when `after` is not in it), then
    /// each new event as the store takes it in; ends once the verdict is out.
    pub fn status_changes(
        &self,
        current: OrderView,
        after: Option<Uuid>,
    ) -> BoxStream<'static, HistoryEntry> {
        status_changes::after(self.clone(), current, after)
    }

    /// Whether the store takes writes now: a POST places nothing while it does not (see
    /// [`blocked`]).
    pub fn writable(&self) -> Result<(), StoreError> {
        self.writer.blocked().check()
    }

    /// Waits until none of these orders is waiting for its commit. While the store cannot
    /// write, it does not wait: an order accepted here and not written yet is an error then,
    /// not an order that does not exist.
    async fn committed(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let unwritten = self.writer.unwritten();
        let deadline = tokio::time::Instant::now() + self.within;
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
                let waited = match self.writable() {
                    Err(e) => Err(e),
                    Ok(()) => tokio::time::timeout_at(deadline, woken).await.map_err(|_| {
                        StoreError::Unwritten {
                            id,
                            waited: self.within,
                        }
                    }),
                };
                if let Err(e) = waited {
                    // Written after all, by commits that did not say so (the reader's, before
                    // the POST marked it): the store is the truth.
                    if self
                        .store
                        .get(id)
                        .await?
                        .is_some_and(|v| v.holds_what_was_posted())
                    {
                        unwritten.forget(id);
                        break;
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

/// The running view: its reader and its writer. Stopped by [`View::stop`]: the reader first,
/// then the writer once it has written what was read, so no offset is stored past a row that
/// was not.
pub struct View {
    handle: ViewHandle,
    reader: tokio::task::JoinHandle<()>,
    /// The retention's pruning, when `api.view_retention_days` is set; stopped with the reader.
    pruner: Option<tokio::task::JoinHandle<()>>,
    /// The check that the topics keep the identity the view was read from; stopped with the
    /// reader.
    watch: tokio::task::JoinHandle<()>,
    changed: Changed,
    reader_stop: CancellationToken,
    writer_task: tokio::task::JoinHandle<()>,
    writer_stop: CancellationToken,
}

impl View {
    /// Makes sure the view is the connected cluster's (see [`origin`]), starts the writer, then
    /// the reader at the offsets the store holds, and logs once the view has caught up with what
    /// was published before.
    pub async fn start(config: &Config, store: Store) -> Result<Self, ViewError> {
        // Records of a few milliseconds per fetch rather than a fetch per arrival: a long-poll
        // or stream hears of a verdict up to that much later (BENCHMARKS.md, issue 26).
        let consumer = Arc::new(kafka::reader_fetching(&config.kafka, Fetch::Brief)?);
        let cluster = cluster_id(&consumer, &config.kafka).await?;
        let names = [
            config.topics.pedidos.clone(),
            config.topics.notificacoes.clone(),
        ];
        // A broker that cannot tell topic ids (before Kafka 2.8, a Kafka-protocol server
        // that leaves them out) still serves: the view then cannot notice a recreated topic.
        let within = config.kafka.startup_timeout();
        let topics = match kafka::topic_ids(&config.kafka, &names, within).await {
            Ok(topics) => topics,
            Err(e) => {
                tracing::warn!(error = %e, "the order view cannot check its topics' identity: a topic deleted and created again will not be noticed");
                Default::default()
            }
        };
        let identity = origin::Identity { cluster, topics };
        origin::check(&store, &identity, config).await?;
        writer::register_metrics();
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
        let (reader, catch_up) = reader::follow(
            config,
            consumer,
            &store,
            writer.clone(),
            posted,
            applied,
            reader_stop.clone(),
        )
        .await?;
        catch_up::report_catch_up(catch_up.clone(), config.kafka.startup_timeout());
        let changed = Changed::default();
        let watch = origin::watch(config, identity, changed.clone(), reader_stop.clone());
        let pruner = config.api.view_retention().map(|retention| {
            retention::start(
                store.clone(),
                retention,
                config.api.view_prune_interval(),
                reader_stop.clone(),
            )
        });
        Ok(Self {
            handle: ViewHandle {
                store,
                writer,
                live,
                catch_up,
                within: config.api.publish_timeout(),
            },
            reader,
            pruner,
            watch,
            changed,
            reader_stop,
            writer_task,
            writer_stop,
        })
    }

    pub fn handle(&self) -> ViewHandle {
        self.handle.clone()
    }

    /// Set once a topic the view reads changed identity while the API ran: the API must stop.
    pub fn changed(&self) -> Changed {
        self.changed.clone()
    }

    /// Stops reading, writes what was read, then stops writing.
    pub async fn stop(self) {
        self.reader_stop.cancel();
        let _ = self.reader.await;
        if let Some(pruner) = self.pruner {
            let _ = pruner.await;
        }
        let _ = self.watch.await;
        self.writer_stop.cancel();
        let _ = self.writer_task.await;
    }
}

/// The id of the cluster `consumer` is connected to (Kafka's `cluster.id`).
async fn cluster_id(consumer: &Arc<Consumer>, kafka: &KafkaConfig) -> Result<String, OriginError> {
    let (client, waited) = (consumer.clone(), kafka.startup_timeout());
    tokio::task::spawn_blocking(move || client.client().fetch_cluster_id(waited))
        .await
        .expect("fetch_cluster_id does not panic")
        .ok_or_else(|| OriginError::NoClusterId {
            servers: kafka.bootstrap_servers.clone(),
            waited,
        })
}
