//! The source: the API's part, each order's `Analise` and then the order.

use futures::stream::{FuturesUnordered, StreamExt};
use shared::kafka::{enqueue, DeliveryFuture, Producer};

use super::Stage;
use crate::raw::records::OrderPool;
use crate::raw::RawError;

/// Orders the source has in flight at most (`Analise` sent, order not yet acknowledged). Far
/// more than the benchmark's 64 HTTP requests: the phase measures the broker, not a client's
/// concurrency.
const IN_FLIGHT: usize = 1_024;

/// Orders `from..from + count` of the pool, each as the API publishes it (`Analise`, then the
/// order once `Analise` is acknowledged), up to `IN_FLIGHT` at once. Returns when every record
/// is acknowledged.
pub async fn send(
    producer: &Producer,
    pool: &OrderPool,
    from: u64,
    count: u64,
) -> Result<(), RawError> {
    let mut in_flight = FuturesUnordered::new();
    for index in from..from + count {
        if in_flight.len() >= IN_FLIGHT {
            if let Some(sent) = in_flight.next().await {
                sent?;
            }
        }
        let order = pool.get(index);
        // Enqueued here, not in the future: a future pushed to the set waits to be polled.
        let analise = enqueue(producer, &order.analise).await;
        in_flight.push(async move {
            delivered(analise).await?;
            delivered(enqueue(producer, &order.order).await).await
        });
    }
    while let Some(sent) = in_flight.next().await {
        sent?;
    }
    Ok(())
}

/// Waits for a record's acknowledgement. One failure spoils the measurement: it ends the phase.
async fn delivered(delivery: DeliveryFuture) -> Result<(), RawError> {
    let reason = match delivery.await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err((e, _))) => e.to_string(),
        Err(_) => "delivery cancelled".to_string(),
    };
    Err(RawError::PipelineProduce {
        stage: Stage::Source,
        reason,
    })
}
