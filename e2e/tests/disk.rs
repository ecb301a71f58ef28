//! The API on a full disk (real processes, real Apache Kafka): its SQLite view on a small
//! tmpfs that fills up under a steady stream of orders, then is freed.
//!
//! What the API promises there (README, "When the store cannot write"): no order is placed
//! while the store cannot write, since a 202 promises that a GET, or a retried
//! `Idempotency-Key`, finds the order; POSTs get 503 `store_unavailable` and nothing is
//! published; a retry of an order the store already holds is answered as ever; GETs answer
//! what the store holds; `/ready` is 503 naming the store and the error; nothing exits; once
//! space returns the view catches up from its offsets, and the ledger shows nothing lost.
//!
//! Run with the figures: `cargo test -p e2e --test disk -- --nocapture`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use e2e::audit::{metric_sum, Tmpfs};
use e2e::ledger::{check_sent, Driver};
use e2e::mesh::{Mesh, Options, WAIT};
use e2e::orders::order_body;
use e2e::{message, ready_becomes};
use serde_json::Value;
use testkit::Broker;

async fn post_keyed(
    client: &reqwest::Client,
    api_url: &str,
    key: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client
        .post(format!("{api_url}/pedidos"))
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .expect("POST answered");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.expect("GET answered");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_the_api_places_no_order_it_could_not_show_and_catches_up_once_freed() {
    let base = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(&base.path().join("disk"), 16 * 1024 * 1024) else {
        return;
    };
    let store = format!("sqlite:{}", disk.dir.join("view.db").display());
    let options = Options::default().with_env(&[("PEDIDOS_API__STORE_URL", &store)]);
    let mut mesh = Mesh::start_with_options(Broker::shared(), options).await;
    let api = mesh.api_url.clone();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // A keyed order the store holds before the disk fills, of a customer of its own.
    let mut kept_body = order_body(7);
    kept_body["usuario"] = "disco".into();
    let (code, kept) = post_keyed(&client, &api, "antes-do-disco-cheio", &kept_body).await;
    assert_eq!(code, 202, "{kept}");
    let kept_id = kept["id"].as_str().unwrap().to_string();
    let (code, _) = get(&client, &format!("{api}/pedidos/{kept_id}?wait=30")).await;
    assert_eq!(code, 200);

    let driver = Driver::start(&api, 1_000_000, 100, 8);
    driver.wait_accepted(300, WAIT).await;
    let filler = disk.fill();
    let full_at = Instant::now();
    let body = ready_becomes("the API on a full disk", &api, 503).await;
    let failed_after = full_at.elapsed();
    let reasons = body["reasons"].to_string();
    assert!(
        reasons.contains("order store") && reasons.contains("full"),
        "/ready names the store and the full disk: {body}"
    );

    // A new order: 503, naming the store; nothing published.
    let (code, refused) = post_keyed(&client, &api, "com-o-disco-cheio", &order_body(8)).await;
    assert_eq!(code, 503, "{refused}");
    assert_eq!(refused["error"], "store_unavailable", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("full"),
        "{refused}"
    );
    let unkeyed = client
        .post(format!("{api}/pedidos"))
        .json(&order_body(9))
        .send()
        .await
        .unwrap();
    assert_eq!(unkeyed.status().as_u16(), 503);
    // A retry of an order the store holds: the original answer, as ever.
    let (code, replayed) = post_keyed(&client, &api, "antes-do-disco-cheio", &kept_body).await;
    assert_eq!(code, 202, "{replayed}");
    assert_eq!(replayed["id"], kept["id"]);
    assert_eq!(replayed["dataSolicitacao"], kept["dataSolicitacao"]);
    // GETs answer what the store holds; a listing that would leave out an order accepted
    // just before the disk filled (not written yet) answers 503 instead.
    let (code, view) = get(&client, &format!("{api}/pedidos/{kept_id}")).await;
    assert_eq!(code, 200, "{view}");
    let (code, page) = get(&client, &format!("{api}/pedidos?usuario=disco")).await;
    assert_eq!((code, &page["total"]), (200, &1.into()), "{page}");

    // Held there for a while: the API stays up, the stream gets 503s, the gauge says why.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let metrics = client
        .get(format!("{api}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_sum(&metrics, "pedidos_order_store_write_blocked"),
        1.0
    );
    assert!(mesh.daemon_mut("api").is_running(), "the API does not exit");
    let accepted_while_full = driver.accepted();

    std::fs::remove_file(&filler).unwrap();
    let freed_at = Instant::now();
    ready_becomes("the API once space returns", &api, 200).await;
    let ready_after = freed_at.elapsed();
    mesh.daemon("api")
        .wait_for_log("the store's recovery", WAIT, |e| {
            message(e).starts_with("the order view's store takes writes again")
        });
    driver.wait_accepted(accepted_while_full + 100, WAIT).await;
    driver.stop();
    let sent = driver.finish().await;

    // The key refused while full places its order now, once.
    let (code, placed) = post_keyed(&client, &api, "com-o-disco-cheio", &order_body(8)).await;
    assert_eq!(code, 202, "{placed}");
    let placed_id = placed["id"].as_str().unwrap().to_string();

    let report = check_sent(&mut mesh, &sent, "a full disk under the API's view").await;
    let refused_503 = report.failed("http 503");
    assert!(refused_503 > 0, "the stream met the full disk: {report}");
    assert_eq!(
        report.failures.values().sum::<usize>(),
        refused_503,
        "503s only: {report}"
    );

    // The view caught up: every order on Pedidos, once, each accepted one with its verdict.
    let on_pedidos = testkit::order_ids(
        &mesh.config.kafka,
        &mesh.config.topics.pedidos,
        sent.accepted.len() + 2,
        Duration::from_secs(30),
    )
    .await;
    let distinct: HashSet<&String> = on_pedidos.iter().collect();
    assert_eq!(distinct.len(), on_pedidos.len(), "no order published twice");
    assert!(distinct.contains(&placed_id) && distinct.contains(&kept_id));
    for id in sent.accepted.keys() {
        assert!(
            distinct.contains(id),
            "a 202 whose order is not on Pedidos: {id}"
        );
        let (code, view) = get(&client, &format!("{api}/pedidos/{id}?wait=30")).await;
        assert_eq!(code, 200, "{id}: {view}");
        assert!(
            ["Aprovado", "Recusado"].contains(&view["status"].as_str().unwrap_or("")),
            "{view}"
        );
    }
    let (_, page) = get(&client, &format!("{api}/pedidos?limit=1")).await;
    assert_eq!(
        page["total"],
        distinct.len(),
        "the view holds every order on Pedidos"
    );
    mesh.assert_all_running();
    eprintln!(
        "API on a full disk: /ready 503 {:.1} s after the fill, {refused_503} POSTs refused (503) while full, {} accepted in all, /ready 200 {:.1} s after the space returned; {report}",
        failed_after.as_secs_f64(),
        sent.accepted.len(),
        ready_after.as_secs_f64()
    );
    drop(mesh);
    drop(disk);
}
