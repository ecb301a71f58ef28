//! The consume phase: a catch-up read of the whole topic from the beginning.

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer as _;
use rdkafka::{Offset, TopicPartitionList};
use shared::config::Config;
use shared::kafka::{self, StartupError};

use super::stall::StallWatch;
use super::RawError;

/// Reads every partition from the beginning until `expected` records arrived. The rate is taken
/// from the first record to the last (connecting is not reading).
pub async fn consume(
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
