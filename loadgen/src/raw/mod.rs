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
//!
//! One module per phase ([`produce`], [`consume`], [`live`], [`pipeline`]), the records they
//! send in [`records`], and the run's topics in [`topics`].

mod consume;
mod live;
mod pipeline;
mod produce;
mod records;
mod stall;
mod topics;

use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use shared::config::Config;
use shared::kafka::{self, StartupError};
use shared::pipeline::PipelineError;

use crate::stats::{PipelineRun, RawReport};
use pipeline::{records_per_unit, Groups, Stage};

/// Records produced (and awaited) before the clock starts: the first record of an idempotent
/// producer waits for its producer id.
const WARM_UP: u64 = 100;
/// Distinct orders cycled through.
const POOL_ORDERS: usize = 512;
/// A consumer that sees nothing for this long has stalled.
const STALL: Duration = Duration::from_secs(30);
/// How long a record may wait for its acknowledgement before its delivery fails.
const PRODUCER_TIMEOUT: Duration = Duration::from_secs(60);

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

#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error("{failed} of {total} records were not acknowledged; first error: {first}")]
    Delivery {
        failed: u64,
        total: u64,
        first: String,
    },
    #[error("consumer stalled after {consumed} of {expected} records (nothing for {STALL:?}{})",
        last_error.as_deref().map(|e| format!("; last consumer error: {e}")).unwrap_or_default())]
    Stalled {
        consumed: u64,
        expected: u64,
        last_error: Option<String>,
    },
    #[error("cannot subscribe the {stage} to {topics}: {source}")]
    Subscribe {
        stage: Stage,
        topics: String,
        source: KafkaError,
    },
    #[error("pipeline: the {stage} could not produce: {reason}")]
    PipelineProduce { stage: Stage, reason: String },
    #[error(
        "pipeline: the {stage} stalled after {seen} of {expected} records (nothing for {silent:?}); \
         the relay had forwarded {relayed} of {units} orders"
    )]
    PipelineStalled {
        stage: Stage,
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
    #[error("pipeline: the relay (fraud's part) failed: {0}")]
    Relay(#[source] PipelineError),
    #[error("pipeline: the {stage} ended without finishing: {reason}")]
    Task { stage: Stage, reason: String },
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
    let admin = topics::admin(config)?;
    topics::create(&admin, config, &topic, options.partitions).await?;

    let pool = records::sample_records(&topic, &config.fraud, options.seed, POOL_ORDERS);
    let sizes = records::average_sizes(&pool);
    let producer = kafka::producer(&config.kafka, PRODUCER_TIMEOUT)?;
    produce::produce(&producer, &pool, 0, WARM_UP).await?;
    let started = Instant::now();
    produce::produce(&producer, &pool, WARM_UP as usize, options.records).await?;
    let produce_time = started.elapsed();

    let expected = WARM_UP + options.records;
    let (consumed, consume_time) =
        consume::consume(config, &topic, options.partitions, expected).await?;
    let live_time = live::live(config, &producer, &pool, &topic, options.records).await?;
    // The pipeline brings its own clients.
    drop(producer);

    let mut names = vec![topic.clone()];
    let flow = topics::pipeline(config, &topic, options.partitions);
    let groups = Groups::fresh();
    let pipelined = if options.pipeline_units > 0 {
        names.extend(flow.all());
        // The mesh's topic set, made as the daemons make it (dead-letter topics included).
        let made = kafka::ensure_topics(&config.kafka, &flow).await;
        Some(match made {
            Ok(()) => pipeline::run(config, &flow, &groups, options).await,
            Err(e) => Err(e.into()),
        })
    } else {
        None
    };

    // Also when the pipeline failed: its topics are of no use to anyone.
    if !options.keep_topic {
        let groups = if pipelined.is_some() {
            groups.all().to_vec()
        } else {
            Vec::new()
        };
        topics::delete(&admin, &names, &groups).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_pipeline_size_is_about_as_many_records() {
        assert_eq!(default_pipeline_units(1_000_000), 90_909);
        assert_eq!(default_pipeline_units(1_000_006), 90_910);
        assert_eq!(default_pipeline_units(200_000), 20_000);
        assert_eq!(default_pipeline_units(1), 20_000);
    }
}
