//! The one consumer loop every daemon runs, around the daemon's [`Handler`]: record in,
//! records out.
//!
//! - [`at_least_once`] is the default: outputs are produced without waiting, and a record's
//!   offset is stored only once all its outputs are acknowledged.
//! - [`exactly_once`] is the optional mode: batches whose outputs and input offsets commit in
//!   one Kafka transaction.
//! - [`dead_letter`] serves both: a record the handler refuses goes to its topic's dead-letter
//!   topic with the reason, and the loop goes on.
//! - `history` serves both too: a handler with a memory of earlier records gets it rebuilt
//!   from the log whenever it may be stale.
//! - `traced` serves both: each record is handled inside a span of the trace it carries, and
//!   its outputs carry that trace on.

pub mod at_least_once;
pub mod dead_letter;
mod error;
pub mod exactly_once;
mod handler;
mod history;
mod options;
pub mod traced;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::kafka;
pub use dead_letter::{
    DeadLetters, DLQ_CONSUMER_GROUP, DLQ_ERROR, DLQ_MAX_PAYLOAD, DLQ_PAYLOAD_TRUNCATED,
    DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION, DLQ_SOURCE_TOPIC,
};
pub use error::PipelineError;
pub use handler::{Handled, Handler, InRecord, Poison};
pub use options::LoopOptions;

/// How long one attempt to deliver an output may wait for acknowledgement (`message.timeout.ms`).
/// A record that times out is produced again by the loop, so this bounds one attempt, not the
/// wait: a broker outage stalls the loop rather than losing outputs.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the admin endpoint (`options.admin_listen`), connects (failing fast when the cluster
/// is unreachable or refuses us), creates missing topics, then runs the loop until `shutdown`
/// is cancelled.
pub async fn run_daemon<H: Handler>(
    config: &Config,
    mut options: LoopOptions,
    handler: H,
    shutdown: CancellationToken,
) -> Result<(), PipelineError> {
    let admin_stop = shutdown.child_token();
    if let Some((key, addr)) = &options.admin_listen {
        crate::admin::serve(key, addr, admin_stop.clone()).await?;
    }
    // The endpoint goes with the loop, however it ends.
    let _admin = admin_stop.drop_guard();
    kafka::check_connectivity(&config.kafka).await?;
    kafka::ensure_topics(&config.kafka, &config.topics).await?;
    let registry = crate::schema_registry::start(config).await?;
    if options.check_schemas {
        options.schema_registry = registry;
    }
    let dead_letters = DeadLetters::new(
        &config.topics.dlq_suffix,
        &options.group_id,
        &options.topics,
    );
    options.history_from = Some(config.kafka.clone());
    match &options.transactional_id {
        None => {
            let producer = kafka::producer(&config.kafka, MESSAGE_TIMEOUT)?;
            let consumer =
                kafka::consumer_fetching(&config.kafka, &options.group_id, options.fetch)?;
            at_least_once::run(
                &consumer,
                &producer,
                handler,
                &options,
                dead_letters,
                shutdown,
            )
            .await
        }
        Some(id) => {
            let producer = kafka::transactional_producer(&config.kafka, id)?;
            let consumer =
                kafka::transactional_consumer(&config.kafka, &options.group_id, options.fetch)?;
            exactly_once::run(
                &consumer,
                &producer,
                handler,
                &options,
                dead_letters,
                shutdown,
            )
            .await
        }
    }
}
