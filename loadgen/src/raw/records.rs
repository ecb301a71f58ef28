//! The records one order causes, as the mesh writes them: the API's two (the order and its
//! `Analise`, built with `shared::events` as the API's publisher builds them) and fraud's two
//! (its verdict in its own words, and its records, from fraud's pure core itself).

use std::collections::HashMap;

use chrono::Utc;
use fraud::Rules;
use shared::config::{FraudConfig, TopicsConfig};
use shared::events::{Order, OutRecord, StatusEvent, HEADER_CORRELATION_ID};

use crate::orders::OrderGen;

/// The four records one order causes, each addressed as the mesh addresses it.
#[derive(Debug, Clone)]
pub struct OrderRecords {
    /// The API's, to `pedidos`.
    pub order: OutRecord,
    /// The API's `Analise`, to `notificacoes`.
    pub analise: OutRecord,
    /// Fraud's `Aprovado` or `Recusado`, to `notificacoes`.
    pub verdict: OutRecord,
    /// Fraud's, to `validos` or `recusados`.
    pub evaluated: OutRecord,
}

/// Whether the order at `index` of the pool is refused: 3 in 20, about the share the mesh
/// refuses of loadgen's orders with the default fraud rules (14-15 % in BENCHMARKS.md). By
/// index, so the share is exact and every run routes the same orders the same way.
pub fn refused(index: usize) -> bool {
    index % 20 < 3
}

/// The records of `orders` orders, as the mesh writes them to `topics`. The verdict is fixed by
/// [`refused`]; its wording is fraud's for that order under the `fraud` rules.
pub fn mesh_orders(
    topics: &TopicsConfig,
    fraud: &FraudConfig,
    seed: u64,
    orders: usize,
) -> Vec<OrderRecords> {
    let mut gen = OrderGen::new(seed, orders / 4 + 1);
    let rules = Rules::new(fraud);
    (0..orders)
        .map(|index| {
            let body = gen.next_order();
            // Placed as the API places it, with an id from the seeded source: the same seed
            // gives the same orders.
            let placed = Order::new(body.usuario, body.produto, body.quantidade, body.valor);
            let order = Order {
                id: gen.uuid(),
                ..placed
            };
            let verdict = fraud::verdict_as(&order, &rules, refused(index));
            let analise = OutRecord::event(&topics.notificacoes, &StatusEvent::received(&order));
            let placed = OutRecord::event(&topics.pedidos, &order);
            let [evaluated, verdict] = fraud::outputs(topics, order, verdict, Utc::now());
            OrderRecords {
                order: placed,
                analise,
                verdict,
                evaluated,
            }
        })
        .collect()
}

/// The records of `orders` orders, as the mesh writes them, all addressed to `topic`.
pub fn sample_records(
    topic: &str,
    fraud: &FraudConfig,
    seed: u64,
    orders: usize,
) -> Vec<OutRecord> {
    let one = TopicsConfig {
        pedidos: topic.to_string(),
        notificacoes: topic.to_string(),
        pedidos_validos: topic.to_string(),
        pedidos_recusados: topic.to_string(),
        ..TopicsConfig::default()
    };
    mesh_orders(&one, fraud, seed, orders)
        .into_iter()
        .flat_map(|o| [o.order, o.analise, o.verdict, o.evaluated])
        .collect()
}

/// Mean key, value and header bytes of the records.
pub fn average_sizes(records: &[OutRecord]) -> (f64, f64, f64) {
    let n = records.len().max(1) as f64;
    let key: usize = records
        .iter()
        .map(|r| r.key.as_ref().map_or(0, Vec::len))
        .sum();
    let value: usize = records.iter().map(|r| r.payload.len()).sum();
    let headers: usize = records
        .iter()
        .flat_map(|r| r.headers.iter().map(|(k, v)| k.len() + v.len()))
        .sum();
    (key as f64 / n, value as f64 / n, headers as f64 / n)
}

/// The pipeline's records: `orders` orders, cycled, and the way back from a consumed order to
/// its records (by correlation id: the key is the customer, shared by many orders).
pub struct OrderPool {
    orders: Vec<OrderRecords>,
    by_correlation: HashMap<Vec<u8>, usize>,
}

impl OrderPool {
    pub fn new(topics: &TopicsConfig, fraud: &FraudConfig, seed: u64, orders: usize) -> Self {
        let orders = mesh_orders(topics, fraud, seed, orders);
        let by_correlation = orders
            .iter()
            .enumerate()
            .filter_map(|(i, o)| Some((correlation_id(&o.order.headers)?.to_vec(), i)))
            .collect();
        Self {
            orders,
            by_correlation,
        }
    }

    /// The records of the `index`th order sent.
    pub fn get(&self, index: u64) -> &OrderRecords {
        &self.orders[(index % self.orders.len() as u64) as usize]
    }

    pub fn find(&self, correlation_id: &[u8]) -> Option<&OrderRecords> {
        self.by_correlation
            .get(correlation_id)
            .map(|&i| &self.orders[i])
    }
}

fn correlation_id(headers: &[(String, Vec<u8>)]) -> Option<&[u8]> {
    headers
        .iter()
        .find(|(k, _)| k == HEADER_CORRELATION_ID)
        .map(|(_, v)| v.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fraud::decide;
    use shared::config::Config;
    use shared::events::{decode, EvaluatedOrder, Status};

    const ORDERS: usize = 512;

    fn topics() -> TopicsConfig {
        crate::raw::topics::pipeline(&Config::default(), "p", 3)
    }

    fn event_type(record: &OutRecord) -> &[u8] {
        &record.headers[0].1
    }

    #[test]
    fn sample_records_look_like_the_mesh_traffic() {
        let records = sample_records("t", &FraudConfig::default(), 1, 100);
        assert_eq!(records.len(), 400);
        assert!(records.iter().all(|r| r.topic == "t" && r.key.is_some()));
        let (key, value, headers) = average_sizes(&records);
        assert!((8.0..40.0).contains(&key), "key {key}");
        // ~250-byte JSON values, as the daemons write.
        assert!((180.0..320.0).contains(&value), "value {value}");
        assert!(headers > 50.0, "headers {headers}");
        let types: std::collections::HashSet<Vec<u8>> =
            records.iter().map(|r| r.headers[0].1.clone()).collect();
        assert_eq!(types.len(), 3, "order, status and evaluated-order records");
    }

    #[test]
    fn pipeline_records_go_where_the_mesh_sends_them() {
        let pool = OrderPool::new(&topics(), &FraudConfig::default(), 7, ORDERS);
        assert_eq!(pool.orders.len(), ORDERS);
        for (i, o) in pool.orders.iter().enumerate() {
            assert_eq!(o.order.topic, "p-pedidos");
            assert_eq!(o.analise.topic, "p-notificacoes");
            assert_eq!(o.verdict.topic, "p-notificacoes");
            let expected = if refused(i) {
                "p-recusados"
            } else {
                "p-validos"
            };
            assert_eq!(o.evaluated.topic, expected, "order {i}");
            assert_eq!(event_type(&o.order), b"pedido.criado");
            assert_eq!(event_type(&o.analise), event_type(&o.verdict));
            assert_ne!(event_type(&o.evaluated), event_type(&o.order));
            // The verdict's body agrees with the topic the evaluated order goes to.
            let verdict: StatusEvent = decode(Some(&o.verdict.payload)).unwrap();
            let status = if refused(i) {
                Status::Recusado
            } else {
                Status::Aprovado
            };
            assert_eq!(verdict.status, status, "order {i}");
        }
    }

    #[test]
    fn refusals_are_worded_as_fraud_words_them() {
        let fraud = FraudConfig::default();
        let rules = Rules::new(&fraud);
        let pool = OrderPool::new(&topics(), &fraud, 5, ORDERS);
        for (i, o) in pool.orders.iter().enumerate() {
            let evaluated: EvaluatedOrder = decode(Some(&o.evaluated.payload)).unwrap();
            let verdict: StatusEvent = decode(Some(&o.verdict.payload)).unwrap();
            assert_eq!(verdict.motivo.as_deref(), Some(evaluated.motivo.as_str()));
            if !refused(i) {
                assert_eq!(evaluated.motivo, "aprovado", "order {i}");
                continue;
            }
            // What fraud says of this order, when its rules refuse it; else the risk draw.
            let fraud_says = decide(&evaluated.pedido, &rules);
            let expected = match fraud_says.status {
                Status::Recusado => fraud_says.motivo,
                _ => "recusado pela análise de risco".to_string(),
            };
            assert_eq!(evaluated.motivo, expected, "order {i}");
        }
    }

    #[test]
    fn the_relay_finds_every_order_by_its_correlation_id() {
        let pool = OrderPool::new(&topics(), &FraudConfig::default(), 3, ORDERS);
        assert_eq!(pool.by_correlation.len(), ORDERS, "ids are unique");
        for o in &pool.orders {
            let id = correlation_id(&o.order.headers).expect("has a correlation id");
            let found = pool.find(id).expect("found");
            assert_eq!(found.evaluated, o.evaluated);
        }
        assert!(pool.find(b"not an order").is_none());
        // Cycled past the pool's end.
        assert_eq!(pool.get(ORDERS as u64 + 5).order, pool.orders[5].order);
    }

    #[test]
    fn the_same_seed_gives_the_same_orders() {
        let ids = |seed| -> Vec<_> {
            OrderPool::new(&topics(), &FraudConfig::default(), seed, 8)
                .orders
                .iter()
                .map(|o| o.order.headers.clone())
                .collect()
        };
        assert_eq!(ids(9), ids(9));
        assert_ne!(ids(9), ids(10));
    }

    #[test]
    fn three_in_twenty_orders_are_refused() {
        let refusals = (0..20).filter(|&i| refused(i)).count();
        assert_eq!(refusals, 3);
        let pool = (0..ORDERS).filter(|&i| refused(i)).count() as f64;
        let share = pool / ORDERS as f64;
        assert!((0.14..0.16).contains(&share), "share {share}");
    }
}
