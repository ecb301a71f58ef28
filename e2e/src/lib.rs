//! Support for the end-to-end tests in `tests/`: the real daemon binaries as child processes,
//! pointed at a test broker, with JSON logs the tests read like an operator would.
//!
//! * [`DAEMONS`]: the mesh's daemons, `scripts/lib/daemons.txt` embedded (the scripts' list too).
//! * [`Daemon`]: one daemon process and its log; [`eventually`] and [`message`] to read it.
//! * [`mesh`]: every daemon of the list on a broker, in a namespace of their own, over PLAINTEXT
//!   or SASL_SSL; each reached by its name.
//! * [`orders`]: the orders the tests post.
//! * [`ledger`]: a stream of orders under faults, and the check of what became of them.
//! * [`notifications`]: what notification told customers, and held back, read from its log.
//! * [`exit`]: a daemon run that must end by itself (a start-up failure).
//! * [`secure`]: the SASL_SSL broker of the security tests.
//! * [`audit`]: monitoring's audit files read back, a tmpfs to fill, SIGHUP.
//! * [`dead_letters`]: a dead-letter topic read back, one consumer group's records.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One daemon of the mesh, as `scripts/lib/daemons.txt` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The crate and binary.
    pub name: &'static str,
    /// The configuration key of its HTTP port (`/health`, `/ready`, `/metrics`).
    pub admin_key: &'static str,
    /// That key's default.
    pub admin_address: &'static str,
}

/// The mesh's daemons, in start order (the API first: it creates the topics):
/// `scripts/lib/daemons.txt`, the one list, which the scripts read too.
pub static LISTED: LazyLock<Vec<Listed>> =
    LazyLock::new(|| parse_list(include_str!("../../scripts/lib/daemons.txt")));

/// The names of [`LISTED`], in start order.
pub static DAEMONS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| LISTED.iter().map(|d| d.name).collect());

fn parse_list(text: &'static str) -> Vec<Listed> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [name, admin_key, admin_address, _colour] => Listed {
                    name,
                    admin_key,
                    admin_address,
                },
                _ => {
                    panic!("scripts/lib/daemons.txt: not `name admin-key address colour`: {line:?}")
                }
            },
        )
        .collect()
}

/// The variable that sets `daemon`'s admin address (`PEDIDOS_FRAUD__ADMIN_LISTEN`), for the
/// daemons with an admin port of their own (an `admin_listen` key): all but the API, which
/// serves `/ready` and `/metrics` on `api.listen`.
pub fn admin_listen_var(daemon: &str) -> Option<String> {
    let listed = LISTED.iter().find(|d| d.name == daemon)?;
    let (section, field) = listed.admin_key.split_once('.')?;
    (field == "admin_listen").then(|| {
        format!(
            "PEDIDOS_{}__{}",
            section.to_ascii_uppercase(),
            field.to_ascii_uppercase()
        )
    })
}

/// The daemon binaries, built once per test run with the same cargo and profile as the tests,
/// so a stale binary can never be what a test exercises.
fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .args(["build", "--bins"])
            .current_dir(workspace_root());
        for daemon in DAEMONS.iter() {
            build.args(["-p", daemon]);
        }
        if !cfg!(debug_assertions) {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("cannot run cargo to build the daemons");
        assert!(status.success(), "building the daemon binaries failed");
        // tests run from <target>/<profile>/deps/<test-binary>
        let exe = std::env::current_exe().expect("test binary path");
        exe.parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .to_path_buf()
    });
    let path = dir.join(name);
    assert!(path.is_file(), "no daemon binary at {}", path.display());
    path
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Daemon `name` as a command that inherits no `PEDIDOS_*` variable from the test's
/// environment: only the settings a test gives count. The admin endpoints take a free port
/// each (tests run many daemons at once; [`Daemon::admin_address`] says which), unless a test
/// sets them.
pub(crate) fn daemon_command(name: &str) -> Command {
    let mut command = Command::new(binary(name));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PEDIDOS_") {
            command.env_remove(key);
        }
    }
    for var in DAEMONS.iter().copied().filter_map(admin_listen_var) {
        command.env(var, "127.0.0.1:0");
    }
    command
}

/// One daemon process. Killed when dropped.
pub struct Daemon {
    pub name: String,
    binary: String,
    env: Vec<(String, String)>,
    workdir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `binary` (`api`, `fraud`, ...) with `PEDIDOS_*` settings from `env` only (inherited
    /// `PEDIDOS_*` variables are removed), JSON logs appended to `<workdir>/<name>.log`.
    pub fn spawn(name: &str, binary_name: &str, workdir: &Path, env: &[(String, String)]) -> Self {
        let mut daemon = Self {
            name: name.to_string(),
            binary: binary_name.to_string(),
            env: env.to_vec(),
            workdir: workdir.to_path_buf(),
            log: workdir.join(format!("{name}.log")),
            child: None,
        };
        daemon.start();
        daemon
    }

    /// Starts the process again after [`Daemon::kill`] or [`Daemon::terminate`].
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("daemon log file");
        let mut command = daemon_command(&self.binary);
        command
            .current_dir(&self.workdir)
            .env("RUST_LOG", "info")
            .env("PEDIDOS_TELEMETRY__FORMAT", "json")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        self.child = Some(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name)),
        );
    }

    /// SIGKILL: no chance to flush or commit anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the exit code (a graceful stop must exit 0).
    pub fn terminate(&mut self, within: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("wait on daemon") {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not stop within {within:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still alive; an exited process is reaped.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The process's resident memory (`VmRSS`), in bytes, while it runs.
    pub fn rss_bytes(&self) -> Option<u64> {
        self.memory("VmRSS")
    }

    /// One memory figure of `/proc/<pid>/status` (`VmRSS`, `RssAnon`, `RssFile`, `RssShmem`),
    /// in bytes, while the process runs.
    pub fn memory(&self, figure: &str) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(figure)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kib * 1024)
    }

    /// The whole log as text (for assertion messages and greps).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The JSON log lines (non-JSON lines, e.g. a startup error on stderr, are skipped).
    pub fn log_events(&self) -> Vec<Value> {
        let Ok(file) = File::open(&self.log) else {
            return Vec::new();
        };
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect()
    }

    /// Where its admin endpoint (`/metrics`, `/health`, `/ready`) listens, from its latest
    /// start's log line.
    pub fn admin_address(&self) -> Option<String> {
        self.log_events()
            .iter()
            .rev()
            .find(|e| message(e).starts_with("admin endpoint"))
            .and_then(|e| e["address"].as_str().map(str::to_string))
    }

    /// Waits until a log line satisfies `pred`, failing with the log if it never does.
    pub fn wait_for_log(&self, what: &str, within: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log_events().iter().any(&pred) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{}: no log line for {what} within {within:?}. Log:\n{}",
            self.name,
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

/// The `message` of a JSON log line.
pub fn message(event: &Value) -> &str {
    event["message"].as_str().unwrap_or("")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `within`.
pub async fn eventually<T>(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `GET {url}/ready` until it answers `want`, within [`mesh::WAIT`]; the JSON body it answered
/// with. Panics naming `what` and the last answer otherwise.
pub async fn ready_becomes(what: &str, url: &str, want: u16) -> Value {
    let deadline = Instant::now() + mesh::WAIT;
    loop {
        let response = reqwest::get(format!("{url}/ready"))
            .await
            .unwrap_or_else(|e| panic!("{what}: GET {url}/ready: {e}"));
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        if status == want {
            return serde_json::from_str(&body).unwrap_or_else(|_| panic!("{what}: {body}"));
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /ready still {status} after {:?}: {body}",
            mesh::WAIT
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

pub mod audit;
pub mod dead_letters;
pub mod exit;
pub mod ledger;
pub mod mesh;
pub mod notifications;
pub mod orders;
pub mod otlp;
pub mod secure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_of_daemons_starts_with_the_api_and_names_each_once() {
        assert_eq!(DAEMONS.first(), Some(&"api"), "the API creates the topics");
        let unique: std::collections::HashSet<_> = DAEMONS.iter().collect();
        assert_eq!(unique.len(), DAEMONS.len(), "{:?}", *DAEMONS);
        assert_eq!(
            admin_listen_var("fraud").as_deref(),
            Some("PEDIDOS_FRAUD__ADMIN_LISTEN")
        );
        assert_eq!(admin_listen_var("api"), None);
    }

    /// The list's keys and addresses are the configuration's: `conf.example.toml` documents
    /// each key with its default (and `shared`'s tests hold it to the defaults).
    #[test]
    fn each_listed_daemon_is_a_crate_whose_admin_key_and_default_the_example_configuration_has() {
        let root = workspace_root();
        let example: toml::Table = std::fs::read_to_string(root.join("conf.example.toml"))
            .expect("conf.example.toml")
            .parse()
            .expect("conf.example.toml is TOML");
        for daemon in LISTED.iter() {
            assert!(
                root.join(daemon.name).join("Cargo.toml").is_file(),
                "{}: no crate of that name",
                daemon.name
            );
            let (section, field) = daemon.admin_key.split_once('.').expect("section.key");
            assert_eq!(
                example
                    .get(section)
                    .and_then(|s| s.get(field))
                    .and_then(|v| v.as_str()),
                Some(daemon.admin_address),
                "{}: conf.example.toml's {}",
                daemon.name,
                daemon.admin_key
            );
        }
    }
}
