//! `cargo run -p fraud`: decides every order on `Pedidos`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = shared::daemon::init("fraud");
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit("fraud", fraud::run(config, shutdown).await)
}
