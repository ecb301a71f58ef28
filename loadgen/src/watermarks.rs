//! Reading a topic from where it ends now. The end offsets (high watermarks) are read
//! explicitly, before anything is produced: `Offset::End` would be resolved only when fetching
//! starts, after the first records may already be written.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use shared::kafka::Consumer;

/// `(partition, high watermark)` of every partition of `topic`; empty if the topic does not exist.
pub async fn end_offsets(
    consumer: &Arc<Consumer>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64)>, KafkaError> {
    let (consumer, topic) = (consumer.clone(), topic.to_string());
    // Metadata and watermark queries block: keep them off the runtime's workers.
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Ok(Vec::new());
        };
        if t.error().is_some() {
            return Ok(Vec::new());
        }
        t.partitions()
            .iter()
            .map(|p| {
                let (_, high) = consumer.fetch_watermarks(&topic, p.id(), timeout)?;
                Ok((p.id(), high))
            })
            .collect()
    })
    .await
    .expect("watermark query panicked")
}

/// Assigns the consumer `topic`'s partitions at the given offsets.
pub fn assign_at(consumer: &Consumer, topic: &str, ends: &[(i32, i64)]) -> Result<(), KafkaError> {
    let mut assignment = TopicPartitionList::new();
    for &(partition, end) in ends {
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(end))
            .expect("valid partition offset");
    }
    consumer.assign(&assignment)
}
