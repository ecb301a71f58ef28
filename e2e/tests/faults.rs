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
        let daemon = mesh.daemon(victim);
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
        let daemon = mesh.daemon(victim);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_mode_kill_9_of_fraud_gives_no_duplicate_verdict() {
    let broker = Broker::start();
    let mut mesh = Mesh::start_with(&broker, 1, &[("PEDIDOS_FRAUD__TRANSACTIONAL", "true")]).await;
    mesh.frauds[0].wait_for_log("the transactional loop", WAIT, |e| {
        e2e::message(e).contains("exactly-once")
    });
    let total = 6_000;
    let driver = Driver::start(&mesh.api_url, total, 400, 32);
    for round in 1..=3 {
        driver.wait_accepted(round * total / 4, WAIT).await;
        mesh.frauds[0].kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        restart(&mut mesh.frauds[0]).await;
    }
    let sent = driver.finish().await;
    let kafka = broker.kafka_config();
    let notification = &mesh.notification;
    let report = check(
        &kafka,
        &sent,
        || notification.log_events(),
        &mesh.audit_file,
        // Long enough for every verdict; notification may never complete here (see below).
        Duration::from_secs(30),
    )
    .await;
    eprintln!("ledger after kill -9 of fraud in exactly-once mode: {report}");
    assert!(
        report.lost.is_empty() && report.contradictory.is_empty(),
        "{report}"
    );
    assert_eq!(
        report.duplicate_verdicts, 0,
        "transactions leave no duplicate verdict: {report}"
    );
    // Every verdict event committed exactly once on Notificacoes, as a fresh read_committed
    // reader sees it. (notification and monitoring are reported, not asserted, in this mode:
    // noida-db 0.2.3 makes a long-running read_committed consumer skip a producer's records
    // after one of its transactions was aborted, while a fresh reader sees them — a broker
    // defect; the same consumers are asserted complete in the at-least-once tests above.)
    let events = testkit::read_topic(&kafka, "Notificacoes", 2 * sent.accepted.len(), WAIT).await;
    let mut verdict_events: std::collections::HashMap<String, usize> = Default::default();
    for e in &events {
        let v = e.json();
        if v["status"] != "Analise" {
            *verdict_events
                .entry(v["pedidoId"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for id in sent.accepted.keys() {
        assert_eq!(
            verdict_events.get(id),
            Some(&1),
            "order {id}: one committed verdict event"
        );
    }
    mesh.assert_all_running();
}
