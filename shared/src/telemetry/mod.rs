//! Logging and traces.
//!
//! Logs: `tracing` with `RUST_LOG`-style filtering; human-readable by default, JSON lines on
//! request (`--log-format json` or `telemetry.format = "json"`). A log line inside a record's
//! or an order's span carries the span's `trace_id`.
//!
//! Traces: [`trace_context`] moves the W3C context in and out of record and HTTP headers, so it
//! goes on from record to record whatever the log filter says. When [`export`] is asked to
//! send spans over OTLP, the pedidos crates' spans become OpenTelemetry spans
//! (`tracing-opentelemetry`); without export none is built, since nothing would read it.

mod export;
pub mod trace_context;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracer;
use tracing::Subscriber;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

pub use export::shutdown;

/// Whether a span of `target` is traced in the daemon `service`: its own crate's and `shared`'s
/// (the daemons' crates are named as the services); others' (the HTTP and Kafka libraries',
/// the exporter's own) would only add noise, or feed the exporter its own spans.
fn traced(target: &str, service: &str) -> bool {
    let krate = target.split("::").next().unwrap_or_default();
    krate == "shared" || krate == service
}

/// Installs the global subscriber for the daemon `service` (the traces' service name).
/// `RUST_LOG`, when set, wins over `telemetry.filter`.
pub fn init(config: &TelemetryConfig, service: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    // Colours only for a person at a terminal, not in files, pipes or CI logs.
    let ansi = std::io::stdout().is_terminal();
    let provider = export::provider(config, service);
    let tracer = match &provider {
        Ok(Some(provider)) => Some(provider.tracer(service.to_string())),
        _ => None,
    };
    // A second init (tests running several daemons in one process) keeps the first subscriber.
    let _ = subscriber(
        config.format,
        filter,
        tracer,
        service,
        std::io::stdout,
        ansi,
    )
    .try_init();
    match (provider, &config.otlp_endpoint) {
        (Err(problem), _) => tracing::warn!("{problem}"),
        (Ok(_), Some(endpoint)) => {
            tracing::info!(endpoint = %endpoint, service, "exporting traces over OTLP/HTTP")
        }
        (Ok(_), None) => {}
    }
}

/// Logs in `format` to `writer`, filtered by `filter`, and the [`traced`] spans of `service` to
/// `tracer`, if any.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    tracer: Option<SdkTracer>,
    service: &str,
    writer: W,
    ansi: bool,
) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let logs = fmt::layer()
        .with_writer(writer)
        .with_target(true)
        // A closed stdout (a pipe whose reader died) must not turn logging into a panic.
        .log_internal_errors(false)
        .with_ansi(ansi);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        LogFormat::Json => logs.json().flatten_event(true).boxed(),
    };
    let service = service.to_string();
    let traces = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Nothing reads OpenTelemetry's current context: spans carry theirs explicitly.
            .with_context_activation(false)
            .with_threads(false)
            .with_location(false)
            .with_tracked_inactivity(false)
            // Spans only: events stay log lines, not span events.
            .with_filter(filter_fn(move |meta| {
                meta.is_span() && traced(meta.target(), &service)
            }))
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::trace_context::{continue_trace, TRACEPARENT};
    use super::*;

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

    /// Whether spans are exported: an OpenTelemetry layer builds them, or (off, the default)
    /// none is installed. Every test below runs both ways.
    const EXPORT: [bool; 2] = [true, false];

    /// Handles one record carrying `traceparent` as the pipeline does, under `filter`, with
    /// export on or off; returns the log and the output's `traceparent`.
    fn handle_one(
        export: bool,
        format: LogFormat,
        filter: &str,
        traceparent: &str,
    ) -> (String, String) {
        let buffer = Buffer::default();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = subscriber(
            format,
            EnvFilter::new(filter),
            export.then(|| provider.tracer("test")),
            "test",
            {
                let buffer = buffer.clone();
                move || buffer.clone()
            },
            false,
        );
        let mut out = Vec::new();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("record", trace_id = tracing::field::Empty);
            let input = [(TRACEPARENT, Some(traceparent.as_bytes()))];
            let trace = continue_trace(&span, input);
            span.in_scope(|| tracing::warn!(pedido = "p-1", "order refused"));
            trace.apply(&mut out);
        });
        let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let (_, traceparent) = out.into_iter().find(|(k, _)| k == TRACEPARENT).unwrap();
        (log, String::from_utf8(traceparent).unwrap())
    }

    #[test]
    fn a_daemon_traces_the_spans_of_its_own_crate_and_of_shared_only() {
        assert!(traced("fraud::rules", "fraud"));
        assert!(traced("shared::pipeline::traced", "fraud"));
        assert!(!traced("api::http", "fraud"));
        assert!(!traced("rdkafka::client", "fraud"));
        assert!(!traced("hyper", "api"));
    }

    #[test]
    fn text_logs_inside_a_span_name_its_trace() {
        for export in EXPORT {
            let (log, out) = handle_one(export, LogFormat::Text, "info", PARENT);
            assert!(log.contains(&format!("trace_id={TRACE}")), "{log}");
            assert!(log.contains("order refused"), "{log}");
            // Same trace, a span of its own.
            let parts: Vec<&str> = out.split('-').collect();
            assert_eq!(parts.len(), 4, "{out}");
            assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE, "01"));
            assert_ne!(parts[2], "00f067aa0ba902b7", "export {export}");
            assert_eq!(parts[2].len(), 16);
        }
    }

    #[test]
    fn json_logs_inside_a_span_name_its_trace() {
        for export in EXPORT {
            let (log, _) = handle_one(export, LogFormat::Json, "info", PARENT);
            let line: serde_json::Value =
                serde_json::from_str(log.lines().next().unwrap()).unwrap();
            assert_eq!(line["message"], "order refused");
            assert_eq!(line["span"]["trace_id"], TRACE, "export {export}: {log}");
        }
    }

    #[test]
    fn the_trace_goes_on_with_logging_turned_down() {
        for export in EXPORT {
            let (log, out) = handle_one(export, LogFormat::Text, "error", PARENT);
            assert_eq!(log, "");
            assert!(
                out.starts_with(&format!("00-{TRACE}-")),
                "export {export}: {out}"
            );
        }
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        for export in EXPORT {
            let (log, out) = handle_one(export, LogFormat::Json, "info", "00-nonsense-01");
            let line: serde_json::Value =
                serde_json::from_str(log.lines().next().unwrap()).unwrap();
            let trace = line["span"]["trace_id"]
                .as_str()
                .expect("a trace id")
                .to_string();
            assert_eq!(trace.len(), 32);
            assert_ne!(trace, "0".repeat(32));
            assert!(
                out.starts_with(&format!("00-{trace}-")),
                "export {export}: {out} in trace {trace}"
            );
        }
    }
}
