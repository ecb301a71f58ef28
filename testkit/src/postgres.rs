//! A real PostgreSQL server for tests: a fresh cluster (`initdb`) in a temporary directory,
//! serving on a free loopback port, one per test binary ([`Postgres::shared`]); each test takes
//! a database of its own ([`Postgres::database`]).
//!
//! The binaries come from Debian's `postgresql` package (`/usr/lib/postgresql/<version>/bin`),
//! or `PEDIDOS_PG_BIN`, or `PATH`. PostgreSQL refuses to run as root: as root (CI) the server runs
//! as the `postgres` user the package creates, under a watchdog that stops it when the test
//! process is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::broker::free_port;
use crate::process;

/// The account the server runs as when the tests run as root.
const SERVER_USER: &str = "postgres";
/// The superuser `initdb` creates, trusted on loopback: these are throw-away clusters.
const SUPERUSER: &str = "pedidos";

pub struct Postgres {
    _dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    server: Child,
}

impl Postgres {
    /// The server this test binary's tests share, started by the first caller.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// A new cluster, started and accepting connections. Panics saying what is missing.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("pedidos-pg-")
            .tempdir()
            .expect("a temporary directory");
        let data = dir.path().join("data");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown").args([SERVER_USER, &dir.path().display().to_string()]));
        }
        run(server_command(&bin, "initdb", as_root).args([
            "-D",
            &data.display().to_string(),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]));
        let port = free_port();
        let log = dir.path().join("server.log");
        let server_args = [
            "-D".to_string(),
            data.display().to_string(),
            "-p".to_string(),
            port.to_string(),
            "-c".to_string(),
            "listen_addresses=127.0.0.1".to_string(),
            "-c".to_string(),
            "unix_socket_directories=".to_string(),
        ];
        // A watchdog shell runs the server: it stops the server and removes the cluster once
        // this test process is gone (a shared server's destructor never runs; as root, the
        // change of user also clears the parent-death signal other children get).
        let script = format!(
            "{postgres} \"$@\" >{log} 2>&1 & pg=$!; \
             while [ -d /proc/{parent} ] && kill -0 $pg 2>/dev/null; do sleep 1; done; \
             kill -INT $pg 2>/dev/null; wait $pg; rm -rf {dir}",
            postgres = bin.join("postgres").display(),
            log = log.display(),
            parent = std::process::id(),
            dir = dir.path().display(),
        );
        let mut server = if as_root {
            let mut command = as_server_user();
            command.arg("sh");
            command
        } else {
            Command::new("sh")
        };
        server.args(["-c", &script, "postgres"]);
        server.args(&server_args);
        let server = process::spawn(server).expect("cannot start postgres");
        let postgres = Postgres {
            _dir: dir,
            data,
            bin,
            port,
            server,
        };
        postgres.wait_ready(Duration::from_secs(60), &log);
        postgres
    }

    fn wait_ready(&self, within: Duration, log: &Path) {
        let started = Instant::now();
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if started.elapsed() > within {
                panic!(
                    "postgres did not accept connections within {within:?}; its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new, empty database of the caller's own, as a `postgres://` URL.
    pub fn database(&self) -> String {
        static DATABASES: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "t{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::Relaxed)
        );
        run(self.client("createdb").arg(&name));
        self.url(&name)
    }

    /// Runs `sql` as the superuser, connected to the maintenance database `postgres` (so it
    /// may change a test's own database), and panics with psql's error if it fails.
    pub fn admin_sql(&self, sql: &str) {
        run(self
            .client("psql")
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql]));
    }

    /// One of PostgreSQL's client programs, pointed at this server as the superuser.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
        ]);
        command
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = server_command(&self.bin, "pg_ctl", is_root())
            .args([
                "stop",
                "-m",
                "immediate",
                "-D",
                &self.data.display().to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        process::kill(&mut self.server);
    }
}

/// Where the server's binaries are.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PEDIDOS_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    match on_path.as_deref().and_then(Path::parent) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => panic!(
            "PostgreSQL's server binaries (initdb, postgres) are not installed: install Debian's \
             `postgresql` package (.ci/run does), or set PEDIDOS_PG_BIN to their directory"
        ),
    }
}

fn server_command(bin: &Path, program: &str, as_root: bool) -> Command {
    if as_root {
        let mut command = as_server_user();
        command.arg(bin.join(program));
        command
    } else {
        Command::new(bin.join(program))
    }
}

/// `setpriv` switches user and execs, with no session or extra process in between.
fn as_server_user() -> Command {
    let mut command = Command::new("setpriv");
    command.args([
        &format!("--reuid={SERVER_USER}"),
        &format!("--regid={SERVER_USER}"),
        "--init-groups",
        "--",
    ]);
    command
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn is_root() -> bool {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}
