//! The client context every client gets: librdkafka's logs and errors into `tracing`, and its
//! statistics and rebalances into metrics.

use std::sync::{Arc, Mutex};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode as Code;

use crate::metrics::clients::{ClientMetrics, Role};

/// Client context shared by every client we build: routes librdkafka's logs and errors into
/// `tracing` and remembers the last error so start-up failures can say what the broker said.
#[derive(Clone, Default)]
pub struct Context {
    last_error: Arc<Mutex<Option<(RDKafkaErrorCode, String)>>>,
    /// The last broker failure librdkafka logged (facility FAIL), at any level: some failures
    /// (a TLS client on a plaintext port, a plaintext client on a TLS port) are only logged.
    last_failure: Arc<Mutex<Option<String>>>,
    /// Producers' and consumers' metrics and health (admin clients have none).
    metrics: Option<Arc<ClientMetrics>>,
}

impl Context {
    pub(super) fn with_metrics(role: Role) -> Self {
        Self {
            metrics: Some(ClientMetrics::new(role)),
            ..Self::default()
        }
    }
    pub(super) fn last_error(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.last_error.lock().unwrap().clone()
    }
    pub(super) fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap().clone()
    }
    pub(super) fn clear(&self) {
        self.last_error.lock().unwrap().take();
        self.last_failure.lock().unwrap().take();
    }
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            *self.last_failure.lock().unwrap() = Some(message.to_string());
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", facility = fac, "{message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", facility = fac, "{message}")
            }
        }
    }

    fn stats(&self, statistics: Statistics) {
        if let Some(metrics) = &self.metrics {
            metrics.on_statistics(&statistics);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(Code::Unknown);
        // librdkafka retries on its own; these are worth a warning, not a crash, once running.
        if code == Code::AllBrokersDown {
            // Not ready until statistics show a broker back.
            if let Some(metrics) = &self.metrics {
                metrics.on_all_brokers_down();
            }
            // A consequence, repeated on every attempt; its cause is reported on its own.
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::warn!(target: "librdkafka", error = %error, "{reason}");
        }
        let mut last = self.last_error.lock().unwrap();
        // "1/1 brokers are down" says less than the failure that took them down: keep that one.
        if code == Code::AllBrokersDown && last.is_some() {
            return;
        }
        *last = Some((code, reason.to_string()));
    }
}

impl ConsumerContext for Context {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}[{}]", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = %parts.join(","), "partitions assigned");
                if let Some(metrics) = &self.metrics {
                    metrics.on_assigned(parts.len());
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(count = tpl.count(), "partitions revoked");
                if let Some(metrics) = &self.metrics {
                    metrics.on_revoked();
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
