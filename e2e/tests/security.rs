//! Security and start-up failures, with the real daemon binaries:
//!
//! * every way a connection can be misconfigured (wrong SASL password, unknown host, wrong port,
//!   TLS to a plaintext port, plaintext to a TLS port, missing or wrong CA file) ends the daemon
//!   at start-up with a non-zero exit, within the start-up bound, and an error naming the
//!   servers, the protocol and what went wrong;
//! * the SASL password never shows in any output, even at `RUST_LOG=debug` with librdkafka's
//!   own debug logs;
//! * the whole mesh works over SASL_SSL + PLAIN with CA verification, configured exactly as for
//!   Confluent Cloud.
//!
//! The broker is Apache Kafka itself ([`testkit::Broker::start_sasl_ssl`]): a SASL_SSL listener
//! that checks PLAIN passwords and presents a certificate of a fresh test CA, beside a PLAINTEXT
//! listener. One such broker serves every test of this file (none stops it); each test works in
//! topics and groups of its own ([`Broker::config`]). When Kafka cannot start, the tests fail
//! with its log; they never skip.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::exit::{run_until_exit, Exit};
use e2e::{eventually, message, Daemon};
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use shared::config::FraudConfig;
use shared::events::{Order, Status};
use shared::Config;
use testkit::{read_topic, Broker};

const USER: &str = "pedidos";
const WAIT: Duration = Duration::from_secs(90);
/// Start-up bound for the cases that have to wait it out (the default, 30 s, is measured once).
const SHORT_TIMEOUT_SECS: u64 = 5;
/// Time a daemon may need beyond its start-up bound to print the error and exit.
const EXIT_SLACK: Duration = Duration::from_secs(3);
/// How soon a refusal the broker states (a wrong password, an untrusted certificate) must end
/// the daemon: well inside the default 30 s bound, so it cannot pass by timing out, yet loose
/// enough for a debug build on a busy 2-core machine.
const REFUSED_WITHIN: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// The shared SASL_SSL broker.

/// A password nobody would type by accident, so a grep for it proves it leaked.
fn distinctive_secret(what: &str) -> String {
    format!("Zq9-{what}-{}-xK7vW2sEcReT", std::process::id())
}

/// [`USER`]'s password on the shared broker.
fn password() -> String {
    distinctive_secret("right")
}

/// Apache Kafka with a SASL_SSL listener knowing only [`USER`], started by the first test that
/// needs it (a JVM: 5-20 s) and shared by the rest; killed when the test process ends.
fn broker() -> &'static Broker {
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

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The daemon settings for the namespace of `config`: its topics, groups and audit file.
fn namespace_env(config: &Config) -> Vec<(String, String)> {
    vars(&[
        ("PEDIDOS_TOPICS__PEDIDOS", &config.topics.pedidos),
        ("PEDIDOS_TOPICS__NOTIFICACOES", &config.topics.notificacoes),
        (
            "PEDIDOS_TOPICS__PEDIDOS_VALIDOS",
            &config.topics.pedidos_validos,
        ),
        (
            "PEDIDOS_TOPICS__PEDIDOS_RECUSADOS",
            &config.topics.pedidos_recusados,
        ),
        ("PEDIDOS_FRAUD__GROUP_ID", &config.fraud.group_id),
        (
            "PEDIDOS_NOTIFICATION__GROUP_ID",
            &config.notification.group_id,
        ),
        ("PEDIDOS_MONITORING__GROUP_ID", &config.monitoring.group_id),
        (
            "PEDIDOS_MONITORING__AUDIT_FILE",
            &config.monitoring.audit_file.display().to_string(),
        ),
    ])
}

/// Settings for the shared broker's SASL_SSL listener, as `conf.toml` gives them for Confluent
/// Cloud plus `ca`, in the namespace of `config`.
fn sasl_env(config: &Config, password: &str, ca: &Path) -> Vec<(String, String)> {
    let mut env = vars(&[
        (
            "PEDIDOS_KAFKA__BOOTSTRAP_SERVERS",
            &broker().sasl_ssl_bootstrap(),
        ),
        ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
        ("PEDIDOS_KAFKA__SASL_MECHANISMS", "PLAIN"),
        ("PEDIDOS_KAFKA__SASL_USERNAME", USER),
        ("PEDIDOS_KAFKA__SASL_PASSWORD", password),
        ("PEDIDOS_KAFKA__SSL_CA_LOCATION", &ca.display().to_string()),
    ]);
    env.extend(namespace_env(config));
    env
}

/// What follows "within <duration>: " in an `Unreachable` error: librdkafka's own words.
fn reason_of(exit: &Exit) -> String {
    let line = exit
        .stderr
        .lines()
        .find(|l| l.contains("cannot connect to Kafka at"))
        .unwrap_or_else(|| panic!("no \"cannot connect\" error\n{exit}"));
    line.split_once(") within ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(_, reason)| reason.to_string())
        .unwrap_or_default()
}

fn plaintext_env(bootstrap: &str, timeout_secs: Option<u64>) -> Vec<(String, String)> {
    let mut env = vars(&[("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", bootstrap)]);
    if let Some(secs) = timeout_secs {
        env.push((
            "PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS".into(),
            secs.to_string(),
        ));
    }
    env
}

// ---------------------------------------------------------------------------------------------
// Start-up failures.

#[tokio::test]
async fn wrong_sasl_password_is_rejected_at_once_with_the_brokers_reason() {
    let broker = broker();
    // The control: the same listener, CA and user with the right password are let in, so the
    // password is all that differs below.
    shared::kafka::check_connectivity(&broker.sasl_ssl_config(USER, &password()))
        .await
        .expect("the right password is accepted");
    let wrong = distinctive_secret("wrong");
    // The default 30 s bound: a refused login must not wait for it.
    let exit = run_until_exit(
        "fraud",
        &sasl_env(&broker.config(), &wrong, broker.ca_file()),
        Duration::from_secs(60),
    );
    exit.assert_failed_within(1, Duration::ZERO, REFUSED_WITHIN);
    // The reason is Kafka's own (PlainServerCallbackHandler's), relayed by librdkafka: no TLS or
    // network failure in disguise.
    exit.assert_stderr_names(&[
        &format!(
            "Kafka at {} rejected the credentials of user \"{USER}\"",
            broker.sasl_ssl_bootstrap()
        ),
        "sasl.mechanisms=PLAIN",
        "Authentication failed: Invalid username or password",
    ]);
    assert!(
        !exit.all_output().contains(&wrong),
        "password leaked\n{exit}"
    );
}

#[test]
fn unknown_host_fails_within_the_startup_timeout_naming_the_host() {
    let host = "pedidos-no-such-host.invalid:9092";
    let exit = run_until_exit(
        "fraud",
        &plaintext_env(host, Some(SHORT_TIMEOUT_SECS)),
        Duration::from_secs(SHORT_TIMEOUT_SECS) + Duration::from_secs(20),
    );
    exit.assert_failed_within(
        1,
        Duration::ZERO,
        Duration::from_secs(SHORT_TIMEOUT_SECS) + EXIT_SLACK,
    );
    exit.assert_stderr_names(&[
        &format!("cannot connect to Kafka at {host} (security.protocol=PLAINTEXT)"),
        "Failed to resolve",
    ]);
}

#[test]
fn wrong_port_fails_within_the_default_30s_bound() {
    // Nothing listens there: connection refused, retried until the default bound.
    let bootstrap = format!("127.0.0.1:{}", testkit::free_port());
    let exit = run_until_exit(
        "fraud",
        &plaintext_env(&bootstrap, None),
        Duration::from_secs(60),
    );
    exit.assert_failed_within(
        1,
        Duration::from_secs(29),
        Duration::from_secs(30) + EXIT_SLACK,
    );
    exit.assert_stderr_names(&[
        &format!("cannot connect to Kafka at {bootstrap} (security.protocol=PLAINTEXT)"),
        "Connection refused",
    ]);
}

#[test]
fn tls_to_a_plaintext_port_fails_within_the_startup_timeout() {
    // The shared broker's PLAINTEXT listener.
    let plaintext = broker().bootstrap();
    let exit = run_until_exit(
        "fraud",
        &vars(&[
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", &plaintext),
            ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "SSL"),
            (
                "PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS",
                &SHORT_TIMEOUT_SECS.to_string(),
            ),
        ]),
        Duration::from_secs(SHORT_TIMEOUT_SECS) + Duration::from_secs(20),
    );
    exit.assert_failed_within(
        1,
        Duration::ZERO,
        Duration::from_secs(SHORT_TIMEOUT_SECS) + EXIT_SLACK,
    );
    exit.assert_stderr_names(&[&format!(
        "cannot connect to Kafka at {plaintext} (security.protocol=SSL)"
    )]);
    let reason = reason_of(&exit);
    assert!(
        reason.contains("SSL handshake") || reason.contains("SSL_HANDSHAKE"),
        "the reason names the failed TLS handshake: {reason:?}\n{exit}"
    );
}

#[test]
fn plaintext_to_a_tls_port_fails_within_the_startup_timeout() {
    let tls = broker().sasl_ssl_bootstrap();
    let exit = run_until_exit(
        "fraud",
        &plaintext_env(&tls, Some(SHORT_TIMEOUT_SECS)),
        Duration::from_secs(SHORT_TIMEOUT_SECS) + Duration::from_secs(20),
    );
    exit.assert_failed_within(
        1,
        Duration::ZERO,
        Duration::from_secs(SHORT_TIMEOUT_SECS) + EXIT_SLACK,
    );
    exit.assert_stderr_names(&[&format!(
        "cannot connect to Kafka at {tls} (security.protocol=PLAINTEXT)"
    )]);
    // Kafka's TLS listener hangs up on the plaintext ApiVersions request.
    let reason = reason_of(&exit);
    assert!(
        reason.contains("Disconnected") || reason.contains("connection reset"),
        "the reason says the server hung up: {reason:?}\n{exit}"
    );
}

#[test]
fn missing_ca_file_is_a_configuration_error_naming_the_key() {
    let missing = "/nonexistent/pedidos-test/ca.pem";
    let exit = run_until_exit(
        "fraud",
        &vars(&[
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9"),
            ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
            ("PEDIDOS_KAFKA__SASL_USERNAME", USER),
            ("PEDIDOS_KAFKA__SASL_PASSWORD", "irrelevant"),
            ("PEDIDOS_KAFKA__SSL_CA_LOCATION", missing),
        ]),
        Duration::from_secs(20),
    );
    exit.assert_failed_within(2, Duration::ZERO, Duration::from_secs(5));
    exit.assert_stderr_names(&[
        "configuration error",
        "PEDIDOS_KAFKA__SSL_CA_LOCATION",
        "kafka.ssl_ca_location",
        missing,
    ]);
}

#[test]
fn wrong_ca_is_refused_at_once_with_a_certificate_verification_error() {
    let broker = broker();
    let password = password();
    let exit = run_until_exit(
        "fraud",
        &sasl_env(&broker.config(), &password, broker.wrong_ca_file()),
        Duration::from_secs(60),
    );
    exit.assert_failed_within(1, Duration::ZERO, REFUSED_WITHIN);
    exit.assert_stderr_names(&[
        &format!(
            "cannot connect to Kafka at {} (security.protocol=SASL_SSL)",
            broker.sasl_ssl_bootstrap()
        ),
        "certificate verify failed",
    ]);
    assert!(
        !exit.all_output().contains(&password),
        "password leaked\n{exit}"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets.

/// Every place the secret could leak to: the output of each process, at debug level.
fn assert_secret_absent(secret: &str, outputs: &[(&str, String)]) {
    for (what, text) in outputs {
        assert!(!text.is_empty(), "{what}: no output at all");
        assert!(
            !text.contains(secret),
            "{what}: the SASL password appears in its output:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[test]
fn secrets_never_appear_in_output_at_debug_level() {
    let broker = broker();
    let config = broker.config();
    // Our debug logs, and librdkafka's own debug logs (configuration dump, SASL) as well.
    let debug = |env: Vec<(String, String)>, librdkafka: &str| {
        let mut env = env;
        env.push(("RUST_LOG".into(), "debug".into()));
        env.push(("PEDIDOS_KAFKA__PROPERTIES__DEBUG".into(), librdkafka.into()));
        env
    };

    // Refused: both daemons exit, and neither repeats the password it sent.
    let wrong = distinctive_secret("bad");
    let mut outputs = Vec::new();
    for binary in ["fraud", "api"] {
        let mut env = debug(sasl_env(&config, &wrong, broker.ca_file()), "all");
        env.push(("PEDIDOS_API__LISTEN".into(), "127.0.0.1:0".into()));
        let exit = run_until_exit(binary, &env, Duration::from_secs(60));
        assert_eq!(exit.code, Some(1), "{binary}\n{exit}");
        assert!(
            exit.stderr.contains("rejected the credentials"),
            "{binary}\n{exit}"
        );
        assert!(
            exit.stdout.contains("sasl.password = [redacted]"),
            "{binary} ran with librdkafka's configuration dump\n{exit}"
        );
        outputs.push((binary, exit.all_output()));
    }
    assert_secret_absent(&wrong, &outputs);

    // Working: api and fraud connect, an order goes through, then they stop cleanly.
    let right = password();
    let dir = tempfile::Builder::new()
        .prefix("pedidos-security-")
        .tempdir()
        .expect("a working directory for the daemons");
    let api_port = testkit::free_port();
    let mut env = debug(
        sasl_env(&config, &right, broker.ca_file()),
        "conf,security,broker",
    );
    env.push((
        "PEDIDOS_API__LISTEN".into(),
        format!("127.0.0.1:{api_port}"),
    ));
    let mut api = Daemon::spawn("api", "api", dir.path(), &env);
    let mut fraud = Daemon::spawn("fraud", "fraud", dir.path(), &env);
    api.wait_for_log("the API to listen", WAIT, |e| {
        message(e).starts_with("pedidos API listening")
    });
    fraud.wait_for_log("fraud to consume", WAIT, |e| message(e) == "consuming");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let response = client
            .post(format!("http://127.0.0.1:{api_port}/pedidos"))
            .json(&json!({"usuario": "ana", "produto": "livro", "quantidade": 1, "valor": "10.00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let id = response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        eventually("the order's verdict", WAIT, || {
            fraud
                .log_events()
                .iter()
                .any(|e| message(e) == "verdict" && e["pedido"] == id.as_str())
                .then_some(())
        })
        .await;
    });
    assert_eq!(api.terminate(Duration::from_secs(30)), Some(0), "api");
    assert_eq!(fraud.terminate(Duration::from_secs(30)), Some(0), "fraud");
    assert_secret_absent(
        &right,
        &[("api", api.log_text()), ("fraud", fraud.log_text())],
    );
}

// ---------------------------------------------------------------------------------------------
// The whole flow over SASL_SSL.

const ORDERS: usize = 50;

fn fraud_rules() -> FraudConfig {
    FraudConfig {
        seed: 11,
        refusal_probability: 0.3,
        max_valor: Some("5000".parse().unwrap()),
        max_total: Some("20000".parse().unwrap()),
        blocked_users: vec!["mallory".into()],
        ..FraudConfig::default()
    }
}

fn order_body(i: usize) -> Value {
    // one in ten from a blocked user, one in ten over the unit price limit
    let (usuario, valor) = match i % 10 {
        0 => ("mallory".to_string(), "10.00".to_string()),
        1 => (format!("cliente{}", i % 7), "6000.00".to_string()),
        _ => (
            format!("cliente{}", i % 7),
            format!("{}.{:02}", 1 + i % 300, i % 100),
        ),
    };
    json!({"usuario": usuario, "produto": format!("produto{}", i % 5), "quantidade": 1 + i % 3, "valor": valor})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_over_sasl_ssl_with_ca_verification() {
    let broker = broker();
    let password = password();
    let config = broker.config();
    let topics = &config.topics;
    // The tests read back over SASL_SSL too, with the settings the daemons use.
    let kafka = broker.sasl_ssl_config(USER, &password);
    let dir = tempfile::Builder::new()
        .prefix("pedidos-security-")
        .tempdir()
        .expect("a working directory for the mesh");
    let api_port = testkit::free_port();
    let rules = fraud_rules();
    let mut env = sasl_env(&config, &password, broker.ca_file());
    env.extend(vars(&[
        ("PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS", "20"),
        ("PEDIDOS_API__LISTEN", &format!("127.0.0.1:{api_port}")),
        ("PEDIDOS_FRAUD__SEED", &rules.seed.to_string()),
        (
            "PEDIDOS_FRAUD__REFUSAL_PROBABILITY",
            &rules.refusal_probability.to_string(),
        ),
        (
            "PEDIDOS_FRAUD__MAX_VALOR",
            &format!("\"{}\"", rules.max_valor.unwrap()),
        ),
        (
            "PEDIDOS_FRAUD__MAX_TOTAL",
            &format!("\"{}\"", rules.max_total.unwrap()),
        ),
        ("PEDIDOS_FRAUD__BLOCKED_USERS", r#"["mallory"]"#),
    ]));

    let started = Instant::now();
    let mut daemons: Vec<Daemon> = ["api", "fraud", "notification", "monitoring"]
        .iter()
        .map(|name| Daemon::spawn(name, name, dir.path(), &env))
        .collect();
    daemons[0].wait_for_log("the API to listen", WAIT, |e| {
        message(e).starts_with("pedidos API listening")
    });
    for d in &daemons[1..] {
        d.wait_for_log("partitions to be assigned", WAIT, |e| {
            message(e) == "partitions assigned"
        });
    }
    eprintln!("mesh up over SASL_SSL in {:?}", started.elapsed());

    let client = reqwest::Client::new();
    let api_url = format!("http://127.0.0.1:{api_port}");
    let orders: Vec<Order> = stream::iter((0..ORDERS).map(order_body))
        .map(|body| {
            let client = client.clone();
            let url = format!("{api_url}/pedidos");
            async move {
                let response = client.post(url).json(&body).send().await.unwrap();
                assert_eq!(response.status(), 202, "order {body} not accepted");
                let a: Value = response.json().await.unwrap();
                Order {
                    id: a["id"].as_str().unwrap().parse().unwrap(),
                    usuario: a["usuario"].as_str().unwrap().into(),
                    produto: a["produto"].as_str().unwrap().into(),
                    quantidade: a["quantidade"].as_u64().unwrap() as u32,
                    valor: a["valor"].as_str().unwrap().parse().unwrap(),
                    data_solicitacao: a["dataSolicitacao"].as_str().unwrap().parse().unwrap(),
                }
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(orders.len(), ORDERS);

    let rules = fraud::Rules::new(&fraud_rules());
    let expected: HashMap<String, Status> = orders
        .iter()
        .map(|o| (o.id.to_string(), fraud::decide(o, &rules).status))
        .collect();
    let approved = expected
        .values()
        .filter(|s| **s == Status::Aprovado)
        .count();
    assert!(approved > 0 && approved < ORDERS, "both outcomes exercised");

    // Exactly one verdict per order, in the topic the rules predict.
    let validos = read_topic(&kafka, &topics.pedidos_validos, approved, WAIT).await;
    let recusados = read_topic(&kafka, &topics.pedidos_recusados, ORDERS - approved, WAIT).await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (records, status) in [(&validos, Status::Aprovado), (&recusados, Status::Recusado)] {
        for record in records.iter() {
            let id = record.json()["id"].as_str().unwrap().to_string();
            assert_eq!(
                expected.get(&id),
                Some(&status),
                "order {id} in the wrong verdict topic (or unknown)"
            );
            *seen.entry(id).or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        ORDERS,
        "every order has a verdict ({} approved, {} refused read back)",
        validos.len(),
        recusados.len()
    );
    assert!(
        seen.values().all(|n| *n == 1),
        "one verdict per order: {seen:?}"
    );
    eprintln!(
        "{ORDERS} orders decided over SASL_SSL ({approved} approved) {:?} after start",
        started.elapsed()
    );

    // notification told each verdict once, through Notificacoes.
    let told = eventually("notification to tell every verdict", WAIT, || {
        let told: Vec<(String, String)> = daemons[2]
            .log_events()
            .iter()
            .filter(|e| {
                e["target"] == "notification"
                    && (e["status"] == "Aprovado" || e["status"] == "Recusado")
            })
            .map(|e| {
                (
                    e["pedido"].as_str().unwrap_or("").to_string(),
                    e["status"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        (told.len() >= ORDERS).then_some(told)
    })
    .await;
    let mut told_count: HashMap<(String, String), usize> = HashMap::new();
    for t in told {
        *told_count.entry(t).or_default() += 1;
    }
    for (id, status) in &expected {
        assert_eq!(
            told_count.get(&(id.clone(), status.to_string())),
            Some(&1),
            "order {id} {status} told once"
        );
    }

    // monitoring audited every verdict record.
    let audit_file = config.monitoring.audit_file.clone();
    let verdicts: HashSet<(String, i64, i64)> = validos
        .iter()
        .chain(&recusados)
        .map(|r| (r.topic.clone(), r.partition as i64, r.offset))
        .collect();
    eventually("the audit file to hold every verdict", WAIT, || {
        let text = std::fs::read_to_string(&audit_file).unwrap_or_default();
        let audited: HashSet<(String, i64, i64)> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|l| {
                (
                    l["topic"].as_str().unwrap_or("").to_string(),
                    l["partition"].as_i64().unwrap_or(-1),
                    l["offset"].as_i64().unwrap_or(-1),
                )
            })
            .collect();
        verdicts.is_subset(&audited).then_some(())
    })
    .await;

    for d in &mut daemons {
        assert!(d.is_running(), "{} exited. Log:\n{}", d.name, d.log_text());
        assert!(
            !d.log_text().contains(&password),
            "{}: password in the log",
            d.name
        );
    }
}
