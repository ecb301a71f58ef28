//! Publishing a new order: the order to `Pedidos` and its `Analise` event to `Notificacoes`,
//! both acknowledged by the broker within a deadline, or neither is reported as accepted.

use std::future::Future;
use std::time::Duration;

use rdkafka::error::KafkaError;
use shared::events::{Order, OutRecord, StatusEvent};
use shared::kafka::Producer;
use shared::telemetry::trace_context::TraceHeaders;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker did not acknowledge within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the record: {0}")]
    Kafka(#[from] KafkaError),
}

#[derive(Clone)]
pub struct Publisher {
    producer: Producer,
    pedidos_topic: String,
    notificacoes_topic: String,
    deadline: Duration,
}

impl Publisher {
    pub fn new(
        producer: Producer,
        pedidos_topic: &str,
        notificacoes_topic: &str,
        deadline: Duration,
    ) -> Self {
        Self {
            producer,
            pedidos_topic: pedidos_topic.to_string(),
            notificacoes_topic: notificacoes_topic.to_string(),
            deadline,
        }
    }

    /// Publishes the order and its `Analise` event together, both in flight at once: one
    /// broker round trip on the POST (one produce request where both partitions have the same
    /// leader). Both carry `trace` (the order's span) as `traceparent`. `Ok` only once the
    /// broker acknowledged both; otherwise the client gets a 503, and whichever record was
    /// taken stays on its topic (a retry with the same `Idempotency-Key` is the same order).
    ///
    /// Nothing orders the two across topics, so on a cluster whose partition leaders differ
    /// fraud may decide the order, and its verdict reach `Notificacoes`, before `Analise` does.
    /// Both readers allow for it: the view lets a verdict win wherever it sorts
    /// (`OrderView::status`), and notification never tells a customer `Analise` after the
    /// verdict.
    pub async fn publish(
        &self,
        order: &Order,
        received: &StatusEvent,
        trace: &TraceHeaders,
    ) -> Result<(), PublishError> {
        let mut event_record = OutRecord::event(&self.notificacoes_topic, received);
        let mut order_record = OutRecord::event(&self.pedidos_topic, order);
        trace.apply(&mut event_record.headers);
        trace.apply(&mut order_record.headers);
        let both = async {
            // Both enqueued before either is awaited, so they share the producer's batch.
            let event = self.enqueue(&event_record)?;
            let order = self.enqueue(&order_record)?;
            let (event, order) = tokio::join!(event, order);
            event.and(order)
        };
        // The producer's message.timeout.ms is the same deadline, so librdkafka gives up on a
        // record at about the same moment; this timer bounds the wait for both.
        tokio::time::timeout(self.deadline + Duration::from_millis(500), both)
            .await
            .map_err(|_| PublishError::Timeout(self.deadline))?
    }

    /// Hands `record` to the producer; the returned future is its acknowledgement.
    fn enqueue(
        &self,
        record: &OutRecord,
    ) -> Result<impl Future<Output = Result<(), PublishError>> + use<'_>, PublishError> {
        let delivery = self.producer.send(record).map_err(PublishError::Kafka)?;
        let started = std::time::Instant::now();
        Ok(async move {
            let answer = delivery.await;
            super::metrics::BROKER_ACK.observe(started.elapsed().as_secs_f64());
            match answer {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(PublishError::Kafka(e)),
                Err(_) => Err(PublishError::Timeout(self.deadline)),
            }
        })
    }
}
