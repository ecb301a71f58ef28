//! The orders this instance accepted whose rows no commit has written yet. On the embedded
//! store, which serves one instance, a POST's 202 does not wait for its commit: a read of one of
//! these orders waits for it instead (`ViewHandle::order`), so a GET that follows the 202 still
//! finds the order, and a retried `Idempotency-Key` still finds its original. On either store,
//! an order whose POST could not be written in time stays here until the reader writes it, so
//! a GET answers 503 meanwhile rather than 404.

use std::collections::HashMap;
use std::sync::Mutex;

use uuid::Uuid;

use super::Changes;

#[derive(Default)]
pub struct Unwritten {
    /// Order id → its `usuario`, for listings.
    orders: Mutex<HashMap<Uuid, String>>,
}

impl Unwritten {
    /// These orders are on their way to the store.
    pub fn add(&self, changes: &Changes) {
        let mut orders = self.orders.lock().unwrap();
        for row in changes.rows() {
            orders.insert(row.id, row.usuario.clone());
        }
    }

    /// These orders are committed.
    pub fn remove<'a>(&self, ids: impl IntoIterator<Item = &'a Uuid>) {
        let mut orders = self.orders.lock().unwrap();
        if orders.is_empty() {
            return;
        }
        for id in ids {
            orders.remove(id);
        }
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.orders.lock().unwrap().contains_key(&id)
    }

    /// The uncommitted orders of one customer, or of everyone.
    pub fn of(&self, usuario: Option<&str>) -> Vec<Uuid> {
        let orders = self.orders.lock().unwrap();
        orders
            .iter()
            .filter(|(_, u)| usuario.is_none_or(|wanted| wanted == u.as_str()))
            .map(|(id, _)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use shared::events::Order;

    fn posted(usuario: &str) -> (Uuid, Changes) {
        let order = Order::new(usuario, "livro", 1, Decimal::ONE);
        let mut changes = Changes::default();
        changes.order(&order);
        (order.id, changes)
    }

    #[test]
    fn an_order_is_unwritten_from_its_post_to_its_commit() {
        let unwritten = Unwritten::default();
        let (ana, ana_changes) = posted("ana");
        let (bia, bia_changes) = posted("bia");
        unwritten.add(&ana_changes);
        unwritten.add(&bia_changes);
        assert!(unwritten.contains(ana) && unwritten.contains(bia));
        assert_eq!(unwritten.of(Some("ana")), vec![ana]);
        assert_eq!(unwritten.of(Some("caio")), Vec::<Uuid>::new());
        assert_eq!(unwritten.of(None).len(), 2);
        unwritten.remove([&ana]);
        assert!(!unwritten.contains(ana), "committed");
        assert!(unwritten.contains(bia), "not committed yet");
        assert_eq!(unwritten.of(None), vec![bia]);
    }
}
