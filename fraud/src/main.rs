//! `cargo run -p fraud`: decides every order on `Pedidos`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = shared::about!();
    let config = shared::daemon::init(&about);
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit(about.name, fraud::run(config, shutdown).await)
}
