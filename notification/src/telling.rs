//! Which status events a customer hears about: each status change once, and never an order's
//! `Analise` after its verdict.
//!
//! The API may send an order and its `Analise` event in one produce round trip, both in flight
//! together; on a cluster of several brokers the order can then be written (and decided by
//! fraud) before its `Analise` reaches `Notificacoes`, so the verdict lands first. Telling that
//! `Analise` afterwards would tell the customer their decided order went back to review.
//! Both memories are bounded windows, like the dedup window: a late `Analise` is late by at
//! most the API's delivery timeout, far less than the window holds at any rate we run.

use shared::events::{Status, StatusEvent};
use uuid::Uuid;

use crate::dedup::DedupWindow;

/// What to do with one status event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Telling {
    /// A status change not told yet: tell it.
    Tell,
    /// The same event again (a replay): already told.
    Duplicate,
    /// An `Analise` whose order's verdict was already told: telling it now would go backwards.
    AfterVerdict,
}

/// The events told recently, and the orders whose verdict was told.
pub struct Teller {
    seen: DedupWindow<Uuid>,
    decided: DedupWindow<Uuid>,
}

impl Teller {
    /// Remembering the last `window` events and the last `window` verdicts.
    pub fn new(window: usize) -> Self {
        Self {
            seen: DedupWindow::new(window),
            decided: DedupWindow::new(window),
        }
    }

    /// Decides about `event` and remembers it.
    pub fn offer(&mut self, event: &StatusEvent) -> Telling {
        if !self.seen.first_time(event.evento_id) {
            return Telling::Duplicate;
        }
        match event.status {
            Status::Analise if self.decided.contains(&event.pedido_id) => Telling::AfterVerdict,
            Status::Analise => Telling::Tell,
            Status::Aprovado | Status::Recusado => {
                self.decided.first_time(event.pedido_id);
                Telling::Tell
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::events::Order;

    fn order(n: u8) -> Order {
        Order {
            id: Uuid::from_bytes([n; 16]),
            ..Order::new("ana", "livro", 1, "10".parse().unwrap())
        }
    }

    fn verdict(o: &Order) -> StatusEvent {
        StatusEvent::verdict(o, Status::Aprovado, "aprovado", chrono::Utc::now())
    }

    #[test]
    fn analise_then_verdict_are_both_told() {
        let mut t = Teller::new(10);
        let o = order(1);
        assert_eq!(t.offer(&StatusEvent::received(&o)), Telling::Tell);
        assert_eq!(t.offer(&verdict(&o)), Telling::Tell);
    }

    #[test]
    fn an_analise_after_its_verdict_is_not_told() {
        let mut t = Teller::new(10);
        let (o, other) = (order(1), order(2));
        assert_eq!(t.offer(&verdict(&o)), Telling::Tell);
        assert_eq!(t.offer(&StatusEvent::received(&o)), Telling::AfterVerdict);
        // Another order's Analise is not affected.
        assert_eq!(t.offer(&StatusEvent::received(&other)), Telling::Tell);
        // A replay of the late Analise is a duplicate, and never told either.
        assert_eq!(t.offer(&StatusEvent::received(&o)), Telling::Duplicate);
    }

    #[test]
    fn replays_are_duplicates() {
        let mut t = Teller::new(10);
        let o = order(1);
        let (analise, verdict) = (StatusEvent::received(&o), verdict(&o));
        assert_eq!(t.offer(&analise), Telling::Tell);
        assert_eq!(t.offer(&verdict), Telling::Tell);
        assert_eq!(t.offer(&analise), Telling::Duplicate);
        assert_eq!(t.offer(&verdict), Telling::Duplicate);
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut t = Teller::new(2);
        let first = order(1);
        assert_eq!(t.offer(&verdict(&first)), Telling::Tell);
        for n in 2..=3 {
            assert_eq!(t.offer(&verdict(&order(n))), Telling::Tell);
        }
        // Two verdicts later the first order is forgotten: bounded memory, at the price of
        // telling an Analise later than the window reaches.
        assert_eq!(
            t.offer(&StatusEvent::received(&first)),
            Telling::Tell,
            "the window holds two orders"
        );
    }
}
