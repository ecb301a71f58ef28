//! The readers: notification's and monitoring's parts, each a group consumer that counts its
//! topics' records and stores their offsets as the daemons do.

use std::time::Instant;

use rdkafka::consumer::Consumer as _;
use shared::config::{Config, TopicsConfig};
use shared::kafka::{self, Consumer};
use tokio::sync::mpsc;

use super::{Marks, Stage, Workload};
use crate::raw::{RawError, STALL};

/// A group consumer (the daemons' settings) for `stage`, subscribed to what it reads.
fn subscribed(
    config: &Config,
    stage: Stage,
    topics: &TopicsConfig,
    group: &str,
) -> Result<Consumer, RawError> {
    let consumer = kafka::consumer(&config.kafka, group)?;
    let reads = stage.reads(topics);
    consumer
        .subscribe(&reads)
        .map_err(|source| RawError::Subscribe {
            stage,
            topics: reads.join(","),
            source,
        })?;
    Ok(consumer)
}

/// Starts a reader: it counts its topics' records and reports each mark it completes.
pub fn spawn(
    config: &Config,
    stage: Stage,
    topics: &TopicsConfig,
    group: &str,
    workload: Workload,
) -> Result<(Marks, tokio::task::JoinHandle<()>), RawError> {
    let consumer = subscribed(config, stage, topics, group)?;
    let (report, marks) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut tally = workload.tally(stage);
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
                Ok(Err(e)) => tracing::warn!(reader = %stage, error = %e, "consumer error"),
                Err(_) => {
                    let _ = report.send(Err(workload.stalled(stage, &tally)));
                    return;
                }
            }
        }
    });
    Ok((marks, task))
}
