//! `cargo run -p monitoring`: records all traffic of the mesh.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config = shared::daemon::init("monitoring");
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit("monitoring", monitoring::run(config, shutdown).await)
}
