//! One Apache Kafka KRaft node as a child process, run through `scripts/kafka.sh` (the same
//! launcher as the local run and the benchmark).

use std::fs::OpenOptions;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::process::{self, scripts_dir};

/// How long a node may take to say "Kafka Server started". A JVM on a busy 2-core CI machine
/// needs 5-20 s; the bound only matters when something is wrong.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a SIGTERM may take before the node is killed (a controlled shutdown of a cluster
/// member waits for its leaderships to move).
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(60);
const READY_LINE: &str = "Kafka Server started";

/// Runs `scripts/kafka.sh install` once per test process (a no-op when the jars are cached).
fn install() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    process::install_once(&INSTALLED, "kafka.sh", "Apache Kafka");
}

/// A new cluster id: a random UUID as Kafka's `Uuid` prints it, 22 characters of URL-safe
/// base64 without padding. Never starting with `-`, which the storage tool would take for an
/// option.
pub(crate) fn cluster_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let bits = uuid::Uuid::new_v4().as_u128();
        // 21 digits of 6 bits, then the last 2 bits followed by 4 zero bits, as base64 does.
        let id: String = (0..22)
            .map(|i| {
                let digit = if i < 21 {
                    (bits >> (122 - 6 * i)) & 63
                } else {
                    (bits & 3) << 4
                };
                ALPHABET[digit as usize] as char
            })
            .collect();
        if !id.starts_with('-') {
            return id;
        }
    }
}

/// A SASL_SSL listener with PLAIN users.
#[derive(Clone, Debug)]
pub(crate) struct SaslSsl {
    pub port: u16,
    /// Private key (PKCS#8) followed by the certificate chain.
    pub pem: PathBuf,
    pub users: Vec<(String, String)>,
}

/// What the launcher is told for one node.
#[derive(Clone, Debug)]
pub(crate) struct NodeSpec {
    pub node_id: u32,
    pub port: u16,
    pub controller_port: u16,
    /// `1@127.0.0.1:<controller port>,...`
    pub voters: String,
    pub cluster_id: String,
    pub sasl_ssl: Option<SaslSsl>,
    pub heap: &'static str,
    /// Extra `key=value` broker properties.
    pub properties: Vec<String>,
}

/// One KRaft node (broker and controller in one JVM) with its own directory. Killed on drop.
pub(crate) struct Node {
    pub spec: NodeSpec,
    dir: PathBuf,
    child: Mutex<Option<Child>>,
}

impl Node {
    pub fn new(spec: NodeSpec, dir: PathBuf) -> Node {
        install();
        std::fs::create_dir_all(&dir).expect("cannot create the Kafka node directory");
        Node {
            spec,
            dir,
            child: Mutex::new(None),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Spawns the JVM; [`Node::wait_started`] waits for it. Panics if it is already running.
    pub fn spawn(&self) -> u64 {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        assert!(
            child.is_none(),
            "Kafka node {} already runs",
            self.spec.node_id
        );
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("cannot open the Kafka log file");
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let spec = &self.spec;
        let mut command = Command::new("bash");
        command
            .arg(scripts_dir().join("kafka.sh"))
            .arg("run")
            .arg("--dir")
            .arg(&self.dir)
            .args(["--node-id", &spec.node_id.to_string()])
            .args(["--port", &spec.port.to_string()])
            .args(["--controller-port", &spec.controller_port.to_string()])
            .args(["--voters", &spec.voters])
            .args(["--cluster-id", &spec.cluster_id])
            .args(["--heap", spec.heap]);
        if let Some(sasl) = &spec.sasl_ssl {
            let users: Vec<String> = sasl.users.iter().map(|(u, p)| format!("{u}:{p}")).collect();
            command
                .args(["--sasl-ssl-port", &sasl.port.to_string()])
                .arg("--pem")
                .arg(&sasl.pem)
                .args(["--users", &users.join(",")]);
        }
        for property in &spec.properties {
            command.args(["--property", property]);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cannot duplicate the log handle"))
            .stderr(log);
        *child = Some(process::spawn(command).unwrap_or_else(|e| {
            panic!("cannot run bash scripts/kafka.sh: {e}");
        }));
        log_start
    }

    /// Waits until the node launched with log offset `log_start` says it started. `Exited` if
    /// the process died first (a port taken by someone else, say); panics with the log on
    /// timeout.
    pub fn wait_started(&self, log_start: u64, deadline: Instant) -> Result<(), ExitStatus> {
        loop {
            {
                let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
                let Some(child) = guard.as_mut() else {
                    panic!("Kafka node {} is not running", self.spec.node_id);
                };
                if let Ok(Some(status)) = child.try_wait() {
                    guard.take();
                    return Err(status);
                }
            }
            let log = std::fs::read(self.log_path()).unwrap_or_default();
            let since = log.get(log_start as usize..).unwrap_or_default();
            if String::from_utf8_lossy(since).contains(READY_LINE) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                self.fail(&format!(
                    "did not start within {} s",
                    START_TIMEOUT.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Spawns and waits; retries for a while when the process exits at once (after a kill its
    /// ports can take a moment to be free).
    pub fn start(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log_start = self.spawn();
            match self.wait_started(log_start, deadline) {
                Ok(()) => return,
                Err(status) if Instant::now() + Duration::from_secs(1) < deadline => {
                    eprintln!(
                        "testkit: Kafka node {} exited at start-up ({status}); retrying",
                        self.spec.node_id
                    );
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(status) => self.fail(&format!("exited at start-up ({status})")),
            }
        }
    }

    /// SIGKILL, like a crash or a power cut: no clean shutdown. No-op when not running.
    pub fn kill(&self) {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            process::kill(&mut child);
        }
    }

    /// SIGTERM and a wait for the clean shutdown; SIGKILL after [`STOP_TIMEOUT`]. Returns
    /// whether it shut down by itself.
    pub fn terminate(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let Some(mut child) = guard.take() else {
            return true;
        };
        if process::terminate(&child) {
            let deadline = Instant::now() + STOP_TIMEOUT;
            while Instant::now() < deadline {
                if !matches!(child.try_wait(), Ok(None)) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        process::kill(&mut child);
        false
    }

    pub fn is_running(&self) -> bool {
        let mut guard = self.child.lock().unwrap_or_else(|e| e.into_inner());
        matches!(guard.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "Apache Kafka node {} (127.0.0.1:{}) {what}; its log ({}):\n{}",
            self.spec.node_id,
            self.spec.port,
            self.log_path().display(),
            tail(&self.log(), 200)
        )
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a log, so a failure message stays readable.
pub(crate) fn tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    let skipped = all.len().saturating_sub(lines);
    let mut out = String::new();
    if skipped > 0 {
        out.push_str(&format!("[... {skipped} earlier lines ...]\n"));
    }
    out.push_str(&all[skipped..].join("\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let a = cluster_id();
        let b = cluster_id();
        assert_eq!(a.len(), 22);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_ne!(a, b);
    }

    #[test]
    fn tail_keeps_the_last_lines_and_says_how_many_it_skipped() {
        let log = "1\n2\n3\n4";
        assert_eq!(tail(log, 2), "[... 2 earlier lines ...]\n3\n4");
        assert_eq!(tail(log, 10), "1\n2\n3\n4");
    }
}
