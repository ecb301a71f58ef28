//! Handing [`OutRecord`]s to a producer: used by the consumer loop, the API and loadgen.

use std::time::Duration;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord};

use super::Producer;
use crate::events::OutRecord;

/// Borrows an [`OutRecord`] as a record for the producer.
pub fn future_record(out: &OutRecord) -> FutureRecord<'_, [u8], [u8]> {
    let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
    for (key, value) in &out.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    let mut record = FutureRecord::to(&out.topic)
        .payload(out.payload.as_slice())
        .headers(headers);
    if let Some(key) = &out.key {
        record = record.key(key.as_slice());
    }
    record
}

/// Hands a record to the producer's queue, waiting only while the queue is full. Other errors
/// (an unknown topic while metadata catches up, say) are retried after a pause: the caller
/// needs this record produced, not a reason.
pub async fn enqueue(producer: &Producer, out: &OutRecord) -> DeliveryFuture {
    loop {
        match producer.send_result(future_record(out)) {
            Ok(delivery) => return delivery,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err((e, _)) => {
                tracing::warn!(topic = %out.topic, error = %e, "cannot enqueue record; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
