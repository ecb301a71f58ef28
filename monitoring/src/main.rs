//! `cargo run -p monitoring`: records all traffic of the mesh.

fn main() -> std::process::ExitCode {
    shared::daemon::main(shared::about!(), monitoring::run)
}
