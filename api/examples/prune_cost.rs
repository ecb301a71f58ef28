//! What the view's retention costs the orders placed meanwhile, without a broker or HTTP: the
//! store's commit of a POST's order (its row and its `Analise`, as the writer makes it), timed
//! one by one, first alone, then while the retention prunes a backlog of old final orders in
//! its batches. That commit is what a POST waits for on PostgreSQL, and what a GET right after a
//! 202 waits for on SQLite; the broker's round trip, the rest of a POST, is not touched by it.
//!
//! `cargo run --release -p api --example prune_cost`, with, in the environment:
//! - `STORE_URL`: `sqlite:<file>` (default: a fresh file in a temporary directory) or
//!   `postgres://…` (an empty database);
//! - `OLD` (default 200,000): old final orders to prune;
//! - `EVERY_MS` (default 2): the pause between two timed commits (500 orders/s).

use std::time::{Duration, Instant};

use api::view::store::WriteConnection;
use api::view::{prune_past, Changes};
use rust_decimal::Decimal;
use shared::events::{Order, Status, StatusEvent};
use tokio_util::sync::CancellationToken;

mod common;
use common::{env, open_store};

fn order(i: usize, at: chrono::DateTime<chrono::Utc>) -> Order {
    Order {
        data_solicitacao: at,
        ..Order::new(
            format!("cliente{}", i % 500),
            "livro",
            1,
            Decimal::new(1990, 2),
        )
    }
}

/// p50, p99 and max of these durations, in ms.
fn summary(mut timed: Vec<Duration>) -> String {
    timed.sort();
    let at = |q: f64| timed[((timed.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    format!(
        "{} commits: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        timed.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

/// Commits one POST's order and its `Analise`, as the writer does; how long it took.
async fn commit(conn: &mut WriteConnection, i: usize) -> Duration {
    let o = order(i, chrono::Utc::now());
    let changes = Changes::accepted(&o, &StatusEvent::received(&o));
    let started = Instant::now();
    conn.write(&changes).await.expect("a POST's commit");
    started.elapsed()
}

#[tokio::main]
async fn main() {
    let old: usize = env("OLD", 200_000);
    let every = Duration::from_millis(env("EVERY_MS", 2));
    let (store, _dir) = open_store().await;
    let mut conn = store.write_connection();

    let ten_days_ago = chrono::Utc::now() - chrono::Duration::days(10);
    for (chunk, start) in (0..old).step_by(1_000).enumerate() {
        let mut changes = Changes::default();
        for i in start..(start + 1_000).min(old) {
            let o = order(i, ten_days_ago);
            changes.order(&o);
            changes.status(&StatusEvent::received(&o));
            changes.status(&StatusEvent::verdict(
                &o,
                Status::Aprovado,
                "ok",
                ten_days_ago,
            ));
        }
        changes.read_up_to("Pedidos", 0, chunk as i64);
        conn.write(&changes).await.expect("the backlog");
    }

    let mut placed = old;
    let mut alone = Vec::new();
    for _ in 0..2_000 {
        placed += 1;
        alone.push(commit(&mut conn, placed).await);
        tokio::time::sleep(every).await;
    }

    let pruning = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let n = prune_past(
                &store,
                Duration::from_secs(7 * 86_400),
                &CancellationToken::new(),
            )
            .await;
            (n, started.elapsed())
        })
    };
    let mut meanwhile = Vec::new();
    while !pruning.is_finished() {
        placed += 1;
        meanwhile.push(commit(&mut conn, placed).await);
        tokio::time::sleep(every).await;
    }
    let (pruned, took) = pruning.await.unwrap();
    assert_eq!(pruned as usize, old, "every old final order pruned");
    println!("POST commits alone: {}", summary(alone));
    println!("POST commits while pruning: {}", summary(meanwhile));
    println!(
        "pruned {pruned} orders in {:.1} s ({:.0} orders/s)",
        took.as_secs_f64(),
        pruned as f64 / took.as_secs_f64()
    );
}
