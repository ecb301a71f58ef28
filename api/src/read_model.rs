//! Keeps the [`OrderBook`] up to date from `Pedidos` and `Notificacoes`: every partition, read
//! from the beginning at start-up so a restarted API still knows every order.

use std::sync::{Arc, RwLock};

use rdkafka::consumer::Consumer as _;
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::config::Config;
use shared::events::{decode, Order, StatusEvent, HEADER_CORRELATION_ID};
use shared::kafka::{self, StartupError};
use tokio_util::sync::CancellationToken;

use crate::orders::OrderBook;

/// Assigns all partitions of both topics at their beginning, then applies records until
/// `shutdown`. Records that do not decode are skipped here: fraud and notification dead-letter them.
pub async fn follow(
    config: &Config,
    book: Arc<RwLock<OrderBook>>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, StartupError> {
    let consumer = Arc::new(kafka::reader(&config.kafka)?);
    let pedidos = config.topics.pedidos.clone();
    let notificacoes = config.topics.notificacoes.clone();
    let mut assignment = TopicPartitionList::new();
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
                assignment
                    .add_partition_offset(topic.name(), p.id(), Offset::Beginning)
                    .expect("valid offset");
            }
        }
    }
    consumer.assign(&assignment).map_err(StartupError::Client)?;
    Ok(tokio::spawn(async move {
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
                if correlation_id(&message).is_some_and(|id| {
                    book.read()
                        .unwrap()
                        .get(&id)
                        .is_some_and(|v| v.order.is_some())
                }) {
                    continue;
                }
                if let Ok(order) = decode::<Order>(message.payload()) {
                    book.write().unwrap().apply_order(&order);
                }
            } else if let Ok(event) = decode::<StatusEvent>(message.payload()) {
                book.write().unwrap().apply_status(&event);
            }
        }
    }))
}

/// The order id a record's `correlation-id` header names, if it has a valid one.
fn correlation_id(message: &impl Message) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse_ascii(kafka::header_value(message, HEADER_CORRELATION_ID)?).ok()
}
