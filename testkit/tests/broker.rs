//! The testkit against real Apache Kafka: start, produce, read back, crash, restart, a cluster
//! losing a node, SASL_SSL credentials.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::{produce_raw, produce_raw_many, read_topic, Broker, ConsumedRecord};

const WAIT: Duration = Duration::from_secs(30);

fn by_position(mut records: Vec<ConsumedRecord>) -> Vec<ConsumedRecord> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

fn port_of(bootstrap: &str) -> u16 {
    bootstrap.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn produced_records_are_read_back_from_the_beginning() {
    let broker = Broker::shared();
    assert!(broker.is_running());
    assert_ne!(port_of(&broker.bootstrap()), 9092);

    let config = broker.config();
    assert_eq!(config.kafka.bootstrap_servers, broker.bootstrap());
    assert_eq!(config.api.listen, "127.0.0.1:0");
    assert_eq!(config.fraud.seed, 7);
    assert!(config.monitoring.audit_file.starts_with(broker.dir()));

    shared::kafka::check_connectivity(&config.kafka)
        .await
        .unwrap();
    shared::kafka::ensure_topics(&config.kafka, &config.topics)
        .await
        .unwrap();
    let topic = config.topics.pedidos.as_str();

    produce_raw(&config.kafka, topic, Some(b"a"), br#"{"n":1}"#).await;
    produce_raw(&config.kafka, topic, Some(b"b"), b"\xff\xfe not utf-8").await;
    produce_raw(&config.kafka, topic, None, b"").await;

    let records = read_topic(&config.kafka, topic, 3, WAIT).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(records.iter().all(|r| r.topic == topic));

    let a = records
        .iter()
        .find(|r| r.key.as_deref() == Some(b"a"))
        .unwrap();
    assert_eq!(a.key_str().as_deref(), Some("a"));
    assert_eq!(a.json(), serde_json::json!({"n": 1}));
    assert_eq!(a.header("anything"), None);
    assert!(a.timestamp_ms.is_some());
    let b = records
        .iter()
        .find(|r| r.key.as_deref() == Some(b"b"))
        .unwrap();
    assert_eq!(b.payload.as_deref(), Some(&b"\xff\xfe not utf-8"[..]));
    assert!(records.iter().any(|r| r.key.is_none()));

    // Reading is repeatable (nothing committed) and returns more than `expected` if there is.
    let again = read_topic(&config.kafka, topic, 1, WAIT).await;
    assert_eq!(by_position(again), by_position(records));

    // An empty topic, and a topic that does not exist.
    let empty = read_topic(&config.kafka, &config.topics.notificacoes, 0, WAIT).await;
    assert!(empty.is_empty(), "{empty:#?}");
    let missing = read_topic(&config.kafka, "no-such-topic", 1, Duration::from_secs(1)).await;
    assert!(missing.is_empty());
}

#[tokio::test]
async fn each_config_is_a_namespace_of_its_own_on_a_shared_broker() {
    let broker = Broker::shared();
    let (one, two) = (broker.config(), broker.config());
    assert_eq!(one.kafka.bootstrap_servers, two.kafka.bootstrap_servers);
    let names = |c: &shared::Config| {
        let mut names = c.topics.all();
        names.extend([
            c.fraud.group_id.clone(),
            c.notification.group_id.clone(),
            c.monitoring.group_id.clone(),
        ]);
        names
    };
    for name in names(&one) {
        assert!(!names(&two).contains(&name), "{name} is in both namespaces");
    }
    assert_ne!(one.monitoring.audit_file, two.monitoring.audit_file);

    shared::kafka::ensure_topics(&one.kafka, &one.topics)
        .await
        .unwrap();
    shared::kafka::ensure_topics(&two.kafka, &two.topics)
        .await
        .unwrap();
    produce_raw(&one.kafka, &one.topics.pedidos, None, b"only in one").await;
    assert_eq!(
        read_topic(&one.kafka, &one.topics.pedidos, 1, WAIT)
            .await
            .len(),
        1
    );
    assert!(read_topic(&two.kafka, &two.topics.pedidos, 0, WAIT)
        .await
        .is_empty());
}

#[tokio::test]
async fn acknowledged_records_survive_kill_9_and_sigterm_of_the_broker() {
    let broker = Broker::start();
    let kafka = broker.kafka_config();
    let config = broker.config();
    shared::kafka::ensure_topics(&kafka, &config.topics)
        .await
        .unwrap();
    let topic = config.topics.pedidos_validos.as_str();
    let written = produce_raw_many(
        &kafka,
        topic,
        &[
            (Some(b"k1"), b"k1"),
            (Some(b"k2"), b"k2"),
            (Some(b"k3"), b"k3"),
        ],
    )
    .await;
    assert_eq!(written.len(), 3);
    let before = by_position(read_topic(&kafka, topic, 3, WAIT).await);
    assert_eq!(before.len(), 3);

    // A crash right after the acknowledgement: Kafka has written it to the log (the page
    // cache survives the process).
    let port = port_of(&broker.bootstrap());
    broker.kill();
    assert!(!broker.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after kill"
    );
    broker.kill(); // twice is harmless

    broker.restart();
    assert!(broker.is_running());
    assert_eq!(port_of(&broker.bootstrap()), port);
    let after = by_position(read_topic(&kafka, topic, 3, WAIT).await);
    assert_eq!(after, before);
    let mut positions: Vec<(i32, i64)> = after.iter().map(|r| (r.partition, r.offset)).collect();
    let mut expected = written.clone();
    positions.sort();
    expected.sort();
    assert_eq!(positions, expected);

    // A clean stop keeps what was acknowledged just before it, and writes go on afterwards.
    produce_raw(&kafka, topic, Some(b"k4"), b"k4").await;
    broker.terminate();
    assert!(!broker.is_running());
    broker.restart();
    let keys: Vec<String> = by_position(read_topic(&kafka, topic, 4, WAIT).await)
        .iter()
        .filter_map(ConsumedRecord::key_str)
        .collect();
    let mut keys = keys;
    keys.sort();
    assert_eq!(keys, ["k1", "k2", "k3", "k4"]);
}

#[test]
fn a_dropped_broker_is_gone_with_its_directory() {
    let broker = Broker::start();
    let other = Broker::shared();
    assert_ne!(broker.bootstrap(), other.bootstrap());
    let port = port_of(&broker.bootstrap());
    let dir = broker.dir().to_path_buf();
    assert!(dir.join("node-1").join("kafka.log").is_file());
    drop(broker);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists(), "temporary directory kept after drop");
    assert!(other.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_keeps_acknowledged_records_when_a_leader_dies() {
    let broker = Broker::start_cluster();
    assert_eq!(broker.node_ids(), [1, 2, 3]);
    assert_eq!(broker.bootstrap().split(',').count(), 3);
    let config = broker.config();
    // Topics get the cluster's replication factor: 3 here.
    shared::kafka::ensure_topics(&config.kafka, &config.topics)
        .await
        .unwrap();
    let topic = config.topics.pedidos.as_str();
    produce_raw(&config.kafka, topic, Some(b"before"), b"before").await;
    broker.wait_in_sync(WAIT);

    let leader = broker.leaders(topic)[0];
    assert!(leader > 0, "partition 0 has a leader");
    broker.kill_node(leader as u32);
    // The controllers fence the dead node after `broker.session.timeout.ms` (9 s) and move its
    // leaderships; then acks=all with min.insync.replicas=2 takes writes on two nodes.
    let deadline = Instant::now() + WAIT;
    while broker.leaders(topic)[0] == leader {
        assert!(
            Instant::now() < deadline,
            "leadership never moved off node {leader}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    produce_raw(&config.kafka, topic, Some(b"during"), b"during").await;

    broker.restart_node(leader as u32);
    broker.wait_in_sync(Duration::from_secs(60));
    let keys: Vec<String> = read_topic(&config.kafka, topic, 2, WAIT)
        .await
        .iter()
        .filter_map(ConsumedRecord::key_str)
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.contains(&"before".to_string()) && keys.contains(&"during".to_string()));
}

#[tokio::test]
async fn the_sasl_ssl_listener_checks_the_password_and_the_ca() {
    let broker = Broker::start_sasl_ssl(&[("alice", "alice-secret")]);
    let right = broker.sasl_ssl_config("alice", "alice-secret");
    shared::kafka::check_connectivity(&right)
        .await
        .expect("the right password over TLS with the test CA is accepted");

    let started = Instant::now();
    let wrong = broker.sasl_ssl_config("alice", "not-the-secret");
    let error = shared::kafka::check_connectivity(&wrong)
        .await
        .expect_err("a wrong password is refused by the broker");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refused at once, not at the start-up timeout: {error}"
    );
    assert!(
        error.to_string().to_lowercase().contains("authentication"),
        "{error}"
    );

    let mut untrusted = broker.sasl_ssl_config("alice", "alice-secret");
    untrusted.ssl_ca_location = Some(broker.wrong_ca_file().to_path_buf());
    let error = shared::kafka::check_connectivity(&untrusted)
        .await
        .expect_err("a broker certificate from another CA is refused");
    assert!(error.to_string().contains("certificate"), "{error}");
}
