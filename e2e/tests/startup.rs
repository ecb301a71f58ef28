//! What an operator sees when a daemon cannot start: bad configuration is a clear error naming
//! the file (or variable) and the key, with exit status 2; `--log-format json` gives JSON lines.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn run(
    daemon: &str,
    args: &[&str],
    env: &[(&str, &str)],
    dir: &std::path::Path,
) -> (Output, Duration) {
    let mut command = Command::new(e2e::binary(daemon));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PEDIDOS_")) {
        command.env_remove(key);
    }
    let started = Instant::now();
    let output = command
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("daemon runs");
    (output, started.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    for daemon in ["api", "fraud", "notification", "monitoring"] {
        for (what, toml, key) in &cases {
            let path = dir.join("bad.toml");
            std::fs::write(&path, toml).unwrap();
            let (out, took) = run(daemon, &["--config", path.to_str().unwrap()], &[], &dir);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{daemon}, {what}: {}",
                stderr(&out)
            );
            let err = stderr(&out);
            assert!(
                err.contains("bad.toml"),
                "{daemon}, {what}: names the file: {err}"
            );
            assert!(err.contains(key), "{daemon}, {what}: names {key}: {err}");
            assert!(took < Duration::from_secs(5), "{daemon}, {what}: immediate");
        }
    }
}

#[test]
fn a_bad_environment_variable_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let (out, _) = run(
        "fraud",
        &[],
        &[("PEDIDOS_FRAUD__REFUSAL_PROBABILITY", "muito")],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
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
    let (out, _) = run("notification", &["--config", "nowhere.toml"], &[], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nowhere.toml"), "{}", stderr(&out));
}

#[test]
fn conf_toml_in_the_working_directory_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::write(dir.join("conf.toml"), "[kafka]\nsasl_pasword = \"typo\"\n").unwrap();
    let (out, _) = run("fraud", &[], &[], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("conf.toml") && stderr(&out).contains("sasl_pasword"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn json_logs_on_request_and_a_plain_exit_when_the_broker_is_unreachable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let port = testkit::free_port().to_string();
    let bootstrap = format!("127.0.0.1:{port}");
    let (out, took) = run(
        "notification",
        &["--log-format", "json"],
        &[
            ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", &bootstrap),
            ("PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS", "2"),
        ],
        &dir,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        took < Duration::from_secs(15),
        "gave up after its timeout, took {took:?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains(&bootstrap) && err.contains("PLAINTEXT"),
        "says which servers and protocol: {err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
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
