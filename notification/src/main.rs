//! `cargo run -p notification`: tells customers about their orders.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = shared::daemon::init("notification");
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit("notification", notification::run(config, shutdown).await)
}
