//! Nothing lost, nothing contradictory — under faults. A steady stream of orders flows through
//! the whole mesh (real processes, real Apache Kafka) while daemons are killed or stopped and the
//! broker is killed or restarted; then the ledger is checked: every order the API accepted (202)
//! has exactly one verdict (identical replays are counted, a different second verdict fails),
//! reached notification and monitoring, and nothing is missing.
//!
//! Tests that stop the broker run their own ([`Broker::start`]); the others share one.
//!
//! Run one with its figures: `cargo test -p e2e --test faults -- --nocapture kill`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::ledger::{finish_and_check, Driver, Report};
use e2e::mesh::{Mesh, Options, WAIT};
use e2e::orders::assert_posts_answer_503;
use e2e::{message, Daemon};
use rdkafka::consumer::Consumer as _;
use testkit::Broker;

/// `session.timeout.ms` of every group consumer (shared/src/kafka.rs): how long the broker
/// waits before it gives a silent member's partitions to the others.
const SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemons in the order the fault tests hit them: the consumers in start order, then the
/// API.
fn victims() -> impl Iterator<Item = &'static str> {
    let (api, consumers) = e2e::DAEMONS.split_first().expect("a mesh has daemons");
    consumers.iter().chain([api]).copied()
}

/// How a daemon is stopped.
#[derive(Clone, Copy, PartialEq)]
enum Stop {
    /// SIGKILL: no flush, no commit, no leaving the group.
    Kill,
    /// SIGTERM: must exit 0 after finishing its in-flight work.
    Terminate,
}

/// Stops each daemon in turn, at evenly spaced points of a stream of `total` orders (or at once
/// when the previous victim's recovery took the stream past its point), and starts it again.
/// Returns, per consumer, how long after its restart it held all its partitions again.
async fn each_daemon_in_turn(
    mesh: &mut Mesh,
    driver: &Driver,
    total: usize,
    stop: Stop,
) -> Vec<(&'static str, Duration)> {
    let mut handovers = Vec::new();
    for (i, victim) in victims().enumerate() {
        driver
            .wait_accepted((i + 1) * total / (e2e::DAEMONS.len() + 1), WAIT)
            .await;
        // What it held alone in its group when the mesh came up (none for the API, which reads
        // without a group).
        let partitions = mesh.partitions(victim);
        let took = stop_and_restart(mesh.daemon_mut(victim), stop, partitions).await;
        if let Some(took) = took {
            handovers.push((victim, took));
        }
    }
    eprintln!("partitions back after each restart: {handovers:?}");
    handovers
}

/// Stops `daemon`, starts it again and checks it did not exit at once; for a consumer holding
/// `partitions`, waits until it holds them again and returns how long that took after the
/// restart.
async fn stop_and_restart(
    daemon: &mut Daemon,
    stop: Stop,
    partitions: Option<usize>,
) -> Option<Duration> {
    let seen = daemon.log_events().len();
    match stop {
        Stop::Kill => {
            daemon.kill();
            // A crashed process does not come back at once.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Stop::Terminate => {
            let code = tokio::task::block_in_place(|| daemon.terminate(WAIT));
            assert_eq!(
                code,
                Some(0),
                "{} exits 0 on SIGTERM:\n{}",
                daemon.name,
                daemon.log_text()
            );
        }
    }
    let restarted = Instant::now();
    daemon.start();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        daemon.is_running(),
        "{} did not restart:\n{}",
        daemon.name,
        daemon.log_text()
    );
    let partitions = partitions?;
    wait_assigned(daemon, seen, partitions).await;
    Some(restarted.elapsed())
}

/// Waits until a log line written after the first `seen` ones says the daemon holds
/// `partitions` partitions.
async fn wait_assigned(daemon: &Daemon, seen: usize, partitions: usize) {
    e2e::eventually(
        &format!("{} to hold its {partitions} partitions again", daemon.name),
        WAIT,
        || {
            daemon.log_events().iter().skip(seen).find(|e| {
                message(e) == "partitions assigned"
                    && e["partitions"].as_str().unwrap_or("").split(',').count() == partitions
            })?;
            Some(())
        },
    )
    .await;
}

/// Kills each daemon in turn under 10,000 orders and checks the ledger; returns it and the
/// consumers' hand-over times.
async fn kill_9_each_daemon(options: Options, what: &str) -> (Report, Vec<(&str, Duration)>) {
    let mut mesh = Mesh::start_with_options(Broker::shared(), options).await;
    let total = 10_000;
    // About 50 s of traffic, so that every kill lands mid-stream even when each consumer waits
    // out the session timeout (10 s) of its killed predecessor.
    let driver = Driver::start(&mesh.api_url, total, 200, 32);
    let handovers = each_daemon_in_turn(&mut mesh, &driver, total, Stop::Kill).await;
    let report = finish_and_check(&mut mesh, driver, what).await;
    assert!(
        report.failures.contains_key("connect"),
        "the API really was down for a while: {report}"
    );
    assert!(
        report.accepted >= total * 9 / 10,
        "most orders accepted: {report}"
    );
    (report, handovers)
}

/// The configuration users run: no `group.instance.id`, so the broker hands a killed member's
/// partitions to its restarted successor only once the dead one's session has timed out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_each_daemon_in_turn_while_10000_orders_flow() {
    kill_9_each_daemon(Options::default(), "kill -9 of each daemon").await;
}

/// Static membership: the restarted member takes its partitions back under its old instance
/// id, well before the session of the killed one would have expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_each_daemon_in_turn_with_static_membership() {
    let options = Options {
        static_membership: true,
        ..Options::default()
    };
    let (_, handovers) =
        kill_9_each_daemon(options, "kill -9 of each daemon, static membership").await;
    for (victim, took) in handovers {
        assert!(
            took < SESSION_TIMEOUT,
            "{victim} took {took:?} to get its partitions back: it waited for the session timeout"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_each_daemon_loses_nothing_and_replays_nothing() {
    let mut mesh = Mesh::start(Broker::shared(), 1).await;
    let total = 5_000;
    let driver = Driver::start(&mesh.api_url, total, 300, 16);
    each_daemon_in_turn(&mut mesh, &driver, total, Stop::Terminate).await;
    let report = finish_and_check(&mut mesh, driver, "SIGTERM of each daemon").await;
    assert_eq!(
        (
            report.duplicate_verdicts,
            report.notification_repeats,
            report.audit_repeats
        ),
        (0, 0, 0),
        "a graceful stop replays nothing: {report}"
    );
}

/// Stops the broker with `stop` under load (the daemons keep running), checks that POSTs
/// meanwhile answer 503, starts it again and checks the ledger.
async fn broker_outage(what: &str, stop: impl FnOnce(&Broker)) {
    let broker = Broker::start();
    let mut mesh = Mesh::start(&broker, 1).await;
    let driver = Driver::start(&mesh.api_url, 3_000, 300, 16);
    driver.wait_accepted(1_000, WAIT).await;
    tokio::task::block_in_place(|| stop(&broker));
    assert!(!broker.is_running());
    // Generous: this proves the 503, not how soon it comes.
    assert_posts_answer_503(&mesh.api_url, WAIT).await;
    tokio::task::block_in_place(|| broker.restart());
    let report = finish_and_check(&mut mesh, driver, what).await;
    assert!(
        report.failed("http 503") > 0,
        "the stream's POSTs met the outage too: {report}"
    );
    assert!(
        report.accepted > 1_000,
        "orders were accepted again after the restart: {report}"
    );
}

/// A crash of the broker itself: records it acknowledged are in its log (the page cache
/// survives the process), so no order that got a 202 may be missing afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kill_9_loses_no_accepted_order_and_the_api_answers_503_meanwhile() {
    broker_outage("kill -9 of the broker", Broker::kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_graceful_restart_daemons_reconnect_and_the_api_answers_503_meanwhile() {
    broker_outage("a graceful broker restart", Broker::terminate).await;
}

/// The mesh's Kafka settings for a reader that sees aborted transactions' records too.
fn read_uncommitted(mesh: &Mesh) -> shared::config::KafkaConfig {
    let mut uncommitted = mesh.config.kafka.clone();
    uncommitted
        .consumer_properties
        .0
        .insert("isolation.level".into(), "read_uncommitted".into());
    uncommitted
}

/// Waits until a transaction of fraud's holds verdicts on the broker: a verdict partition
/// whose end as a `read_uncommitted` reader sees it (the high watermark) is past its end as a
/// `read_committed` reader sees it (the last stable offset). librdkafka asks for the end at
/// the client's own isolation level.
async fn wait_open_transaction(mesh: &Mesh) {
    let (committed, uncommitted) = (mesh.config.kafka.clone(), read_uncommitted(mesh));
    let topics = &mesh.config.topics;
    let topics = [
        topics.pedidos_validos.clone(),
        topics.pedidos_recusados.clone(),
    ];
    let open = tokio::task::spawn_blocking(move || {
        let group = "faults-open-transaction";
        let committed = shared::kafka::consumer(&committed, group).expect("a consumer");
        let uncommitted = shared::kafka::consumer(&uncommitted, group).expect("a consumer");
        let deadline = Instant::now() + WAIT;
        let partitions: Vec<(&str, i32)> = topics
            .iter()
            .flat_map(|topic| {
                let count = testkit::partition_count(&committed, topic, deadline);
                (0..count).map(move |p| (topic.as_str(), p))
            })
            .collect();
        let end = |consumer: &shared::kafka::Consumer, (topic, partition): (&str, i32)| {
            consumer
                .fetch_watermarks(topic, partition, WAIT)
                .map_or(-1, |(_, high)| high)
        };
        while Instant::now() < deadline {
            if partitions
                .iter()
                .any(|&p| end(&uncommitted, p) > end(&committed, p))
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    })
    .await
    .expect("the watch does not panic");
    assert!(
        open,
        "no transaction of fraud seen open on the broker within {WAIT:?}"
    );
}

/// Exactly-once mode: fraud killed three times mid-transaction. Its restart (same
/// `transactional.id`) aborts the open transaction, so read_committed readers see each verdict
/// once; notification and monitoring, both read_committed, must still see everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_mode_kill_9_of_fraud_gives_no_duplicate_verdict() {
    let options = Options::default().with_env(&[("PEDIDOS_FRAUD__TRANSACTIONAL", "true")]);
    let mut mesh = Mesh::start_with_options(Broker::shared(), options).await;
    mesh.daemon("fraud")
        .wait_for_log("the transactional loop", WAIT, |e| {
            message(e).contains("exactly-once")
        });
    // Three kills, each while one of fraud's transactions holds verdicts on the broker, so
    // each restart has a transaction to abort (unless that one's commit ends between the look
    // and the kill: a few milliseconds of its hundred). Orders flow until the kills are done:
    // each restart waits out the dead member's session (10 s) for its partitions, so a set
    // number of orders could run out before the last kill.
    const KILLS: usize = 3;
    let driver = Driver::start(&mesh.api_url, usize::MAX, 200, 32);
    driver.wait_accepted(500, WAIT).await;
    for _ in 0..KILLS {
        wait_open_transaction(&mesh).await;
        stop_and_restart(mesh.daemon_mut("fraud"), Stop::Kill, Some(3)).await;
    }
    // And a little after: the last restart decides new orders, not only the aborted ones.
    driver.wait_accepted(driver.accepted() + 500, WAIT).await;
    driver.stop();
    let report = finish_and_check(&mut mesh, driver, "kill -9 of fraud in exactly-once mode").await;
    assert_eq!(
        report.duplicate_verdicts, 0,
        "transactions leave no duplicate verdict: {report}"
    );
    // Every verdict event committed exactly once on Notificacoes, as a fresh read_committed
    // reader sees it.
    let events = testkit::read_topic(
        &mesh.config.kafka,
        &mesh.config.topics.notificacoes,
        2 * report.accepted,
        WAIT,
    )
    .await;
    let mut verdict_events: HashMap<String, usize> = HashMap::new();
    for e in &events {
        let v = e.json();
        if v["status"] != "Analise" {
            *verdict_events
                .entry(v["pedidoId"].as_str().unwrap_or_default().to_string())
                .or_default() += 1;
        }
    }
    let sent_twice: Vec<&String> = verdict_events
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        sent_twice.is_empty(),
        "orders with more than one committed verdict event: {:?}",
        &sent_twice[..sent_twice.len().min(5)]
    );
    // The kills did hit open transactions: a read_uncommitted reader also sees the verdicts
    // of the aborted ones, which the read_committed consumers above never saw.
    let uncommitted = read_uncommitted(&mesh);
    let topics = &mesh.config.topics;
    // It sees at least the committed ones: a read that ended early (a pause in the fetches)
    // is done again.
    let deadline = Instant::now() + WAIT;
    let all_verdicts = loop {
        let mut all = 0;
        for topic in [&topics.pedidos_validos, &topics.pedidos_recusados] {
            all += testkit::read_topic(&uncommitted, topic, 1, WAIT)
                .await
                .len();
        }
        if all >= report.verdict_records {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "a read_uncommitted reader saw only {all} verdicts: {report}"
        );
    };
    let aborted = all_verdicts - report.verdict_records;
    eprintln!("verdicts of aborted transactions: {aborted}");
    assert!(
        aborted > 0,
        "no kill hit an open transaction, so nothing here tested the abort: {report}"
    );
    // Transactions abort only on failures the log should show; say so if librdkafka's abort
    // itself failed (librdkafka issue #4849: INVALID_TXN_STATE).
    let fraud_log = mesh.daemon("fraud").log_text();
    for line in fraud_log
        .lines()
        .filter(|l| l.contains("transaction failed") || l.contains("INVALID_TXN_STATE"))
        .take(10)
    {
        eprintln!("fraud: {line}");
    }
}
