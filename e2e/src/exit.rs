//! A daemon run that must end by itself, as a start-up failure does: its exit code, how long it
//! ran and what it printed, for the tests to assert on.

use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::daemon_command;

/// How a daemon run that was expected to end at start-up ended.
pub struct Exit {
    pub code: Option<i32>,
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

impl Exit {
    pub fn all_output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Asserts every `needle` is in stderr, naming the one missing.
    pub fn assert_stderr_names(&self, needles: &[&str]) {
        for needle in needles {
            assert!(
                self.stderr.contains(needle),
                "stderr does not name {needle:?}\n{self}"
            );
        }
    }

    /// Asserts the exit `code`, after `at_least` and within `at_most`.
    pub fn assert_failed_within(&self, code: i32, at_least: Duration, at_most: Duration) {
        assert_eq!(self.code, Some(code), "exit code\n{self}");
        assert!(
            self.elapsed >= at_least && self.elapsed <= at_most,
            "expected to exit after {at_least:?}..{at_most:?}\n{self}"
        );
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit code {:?} after {:?}\n--- stderr ---\n{}\n--- stdout ---\n{}",
            self.code, self.elapsed, self.stderr, self.stdout
        )
    }
}

/// [`run_in`] an empty directory of its own, without arguments.
pub fn run_until_exit<K, V>(binary: &str, env: &[(K, V)], bound: Duration) -> Exit
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let workdir = tempfile::Builder::new()
        .prefix("pedidos-exit-")
        .tempdir()
        .expect("a working directory for the daemon");
    run_in(workdir.path(), binary, &[], env, bound)
}

/// Runs daemon `binary` with `args` in `dir`, with `RUST_LOG=info` and exactly the `PEDIDOS_*`
/// variables in `env` (they may override `RUST_LOG`), and waits for it to exit by itself; kills
/// it and fails the test if it is still running after `bound`.
pub fn run_in<K, V>(
    dir: &Path,
    binary: &str,
    args: &[&str],
    env: &[(K, V)],
    bound: Duration,
) -> Exit
where
    K: AsRef<OsStr>,
    V: AsRef<OsStr>,
{
    let mut command = daemon_command(binary);
    command
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    // Drained while it runs: a daemon that fills a pipe would block and never exit.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait on the daemon") {
            break Some(status);
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let exit = Exit {
        code: status.and_then(|s| s.code()),
        elapsed,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    };
    assert!(
        status.is_some(),
        "{binary} was still running after {bound:?} (killed): start-up must fail, not retry \
         forever\n{exit}"
    );
    eprintln!(
        "{binary}: exit code {:?} after {elapsed:?}; stderr: {}",
        exit.code,
        exit.stderr.trim()
    );
    exit
}
