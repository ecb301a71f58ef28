//! fraud: consumes `Pedidos`, decides each order with [`rules::decide`], and publishes the order
//! with its verdict to `Pedidos_validos` or `Pedidos_recusados` plus an `Aprovado` / `Recusado`
//! event to `Notificacoes`.

pub mod rules;

use chrono::Utc;
use shared::config::{Config, TopicsConfig};
use shared::events::{decode, EvaluatedOrder, Order, OutRecord, Status, StatusEvent};
use shared::pipeline::{self, Handled, Handler, InRecord, LoopOptions, PipelineError, Poison};
use shared::validation;
use tokio_util::sync::CancellationToken;

pub use rules::{decide, Rules, Verdict};

/// The Kafka adapter around [`decide`]: record in, records out.
pub struct FraudHandler {
    rules: Rules,
    topics: TopicsConfig,
}

impl FraudHandler {
    pub fn new(config: &Config) -> Self {
        Self {
            rules: Rules::new(&config.fraud),
            topics: config.topics.clone(),
        }
    }

    /// The records a verdict produces.
    pub fn outputs(&self, order: Order, verdict: Verdict) -> Vec<OutRecord> {
        let now = Utc::now();
        let event = StatusEvent::verdict(&order, verdict.status, &verdict.motivo, now);
        let topic = match verdict.status {
            Status::Aprovado => &self.topics.pedidos_validos,
            _ => &self.topics.pedidos_recusados,
        };
        let evaluated = EvaluatedOrder {
            pedido: order,
            status: verdict.status,
            motivo: verdict.motivo,
            data_avaliacao: now,
        };
        vec![
            OutRecord::event(topic, &evaluated),
            OutRecord::event(&self.topics.notificacoes, &event),
        ]
    }
}

impl Handler for FraudHandler {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison> {
        let order: Order = decode(record.payload).map_err(Poison::new)?;
        validation::check_order(&order).map_err(|e| Poison::new(format!("invalid order: {e}")))?;
        let verdict = decide(&order, &self.rules);
        tracing::debug!(pedido = %order.id, status = %verdict.status, motivo = %verdict.motivo, "verdict");
        Ok(Handled::publish(self.outputs(order, verdict)))
    }
}

/// Runs fraud until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), PipelineError> {
    let handler = FraudHandler::new(&config);
    let options = LoopOptions {
        transactional_id: config
            .fraud
            .transactional
            .then(|| transactional_id(&config)),
        ..LoopOptions::new(
            &config.fraud.group_id,
            vec![config.topics.pedidos.clone()],
            config.fraud.max_in_flight,
        )
    };
    pipeline::run_daemon(&config, options, handler, shutdown).await
}

/// The configured `transactional.id`, or one derived from the group and the static member id.
pub fn transactional_id(config: &Config) -> String {
    config.fraud.transactional_id.clone().unwrap_or_else(|| {
        let instance = config.kafka.group_instance_id.as_deref().unwrap_or("0");
        format!("{}-{instance}", config.fraud.group_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handler() -> FraudHandler {
        let mut config = Config::default();
        config.fraud.refusal_probability = 0.0;
        config.fraud.max_total = Some("100".parse().unwrap());
        FraudHandler::new(&config)
    }

    fn order_json(quantidade: u32) -> Vec<u8> {
        serde_json::to_vec(&Order::new(
            "ana",
            "livro",
            quantidade,
            "10.00".parse().unwrap(),
        ))
        .unwrap()
    }

    #[test]
    fn an_approved_order_goes_to_validos_with_its_event() {
        let payload = order_json(1);
        let handled = handler()
            .handle(&InRecord::new("Pedidos", Some(&payload)))
            .unwrap();
        let topics: Vec<&str> = handled.records.iter().map(|r| r.topic.as_str()).collect();
        assert_eq!(topics, ["Pedidos_validos", "Notificacoes"]);
        let event: StatusEvent = decode(Some(&handled.records[1].payload)).unwrap();
        assert_eq!(event.status, Status::Aprovado);
        assert_eq!(handled.records[1].key.as_deref(), Some(&b"ana"[..]));
    }

    #[test]
    fn a_refused_order_goes_to_recusados_with_its_reason() {
        let payload = order_json(11);
        let handled = handler()
            .handle(&InRecord::new("Pedidos", Some(&payload)))
            .unwrap();
        assert_eq!(handled.records[0].topic, "Pedidos_recusados");
        let evaluated: EvaluatedOrder = decode(Some(&handled.records[0].payload)).unwrap();
        assert_eq!(evaluated.status, Status::Recusado);
        assert!(
            evaluated.motivo.contains("acima do limite"),
            "{}",
            evaluated.motivo
        );
        let event: StatusEvent = decode(Some(&handled.records[1].payload)).unwrap();
        assert_eq!(event.motivo.as_deref(), Some(evaluated.motivo.as_str()));
    }

    #[test]
    fn garbage_and_invalid_orders_are_poison() {
        let mut h = handler();
        for bad in [&b"not json"[..], &[0xff, 0x00], br#"{"id":1}"#, b""] {
            assert!(h.handle(&InRecord::new("Pedidos", Some(bad))).is_err());
        }
        assert!(h.handle(&InRecord::new("Pedidos", None)).is_err());
        let zero = order_json(0);
        let e = h
            .handle(&InRecord::new("Pedidos", Some(&zero)))
            .unwrap_err();
        assert!(e.reason.contains("quantidade"), "{e}");
    }
}
