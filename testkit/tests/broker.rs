//! The testkit against a real noida-db: start, produce, read back, stop, restart.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use testkit::{produce_raw, produce_raw_many, read_topic, Broker, Record};

const WAIT: Duration = Duration::from_secs(15);

fn by_position(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

#[tokio::test]
async fn produced_records_are_read_back_from_the_beginning() {
    let broker = Broker::start();
    assert!(broker.is_running());
    assert_ne!(broker.port(), 9092);
    assert_eq!(broker.bootstrap(), format!("127.0.0.1:{}", broker.port()));

    let config = broker.config();
    assert_eq!(config.kafka.bootstrap_servers, broker.bootstrap());
    assert_eq!(config.kafka.startup_timeout_secs, 10);
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

    let started = Instant::now();
    let records = read_topic(&config.kafka, topic, 3, WAIT).await;
    let took = started.elapsed();
    assert_eq!(records.len(), 3, "{records:#?}");
    assert!(took < Duration::from_secs(5), "read_topic took {took:?}");
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
async fn data_survives_stop_and_restart_on_the_same_port() {
    let mut broker = Broker::start();
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

    // noida-db snapshots its state about once a second; a SIGKILL loses the last second.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let port = broker.port();
    broker.stop();
    assert!(!broker.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after stop"
    );
    broker.stop(); // stopping twice is harmless

    broker.restart();
    assert!(broker.is_running());
    assert_eq!(broker.port(), port);
    TcpStream::connect(("127.0.0.1", port)).expect("restarted broker accepts connections");

    let after = by_position(read_topic(&kafka, topic, 3, WAIT).await);
    assert_eq!(after, before);
    let mut positions: Vec<(i32, i64)> = after.iter().map(|r| (r.partition, r.offset)).collect();
    let mut expected = written.clone();
    positions.sort();
    expected.sort();
    assert_eq!(positions, expected);
    let mut keys: Vec<String> = after.iter().filter_map(Record::key_str).collect();
    keys.sort();
    assert_eq!(keys, ["k1", "k2", "k3"]);

    // And it still takes writes after the restart.
    produce_raw(&kafka, topic, Some(b"k4"), b"k4").await;
    assert_eq!(read_topic(&kafka, topic, 4, WAIT).await.len(), 4);
}

#[tokio::test]
async fn graceful_stop_keeps_everything_acknowledged() {
    let mut broker = Broker::start();
    let config = broker.config();
    shared::kafka::ensure_topics(&config.kafka, &config.topics)
        .await
        .unwrap();
    let topic = config.topics.pedidos_recusados.as_str();
    produce_raw(&config.kafka, topic, Some(b"last"), b"just acknowledged").await;
    broker.stop_gracefully();
    assert!(!broker.is_running());
    broker.restart();
    let records = read_topic(&config.kafka, topic, 1, WAIT).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].key_str().as_deref(), Some("last"));
}

#[test]
fn brokers_are_independent_and_killed_on_drop() {
    let first = Broker::start();
    let second = Broker::start();
    assert_ne!(first.port(), second.port());
    assert_ne!(first.data_dir(), second.data_dir());
    let port = first.port();
    let dir = first.dir().to_path_buf();
    drop(first);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists(), "temporary directory kept after drop");
    assert!(second.is_running());
}
