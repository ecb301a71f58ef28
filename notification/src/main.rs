//! `cargo run -p notification`: tells customers about their orders.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = shared::about!();
    let config = shared::daemon::init(&about);
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit(about.name, notification::run(config, shutdown).await)
}
