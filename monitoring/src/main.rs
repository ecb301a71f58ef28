//! `cargo run -p monitoring`: records all traffic of the mesh.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let about = shared::about!();
    let config = shared::daemon::init(&about);
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit(about.name, monitoring::run(config, shutdown).await)
}
