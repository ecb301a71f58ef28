//! The view's reader: keeps the store up to date from `Pedidos` and `Notificacoes`, every
//! partition, resumed from the offsets the store holds (from the beginning only the first
//! time), handing what it reads to the writer in batches.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::{Message, Offset, TopicPartitionList};
use shared::config::Config;
use shared::events::{decode, Order, Status, StatusEvent};
use shared::kafka::{Consumer, StartupError};
use tokio_util::sync::CancellationToken;

use super::catch_up::{Applied, CatchUp};
use super::store::Store;
use super::{Changes, Posted, ViewError, Writer};

/// Most records read into one batch for the writer.
const MAX_BATCH_RECORDS: usize = 1_000;

/// Assigns all partitions of both topics at the offsets the store holds (the beginning for a
/// partition it has never read), then hands records to the writer in batches until `shutdown`.
/// Records that do not decode are skipped here (fraud and notification dead-letter them), but
/// their offsets are kept like any other's; so is what this instance's POSTs already wrote
/// (`posted`).
pub(super) async fn follow(
    config: &Config,
    consumer: Arc<Consumer>,
    store: &Store,
    writer: Writer,
    posted: Arc<Posted>,
    applied: Arc<Applied>,
    shutdown: CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, CatchUp), ViewError> {
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
    let catch_up = CatchUp::new(
        consumer.clone(),
        pedidos.clone(),
        pedidos_partitions,
        applied.clone(),
    );
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
