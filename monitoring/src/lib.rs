//! monitoring: consumes every topic of the mesh and records all traffic: a log line and an
//! audit-file line per record, and a summary (counts, rates, verdict latency) every few seconds.

pub mod audit;
pub mod audit_file;
pub mod handed;
pub mod metrics;
pub mod stats;
pub mod writer;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use shared::config::{Config, TopicsConfig};
use shared::pipeline::{self, Handled, Handler, InRecord, LoopOptions, PipelineError, Poison};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::audit_file::Rotation;
use crate::handed::Handed;
use crate::stats::Stats;
use crate::writer::{AuditWriter, Reopener};

#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    #[error("cannot open audit file {path}: {source}")]
    AuditFile {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot handle SIGHUP (the audit file's reopen): {0}")]
    Signal(std::io::Error),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
}

pub struct MonitoringHandler {
    topics: TopicsConfig,
    writer: AuditWriter,
    stats: Arc<Mutex<Stats>>,
    verdict_latency: shared::metrics::prometheus::Histogram,
    handed: Handed,
}

impl Handler for MonitoringHandler {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison> {
        // Replayed after a rebalance in this same process: its line is queued or written.
        if self.handed.again(record) {
            metrics::REPLAYS_SKIPPED.inc();
            return Ok(Handled::publish(Vec::new()));
        }
        let entry = audit::entry(record, &self.topics, Utc::now());
        // Absent fields (an order has no status, a good record no parse error) are left out.
        tracing::info!(
            target: "monitoring",
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            key = entry.key.as_deref(),
            pedido = entry.pedido_id.as_deref(),
            status = entry.status.as_deref(),
            parse_error = entry.parse_error.as_deref(),
            "record"
        );
        if let Some(ms) = entry.verdict_latency_ms {
            self.verdict_latency.observe(ms.max(0) as f64 / 1000.0);
        }
        self.stats.lock().unwrap().record(
            record.topic,
            entry.parse_error.is_some(),
            entry.verdict_latency_ms,
        );
        // The offset is stored once the line is in the file: the audit trail loses nothing.
        Ok(Handled {
            records: Vec::new(),
            ack: Some(self.writer.append(&entry)),
        })
    }
}

/// Runs monitoring until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), MonitoringError> {
    // First of all: SIGHUP's default action would end the process.
    let hangup = hangups()?;
    let m = &config.monitoring;
    let path = &m.audit_file;
    let rotation = Rotation {
        max_bytes: m.audit_max_bytes,
        period_secs: m.audit_rotate_secs,
        keep: m.audit_keep,
    };
    let (writer, writer_thread) =
        AuditWriter::open(path, rotation, m.audit_fsync).map_err(|source| {
            MonitoringError::AuditFile {
                path: path.display().to_string(),
                source,
            }
        })?;
    tokio::spawn(reopen_on_hangup(hangup, writer.reopener()));
    tracing::info!(
        audit_file = %path.display(),
        max_bytes = m.audit_max_bytes,
        rotate_secs = m.audit_rotate_secs,
        keep = m.audit_keep,
        "recording all traffic"
    );
    let stats = Arc::new(Mutex::new(Stats::default()));
    let summaries = tokio::spawn(log_summaries(
        stats.clone(),
        Duration::from_secs(config.monitoring.summary_interval_secs),
        shutdown.clone(),
    ));
    let handler = MonitoringHandler {
        topics: config.topics.clone(),
        writer,
        stats,
        verdict_latency: metrics::VERDICT_LATENCY.clone(),
        handed: Handed::default(),
    };
    let options = LoopOptions::new(
        &config.monitoring.group_id,
        config.topics.all(),
        config.monitoring.max_in_flight,
    )
    .with_admin("monitoring.admin_listen", &config.monitoring.admin_listen)
    // Nobody waits on it: a fetch ten times a second rather than one per record.
    .with_batched_fetch()
    // It records every record as it is, framed or not; refusing is fraud's and notification's.
    .without_schema_check();
    let result = pipeline::run_daemon(&config, options, handler, shutdown.clone()).await;
    shutdown.cancel();
    let _ = summaries.await;
    // The handler (and its sender) is gone: the writer thread drains and ends.
    let _ = tokio::task::spawn_blocking(move || writer_thread.join()).await;
    result.map_err(Into::into)
}

fn hangups() -> Result<Signal, MonitoringError> {
    signal(SignalKind::hangup()).map_err(MonitoringError::Signal)
}

/// Reopens the audit file on each SIGHUP (an external logrotate renamed it), until the writer
/// is gone.
async fn reopen_on_hangup(mut hangups: Signal, reopener: Reopener) {
    while hangups.recv().await.is_some() {
        if !reopener.reopen() {
            break;
        }
    }
}

async fn log_summaries(stats: Arc<Mutex<Stats>>, every: Duration, shutdown: CancellationToken) {
    let mut last = Instant::now();
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let summary = stats.lock().unwrap().summarise(last.elapsed());
        last = Instant::now();
        if summary.counts.is_empty() {
            continue;
        }
        let counts: Vec<String> = summary
            .counts
            .iter()
            .map(|(t, n)| format!("{t}={n}"))
            .collect();
        let rates: Vec<String> = summary
            .rates
            .iter()
            .map(|(t, r)| format!("{t}={r:.1}/s"))
            .collect();
        tracing::info!(
            target: "monitoring::summary",
            counts = %counts.join(" "),
            rates = %rates.join(" "),
            parse_errors = summary.parse_errors,
            verdicts = summary.verdicts,
            verdict_p50_ms = summary.latency_p50_ms,
            verdict_p99_ms = summary.latency_p99_ms,
            verdict_max_ms = summary.latency_max_ms,
            "traffic summary"
        );
    }
}
