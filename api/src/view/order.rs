//! The API's read model: each order's current status and history, built from the events on
//! `Pedidos` and `Notificacoes`. Pure: the store keeps the rows, this says what they mean.

use chrono::{DateTime, Utc};
use shared::events::{Order, Status};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub evento_id: Uuid,
    pub status: Status,
    pub motivo: Option<String>,
    pub data_evento: DateTime<Utc>,
}

/// What the API knows of one order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub id: Uuid,
    pub usuario: String,
    /// Known once the order itself was seen (on `Pedidos`, or posted to this process).
    pub order: Option<Order>,
    /// By `dataEvento`, oldest first.
    pub history: Vec<HistoryEntry>,
}

impl OrderView {
    /// A verdict wins over `Analise` wherever it sorts. On `Notificacoes` the verdict always
    /// follows `Analise` (see `Publisher::publish`), but the history is sorted by `dataEvento`,
    /// stamped by two clocks: the API's for `Analise`, fraud's for the verdict. A verdict from a
    /// host whose clock is behind sorts first.
    pub fn status(&self) -> Status {
        self.history
            .iter()
            .rev()
            .find(|h| h.status.is_final())
            .or(self.history.last())
            .map(|h| h.status)
            .unwrap_or(Status::Analise)
    }

    pub fn motivo(&self) -> Option<&str> {
        let status = self.status();
        self.history
            .iter()
            .rev()
            .find(|h| h.status == status)
            .and_then(|h| h.motivo.as_deref())
    }

    pub fn data_solicitacao(&self) -> Option<DateTime<Utc>> {
        self.order
            .as_ref()
            .map(|p| p.data_solicitacao)
            .or_else(|| self.history.first().map(|h| h.data_evento))
    }
}

impl OrderView {
    /// The view of one order from what the store holds: its history in any order, sorted here.
    pub fn assemble(
        id: Uuid,
        usuario: String,
        order: Option<Order>,
        entries: impl IntoIterator<Item = HistoryEntry>,
    ) -> Self {
        let mut history: Vec<HistoryEntry> = entries.into_iter().collect();
        // By time; at the same instant a verdict after `Analise`; then by id, so the order is
        // total and every read gives the same one (SSE's `Last-Event-ID` relies on it).
        history.sort_by_key(|h| (h.data_evento, h.status.is_final(), h.evento_id));
        history.dedup_by_key(|h| h.evento_id);
        Self {
            id,
            usuario,
            order,
            history,
        }
    }

    /// Whether the order has its verdict.
    pub fn is_final(&self) -> bool {
        self.status().is_final()
    }

    /// Whether it holds what a POST writes: the order and its `Analise`.
    pub fn holds_what_was_posted(&self) -> bool {
        self.order.is_some() && self.history.iter().any(|e| e.status == Status::Analise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use shared::events::StatusEvent;

    fn order(n: u128) -> Order {
        Order {
            id: Uuid::from_u128(n),
            data_solicitacao: DateTime::from_timestamp(1_700_000_000 + n as i64, 0).unwrap(),
            ..Order::new(format!("user{n}"), "livro", 1, Decimal::new(100, 2))
        }
    }

    fn entry(event: &StatusEvent) -> HistoryEntry {
        HistoryEntry {
            evento_id: event.evento_id,
            status: event.status,
            motivo: event.motivo.clone(),
            data_evento: event.data_evento,
        }
    }

    fn view(o: &Order, events: &[&StatusEvent]) -> OrderView {
        let entries = events.iter().map(|e| entry(e));
        OrderView::assemble(o.id, o.usuario.clone(), Some(o.clone()), entries)
    }

    #[test]
    fn verdict_wins_even_when_it_is_read_before_analise() {
        let o = order(1);
        let verdict = StatusEvent::verdict(&o, Status::Recusado, "limite", o.data_solicitacao);
        let view = view(&o, &[&verdict, &StatusEvent::received(&o)]);
        assert_eq!(view.status(), Status::Recusado);
        assert!(view.is_final());
        assert_eq!(view.motivo(), Some("limite"));
        let statuses: Vec<Status> = view.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![Status::Analise, Status::Recusado]);
    }

    #[test]
    fn a_verdict_stamped_before_analise_by_a_clock_behind_still_wins() {
        let o = order(1);
        let behind = o.data_solicitacao - chrono::Duration::seconds(2);
        let verdict = StatusEvent::verdict(&o, Status::Aprovado, "ok", behind);
        let view = view(&o, &[&StatusEvent::received(&o), &verdict]);
        let statuses: Vec<Status> = view.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![Status::Aprovado, Status::Analise]);
        assert_eq!(view.status(), Status::Aprovado);
        assert_eq!(view.motivo(), Some("ok"));
    }

    #[test]
    fn a_repeated_event_is_in_the_history_once() {
        let o = order(1);
        let analise = StatusEvent::received(&o);
        let verdict = StatusEvent::verdict(&o, Status::Aprovado, "ok", o.data_solicitacao);
        let view = view(&o, &[&analise, &verdict, &analise, &verdict]);
        assert_eq!(view.history.len(), 2);
        assert_eq!(view.status(), Status::Aprovado);
    }

    #[test]
    fn the_history_reads_the_same_whatever_order_it_comes_in() {
        let o = order(1);
        let analise = StatusEvent::received(&o);
        let a = StatusEvent::verdict(&o, Status::Aprovado, "ok", o.data_solicitacao);
        let r = StatusEvent::verdict(&o, Status::Recusado, "no", o.data_solicitacao);
        let first = view(&o, &[&analise, &a, &r]);
        for events in [[&r, &a, &analise], [&a, &analise, &r], [&r, &analise, &a]] {
            assert_eq!(view(&o, &events), first);
        }
    }

    #[test]
    fn status_without_any_event_is_analise() {
        let o = order(1);
        let view = view(&o, &[]);
        assert_eq!(view.status(), Status::Analise);
        assert!(!view.is_final());
    }
}
