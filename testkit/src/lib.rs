//! Test support for the pedidos workspace (a dev-dependency only, never shipped).
//!
//! * [`Broker`]: real Apache Kafka (KRaft) as child processes, through the same launcher as the
//!   local run (`scripts/kafka.sh`): one node, a three-node cluster, a SASL_SSL listener, or one
//!   node shared by a test binary's tests, each test in topics and groups of its own.
//! * [`read_topic`]: reads a whole topic from the beginning with a throw-away consumer, as
//!   [`ConsumedRecord`]s.
//! * [`produce_raw`], [`produce_raw_many`]: write arbitrary bytes (garbage included) into a
//!   topic.
//! * [`Postgres`]: a real PostgreSQL server (Debian's `postgresql` package) in a temporary
//!   directory, each test in a database of its own.
//! * [`Registry`]: a real Schema Registry (Apicurio Registry 3, its Confluent-compatible API)
//!   on a free port with in-memory storage, one per test binary.
//! * [`free_port`]: a TCP port on 127.0.0.1 that was free a moment ago.
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//!
//! let broker = testkit::Broker::shared();
//! let config = broker.config(); // topics and groups of this test's own
//! shared::kafka::ensure_topics(&config.kafka, &config.topics).await.unwrap();
//! let topic = &config.topics.pedidos;
//! testkit::produce_raw(&config.kafka, topic, Some(b"k".as_slice()), b"{}").await;
//! let records = testkit::read_topic(&config.kafka, topic, 1, Duration::from_secs(10)).await;
//! assert_eq!(records[0].key_str().as_deref(), Some("k"));
//! # }
//! ```

mod broker;
mod kafka;
mod postgres;
mod process;
mod records;
mod registry;
mod tls;

pub use broker::{free_port, free_ports, Broker};
pub use postgres::Postgres;
pub use records::{
    order_ids, partition_count, produce_events, produce_raw, produce_raw_many, read_topic,
    reset_group_to_earliest, ConsumedRecord,
};
pub use registry::Registry;
pub use tls::TlsFiles;
