//! What the order view's store costs per order, without a broker or HTTP: the writes the API
//! makes for each order, in the shape they take at full speed. For every 1,000 orders: the POST
//! handlers' group commits (`POST_BATCH` orders each, an order row and its `Analise`), then the
//! reader's batches of up to 1,000 records (the order, its `Analise` and its verdict, with the
//! offsets they were read up to).
//!
//! `cargo run --release -p api --example store_cost`, with, in the environment:
//! - `STORE_URL`: `sqlite:<file>` (default: a fresh file in a temporary directory) or
//!   `postgres://…` (an empty database);
//! - `ORDERS` (default 100,000), `POST_BATCH` (default 10);
//! - `IDS`: `v4` (random order ids) or `v7` (time-ordered, what `Order::new` makes), default
//!   `v7`;
//! - `READER`: `all` (the reader writes every record it reads) or `skip-own` (it skips the order
//!   and `Analise` the POST already wrote, and writes the verdict), default `skip-own`.
//!
//! Prints wall time and, for SQLite (which runs in this process), CPU time per order.

use std::time::{Duration, Instant};

use api::view::Changes;
use rust_decimal::Decimal;
use shared::events::{Order, Status, StatusEvent};
use uuid::Uuid;

mod common;
use common::{env, open_store};

/// This process's user + system CPU time, from /proc (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

#[tokio::main]
async fn main() {
    let orders: usize = env("ORDERS", 100_000);
    let post_batch: usize = env("POST_BATCH", 10);
    let v7 = env("IDS", "v7".to_string()) == "v7";
    let skip_own = env("READER", "skip-own".to_string()) == "skip-own";
    let (store, _dir) = open_store().await;
    let mut conn = store.write_connection();

    let mut offset = 0i64;
    let (wall, cpu) = (Instant::now(), cpu_time());
    for round in 0..orders.div_ceil(1000) {
        let placed: Vec<Order> = (0..1000)
            .map(|n| {
                let mut order = Order::new(
                    format!("cliente{}", (round * 1000 + n) % 500),
                    "livro",
                    1,
                    Decimal::new(1990, 2),
                );
                order.id = if v7 { Uuid::now_v7() } else { Uuid::new_v4() };
                order
            })
            .collect();
        for group in placed.chunks(post_batch) {
            let mut changes = Changes::default();
            for order in group {
                changes.order(order);
                changes.status(&StatusEvent::received(order));
            }
            conn.write(&changes).await.expect("a POST commit");
        }
        let mut records: Vec<Changes> = Vec::new();
        let mut batch = Changes::default();
        let mut in_batch = 0;
        for order in &placed {
            let verdict =
                StatusEvent::verdict(order, Status::Aprovado, "ok", order.data_solicitacao);
            if !skip_own {
                batch.order(order);
                batch.status(&StatusEvent::received(order));
                batch.read_up_to("Pedidos", 0, offset);
                in_batch += 2;
            }
            batch.status(&verdict);
            batch.read_up_to("Notificacoes", 0, offset);
            offset += 1;
            in_batch += 1;
            if in_batch >= 1000 {
                records.push(std::mem::take(&mut batch));
                in_batch = 0;
            }
        }
        records.push(batch);
        for changes in records {
            conn.write(&changes).await.expect("a reader commit");
        }
    }
    let (wall, cpu) = (wall.elapsed(), cpu_time() - cpu);
    let per = |d: Duration| d.as_micros() as f64 / orders as f64;
    println!(
        "{orders} orders, ids {}, reader {}, POST commits of {post_batch}: {:.1} µs wall, \
         {:.1} µs CPU (this process) per order; {:.0} orders/s",
        if v7 { "v7" } else { "v4" },
        if skip_own { "skip-own" } else { "all" },
        per(wall),
        per(cpu),
        orders as f64 / wall.as_secs_f64(),
    );
}
