//! A noida-db Kafka broker process owned by one test.

use std::fs::OpenOptions;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use shared::config::KafkaConfig;

/// Environment variable naming the noida-db binary to run (takes precedence over discovery).
pub const NOIDA_DB_ENV: &str = "PEDIDOS_NOIDA_DB";

/// How long a start or restart may take before the test is failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts with a fresh port when the chosen one was taken between picking and binding it.
const START_ATTEMPTS: usize = 5;
const LOG_FILE: &str = "noida-db.log";
const DATA_DIR: &str = "data";
const AUDIT_FILE: &str = "audit.jsonl";
/// The shared manual broker's port: never handed to a test.
const RESERVED_PORT: u16 = 9092;

/// A real noida-db broker (Kafka protocol only) listening on `127.0.0.1:<free port>`, with its
/// data in a temporary directory that lives as long as this value.
///
/// The process is killed when the `Broker` is dropped (and, on Linux, also when the test
/// process dies, so an aborted `cargo test` leaves no broker behind). Its stdout/stderr go to
/// [`Broker::log_path`], which is included in every panic message about it.
///
/// All methods block; they are short (a start takes ~20 ms) and may be called from async tests.
pub struct Broker {
    binary: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
    child: Mutex<Option<Child>>,
}

impl Broker {
    /// Starts a broker on a free port with an empty data directory and waits (up to 10 s) until
    /// it accepts TCP connections.
    ///
    /// # Panics
    /// If no noida-db binary can be found (the message says how to install it), or the broker
    /// does not come up (the message contains its log).
    pub fn start() -> Broker {
        let binary = noida_db_binary();
        let dir = tempfile::Builder::new()
            .prefix("pedidos-noida-")
            .tempdir()
            .expect("cannot create a temporary directory for noida-db");
        std::fs::create_dir_all(dir.path().join(DATA_DIR))
            .expect("cannot create the noida-db data directory");
        let mut broker = Broker {
            binary,
            port: 0,
            dir,
            child: Mutex::new(None),
        };
        for _ in 0..START_ATTEMPTS {
            broker.port = free_port();
            match broker.launch(Instant::now() + START_TIMEOUT) {
                Ok(child) => {
                    *broker.child.get_mut().unwrap() = Some(child);
                    return broker;
                }
                // Most likely someone else bound the port first: try another one.
                Err(Launch::Exited(_)) => continue,
                Err(Launch::TimedOut) => broker.fail("did not accept connections within 10 s"),
            }
        }
        broker.fail(&format!("exited at start-up {START_ATTEMPTS} times"))
    }

    /// `"127.0.0.1:<port>"`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Kafka port. It stays the same across [`Broker::stop`] and [`Broker::restart`].
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding the data directory, the log and the audit file; deleted
    /// when the `Broker` is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's `--data-dir` (kept across stop and restart).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join(DATA_DIR)
    }

    /// The file receiving the broker's stdout and stderr (appended to on every restart).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    /// The broker's output so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Kills the broker with SIGKILL (no clean shutdown, like a crash) and waits for it to exit,
    /// so the port is free when this returns. The data directory is kept. No-op if stopped.
    ///
    /// noida-db keeps its state in memory and writes a snapshot of it (`kafka.json` in the data
    /// directory) about once a second, so a crash loses what changed in the last ~1 s — records
    /// already acknowledged with `acks=all`, topic creations and committed offsets included.
    /// Sleep ~1.5 s before `stop` when the test needs them after [`Broker::restart`], or use
    /// [`Broker::stop_gracefully`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.get_mut().unwrap().take() {
            kill(&mut child);
        }
    }

    /// Stops the broker with SIGTERM, which makes noida-db write its final snapshot, so
    /// everything acknowledged survives a [`Broker::restart`]. Falls back to SIGKILL after 10 s.
    /// No-op if stopped.
    pub fn stop_gracefully(&mut self) {
        let Some(mut child) = self.child.get_mut().unwrap().take() else {
            return;
        };
        if terminate(&child) {
            let deadline = Instant::now() + START_TIMEOUT;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        kill(&mut child);
    }

    /// Starts the broker again on the same port with the same data directory; the records
    /// persisted before [`Broker::stop`] are still there. Kills it first if it is running.
    /// Retries for up to 10 s while the port cannot be bound yet.
    ///
    /// # Panics
    /// If the broker is not accepting connections after 10 s (the message contains its log).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.launch(deadline) {
                Ok(child) => {
                    *self.child.get_mut().unwrap() = Some(child);
                    return;
                }
                Err(Launch::Exited(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(Launch::Exited(status)) => self.fail(&format!(
                    "could not be restarted on port {} within 10 s (last exit: {status})",
                    self.port
                )),
                Err(Launch::TimedOut) => self.fail("did not accept connections within 10 s"),
            }
        }
    }

    /// Whether the broker process is alive (it may have been stopped, or have died).
    pub fn is_running(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(None)) => true,
            Some(Ok(Some(_))) | Some(Err(_)) | None => false,
        }
    }

    /// Default client settings pointing at this broker, with a 10 s start-up timeout.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap(),
            startup_timeout_secs: 10,
            ..KafkaConfig::default()
        }
    }

    /// A full default configuration for running daemons against this broker:
    /// [`Broker::kafka_config`], the API on `127.0.0.1:0` (any free port), the monitoring audit
    /// file `audit.jsonl` in [`Broker::dir`], and fraud seed 7.
    pub fn config(&self) -> shared::Config {
        let mut config = shared::Config {
            kafka: self.kafka_config(),
            ..shared::Config::default()
        };
        config.api.listen = "127.0.0.1:0".into();
        config.monitoring.audit_file = self.dir.path().join(AUDIT_FILE);
        config.fraud.seed = 7;
        config
    }

    /// Spawns noida-db on `self.port` and waits until it accepts connections.
    fn launch(&self, deadline: Instant) -> Result<Child, Launch> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the noida-db log file");
        let mut command = Command::new(&self.binary);
        command
            .arg("start")
            .args(["--only", "kafka", "--host", "127.0.0.1"])
            .arg("--kafka-port")
            .arg(self.port.to_string())
            .arg("--data-dir")
            .arg(self.data_dir())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .expect("cannot duplicate the log file handle"),
            )
            .stderr(log);
        let mut child = spawn(command).unwrap_or_else(|e| {
            panic!(
                "cannot run noida-db at {}: {e}\n{}",
                self.binary.display(),
                INSTALL_HINT
            )
        });
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Launch::Exited(status));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Make sure it is our process that answered, not one that took the port.
                return match child.try_wait() {
                    Ok(Some(status)) => Err(Launch::Exited(status)),
                    _ => Ok(child),
                };
            }
            if Instant::now() >= deadline {
                kill(&mut child);
                return Err(Launch::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "noida-db ({}) on 127.0.0.1:{} {what}; its log ({}):\n{}",
            self.binary.display(),
            self.port,
            self.log_path().display(),
            self.log()
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = child.take() {
            kill(&mut child);
        }
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("bootstrap", &self.bootstrap())
            .field("dir", &self.dir.path())
            .field("running", &self.is_running())
            .finish()
    }
}

enum Launch {
    Exited(ExitStatus),
    TimedOut,
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Sends SIGTERM; false if it could not be sent.
#[cfg(unix)]
fn terminate(child: &Child) -> bool {
    use std::ffi::c_int;
    extern "C" {
        fn kill(pid: c_int, sig: c_int) -> c_int;
    }
    const SIGTERM: c_int = 15;
    let Ok(pid) = c_int::try_from(child.id()) else {
        return false;
    };
    // SAFETY: `child` is not reaped yet (we own it and have not waited), so `pid` is still our
    // child and cannot have been reused by another process.
    unsafe { kill(pid, SIGTERM) == 0 }
}

#[cfg(not(unix))]
fn terminate(_child: &Child) -> bool {
    false
}

/// A TCP port on 127.0.0.1 that was free when this returned (bind port 0, read it, close).
/// Never 9092, which belongs to the broker for manual use.
pub fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind a TCP port on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("bound listener has no address")
            .port();
        if port != RESERVED_PORT {
            return port;
        }
    }
}

const INSTALL_HINT: &str = "install the test broker with `pip install noida-db==0.2.3` \
     (or run scripts/install-broker.sh), or point PEDIDOS_NOIDA_DB at a noida-db binary";

/// The noida-db binary: `$PEDIDOS_NOIDA_DB`, else the one inside the `noida_db` Python
/// package, else `noida-db` on `PATH`.
fn noida_db_binary() -> PathBuf {
    if let Some(path) = std::env::var_os(NOIDA_DB_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{NOIDA_DB_ENV}={} is not a file; {INSTALL_HINT}",
            path.display()
        );
        return path;
    }
    static DISCOVERED: OnceLock<Option<PathBuf>> = OnceLock::new();
    DISCOVERED
        .get_or_init(|| from_python_package().or_else(from_path))
        .clone()
        .unwrap_or_else(|| panic!("no noida-db binary found; {INSTALL_HINT}"))
}

fn from_python_package() -> Option<PathBuf> {
    let output = Command::new("python3")
        .args([
            "-c",
            "import noida_db, os; print(os.path.join(os.path.dirname(noida_db.__file__), 'noida-db'))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    path.is_file().then_some(path)
}

fn from_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("noida-db"))
        .find(|p| p.is_file())
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from one long-lived thread. On Linux the child is told to get SIGKILL when
/// its parent *thread* exits (`PR_SET_PDEATHSIG`); spawning from a thread that lives as long as
/// the test process makes that "when the test process dies", whichever test thread asked.
fn spawn(command: Command) -> io::Result<Child> {
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

/// `Broker` is shared across tasks in async tests.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Broker>();
};
