//! What the trace work costs fraud per order, without a broker: the handler decides the same
//! 200,000 orders, each record carrying a `traceparent`, first bare (`Handler::handle`), then
//! as the loop runs it (`shared::pipeline::traced::handle`: a span continuing the record's
//! trace, `traceparent` on both outputs) under the daemons' subscriber, with export off or
//! (`on`) exporting to an OTLP endpoint on a closed port (each batch fails at once; at this rate
//! the bounded queue fills and most spans are dropped, the cheapest path a span can take).
//!
//! `cargo run --release -p fraud --example trace_cost -- off` (or `on`): one subscriber per
//! process, so one mode per run.

use std::time::Instant;

use fraud::FraudHandler;
use rdkafka::message::{Header, OwnedHeaders};
use shared::config::{Config, TelemetryConfig};
use shared::events::Order;
use shared::pipeline::{traced, DeadLetters, Handler, InRecord};

const ORDERS: usize = 200_000;
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn payloads() -> Vec<Vec<u8>> {
    (0..ORDERS)
        .map(|n| {
            let order = Order::new(
                format!("cliente{}", n % 500),
                "livro",
                1,
                "19.90".parse().unwrap(),
            );
            serde_json::to_vec(&order).unwrap()
        })
        .collect()
}

/// Nanoseconds per order through `step`.
fn per_order(
    headers: &OwnedHeaders,
    payloads: &[Vec<u8>],
    mut step: impl FnMut(&InRecord<'_>),
) -> f64 {
    let started = Instant::now();
    for (n, payload) in payloads.iter().enumerate() {
        let mut record =
            InRecord::new("Pedidos", Some(payload)).with_headers(headers.as_borrowed());
        record.partition = (n % 3) as i32;
        record.offset = (n / 3) as i64;
        step(&record);
    }
    started.elapsed().as_nanos() as f64 / payloads.len() as f64
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "off".into());
    let mut config = Config::default();
    config.fraud.refusal_probability = 0.0;
    // fraud's default filter (info): its per-order line is at debug, so nothing is printed, but
    // the log layer still formats each record span's fields, as in production.
    let telemetry = TelemetryConfig {
        otlp_endpoint: match mode.as_str() {
            "off" => None,
            "on" => Some("http://127.0.0.1:9".into()),
            other => panic!("mode is off or on, not {other:?}"),
        },
        ..TelemetryConfig::default()
    };
    shared::telemetry::init(&telemetry, "fraud");
    let payloads = payloads();
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "event-type",
            value: Some("pedido.criado"),
        })
        .insert(Header {
            key: "traceparent",
            value: Some(PARENT),
        });
    for round in 1..=3 {
        let mut handler = FraudHandler::new(&config);
        let bare = per_order(&headers, &payloads, |r| {
            std::hint::black_box(handler.handle(r).unwrap());
        });
        let mut handler = FraudHandler::new(&config);
        let mut dead_letters = DeadLetters::new("_dlq", "fraud", &["Pedidos".to_string()]);
        let traced = per_order(&headers, &payloads, |r| {
            std::hint::black_box(traced::handle(&mut dead_letters, &mut handler, r));
        });
        println!(
            "round {round}: export {mode}: handler {:.2} µs/order, traced {:.2} µs/order (+{:.2})",
            bare / 1e3,
            traced / 1e3,
            (traced - bare) / 1e3
        );
    }
    shared::daemon::exit("trace_cost", Ok::<(), String>(()));
}
