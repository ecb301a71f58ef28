//! Child processes that never outlive the test process, and the signals tests send them.

use std::io;
use std::process::{Child, Command};
use std::sync::{mpsc, Mutex, OnceLock};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from one long-lived thread. On Linux the child is told to get SIGKILL when
/// its parent *thread* exits (`PR_SET_PDEATHSIG`, kept across `exec`); spawning from a thread
/// that lives as long as the test process makes that "when the test process dies", whichever
/// test thread asked. So an aborted `cargo test` leaves no JVM behind, and neither does a broker
/// held in a `static`, whose destructor never runs.
pub(crate) fn spawn(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    die_with_parent(&mut command);
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("cannot start the testkit spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((command, reply_tx))
        .expect("testkit spawner thread is gone");
    reply_rx.recv().expect("testkit spawner thread is gone")
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::ffi::{c_int, c_ulong};
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: c_int, ...) -> c_int;
    }
    const PR_SET_PDEATHSIG: c_int = 1;
    const SIGKILL: c_ulong = 9;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is a plain system call, async-signal-safe, touching no
    // memory of the parent; it is what pre_exec is meant for.
    unsafe {
        command.pre_exec(|| {
            if prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// SIGKILL and reap: the process is gone, its ports free, when this returns.
pub(crate) fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGTERM; false if it could not be sent.
#[cfg(unix)]
pub(crate) fn terminate(child: &Child) -> bool {
    signal(child, 15)
}

#[cfg(unix)]
fn signal(child: &Child, sig: std::ffi::c_int) -> bool {
    use std::ffi::c_int;
    extern "C" {
        fn kill(pid: c_int, sig: c_int) -> c_int;
    }
    let Ok(pid) = c_int::try_from(child.id()) else {
        return false;
    };
    // SAFETY: `child` is not reaped yet (we own it and have not waited), so `pid` is still our
    // child and cannot have been reused by another process.
    unsafe { kill(pid, sig) == 0 }
}

#[cfg(not(unix))]
pub(crate) fn terminate(_child: &Child) -> bool {
    false
}

/// Whether a process with this pid exists (for sweeping what a dead test run left behind).
pub(crate) fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Where the project's scripts live, whatever the test's working directory.
pub(crate) fn scripts_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("scripts")
}

/// Runs `scripts/<script> install` once per test process through `done` (a no-op when what it
/// installs is cached); panics saying `what` is not available, with the script's own words.
pub(crate) fn install_once(done: &OnceLock<Result<(), String>>, script: &str, what: &str) {
    let result = done.get_or_init(|| {
        let output = Command::new("bash")
            .arg(scripts_dir().join(script))
            .arg("install")
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("cannot run bash scripts/{script} install: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/{script} install failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{what} is not available for the tests: {message}");
    }
}
