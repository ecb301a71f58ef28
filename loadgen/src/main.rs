//! `loadgen`: drives the pedidos API with fake orders and measures end-to-end latency by reading
//! the verdicts back from Kafka; `loadgen raw` measures the broker alone for the same records.
//!
//! ```text
//! loadgen --rate 5 --forever                    # the demo simulator
//! loadgen --duration 20s --concurrency 64       # as fast as possible
//! loadgen --rate 1000 --duration 20s --json     # fixed rate, machine-readable report
//! loadgen raw --records 200000                  # the broker's raw capacity
//! loadgen raw --pipeline-units 20000            # ... and for the mesh's shape, 20,000 orders
//! loadgen token ana.souza --ops                 # a development JWT for api.auth = "jwt"
//! ```

mod auth;
mod driver;
mod orders;
mod progress;
mod raw;
mod stats;
mod tracker;
mod watermarks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use shared::Config;
use tokio_util::sync::CancellationToken;

use crate::driver::{Counters, DriveOptions};
use crate::orders::OrderGen;
use crate::progress::{Goal, Progress};
use crate::stats::{RawReport, RunReport, RunSettings, RunTotals};
use crate::tracker::Tracker;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Posts fake orders to the pedidos API and measures POST -> 202, POST -> Analise and POST -> verdict latency",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the broker alone: produce mesh-shaped records to a fresh topic with the daemons'
    /// producer settings, consume them back, report records/s; then put orders through the
    /// mesh's shape (four topics, two producers, three consumers, no daemons).
    Raw(RawArgs),
    /// Print a development JWT for USUARIO: for local runs and benchmarks, not for production
    /// issuance.
    ///
    /// Signed with the configured api.jwt_secret (HS256), with api.jwt_issuer and
    /// api.jwt_audience when set; --ops adds the operator role. Only the token and a newline are
    /// printed, so that `TOKEN=$(loadgen token ana)` works. Real tokens come from an identity
    /// provider, whose public key the API is given (api.jwt_public_key_file).
    Token(TokenArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Configuration file for the Kafka settings (same loader as the daemons; default
    /// ./conf.toml if present, PEDIDOS_CONFIG, PEDIDOS_* variables).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Seed of the fake data (default: random; the report shows it).
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Orders per second; 0 or omitted: as fast as --concurrency allows.
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
    /// Requests in flight at most (default 64 at full speed, 1024 with --rate).
    #[arg(long, value_name = "C")]
    concurrency: Option<usize>,
    /// Send for this long (e.g. 30s, 2m). The default when neither --count nor --forever is given.
    #[arg(long, value_parser = duration_arg, conflicts_with_all = ["count", "forever"])]
    duration: Option<Duration>,
    /// Send this many orders.
    #[arg(long, value_name = "N", conflicts_with = "forever")]
    count: Option<u64>,
    /// After each 202, GET the order at once, and report that GET's latency (202 -> GET 200)
    /// and any answer but 200 (`get_http_404`: the order was not found right after its 202).
    #[arg(long)]
    get_after_202: bool,
    /// Send until interrupted (Ctrl-C), then report.
    #[arg(long)]
    forever: bool,
    /// After sending, wait this long at most for outstanding verdicts.
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    drain: Duration,
    /// Per-request timeout.
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    timeout: Duration,
    /// Distinct customers; a fifth of them place most orders.
    #[arg(long, default_value_t = 500)]
    users: usize,
    /// JWT sent as `Authorization: Bearer <JWT>` with every order (`loadgen token NAME --ops`
    /// makes one). Default: none, unless the configuration says api.auth = "jwt" with an
    /// api.jwt_secret: then loadgen mints an operator token itself.
    #[arg(
        long,
        value_name = "JWT",
        env = "LOADGEN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// Do not read Kafka: measure POST -> 202 only.
    #[arg(long)]
    no_track: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct RawArgs {
    /// Records to produce (after 100 warm-up records).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    #[arg(long, default_value_t = 3)]
    partitions: i32,
    /// Topic to use (default: a fresh loadgen-raw-<random>, deleted afterwards). The pipeline
    /// phase uses four more, <topic>-pedidos, -notificacoes, -validos and -recusados.
    #[arg(long)]
    topic: Option<String>,
    /// Keep the topics afterwards.
    #[arg(long)]
    keep_topic: bool,
    /// Orders to put through the pipeline phase (after 100 warm-up orders; each is 4 records
    /// produced and 7 consumed). Default: --records / 11, at least 20,000. 0 skips the phase.
    #[arg(long, value_name = "N")]
    pipeline_units: Option<u64>,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// The customer the token speaks for (its `sub`): the `usuario` of the orders it may post.
    usuario: String,
    /// Add the operator role (api.jwt_ops_role): may post and read orders of every customer.
    #[arg(long)]
    ops: bool,
    /// How long the token is valid, in seconds.
    #[arg(long, value_name = "N", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    ttl_secs: u64,
    /// Configuration file with the [api] JWT settings (same loader as the daemons; default
    /// ./conf.toml if present, PEDIDOS_CONFIG, PEDIDOS_* variables such as
    /// PEDIDOS_API__JWT_SECRET).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    stats::parse_duration(text)
}

fn load_config(path: Option<&std::path::Path>) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("loadgen: configuration error: {e}");
        ExitCode::from(2)
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Some(Command::Raw(args)) => raw_main(args).await,
        Some(Command::Token(args)) => token_main(&args),
        None => run_main(cli.run).await,
    }
}

async fn raw_main(args: RawArgs) -> ExitCode {
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

fn token_main(args: &TokenArgs) -> ExitCode {
    if args.usuario.trim().is_empty() {
        eprintln!(
            "loadgen token: USUARIO must not be empty (the API refuses a token without `sub`)"
        );
        return ExitCode::from(2);
    }
    let config = match load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ttl = Duration::from_secs(args.ttl_secs);
    match api::auth::mint_dev_token(&config.api, &args.usuario, args.ops, ttl) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen token: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main(args: RunArgs) -> ExitCode {
    let rate = args.rate.filter(|r| *r > 0.0);
    if args.rate.is_some_and(|r| !r.is_finite() || r < 0.0) {
        eprintln!("loadgen: --rate must be a number of orders per second, 0 for full speed");
        return ExitCode::from(2);
    }
    let concurrency = args
        .concurrency
        .unwrap_or(if rate.is_some() { 1024 } else { 64 });
    if concurrency == 0 {
        eprintln!("loadgen: --concurrency must be at least 1");
        return ExitCode::from(2);
    }
    let duration = match (args.duration, args.count, args.forever) {
        (Some(d), _, _) => Some(d),
        (None, None, false) => Some(Duration::from_secs(30)),
        _ => None,
    };
    let goal = match (args.count, duration) {
        (Some(n), _) => Goal::Count(n),
        (None, Some(d)) => Goal::Duration(d),
        (None, None) => Goal::Forever,
    };
    let config = match load_config(args.common.config.as_deref()) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let seed = args.common.seed.unwrap_or_else(rand::random);
    let credentials = match auth::credentials(args.token.as_deref(), &config.api) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    if let auth::Credentials::SelfMinted(_) = credentials {
        eprintln!(
            "loadgen: api.auth = \"jwt\" in the configuration: sending a self-minted operator token \
             (sub {:?}, role {:?}, valid {} h; --token to send another)",
            auth::SELF_MINTED_SUBJECT,
            config.api.jwt_ops_role,
            auth::SELF_MINTED_TTL.as_secs() / 3600
        );
    }

    let tracker = if args.no_track {
        None
    } else {
        match Tracker::start(&config).await {
            Ok(t) => Some(t),
            Err(e) => {
                eprintln!("loadgen: cannot read verdicts from Kafka: {e} (use --no-track to measure HTTP only)");
                return ExitCode::FAILURE;
            }
        }
    };

    let stop = CancellationToken::new();
    tokio::spawn(stop_on_ctrl_c(stop.clone()));
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(
        !args.quiet,
        goal,
        counters.clone(),
        tracker.as_ref().map(Tracker::verdicts),
    );
    let options = DriveOptions {
        url: args.url.clone(),
        rate,
        concurrency,
        duration,
        count: args.count,
        timeout: args.timeout,
        authorization: credentials.header().cloned(),
        get_after_202: args.get_after_202,
    };
    let driven = match driver::drive(
        &options,
        OrderGen::new(seed, args.users),
        tracker.as_ref().map(Tracker::registrar),
        counters.clone(),
        stop.clone(),
    )
    .await
    {
        Ok(d) => d,
        Err(e) => {
            progress.finish().await;
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };

    let accepted = counters.accepted.load(Ordering::Relaxed);
    let tracked = match tracker {
        Some(tracker) => {
            progress.set_phase("waiting for verdicts");
            tokio::select! {
                _ = tracker.wait_for_verdicts(|| accepted, args.drain) => {}
                // A second Ctrl-C (the first one stopped the sending) cuts the wait short.
                _ = tokio::signal::ctrl_c() => {}
            }
            Some(tracker.finish().await)
        }
        None => None,
    };
    progress.finish().await;

    let mut totals = RunTotals {
        sent: counters.sent.load(Ordering::Relaxed),
        accepted,
        errors: driven.errors,
        send_phase: driven.send_phase,
        post_202: Some(driven.post_202.summary()),
        get_after_202: args.get_after_202.then(|| driven.get_after_202.summary()),
        max_schedule_lag: driven.max_schedule_lag,
        ..RunTotals::default()
    };
    if let Some(t) = &tracked {
        totals.post_analise = Some(t.post_analise.summary());
        totals.post_verdict = Some(t.post_verdict.summary());
        totals.analise_seen = t.analise_seen;
        totals.verdicts = t.verdicts;
        totals.aprovado = t.aprovado;
        totals.recusado = t.recusado;
        totals.foreign_events = t.foreign_events;
        totals.analise_after_verdict = t.analise_after_verdict;
        totals.verdict_phase = t.last_verdict_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(driven.started)
        });
    }
    let report = RunReport::new(
        RunSettings {
            url: args.url,
            target_rate: rate,
            concurrency,
            seed,
            users: args.users,
            tracked: tracked.is_some(),
            auth: credentials.label(),
        },
        &totals,
    );
    print_report(args.common.json, &report, RunReport::to_text);
    let refused = totals.errors.refused_credentials();
    if refused > 0 {
        eprintln!(
            "loadgen: the API refused {refused} requests with 401/403, sent with {}: the token is \
             missing, expired, not valid for this API, or not an operator's",
            credentials.describe()
        );
    }
    if totals.sent > 0 && totals.accepted == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// The first Ctrl-C (or SIGTERM) stops sending; the run then drains and reports.
async fn stop_on_ctrl_c(stop: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
    eprintln!("loadgen: stopping (Ctrl-C again to skip waiting for verdicts)");
    stop.cancel();
}

/// Prints a report as one JSON object (`--json`) or as text.
fn print_report<R: serde::Serialize>(json: bool, report: &R, to_text: impl FnOnce(&R) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("report serializes")
        );
    } else {
        print!("{}", to_text(report));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn token_args(argv: &[&str]) -> Result<TokenArgs, clap::Error> {
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Some(Command::Token(args)) => Ok(args),
            other => panic!("not the token command: {other:?}"),
        }
    }

    #[test]
    fn token_defaults_to_a_customer_token_for_an_hour() {
        let args = token_args(&["loadgen", "token", "ana.souza"]).unwrap();
        assert_eq!(args.usuario, "ana.souza");
        assert!(!args.ops);
        assert_eq!(args.ttl_secs, 3600);
        assert!(args.config.is_none());
    }

    #[test]
    fn token_takes_ops_ttl_and_config() {
        let args = token_args(&[
            "loadgen",
            "token",
            "bench",
            "--ops",
            "--ttl-secs",
            "60",
            "--config",
            "x.toml",
        ])
        .unwrap();
        assert!(args.ops);
        assert_eq!(args.ttl_secs, 60);
        assert_eq!(args.config.as_deref(), Some(std::path::Path::new("x.toml")));
    }

    #[test]
    fn token_needs_a_usuario_and_a_positive_ttl() {
        assert!(token_args(&["loadgen", "token"]).is_err());
        assert!(token_args(&["loadgen", "token", "ana", "--ttl-secs", "0"]).is_err());
        assert!(token_args(&["loadgen", "token", "ana", "--ttl-secs", "-5"]).is_err());
    }

    #[test]
    fn token_help_says_it_is_not_for_production() {
        let mut cli = Cli::command();
        let token = cli.find_subcommand_mut("token").unwrap();
        // `-h` (the first paragraph) and `--help` both.
        for help in [token.render_help(), token.render_long_help()] {
            let help = help.to_string();
            assert!(help.contains("not for production"), "{help}");
            assert!(help.contains("benchmarks"), "{help}");
        }
    }

    #[test]
    fn runs_take_a_token() {
        let cli =
            Cli::try_parse_from(["loadgen", "--token", "aaa.bbb.ccc", "--count", "1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.token.as_deref(), Some("aaa.bbb.ccc"));
    }
}
