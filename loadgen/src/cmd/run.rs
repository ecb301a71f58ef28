//! `loadgen` without a subcommand: fake orders over HTTP at a rate or flat out, each one's
//! `Analise` and verdict read back from Kafka, latencies reported.

use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::{duration_arg, load_config, print_report, Common};
use crate::auth;
use crate::driver::{self, Counters, DriveOptions};
use crate::orders::OrderGen;
use crate::progress::{Goal, Progress};
use crate::stats::{RunReport, RunSettings, RunTotals};
use crate::tracker::Tracker;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Base URL of the API.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Orders per second; 0 or omitted: as fast as --concurrency allows.
    #[arg(long, value_name = "N")]
    pub rate: Option<f64>,
    /// Requests in flight at most (default 64 at full speed, 1024 with --rate).
    #[arg(long, value_name = "C")]
    pub concurrency: Option<usize>,
    /// Send for this long (e.g. 30s, 2m). The default when neither --count nor --forever is given.
    #[arg(long, value_parser = duration_arg, conflicts_with_all = ["count", "forever"])]
    pub duration: Option<Duration>,
    /// Send this many orders.
    #[arg(long, value_name = "N", conflicts_with = "forever")]
    pub count: Option<u64>,
    /// After each 202, GET the order at once, and report that GET's latency (202 -> GET 200)
    /// and any answer but 200 (`get_http_404`: the order was not found right after its 202).
    #[arg(long)]
    get_after_202: bool,
    /// Send until interrupted (Ctrl-C), then report.
    #[arg(long)]
    pub forever: bool,
    /// After sending, wait this long at most for outstanding verdicts.
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    pub drain: Duration,
    /// Per-request timeout.
    #[arg(long, value_parser = duration_arg, default_value = "10s")]
    pub timeout: Duration,
    /// Distinct customers; a fifth of them place most orders.
    #[arg(long, default_value_t = 500)]
    pub users: usize,
    /// JWT sent as `Authorization: Bearer <JWT>` with every order (`loadgen token NAME --ops`
    /// makes one). Default: none, unless the configuration says api.auth = "jwt" with an
    /// api.jwt_secret: then loadgen mints an operator token itself.
    #[arg(
        long,
        value_name = "JWT",
        env = "LOADGEN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Do not read Kafka: measure POST -> 202 only.
    #[arg(long)]
    pub no_track: bool,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub common: Common,
}

/// Runs the load: sends, waits for verdicts, reports.
pub async fn execute(args: RunArgs) -> ExitCode {
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
