//! The one place that turns configuration into Kafka clients, checks the cluster is reachable,
//! creates the topics and hands records to a producer.

mod admin;
mod clients;
mod context;
mod pace;
mod produce;

use std::time::Duration;

use rdkafka::error::KafkaError;

pub use admin::{check_connectivity, ensure_topics, topic_ids, TopicIdError};
pub use clients::{
    client_config, consumer, consumer_fetching, header_value, producer, reader, reader_fetching,
    transactional_consumer, transactional_producer, Consumer, Fetch, BATCHED_FETCH_WAIT_MS,
    BRIEF_FETCH_WAIT_MS,
};
pub use context::Context;
pub use produce::{enqueue, DeliveryFuture, Producer};

/// Why a daemon could not start talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid Kafka client setting: {0}")]
    Client(#[source] KafkaError),
    #[error(
        "cannot connect to Kafka at {servers} (security.protocol={protocol}) within {waited:?}: {reason}"
    )]
    Unreachable {
        servers: String,
        protocol: String,
        waited: Duration,
        reason: String,
    },
    #[error("Kafka at {servers} rejected the credentials of user {username:?} (sasl.mechanisms={mechanism}): {reason}")]
    Authentication {
        servers: String,
        username: String,
        mechanism: String,
        reason: String,
    },
    #[error("cannot create topic {topic}: {reason}")]
    CreateTopic { topic: String, reason: String },
    #[error("topic {topic} does not exist and topics.create is false")]
    MissingTopic { topic: String },
}
