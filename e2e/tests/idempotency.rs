//! `Idempotency-Key` across a crash: orders posted with keys, the API killed (-9) and
//! restarted, every order retried. Each retry gets its original order back, and the ledger
//! shows each key's order exactly once: one verdict record, told once, audited.

use std::collections::HashMap;

use e2e::ledger::{check_sent, Sent};
use e2e::mesh::{Mesh, WAIT};
use e2e::orders::order_body;
use e2e::{eventually, message};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use testkit::Broker;

const ORDERS: usize = 300;

/// Posts every `(key, body)`; returns each answer's status and body, in the order given.
async fn post_keyed(api_url: &str, requests: Vec<(String, Value)>) -> Vec<(u16, Value)> {
    let client = reqwest::Client::new();
    stream::iter(requests)
        .map(|(key, body)| {
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{api_url}/pedidos"))
                    .header("idempotency-key", key)
                    .json(&body)
                    .send()
                    .await
                    .expect("POST answered");
                let status = response.status().as_u16();
                (status, response.json().await.expect("a JSON body"))
            }
        })
        .buffered(16)
        .collect()
        .await
}

fn keyed(range: std::ops::Range<usize>) -> Vec<(String, Value)> {
    range
        .map(|i| (format!("order-{i}"), order_body(i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_a_kill_9_of_the_api_get_the_same_orders_and_the_ledger_one_each() {
    let mut mesh = Mesh::start(Broker::shared(), 1).await;
    let first = post_keyed(&mesh.api_url, keyed(0..ORDERS)).await;
    assert!(
        first.iter().all(|(status, _)| *status == 202),
        "all accepted"
    );

    mesh.daemon_mut("api").kill();
    mesh.daemon_mut("api").start();
    eventually("the restarted API to listen", WAIT, || {
        let listening = mesh
            .daemon("api")
            .log_events()
            .iter()
            .filter(|e| message(e).starts_with("pedidos API listening"))
            .count();
        (listening == 2).then_some(())
    })
    .await;

    let retried = post_keyed(&mesh.api_url, keyed(0..ORDERS)).await;
    for (i, (before, after)) in first.iter().zip(&retried).enumerate() {
        assert_eq!(
            after, before,
            "order-{i}: the retry gets the original answer"
        );
    }
    // A key its customer reuses for another order is refused, and places nothing.
    let reused: Vec<(String, Value)> = keyed(0..10)
        .into_iter()
        .map(|(key, mut body)| {
            body["produto"] = "outro produto".into();
            (key, body)
        })
        .collect();
    for (status, error) in post_keyed(&mesh.api_url, reused).await {
        assert_eq!(status, 422, "{error}");
        assert_eq!(error["field"], "Idempotency-Key");
    }

    let sent = Sent {
        sent: ORDERS,
        accepted: first
            .iter()
            .map(|(_, order)| {
                let field = |name: &str| order[name].as_str().unwrap().to_string();
                (field("id"), field("usuario"))
            })
            .collect::<HashMap<_, _>>(),
        ..Sent::default()
    };
    assert_eq!(sent.accepted.len(), ORDERS, "one order per key");
    let report = check_sent(
        &mut mesh,
        &sent,
        "kill -9 of the api and retrying every key",
    )
    .await;
    assert_eq!(
        report.verdict_records, ORDERS,
        "exactly one verdict per key: {report}"
    );
    assert_eq!(report.notification_repeats, 0, "{report}");
}
