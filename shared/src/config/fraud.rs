//! `[fraud]`: the daemon that decides each order.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{admin_listen, at_least_one, InvalidValue};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FraudConfig {
    pub group_id: String,
    /// Seed mixed with each order id: the same order always draws the same number.
    pub seed: u64,
    /// Chance (0.0–1.0) that an otherwise valid order is refused at random.
    pub refusal_probability: f64,
    /// Refuse when the unit price exceeds this.
    pub max_valor: Option<Decimal>,
    /// Refuse when `valor × quantidade` exceeds this.
    pub max_total: Option<Decimal>,
    pub blocked_users: Vec<String>,
    pub blocked_products: Vec<String>,
    /// Velocity: refuse an order when, counting it, its customer placed more than this many
    /// orders within `velocity_window_secs` before its `dataSolicitacao`. Off when unset.
    pub velocity_max_orders: Option<u32>,
    /// Velocity: the same, for the orders' `valor × quantidade` added up. Off when unset.
    pub velocity_max_total: Option<Decimal>,
    /// The velocity window, in seconds.
    pub velocity_window_secs: u64,
    /// Orders processed concurrently (produced but not yet acknowledged).
    pub max_in_flight: usize,
    /// Exactly-once mode: decide and publish inside Kafka transactions (brokers with
    /// transactions only, e.g. Confluent Cloud).
    pub transactional: bool,
    /// The `transactional.id` in that mode; stable across restarts of one process, distinct
    /// between processes. Default: `<group_id>-<kafka.group_instance_id or "0">`.
    pub transactional_id: Option<String>,
    /// Where `/metrics`, `/health` and `/ready` are served (host:port); `""` serves nothing.
    pub admin_listen: String,
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self {
            group_id: "fraud".into(),
            seed: 0,
            refusal_probability: 0.1,
            max_valor: Some(Decimal::new(10_000, 0)),
            max_total: Some(Decimal::new(50_000, 0)),
            blocked_users: Vec::new(),
            blocked_products: Vec::new(),
            velocity_max_orders: None,
            velocity_max_total: None,
            velocity_window_secs: 3_600,
            max_in_flight: 2_000,
            transactional: false,
            transactional_id: None,
            admin_listen: "127.0.0.1:9101".into(),
        }
    }
}

impl FraudConfig {
    /// The longest velocity window: a week. The window is rebuilt from the log on every
    /// assignment, so longer ones cost start-up time and the topic's retention must cover them.
    pub const MAX_VELOCITY_WINDOW_SECS: u64 = 7 * 24 * 3_600;

    /// Whether a velocity limit is set.
    pub fn velocity_enabled(&self) -> bool {
        self.velocity_max_orders.is_some() || self.velocity_max_total.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        admin_listen(&self.admin_listen)?;
        if !(0.0..=1.0).contains(&self.refusal_probability) {
            return Err(InvalidValue::new(
                "refusal_probability",
                format!(
                    "must be between 0.0 and 1.0, got {}",
                    self.refusal_probability
                ),
            ));
        }
        if let Some(max) = self.velocity_max_orders {
            at_least_one("velocity_max_orders", max)?;
        }
        if self
            .velocity_max_total
            .is_some_and(|max| max <= Decimal::ZERO)
        {
            return Err(InvalidValue::new(
                "velocity_max_total",
                "must be greater than 0",
            ));
        }
        if !(1..=Self::MAX_VELOCITY_WINDOW_SECS).contains(&self.velocity_window_secs) {
            return Err(InvalidValue::new(
                "velocity_window_secs",
                format!(
                    "must be between 1 and {} (a week), got {}",
                    Self::MAX_VELOCITY_WINDOW_SECS,
                    self.velocity_window_secs
                ),
            ));
        }
        at_least_one("max_in_flight", self.max_in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{err, load};

    #[test]
    fn probability_out_of_range_is_rejected() {
        let e = err("[fraud]\nrefusal_probability = 1.5\n", &[]);
        assert!(e.contains("fraud.refusal_probability"), "{e}");
    }

    #[test]
    fn velocity_is_off_by_default_and_validated_by_name() {
        let c = load("", &[]).unwrap();
        assert!(!c.fraud.velocity_enabled());
        let c = load(
            "[fraud]\nvelocity_max_orders = 5\nvelocity_window_secs = 60\n",
            &[("PEDIDOS_FRAUD__VELOCITY_MAX_TOTAL", "\"999.90\"")],
        )
        .unwrap();
        assert!(c.fraud.velocity_enabled());
        assert_eq!(c.fraud.velocity_max_orders, Some(5));
        assert_eq!(c.fraud.velocity_max_total, Some(Decimal::new(99990, 2)));
        assert_eq!(c.fraud.velocity_window_secs, 60);
        for (toml, key) in [
            ("velocity_max_orders = 0", "fraud.velocity_max_orders"),
            ("velocity_max_total = \"0\"", "fraud.velocity_max_total"),
            ("velocity_window_secs = 0", "fraud.velocity_window_secs"),
            (
                "velocity_window_secs = 604801",
                "fraud.velocity_window_secs",
            ),
        ] {
            let e = err(&format!("[fraud]\n{toml}\n"), &[]);
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn money_limits_are_exact_decimals() {
        let c = load("[fraud]\nmax_total = \"1000.10\"\n", &[]).unwrap();
        assert_eq!(c.fraud.max_total, Some(Decimal::new(100010, 2)));
    }
}
