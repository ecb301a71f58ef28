//! The mesh on a three-node Apache Kafka cluster (replication factor 3, `min.insync.replicas=2`:
//! how Confluent Cloud keeps data) while brokers crash, restart one by one, or two of three go
//! down. Each test runs a steady stream of orders through the default mesh on a cluster of its
//! own and ends with the ledger: nothing that got a 202 lost or contradicted, every order
//! verdicted, notified and audited, and no daemon restarted or exited.
//!
//! A dead node is fenced after `broker.session.timeout.ms` (9 s); only then do its leaderships
//! move and the in-sync replica sets shrink, so writes stall (and POSTs may answer 503) for
//! about that long after each crash.
//!
//! Run one with its figures: `cargo test -p e2e --test cluster -- --nocapture rolling`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e::exit::run_until_exit;
use e2e::ledger::{finish_and_check, Driver, Report};
use e2e::mesh::{Mesh, WAIT};
use e2e::orders::assert_posts_answer_503;
use testkit::Broker;

/// Orders per second of every test's stream.
const RATE: u32 = 300;
/// Orders the stream must take between two faults: it flows again.
const PROGRESS: usize = 300;
/// How long a restarted node may take to catch up with every partition.
const IN_SYNC: Duration = Duration::from_secs(120);
/// How long a dead node's leaderships may take to move: the fence (9 s) and the elections,
/// on a busy 2-core machine.
const FAILOVER: Duration = Duration::from_secs(60);
/// The longest a POST may take to answer when the broker does not acknowledge: the API's
/// `api.publish_timeout_ms` (5 s) plus its own 0.5 s margin, plus slack for a busy machine.
const POST_ANSWER: Duration = Duration::from_secs(8);

/// A cluster, the default mesh on it, and a stream of orders that lasts until the ledger.
struct Run {
    broker: Broker,
    mesh: Mesh,
    driver: Driver,
    /// Declared last, so released once the cluster and mesh above are gone.
    _alone: tokio::sync::MutexGuard<'static, ()>,
}

/// One three-node cluster and its mesh at a time: two at once are six brokers and two meshes on
/// a two-core machine, and then leaderships can take longer to move than the API's publish
/// timeout, which is the starved machine's doing, not the cluster's.
static ONE_CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl Run {
    async fn start() -> Run {
        let alone = ONE_CLUSTER.lock().await;
        let broker = block(Broker::start_cluster);
        let mesh = Mesh::start(&broker, 1).await;
        let driver = Driver::start(&mesh.api_url, usize::MAX, RATE, 32);
        let run = Run {
            broker,
            mesh,
            driver,
            _alone: alone,
        };
        run.flowing().await;
        run
    }

    /// Waits until the stream had [`PROGRESS`] more orders accepted.
    async fn flowing(&self) {
        self.driver
            .wait_accepted(self.driver.accepted() + PROGRESS, WAIT)
            .await;
    }

    /// Partitions of the mesh's topics led by each node (`-1`: partitions without a leader).
    fn leaderships(&self) -> BTreeMap<i32, usize> {
        let mut led = BTreeMap::new();
        for topic in self.mesh.config.topics.all() {
            for leader in self.broker.leaders(&topic) {
                *led.entry(leader).or_default() += 1;
            }
        }
        led
    }

    /// Waits until `node` leads none of the mesh's partitions and every partition has a
    /// leader; returns how long that took.
    async fn wait_failover(&self, node: u32) -> Duration {
        let started = Instant::now();
        loop {
            let led = self.leaderships();
            if !led.contains_key(&(node as i32)) && !led.contains_key(&-1) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < FAILOVER,
                "node {node}'s leaderships did not move within {FAILOVER:?}: {led:?}\n{}",
                self.broker.log()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Ends the stream and checks the ledger: nothing lost, contradictory, unnotified or
    /// unaudited, and the daemons that started with the test are all still running.
    async fn ledger(mut self, what: &str) -> Report {
        self.driver.stop();
        finish_and_check(&mut self.mesh, self.driver, what).await
    }
}

/// The testkit's broker calls block for seconds: off the runtime's worker, so the order
/// stream keeps flowing meanwhile.
fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Each node killed in turn, always the one leading most partitions (so every node, with its
/// partition leaderships and whatever group coordinators it holds, goes down once), restarted
/// and back in sync before the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_each_broker_in_turn_leaders_included_loses_nothing() {
    let run = Run::start().await;
    let mut not_killed = run.broker.node_ids();
    while !not_killed.is_empty() {
        let led = run.leaderships();
        let victim = *not_killed
            .iter()
            .max_by_key(|id| led.get(&(**id as i32)))
            .expect("a node left");
        assert!(
            led.contains_key(&(victim as i32)),
            "node {victim} leads partitions when it is killed: {led:?}"
        );
        not_killed.retain(|id| *id != victim);
        block(|| run.broker.kill_node(victim));
        let moved = run.wait_failover(victim).await;
        eprintln!("node {victim} (led {led:?}) killed; its leaderships moved in {moved:?}");
        // Two in-sync replicas are enough for acks=all with min.insync.replicas=2.
        run.flowing().await;
        block(|| run.broker.restart_node(victim));
        block(|| run.broker.wait_in_sync(IN_SYNC));
        run.flowing().await;
    }
    run.ledger("kill -9 of each broker in turn").await;
}

/// SIGTERM of each node in turn (a controlled shutdown moves its leaderships first), back in
/// sync before the next: the way a cluster is upgraded. No POST may answer 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_all_three_brokers_loses_nothing() {
    let run = Run::start().await;
    for id in run.broker.node_ids() {
        let clean = block(|| run.broker.terminate_node(id));
        assert!(
            clean,
            "node {id} shut down on SIGTERM by itself\n{}",
            run.broker.log()
        );
        run.flowing().await;
        block(|| run.broker.restart_node(id));
        block(|| run.broker.wait_in_sync(IN_SYNC));
        run.flowing().await;
    }
    let report = run.ledger("a rolling restart of the three brokers").await;
    // Leaderships move before a node stops and the others keep two in-sync replicas: the
    // producers only retry against the new leaders, well within the API's publish timeout.
    assert_eq!(
        report.failed("http 503"),
        0,
        "a rolling restart is invisible to clients: {report}"
    );
}

/// One node crashes and is fenced (every partition is left with two in-sync replicas, the
/// `min.insync.replicas`), then a second crashes. The controllers have lost their quorum (2 of
/// 3 voters), so the second is never fenced: it stays in the in-sync sets, and no acks=all
/// write can be acknowledged. POSTs answer 503 at `api.publish_timeout_ms`, never 202. Once one
/// node returns the quorum is back, the other dead node is fenced, the partitions have a single
/// in-sync replica (the broker refuses writes: not enough replicas) until the returned one has
/// caught up, and the mesh goes on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_brokers_down_posts_answer_503_and_the_mesh_recovers_when_one_returns() {
    let run = Run::start().await;
    let nodes = run.broker.node_ids();
    let (first, second) = (nodes[0], nodes[1]);
    block(|| run.broker.kill_node(first));
    run.wait_failover(first).await;
    run.flowing().await;

    block(|| run.broker.kill_node(second));
    // A POST in flight at the kill may still have been acknowledged by both replicas; once
    // those have answered, nothing more may be accepted.
    tokio::time::sleep(POST_ANSWER).await;
    let accepted = run.driver.accepted();
    let messages = assert_posts_answer_503(&run.mesh.api_url, POST_ANSWER).await;
    eprintln!("POST with two of three brokers down: 503 {messages:?}");
    assert_eq!(
        run.driver.accepted(),
        accepted,
        "the stream got a 202 with two of three brokers down"
    );

    let returned = Instant::now();
    block(|| run.broker.restart_node(first));
    run.flowing().await;
    eprintln!(
        "orders accepted again {:?} after node {first} was started again",
        returned.elapsed()
    );
    let report = run.ledger("two of three brokers down, then one back").await;
    assert!(
        report.failed("http 503") > 0,
        "the stream met the outage: {report}"
    );
}

/// How many replicas each partition of `topics` has, for those of them that exist.
fn replica_counts(broker: &Broker, topics: &[String]) -> BTreeMap<String, Vec<usize>> {
    let mut counts = BTreeMap::new();
    for topic in topics {
        let replicas = broker.replicas(topic);
        if !replicas.is_empty() {
            counts.insert(topic.clone(), replicas.iter().map(Vec::len).collect());
        }
    }
    counts
}

/// The daemons create their topics with the cluster's replication factor (3 here) when none
/// is configured; a factor larger than the cluster stops the API at start-up, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_get_3_replicas_and_a_replication_factor_over_the_cluster_size_fails_at_start() {
    let run = Run::start().await;
    let topics = run.mesh.config.topics.all();
    let created = replica_counts(&run.broker, &topics);
    let expected: BTreeMap<String, Vec<usize>> =
        topics.iter().map(|t| (t.clone(), vec![3; 3])).collect();
    assert_eq!(created, expected, "3 partitions of 3 replicas each");

    // A fresh namespace, so that its topics are still to be created.
    let config = run.broker.config();
    let dir = tempfile::tempdir().expect("a directory for the API");
    let mut env = e2e::mesh::env(
        &config,
        testkit::free_port(),
        &dir.path().join("audit.jsonl"),
    );
    env.push(("PEDIDOS_TOPICS__REPLICATION_FACTOR".into(), "4".into()));
    let exit = block(|| run_until_exit("api", &env, WAIT));
    assert!(
        exit.code.is_some_and(|c| c != 0),
        "the API exits non-zero\n{exit}"
    );
    let error = exit
        .stderr
        .lines()
        .find(|l| l.starts_with("api: "))
        .unwrap_or_else(|| panic!("no start-up error on stderr\n{exit}"));
    eprintln!(
        "replication factor 4 on 3 brokers: exit {:?} after {:?}: {error}",
        exit.code, exit.elapsed
    );
    assert!(
        config
            .topics
            .all()
            .iter()
            .any(|t| error.contains(t.as_str())),
        "the error names the topic: {error}"
    );
    for needed in ["replication factor", "4", "3 brokers"] {
        assert!(error.contains(needed), "the error says {needed:?}: {error}");
    }
    assert!(
        replica_counts(&run.broker, &config.topics.all()).is_empty(),
        "no topic was created with another replication factor"
    );
    run.ledger("topic creation checks").await;
}
