//! `cargo run -p fraud`: decides every order on `Pedidos`.

fn main() -> std::process::ExitCode {
    shared::daemon::main(shared::about!(), fraud::run)
}
