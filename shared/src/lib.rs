//! What the pedidos daemons share: configuration, Kafka clients, event types, the consumer loop,
//! telemetry and shutdown.

pub mod admin;
pub mod asyncapi;
pub mod config;
pub mod contracts;
pub mod daemon;
pub mod dev_token;
pub mod events;
pub mod kafka;
pub mod metrics;
pub mod pipeline;
pub mod schema_registry;
pub mod shutdown;
pub mod telemetry;
pub mod validation;
pub mod wire;

pub use config::Config;
