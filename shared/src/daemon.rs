//! What every daemon's `main` does: parse the common flags, load configuration, start telemetry,
//! and turn the outcome into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as _, Command, FromArgMatches as _};

use crate::config::{Config, LogFormat};

/// Who a daemon is, for `--help` and `--version`: its crate's name, description and version,
/// read from the calling crate's Cargo.toml by [`about!`](crate::about).
#[derive(Debug, Clone, Copy)]
pub struct About {
    pub name: &'static str,
    pub description: &'static str,
    pub version: &'static str,
}

/// The calling crate's [`About`].
#[macro_export]
macro_rules! about {
    () => {
        $crate::daemon::About {
            name: env!("CARGO_PKG_NAME"),
            description: env!("CARGO_PKG_DESCRIPTION"),
            version: env!("CARGO_PKG_VERSION"),
        }
    };
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Configuration file (default: ./conf.toml if present). Also PEDIDOS_CONFIG.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log format: text (default) or json. Overrides telemetry.format.
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
}

/// Loads configuration and starts logging, or prints why it cannot and exits with status 2.
pub fn init(about: &About) -> Config {
    let name = about.name;
    let command = Command::new(name)
        .about(about.description)
        .version(about.version);
    let args = Args::from_arg_matches(&Args::augment_args(command).get_matches())
        .unwrap_or_else(|e| e.exit());
    let mut config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: configuration error: {e}");
            std::process::exit(2);
        }
    };
    match args.log_format.as_deref() {
        None => {}
        Some("json") => config.telemetry.format = LogFormat::Json,
        Some("text") => config.telemetry.format = LogFormat::Text,
        Some(other) => {
            eprintln!("{name}: --log-format must be text or json, got {other:?}");
            std::process::exit(2);
        }
    }
    crate::telemetry::init(&config.telemetry, name);
    crate::metrics::set_daemon(name);
    config
}

/// Exit 0 on a clean stop; otherwise log the error and exit 1.
pub fn exit<E: std::fmt::Display>(name: &str, result: Result<(), E>) -> ExitCode {
    // The daemon's work is over: the last spans go out (within a short deadline) first.
    crate::telemetry::shutdown();
    match result {
        Ok(()) => {
            tracing::info!("{name} stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{name} failed: {e}");
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
