//! What one write to the store carries: order rows, status events and the offsets they were
//! read up to. Pure, and merged in memory, so one transaction writes each row once (PostgreSQL
//! refuses `ON CONFLICT DO UPDATE` touching a row twice in one statement).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use shared::events::{Order, StatusEvent};
use uuid::Uuid;

/// One order's row: who, and what was ordered once the order itself is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub id: Uuid,
    pub usuario: String,
    pub order: Option<Order>,
    /// What listings sort by: `dataSolicitacao`, or the first event's time until it is known.
    pub recebido: DateTime<Utc>,
}

impl OrderRow {
    fn merge(&mut self, other: OrderRow) {
        if self.order.is_none() {
            if let Some(order) = other.order {
                self.recebido = order.data_solicitacao;
                self.order = Some(order);
            } else {
                self.recebido = self.recebido.min(other.recebido);
            }
        }
    }
}

/// A batch of changes to the view.
#[derive(Debug, Default)]
pub struct Changes {
    orders: HashMap<Uuid, OrderRow>,
    events: HashMap<Uuid, StatusEvent>,
    /// The next offset to read, per (topic, partition).
    offsets: HashMap<(String, i32), i64>,
}

impl Changes {
    /// What a POST writes: its order and that order's `Analise`.
    pub fn accepted(order: &Order, received: &StatusEvent) -> Self {
        let mut changes = Self::default();
        changes.order(order);
        changes.status(received);
        changes
    }

    pub fn order(&mut self, order: &Order) {
        self.row(OrderRow {
            id: order.id,
            usuario: order.usuario.clone(),
            order: Some(order.clone()),
            recebido: order.data_solicitacao,
        });
    }

    /// A status event; it also makes the order's row, if the order has not been read yet.
    pub fn status(&mut self, event: &StatusEvent) {
        self.row(OrderRow {
            id: event.pedido_id,
            usuario: event.usuario.clone(),
            order: None,
            recebido: event.data_evento,
        });
        self.events
            .entry(event.evento_id)
            .or_insert_with(|| event.clone());
    }

    /// `topic`'s `partition` has been read up to and including `offset`.
    pub fn read_up_to(&mut self, topic: &str, partition: i32, offset: i64) {
        let next = self
            .offsets
            .entry((topic.to_string(), partition))
            .or_insert(offset + 1);
        *next = (*next).max(offset + 1);
    }

    fn row(&mut self, row: OrderRow) {
        match self.orders.get_mut(&row.id) {
            Some(known) => known.merge(row),
            None => {
                self.orders.insert(row.id, row);
            }
        }
    }

    /// Takes in a later batch.
    pub fn absorb(&mut self, later: Changes) {
        for row in later.orders.into_values() {
            self.row(row);
        }
        for (id, event) in later.events {
            self.events.entry(id).or_insert(event);
        }
        for ((topic, partition), next) in later.offsets {
            self.read_up_to(&topic, partition, next - 1);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.events.is_empty() && self.offsets.is_empty()
    }

    /// The orders whose view this batch may change.
    pub fn touched(&self) -> impl Iterator<Item = &Uuid> {
        self.orders.keys()
    }

    pub fn rows(&self) -> impl Iterator<Item = &OrderRow> {
        self.orders.values()
    }

    pub fn events(&self) -> impl Iterator<Item = &StatusEvent> {
        self.events.values()
    }

    pub fn offsets(&self) -> impl Iterator<Item = (&str, i32, i64)> {
        self.offsets.iter().map(|((t, p), n)| (t.as_str(), *p, *n))
    }

    /// How many rows the batch writes, to bound a transaction's size.
    pub fn len(&self) -> usize {
        self.orders.len() + self.events.len() + self.offsets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use shared::events::Status;

    fn order() -> Order {
        Order::new("ana", "livro", 2, Decimal::new(1990, 2))
    }

    #[test]
    fn an_order_and_its_events_make_one_row_whichever_comes_first() {
        let o = order();
        let early = o.data_solicitacao - chrono::Duration::seconds(1);
        let verdict = StatusEvent::verdict(&o, Status::Aprovado, "ok", early);
        for events_first in [true, false] {
            let mut changes = Changes::default();
            if events_first {
                changes.status(&verdict);
                changes.status(&StatusEvent::received(&o));
                changes.order(&o);
            } else {
                changes.order(&o);
                changes.status(&verdict);
            }
            let rows: Vec<&OrderRow> = changes.rows().collect();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].order.as_ref(), Some(&o));
            assert_eq!(
                rows[0].recebido, o.data_solicitacao,
                "the order's own time wins"
            );
        }
    }

    #[test]
    fn an_order_known_only_from_events_sorts_by_its_first_event() {
        let o = order();
        let later = o.data_solicitacao + chrono::Duration::seconds(1);
        let mut changes = Changes::default();
        changes.status(&StatusEvent::verdict(&o, Status::Recusado, "no", later));
        changes.status(&StatusEvent::received(&o));
        let row = changes.rows().next().unwrap();
        assert!(row.order.is_none());
        assert_eq!(row.recebido, o.data_solicitacao);
    }

    #[test]
    fn a_repeated_event_is_written_once_and_offsets_only_move_forward() {
        let o = order();
        let mut first = Changes::default();
        first.status(&StatusEvent::received(&o));
        first.read_up_to("Pedidos", 0, 41);
        first.read_up_to("Pedidos", 0, 9);
        let mut second = Changes::default();
        second.status(&StatusEvent::received(&o));
        second.read_up_to("Pedidos", 0, 30);
        second.read_up_to("Pedidos", 1, 3);
        first.absorb(second);
        assert_eq!(first.events().count(), 1);
        let mut offsets: Vec<(&str, i32, i64)> = first.offsets().collect();
        offsets.sort();
        assert_eq!(offsets, vec![("Pedidos", 0, 42), ("Pedidos", 1, 4)]);
        assert_eq!(first.touched().collect::<Vec<_>>(), vec![&o.id]);
    }
}
