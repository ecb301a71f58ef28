//! The API's read model: each order's current status and history, built from the events on
//! `Pedidos` and `Notificacoes`. Pure: fed by the Kafka reader and by the API itself.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use shared::events::{Order, Status, StatusEvent};
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

/// Orders by id, plus their arrival order for listing, overall and per customer; bounded, oldest
/// forgotten first.
#[derive(Debug)]
pub struct OrderBook {
    orders: HashMap<Uuid, OrderView>,
    arrival: VecDeque<Uuid>,
    /// Each customer's orders in arrival order: the oldest overall is the oldest of its customer,
    /// so forgetting it pops the front here too.
    by_usuario: HashMap<String, VecDeque<Uuid>>,
    capacity: usize,
}

impl OrderBook {
    pub fn new(capacity: usize) -> Self {
        Self {
            orders: HashMap::new(),
            arrival: VecDeque::new(),
            by_usuario: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn entry(&mut self, id: Uuid, usuario: &str) -> &mut OrderView {
        if !self.orders.contains_key(&id) {
            if self.arrival.len() >= self.capacity {
                if let Some(oldest) = self.arrival.pop_front() {
                    if let Some(view) = self.orders.remove(&oldest) {
                        self.forget_for_usuario(&view.usuario);
                    }
                }
            }
            self.arrival.push_back(id);
            self.by_usuario
                .entry(usuario.to_string())
                .or_default()
                .push_back(id);
        }
        self.orders.entry(id).or_insert_with(|| OrderView {
            id,
            usuario: usuario.to_string(),
            order: None,
            history: Vec::new(),
        })
    }

    fn forget_for_usuario(&mut self, usuario: &str) {
        if let Some(ids) = self.by_usuario.get_mut(usuario) {
            ids.pop_front();
            if ids.is_empty() {
                self.by_usuario.remove(usuario);
            }
        }
    }

    pub fn apply_order(&mut self, order: &Order) {
        let view = self.entry(order.id, &order.usuario);
        if view.order.is_none() {
            view.order = Some(order.clone());
        }
    }

    /// Records a status change; a replayed event (same `eventoId`) changes nothing.
    pub fn apply_status(&mut self, event: &StatusEvent) {
        let view = self.entry(event.pedido_id, &event.usuario);
        if view.history.iter().any(|h| h.evento_id == event.evento_id) {
            return;
        }
        let entry = HistoryEntry {
            evento_id: event.evento_id,
            status: event.status,
            motivo: event.motivo.clone(),
            data_evento: event.data_evento,
        };
        let at = view.history.partition_point(|h| {
            (h.data_evento, h.status.is_final()) <= (entry.data_evento, entry.status.is_final())
        });
        view.history.insert(at, entry);
    }

    pub fn get(&self, id: &Uuid) -> Option<&OrderView> {
        self.orders.get(id)
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Newest first.
    pub fn page(&self, offset: usize, limit: usize) -> Vec<&OrderView> {
        self.arrival
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|id| self.orders.get(id))
            .collect()
    }

    /// How many orders of `usuario` are kept.
    pub fn len_of(&self, usuario: &str) -> usize {
        self.by_usuario.get(usuario).map_or(0, VecDeque::len)
    }

    /// `usuario`'s orders, newest first.
    pub fn page_of(&self, usuario: &str, offset: usize, limit: usize) -> Vec<&OrderView> {
        self.by_usuario
            .get(usuario)
            .into_iter()
            .flat_map(|ids| ids.iter().rev())
            .skip(offset)
            .take(limit)
            .filter_map(|id| self.orders.get(id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn order(n: u128) -> Order {
        Order {
            id: Uuid::from_u128(n),
            data_solicitacao: DateTime::from_timestamp(1_700_000_000 + n as i64, 0).unwrap(),
            ..Order::new(format!("user{n}"), "livro", 1, Decimal::new(100, 2))
        }
    }

    #[test]
    fn verdict_wins_even_when_it_is_applied_before_analise() {
        let o = order(1);
        let mut book = OrderBook::new(10);
        let verdict = StatusEvent::verdict(&o, Status::Recusado, "limite", o.data_solicitacao);
        book.apply_status(&verdict);
        book.apply_status(&StatusEvent::received(&o));
        let view = book.get(&o.id).unwrap();
        assert_eq!(view.status(), Status::Recusado);
        assert_eq!(view.motivo(), Some("limite"));
        let statuses: Vec<Status> = view.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![Status::Analise, Status::Recusado]);
    }

    #[test]
    fn a_verdict_stamped_before_analise_by_a_clock_behind_still_wins() {
        let o = order(1);
        let mut book = OrderBook::new(10);
        book.apply_status(&StatusEvent::received(&o));
        let behind = o.data_solicitacao - chrono::Duration::seconds(2);
        book.apply_status(&StatusEvent::verdict(&o, Status::Aprovado, "ok", behind));
        let view = book.get(&o.id).unwrap();
        let statuses: Vec<Status> = view.history.iter().map(|h| h.status).collect();
        assert_eq!(statuses, vec![Status::Aprovado, Status::Analise]);
        assert_eq!(view.status(), Status::Aprovado);
        assert_eq!(view.motivo(), Some("ok"));
    }

    #[test]
    fn replayed_events_are_recorded_once() {
        let o = order(1);
        let mut book = OrderBook::new(10);
        let analise = StatusEvent::received(&o);
        let verdict = StatusEvent::verdict(&o, Status::Aprovado, "ok", o.data_solicitacao);
        for e in [&analise, &verdict, &analise, &verdict] {
            book.apply_status(e);
        }
        book.apply_order(&o);
        book.apply_order(&o);
        let view = book.get(&o.id).unwrap();
        assert_eq!(view.history.len(), 2);
        assert_eq!(view.status(), Status::Aprovado);
        assert_eq!(view.order.as_ref(), Some(&o));
        assert_eq!(book.len(), 1);
    }

    #[test]
    fn pages_are_newest_first_and_bounded() {
        let mut book = OrderBook::new(3);
        for n in 1..=5 {
            book.apply_order(&order(n));
        }
        assert_eq!(book.len(), 3, "oldest orders are forgotten");
        assert!(book.get(&Uuid::from_u128(1)).is_none());
        let ids: Vec<u128> = book.page(0, 2).iter().map(|v| v.id.as_u128()).collect();
        assert_eq!(ids, vec![5, 4]);
        let ids: Vec<u128> = book.page(2, 2).iter().map(|v| v.id.as_u128()).collect();
        assert_eq!(ids, vec![3]);
        assert!(book.page(3, 2).is_empty());
    }

    #[test]
    fn each_customers_pages_hold_only_theirs_newest_first_and_forget_with_the_book() {
        let mut book = OrderBook::new(4);
        for n in 1..=6 {
            let usuario = if n % 2 == 0 { "ana" } else { "bia" };
            book.apply_order(&Order {
                usuario: usuario.into(),
                ..order(n)
            });
        }
        // Orders 1 and 2 are forgotten: ana keeps 4 and 6, bia 3 and 5.
        let ids = |book: &OrderBook, usuario, offset, limit| -> Vec<u128> {
            book.page_of(usuario, offset, limit)
                .iter()
                .map(|v| v.id.as_u128())
                .collect()
        };
        assert_eq!((book.len_of("ana"), book.len_of("bia")), (2, 2));
        assert_eq!(ids(&book, "ana", 0, 10), vec![6, 4]);
        assert_eq!(ids(&book, "bia", 0, 1), vec![5]);
        assert_eq!(ids(&book, "bia", 1, 1), vec![3]);
        assert!(ids(&book, "bia", 2, 1).is_empty());
        assert_eq!(book.len_of("cia"), 0);
        assert!(ids(&book, "cia", 0, 10).is_empty());
        // A status event for a known order does not list it twice.
        let sixth = book
            .get(&Uuid::from_u128(6))
            .unwrap()
            .order
            .clone()
            .unwrap();
        book.apply_status(&StatusEvent::received(&sixth));
        assert_eq!(ids(&book, "ana", 0, 10), vec![6, 4]);
    }

    #[test]
    fn status_without_any_event_is_analise() {
        let mut book = OrderBook::new(3);
        book.apply_order(&order(1));
        assert_eq!(
            book.get(&Uuid::from_u128(1)).unwrap().status(),
            Status::Analise
        );
    }
}
