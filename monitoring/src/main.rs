//! `cargo run -p monitoring`: records all traffic of the mesh.

use std::process::ExitCode;

// Faster than glibc malloc for the many small, short-lived allocations per record.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = shared::daemon::init("monitoring");
    let shutdown = shared::shutdown::on_signal();
    shared::daemon::exit("monitoring", monitoring::run(config, shutdown).await)
}
