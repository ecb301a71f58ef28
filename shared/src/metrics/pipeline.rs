//! The consumer loop's metrics, so every daemon has them: records consumed, produced (once the
//! broker acknowledged them) and dead-lettered by topic, and records in flight, by group.
//!
//! Handles are resolved once per topic and kept in a short list searched by name: no lock and
//! no allocation per record (a daemon reads at most a handful of topics).

use std::sync::LazyLock;

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

struct Families {
    consumed: IntCounterVec,
    produced: IntCounterVec,
    dead_lettered: IntCounterVec,
    in_flight: IntGaugeVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    consumed: super::counter_vec(
        "pedidos_records_consumed_total",
        "Records received by the consumer loop.",
        &["group", "topic"],
    ),
    produced: super::counter_vec(
        "pedidos_records_produced_total",
        "Records the loop produced and the broker acknowledged (committed, in exactly-once mode).",
        &["group", "topic"],
    ),
    dead_lettered: super::counter_vec(
        "pedidos_records_dead_lettered_total",
        "Records the handler refused, copied to their topic's dead-letter topic, by input topic.",
        &["group", "topic"],
    ),
    in_flight: super::gauge_vec(
        "pedidos_records_in_flight",
        "Records received whose outputs are not yet acknowledged (offsets not yet stored).",
        &["group"],
    ),
});

/// Counters by topic for one group, resolved on a topic's first record.
pub struct TopicCounters {
    family: &'static IntCounterVec,
    group: String,
    by_topic: Vec<(String, IntCounter)>,
}

impl TopicCounters {
    fn new(family: &'static IntCounterVec, group: &str) -> Self {
        Self {
            family,
            group: group.to_string(),
            by_topic: Vec::new(),
        }
    }

    /// The counter of `topic`: a lookup in a short list, except the first time.
    pub fn get(&mut self, topic: &str) -> &IntCounter {
        let index = match self.by_topic.iter().position(|(t, _)| t == topic) {
            Some(i) => i,
            None => {
                let counter = self.family.with_label_values(&[&self.group, topic]);
                self.by_topic.push((topic.to_string(), counter));
                self.by_topic.len() - 1
            }
        };
        &self.by_topic[index].1
    }
}

/// What one loop updates.
pub struct LoopMetrics {
    pub consumed: TopicCounters,
    pub produced: TopicCounters,
    pub in_flight: IntGauge,
}

impl LoopMetrics {
    /// Series for `topics` (the inputs) exist from the start, at zero: a rate needs the value
    /// before the first increase.
    pub fn new(group: &str, topics: &[String]) -> Self {
        let mut metrics = Self {
            consumed: TopicCounters::new(&FAMILIES.consumed, group),
            produced: TopicCounters::new(&FAMILIES.produced, group),
            in_flight: FAMILIES.in_flight.with_label_values(&[group]),
        };
        for topic in topics {
            metrics.consumed.get(topic);
        }
        metrics
    }
}

/// The dead-letter counters of one group, by input topic, at zero from the start.
pub fn dead_lettered(group: &str, topics: &[String]) -> TopicCounters {
    let mut counters = TopicCounters::new(&FAMILIES.dead_lettered, group);
    for topic in topics {
        counters.get(topic);
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_group_and_topic() {
        let mut a = LoopMetrics::new("test-group-a", &["T0".to_string()]);
        let mut b = LoopMetrics::new("test-group-b", &[]);
        a.consumed.get("T1").inc();
        a.consumed.get("T1").inc();
        a.consumed.get("T2").inc();
        b.consumed.get("T1").inc();
        let text = super::super::render();
        for line in [
            "pedidos_records_consumed_total{group=\"test-group-a\",topic=\"T1\"} 2",
            "pedidos_records_consumed_total{group=\"test-group-a\",topic=\"T2\"} 1",
            "pedidos_records_consumed_total{group=\"test-group-b\",topic=\"T1\"} 1",
            "pedidos_records_consumed_total{group=\"test-group-a\",topic=\"T0\"} 0",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }
}
