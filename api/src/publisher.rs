//! Publishing a new order: the order to `Pedidos` and its `Analise` event to `Notificacoes`,
//! both acknowledged by the broker within a deadline, or neither is reported as accepted.

use std::time::Duration;

use rdkafka::error::KafkaError;
use shared::events::{Order, OutRecord, StatusEvent};
use shared::kafka::Producer;
use shared::pipeline::future_record;

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

    /// Produces both records at once and waits for both acknowledgements.
    pub async fn publish(&self, order: &Order, received: &StatusEvent) -> Result<(), PublishError> {
        let order_record = OutRecord::event(&self.pedidos_topic, order);
        let event_record = OutRecord::event(&self.notificacoes_topic, received);
        let send = |record: &OutRecord| {
            self.producer
                .send_result(future_record(record))
                .map_err(|(e, _)| PublishError::Kafka(e))
        };
        let order_delivery = send(&order_record)?;
        let event_delivery = send(&event_record)?;
        let both = async {
            for delivery in [order_delivery, event_delivery] {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(PublishError::Kafka(e)),
                    Err(_) => return Err(PublishError::Timeout(self.deadline)),
                }
            }
            Ok(())
        };
        // The producer's message.timeout.ms is the same deadline, so librdkafka gives up on the
        // records at about the same moment; this timer only guards against a stuck client.
        tokio::time::timeout(self.deadline + Duration::from_millis(500), both)
            .await
            .map_err(|_| PublishError::Timeout(self.deadline))?
    }
}
