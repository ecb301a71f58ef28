//! `loadgen raw`: the broker alone for the mesh's records, then the mesh's shape without the
//! daemons (see [`crate::raw`]).

use std::process::ExitCode;

use clap::Args;

use super::{load_config, print_report, Common};
use crate::raw;
use crate::stats::RawReport;

#[derive(Debug, Args)]
pub struct RawArgs {
    /// Records to produce (after 100 warm-up records).
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Topic to use (default: a fresh loadgen-raw-<random>, deleted afterwards). The pipeline
    /// phase uses four more, <topic>-pedidos, -notificacoes, -validos and -recusados.
    #[arg(long)]
    pub topic: Option<String>,
    /// Keep the topics afterwards.
    #[arg(long)]
    pub keep_topic: bool,
    /// Orders to put through the pipeline phase (after 100 warm-up orders; each is 4 records
    /// produced and 7 consumed). Default: --records / 11, at least 20,000. 0 skips the phase.
    #[arg(long, value_name = "N")]
    pub pipeline_units: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

/// Runs `loadgen raw`.
pub async fn execute(args: RawArgs) -> ExitCode {
    let config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if args.records == 0 || args.partitions < 1 {
        eprintln!("loadgen raw: --records and --partitions must be at least 1");
        return ExitCode::from(2);
    }
    let options = raw::RawOptions {
        records: args.records,
        partitions: args.partitions,
        topic: args.topic,
        keep_topic: args.keep_topic,
        seed: args.common.seed.unwrap_or_else(rand::random),
        pipeline_units: args
            .pipeline_units
            .unwrap_or_else(|| raw::default_pipeline_units(args.records)),
    };
    match raw::run(&config, &options).await {
        Ok(report) => {
            print_report(args.common.json, &report, RawReport::to_text);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen raw: {e}");
            ExitCode::FAILURE
        }
    }
}
