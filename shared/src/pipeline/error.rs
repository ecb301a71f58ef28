//! Why the loop stopped.

use rdkafka::error::KafkaError;

use crate::admin::AdminError;
use crate::kafka::StartupError;
use crate::schema_registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Startup(#[from] StartupError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("cannot subscribe to {topics}: {source}")]
    Subscribe { topics: String, source: KafkaError },
    #[error("the broker refused Kafka transactions ({0}); brokers without them need fraud.transactional = false")]
    TransactionsUnsupported(KafkaError),
    #[error("transaction failed beyond recovery: {0}")]
    Transaction(KafkaError),
}
