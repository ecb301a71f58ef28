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
//!
//! One command per file in `cmd/`, hooked in by one arm of `main`'s match.

mod auth;
mod cmd;
mod driver;
mod orders;
mod progress;
mod raw;
mod stats;
mod tracker;
mod watermarks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd::raw::RawArgs;
use crate::cmd::run::RunArgs;
use crate::cmd::token::TokenArgs;

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
        Some(Command::Raw(args)) => cmd::raw::execute(args).await,
        Some(Command::Token(args)) => cmd::token::execute(&args),
        None => cmd::run::execute(cli.run).await,
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
