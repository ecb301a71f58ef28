//! `[fraud]`: the daemon that decides each order.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::{at_least_one, InvalidValue};

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
    /// Orders processed concurrently (produced but not yet acknowledged).
    pub max_in_flight: usize,
    /// Exactly-once mode: decide and publish inside Kafka transactions (brokers with
    /// transactions only, e.g. Confluent Cloud).
    pub transactional: bool,
    /// The `transactional.id` in that mode; stable across restarts of one process, distinct
    /// between processes. Default: `<group_id>-<kafka.group_instance_id or "0">`.
    pub transactional_id: Option<String>,
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
            max_in_flight: 2_000,
            transactional: false,
            transactional_id: None,
        }
    }
}

impl FraudConfig {
    pub(super) fn validate(&self) -> Result<(), InvalidValue> {
        if !(0.0..=1.0).contains(&self.refusal_probability) {
            return Err(InvalidValue::new(
                "refusal_probability",
                format!(
                    "must be between 0.0 and 1.0, got {}",
                    self.refusal_probability
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
    fn money_limits_are_exact_decimals() {
        let c = load("[fraud]\nmax_total = \"1000.10\"\n", &[]).unwrap();
        assert_eq!(c.fraud.max_total, Some(Decimal::new(100010, 2)));
    }
}
