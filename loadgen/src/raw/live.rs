//! The live phase: records produced while a consumer tails the topic, as the daemons read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::config::Config;
use shared::events::OutRecord;
use shared::kafka::{self, Producer, StartupError};

use super::produce::produce;
use super::stall::StallWatch;
use super::RawError;
use crate::watermarks;

/// Produces `count` more records while a consumer, positioned at the topic's end beforehand,
/// reads them as they arrive. Returns the time from the first send to the last record read.
pub async fn live(
    config: &Config,
    producer: &Producer,
    pool: &[OutRecord],
    topic: &str,
    count: u64,
) -> Result<Duration, RawError> {
    let consumer = Arc::new(kafka::reader(&config.kafka)?);
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
