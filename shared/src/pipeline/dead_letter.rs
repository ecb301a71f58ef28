//! Dead-lettering, shared by both loops: a record the handler refuses is copied, bytes and
//! headers intact, to its topic's dead-letter topic with headers saying where it came from and
//! why, so one bad record never stops a partition.

use super::handler::{Handled, Handler, InRecord, Poison};
use crate::config::TopicsConfig;
use crate::events::OutRecord;
use crate::metrics::pipeline::{self as metrics, TopicCounters};

/// Header names on dead-letter records.
pub const DLQ_SOURCE_TOPIC: &str = "dlq-source-topic";
pub const DLQ_SOURCE_PARTITION: &str = "dlq-source-partition";
pub const DLQ_SOURCE_OFFSET: &str = "dlq-source-offset";
pub const DLQ_ERROR: &str = "dlq-error";
pub const DLQ_CONSUMER_GROUP: &str = "dlq-consumer-group";
/// Set (to the original size) when a dead-letter copy had to be cut to fit a Kafka record.
pub const DLQ_PAYLOAD_TRUNCATED: &str = "dlq-payload-truncated";
/// Largest payload copied to a dead-letter topic whole: with the original headers added, a
/// copy of a record near the broker's size limit would otherwise be refused, and the daemon
/// would be stuck retrying it.
pub const DLQ_MAX_PAYLOAD: usize = 512 * 1024;

/// Turns a handler's refusals into dead-letter records (to `<topic><suffix>`, headers naming
/// `group`), and counts them.
pub struct DeadLetters {
    suffix: String,
    group: String,
    count: u64,
    counters: TopicCounters,
}

impl DeadLetters {
    /// Counting, from the start, the refusals of `topics` (the loop's inputs).
    pub fn new(suffix: &str, group: &str, topics: &[String]) -> Self {
        Self {
            suffix: suffix.to_string(),
            group: group.to_string(),
            count: 0,
            counters: metrics::dead_lettered(group, topics),
        }
    }

    /// The handler's outputs for a record, or — for a record it refuses — a copy of it for the
    /// input topic's dead-letter topic.
    pub(super) fn handle<H: Handler>(&mut self, handler: &mut H, record: &InRecord<'_>) -> Handled {
        match handler.handle(record) {
            Ok(handled) => handled,
            Err(poison) => self.refuse(record, poison),
        }
    }

    /// A copy of a refused record for its input topic's dead-letter topic.
    pub(super) fn refuse(&mut self, record: &InRecord<'_>, poison: Poison) -> Handled {
        self.count += 1;
        self.counters.get(record.topic).inc();
        let dlq = TopicsConfig::dlq_with_suffix(record.topic, &self.suffix);
        tracing::warn!(
            topic = record.topic,
            partition = record.partition,
            offset = record.offset,
            dlq = %dlq,
            dead_lettered = self.count,
            error = %poison.reason,
            "record sent to dead-letter topic"
        );
        Handled::publish(vec![dead_letter(record, &dlq, &poison, &self.group)])
    }
}

fn dead_letter(record: &InRecord<'_>, dlq: &str, poison: &Poison, group: &str) -> OutRecord {
    let mut headers: Vec<(String, Vec<u8>)> = record
        .headers()
        .map(|(k, v)| (k.to_string(), v.unwrap_or_default().to_vec()))
        .collect();
    let mut payload = record.payload.unwrap_or_default();
    if payload.len() > DLQ_MAX_PAYLOAD {
        headers.push((
            DLQ_PAYLOAD_TRUNCATED.to_string(),
            payload.len().to_string().into_bytes(),
        ));
        payload = &payload[..DLQ_MAX_PAYLOAD];
    }
    headers.extend([
        (
            DLQ_SOURCE_TOPIC.to_string(),
            record.topic.as_bytes().to_vec(),
        ),
        (
            DLQ_SOURCE_PARTITION.to_string(),
            record.partition.to_string().into_bytes(),
        ),
        (
            DLQ_SOURCE_OFFSET.to_string(),
            record.offset.to_string().into_bytes(),
        ),
        (DLQ_ERROR.to_string(), poison.reason.as_bytes().to_vec()),
        (DLQ_CONSUMER_GROUP.to_string(), group.as_bytes().to_vec()),
    ]);
    OutRecord {
        topic: dlq.to_string(),
        key: record.key.map(<[u8]>::to_vec),
        payload: payload.to_vec(),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(r: &'a OutRecord, name: &str) -> Option<&'a [u8]> {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_slice())
    }

    #[test]
    fn dead_letters_keep_the_bytes_and_say_where_they_came_from() {
        let mut record = InRecord::new("Pedidos", Some(&[0xff, 0x00, 0x7b]));
        record.partition = 2;
        record.offset = 41;
        record.key = Some(b"ana");
        let dlq = dead_letter(
            &record,
            "Pedidos_dlq",
            &Poison::new("payload is not UTF-8"),
            "fraud",
        );
        assert_eq!(dlq.topic, "Pedidos_dlq");
        assert_eq!(dlq.payload, vec![0xff, 0x00, 0x7b]);
        assert_eq!(dlq.key.as_deref(), Some(&b"ana"[..]));
        assert_eq!(header(&dlq, DLQ_SOURCE_TOPIC), Some(&b"Pedidos"[..]));
        assert_eq!(header(&dlq, DLQ_SOURCE_PARTITION), Some(&b"2"[..]));
        assert_eq!(header(&dlq, DLQ_SOURCE_OFFSET), Some(&b"41"[..]));
        assert_eq!(header(&dlq, DLQ_ERROR), Some(&b"payload is not UTF-8"[..]));
        assert_eq!(header(&dlq, DLQ_CONSUMER_GROUP), Some(&b"fraud"[..]));
        assert_eq!(header(&dlq, DLQ_PAYLOAD_TRUNCATED), None);
    }

    #[test]
    fn oversized_dead_letters_are_cut_and_marked() {
        let huge = vec![b'x'; DLQ_MAX_PAYLOAD + 10];
        let record = InRecord::new("Pedidos", Some(&huge));
        let dlq = dead_letter(&record, "Pedidos_dlq", &Poison::new("too big"), "fraud");
        assert_eq!(dlq.payload.len(), DLQ_MAX_PAYLOAD);
        let original = (DLQ_MAX_PAYLOAD + 10).to_string();
        assert_eq!(
            header(&dlq, DLQ_PAYLOAD_TRUNCATED),
            Some(original.as_bytes())
        );
    }
}
