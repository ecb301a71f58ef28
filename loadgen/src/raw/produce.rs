//! The produce phase: records handed to the daemons' producer as fast as it takes them, and
//! every acknowledgement awaited.

use futures::stream::{FuturesUnordered, StreamExt};
use shared::events::OutRecord;
use shared::kafka::{enqueue, DeliveryFuture, Producer};

use super::RawError;

/// Deliveries kept unsettled at most. They are settled at the end, not as they come: watching
/// each one would cost a wake-up per record. librdkafka's queue (100,000 records by default)
/// bounds those not yet acknowledged; this bounds the memory of those acknowledged meanwhile.
const UNSETTLED: usize = 100_000;

/// Produces `count` records (cycling through `pool` from `skip`) and waits for every
/// acknowledgement. Many are in flight at once; a full queue waits for room (`enqueue`).
pub async fn produce(
    producer: &Producer,
    pool: &[OutRecord],
    skip: usize,
    count: u64,
) -> Result<(), RawError> {
    let mut in_flight: FuturesUnordered<DeliveryFuture> = FuturesUnordered::new();
    let mut failures = Failures::default();
    for i in 0..count {
        let record = &pool[(skip + i as usize) % pool.len()];
        if in_flight.len() >= UNSETTLED {
            if let Some(result) = in_flight.next().await {
                failures.settle(result);
            }
        }
        in_flight.push(enqueue(producer, record).await);
    }
    while let Some(result) = in_flight.next().await {
        failures.settle(result);
    }
    failures.into_result(count)
}

/// Deliveries that failed, and the first one's error.
#[derive(Default)]
struct Failures {
    failed: u64,
    first: Option<String>,
}

impl Failures {
    fn settle(&mut self, result: <DeliveryFuture as std::future::Future>::Output) {
        let error = match result {
            Ok(Ok(_)) => return,
            Ok(Err((e, _))) => e.to_string(),
            Err(_) => "delivery cancelled".to_string(),
        };
        self.failed += 1;
        self.first.get_or_insert(error);
    }

    fn into_result(self, total: u64) -> Result<(), RawError> {
        match self.first {
            None => Ok(()),
            Some(first) => Err(RawError::Delivery {
                failed: self.failed,
                total,
                first,
            }),
        }
    }
}
