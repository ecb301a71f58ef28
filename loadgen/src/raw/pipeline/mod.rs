//! The pipeline phase: orders through the mesh's shape, every stage live at once, each with its
//! own clients: the [`source`] produces, the [`relay`] reads and produces, the [`readers`] read.

mod readers;
mod relay;
mod source;
mod stage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::config::{Config, TopicsConfig};
use shared::kafka;
use tokio::sync::mpsc;

use super::records::OrderPool;
use super::{RawError, RawOptions, POOL_ORDERS, PRODUCER_TIMEOUT, WARM_UP};
use stage::Workload;
pub use stage::{records_per_unit, Stage};

/// The consumer groups of the pipeline's three consumers: fresh for every run, so each reads
/// its topics from the start.
#[derive(Debug, Clone)]
pub struct Groups {
    relay: String,
    notify: String,
    audit: String,
}

impl Groups {
    pub fn fresh() -> Self {
        let run = uuid::Uuid::new_v4().simple().to_string();
        let group = |part: &str| format!("loadgen-raw-{part}-{}", &run[..8]);
        Self {
            relay: group("fraud"),
            notify: group("notification"),
            audit: group("monitoring"),
        }
    }

    pub fn all(&self) -> [&str; 3] {
        [&self.relay, &self.notify, &self.audit]
    }
}

/// Aborts the phase's tasks when the phase ends early: each holds clients and would otherwise
/// wait out its stall timeout (the relay: until stopped).
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

/// Runs the phase on `topics` (created beforehand). The clock runs from the first send of the
/// measured orders until both readers saw every record of them; `WARM_UP` orders go through
/// first, so that the three consumer groups have joined and both producers have their ids
/// before it starts.
pub async fn run(
    config: &Config,
    topics: &TopicsConfig,
    groups: &Groups,
    options: &RawOptions,
) -> Result<Duration, RawError> {
    let units = options.pipeline_units;
    let pool = Arc::new(OrderPool::new(
        topics,
        &config.fraud,
        options.seed,
        POOL_ORDERS,
    ));
    let workload = Workload::new(WARM_UP, units);
    let (mut notify, notify_task) = readers::spawn(
        config,
        Stage::NotifyReader,
        topics,
        &groups.notify,
        workload.clone(),
    )?;
    let (mut audit, audit_task) = readers::spawn(
        config,
        Stage::AuditReader,
        topics,
        &groups.audit,
        workload.clone(),
    )?;
    let (relay_failed_tx, mut relay_failed) = mpsc::channel(1);
    let relay = relay::spawn(
        config,
        topics,
        &groups.relay,
        pool.clone(),
        workload,
        relay_failed_tx,
    )?;
    let _abort = AbortOnDrop(vec![
        notify_task.abort_handle(),
        audit_task.abort_handle(),
        relay.task.abort_handle(),
    ]);

    let producer = kafka::producer(&config.kafka, PRODUCER_TIMEOUT)?;
    source::send(&producer, &pool, 0, WARM_UP).await?;
    both_marks(&mut notify, &mut audit, &mut relay_failed).await?;
    let started = Instant::now();
    source::send(&producer, &pool, WARM_UP, units).await?;
    let finished = both_marks(&mut notify, &mut audit, &mut relay_failed).await?;
    let elapsed = finished.saturating_duration_since(started);

    // Every record was read, so the relay's were acknowledged: stopped, it only stores and
    // commits its offsets. Wait for it and the readers to close their clients before the
    // topics go.
    relay.stop.cancel();
    for (stage, task) in [
        (Stage::Relay, relay.task),
        (Stage::NotifyReader, notify_task),
        (Stage::AuditReader, audit_task),
    ] {
        task.await.map_err(|e| RawError::Task {
            stage,
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
    async fn next(stage: Stage, marks: &mut Marks) -> Result<Instant, RawError> {
        marks.recv().await.unwrap_or_else(|| {
            Err(RawError::Task {
                stage,
                reason: "it stopped without a word".into(),
            })
        })
    }
    let readers = async {
        let (n, a) = tokio::try_join!(
            next(Stage::NotifyReader, notify),
            next(Stage::AuditReader, audit)
        )?;
        Ok(n.max(a))
    };
    tokio::select! {
        done = readers => done,
        // The relay runs until stopped: `None` only if it ended on its own, without an error.
        Some(e) = relay_failed.recv() => Err(e),
    }
}
