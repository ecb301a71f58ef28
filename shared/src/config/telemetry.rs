//! `[telemetry]`: how the daemons log, and where their traces go.

use serde::Deserialize;

use super::InvalidValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    pub format: LogFormat,
    /// `RUST_LOG`-style filter, used when `RUST_LOG` is not set.
    pub filter: String,
    /// Base URL of an OTLP/HTTP receiver (a collector, Jaeger), e.g. `http://127.0.0.1:4318`:
    /// spans go to `<endpoint>/v1/traces`. `None` (the default): no export; records still
    /// carry their trace context.
    pub otlp_endpoint: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
            otlp_endpoint: None,
        }
    }
}

impl TelemetryConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(());
        };
        // Plain HTTP only: the exporter is built without a TLS client.
        let host = endpoint.strip_prefix("http://").unwrap_or_default();
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(InvalidValue::new(
                "otlp_endpoint",
                format!("must be an http:// URL like http://127.0.0.1:4318, got {endpoint:?}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing;

    #[test]
    fn export_is_off_unless_an_endpoint_is_given() {
        let c = testing::load("", &[]).unwrap();
        assert_eq!(c.telemetry.otlp_endpoint, None);
        let c = testing::load(
            "",
            &[("PEDIDOS_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318")],
        )
        .unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://127.0.0.1:4318")
        );
        let c = testing::load("[telemetry]\notlp_endpoint = \"http://otel:4318/\"\n", &[]).unwrap();
        assert_eq!(
            c.telemetry.otlp_endpoint.as_deref(),
            Some("http://otel:4318/")
        );
    }

    #[test]
    fn an_endpoint_that_is_not_plain_http_is_refused_with_its_key() {
        for bad in [
            "127.0.0.1:4318",
            "https://otel:4318",
            "http://",
            "http://a b",
        ] {
            let e = testing::load("", &[("PEDIDOS_TELEMETRY__OTLP_ENDPOINT", bad)])
                .expect_err(bad)
                .to_string();
            assert!(e.contains("telemetry.otlp_endpoint"), "{bad}: {e}");
            assert!(e.contains("PEDIDOS_TELEMETRY__OTLP_ENDPOINT"), "{bad}: {e}");
        }
    }
}
