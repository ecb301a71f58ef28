//! What a daemon asks of the loop.

use std::sync::Arc;

use rdkafka::consumer::Consumer as _;

use super::error::PipelineError;
use crate::config::KafkaConfig;
use crate::kafka::{Consumer, Fetch};
use crate::schema_registry::SchemaRegistry;

#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// The consumer group (`group.id`).
    pub group_id: String,
    /// The topics to consume.
    pub topics: Vec<String>,
    /// Records whose outputs may be unacknowledged at once (at-least-once mode).
    pub max_in_flight: usize,
    /// `Some(transactional.id)` runs the loop exactly-once, in Kafka transactions; the id must
    /// stay the same across restarts of one process so a restarted process fences its crashed
    /// predecessor.
    pub transactional_id: Option<String>,
    /// The cluster a handler with history (`Handler::history_span`) reads its partitions back
    /// from; `run_daemon` sets it to the daemon's own.
    pub history_from: Option<KafkaConfig>,
    /// Where `run_daemon` serves `/metrics`, `/health` and `/ready`: the configuration key and
    /// its value (`""`: nowhere). `None`: nowhere.
    pub admin_listen: Option<(String, String)>,
    /// How the loop's consumer fetches: at once by default; [`Fetch::Batched`] for a daemon
    /// nobody waits on.
    pub fetch: Fetch,
    /// Whether framed records are checked against the Schema Registry before the handler sees
    /// them (when one is configured): on by default; off for a daemon that must record every
    /// record as it is rather than refuse any (monitoring).
    pub check_schemas: bool,
    /// The registry framed records are checked against; `run_daemon` sets it from the
    /// configuration when `check_schemas` is on.
    pub schema_registry: Option<Arc<SchemaRegistry>>,
}

impl LoopOptions {
    /// At-least-once on `topics` in `group_id`.
    pub fn new(group_id: impl Into<String>, topics: Vec<String>, max_in_flight: usize) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            max_in_flight,
            transactional_id: None,
            history_from: None,
            admin_listen: None,
            fetch: Fetch::Prompt,
            check_schemas: true,
            schema_registry: None,
        }
    }

    /// Serves the admin endpoint on `addr`, the value of configuration key `key`.
    pub fn with_admin(mut self, key: &str, addr: &str) -> Self {
        self.admin_listen = Some((key.to_string(), addr.to_string()));
        self
    }

    /// Fetches records in batches of up to [`crate::kafka::BATCHED_FETCH_WAIT_MS`]: fewer
    /// requests and wake-ups, each record that much later.
    pub fn with_batched_fetch(mut self) -> Self {
        self.fetch = Fetch::Batched;
        self
    }

    /// Takes framed records as they come, without asking the Schema Registry about them.
    pub fn without_schema_check(mut self) -> Self {
        self.check_schemas = false;
        self
    }

    /// Why the registry refuses `record`, if it does (see [`SchemaRegistry::check`]).
    pub(super) async fn schema_refusal(
        &self,
        record: &super::InRecord<'_>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Option<super::Poison> {
        let registry = self.schema_registry.as_ref()?;
        let refusal = registry.check(record.payload, shutdown).await.err()?;
        Some(super::Poison::new(refusal))
    }

    /// Subscribes `consumer` to the loop's topics and says so.
    pub(super) fn subscribe(&self, consumer: &Consumer, mode: &str) -> Result<(), PipelineError> {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|source| PipelineError::Subscribe {
                topics: self.topics.join(","),
                source,
            })?;
        tracing::info!(group = %self.group_id, topics = %self.topics.join(","), "consuming, {mode}");
        Ok(())
    }
}
