//! What an operator sees when a daemon cannot start: bad configuration is a clear error naming
//! the file (or variable) and the key, with exit status 2; `--log-format json` gives JSON lines.

use std::time::Duration;

use e2e::exit::{run_in, Exit};

/// Every case here ends within seconds; a daemon still running after this is a failure.
const BOUND: Duration = Duration::from_secs(30);

fn run(daemon: &str, args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> Exit {
    run_in(dir, daemon, args, env, BOUND)
}

#[test]
fn bad_configuration_exits_2_naming_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let cases = [
        ("unknown key", "[kafka]\nbootstrap_server = \"x:1\"\n", "bootstrap_server"),
        ("wrong type", "[topics]\npartitions = \"três\"\n", "topics.partitions"),
        ("empty secret with SASL", "[kafka]\nsecurity_protocol = \"SASL_SSL\"\nsasl_username = \"key\"\nsasl_password = \"\"\n", "kafka.sasl_password"),
        ("malformed bootstrap list", "[kafka]\nbootstrap_servers = \"broker-without-port\"\n", "kafka.bootstrap_servers"),
        ("missing CA file", "[kafka]\nssl_ca_location = \"/nonexistent/ca.pem\"\n", "kafka.ssl_ca_location"),
    ];
    for &daemon in e2e::DAEMONS.iter() {
        for (what, toml, key) in &cases {
            let path = dir.join("bad.toml");
            std::fs::write(&path, toml).unwrap();
            let out = run(daemon, &["--config", path.to_str().unwrap()], &[], &dir);
            assert_eq!(out.code, Some(2), "{daemon}, {what}: {}", out.stderr);
            let err = &out.stderr;
            assert!(
                err.contains("bad.toml"),
                "{daemon}, {what}: names the file: {err}"
            );
            assert!(err.contains(key), "{daemon}, {what}: names {key}: {err}");
            assert!(
                out.elapsed < Duration::from_secs(5),
                "{daemon}, {what}: immediate"
            );
        }
    }
}

#[test]
fn a_bad_environment_variable_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let out = run(
        "fraud",
        &[],
        &[("PEDIDOS_FRAUD__REFUSAL_PROBABILITY", "muito")],
        &dir,
    );
    assert_eq!(out.code, Some(2));
    let err = &out.stderr;
    assert!(
        err.contains("PEDIDOS_FRAUD__REFUSAL_PROBABILITY")
            && err.contains("fraud.refusal_probability"),
        "{err}"
    );
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let out = run("notification", &["--config", "nowhere.toml"], &[], &dir);
    assert_eq!(out.code, Some(2));
    assert!(out.stderr.contains("nowhere.toml"), "{}", out.stderr);
}

#[test]
fn conf_toml_in_the_working_directory_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(dir.join("conf.toml"), "[kafka]\nsasl_pasword = \"typo\"\n").unwrap();
    let out = run("fraud", &[], &[], &dir);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("conf.toml") && out.stderr.contains("sasl_pasword"),
        "{}",
        out.stderr
    );
}

#[test]
fn json_logs_on_request_and_a_plain_exit_when_the_broker_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let port = testkit::free_port().to_string();
    let bootstrap = format!("127.0.0.1:{port}");
    let out = run(
        "notification",
        &["--log-format", "json"],
        &[
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", &bootstrap),
            ("PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS", "2"),
        ],
        &dir,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.elapsed < Duration::from_secs(15),
        "gave up after its timeout, took {:?}",
        out.elapsed
    );
    let err = &out.stderr;
    assert!(
        err.contains(&bootstrap) && err.contains("PLAINTEXT"),
        "says which servers and protocol: {err}"
    );
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!lines.is_empty(), "logged something");
    for line in lines {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            event["level"].is_string() && event["timestamp"].is_string(),
            "{event}"
        );
    }
}

#[test]
fn the_api_refuses_to_serve_anonymously_off_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    // No broker at all: the refusal comes before any connection is tried.
    let bootstrap = format!("127.0.0.1:{}", testkit::free_port());
    let out = run(
        "api",
        &[],
        &[
            ("PEDIDOS_API__LISTEN", "0.0.0.0:0"),
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", &bootstrap),
        ],
        &dir,
    );
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let err = &out.stderr;
    for words in [
        "api.auth",
        "0.0.0.0:0",
        "not a loopback",
        "api.allow_anonymous",
    ] {
        assert!(err.contains(words), "names {words}: {err}");
    }
    assert!(out.elapsed < Duration::from_secs(5), "immediate");

    // jwt mode without a key is a configuration error, exit 2, naming what to set.
    let out = run("api", &[], &[("PEDIDOS_API__AUTH", "jwt")], &dir);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("api.jwt_secret"), "{}", out.stderr);
}

#[test]
fn an_admin_port_in_use_is_a_start_up_error_naming_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    for &daemon in e2e::DAEMONS.iter() {
        let Some(var) = e2e::admin_listen_var(daemon) else {
            continue;
        };
        // No broker there: the port is checked first, so the answer is immediate.
        let env = [
            (var.as_str(), address.as_str()),
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1"),
        ];
        let out = run(daemon, &[], &env, tmp.path());
        assert_eq!(out.code, Some(1), "{daemon}: {}", out.all_output());
        out.assert_stderr_names(&[&format!("{daemon}.admin_listen"), &address, "in use"]);
        assert!(out.elapsed < Duration::from_secs(5), "{daemon}: immediate");
    }
}
