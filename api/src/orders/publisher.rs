//! Publishing a new order: the order to `Pedidos` and its `Analise` event to `Notificacoes`,
//! both acknowledged by the broker within a deadline, or neither is reported as accepted.

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

    /// Publishes the `Analise` event, then — once it is acknowledged — the order. Fraud sees the
    /// order only after `Analise` is on `Notificacoes`, and its verdict is keyed like `Analise`
    /// (by `usuario`, so on the same partition): on the topic the verdict always follows
    /// `Analise`, and a customer never hears "Aprovado" before "em Analise". (The API's read
    /// model sorts by `dataEvento` instead, which two clocks stamp: see `OrderView::status`.)
    /// Costs one broker round trip on the POST. If the order then fails, the client gets a 503
    /// and the acknowledged `Analise` stays on `Notificacoes`, with no order behind it.
    /// Both records carry `trace` (the order's span) as `traceparent`.
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
            self.deliver(&event_record).await?;
            self.deliver(&order_record).await
        };
        // The producer's message.timeout.ms is the same deadline, so librdkafka gives up on a
        // record at about the same moment; this timer bounds the two steps together.
        tokio::time::timeout(self.deadline + Duration::from_millis(500), both)
            .await
            .map_err(|_| PublishError::Timeout(self.deadline))?
    }

    async fn deliver(&self, record: &OutRecord) -> Result<(), PublishError> {
        let delivery = self.producer.send(record).map_err(PublishError::Kafka)?;
        let started = std::time::Instant::now();
        let answer = delivery.await;
        super::metrics::BROKER_ACK.observe(started.elapsed().as_secs_f64());
        match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(PublishError::Kafka(e)),
            Err(_) => Err(PublishError::Timeout(self.deadline)),
        }
    }
}
