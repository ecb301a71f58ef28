//! `cargo run -p api`: the Pedidos HTTP API (Swagger UI at /docs).

fn main() -> std::process::ExitCode {
    shared::daemon::main(shared::about!(), api::run)
}
