//! A real Schema Registry for tests: Apicurio Registry 3 (its Confluent-compatible API), run
//! through `scripts/apicurio.sh` on a free loopback port with in-memory storage, one per test
//! binary ([`Registry::shared`]); tests keep to subjects of their own (a broker namespace's
//! topics give them that).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::broker::free_port;
use crate::process;

/// A JVM on a busy 2-core machine takes 5-20 s; the bound only matters when something is wrong.
const START_TIMEOUT: Duration = Duration::from_secs(120);
const READY_LINE: &str = "Listening on:";
/// Where Apicurio serves the Confluent Schema Registry API.
const CCOMPAT_PATH: &str = "/apis/ccompat/v7";

pub struct Registry {
    dir: tempfile::TempDir,
    port: u16,
    server: Mutex<Child>,
}

fn script() -> PathBuf {
    process::scripts_dir().join("apicurio.sh")
}

impl Registry {
    /// The registry this test binary's tests share, started by the first caller.
    pub fn shared() -> &'static Registry {
        static SHARED: OnceLock<Registry> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    /// A new registry, empty, answering. Panics saying what is missing (Java 21+, Maven, the
    /// distribution) or with the end of the registry's log.
    pub fn start() -> Registry {
        install();
        let dir = tempfile::Builder::new()
            .prefix("pedidos-registry-")
            .tempdir()
            .expect("a temporary directory");
        let port = free_port();
        let log = dir.path().join("registry.log");
        let out = std::fs::File::create(&log).expect("the registry's log file");
        let mut command = Command::new("bash");
        command
            .arg(script())
            .args(["run", "--port", &port.to_string()])
            // Its temporary files (if any) in the test's own directory.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log file handle"))
            .stderr(out);
        let server = process::spawn(command).expect("cannot run bash scripts/apicurio.sh run");
        let registry = Registry {
            dir,
            port,
            server: Mutex::new(server),
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        loop {
            if self.log().contains(READY_LINE) {
                return;
            }
            let exited = self
                .server
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_wait()
                .ok()
                .flatten();
            if exited.is_some() || started.elapsed() > START_TIMEOUT {
                let log = self.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "Apicurio Registry did not start within {START_TIMEOUT:?} (exit: {exited:?}); the end of its log:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The Confluent-compatible API's base URL: what `schema_registry.url` takes.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{CCOMPAT_PATH}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        process::kill(self.server.get_mut().unwrap_or_else(|e| e.into_inner()));
    }
}

/// Runs `scripts/apicurio.sh install` once per test process (a no-op when it is cached).
fn install() {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    process::install_once(&INSTALLED, "apicurio.sh", "Apicurio Registry");
}
