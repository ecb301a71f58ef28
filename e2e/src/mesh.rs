//! A whole test mesh: its settings and its start-up.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shared::config::{FraudConfig, KafkaConfig, SecurityProtocol};
use shared::Config;
use testkit::Broker;

use crate::{eventually, message, Daemon, DAEMONS, LISTED};

/// Generous: CI machines are small and build in debug.
pub const WAIT: Duration = Duration::from_secs(90);

/// The daemons of [`DAEMONS`] as processes against one broker, in a namespace of their own
/// (topics and consumer groups from [`Broker::config`]), so several meshes can share a broker.
/// A daemon is reached by its name: [`Mesh::daemon`], [`Mesh::instances`].
pub struct Mesh {
    pub api_url: String,
    /// Every process, in start order: the API, fraud's instances (`fraud0`, `fraud1`, …), then
    /// the other daemons of the list, one each.
    daemons: Vec<Daemon>,
    /// The partitions each consumer's group held, all instances together, once the mesh was up.
    partitions: Vec<(&'static str, usize)>,
    pub audit_file: PathBuf,
    /// The namespace: `config.kafka` reaches the broker, `config.topics` names this mesh's
    /// topics.
    pub config: Config,
    /// The settings every daemon was started with.
    pub env: Vec<(String, String)>,
    /// Working directory of the daemons: their logs and the audit file.
    pub dir: tempfile::TempDir,
}

/// The fraud rules the tests run with (and predict verdicts from).
pub fn fraud_rules() -> FraudConfig {
    FraudConfig {
        seed: 7,
        refusal_probability: 0.2,
        max_valor: Some("5000".parse().unwrap()),
        max_total: Some("20000".parse().unwrap()),
        blocked_users: vec!["mallory".into()],
        blocked_products: vec!["contrabando".into()],
        ..FraudConfig::default()
    }
}

/// The `PEDIDOS_*` settings of a test mesh: how to reach the broker ([`kafka_env`]), the
/// namespace ([`namespace_env`]), the API's port, the audit file and the fraud rules;
/// everything else is the default.
pub fn env(config: &Config, api_port: u16, audit_file: &Path) -> Vec<(String, String)> {
    let rules = fraud_rules();
    let mut env = kafka_env(&config.kafka);
    env.extend(namespace_env(config));
    env.extend(pairs([
        ("PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS", "30".into()),
        ("PEDIDOS_API__LISTEN", format!("127.0.0.1:{api_port}")),
        (
            "PEDIDOS_MONITORING__AUDIT_FILE",
            audit_file.display().to_string(),
        ),
        ("PEDIDOS_MONITORING__SUMMARY_INTERVAL_SECS", "1".into()),
        ("PEDIDOS_FRAUD__SEED", rules.seed.to_string()),
        (
            "PEDIDOS_FRAUD__REFUSAL_PROBABILITY",
            rules.refusal_probability.to_string(),
        ),
        (
            "PEDIDOS_FRAUD__MAX_VALOR",
            format!("\"{}\"", rules.max_valor.unwrap()),
        ),
        (
            "PEDIDOS_FRAUD__MAX_TOTAL",
            format!("\"{}\"", rules.max_total.unwrap()),
        ),
        (
            "PEDIDOS_FRAUD__BLOCKED_USERS",
            toml_list(&rules.blocked_users),
        ),
        (
            "PEDIDOS_FRAUD__BLOCKED_PRODUCTS",
            toml_list(&rules.blocked_products),
        ),
    ]));
    env
}

/// A list as a `PEDIDOS_*` variable's TOML value: `["a","b"]` (JSON strings are TOML strings).
fn toml_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings serialises")
}

/// The `PEDIDOS_*` settings that reach the broker as `kafka` does, the way `conf.toml` gives
/// them (for Confluent Cloud: SASL_SSL, PLAIN, a key and a secret): the servers and, beyond
/// PLAINTEXT, the protocol, the SASL login and the CA. Nothing else of `kafka` (the start-up
/// timeout, librdkafka properties) is passed on.
pub fn kafka_env(kafka: &KafkaConfig) -> Vec<(String, String)> {
    let protocol = kafka.security_protocol;
    let mut env = vec![(
        "PEDIDOS_KAFKA__BOOTSTRAP_SERVERS",
        kafka.bootstrap_servers.clone(),
    )];
    if protocol != SecurityProtocol::Plaintext {
        env.push(("PEDIDOS_KAFKA__SECURITY_PROTOCOL", protocol.as_str().into()));
    }
    if protocol.uses_sasl() {
        env.push((
            "PEDIDOS_KAFKA__SASL_MECHANISMS",
            kafka.sasl_mechanisms.clone(),
        ));
        env.push(("PEDIDOS_KAFKA__SASL_USERNAME", kafka.sasl_username.clone()));
        env.push((
            "PEDIDOS_KAFKA__SASL_PASSWORD",
            kafka.sasl_password.expose().into(),
        ));
    }
    if let Some(ca) = &kafka.ssl_ca_location {
        env.push(("PEDIDOS_KAFKA__SSL_CA_LOCATION", ca.display().to_string()));
    }
    pairs(env)
}

/// The `PEDIDOS_*` settings of the namespace of `config`: its topics and consumer groups.
pub fn namespace_env(config: &Config) -> Vec<(String, String)> {
    let topics = &config.topics;
    pairs([
        ("PEDIDOS_TOPICS__PEDIDOS", topics.pedidos.clone()),
        ("PEDIDOS_TOPICS__NOTIFICACOES", topics.notificacoes.clone()),
        (
            "PEDIDOS_TOPICS__PEDIDOS_VALIDOS",
            topics.pedidos_validos.clone(),
        ),
        (
            "PEDIDOS_TOPICS__PEDIDOS_RECUSADOS",
            topics.pedidos_recusados.clone(),
        ),
    ])
    .into_iter()
    .chain(group_env(config))
    .collect()
}

/// Each consuming daemon's group in the namespace of `config`: `<daemon><suffix>`
/// (`PEDIDOS_FRAUD__GROUP_ID=fraud-t3`), the suffix [`Broker::config`] gave its topics and the
/// groups it names (`config.fraud.group_id`, …), so a daemon new to the list is namespaced too.
fn group_env(config: &Config) -> Vec<(String, String)> {
    let defaults = shared::config::TopicsConfig::default();
    let suffix = config
        .topics
        .pedidos
        .strip_prefix(&defaults.pedidos)
        .unwrap_or_default();
    LISTED
        .iter()
        .filter(|daemon| daemon.name != "api")
        .map(|daemon| {
            let (section, _) = daemon.admin_key.split_once('.').unwrap_or_default();
            (
                format!("PEDIDOS_{}__GROUP_ID", section.to_ascii_uppercase()),
                format!("{}{suffix}", daemon.name),
            )
        })
        .collect()
}

fn pairs(env: impl IntoIterator<Item = (&'static str, String)>) -> Vec<(String, String)> {
    env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Partitions a consumer holds according to its latest "partitions assigned" log line.
pub fn assigned(daemon: &Daemon) -> Option<Vec<String>> {
    daemon
        .log_events()
        .iter()
        .rev()
        .find(|e| message(e) == "partitions assigned" || message(e) == "partitions revoked")
        .filter(|e| message(e) == "partitions assigned")
        .map(|e| {
            e["partitions"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
}

/// How many partitions `instances` (one daemon's, one group) hold together, once each holds
/// some and no two the same: a settled assignment (after a rebalance's revocation a member
/// holds none until it is assigned again).
fn held_together(instances: &[&Daemon]) -> Option<usize> {
    let held: Vec<Vec<String>> = instances
        .iter()
        .map(|d| assigned(d))
        .collect::<Option<_>>()?;
    let all: HashSet<&String> = held.iter().flatten().collect();
    let total: usize = held.iter().map(Vec::len).sum();
    (held.iter().all(|h| !h.is_empty()) && all.len() == total).then_some(total)
}

/// How a test mesh is started; [`Options::default`] is the configuration users run.
#[derive(Clone, Debug)]
pub struct Options {
    pub fraud_instances: usize,
    /// Static group membership (`kafka.group_instance_id`, KIP-345): a restarted consumer takes
    /// its partitions back at once instead of waiting for the broker to evict its predecessor.
    /// Off by default, as in `conf.example.toml`.
    pub static_membership: bool,
    /// Extra environment variables for every daemon, `PEDIDOS_*` settings or `RUST_LOG` (they
    /// win over the mesh's own).
    pub env: Vec<(String, String)>,
}

impl Options {
    /// How many instances of `daemon` the mesh runs, for the daemon it runs several of
    /// (fraud, named `fraud0`, `fraud1`, …); `None` for one, named as the daemon.
    fn instances(&self, daemon: &str) -> Option<usize> {
        (daemon == "fraud").then_some(self.fraud_instances)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fraud_instances: 1,
            static_membership: false,
            env: Vec::new(),
        }
    }
}

impl Options {
    /// Adds `PEDIDOS_*` settings for every daemon.
    pub fn with_env(mut self, pairs: &[(&str, &str)]) -> Self {
        self.env
            .extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }
}

impl Mesh {
    /// Starts the API, then fraud × `fraud_instances` and the other daemons of [`DAEMONS`] with
    /// the default configuration, and returns once every consumer holds its partitions.
    pub async fn start(broker: &Broker, fraud_instances: usize) -> Mesh {
        Self::start_with_options(
            broker,
            Options {
                fraud_instances,
                ..Options::default()
            },
        )
        .await
    }

    /// [`Mesh::start`] with extra `PEDIDOS_*` settings for every daemon.
    pub async fn start_with(
        broker: &Broker,
        fraud_instances: usize,
        extra: &[(&str, &str)],
    ) -> Mesh {
        let options = Options {
            fraud_instances,
            ..Options::default()
        };
        Self::start_with_options(broker, options.with_env(extra)).await
    }

    pub async fn start_with_options(broker: &Broker, options: Options) -> Mesh {
        Self::start_in(broker.config(), options).await
    }

    /// Starts a mesh in the namespace `config`: its topics and groups, and its Kafka settings
    /// (a SASL_SSL login and CA too, as [`kafka_env`] passes them on).
    pub async fn start_in(config: Config, options: Options) -> Mesh {
        let dir = tempfile::Builder::new()
            .prefix("pedidos-mesh-")
            .tempdir()
            .expect("a working directory for the mesh");
        let workdir = dir.path().to_path_buf();
        let api_port = testkit::free_port();
        let audit_file = workdir.join("audit.jsonl");
        let mut env = env(&config, api_port, &audit_file);
        env.extend(options.env.iter().cloned());
        let api = Daemon::spawn("api", "api", &workdir, &env);
        let api_url = format!("http://127.0.0.1:{api_port}");
        api.wait_for_log("the API to listen", WAIT, |e| {
            message(e).starts_with("pedidos API listening")
        });
        let consumer_env = |id: &str| {
            let mut env = env.clone();
            if options.static_membership {
                env.push(("PEDIDOS_KAFKA__GROUP_INSTANCE_ID".into(), id.into()));
            }
            env
        };
        let mut daemons = vec![api];
        let consumers: Vec<&'static str> =
            DAEMONS.iter().copied().filter(|&d| d != "api").collect();
        for &daemon in &consumers {
            let names = match options.instances(daemon) {
                Some(n) => (0..n).map(|i| format!("{daemon}{i}")).collect(),
                None => vec![daemon.to_string()],
            };
            for name in names {
                daemons.push(Daemon::spawn(&name, daemon, &workdir, &consumer_env(&name)));
            }
        }
        // Orders are only posted once every consumer holds its partitions, so the test measures
        // the steady state rather than a start-up rebalance.
        let mut partitions = Vec::new();
        for daemon in consumers {
            let instances: Vec<&Daemon> = daemons.iter().filter(|d| d.binary == daemon).collect();
            let held = eventually(&format!("{daemon} to hold its partitions"), WAIT, || {
                held_together(&instances)
            })
            .await;
            partitions.push((daemon, held));
        }
        Mesh {
            api_url,
            daemons,
            partitions,
            audit_file,
            config,
            env,
            dir,
        }
    }

    /// One process by name: a daemon's (`api`, `notification`, …; `fraud`, its first instance)
    /// or an instance's (`fraud1`).
    pub fn daemon(&self, name: &str) -> &Daemon {
        let at = self.position(name);
        &self.daemons[at]
    }

    /// [`Mesh::daemon`], to stop, start or signal it.
    pub fn daemon_mut(&mut self, name: &str) -> &mut Daemon {
        let at = self.position(name);
        &mut self.daemons[at]
    }

    fn position(&self, name: &str) -> usize {
        self.daemons
            .iter()
            .position(|d| d.name == name)
            .or_else(|| self.daemons.iter().position(|d| d.binary == name))
            .unwrap_or_else(|| panic!("no daemon called {name} in the mesh"))
    }

    /// Every instance of `daemon` (fraud's several, or the one of any other).
    pub fn instances<'a>(&'a self, daemon: &'a str) -> impl Iterator<Item = &'a Daemon> {
        self.daemons.iter().filter(move |d| d.binary == daemon)
    }

    /// How many partitions `daemon`'s group held, all its instances together, once the mesh was
    /// up; `None` for the API, which reads without a group.
    pub fn partitions(&self, daemon: &str) -> Option<usize> {
        self.partitions
            .iter()
            .find(|(d, _)| *d == daemon)
            .map(|&(_, n)| n)
    }

    /// Every process of the mesh, in start order.
    pub fn daemons(&mut self) -> impl Iterator<Item = &mut Daemon> {
        self.daemons.iter_mut()
    }

    pub fn assert_all_running(&mut self) {
        for d in self.daemons() {
            assert!(d.is_running(), "{} exited. Log:\n{}", d.name, d.log_text());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(env: &[(&str, &str)]) -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn kafka_env_passes_a_sasl_ssl_login_and_ca_on_and_nothing_more_for_plaintext() {
        let plaintext = KafkaConfig {
            bootstrap_servers: "127.0.0.1:1".into(),
            ..KafkaConfig::default()
        };
        assert_eq!(
            kafka_env(&plaintext),
            owned(&[("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")])
        );
        let sasl_ssl = KafkaConfig {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_username: "key".into(),
            sasl_password: shared::config::Secret::new("secret"),
            ssl_ca_location: Some("/ca.pem".into()),
            ..plaintext
        };
        assert_eq!(
            kafka_env(&sasl_ssl),
            owned(&[
                ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1"),
                ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
                ("PEDIDOS_KAFKA__SASL_MECHANISMS", "PLAIN"),
                ("PEDIDOS_KAFKA__SASL_USERNAME", "key"),
                ("PEDIDOS_KAFKA__SASL_PASSWORD", "secret"),
                ("PEDIDOS_KAFKA__SSL_CA_LOCATION", "/ca.pem"),
            ])
        );
    }
}
