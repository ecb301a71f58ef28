//! The velocity rule's memory: for one partition, each customer's recent orders.
//!
//! An order's figure ([`Recent`]) counts the *earlier* orders of its partition (by offset) from
//! the same `usuario` whose `dataSolicitacao` lies in `(t − window, t]`, `t` being the order's
//! own `dataSolicitacao`. Records are keyed by `usuario`, so a customer's orders all sit in one
//! partition, in order; the figure is then a function of the log alone, and a replay, a restart,
//! a rebalance or a second instance computes the same one — given that the handler's memory is
//! rebuilt from the log, which `shared::pipeline` does on every assignment.
//!
//! Two things keep it exact:
//! - an order id seen again (a duplicate record of the same order) keeps the figure it got the
//!   first time, so it cannot get a second verdict;
//! - what is kept reaches [`LATENESS`] further back than the window, and the rebuild reads from
//!   the window plus twice that before the first record's timestamp. The API stamps
//!   `dataSolicitacao` and the record's timestamp together, so a record is never that far out
//!   of order; one that is gets a figure from what is kept, and a warning.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use shared::config::FraudConfig;
use shared::events::Order;
use uuid::Uuid;

/// How far an order's `dataSolicitacao` may lag behind the latest seen before it in its
/// partition, or its record's timestamp, with figures still exact.
pub const LATENESS: Duration = Duration::from_secs(60);

/// Customers untouched for this many recorded orders are swept out when their orders are old.
const SWEEP_EVERY: u64 = 10_000;

/// What a customer placed within the window before an order, the order itself not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recent {
    pub orders: u32,
    /// Σ `valor × quantidade`.
    pub total: Decimal,
}

/// The configured limits; `None` from [`Limits::new`] when velocity is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub max_orders: Option<u32>,
    pub max_total: Option<Decimal>,
    pub window: Duration,
}

impl Limits {
    pub fn new(config: &FraudConfig) -> Option<Self> {
        config.velocity_enabled().then(|| Self {
            max_orders: config.velocity_max_orders,
            max_total: config.velocity_max_total,
            window: Duration::from_secs(config.velocity_window_secs),
        })
    }

    /// How far back before a record the memory must reach: the window, the lateness of the
    /// order it rebuilds for, and the lateness of the records it reads.
    pub fn history_span(&self) -> Duration {
        self.window + LATENESS * 2
    }

    /// Why `order` is refused, given what came before it; `None` when it is within the limits.
    pub fn refusal(&self, order: &Order, recent: Recent) -> Option<String> {
        let secs = self.window.as_secs();
        if let Some(max) = self.max_orders {
            let orders = u64::from(recent.orders) + 1;
            if orders > u64::from(max) {
                return Some(format!(
                    "velocidade: {orders} pedidos de {} em {secs} s, acima do limite de {max}",
                    order.usuario
                ));
            }
        }
        if let Some(max) = self.max_total {
            let total = recent.total + order.total();
            if total > max {
                return Some(format!(
                    "velocidade: total {total} de {} em {secs} s, acima do limite de {max}",
                    order.usuario
                ));
            }
        }
        None
    }
}

#[derive(Debug, Clone)]
struct Seen {
    id: Uuid,
    at_ms: i64,
    total: Decimal,
    /// The figure this order got, kept for a duplicate of it.
    recent: Recent,
}

/// One partition's memory.
#[derive(Debug, Default)]
pub struct Window {
    /// Each customer's kept orders, in log order.
    by_usuario: HashMap<String, VecDeque<Seen>>,
    /// The latest `dataSolicitacao` recorded.
    latest_ms: Option<i64>,
    recorded: u64,
}

fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

impl Window {
    /// `order`'s figure, and remembers the order. A duplicate (an id already kept) gets the
    /// figure of its first appearance and changes nothing.
    pub fn observe(&mut self, order: &Order, window: Duration) -> Recent {
        let at_ms = millis(order.data_solicitacao);
        let window_ms = window.as_millis() as i64;
        if self
            .latest_ms
            .is_some_and(|latest| at_ms < latest - LATENESS.as_millis() as i64)
        {
            tracing::warn!(
                pedido = %order.id,
                usuario = %order.usuario,
                "order more than {LATENESS:?} out of order: its velocity figure counts only what is kept"
            );
        }
        let kept = self.by_usuario.entry(order.usuario.clone()).or_default();
        if let Some(seen) = kept.iter().find(|s| s.id == order.id) {
            return seen.recent;
        }
        let mut recent = Recent::default();
        for seen in kept.iter() {
            if seen.at_ms <= at_ms && seen.at_ms > at_ms - window_ms {
                recent.orders += 1;
                recent.total += seen.total;
            }
        }
        kept.push_back(Seen {
            id: order.id,
            at_ms,
            total: order.total(),
            recent,
        });
        let latest = self.latest_ms.map_or(at_ms, |l| l.max(at_ms));
        self.latest_ms = Some(latest);
        let cutoff = latest - window_ms - LATENESS.as_millis() as i64;
        while kept.front().is_some_and(|s| s.at_ms <= cutoff) {
            kept.pop_front();
        }
        self.recorded += 1;
        if self.recorded.is_multiple_of(SWEEP_EVERY) {
            self.sweep(cutoff);
        }
        recent
    }

    /// Forgets customers whose kept orders are all older than `cutoff`.
    fn sweep(&mut self, cutoff: i64) {
        self.by_usuario.retain(|_, kept| {
            while kept.front().is_some_and(|s| s.at_ms <= cutoff) {
                kept.pop_front();
            }
            !kept.is_empty()
        });
    }

    /// Orders kept, all customers together.
    pub fn len(&self) -> usize {
        self.by_usuario.values().map(VecDeque::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
