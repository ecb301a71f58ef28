//! The records this process has handed to the audit writer, by position, so a record handed
//! again in the same process — replayed after a rebalance, as when the loop stops polling for
//! longer than `max.poll.interval.ms` while the audit file cannot be written and the group
//! moves on without it — gets no second line. Its line is queued already (or written), and its
//! offset is stored after that line's, since the loop stores offsets in consumption order.
//!
//! A position alone is not a record (a topic deleted and created again starts its offsets
//! over), so each entry keeps a fingerprint of the record: its timestamp, key and payload.
//! Bounded: two generations of [`GENERATION`] positions; a replay older than that is written
//! again, as a replay after a restart is.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use shared::pipeline::InRecord;

/// Positions per generation: two are kept.
const GENERATION: usize = 32_768;

#[derive(Default)]
pub struct Handed {
    current: HashMap<(String, i32, i64), u64>,
    previous: HashMap<(String, i32, i64), u64>,
}

impl Handed {
    /// Whether `record` was handed to the writer before in this process; remembers it if not.
    pub fn again(&mut self, record: &InRecord<'_>) -> bool {
        let position = (record.topic.to_string(), record.partition, record.offset);
        let fingerprint = fingerprint(record);
        let known = self
            .current
            .get(&position)
            .or_else(|| self.previous.get(&position));
        if known == Some(&fingerprint) {
            return true;
        }
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(position, fingerprint);
        false
    }
}

fn fingerprint(record: &InRecord<'_>) -> u64 {
    let mut hasher = DefaultHasher::new();
    (record.timestamp_ms, record.key, record.payload).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(offset: i64, payload: &'a [u8], at: i64) -> InRecord<'a> {
        let mut r = InRecord::new("Pedidos", Some(payload));
        r.partition = 1;
        r.offset = offset;
        r.timestamp_ms = Some(at);
        r
    }

    #[test]
    fn a_record_handed_again_is_known_and_a_new_one_at_the_same_position_is_not() {
        let mut handed = Handed::default();
        assert!(!handed.again(&record(7, b"a", 1)));
        assert!(handed.again(&record(7, b"a", 1)), "a replay");
        assert!(!handed.again(&record(8, b"b", 2)));
        // A topic created again: offset 7 holds another record.
        assert!(!handed.again(&record(7, b"c", 3)));
        assert!(handed.again(&record(7, b"c", 3)));
    }

    #[test]
    fn it_remembers_two_generations() {
        let mut handed = Handed::default();
        for offset in 0..(2 * GENERATION as i64) {
            assert!(!handed.again(&record(offset, b"x", offset)));
        }
        assert!(
            handed.again(&record(0, b"x", 0)),
            "still in the previous generation"
        );
        assert!(!handed.again(&record(2 * GENERATION as i64, b"x", 0)));
        assert!(
            !handed.again(&record(1, b"x", 1)),
            "forgotten: written again"
        );
    }
}
