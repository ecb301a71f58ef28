//! `loadgen raw`: the broker's own capacity for the mesh's records. Produces the four kinds of
//! record one order causes (order, `Analise`, evaluated order, verdict: same JSON, keys and
//! headers as the daemons write) to a fresh topic with the daemons' producer settings, then
//! consumes them back, and reports records/s both ways. A third phase produces the same number
//! again while a consumer tails the topic, as the daemons do (records/s through the pipe).

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};
use shared::config::Config;
use shared::events::{EvaluatedOrder, Order, OutRecord, Status, StatusEvent};
use shared::kafka::{self, Context, StartupError};
use shared::pipeline::future_record;

use crate::orders::OrderGen;
use crate::stats::RawReport;

/// Records produced (and awaited) before the clock starts: the first record of an idempotent
/// producer waits for its producer id.
const WARM_UP: u64 = 100;
/// Distinct records cycled through.
const POOL_ORDERS: usize = 512;
/// A consumer that sees nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct RawOptions {
    pub records: u64,
    pub partitions: i32,
    /// Default: a fresh `loadgen-raw-<random>` topic.
    pub topic: Option<String>,
    pub keep_topic: bool,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("{failed} of {total} records were not acknowledged; first error: {first}")]
    Delivery {
        failed: u64,
        total: u64,
        first: String,
    },
    #[error("producing failed: {0}")]
    Produce(KafkaError),
    #[error("consumer stalled after {consumed} of {expected} records")]
    Stalled { consumed: u64, expected: u64 },
}

/// Runs the measurement and reports it.
pub async fn run(config: &Config, options: &RawOptions) -> Result<RawReport, RawError> {
    kafka::check_connectivity(&config.kafka).await?;
    let topic = options.topic.clone().unwrap_or_else(|| {
        format!(
            "loadgen-raw-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        )
    });
    let admin: AdminClient<Context> = kafka::client_config(&config.kafka)
        .create_with_context(Context::default())
        .map_err(StartupError::Client)?;
    create_topic(&admin, config, &topic, options.partitions).await?;

    let pool = sample_records(&topic, options.seed, POOL_ORDERS);
    let sizes = average_sizes(&pool);
    let producer = kafka::producer(&config.kafka, Duration::from_secs(60))?;
    produce(&producer, &pool, 0, WARM_UP).await?;
    let started = Instant::now();
    produce(&producer, &pool, WARM_UP as usize, options.records).await?;
    let produce_time = started.elapsed();

    let expected = WARM_UP + options.records;
    let (consumed, consume_time) = consume(config, &topic, options.partitions, expected).await?;
    let live_time = live(config, &producer, &pool, &topic, options.records).await?;

    if !options.keep_topic {
        let deleted = admin
            .delete_topics(&[topic.as_str()], &AdminOptions::new())
            .await;
        if let Err(e) = deleted {
            tracing::warn!(topic = %topic, error = %e, "could not delete the benchmark topic");
        }
    }
    Ok(RawReport::new(
        topic,
        options.partitions,
        options.records,
        sizes,
        produce_time,
        consumed,
        consume_time,
        live_time,
    ))
}

async fn create_topic(
    admin: &AdminClient<Context>,
    config: &Config,
    topic: &str,
    partitions: i32,
) -> Result<(), RawError> {
    let failed = |reason: String| RawError::CreateTopic {
        topic: topic.to_string(),
        reason,
    };
    let new = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(config.topics.replication_factor),
    );
    let options = AdminOptions::new().operation_timeout(Some(config.kafka.startup_timeout()));
    let results = admin
        .create_topics(&[new], &options)
        .await
        .map_err(|e| failed(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(failed(code.to_string())),
        }
    }
    Ok(())
}

/// The records of `orders` orders, as the mesh writes them, all addressed to `topic`.
pub fn sample_records(topic: &str, seed: u64, orders: usize) -> Vec<OutRecord> {
    let mut gen = OrderGen::new(seed, orders / 4 + 1);
    let mut records = Vec::with_capacity(orders * 4);
    for _ in 0..orders {
        let new = gen.next_order();
        let order = Order {
            id: gen.uuid(),
            usuario: new.usuario,
            produto: new.produto,
            quantidade: new.quantidade,
            valor: new.valor,
            data_solicitacao: Utc::now(),
        };
        let (status, motivo) = if order.total() > rust_decimal::Decimal::from(50_000) {
            (
                Status::Recusado,
                format!("valor total {} acima do limite de 50000", order.total()),
            )
        } else {
            (Status::Aprovado, "aprovado".to_string())
        };
        let now = Utc::now();
        records.push(OutRecord::event(topic, &order));
        records.push(OutRecord::event(topic, &StatusEvent::received(&order)));
        records.push(OutRecord::event(
            topic,
            &StatusEvent::verdict(&order, status, &motivo, now),
        ));
        records.push(OutRecord::event(
            topic,
            &EvaluatedOrder {
                pedido: order,
                status,
                motivo,
                data_avaliacao: now,
            },
        ));
    }
    records
}

/// Mean key, value and header bytes of the records.
pub fn average_sizes(records: &[OutRecord]) -> (f64, f64, f64) {
    let n = records.len().max(1) as f64;
    let key: usize = records
        .iter()
        .map(|r| r.key.as_ref().map_or(0, Vec::len))
        .sum();
    let value: usize = records.iter().map(|r| r.payload.len()).sum();
    let headers: usize = records
        .iter()
        .flat_map(|r| r.headers.iter().map(|(k, v)| k.len() + v.len()))
        .sum();
    (key as f64 / n, value as f64 / n, headers as f64 / n)
}

/// Produces `count` records (cycling through `pool` from `skip`) and waits for every
/// acknowledgement. Many are in flight at once; a full queue waits for acknowledgements.
async fn produce(
    producer: &kafka::Producer,
    pool: &[OutRecord],
    skip: usize,
    count: u64,
) -> Result<(), RawError> {
    let mut in_flight = FuturesUnordered::new();
    let mut failed = 0u64;
    let mut first_error = String::new();
    let mut settle =
        |result: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, _>| {
            let error = match result {
                Ok(Ok(_)) => return,
                Ok(Err((e, _))) => e.to_string(),
                Err(_) => "delivery cancelled".to_string(),
            };
            failed += 1;
            if first_error.is_empty() {
                first_error = error;
            }
        };
    for i in 0..count {
        let record = &pool[(skip + i as usize) % pool.len()];
        loop {
            match producer.send_result(future_record(record)) {
                Ok(delivery) => {
                    in_flight.push(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match in_flight.next().await {
                        Some(result) => settle(result),
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(RawError::Produce(e)),
            }
        }
    }
    while let Some(result) = in_flight.next().await {
        settle(result);
    }
    if failed > 0 {
        return Err(RawError::Delivery {
            failed,
            total: count,
            first: first_error,
        });
    }
    Ok(())
}

/// Produces `count` more records while a consumer, positioned at the topic's end beforehand,
/// reads them as they arrive. Returns the time from the first send to the last record read.
async fn live(
    config: &Config,
    producer: &kafka::Producer,
    pool: &[OutRecord],
    topic: &str,
    count: u64,
) -> Result<Duration, RawError> {
    let consumer = std::sync::Arc::new(kafka::reader(&config.kafka)?);
    let ends = {
        let (consumer, topic, timeout) = (
            consumer.clone(),
            topic.to_string(),
            config.kafka.startup_timeout(),
        );
        // Metadata and watermark queries block: keep them off the runtime's workers.
        tokio::task::spawn_blocking(move || -> Result<Vec<(i32, i64)>, KafkaError> {
            let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
            let partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            partitions
                .into_iter()
                .map(|p| Ok((p, consumer.fetch_watermarks(&topic, p, timeout)?.1)))
                .collect()
        })
        .await
        .expect("watermark query panicked")
        .map_err(StartupError::Client)?
    };
    let mut assignment = TopicPartitionList::new();
    for (p, end) in ends {
        assignment
            .add_partition_offset(topic, p, Offset::Offset(end))
            .expect("valid partition offset");
    }
    consumer.assign(&assignment).map_err(StartupError::Client)?;
    let reader = tokio::spawn(async move {
        let mut read = 0u64;
        while read < count {
            match tokio::time::timeout(STALL, consumer.recv()).await {
                Ok(Ok(_)) => read += 1,
                Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                Err(_) => return Err(read),
            }
        }
        Ok(Instant::now())
    });
    let started = Instant::now();
    produce(producer, pool, 0, count).await?;
    match reader.await.expect("live reader panicked") {
        Ok(last) => Ok(last.saturating_duration_since(started)),
        Err(consumed) => Err(RawError::Stalled {
            consumed,
            expected: count,
        }),
    }
}

/// Reads every partition from the beginning until `expected` records arrived. The rate is taken
/// from the first record to the last (connecting is not reading).
async fn consume(
    config: &Config,
    topic: &str,
    partitions: i32,
    expected: u64,
) -> Result<(u64, Duration), RawError> {
    let consumer = kafka::reader(&config.kafka)?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("valid partition offset");
    }
    consumer.assign(&assignment).map_err(StartupError::Client)?;
    let mut consumed = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while consumed < expected {
        match tokio::time::timeout(STALL, consumer.recv()).await {
            Ok(Ok(_)) => {
                last = Instant::now();
                first.get_or_insert(last);
                consumed += 1;
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            Err(_) => return Err(RawError::Stalled { consumed, expected }),
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |f| last.saturating_duration_since(f));
    // `consumed - 1` records arrived after the clock started at the first one.
    Ok((consumed.saturating_sub(1), elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_records_look_like_the_mesh_traffic() {
        let records = sample_records("t", 1, 100);
        assert_eq!(records.len(), 400);
        assert!(records.iter().all(|r| r.topic == "t" && r.key.is_some()));
        let (key, value, headers) = average_sizes(&records);
        assert!((8.0..40.0).contains(&key), "key {key}");
        // ~250-byte JSON values, as the daemons write.
        assert!((180.0..320.0).contains(&value), "value {value}");
        assert!(headers > 50.0, "headers {headers}");
        let types: std::collections::HashSet<Vec<u8>> =
            records.iter().map(|r| r.headers[0].1.clone()).collect();
        assert_eq!(types.len(), 3, "order, status and evaluated-order records");
    }
}
