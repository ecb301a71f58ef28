//! The orders this instance accepted whose rows no commit has written yet. On the embedded
//! store, which serves one instance, a POST's 202 does not wait for its commit: a read of one of
//! these orders waits for it instead (`ViewHandle::order`), so a GET that follows the 202 still
//! finds the order, and a retried `Idempotency-Key` still finds its original. On either store,
//! an order whose POST could not be written in time stays here until the reader writes it, so
//! a GET answers 503 meanwhile rather than 404.
//!
//! An order counts as written once the store holds both parts a POST writes: its row and its
//! `Analise`. The reader may commit the row alone (it read `Pedidos` before `Notificacoes`)
//! between the POST's queueing and the POST's own commit; a read then still waits for the rest.

use std::collections::HashMap;
use std::sync::Mutex;

use shared::events::Status;
use uuid::Uuid;

use super::Changes;

const ORDER: u8 = 1;
const RECEIVED: u8 = 2;

#[derive(Default)]
pub struct Unwritten {
    orders: Mutex<HashMap<Uuid, Pending>>,
}

struct Pending {
    /// For listings.
    usuario: String,
    /// The parts no commit has written yet.
    parts: u8,
}

impl Unwritten {
    /// These orders are on their way to the store.
    pub fn add(&self, changes: &Changes) {
        let mut orders = self.orders.lock().unwrap();
        for row in changes.rows() {
            orders.insert(
                row.id,
                Pending {
                    usuario: row.usuario.clone(),
                    parts: ORDER | RECEIVED,
                },
            );
        }
    }

    /// A commit wrote these changes, whoever queued them.
    pub fn written(&self, changes: &Changes) {
        let mut orders = self.orders.lock().unwrap();
        if orders.is_empty() {
            return;
        }
        let rows = changes
            .rows()
            .filter(|r| r.order.is_some())
            .map(|r| (r.id, ORDER));
        let received = changes
            .events()
            .filter(|e| e.status == Status::Analise)
            .map(|e| (e.pedido_id, RECEIVED));
        for (id, part) in rows.chain(received) {
            if let Some(pending) = orders.get_mut(&id) {
                pending.parts &= !part;
                if pending.parts == 0 {
                    orders.remove(&id);
                }
            }
        }
    }

    /// The store holds this order whole, however it got there.
    pub fn forget(&self, id: Uuid) {
        self.orders.lock().unwrap().remove(&id);
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.orders.lock().unwrap().contains_key(&id)
    }

    /// The uncommitted orders of one customer, or of everyone.
    pub fn of(&self, usuario: Option<&str>) -> Vec<Uuid> {
        let orders = self.orders.lock().unwrap();
        orders
            .iter()
            .filter(|(_, p)| usuario.is_none_or(|wanted| wanted == p.usuario.as_str()))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use shared::events::{Order, StatusEvent};

    /// An order, its `Analise`, and what a POST writes of them.
    fn posted(usuario: &str) -> (Order, StatusEvent, Changes) {
        let order = Order::new(usuario, "livro", 1, Decimal::ONE);
        let received = StatusEvent::received(&order);
        let changes = Changes::accepted(&order, &received);
        (order, received, changes)
    }

    #[test]
    fn an_order_is_unwritten_from_its_post_to_its_commit() {
        let unwritten = Unwritten::default();
        let (ana, _, ana_changes) = posted("ana");
        let (bia, _, bia_changes) = posted("bia");
        unwritten.add(&ana_changes);
        unwritten.add(&bia_changes);
        assert!(unwritten.contains(ana.id) && unwritten.contains(bia.id));
        assert_eq!(unwritten.of(Some("ana")), vec![ana.id]);
        assert_eq!(unwritten.of(Some("caio")), Vec::<Uuid>::new());
        assert_eq!(unwritten.of(None).len(), 2);
        unwritten.written(&ana_changes);
        assert!(!unwritten.contains(ana.id), "committed");
        assert!(unwritten.contains(bia.id), "not committed yet");
        assert_eq!(unwritten.of(None), vec![bia.id]);
    }

    #[test]
    fn the_readers_commit_of_the_row_alone_leaves_the_order_unwritten_until_its_analise() {
        let unwritten = Unwritten::default();
        let (order, received, changes) = posted("ana");
        unwritten.add(&changes);
        let mut row_only = Changes::default();
        row_only.order(&order);
        unwritten.written(&row_only);
        assert!(
            unwritten.contains(order.id),
            "a GET now would find the order without its history"
        );
        let mut analise = Changes::default();
        analise.status(&received);
        unwritten.written(&analise);
        assert!(!unwritten.contains(order.id), "both parts in the store");
    }

    #[test]
    fn a_verdict_does_not_stand_for_the_analise() {
        let unwritten = Unwritten::default();
        let (order, _, changes) = posted("ana");
        unwritten.add(&changes);
        let mut row_and_verdict = Changes::default();
        row_and_verdict.order(&order);
        row_and_verdict.status(&StatusEvent::verdict(
            &order,
            Status::Aprovado,
            "ok",
            chrono::Utc::now(),
        ));
        unwritten.written(&row_and_verdict);
        assert!(unwritten.contains(order.id));
        unwritten.forget(order.id);
        assert!(!unwritten.contains(order.id));
    }
}
