//! Real Apache Kafka brokers for tests: one node, a three-node cluster, a SASL_SSL listener, and
//! one node shared by every test of a test binary.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use shared::config::{KafkaConfig, SecurityProtocol, TopicsConfig};

use crate::kafka::{self, Node, NodeSpec, SaslSsl, START_TIMEOUT};
use crate::process;
use crate::tls::{self, TlsFiles};

/// The manual broker's port: never handed to a test.
const RESERVED_PORTS: [u16; 2] = [9092, 9093];
const AUDIT_FILE: &str = "audit.jsonl";
const DIR_PREFIX: &str = "pedidos-kafka-";

/// An Apache Kafka cluster in KRaft mode, each node a broker and a controller in one JVM
/// (`scripts/kafka.sh run`), on free ports of 127.0.0.1, with its data in a temporary directory
/// that lives as long as this value.
///
/// * [`Broker::start`]: one node, as the local run uses.
/// * [`Broker::start_cluster`]: three nodes with replication factor 3 and
///   `min.insync.replicas=2`, the way Confluent Cloud keeps data.
/// * [`Broker::start_sasl_ssl`]: one node with a SASL_SSL listener (PLAIN users, a test CA).
/// * [`Broker::shared`]: one node shared by the tests of a test binary that leave the broker
///   alone; each test works in its own topics and groups ([`Broker::config`]).
///
/// Nodes are killed when the `Broker` is dropped, and also when the test process dies (so an
/// aborted `cargo test` leaves no JVM behind). Each node's log is quoted in every panic about it.
///
/// The methods block (a start takes 5-20 s: a JVM); call them from async tests freely.
pub struct Broker {
    dir: tempfile::TempDir,
    nodes: Vec<Node>,
    tls: Option<TlsFiles>,
}

impl Broker {
    /// One node on a free port with an empty data directory, started and ready.
    ///
    /// # Panics
    /// If Apache Kafka cannot be installed (the message says what is missing) or the node does
    /// not start (the message quotes its log).
    pub fn start() -> Broker {
        Self::launch(temp_dir(), 1, None)
    }

    /// Three nodes, each a broker and a controller; RF 3 and `min.insync.replicas=2` for every
    /// topic, the internal ones included.
    pub fn start_cluster() -> Broker {
        Self::launch(temp_dir(), 3, None)
    }

    /// One node that also listens for SASL_SSL (mechanism PLAIN) with the users given as
    /// `(name, password)`, its certificate signed by a fresh test CA ([`Broker::ca_file`]).
    pub fn start_sasl_ssl(users: &[(&str, &str)]) -> Broker {
        let dir = temp_dir();
        let files = tls::write(dir.path());
        let users = users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        Self::launch(dir, 1, Some((files, users)))
    }

    /// The one-node broker this test binary's tests share, started by the first caller. Tests
    /// on it must keep to their own topics and groups, which [`Broker::config`] gives them, and
    /// must not stop it.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(Self::start)
    }

    fn launch(
        dir: tempfile::TempDir,
        nodes: u32,
        sasl: Option<(TlsFiles, Vec<(String, String)>)>,
    ) -> Broker {
        let cluster_id = kafka::cluster_id();
        // Per node: PLAINTEXT, CONTROLLER, SASL_SSL.
        let mut picked = free_ports(3 * nodes as usize).into_iter();
        let mut next = || picked.next().expect("enough ports");
        let ports: Vec<(u16, u16, u16)> = (0..nodes).map(|_| (next(), next(), next())).collect();
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, controller, _))| format!("{}@127.0.0.1:{controller}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let tls = sasl.as_ref().map(|(files, _)| files.clone());
        let nodes: Vec<Node> = ports
            .iter()
            .enumerate()
            .map(|(i, &(port, controller_port, sasl_port))| {
                let node_id = i as u32 + 1;
                let spec = NodeSpec {
                    node_id,
                    port,
                    controller_port,
                    voters: voters.clone(),
                    cluster_id: cluster_id.clone(),
                    sasl_ssl: sasl.as_ref().map(|(files, users)| SaslSsl {
                        port: sasl_port,
                        pem: files.server_pem.clone(),
                        users: users.clone(),
                    }),
                    heap: if nodes > 1 { "384m" } else { "512m" },
                    properties: Vec::new(),
                };
                Node::new(spec, dir.path().join(format!("node-{node_id}")))
            })
            .collect();
        let broker = Broker { dir, nodes, tls };
        broker.start_nodes(&broker.nodes.iter().collect::<Vec<_>>());
        broker
    }

    /// Spawns the nodes together (a cluster's controllers need each other to elect a leader)
    /// and waits until each says it started.
    fn start_nodes(&self, nodes: &[&Node]) {
        let deadline = Instant::now() + START_TIMEOUT;
        let launched: Vec<(&Node, u64)> = nodes.iter().map(|n| (*n, n.spawn())).collect();
        for (node, log_start) in launched {
            if let Err(status) = node.wait_started(log_start, deadline) {
                // A port taken between picking and binding, or a crash: retry alone.
                eprintln!(
                    "testkit: Kafka node {} exited at start-up ({status}); retrying",
                    node.spec.node_id
                );
                node.start();
            }
        }
    }

    /// `127.0.0.1:<port>` of every node, comma-separated, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.spec.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The SASL_SSL listener of [`Broker::start_sasl_ssl`].
    pub fn sasl_ssl_bootstrap(&self) -> String {
        let sasl = self.nodes[0]
            .spec
            .sasl_ssl
            .as_ref()
            .expect("this broker has no SASL_SSL listener: use Broker::start_sasl_ssl");
        format!("127.0.0.1:{}", sasl.port)
    }

    /// The CA that signed the SASL_SSL listener's certificate.
    pub fn ca_file(&self) -> &Path {
        &self.tls_files().ca
    }

    /// A CA that did not sign it.
    pub fn wrong_ca_file(&self) -> &Path {
        &self.tls_files().wrong_ca
    }

    fn tls_files(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("this broker has no SASL_SSL listener: use Broker::start_sasl_ssl")
    }

    /// The node ids, 1-based.
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.spec.node_id).collect()
    }

    fn node(&self, id: u32) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.spec.node_id == id)
            .unwrap_or_else(|| panic!("no Kafka node {id}"))
    }

    /// The temporary directory holding each node's data and log; deleted on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every node's log, the last lines of each.
    pub fn log(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                format!(
                    "--- Kafka node {} ({}) ---\n{}",
                    n.spec.node_id,
                    n.log_path().display(),
                    kafka::tail(&n.log(), 200)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILL of every node, like a crash: no clean shutdown. Data is kept; no-op if stopped.
    pub fn kill(&self) {
        self.nodes.iter().for_each(Node::kill);
    }

    /// SIGTERM of every node and a wait for their clean shutdown (SIGKILL after 60 s).
    pub fn terminate(&self) {
        for node in &self.nodes {
            if !node.terminate() {
                eprintln!(
                    "testkit: Kafka node {} ignored SIGTERM for 60 s; killed",
                    node.spec.node_id
                );
            }
        }
    }

    /// Starts every stopped node again, same ports and data, and waits until they are up.
    pub fn restart(&self) {
        let stopped: Vec<&Node> = self.nodes.iter().filter(|n| !n.is_running()).collect();
        self.start_nodes(&stopped);
    }

    /// SIGKILL of one node.
    pub fn kill_node(&self, id: u32) {
        self.node(id).kill();
    }

    /// SIGTERM of one node, waiting for its controlled shutdown; false if it had to be killed.
    pub fn terminate_node(&self, id: u32) -> bool {
        self.node(id).terminate()
    }

    /// Starts one stopped node again and waits until it is up (not yet in sync: see
    /// [`Broker::wait_in_sync`]).
    pub fn restart_node(&self, id: u32) {
        self.start_nodes(&[self.node(id)]);
    }

    /// Whether every node's process is alive.
    pub fn is_running(&self) -> bool {
        self.nodes.iter().all(Node::is_running)
    }

    /// The leader of each partition of `topic`, by partition (`-1`: none).
    pub fn leaders(&self, topic: &str) -> Vec<i32> {
        let metadata = self
            .metadata_client()
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no metadata for {topic}: {e}\n{}", self.log()));
        let mut partitions: Vec<(i32, i32)> = metadata
            .topics()
            .iter()
            .flat_map(|t| t.partitions().iter().map(|p| (p.id(), p.leader())))
            .collect();
        partitions.sort();
        partitions.into_iter().map(|(_, leader)| leader).collect()
    }

    /// The replicas (node ids) of each partition of `topic`, by partition; empty if there is no
    /// such topic. Read from the metadata of all topics, so that asking never creates one.
    pub fn replicas(&self, topic: &str) -> Vec<Vec<i32>> {
        let metadata = self
            .metadata_client()
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("no metadata: {e}\n{}", self.log()));
        let mut partitions: Vec<(i32, Vec<i32>)> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| {
                t.partitions()
                    .iter()
                    .map(|p| (p.id(), p.replicas().to_vec()))
            })
            .collect();
        partitions.sort();
        partitions
            .into_iter()
            .map(|(_, replicas)| replicas)
            .collect()
    }

    /// Waits until every partition of every topic has a leader and all its replicas in sync,
    /// e.g. after a node came back. Panics with the nodes' logs after `timeout`.
    pub fn wait_in_sync(&self, timeout: Duration) {
        let client = self.metadata_client();
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < deadline {
            match client.fetch_metadata(None, Duration::from_secs(5)) {
                Ok(metadata) => {
                    let behind: Vec<String> = metadata
                        .topics()
                        .iter()
                        .flat_map(|t| {
                            t.partitions()
                                .iter()
                                .filter(|p| p.leader() < 0 || p.isr().len() < p.replicas().len())
                                .map(move |p| {
                                    format!(
                                        "{}[{}] leader {} isr {:?} of {:?}",
                                        t.name(),
                                        p.id(),
                                        p.leader(),
                                        p.isr(),
                                        p.replicas()
                                    )
                                })
                        })
                        .collect();
                    if behind.is_empty() && !metadata.topics().is_empty() {
                        return;
                    }
                    last = behind.join("; ");
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "the cluster was not in sync within {timeout:?}: {last}\n{}",
            self.log()
        );
    }

    fn metadata_client(&self) -> BaseConsumer {
        shared::kafka::client_config(&self.kafka_config())
            .create()
            .expect("a metadata client")
    }

    /// Default client settings for this broker's PLAINTEXT listeners, with a 20 s start-up
    /// timeout.
    pub fn kafka_config(&self) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.bootstrap(),
            startup_timeout_secs: 20,
            ..KafkaConfig::default()
        }
    }

    /// Client settings for the SASL_SSL listener, exactly as `conf.toml` configures Confluent
    /// Cloud, plus the test CA.
    pub fn sasl_ssl_config(&self, user: &str, password: &str) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: self.sasl_ssl_bootstrap(),
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanisms: "PLAIN".into(),
            sasl_username: user.into(),
            sasl_password: shared::config::Secret::new(password),
            ssl_ca_location: Some(self.ca_file().to_path_buf()),
            ..self.kafka_config()
        }
    }

    /// A full configuration for one test on this broker, in a namespace of its own: each call
    /// gets topics (`Pedidos-t<n>`, ...) and consumer groups (`fraud-t<n>`, ...) no other call
    /// uses, so tests can share a broker. Also: the API on `127.0.0.1:0`, monitoring's audit file
    /// in [`Broker::dir`], fraud seed 7. Clone it where one test needs it twice.
    pub fn config(&self) -> shared::Config {
        static NAMESPACES: AtomicUsize = AtomicUsize::new(0);
        let n = NAMESPACES.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("-t{n}");
        let defaults = shared::Config::default();
        let topics = TopicsConfig {
            pedidos: format!("{}{suffix}", defaults.topics.pedidos),
            notificacoes: format!("{}{suffix}", defaults.topics.notificacoes),
            pedidos_validos: format!("{}{suffix}", defaults.topics.pedidos_validos),
            pedidos_recusados: format!("{}{suffix}", defaults.topics.pedidos_recusados),
            ..defaults.topics.clone()
        };
        let mut config = shared::Config {
            kafka: self.kafka_config(),
            topics,
            ..defaults
        };
        config.fraud.group_id.push_str(&suffix);
        config.notification.group_id.push_str(&suffix);
        config.monitoring.group_id.push_str(&suffix);
        config.api.listen = "127.0.0.1:0".into();
        config.monitoring.audit_file = self.dir().join(format!("t{n}-{AUDIT_FILE}"));
        let view = self.dir().join(format!("t{n}-pedidos-api.db"));
        config.api.store_url = shared::config::Secret::new(format!("sqlite:{}", view.display()));
        config.fraud.seed = 7;
        config
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("bootstrap", &self.bootstrap())
            .field("dir", &self.dir())
            .field("running", &self.is_running())
            .finish()
    }
}

/// A directory named after this process, so that a later run can tell it was left behind: a
/// broker held in a `static` ([`Broker::shared`], or a test file's own) is never dropped.
fn temp_dir() -> tempfile::TempDir {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(sweep_dirs_of_dead_processes);
    tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir()
        .expect("cannot create a temporary directory for Kafka")
}

/// Removes the broker directories of test processes that are gone.
fn sweep_dirs_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !process::pid_alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A TCP port on 127.0.0.1 that was free when this returned (bind port 0, read it, close).
/// Never 9092 or 9093, which belong to the broker for manual use.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// `n` distinct ports that were free when this returned: all are held until the last is picked.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .expect("cannot bind a TCP port on 127.0.0.1");
        let port = listener
            .local_addr()
            .expect("bound listener has no address")
            .port();
        if !RESERVED_PORTS.contains(&port) {
            held.push((port, listener));
        }
    }
    held.into_iter().map(|(port, _)| port).collect()
}

/// `Broker` is shared across tasks and tests.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Broker>();
};
