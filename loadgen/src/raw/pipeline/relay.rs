//! The relay: fraud's part, run by the daemons' own consumer loop
//! (`shared::pipeline::at_least_once::run`) with
//! a handler that looks each order's records up instead of deciding. Per order read, fraud's
//! evaluated order and verdict are produced; the order's offset is stored once both are
//! acknowledged, in the order read, as in fraud.

use std::sync::Arc;

use shared::config::{Config, TopicsConfig};
use shared::events::HEADER_CORRELATION_ID;
use shared::kafka;
use shared::pipeline::{
    at_least_once, DeadLetters, Handled, Handler, InRecord, LoopOptions, Poison,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Workload;
use crate::raw::records::OrderPool;
use crate::raw::{RawError, PRODUCER_TIMEOUT};

/// A running relay.
pub struct Relay {
    pub task: JoinHandle<()>,
    /// Ends the loop: it then stores its last offsets and commits.
    pub stop: CancellationToken,
}

/// Starts the relay on `topics.pedidos` in consumer group `group`. Its errors, and the first
/// record it cannot match to an order of `pool`, go to `failed`.
pub fn spawn(
    config: &Config,
    topics: &TopicsConfig,
    group: &str,
    pool: Arc<OrderPool>,
    workload: Workload,
    failed: mpsc::Sender<RawError>,
) -> Result<Relay, RawError> {
    let consumer = kafka::consumer(&config.kafka, group)?;
    let producer = kafka::producer(&config.kafka, PRODUCER_TIMEOUT)?;
    let options = LoopOptions::new(
        group,
        vec![topics.pedidos.clone()],
        config.fraud.max_in_flight,
    );
    let dead_letters = DeadLetters::new(&topics.dlq_suffix, group, &options.topics);
    let handler = Lookup {
        pool,
        workload,
        failed: failed.clone(),
    };
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            // The one call of the daemons' loop in loadgen.
            let ran =
                at_least_once::run(&consumer, &producer, handler, &options, dead_letters, stop)
                    .await;
            if let Err(e) = ran {
                let _ = failed.send(RawError::Relay(e)).await;
            }
        }
    });
    Ok(Relay { task, stop })
}

/// Fraud's records for an order, looked up by its correlation id.
struct Lookup {
    pool: Arc<OrderPool>,
    workload: Workload,
    failed: mpsc::Sender<RawError>,
}

impl Handler for Lookup {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison> {
        let found = record
            .headers()
            .find(|(name, _)| *name == HEADER_CORRELATION_ID)
            .and_then(|(_, id)| self.pool.find(id?));
        let Some(order) = found else {
            let unknown = RawError::UnknownRecord {
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
            };
            let poison = Poison::new(&unknown);
            // The loop dead-letters it and goes on, but the phase's counts are off: end it.
            let _ = self.failed.try_send(unknown);
            return Err(poison);
        };
        self.workload.relayed_one();
        Ok(Handled::publish(vec![
            order.evaluated.clone(),
            order.verdict.clone(),
        ]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::topics;
    use shared::config::FraudConfig;

    fn lookup() -> (Lookup, mpsc::Receiver<RawError>) {
        let topics = topics::pipeline(&Config::default(), "p", 3);
        let pool = OrderPool::new(&topics, &FraudConfig::default(), 1, 20);
        let (failed, errors) = mpsc::channel(1);
        let lookup = Lookup {
            pool: Arc::new(pool),
            workload: Workload::new(1, 1),
            failed,
        };
        (lookup, errors)
    }

    #[test]
    fn an_unknown_record_is_poison_and_ends_the_phase() {
        let (mut lookup, mut errors) = lookup();
        let poison = lookup
            .handle(&InRecord::new("p-pedidos", Some(b"{}")))
            .unwrap_err();
        assert!(poison.reason.contains("really fresh"), "{poison}");
        assert!(matches!(
            errors.try_recv(),
            Ok(RawError::UnknownRecord { .. })
        ));
    }
}
