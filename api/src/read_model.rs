//! Keeps the [`OrderBook`] up to date from `Pedidos` and `Notificacoes`: every partition, read
//! from the beginning at start-up so a restarted API still knows every order; and says, through
//! [`CatchUp`], when it has read every order published before a given moment, by any instance.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::config::Config;
use shared::events::{decode, Order, StatusEvent, HEADER_CORRELATION_ID};
use shared::kafka::{self, Consumer, StartupError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::orders::OrderBook;

/// How far the book has applied each partition of `Pedidos`, for [`CatchUp::wait`].
#[derive(Default)]
struct Applied {
    next: Mutex<HashMap<i32, i64>>,
    changed: Notify,
}

impl Applied {
    fn advance(&self, partition: i32, offset: i64) {
        self.next.lock().unwrap().insert(partition, offset + 1);
        self.changed.notify_waiters();
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

/// Waits for the book to hold every order on `Pedidos` up to now.
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

    /// Returns once the book has applied `Pedidos` up to where it ends now (one offsets request
    /// for all partitions), or fails after `within`. Immediate when the reader is at the end
    /// already; after a restart, it lasts until the book is rebuilt.
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

/// Assigns all partitions of both topics at their beginning, then applies records until
/// `shutdown`. Records that do not decode are skipped here: fraud and notification dead-letter them.
pub async fn follow(
    config: &Config,
    book: Arc<RwLock<OrderBook>>,
    shutdown: CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, CatchUp), StartupError> {
    let consumer = Arc::new(kafka::reader(&config.kafka)?);
    let pedidos = config.topics.pedidos.clone();
    let notificacoes = config.topics.notificacoes.clone();
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
    for topic in metadata.topics() {
        if topic.name() == pedidos || topic.name() == notificacoes {
            for p in topic.partitions() {
                if topic.name() == pedidos {
                    pedidos_partitions.push(p.id());
                }
                assignment
                    .add_partition_offset(topic.name(), p.id(), Offset::Beginning)
                    .expect("valid offset");
            }
        }
    }
    consumer.assign(&assignment).map_err(StartupError::Client)?;
    let applied = Arc::new(Applied::default());
    let catch_up = CatchUp {
        consumer: consumer.clone(),
        topic: pedidos.clone(),
        partitions: pedidos_partitions,
        applied: applied.clone(),
    };
    let task = tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = consumer.recv() => m,
            };
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "read model consumer error");
                    continue;
                }
            };
            if message.topic() == pedidos {
                // Most orders were posted to this process and are in the book already: skip
                // decoding them again (JSON, decimal and date parsing for nothing).
                let known = correlation_id(&message).is_some_and(|id| {
                    book.read()
                        .unwrap()
                        .get(&id)
                        .is_some_and(|v| v.order.is_some())
                });
                if !known {
                    if let Ok(order) = decode::<Order>(message.payload()) {
                        book.write().unwrap().apply_order(&order);
                    }
                }
                applied.advance(message.partition(), message.offset());
            } else if let Ok(event) = decode::<StatusEvent>(message.payload()) {
                book.write().unwrap().apply_status(&event);
            }
        }
    });
    Ok((task, catch_up))
}

/// The order id a record's `correlation-id` header names, if it has a valid one.
fn correlation_id(message: &impl Message) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse_ascii(kafka::header_value(message, HEADER_CORRELATION_ID)?).ok()
}
