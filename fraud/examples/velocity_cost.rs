//! What the velocity rule costs fraud per order, without a broker: the handler decides the same
//! 300,000 orders (500 customers, a fifth of them placing 80 % of the orders, one order every
//! 0.5 ms) with velocity off, then on (limits high enough never to refuse, a one-hour window, so
//! every order is kept).
//!
//! `cargo run --release -p fraud --example velocity_cost`

use std::time::Instant;

use chrono::DateTime;
use fraud::FraudHandler;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::config::Config;
use shared::events::Order;
use shared::pipeline::{Handler, InRecord};

const ORDERS: usize = 300_000;

fn payloads() -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..ORDERS)
        .map(|n| {
            let user = if rng.random_bool(0.8) {
                rng.random_range(0..100)
            } else {
                rng.random_range(0..500)
            };
            let order = Order {
                data_solicitacao: DateTime::from_timestamp_millis(1_800_000_000_000 + n as i64 / 2)
                    .unwrap(),
                ..Order::new(
                    format!("cliente{user}"),
                    "livro",
                    1 + rng.random_range(0..3),
                    "19.90".parse().unwrap(),
                )
            };
            serde_json::to_vec(&order).unwrap()
        })
        .collect()
}

/// Nanoseconds per order through `handle`.
fn per_order(mut handler: FraudHandler, payloads: &[Vec<u8>]) -> f64 {
    let started = Instant::now();
    for (n, payload) in payloads.iter().enumerate() {
        let mut record = InRecord::new("Pedidos", Some(payload));
        record.partition = (n % 3) as i32;
        record.offset = (n / 3) as i64;
        std::hint::black_box(handler.handle(&record).unwrap());
    }
    started.elapsed().as_nanos() as f64 / payloads.len() as f64
}

fn main() {
    let payloads = payloads();
    let mut off = Config::default();
    off.fraud.refusal_probability = 0.0;
    let mut on = off.clone();
    on.fraud.velocity_max_orders = Some(u32::MAX);
    on.fraud.velocity_max_total = Some("1000000000".parse().unwrap());
    on.fraud.velocity_window_secs = 3_600;
    for round in 1..=3 {
        let off_ns = per_order(FraudHandler::new(&off), &payloads);
        let on_ns = per_order(FraudHandler::new(&on), &payloads);
        println!(
            "round {round}: velocity off {:.2} µs/order, on {:.2} µs/order (+{:.2})",
            off_ns / 1e3,
            on_ns / 1e3,
            (on_ns - off_ns) / 1e3
        );
    }
}
