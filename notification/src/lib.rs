//! notification: consumes `Notificacoes` and tells each customer, once per status change:
//! "<usuario>, seu pedido <id> está <status>".

pub mod dedup;
pub mod metrics;
pub mod telling;

use shared::config::Config;
use shared::events::{decode, StatusEvent};
use shared::pipeline::{self, Handled, Handler, InRecord, LoopOptions, PipelineError, Poison};
use tokio_util::sync::CancellationToken;

use crate::telling::{Teller, Telling};

/// The message a customer receives for a status change.
pub fn message(event: &StatusEvent) -> String {
    let mut text = format!(
        "{}, seu pedido {} está {}",
        event.usuario, event.pedido_id, event.status
    );
    if event.status == shared::events::Status::Recusado {
        if let Some(motivo) = &event.motivo {
            text.push_str(&format!(" (motivo: {motivo})"));
        }
    }
    text
}

pub struct NotificationHandler {
    teller: Teller,
    /// Status changes told so far.
    pub told: u64,
    /// Replayed events dropped so far.
    pub duplicates: u64,
    /// `Analise` events not told because their order's verdict was told first.
    pub after_verdict: u64,
    counters: metrics::Counters,
}

impl NotificationHandler {
    pub fn new(dedup_window: usize) -> Self {
        Self {
            teller: Teller::new(dedup_window),
            told: 0,
            duplicates: 0,
            after_verdict: 0,
            counters: metrics::Counters::new(),
        }
    }
}

impl Handler for NotificationHandler {
    fn handle(&mut self, record: &InRecord<'_>) -> Result<Handled, Poison> {
        let event: StatusEvent = decode(record.payload).map_err(Poison::new)?;
        match self.teller.offer(&event) {
            Telling::Tell => {}
            Telling::Duplicate => {
                self.duplicates += 1;
                self.counters.duplicates.inc();
                tracing::debug!(evento = %event.evento_id, duplicates = self.duplicates, "duplicate status event dropped");
                return Ok(Handled::nothing());
            }
            Telling::AfterVerdict => {
                self.after_verdict += 1;
                self.counters.after_verdict.inc();
                // Not the `notification` target (the crate's own, by default): this is not a
                // message to the customer.
                tracing::info!(
                    target: "notification::held_back",
                    usuario = %event.usuario,
                    pedido = %event.pedido_id,
                    status = %event.status,
                    evento = %event.evento_id,
                    "Analise after the order's verdict: not told"
                );
                return Ok(Handled::nothing());
            }
        }
        self.told += 1;
        self.counters.sent(event.status);
        // This log line is the notification (the original project's stand-in for e-mail/SMS).
        tracing::info!(
            target: "notification",
            usuario = %event.usuario,
            pedido = %event.pedido_id,
            status = %event.status,
            motivo = event.motivo.as_deref().unwrap_or(""),
            evento = %event.evento_id,
            "{}",
            message(&event)
        );
        Ok(Handled::nothing())
    }
}

/// Runs notification until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), PipelineError> {
    let handler = NotificationHandler::new(config.notification.dedup_window);
    let options = LoopOptions::new(
        &config.notification.group_id,
        vec![config.topics.notificacoes.clone()],
        config.notification.max_in_flight,
    )
    .with_admin(
        "notification.admin_listen",
        &config.notification.admin_listen,
    )
    // Nobody waits on it: a fetch ten times a second rather than one per record.
    .with_batched_fetch();
    pipeline::run_daemon(&config, options, handler, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::events::{Order, Status};
    use uuid::Uuid;

    fn order() -> Order {
        Order {
            id: Uuid::parse_str("4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10").unwrap(),
            ..Order::new("ana", "livro", 1, "10".parse().unwrap())
        }
    }

    #[test]
    fn the_message_reads_like_the_original() {
        let o = order();
        assert_eq!(
            message(&StatusEvent::received(&o)),
            "ana, seu pedido 4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10 está Analise"
        );
        let refused = StatusEvent::verdict(
            &o,
            Status::Recusado,
            "produto bloqueado: livro",
            chrono::Utc::now(),
        );
        assert_eq!(
            message(&refused),
            "ana, seu pedido 4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10 está Recusado (motivo: produto bloqueado: livro)"
        );
    }

    #[test]
    fn a_replayed_event_is_told_once() {
        let mut h = NotificationHandler::new(100);
        let event = serde_json::to_vec(&StatusEvent::verdict(
            &order(),
            Status::Aprovado,
            "aprovado",
            chrono::Utc::now(),
        ))
        .unwrap();
        let other = serde_json::to_vec(&StatusEvent::received(&order())).unwrap();
        for payload in [&other, &event, &event, &other] {
            h.handle(&InRecord::new("Notificacoes", Some(payload)))
                .unwrap();
        }
        assert_eq!((h.told, h.duplicates), (2, 2));
    }

    #[test]
    fn an_analise_behind_its_verdict_is_not_told() {
        let mut h = NotificationHandler::new(100);
        let verdict = serde_json::to_vec(&StatusEvent::verdict(
            &order(),
            Status::Recusado,
            "produto bloqueado: livro",
            chrono::Utc::now(),
        ))
        .unwrap();
        let analise = serde_json::to_vec(&StatusEvent::received(&order())).unwrap();
        for payload in [&verdict, &analise] {
            h.handle(&InRecord::new("Notificacoes", Some(payload)))
                .unwrap();
        }
        assert_eq!((h.told, h.after_verdict, h.duplicates), (1, 1, 0));
    }

    #[test]
    fn garbage_is_poison() {
        let mut h = NotificationHandler::new(100);
        let e = h
            .handle(&InRecord::new(
                "Notificacoes",
                Some(b"{\"status\":\"Perdido\"}"),
            ))
            .unwrap_err();
        assert!(e.reason.contains("pedido.status"), "{e}");
    }
}
