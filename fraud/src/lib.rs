//! fraud: consumes `Pedidos`, decides each order with [`rules::decide_after`] (given its
//! customer's recent orders, [`velocity::Window`]), and publishes the order with its verdict to
//! `Pedidos_validos` or `Pedidos_recusados` plus an `Aprovado` / `Recusado` event to
//! `Notificacoes`.

pub mod metrics;
pub mod rules;
pub mod velocity;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use shared::config::{Config, TopicsConfig};
use shared::events::{decode, EvaluatedOrder, Order, OutRecord, Status, StatusEvent};
use shared::pipeline::{self, Handled, Handler, InRecord, LoopOptions, PipelineError, Poison};
use shared::validation;
use tokio_util::sync::CancellationToken;

pub use rules::{decide, decide_after, verdict_as, Rule, Rules, Verdict};
use velocity::{Recent, Window};

/// The Kafka adapter around [`decide_after`]: record in, records out; with velocity on, one
/// [`Window`] per partition, which the loop rebuilds from the log on assignment.
pub struct FraudHandler {
    rules: Rules,
    topics: TopicsConfig,
    /// By partition of `Pedidos`.
    windows: HashMap<i32, Window>,
    verdicts: metrics::VerdictCounters,
}

impl FraudHandler {
    pub fn new(config: &Config) -> Self {
        Self {
            rules: Rules::new(&config.fraud),
            topics: config.topics.clone(),
            windows: HashMap::new(),
            verdicts: metrics::VerdictCounters::new(),
        }
    }

    /// A record's order, if it is a valid one.
    fn order(record: &InRecord<'_>) -> Result<Order, Poison> {
        let order: Order = decode(record.payload).map_err(Poison::new)?;
        validation::check_order(&order).map_err(|e| Poison::new(format!("invalid order: {e}")))?;
        Ok(order)
    }

    /// What the customer placed within the window before `order` (nothing when velocity is
    /// off); remembers the order.
    fn observe(&mut self, record: &InRecord<'_>, order: &Order) -> Recent {
        let Some(limits) = &self.rules.velocity else {
            return Recent::default();
        };
        // fraud reads one topic: a partition number names a window.
        self.windows
            .entry(record.partition)
            .or_default()
            .observe(order, limits.window)
    }
}

/// The records fraud writes for an order and its verdict, decided at `now`: the order with its
/// verdict to `Pedidos_validos` or `Pedidos_recusados`, and the verdict's status event to
/// `Notificacoes`.
pub fn outputs(
    topics: &TopicsConfig,
    order: Order,
    verdict: Verdict,
    now: DateTime<Utc>,
) -> [OutRecord; 2] {
    let event = StatusEvent::verdict(&order, verdict.status, &verdict.motivo, now);
    let topic = match verdict.status {
        Status::Aprovado => &topics.pedidos_validos,
        _ => &topics.pedidos_recusados,
    };
    let evaluated = EvaluatedOrder {
        pedido: order,
        status: verdict.status,
        motivo: verdict.motivo,
        data_avaliacao: now,
    };
    [
        OutRecord::event(topic, &evaluated),
        OutRecord::event(&topics.notificacoes, &event),
    ]
}

impl Handler for FraudHandler {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison> {
        let order = Self::order(record)?;
        let recent = self.observe(record, &order);
        let verdict = decide_after(&order, recent, &self.rules);
        tracing::debug!(pedido = %order.id, status = %verdict.status, motivo = %verdict.motivo, "verdict");
        self.verdicts.count(verdict.rule);
        let records = outputs(&self.topics, order, verdict, Utc::now());
        Ok(Handled::publish(records.into()))
    }

    fn history_span(&self) -> Option<Duration> {
        self.rules
            .velocity
            .as_ref()
            .map(|limits| limits.history_span())
    }

    fn forget(&mut self, _topic: &str, partition: i32) {
        self.windows.remove(&partition);
    }

    /// Refused orders count as much as approved ones: velocity measures attempts. Records that
    /// are not valid orders were dead-lettered, and count for nothing.
    fn remember(&mut self, record: &InRecord<'_>) {
        if let Ok(order) = Self::order(record) {
            self.observe(record, &order);
        }
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
        .with_admin("fraud.admin_listen", &config.fraud.admin_listen)
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

    fn velocity_handler() -> FraudHandler {
        let mut config = Config::default();
        config.fraud.refusal_probability = 0.0;
        config.fraud.velocity_max_orders = Some(3);
        FraudHandler::new(&config)
    }

    fn motivo_of(handled: &Handled) -> String {
        let evaluated: EvaluatedOrder = decode(Some(&handled.records[0].payload)).unwrap();
        evaluated.motivo
    }

    #[test]
    fn velocity_counts_per_partition_and_a_remembered_history_gives_the_same_verdict() {
        let payloads: Vec<Vec<u8>> = (0..5).map(|_| order_json(1)).collect();
        let record = |n: usize, partition| {
            let mut record = InRecord::new("Pedidos", Some(&payloads[n]));
            record.partition = partition;
            record.offset = n as i64;
            record
        };
        let mut first = velocity_handler();
        assert_eq!(first.history_span(), Some(Duration::from_secs(3_720)));
        let motivos: Vec<String> = (0..5)
            .map(|n| motivo_of(&first.handle(&record(n, 0)).unwrap()))
            .collect();
        assert_eq!(motivos[..3], ["aprovado", "aprovado", "aprovado"]);
        assert!(
            motivos[3].starts_with("velocidade: 4 pedidos de ana"),
            "{motivos:?}"
        );
        assert!(
            motivos[4].starts_with("velocidade: 5 pedidos"),
            "{motivos:?}"
        );

        // Another instance, assigned the partition at record 3: it remembers 0..3, then decides.
        let mut second = velocity_handler();
        second.handle(&record(0, 0)).unwrap(); // stale memory, dropped by the rebuild
        second.forget("Pedidos", 0);
        for n in 0..3 {
            second.remember(&record(n, 0));
        }
        let again: Vec<String> = (3..5)
            .map(|n| motivo_of(&second.handle(&record(n, 0)).unwrap()))
            .collect();
        assert_eq!(again, motivos[3..]);

        // The same customer's orders on another partition are another window.
        let mut other = velocity_handler();
        for n in 0..3 {
            other.handle(&record(n, n as i32)).unwrap();
        }
        assert_eq!(motivo_of(&other.handle(&record(3, 1)).unwrap()), "aprovado");
    }

    #[test]
    fn without_velocity_there_is_no_history_to_keep() {
        assert_eq!(handler().history_span(), None);
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
