//! What notification did with each status event, read from its log as an operator would: the
//! messages it sent customers (target `notification`), and the `Analise` events it held back
//! because the order's verdict had been told first (target `notification::held_back`; the API
//! sends an order and its `Analise` together, so the verdict can reach `Notificacoes` first).

use std::collections::{HashMap, HashSet};

use serde_json::Value;

/// The target of the log line notification writes for a held-back `Analise`.
pub const HELD_BACK: &str = "notification::held_back";

#[derive(Debug, Default)]
pub struct Notifications {
    /// Messages sent, by (order id, status).
    pub told: HashMap<(String, String), usize>,
    /// Orders whose `Analise` was held back.
    pub held_back: HashSet<String>,
}

impl Notifications {
    pub fn from_log(events: &[Value]) -> Self {
        let mut found = Self::default();
        for e in events {
            let (Some(pedido), Some(status)) = (e["pedido"].as_str(), e["status"].as_str()) else {
                continue;
            };
            if e["target"] == "notification" {
                *found
                    .told
                    .entry((pedido.to_string(), status.to_string()))
                    .or_default() += 1;
            } else if e["target"] == HELD_BACK && status == "Analise" {
                found.held_back.insert(pedido.to_string());
            }
        }
        found
    }

    /// How often `id`'s `status` was told.
    pub fn times_told(&self, id: &str, status: &str) -> usize {
        let key = (id.to_string(), status.to_string());
        self.told.get(&key).copied().unwrap_or(0)
    }

    /// Whether `id`'s `Analise` reached notification: told, or held back behind the verdict.
    pub fn analise_handled(&self, id: &str) -> bool {
        self.times_told(id, "Analise") > 0 || self.held_back.contains(id)
    }

    /// Messages sent and `Analise` events held back, together.
    pub fn handled(&self) -> usize {
        self.told.values().sum::<usize>() + self.held_back.len()
    }
}
