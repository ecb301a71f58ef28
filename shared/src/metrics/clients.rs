//! What librdkafka's statistics (every `statistics.interval.ms`, parsed into rdkafka's
//! `Statistics` by the client context) and rebalance callbacks say, as metrics: consumer lag
//! per partition, rebalances, the producer's queue, brokers' round-trip time; and each client's
//! health for readiness. Runs on librdkafka's callbacks, never on the record path.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};

use prometheus::{GaugeVec, IntCounter, IntCounterVec, IntGaugeVec};
use rdkafka::statistics::{Partition, Statistics};

use super::readiness::ClientHealth;

/// What a client is for: it names its series and says how its lag is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// `client` names its series: a process's producer may hold a prompt and a batching client
    /// (`kafka::Producer`).
    Producer { client: &'static str },
    /// A consumer group member. `committed`: its offsets are committed by the consumer itself
    /// (at-least-once), so lag counts from the committed offset, what a restart would replay;
    /// otherwise (offsets committed inside transactions, which the consumer never sees) from
    /// its position.
    Group { id: String, committed: bool },
    /// A consumer that assigns partitions itself and commits nothing (the API's read model, a
    /// rebuild of a handler's history): lag from its position.
    Reader,
}

impl Role {
    fn client(&self) -> &str {
        match self {
            Role::Producer { client } => client,
            Role::Group { id, .. } => id,
            Role::Reader => "reader",
        }
    }
}

struct Families {
    lag: IntGaugeVec,
    rebalances: IntCounterVec,
    queue: IntGaugeVec,
    sent: IntCounterVec,
    rtt: GaugeVec,
    brokers_up: IntGaugeVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| {
    Families {
    lag: super::gauge_vec(
        "pedidos_consumer_lag_records",
        "Records on a partition not yet consumed (committed, for a group member), from librdkafka's statistics.",
        &["group", "topic", "partition"],
    ),
    rebalances: super::counter_vec(
        "pedidos_consumer_rebalances_total",
        "Partition assignments received by a group consumer.",
        &["group"],
    ),
    queue: super::gauge_vec(
        "pedidos_producer_queue_messages",
        "Records in the producer's queue, not yet acknowledged by the broker.",
        &["client"],
    ),
    sent: super::counter_vec(
        "pedidos_producer_records_sent_total",
        "Records a producer's client has sent to the brokers, from librdkafka's statistics: `producer-batching` counts those that lingered to share a request.",
        &["client"],
    ),
    rtt: super::float_gauge_vec(
        "pedidos_broker_rtt_seconds",
        "Average round-trip time of the producer's requests to each broker over the last statistics interval.",
        &["client", "broker"],
    ),
    brokers_up: super::gauge_vec(
        "pedidos_kafka_brokers_up",
        "Brokers a client holds an open connection to.",
        &["client"],
    ),
}
});

/// One client's metrics and health. Its series go when the client does.
pub struct ClientMetrics {
    role: Role,
    health: Option<Arc<ClientHealth>>,
    rebalances: Option<IntCounter>,
    /// A producer's records sent, and librdkafka's running total at the last statistics.
    sent: Option<(IntCounter, AtomicI64)>,
    /// The label values of the lag and round-trip series the last statistics set, to drop
    /// those of partitions or brokers that went away.
    exported: Mutex<Exported>,
}

#[derive(Default)]
struct Exported {
    lag: HashSet<(String, String)>,
    rtt: HashSet<String>,
}

impl ClientMetrics {
    pub fn new(role: Role) -> Arc<Self> {
        let health = match &role {
            Role::Producer { client } => Some(ClientHealth::register((*client).into(), false)),
            Role::Group { id, .. } => {
                Some(ClientHealth::register(format!("consumer group {id}"), true))
            }
            // A reader's stall shows as its lag; it does not decide readiness.
            Role::Reader => None,
        };
        let rebalances = match &role {
            Role::Group { id, .. } => Some(FAMILIES.rebalances.with_label_values(&[id])),
            _ => None,
        };
        let sent = match &role {
            Role::Producer { client } => Some((
                FAMILIES.sent.with_label_values(&[client]),
                AtomicI64::new(0),
            )),
            _ => None,
        };
        Arc::new(Self {
            role,
            health,
            rebalances,
            sent,
            exported: Mutex::default(),
        })
    }

    pub fn on_statistics(&self, stats: &Statistics) {
        let client = self.role.client();
        // Real brokers only: librdkafka also lists bootstrap and coordinator entries.
        let up = stats
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0 && b.state == "UP")
            .count();
        if let Some(health) = &self.health {
            health.set_reachable(up > 0);
        }
        let mut exported = self.exported.lock().unwrap();
        if self.role != Role::Reader {
            FAMILIES
                .brokers_up
                .with_label_values(&[client])
                .set(up as i64);
            let mut rtt = HashSet::new();
            // A consumer's round trips include the broker's long poll (`fetch.wait.max.ms`):
            // only a producer's say how far the broker is.
            let brokers = stats.brokers.values().filter(|b| b.nodeid >= 0);
            let producer = matches!(self.role, Role::Producer { .. });
            for broker in brokers.filter(|_| producer) {
                let Some(window) = broker.rtt.as_ref().filter(|w| w.cnt > 0) else {
                    continue;
                };
                let id = broker.nodeid.to_string();
                FAMILIES
                    .rtt
                    .with_label_values(&[client, &id])
                    .set(window.avg as f64 / 1e6);
                rtt.insert(id);
            }
            for gone in exported.rtt.difference(&rtt) {
                let _ = FAMILIES.rtt.remove_label_values(&[client, gone]);
            }
            exported.rtt = rtt;
        }
        if let Some((sent, last)) = &self.sent {
            FAMILIES
                .queue
                .with_label_values(&[client])
                .set(stats.msg_cnt as i64);
            let before = last.swap(stats.txmsgs, Ordering::Relaxed);
            sent.inc_by(stats.txmsgs.saturating_sub(before).max(0) as u64);
            return;
        }
        let committed = matches!(
            self.role,
            Role::Group {
                committed: true,
                ..
            }
        );
        let mut lag = HashSet::new();
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                let Some(records) = partition_lag(p, committed) else {
                    continue;
                };
                let partition = partition.to_string();
                FAMILIES
                    .lag
                    .with_label_values(&[client, topic, &partition])
                    .set(records);
                lag.insert((topic.clone(), partition));
            }
        }
        for (topic, partition) in exported.lag.difference(&lag) {
            let _ = FAMILIES
                .lag
                .remove_label_values(&[client, topic, partition]);
        }
        exported.lag = lag;
    }

    /// librdkafka lost every broker: not ready until statistics show one back.
    pub fn on_all_brokers_down(&self) {
        if let Some(health) = &self.health {
            health.set_reachable(false);
        }
    }

    pub fn on_assigned(&self, partitions: usize) {
        if let Some(r) = &self.rebalances {
            r.inc();
        }
        if let Some(health) = &self.health {
            health.set_assigned(partitions as i64);
        }
    }

    pub fn on_revoked(&self) {
        if let Some(health) = &self.health {
            health.set_assigned(0);
        }
    }
}

impl Drop for ClientMetrics {
    fn drop(&mut self) {
        let client = self.role.client().to_string();
        let exported = self.exported.get_mut().unwrap();
        for (topic, partition) in &exported.lag {
            let _ = FAMILIES
                .lag
                .remove_label_values(&[&client, topic, partition]);
        }
        for broker in &exported.rtt {
            let _ = FAMILIES.rtt.remove_label_values(&[&client, broker]);
        }
    }
}

/// A partition's lag, or `None` for one this client does not consume (librdkafka lists every
/// partition of a subscribed topic; only assigned ones fetch) or whose offsets are unknown.
fn partition_lag(p: &Partition, committed: bool) -> Option<i64> {
    if p.partition < 0 || matches!(p.fetch_state.as_str(), "none" | "stopping" | "stopped") {
        return None;
    }
    // The end a read_committed consumer can reach (the last stable offset), as librdkafka's
    // own consumer_lag uses.
    let end = p.ls_offset;
    if end < 0 {
        return None;
    }
    if committed && p.consumer_lag >= 0 {
        return Some(p.consumer_lag);
    }
    // Nothing committed (or not by this consumer): from the position, or from the log's start
    // before the first record arrived.
    let from = if committed && p.committed_offset >= 0 {
        p.committed_offset
    } else if p.app_offset >= 0 {
        p.app_offset
    } else if p.lo_offset >= 0 {
        p.lo_offset
    } else {
        return None;
    };
    Some((end - from).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(fetch_state: &str, offsets: [i64; 5]) -> Partition {
        let [lo, ls, app, committed, lag] = offsets;
        let json = serde_json::json!({
            "partition": 0, "broker": 1, "leader": 1, "desired": true, "unknown": false,
            "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
            "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": fetch_state, "query_offset": 0,
            "next_offset": 0, "app_offset": app, "stored_offset": -1001,
            "committed_offset": committed, "eof_offset": -1001, "lo_offset": lo,
            "hi_offset": ls, "ls_offset": ls, "consumer_lag": lag, "consumer_lag_stored": -1,
            "txmsgs": 0, "txbytes": 0, "rxmsgs": 0, "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0,
            "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_group_member_counts_from_its_committed_offset() {
        assert_eq!(
            partition_lag(&partition("active", [0, 100, 90, 80, 20]), true),
            Some(20)
        );
        // Nothing committed yet, nothing read: the whole partition.
        assert_eq!(
            partition_lag(&partition("active", [10, 100, -1001, -1001, -1]), true),
            Some(90)
        );
    }

    #[test]
    fn a_reader_counts_from_its_position() {
        assert_eq!(
            partition_lag(&partition("active", [0, 100, 90, -1001, -1]), false),
            Some(10)
        );
        assert_eq!(
            partition_lag(&partition("active", [0, 0, -1001, -1001, -1]), false),
            Some(0)
        );
    }

    #[test]
    fn partitions_not_fetched_have_no_lag() {
        for state in ["none", "stopped"] {
            assert_eq!(
                partition_lag(&partition(state, [0, 100, 90, 80, 20]), true),
                None
            );
        }
        assert_eq!(
            partition_lag(&partition("active", [-1001, -1001, -1001, -1001, -1]), true),
            None
        );
    }
}
