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
//! The broker is Apache Kafka itself ([`e2e::secure::broker`]): a SASL_SSL listener that checks
//! PLAIN passwords and presents a certificate of a fresh test CA, beside a PLAINTEXT listener.
//! One such broker serves every test of this file (none stops it); each test works in topics and
//! groups of its own ([`testkit::Broker::config`]), and the meshes are the default one
//! ([`e2e::mesh::Mesh`]) reaching it over SASL_SSL. When Kafka cannot start, the tests fail with
//! its log; they never skip.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e::exit::{run_until_exit, Exit};
use e2e::mesh::{fraud_rules, Mesh, Options, WAIT};
use e2e::orders::{order_body, post_orders};
use e2e::secure::{broker, distinctive_secret, password, sasl_ssl_config, sasl_ssl_env, USER};
use e2e::{eventually, message};
use serde_json::Value;
use shared::events::Status;
use testkit::read_topic;

/// Start-up bound for the cases that have to wait it out (the default, 30 s, is measured once).
const SHORT_TIMEOUT_SECS: u64 = 5;
/// Time a daemon may need beyond its start-up bound to print the error and exit.
const EXIT_SLACK: Duration = Duration::from_secs(3);
/// How soon a refusal the broker states (a wrong password, an untrusted certificate) must end
/// the daemon: well inside the default 30 s bound, so it cannot pass by timing out, yet loose
/// enough for a debug build on a busy 2-core machine.
const REFUSED_WITHIN: Duration = Duration::from_secs(15);

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

/// Runs fraud with `env` and a start-up bound of [`SHORT_TIMEOUT_SECS`]; asserts it gives up
/// within that bound, with exit code 1.
fn gives_up_within_the_short_timeout(env: &[(&str, &str)]) -> Exit {
    let timeout = Duration::from_secs(SHORT_TIMEOUT_SECS);
    let mut env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
    env.push((
        "PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS",
        SHORT_TIMEOUT_SECS.to_string(),
    ));
    let exit = run_until_exit("fraud", &env, timeout + Duration::from_secs(20));
    exit.assert_failed_within(1, Duration::ZERO, timeout + EXIT_SLACK);
    exit
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
        &sasl_ssl_env(&wrong, broker.ca_file()),
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
    let exit = gives_up_within_the_short_timeout(&[("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", host)]);
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
        &[("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", bootstrap.as_str())],
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
    let exit = gives_up_within_the_short_timeout(&[
        ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", &plaintext),
        ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "SSL"),
    ]);
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
    let exit = gives_up_within_the_short_timeout(&[("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", &tls)]);
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
        &[
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:9"),
            ("PEDIDOS_KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
            ("PEDIDOS_KAFKA__SASL_USERNAME", USER),
            ("PEDIDOS_KAFKA__SASL_PASSWORD", "irrelevant"),
            ("PEDIDOS_KAFKA__SSL_CA_LOCATION", missing),
        ],
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
        &sasl_ssl_env(&password, broker.wrong_ca_file()),
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
fn assert_secret_absent(secret: &str, outputs: &[(String, String)]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_output_at_debug_level() {
    let broker = broker();
    // Our debug logs, and librdkafka's own debug logs (configuration dump, SASL) as well.
    let debug = |librdkafka: &str| {
        vec![
            ("RUST_LOG".to_string(), "debug".to_string()),
            (
                "PEDIDOS_KAFKA__PROPERTIES__DEBUG".to_string(),
                librdkafka.to_string(),
            ),
        ]
    };

    // Refused: both daemons exit, and neither repeats the password it sent.
    let wrong = distinctive_secret("bad");
    let mut outputs = Vec::new();
    for binary in ["fraud", "api"] {
        let mut env = sasl_ssl_env(&wrong, broker.ca_file());
        env.extend(debug("all"));
        env.push(("PEDIDOS_API__LISTEN".into(), "127.0.0.1:0".into()));
        let exit =
            tokio::task::block_in_place(|| run_until_exit(binary, &env, Duration::from_secs(60)));
        assert_eq!(exit.code, Some(1), "{binary}\n{exit}");
        assert!(
            exit.stderr.contains("rejected the credentials"),
            "{binary}\n{exit}"
        );
        assert!(
            exit.stdout.contains("sasl.password = [redacted]"),
            "{binary} ran with librdkafka's configuration dump\n{exit}"
        );
        outputs.push((binary.to_string(), exit.all_output()));
    }
    assert_secret_absent(&wrong, &outputs);

    // Working: the whole mesh connects, an order goes through, then every daemon stops cleanly.
    let right = password();
    let options = Options {
        env: debug("conf,security,broker"),
        ..Options::default()
    };
    let mut mesh = Mesh::start_in(sasl_ssl_config(&right, broker.ca_file()), options).await;
    let order = &post_orders(&mesh.api_url, vec![order_body(4)]).await[0];
    let id = order.id.to_string();
    let fraud = mesh.daemon("fraud");
    eventually("the order's verdict", WAIT, || {
        fraud
            .log_events()
            .iter()
            .any(|e| message(e) == "verdict" && e["pedido"] == id.as_str())
            .then_some(())
    })
    .await;
    let mut logs = Vec::new();
    for daemon in mesh.daemons() {
        let code = tokio::task::block_in_place(|| daemon.terminate(Duration::from_secs(30)));
        assert_eq!(code, Some(0), "{} exits 0 on SIGTERM", daemon.name);
        logs.push((daemon.name.clone(), daemon.log_text()));
    }
    assert_secret_absent(&right, &logs);
}

// ---------------------------------------------------------------------------------------------
// The whole flow over SASL_SSL.

const ORDERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_over_sasl_ssl_with_ca_verification() {
    let password = password();
    let started = Instant::now();
    let mut mesh = Mesh::start_in(
        sasl_ssl_config(&password, broker().ca_file()),
        Options::default(),
    )
    .await;
    eprintln!("mesh up over SASL_SSL in {:?}", started.elapsed());
    // The tests read back over SASL_SSL too, with the settings the daemons use.
    let (kafka, topics) = (mesh.config.kafka.clone(), mesh.config.topics.clone());

    let orders = post_orders(&mesh.api_url, (0..ORDERS).map(order_body).collect()).await;
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
        let told: Vec<(String, String)> = mesh
            .daemon("notification")
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
    let audit_file = mesh.audit_file.clone();
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

    mesh.assert_all_running();
    for d in mesh.daemons() {
        assert!(
            !d.log_text().contains(&password),
            "{}: password in the log",
            d.name
        );
    }
}
