//! `cargo run -p api`: the Pedidos HTTP API (Swagger UI at /docs).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = shared::about!();
    let config = shared::daemon::init(&about);
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit(about.name, api::run(config, shutdown).await)
}
