//! Nothing lost, nothing contradictory — under faults. A steady stream of orders flows through
//! the whole mesh (real processes, real broker) while daemons are killed, stopped and the
//! broker restarted; then the ledger is checked: every order the API accepted (202) has exactly
//! one verdict (identical replays are counted, a different second verdict fails), reached
//! notification and monitoring, and nothing is missing.
//!
//! Run one with its figures: `cargo test -p e2e --test faults -- --nocapture kill`.

use std::time::Duration;

use e2e::ledger::{check, Driver};
use e2e::mesh::{Mesh, WAIT};
use e2e::Daemon;
use testkit::Broker;

/// Restarts a daemon and waits until it is back at work.
async fn restart(daemon: &mut Daemon) {
    daemon.start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        daemon.is_running(),
        "{} did not restart:\n{}",
        daemon.name,
        daemon.log_text()
    );
}

async fn ledger(
    broker: &Broker,
    mesh: &mut Mesh,
    driver: Driver,
    what: &str,
) -> e2e::ledger::Report {
    let sent = driver.finish().await;
    let notification = &mesh.notification;
    let report = check(
        &broker.kafka_config(),
        &sent,
        || notification.log_events(),
        &mesh.audit_file,
        WAIT,
    )
    .await;
    eprintln!("ledger after {what}: {report}");
    report.assert_sound();
    mesh.assert_all_running();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_each_daemon_in_turn_while_10000_orders_flow() {
    let broker = Broker::start();
    let mut mesh = Mesh::start(&broker, 1).await;
    let total = 10_000;
    // About 25 s of traffic: every kill lands mid-stream.
    let driver = Driver::start(&mesh.api_url, total, 400, 32);

    let step = total / 6;
    let mut target = step;
    for victim in ["fraud", "notification", "monitoring", "api"] {
        driver.wait_accepted(target, WAIT).await;
        let daemon = match victim {
            "fraud" => &mut mesh.frauds[0],
            "notification" => &mut mesh.notification,
            "monitoring" => &mut mesh.monitoring,
            _ => &mut mesh.api,
        };
        daemon.kill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        restart(daemon).await;
        target = driver.accepted() + step;
    }
    let report = ledger(&broker, &mut mesh, driver, "kill -9 of each daemon").await;
    assert!(
        report.failures.contains_key("connect"),
        "the API really was down for a while: {report}"
    );
    assert!(
        report.accepted >= total * 9 / 10,
        "most orders accepted: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_daemons_reconnect_and_the_api_answers_503_meanwhile() {
    let mut broker = Broker::start();
    let mut mesh = Mesh::start(&broker, 1).await;
    let driver = Driver::start(&mesh.api_url, 3_000, 300, 16);
    driver.wait_accepted(1_000, WAIT).await;

    driver.pause();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A clean broker stop: noida-db only persists its log on shutdown (a SIGKILL of the broker
    // itself would lose its last second of acknowledged writes, which no client can prevent).
    broker.stop_gracefully();
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let response = client
            .post(format!("{}/pedidos", mesh.api_url))
            .json(&e2e::mesh::order_body(1))
            .send()
            .await
            .expect("the API is up while the broker is down");
        assert_eq!(response.status(), 503, "no 202 while the broker is down");
    }
    broker.restart();
    driver.resume();
    ledger(&broker, &mut mesh, driver, "a broker restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_each_daemon_loses_nothing_and_replays_nothing() {
    let broker = Broker::start();
    let mut mesh = Mesh::start(&broker, 1).await;
    let total = 5_000;
    let driver = Driver::start(&mesh.api_url, total, 300, 16);
    let step = total / 6;
    let mut target = step;
    for victim in ["fraud", "notification", "monitoring", "api"] {
        driver.wait_accepted(target, WAIT).await;
        let daemon = match victim {
            "fraud" => &mut mesh.frauds[0],
            "notification" => &mut mesh.notification,
            "monitoring" => &mut mesh.monitoring,
            _ => &mut mesh.api,
        };
        let code = daemon.terminate(Duration::from_secs(40));
        assert_eq!(
            code,
            Some(0),
            "{victim} exits 0 on SIGTERM:\n{}",
            daemon.log_text()
        );
        restart(daemon).await;
        target = driver.accepted() + step;
    }
    let report = ledger(&broker, &mut mesh, driver, "SIGTERM of each daemon").await;
    assert_eq!(
        report.duplicate_verdicts, 0,
        "a graceful stop replays nothing: {report}"
    );
    assert_eq!(
        report.notification_repeats, 0,
        "a graceful stop replays nothing: {report}"
    );
    assert_eq!(
        report.audit_repeats, 0,
        "a graceful stop replays nothing: {report}"
    );
}
