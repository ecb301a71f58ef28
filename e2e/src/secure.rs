//! The SASL_SSL broker of the security tests, and namespaces on it that the daemons reach as
//! they would reach Confluent Cloud (SASL_SSL, PLAIN, a key and a secret), plus the test CA.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use shared::config::KafkaConfig;
use shared::Config;
use testkit::Broker;

use crate::mesh::{kafka_env, namespace_env};

/// The one SASL user the broker knows.
pub const USER: &str = "pedidos";

/// A password nobody would type by accident, so a grep for it proves it leaked.
pub fn distinctive_secret(what: &str) -> String {
    format!("Zq9-{what}-{}-xK7vW2sEcReT", std::process::id())
}

/// [`USER`]'s password on [`broker`].
pub fn password() -> String {
    distinctive_secret("right")
}

/// Apache Kafka with a SASL_SSL listener knowing only [`USER`] (and a PLAINTEXT one), started
/// by the first test that needs it (a JVM: 5-20 s) and shared by the rest of the test binary;
/// killed when the test process ends. Tests must not stop it.
pub fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        let started = Instant::now();
        let broker = Broker::start_sasl_ssl(&[(USER, &password())]);
        eprintln!(
            "SASL_SSL broker on {} (PLAINTEXT {}) ready in {:?}",
            broker.sasl_ssl_bootstrap(),
            broker.bootstrap(),
            started.elapsed()
        );
        broker
    })
}

/// A namespace of its own on [`broker`] ([`Broker::config`]) whose Kafka settings are the
/// SASL_SSL listener, logging in as [`USER`] with `password` and trusting `ca`: what
/// [`crate::mesh::kafka_env`] hands the daemons, and what the tests read back with.
pub fn sasl_ssl_config(password: &str, ca: &Path) -> Config {
    let broker = broker();
    let mut config = broker.config();
    config.kafka = KafkaConfig {
        ssl_ca_location: Some(ca.to_path_buf()),
        ..broker.sasl_ssl_config(USER, password)
    };
    config
}

/// The `PEDIDOS_*` settings of a lone daemon in a fresh [`sasl_ssl_config`] namespace: how to
/// reach the listener, and the namespace's topics and groups.
pub fn sasl_ssl_env(password: &str, ca: &Path) -> Vec<(String, String)> {
    let config = sasl_ssl_config(password, ca);
    let mut env = kafka_env(&config.kafka);
    env.extend(namespace_env(&config));
    env
}
