//! `loadgen raw`: the broker's own capacity for the mesh's records. Produces the four kinds of
//! record one order causes (order, `Analise`, evaluated order, verdict: same JSON, keys and
//! headers as the daemons write) to a fresh topic with the daemons' producer settings, then
//! consumes them back, and reports records/s both ways. A third phase produces the same number
//! again while a consumer tails the topic, as the daemons do (records/s through the pipe).
//!
//! The fourth phase, the pipeline, is the mesh's traffic shape without the mesh: four topics,
//! and in this process a source (the API's part: `Analise`, then the order), a relay (fraud's
//! part: per order read, an evaluated order and a verdict written), a notify reader
//! (notification's: the status topic) and an audit reader (monitoring's: all four topics), each
//! with its own clients, all live at once. No HTTP, no JSON decoding, no business logic: what
//! it measures is what the broker and the Kafka clients can do for the mesh's shape.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{FuturesOrdered, FuturesUnordered, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::Consumer as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::future_producer::OwnedDeliveryResult;
use rdkafka::producer::DeliveryFuture;
use rdkafka::{Offset, TopicPartitionList};
use shared::config::Config;
use shared::events::{
    EvaluatedOrder, Order, OutRecord, Status, StatusEvent, HEADER_CORRELATION_ID,
};
use shared::kafka::future_record;
use shared::kafka::{self, Context, StartupError};
use tokio::sync::mpsc;

use crate::orders::OrderGen;
use crate::stats::{PipelineRun, RawReport};
use crate::watermarks;

/// Records produced (and awaited) before the clock starts: the first record of an idempotent
/// producer waits for its producer id.
const WARM_UP: u64 = 100;
/// Distinct records cycled through.
const POOL_ORDERS: usize = 512;
/// A consumer that sees nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(30);
/// Orders the pipeline's source has in flight at most (`Analise` sent, order not yet
/// acknowledged). Far more than the benchmark's 64 HTTP requests: the phase measures the
/// broker, not a client's concurrency.
const SOURCE_IN_FLIGHT: usize = 1_024;
/// Orders the relay has in flight at most, as fraud's default `max_in_flight`.
const RELAY_IN_FLIGHT: usize = 2_000;

#[derive(Debug, Clone)]
pub struct RawOptions {
    pub records: u64,
    pub partitions: i32,
    /// Default: a fresh `loadgen-raw-<random>` topic.
    pub topic: Option<String>,
    pub keep_topic: bool,
    pub seed: u64,
    /// Orders put through the pipeline phase (after `WARM_UP` more); 0 skips it.
    pub pipeline_units: u64,
}

/// Orders the pipeline phase puts through at least by default. 10,000 took 0.2-0.3 s on a
/// 2-core machine and the figure swung by a third from run to run (the first and the last
/// orders' latency weigh on so short a phase); 20,000 took ~0.5 s and agreed within ~10 %.
const MIN_DEFAULT_PIPELINE_UNITS: u64 = 20_000;

/// The pipeline's default size: about as many records as `records` (each order is 11 records:
/// 4 produced, 7 consumed), at least `MIN_DEFAULT_PIPELINE_UNITS` orders.
pub fn default_pipeline_units(records: u64) -> u64 {
    let per_unit = records_per_unit();
    ((records + per_unit / 2) / per_unit).max(MIN_DEFAULT_PIPELINE_UNITS)
}

/// Where each kind of record goes: the mesh's four topics, or one topic for all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub pedidos: String,
    pub notificacoes: String,
    pub validos: String,
    pub recusados: String,
}

impl Topics {
    /// Every record to `topic` (the produce, consume and live phases).
    pub fn single(topic: &str) -> Self {
        Self {
            pedidos: topic.to_string(),
            notificacoes: topic.to_string(),
            validos: topic.to_string(),
            recusados: topic.to_string(),
        }
    }

    /// The pipeline's four topics, named after the run's topic.
    pub fn pipeline(prefix: &str) -> Self {
        Self {
            pedidos: format!("{prefix}-pedidos"),
            notificacoes: format!("{prefix}-notificacoes"),
            validos: format!("{prefix}-validos"),
            recusados: format!("{prefix}-recusados"),
        }
    }

    pub fn all(&self) -> [&str; 4] {
        [
            &self.pedidos,
            &self.notificacoes,
            &self.validos,
            &self.recusados,
        ]
    }
}

/// The consumer groups of the pipeline's three consumers: fresh for every run, so each reads
/// its topics from the start.
#[derive(Debug, Clone)]
struct Groups {
    relay: String,
    notify: String,
    audit: String,
}

impl Groups {
    fn fresh() -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let group = |part: &str| format!("loadgen-raw-{part}-{}", &run[..8]);
        Self {
            relay: group("fraud"),
            notify: group("notification"),
            audit: group("monitoring"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.relay, &self.notify, &self.audit]
    }
}

/// A client of the pipeline phase, and the part of the mesh it plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The API: `Analise` to the status topic, then the order to `pedidos`.
    Source,
    /// Fraud: reads `pedidos`, writes an evaluated order and a verdict per order.
    Relay,
    /// Notification: reads the status topic.
    NotifyReader,
    /// Monitoring: reads all four topics.
    AuditReader,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Source => "source (the API's part)",
            Role::Relay => "relay (fraud's part)",
            Role::NotifyReader => "notify reader (notification's part)",
            Role::AuditReader => "audit reader (monitoring's part)",
        })
    }
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Source,
        Role::Relay,
        Role::NotifyReader,
        Role::AuditReader,
    ];

    /// The topics it reads.
    pub fn reads(self, topics: &Topics) -> Vec<&str> {
        match self {
            Role::Source => Vec::new(),
            Role::Relay => vec![&topics.pedidos],
            Role::NotifyReader => vec![&topics.notificacoes],
            Role::AuditReader => topics.all().to_vec(),
        }
    }

    /// Records it reads per order.
    pub fn reads_per_unit(self) -> u64 {
        match self {
            Role::Source => 0,
            Role::Relay => 1,
            Role::NotifyReader => 2,
            Role::AuditReader => 4,
        }
    }

    /// Records it produces per order.
    pub fn produces_per_unit(self) -> u64 {
        match self {
            Role::Source | Role::Relay => 2,
            Role::NotifyReader | Role::AuditReader => 0,
        }
    }
}

/// Records one order puts through the broker, produced and consumed: 4 + 7.
pub fn records_per_unit() -> u64 {
    Role::ALL
        .iter()
        .map(|r| r.reads_per_unit() + r.produces_per_unit())
        .sum()
}

/// Whether the relay refuses the order at `index` of the pool: 3 in 20, about the share the
/// mesh refuses of loadgen's orders with the default fraud rules (14-15 % in BENCHMARKS.md).
/// By index, so the share is exact and every run routes the same orders the same way.
pub fn refused(index: usize) -> bool {
    index % 20 < 3
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
    #[error("consumer stalled after {consumed} of {expected} records (nothing for {STALL:?}{})",
        last_error.as_deref().map(|e| format!("; last consumer error: {e}")).unwrap_or_default())]
    Stalled {
        consumed: u64,
        expected: u64,
        last_error: Option<String>,
    },
    #[error("cannot subscribe the {role} to {topics}: {source}")]
    Subscribe {
        role: Role,
        topics: String,
        source: KafkaError,
    },
    #[error("pipeline: the {role} could not produce: {reason}")]
    PipelineProduce { role: Role, reason: String },
    #[error(
        "pipeline: the {role} stalled after {seen} of {expected} records (nothing for {silent:?}); \
         the relay had forwarded {relayed} of {units} orders"
    )]
    PipelineStalled {
        role: Role,
        seen: u64,
        expected: u64,
        silent: Duration,
        relayed: u64,
        units: u64,
    },
    #[error("pipeline: the relay read a record it cannot match to an order it was sent (partition {partition}, offset {offset}): is {topic} really fresh?")]
    UnknownRecord {
        topic: String,
        partition: i32,
        offset: i64,
    },
    #[error("pipeline: the {role} ended without finishing: {reason}")]
    Task { role: Role, reason: String },
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
    create_topics(&admin, config, &[&topic], options.partitions).await?;

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
    // The pipeline brings its own clients.
    drop(producer);

    let mut names = vec![topic.as_str()];
    let topics = Topics::pipeline(&topic);
    let groups = Groups::fresh();
    let pipelined = if options.pipeline_units > 0 {
        names.extend(topics.all());
        let made = create_topics(&admin, config, &topics.all(), options.partitions).await;
        Some(match made {
            Ok(()) => pipeline(config, &topics, &groups, options).await,
            Err(e) => Err(e),
        })
    } else {
        None
    };

    // Also when the pipeline failed: its topics are of no use to anyone.
    if !options.keep_topic {
        let deleted = admin.delete_topics(&names, &AdminOptions::new()).await;
        if let Err(e) = deleted {
            tracing::warn!(topics = %names.join(","), error = %e, "could not delete the benchmark topics");
        }
        // The pipeline's consumers committed offsets, as the daemons do: their groups would
        // otherwise linger until the broker expires them (a week, by default).
        if pipelined.is_some() {
            let groups = groups.all();
            let deleted = admin.delete_groups(&groups, &AdminOptions::new()).await;
            if let Err(e) = deleted {
                tracing::warn!(groups = %groups.join(","), error = %e, "could not delete the benchmark's consumer groups");
            }
        }
    }
    let pipeline = pipelined.transpose()?.map(|elapsed| PipelineRun {
        units: options.pipeline_units,
        records: options.pipeline_units * records_per_unit(),
        elapsed,
    });
    Ok(RawReport::new(
        topic,
        options.partitions,
        options.records,
        sizes,
        produce_time,
        consumed,
        consume_time,
        live_time,
        pipeline,
    ))
}

async fn create_topics(
    admin: &AdminClient<Context>,
    config: &Config,
    topics: &[&str],
    partitions: i32,
) -> Result<(), RawError> {
    let failed = |topic: &str, reason: String| RawError::CreateTopic {
        topic: topic.to_string(),
        reason,
    };
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|topic| {
            NewTopic::new(
                topic,
                partitions,
                TopicReplication::Fixed(config.topics.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(config.kafka.startup_timeout()));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(|e| failed(&topics.join(","), e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(failed(&topic, code.to_string())),
        }
    }
    Ok(())
}

/// The four records one order causes, each addressed as the mesh addresses it.
#[derive(Debug, Clone)]
pub struct OrderRecords {
    /// The API's, to `pedidos`.
    pub order: OutRecord,
    /// The API's `Analise`, to `notificacoes`.
    pub analise: OutRecord,
    /// Fraud's `Aprovado` or `Recusado`, to `notificacoes`.
    pub verdict: OutRecord,
    /// Fraud's, to `validos` or `recusados`.
    pub evaluated: OutRecord,
}

/// The records of `orders` orders, as the mesh writes them. `refuse` decides each order's
/// verdict from its index and the order.
pub fn mesh_orders(
    topics: &Topics,
    seed: u64,
    orders: usize,
    refuse: impl Fn(usize, &Order) -> bool,
) -> Vec<OrderRecords> {
    let mut gen = OrderGen::new(seed, orders / 4 + 1);
    let limit = rust_decimal::Decimal::from(50_000);
    (0..orders)
        .map(|index| {
            let new = gen.next_order();
            let order = Order {
                id: gen.uuid(),
                usuario: new.usuario,
                produto: new.produto,
                quantidade: new.quantidade,
                valor: new.valor,
                data_solicitacao: Utc::now(),
            };
            let refused = refuse(index, &order);
            // Fraud's wording: the limit when it was the reason, else the risk draw.
            let (status, motivo) = match (refused, order.total() > limit) {
                (false, _) => (Status::Aprovado, "aprovado".to_string()),
                (true, true) => (
                    Status::Recusado,
                    format!("valor total {} acima do limite de 50000", order.total()),
                ),
                (true, false) => (
                    Status::Recusado,
                    "recusado pela análise de risco".to_string(),
                ),
            };
            let now = Utc::now();
            let evaluated_topic = if refused {
                &topics.recusados
            } else {
                &topics.validos
            };
            OrderRecords {
                order: OutRecord::event(&topics.pedidos, &order),
                analise: OutRecord::event(&topics.notificacoes, &StatusEvent::received(&order)),
                verdict: OutRecord::event(
                    &topics.notificacoes,
                    &StatusEvent::verdict(&order, status, &motivo, now),
                ),
                evaluated: OutRecord::event(
                    evaluated_topic,
                    &EvaluatedOrder {
                        pedido: order,
                        status,
                        motivo,
                        data_avaliacao: now,
                    },
                ),
            }
        })
        .collect()
}

/// The records of `orders` orders, as the mesh writes them, all addressed to `topic`.
pub fn sample_records(topic: &str, seed: u64, orders: usize) -> Vec<OutRecord> {
    let limit = rust_decimal::Decimal::from(50_000);
    mesh_orders(&Topics::single(topic), seed, orders, |_, order| {
        order.total() > limit
    })
    .into_iter()
    .flat_map(|o| [o.order, o.analise, o.verdict, o.evaluated])
    .collect()
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
    let ends = watermarks::end_offsets(&consumer, topic, config.kafka.startup_timeout())
        .await
        .map_err(StartupError::Client)?;
    watermarks::assign_at(&consumer, topic, &ends).map_err(StartupError::Client)?;
    let reader = tokio::spawn(async move {
        let mut read = 0u64;
        let mut watch = StallWatch::new();
        while read < count {
            if let Err(last_error) = watch.next(&consumer).await {
                return Err((read, last_error));
            }
            read += 1;
        }
        Ok(Instant::now())
    });
    let started = Instant::now();
    produce(producer, pool, 0, count).await?;
    match reader.await.expect("live reader panicked") {
        Ok(last) => Ok(last.saturating_duration_since(started)),
        Err((consumed, last_error)) => Err(RawError::Stalled {
            consumed,
            expected: count,
            last_error,
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
    let mut watch = StallWatch::new();
    while consumed < expected {
        if let Err(last_error) = watch.next(&consumer).await {
            return Err(RawError::Stalled {
                consumed,
                expected,
                last_error,
            });
        }
        last = Instant::now();
        first.get_or_insert(last);
        consumed += 1;
    }
    let elapsed = first.map_or(Duration::ZERO, |f| last.saturating_duration_since(f));
    // `consumed - 1` records arrived after the clock started at the first one.
    Ok((consumed.saturating_sub(1), elapsed))
}

/// Receives records until none arrived for `STALL`. Consumer errors are logged and are not
/// progress: a client that keeps failing the same fetch (e.g. a response over
/// `receive.message.max.bytes`, which noida-db sends for a big catch-up read) would otherwise
/// retry forever without a word.
struct StallWatch {
    progress: Instant,
    last_error: Option<String>,
}

impl StallWatch {
    fn new() -> Self {
        Self {
            progress: Instant::now(),
            last_error: None,
        }
    }

    /// The next record, or the last consumer error seen once `STALL` passed without one.
    async fn next(&mut self, consumer: &kafka::Consumer) -> Result<(), Option<String>> {
        loop {
            let deadline = tokio::time::Instant::from_std(self.progress + STALL);
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(_)) => {
                    self.progress = Instant::now();
                    return Ok(());
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    self.last_error = Some(e.to_string());
                }
                Err(_) => return Err(self.last_error.take()),
            }
        }
    }
}

/// The pipeline's records: `POOL_ORDERS` orders, cycled, and the way back from a consumed
/// order to its records (by correlation id: the key is the customer, shared by many orders).
struct UnitPool {
    units: Vec<OrderRecords>,
    by_correlation: HashMap<Vec<u8>, usize>,
}

impl UnitPool {
    fn new(topics: &Topics, seed: u64) -> Self {
        let units = mesh_orders(topics, seed, POOL_ORDERS, |index, _| refused(index));
        let by_correlation = units
            .iter()
            .enumerate()
            .filter_map(|(i, unit)| Some((correlation_id(&unit.order.headers)?.to_vec(), i)))
            .collect();
        Self {
            units,
            by_correlation,
        }
    }

    /// The records of the `index`th order sent.
    fn unit(&self, index: u64) -> &OrderRecords {
        &self.units[(index % self.units.len() as u64) as usize]
    }

    fn find(&self, correlation_id: &[u8]) -> Option<&OrderRecords> {
        self.by_correlation
            .get(correlation_id)
            .map(|&i| &self.units[i])
    }
}

fn correlation_id(headers: &[(String, Vec<u8>)]) -> Option<&[u8]> {
    headers
        .iter()
        .find(|(k, _)| k == HEADER_CORRELATION_ID)
        .map(|(_, v)| v.as_slice())
}

/// A reader's count against its two marks: the warm-up's records, then all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    seen: u64,
    marks: [u64; 2],
    next: usize,
}

impl Tally {
    /// For a reader of `per_unit` records per order, `warm_up` orders then `units` more.
    pub fn new(per_unit: u64, warm_up: u64, units: u64) -> Self {
        Self {
            seen: 0,
            marks: [per_unit * warm_up, per_unit * (warm_up + units)],
            next: 0,
        }
    }

    /// Counts one record; says which mark (0: warm-up, 1: all) it completed, if any.
    pub fn count(&mut self) -> Option<usize> {
        self.seen += 1;
        if self.next < self.marks.len() && self.seen >= self.marks[self.next] {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }

    pub fn done(&self) -> bool {
        self.next == self.marks.len()
    }

    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The mark it is counting towards (the last one once done).
    pub fn expected(&self) -> u64 {
        self.marks[self.next.min(self.marks.len() - 1)]
    }
}

/// The phase's size, and how far the relay got (for the error messages).
#[derive(Clone)]
struct Progress {
    warm_up: u64,
    /// Orders measured, after the warm-up's.
    units: u64,
    /// Orders the relay has read (and started forwarding), warm-up included.
    relayed: Arc<AtomicU64>,
}

impl Progress {
    fn tally(&self, role: Role) -> Tally {
        Tally::new(role.reads_per_unit(), self.warm_up, self.units)
    }

    fn stalled(&self, role: Role, tally: &Tally) -> RawError {
        RawError::PipelineStalled {
            role,
            seen: tally.seen(),
            expected: tally.expected(),
            silent: STALL,
            relayed: self.relayed.load(Ordering::Relaxed),
            units: self.warm_up + self.units,
        }
    }
}

/// Aborts the phase's tasks when the phase ends early: each holds clients and would otherwise
/// wait out its stall timeout.
struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// A reader's reports: the instant it completed each mark, or why it gave up.
type Marks = mpsc::UnboundedReceiver<Result<Instant, RawError>>;

/// The pipeline phase. The clock runs from the first send of the measured orders until both
/// readers saw every record of them; `WARM_UP` orders go through first, so that the three
/// consumer groups have joined and both producers have their ids before it starts.
async fn pipeline(
    config: &Config,
    topics: &Topics,
    groups: &Groups,
    options: &RawOptions,
) -> Result<Duration, RawError> {
    let units = options.pipeline_units;
    let pool = Arc::new(UnitPool::new(topics, options.seed));
    let progress = Progress {
        warm_up: WARM_UP,
        units,
        relayed: Arc::new(AtomicU64::new(0)),
    };
    let (mut notify, notify_task) = spawn_reader(
        config,
        Role::NotifyReader,
        topics,
        &groups.notify,
        progress.clone(),
    )?;
    let (mut audit, audit_task) = spawn_reader(
        config,
        Role::AuditReader,
        topics,
        &groups.audit,
        progress.clone(),
    )?;
    let relay_consumer = subscribed(config, Role::Relay, topics, &groups.relay)?;
    let relay_producer = kafka::producer(&config.kafka, Duration::from_secs(60))?;
    let (relay_failed_tx, mut relay_failed) = mpsc::channel(1);
    let relay_task = tokio::spawn({
        let (pool, progress) = (pool.clone(), progress.clone());
        async move {
            let relayed = relay(&relay_consumer, &relay_producer, &pool, &progress).await;
            if let Err(e) = relayed {
                let _ = relay_failed_tx.send(e).await;
            }
        }
    });
    let _abort = AbortOnDrop(vec![
        notify_task.abort_handle(),
        audit_task.abort_handle(),
        relay_task.abort_handle(),
    ]);

    let producer = kafka::producer(&config.kafka, Duration::from_secs(60))?;
    send_units(&producer, &pool, 0, WARM_UP).await?;
    both_marks(&mut notify, &mut audit, &mut relay_failed).await?;
    let started = Instant::now();
    send_units(&producer, &pool, WARM_UP, units).await?;
    let finished = both_marks(&mut notify, &mut audit, &mut relay_failed).await?;
    let elapsed = finished.saturating_duration_since(started);

    // Every record was read, so the relay's were acknowledged: it is only storing offsets. Wait
    // for it and the readers to close their clients before the topics go.
    for (role, task) in [
        (Role::Relay, relay_task),
        (Role::NotifyReader, notify_task),
        (Role::AuditReader, audit_task),
    ] {
        task.await.map_err(|e| RawError::Task {
            role,
            reason: e.to_string(),
        })?;
    }
    if let Ok(e) = relay_failed.try_recv() {
        return Err(e);
    }
    Ok(elapsed)
}

/// Waits until both readers completed their next mark, and returns the later instant. A relay
/// that fails starves both readers: its error is reported at once, not their stalls.
async fn both_marks(
    notify: &mut Marks,
    audit: &mut Marks,
    relay_failed: &mut mpsc::Receiver<RawError>,
) -> Result<Instant, RawError> {
    async fn next(role: Role, marks: &mut Marks) -> Result<Instant, RawError> {
        marks.recv().await.unwrap_or_else(|| {
            Err(RawError::Task {
                role,
                reason: "it stopped without a word".into(),
            })
        })
    }
    let readers = async {
        let (n, a) = tokio::try_join!(
            next(Role::NotifyReader, notify),
            next(Role::AuditReader, audit)
        )?;
        Ok(n.max(a))
    };
    tokio::select! {
        done = readers => done,
        // `None` once the relay finished its work: then only the readers are waited for.
        Some(e) = relay_failed.recv() => Err(e),
    }
}

/// A group consumer (the daemons' settings) for `role`, subscribed to what it reads.
fn subscribed(
    config: &Config,
    role: Role,
    topics: &Topics,
    group: &str,
) -> Result<kafka::Consumer, RawError> {
    let consumer = kafka::consumer(&config.kafka, group)?;
    let reads = role.reads(topics);
    consumer
        .subscribe(&reads)
        .map_err(|source| RawError::Subscribe {
            role,
            topics: reads.join(","),
            source,
        })?;
    Ok(consumer)
}

/// Starts a reader: it counts its topics' records and reports each mark it completes.
fn spawn_reader(
    config: &Config,
    role: Role,
    topics: &Topics,
    group: &str,
    progress: Progress,
) -> Result<(Marks, tokio::task::JoinHandle<()>), RawError> {
    let consumer = subscribed(config, role, topics, group)?;
    let (report, marks) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut tally = progress.tally(role);
        // From the last record, not from the last answer: errors repeated (a broker that
        // answers every fetch with an error) are a stall too.
        let mut deadline = tokio::time::Instant::now() + STALL;
        while !tally.done() {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(message)) => {
                    deadline = tokio::time::Instant::now() + STALL;
                    // As the daemons do, so the broker sees their commits too.
                    if let Err(e) = consumer.store_offset_from_message(&message) {
                        tracing::debug!(error = %e, "offset not stored");
                    }
                    if tally.count().is_some() {
                        let _ = report.send(Ok(Instant::now()));
                    }
                }
                Ok(Err(e)) => tracing::warn!(reader = %role, error = %e, "consumer error"),
                Err(_) => {
                    let _ = report.send(Err(progress.stalled(role, &tally)));
                    return;
                }
            }
        }
    });
    Ok((marks, task))
}

/// Hands a record to the producer, waiting only while its queue is full.
async fn enqueue(
    producer: &kafka::Producer,
    record: &OutRecord,
    role: Role,
) -> Result<DeliveryFuture, RawError> {
    loop {
        match producer.send_result(future_record(record)) {
            Ok(delivery) => return Ok(delivery),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => {
                return Err(RawError::PipelineProduce {
                    role,
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Waits for a record's acknowledgement. One failure spoils the measurement: it ends the phase.
async fn delivered(delivery: DeliveryFuture, role: Role) -> Result<(), RawError> {
    let result: Result<OwnedDeliveryResult, _> = delivery.await;
    let reason = match result {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err((e, _))) => e.to_string(),
        Err(_) => "delivery cancelled".to_string(),
    };
    Err(RawError::PipelineProduce { role, reason })
}

/// The source: orders `from..from + count` of the pool, each as the API publishes it (`Analise`,
/// then the order once `Analise` is acknowledged), up to `SOURCE_IN_FLIGHT` at once. Returns
/// when every record is acknowledged.
async fn send_units(
    producer: &kafka::Producer,
    pool: &UnitPool,
    from: u64,
    count: u64,
) -> Result<(), RawError> {
    let mut in_flight = FuturesUnordered::new();
    for index in from..from + count {
        if in_flight.len() >= SOURCE_IN_FLIGHT {
            if let Some(sent) = in_flight.next().await {
                sent?;
            }
        }
        let unit = pool.unit(index);
        // Enqueued here, not in the future: a future pushed to the set waits to be polled.
        let analise = enqueue(producer, &unit.analise, Role::Source).await?;
        in_flight.push(async move {
            delivered(analise, Role::Source).await?;
            let order = enqueue(producer, &unit.order, Role::Source).await?;
            delivered(order, Role::Source).await
        });
    }
    while let Some(sent) = in_flight.next().await {
        sent?;
    }
    Ok(())
}

/// The relay: for each order read, its evaluated record and its verdict are produced at once;
/// its offset is stored once both are acknowledged, in the order read (the daemons' loop, with
/// a lookup for a decision). Returns when every order was forwarded and acknowledged.
async fn relay(
    consumer: &kafka::Consumer,
    producer: &kafka::Producer,
    pool: &UnitPool,
    progress: &Progress,
) -> Result<(), RawError> {
    let mut tally = progress.tally(Role::Relay);
    let mut in_flight = FuturesOrdered::new();
    // From the last record, as for the readers.
    let mut deadline = tokio::time::Instant::now() + STALL;
    while !tally.done() || !in_flight.is_empty() {
        tokio::select! {
            biased;
            Some(forwarded) = in_flight.next(), if !in_flight.is_empty() => {
                let (topic, partition, offset): (String, i32, i64) = forwarded?;
                if let Err(e) = consumer.store_offset(&topic, partition, offset) {
                    tracing::debug!(error = %e, "offset not stored");
                }
            }
            received = tokio::time::timeout_at(deadline, consumer.recv()),
                if !tally.done() && in_flight.len() < RELAY_IN_FLIGHT =>
            {
                let message = match received {
                    Ok(Ok(message)) => message,
                    Ok(Err(e)) => {
                        tracing::warn!(reader = %Role::Relay, error = %e, "consumer error");
                        continue;
                    }
                    Err(_) => return Err(progress.stalled(Role::Relay, &tally)),
                };
                deadline = tokio::time::Instant::now() + STALL;
                let unknown = || RawError::UnknownRecord {
                    topic: message.topic().to_string(),
                    partition: message.partition(),
                    offset: message.offset(),
                };
                let correlation = kafka::header_value(&message, HEADER_CORRELATION_ID)
                    .ok_or_else(unknown)?;
                let unit = pool.find(correlation).ok_or_else(unknown)?;
                let evaluated = enqueue(producer, &unit.evaluated, Role::Relay).await?;
                let verdict = enqueue(producer, &unit.verdict, Role::Relay).await?;
                tally.count();
                progress.relayed.store(tally.seen(), Ordering::Relaxed);
                let at = (message.topic().to_string(), message.partition(), message.offset());
                in_flight.push_back(async move {
                    delivered(evaluated, Role::Relay).await?;
                    delivered(verdict, Role::Relay).await?;
                    Ok::<_, RawError>(at)
                });
            }
        }
    }
    Ok(())
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

    fn event_type(record: &OutRecord) -> &[u8] {
        &record.headers[0].1
    }

    #[test]
    fn pipeline_records_go_where_the_mesh_sends_them() {
        let topics = Topics::pipeline("p");
        assert_eq!(
            topics.all(),
            ["p-pedidos", "p-notificacoes", "p-validos", "p-recusados"]
        );
        let pool = UnitPool::new(&topics, 7);
        assert_eq!(pool.units.len(), POOL_ORDERS);
        for (i, unit) in pool.units.iter().enumerate() {
            assert_eq!(unit.order.topic, "p-pedidos");
            assert_eq!(unit.analise.topic, "p-notificacoes");
            assert_eq!(unit.verdict.topic, "p-notificacoes");
            let expected = if refused(i) {
                "p-recusados"
            } else {
                "p-validos"
            };
            assert_eq!(unit.evaluated.topic, expected, "order {i}");
            assert_eq!(event_type(&unit.order), b"pedido.criado");
            assert_eq!(event_type(&unit.analise), event_type(&unit.verdict));
            assert_ne!(event_type(&unit.evaluated), event_type(&unit.order));
            // The verdict's body agrees with the topic the evaluated order goes to.
            let verdict = String::from_utf8_lossy(&unit.verdict.payload);
            let word = if refused(i) { "Recusado" } else { "Aprovado" };
            assert!(verdict.contains(word), "order {i}: {verdict}");
        }
    }

    #[test]
    fn the_relay_finds_every_order_by_its_correlation_id() {
        let pool = UnitPool::new(&Topics::pipeline("p"), 3);
        assert_eq!(pool.by_correlation.len(), POOL_ORDERS, "ids are unique");
        for unit in &pool.units {
            let id = correlation_id(&unit.order.headers).expect("has a correlation id");
            let found = pool.find(id).expect("found");
            assert_eq!(found.evaluated, unit.evaluated);
        }
        assert!(pool.find(b"not an order").is_none());
        // Cycled past the pool's end.
        assert_eq!(pool.unit(POOL_ORDERS as u64 + 5).order, pool.units[5].order);
    }

    #[test]
    fn three_in_twenty_orders_are_refused() {
        let refusals = (0..20).filter(|&i| refused(i)).count();
        assert_eq!(refusals, 3);
        let pool = (0..POOL_ORDERS).filter(|&i| refused(i)).count() as f64;
        let share = pool / POOL_ORDERS as f64;
        assert!((0.14..0.16).contains(&share), "share {share}");
    }

    #[test]
    fn each_role_reads_and_writes_its_share_of_an_order() {
        let topics = Topics::pipeline("p");
        let pool = UnitPool::new(&topics, 11);
        for (i, unit) in pool.units.iter().enumerate().take(40) {
            let records = [&unit.order, &unit.analise, &unit.verdict, &unit.evaluated];
            for role in Role::ALL {
                let reads = role.reads(&topics);
                let read = records
                    .iter()
                    .filter(|r| reads.contains(&r.topic.as_str()))
                    .count() as u64;
                assert_eq!(read, role.reads_per_unit(), "{role}, order {i}");
            }
        }
        // The source writes the order and Analise, the relay the other two.
        let produced: u64 = Role::ALL.iter().map(|r| r.produces_per_unit()).sum();
        assert_eq!(produced, 4);
        assert_eq!(records_per_unit(), 11);
    }

    #[test]
    fn default_pipeline_size_is_about_as_many_records() {
        assert_eq!(default_pipeline_units(1_000_000), 90_909);
        assert_eq!(default_pipeline_units(1_000_006), 90_910);
        assert_eq!(default_pipeline_units(200_000), 20_000);
        assert_eq!(default_pipeline_units(1), 20_000);
    }

    #[test]
    fn tally_reports_the_warm_up_then_the_end() {
        // 2 records per order, 3 warm-up orders, then 5.
        let mut tally = Tally::new(2, 3, 5);
        let marks: Vec<(u64, usize)> = (1..=16)
            .filter_map(|n| tally.count().map(|mark| (n, mark)))
            .collect();
        assert_eq!(marks, vec![(6, 0), (16, 1)]);
        assert!(tally.done());
        assert_eq!(tally.seen(), 16);

        let mut tally = Tally::new(4, 100, 10);
        assert_eq!(tally.expected(), 400);
        for _ in 0..401 {
            tally.count();
        }
        assert!(!tally.done());
        assert_eq!((tally.seen(), tally.expected()), (401, 440));
    }

    #[test]
    fn a_stall_names_the_reader_and_its_counts() {
        let progress = Progress {
            warm_up: 100,
            units: 1_000,
            relayed: Arc::new(AtomicU64::new(900)),
        };
        let mut tally = progress.tally(Role::AuditReader);
        for _ in 0..3_000 {
            tally.count();
        }
        let message = progress.stalled(Role::AuditReader, &tally).to_string();
        assert!(message.contains("audit reader"), "{message}");
        assert!(message.contains("after 3000 of 4400 records"), "{message}");
        assert!(
            message.contains("forwarded 900 of 1100 orders"),
            "{message}"
        );
    }
}
