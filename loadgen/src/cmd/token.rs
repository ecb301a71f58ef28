//! `loadgen token`: a development JWT for `api.auth = "jwt"` (`shared::dev_token`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::load_config;

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The customer the token speaks for (its `sub`): the `usuario` of the orders it may post.
    pub usuario: String,
    /// Add the operator role (api.jwt_ops_role): may post and read orders of every customer.
    #[arg(long)]
    pub ops: bool,
    /// How long the token is valid, in seconds.
    #[arg(long, value_name = "N", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
    pub ttl_secs: u64,
    /// Configuration file with the [api] JWT settings (same loader as the daemons; default
    /// ./conf.toml if present, PEDIDOS_CONFIG, PEDIDOS_* variables such as
    /// PEDIDOS_API__JWT_SECRET).
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Runs `loadgen token`.
pub fn execute(args: &TokenArgs) -> ExitCode {
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
    match shared::dev_token::mint(&config.api, &args.usuario, args.ops, ttl) {
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
