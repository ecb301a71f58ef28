//! `cargo run -p notification`: tells customers about their orders.

fn main() -> std::process::ExitCode {
    shared::daemon::main(shared::about!(), notification::run)
}
