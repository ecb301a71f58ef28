//! `cargo run -p api`: the Pedidos HTTP API (Swagger UI at /docs).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = shared::daemon::init("api");
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit("api", api::run(config, shutdown).await)
}
