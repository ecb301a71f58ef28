//! loadgen's commands, one per file: [`run`] (the default: orders over HTTP, verdicts read
//! back), [`raw`] (the broker alone) and [`token`] (a development JWT). Each has its arguments
//! and an `execute` that returns the process's exit code; what they share is here.

pub mod raw;
pub mod run;
pub mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use shared::Config;

use crate::stats;

/// Options every command that talks to Kafka takes.
#[derive(Debug, Args)]
pub struct Common {
    /// Configuration file for the Kafka settings (same loader as the daemons; default
    /// ./conf.toml if present, PEDIDOS_CONFIG, PEDIDOS_* variables).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Seed of the fake data (default: random; the report shows it).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

pub fn duration_arg(text: &str) -> Result<Duration, String> {
    stats::parse_duration(text)
}

/// The configuration, as the daemons load it; exit status 2 when it is malformed.
pub fn load_config(path: Option<&Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("loadgen: configuration error: {e}");
        ExitCode::from(2)
    })
}

/// Prints a report as one JSON object (`--json`) or as text.
pub fn print_report<R: serde::Serialize>(
    json: bool,
    report: &R,
    to_text: impl FnOnce(&R) -> String,
) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serializes")
        );
    } else {
        print!("{}", to_text(report));
    }
}
