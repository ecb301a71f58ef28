//! Logging: `tracing` with `RUST_LOG`-style filtering; human-readable by default, JSON lines on
//! request (`--log-format json` or `telemetry.format = "json"`).

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::{LogFormat, TelemetryConfig};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `telemetry.filter`.
pub fn init(config: &TelemetryConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(true)
        // A closed stdout (a pipe whose reader died) must not turn logging into a panic.
        .log_internal_errors(false)
        // Colours only for a person at a terminal, not in files, pipes or CI logs.
        .with_ansi(std::io::stdout().is_terminal());
    // A second init (tests running several daemons in one process) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
