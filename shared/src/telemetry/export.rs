//! Where spans go: nowhere by default (no span is built then), or over OTLP/HTTP to `telemetry.otlp_endpoint`. The
//! exporter runs on the batch processor's own thread, behind a bounded queue that drops spans
//! when full, so a slow or absent collector costs the daemons lost spans, never time.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry_otlp::{Protocol, RetryPolicy, SpanExporter, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider, SpanData,
    SpanExporter as ExportSpans,
};
use opentelemetry_sdk::Resource;

use crate::config::TelemetryConfig;

/// Spans waiting for export, at most; past it new spans are dropped. At the mesh's few
/// thousand orders a second, a couple of seconds' worth.
const MAX_QUEUE: usize = 8192;
/// How often the queue is sent (and at most how long a span waits for it).
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);
/// One export request's limit: a collector that accepts connections but never answers holds
/// the export thread this long, while spans queue (and overflow) behind it.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// What the last flush at shutdown may add to a daemon's stop.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// Failed exports are reported at most this often: a collector that is down would otherwise
/// bring a log line per batch.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// The provider, kept for [`shutdown`].
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// The daemon's tracer provider when `config.otlp_endpoint` is set, its spans named after
/// `service`; none without an endpoint, or when the exporter cannot be built (reported, and
/// export stays off).
pub(super) fn provider(
    config: &TelemetryConfig,
    service: &str,
) -> Result<Option<SdkTracerProvider>, String> {
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(None);
    };
    let exporter =
        exporter(endpoint).map_err(|e| format!("cannot export traces to {endpoint}: {e}"))?;
    let resource = Resource::builder_empty()
        .with_service_name(service.to_string())
        .build();
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUE)
        .with_scheduled_delay(EXPORT_INTERVAL)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_span_processor(
            BatchSpanProcessor::builder(Reported::new(exporter))
                .with_batch_config(batch)
                .build(),
        )
        .build();
    let _ = PROVIDER.set(provider.clone());
    Ok(Some(provider))
}

fn exporter(endpoint: &str) -> Result<SpanExporter, opentelemetry_otlp::ExporterBuildError> {
    SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_timeout(EXPORT_TIMEOUT)
        // A batch that fails is dropped: retrying would only hold the queue back.
        .with_retry_policy(RetryPolicy::disabled())
        .build()
}

/// The OTLP exporter, reporting failed exports (a warning now and then, with the spans lost).
#[derive(Debug)]
struct Reported {
    inner: SpanExporter,
    /// Spans lost since the last report, and when that was.
    lost: Mutex<(u64, Option<Instant>)>,
}

impl Reported {
    fn new(inner: SpanExporter) -> Self {
        Self {
            inner,
            lost: Mutex::new((0, None)),
        }
    }

    fn failed(&self, spans: usize, error: &dyn std::fmt::Display) {
        let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
        lost.0 += spans as u64;
        if lost.1.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
            tracing::warn!(
                spans_lost = lost.0,
                error = %error,
                "cannot export traces; spans are dropped until the collector answers"
            );
            *lost = (0, Some(Instant::now()));
        }
    }
}

impl ExportSpans for Reported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        if let Err(e) = &result {
            self.failed(spans, e);
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Sends what is queued, waiting at most [`FLUSH_DEADLINE`]. Called once the daemon's work is
/// over, so the wait delays only its exit.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(e) = provider.shutdown_with_timeout(FLUSH_DEADLINE) {
            tracing::debug!(error = %e, "traces not flushed");
        }
    }
}
