//! Whether this process can do its job (`GET /ready`): every Kafka producer and group consumer
//! it built reaches the cluster, every group consumer holds partitions, and every other
//! dependency it registered (the API's order store) works. Kafka clients register themselves
//! when built (`kafka::clients`); everything leaves the check when dropped.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// One client's view of its health, updated from librdkafka's callbacks.
#[derive(Debug)]
pub struct ClientHealth {
    /// `producer`, or `consumer group <id>`.
    name: String,
    /// Group consumers must hold partitions; producers need not.
    needs_assignment: bool,
    /// What `/ready` says while it is unreachable.
    unreachable: &'static str,
    reachable: AtomicBool,
    assigned: AtomicI64,
}

impl ClientHealth {
    /// A client that reached the cluster at start-up (the daemons check that before building
    /// their clients) and, for a group consumer, holds nothing yet.
    pub fn register(name: String, needs_assignment: bool) -> Arc<Self> {
        Self::add(Self {
            name,
            needs_assignment,
            unreachable: "Kafka unreachable (all brokers down)",
            reachable: AtomicBool::new(true),
            assigned: AtomicI64::new(0),
        })
    }

    /// A dependency other than Kafka, working when registered (it was opened at start-up);
    /// its user says when its use fails, and when it works again.
    pub fn register_dependency(name: &str) -> Arc<Self> {
        Self::add(Self {
            name: name.to_string(),
            needs_assignment: false,
            unreachable: "failing (the log says why)",
            reachable: AtomicBool::new(true),
            assigned: AtomicI64::new(0),
        })
    }

    fn add(health: Self) -> Arc<Self> {
        let health = Arc::new(health);
        let mut clients = CLIENTS.lock().unwrap();
        clients.retain(|c| c.strong_count() > 0);
        clients.push(Arc::downgrade(&health));
        health
    }

    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::Relaxed);
    }

    pub fn set_assigned(&self, partitions: i64) {
        self.assigned.store(partitions, Ordering::Relaxed);
    }

    fn problem(&self) -> Option<String> {
        if !self.reachable.load(Ordering::Relaxed) {
            return Some(format!("{}: {}", self.name, self.unreachable));
        }
        if self.needs_assignment && self.assigned.load(Ordering::Relaxed) <= 0 {
            return Some(format!("{}: no partitions assigned yet", self.name));
        }
        None
    }
}

static CLIENTS: Mutex<Vec<Weak<ClientHealth>>> = Mutex::new(Vec::new());

/// `Ok` when ready; otherwise every reason it is not, for the 503's JSON body.
pub fn check() -> Result<(), Vec<String>> {
    let clients: Vec<Arc<ClientHealth>> = CLIENTS
        .lock()
        .unwrap()
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    if clients.is_empty() {
        return Err(vec!["starting: no Kafka client built yet".into()]);
    }
    let problems: Vec<String> = clients.iter().filter_map(|c| c.problem()).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the registry is the process's.
    #[test]
    fn ready_once_every_client_is_reachable_and_every_group_consumer_holds_partitions() {
        assert!(check().is_err(), "no client yet");
        let producer = ClientHealth::register("producer".into(), false);
        let consumer = ClientHealth::register("consumer group g".into(), true);
        let reasons = check().unwrap_err();
        assert_eq!(reasons, ["consumer group g: no partitions assigned yet"]);
        consumer.set_assigned(3);
        assert_eq!(check(), Ok(()));
        producer.set_reachable(false);
        let reasons = check().unwrap_err();
        assert!(reasons[0].contains("unreachable"), "{reasons:?}");
        producer.set_reachable(true);
        consumer.set_assigned(0);
        assert!(check().is_err());
        drop(consumer);
        assert_eq!(check(), Ok(()), "a dropped client no longer counts");
        let store = ClientHealth::register_dependency("order store");
        assert_eq!(check(), Ok(()));
        store.set_reachable(false);
        assert_eq!(
            check().unwrap_err(),
            ["order store: failing (the log says why)"]
        );
        store.set_reachable(true);
        assert_eq!(check(), Ok(()));
    }
}
