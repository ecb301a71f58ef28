//! Dead letters read back by the consumer group that wrote them: every daemon reading a topic
//! dead-letters its own copy of a record it cannot handle, under its group
//! (`dlq-consumer-group`), so a test of one daemon's dead letters picks that group's out.

use shared::config::KafkaConfig;
use testkit::{read_topic, ConsumedRecord};

use crate::mesh::WAIT;

/// The dead letters `group` wrote on `dlq`, once there are `n` of them (or what there is after
/// [`WAIT`]).
pub async fn of_group(
    kafka: &KafkaConfig,
    dlq: &str,
    group: &str,
    n: usize,
) -> Vec<ConsumedRecord> {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut expected = n;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let all = read_topic(kafka, dlq, expected, left).await;
        let ours: Vec<ConsumedRecord> = all
            .iter()
            .filter(|r| r.header("dlq-consumer-group").as_deref() == Some(group))
            .cloned()
            .collect();
        if ours.len() >= n || left.is_zero() {
            return ours;
        }
        expected = all.len() + 1;
    }
}
