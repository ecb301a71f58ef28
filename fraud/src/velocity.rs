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

/// An order kept for the figures of later ones.
#[derive(Debug, Clone)]
struct Kept {
    id: Uuid,
    at_ms: i64,
    total: Decimal,
}

/// One customer's kept orders and the window ending at the latest of them, kept up to date so
/// that an order in time order costs O(log n), not a scan of everything kept.
#[derive(Debug, Default)]
struct Customer {
    /// Sorted by `dataSolicitacao`; among equal times, in log order.
    kept: VecDeque<Kept>,
    /// The figure each kept order got, for a duplicate of it.
    figures: HashMap<Uuid, Recent>,
    /// The latest `dataSolicitacao` kept.
    latest_ms: i64,
    /// `kept[from..]` are the orders in `(latest − window, latest]`, adding up to `in_window`.
    from: usize,
    in_window: Recent,
}

impl Customer {
    /// What was kept in `(at − window, at]`, for a new order at `at`.
    fn figure(&mut self, at_ms: i64, window_ms: i64) -> Recent {
        if self.kept.is_empty() {
            (self.latest_ms, self.from, self.in_window) = (at_ms, 0, Recent::default());
        }
        if at_ms >= self.latest_ms {
            // In time order (nearly always): slide the window forward.
            self.latest_ms = at_ms;
            while self.from < self.kept.len() && self.kept[self.from].at_ms <= at_ms - window_ms {
                let left = &self.kept[self.from];
                self.in_window.orders -= 1;
                self.in_window.total -= left.total;
                self.from += 1;
            }
            return self.in_window;
        }
        // Earlier than the latest kept: add up its own window.
        let start = self.kept.partition_point(|k| k.at_ms <= at_ms - window_ms);
        let end = self.kept.partition_point(|k| k.at_ms <= at_ms);
        let mut recent = Recent::default();
        for kept in self.kept.range(start..end) {
            recent.orders += 1;
            recent.total += kept.total;
        }
        recent
    }

    /// Keeps an order (after [`Customer::figure`]), then forgets what is older than `keep_ms`
    /// before the latest.
    fn keep(&mut self, kept: Kept, recent: Recent, window_ms: i64, keep_ms: i64) {
        let at = self.kept.partition_point(|k| k.at_ms <= kept.at_ms);
        if kept.at_ms > self.latest_ms - window_ms {
            self.in_window.orders += 1;
            self.in_window.total += kept.total;
        } else {
            self.from += 1;
        }
        self.figures.insert(kept.id, recent);
        self.kept.insert(at, kept);
        while self
            .kept
            .front()
            .is_some_and(|k| k.at_ms <= self.latest_ms - keep_ms)
        {
            let gone = self.kept.pop_front().expect("a front to pop");
            self.figures.remove(&gone.id);
            // Older than the window, so before `from`.
            self.from = self.from.saturating_sub(1);
        }
    }
}

/// One partition's memory.
#[derive(Debug, Default)]
pub struct Window {
    by_usuario: HashMap<String, Customer>,
    /// The latest `dataSolicitacao` recorded, any customer.
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
        let keep_ms = (window + LATENESS).as_millis() as i64;
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
        let customer = match self.by_usuario.get_mut(&order.usuario) {
            Some(customer) => customer,
            None => self.by_usuario.entry(order.usuario.clone()).or_default(),
        };
        if let Some(recent) = customer.figures.get(&order.id) {
            return *recent;
        }
        let recent = customer.figure(at_ms, window_ms);
        let kept = Kept {
            id: order.id,
            at_ms,
            total: order.total(),
        };
        customer.keep(kept, recent, window_ms, keep_ms);
        let latest = self.latest_ms.map_or(at_ms, |l| l.max(at_ms));
        self.latest_ms = Some(latest);
        self.recorded += 1;
        if self.recorded.is_multiple_of(SWEEP_EVERY) {
            self.sweep(latest - keep_ms);
        }
        recent
    }

    /// Forgets customers whose kept orders are all at or before `cutoff`.
    fn sweep(&mut self, cutoff: i64) {
        self.by_usuario
            .retain(|_, customer| customer.kept.back().is_some_and(|k| k.at_ms > cutoff));
    }

    /// Orders kept, all customers together.
    pub fn len(&self) -> usize {
        self.by_usuario.values().map(|c| c.kept.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
