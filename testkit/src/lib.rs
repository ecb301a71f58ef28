//! Test support for the pedidos workspace (a dev-dependency only, never shipped).
//!
//! * [`Broker`]: a real noida-db Kafka broker process on a free port with its own data
//!   directory, one per test, killed when dropped; it can be stopped and restarted on the same
//!   port with the same data to test outages.
//! * [`read_topic`]: reads a whole topic from the beginning with a throw-away consumer.
//! * [`produce_raw`], [`produce_raw_many`]: write arbitrary bytes (garbage included) into a
//!   topic.
//! * [`free_port`]: a TCP port on 127.0.0.1 that was free a moment ago.
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//!
//! let broker = testkit::Broker::start();
//! let config = broker.config();
//! shared::kafka::ensure_topics(&config.kafka, &config.topics).await.unwrap();
//! testkit::produce_raw(&config.kafka, "Pedidos", Some(b"k".as_slice()), b"{}").await;
//! let records =
//!     testkit::read_topic(&config.kafka, "Pedidos", 1, Duration::from_secs(10)).await;
//! assert_eq!(records[0].key_str().as_deref(), Some("k"));
//! # }
//! ```

mod broker;
mod records;

pub use broker::{free_port, Broker, NOIDA_DB_ENV};
pub use records::{produce_raw, produce_raw_many, read_topic, Record};
