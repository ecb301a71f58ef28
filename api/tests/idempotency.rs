//! `Idempotency-Key` over HTTP, on a real broker: a retry gets the original answer and publishes
//! nothing, on another instance and after a restart too; a reused or malformed key is refused.

use std::time::Duration;

use api::orders::idempotency;
use serde_json::{json, Value};
use shared::events::{Order, OutRecord};
use testkit::{produce_raw, read_topic};

mod support;

use support::TestApi;

fn body(usuario: &str, produto: &str) -> Value {
    json!({"usuario": usuario, "produto": produto, "quantidade": 2, "valor": "19.90"})
}

/// Status, `Location` and body of an answer.
async fn answer(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (
        status,
        location,
        response.json().await.expect("a JSON body"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_original_answer_and_a_reused_or_malformed_key_is_refused() {
    let config = support::config();
    let api = TestApi::start(&config).await;

    let first = answer(api.post_json_keyed(b"k-1", &body("ana", "livro")).await).await;
    assert_eq!(first.0, 202, "{first:?}");
    let id = first.2["id"].as_str().unwrap().to_string();
    assert_eq!(first.1.as_deref(), Some(format!("/pedidos/{id}").as_str()));
    // The same request again, and written differently (19.9 is 19.90): the same answer.
    let again = answer(api.post_json_keyed(b"k-1", &body("ana", "livro")).await).await;
    assert_eq!(again, first);
    let mut respelled = body("ana", "livro");
    respelled["valor"] = json!(19.9);
    assert_eq!(
        answer(api.post_json_keyed(b"k-1", &respelled).await).await,
        first
    );

    // The same key with another body: 422 naming the header.
    let (status, _, error) =
        answer(api.post_json_keyed(b"k-1", &body("ana", "caneta")).await).await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "Idempotency-Key", "{error}");
    assert_eq!(error["error"], "idempotency_key_reused", "{error}");

    // Another customer's key is theirs: a new order.
    let bia = answer(api.post_json_keyed(b"k-1", &body("bia", "livro")).await).await;
    assert_eq!(bia.0, 202);
    assert_ne!(bia.2["id"], first.2["id"]);

    // Malformed keys: 400 naming the header.
    let long = vec![b'k'; 256];
    for (what, key) in [
        ("empty", &b""[..]),
        ("256 characters", &long[..]),
        ("a control character", b"k\t1"),
        ("not UTF-8", b"k\xff"),
    ] {
        let (status, _, error) =
            answer(api.post_json_keyed(key, &body("ana", "livro")).await).await;
        assert_eq!(status, 400, "{what}: {error}");
        assert_eq!(error["field"], "Idempotency-Key", "{what}: {error}");
    }
    assert_eq!(
        api.post_json_keyed(&vec![b'k'; 255], &body("ana", "livro"))
            .await
            .status(),
        202,
        "255 characters is a key"
    );

    // Without a key nothing changes: two posts, two orders.
    assert_eq!(api.post_json(&body("cia", "livro")).await.status(), 202);
    assert_eq!(api.post_json(&body("cia", "livro")).await.status(), 202);

    // On the topic: ana's order once, bia's, the 255-character key's, cia's two.
    let mut ids = support::order_ids_on_pedidos(&config, 5).await;
    assert_eq!(ids.len(), 5, "{ids:?}");
    ids.retain(|i| *i == id);
    assert_eq!(ids.len(), 1, "the retried order was published once");
    let analise = read_topic(
        &config.kafka,
        &config.topics.notificacoes,
        5,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(analise.len(), 5, "one Analise per order");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_and_a_restarted_one_answer_the_same_order() {
    let config = support::config();
    // Each instance with its view in a file of its own (an SQLite file serves one instance);
    // both read the same topics.
    let mut elsewhere_config = config.clone();
    elsewhere_config.api.store_url =
        shared::config::Secret::new(format!("{}-elsewhere", config.api.store_url.expose()));
    let first_api = TestApi::start(&config).await;
    let second_api = TestApi::start(&elsewhere_config).await;

    let first = answer(
        first_api
            .post_json_keyed(b"retry-me", &body("ana", "livro"))
            .await,
    )
    .await;
    assert_eq!(first.0, 202);
    // At once, on the other instance: it waits until its view holds what is on Pedidos.
    let elsewhere = answer(
        second_api
            .post_json_keyed(b"retry-me", &body("ana", "livro"))
            .await,
    )
    .await;
    assert_eq!(
        elsewhere, first,
        "the original order, dataSolicitacao included"
    );
    let (status, _, _) = answer(
        second_api
            .post_json_keyed(b"retry-me", &body("ana", "tv"))
            .await,
    )
    .await;
    assert_eq!(status, 422);

    // Both at once with a new key: one order id.
    let both = body("bia", "livro");
    let (a, b) = tokio::join!(
        first_api.post_json_keyed(b"both", &both),
        second_api.post_json_keyed(b"both", &both),
    );
    let (a, b) = (answer(a).await, answer(b).await);
    assert_eq!((a.0, b.0), (202, 202));
    assert_eq!(a.2["id"], b.2["id"]);

    // A restarted instance rebuilds its view before answering a keyed request.
    first_api.stop().await;
    second_api.stop().await;
    let restarted = TestApi::start(&config).await;
    let after = answer(
        restarted
            .post_json_keyed(b"retry-me", &body("ana", "livro"))
            .await,
    )
    .await;
    assert_eq!(after, first);

    let id = first.2["id"].as_str().unwrap();
    let ids = support::order_ids_on_pedidos(&config, 2).await;
    assert_eq!(ids.iter().filter(|i| *i == id).count(), 1, "{ids:?}");
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_the_broker_took_behind_a_503_is_what_the_retry_gets() {
    // The state a 503 can leave behind: the client heard nothing, yet the order's record is on
    // Pedidos (acknowledged after the API's deadline). Put it there as the API would have.
    let config = support::config();
    let taken = Order {
        id: idempotency::order_id("ana", "after-503"),
        ..Order::new("ana", "livro", 2, "19.90".parse().unwrap())
    };
    let record = OutRecord::event(&config.topics.pedidos, &taken);
    produce_raw(
        &config.kafka,
        &record.topic,
        record.key.as_deref(),
        &record.payload,
    )
    .await;

    let api = TestApi::start(&config).await;
    let (status, location, order) = answer(
        api.post_json_keyed(b"after-503", &body("ana", "livro"))
            .await,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(order["id"], taken.id.to_string());
    assert_eq!(location, Some(format!("/pedidos/{}", taken.id)));
    let taken_at: chrono::DateTime<chrono::Utc> =
        order["dataSolicitacao"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        taken_at, taken.data_solicitacao,
        "the order the broker took, not a new one"
    );
    assert_eq!(
        support::order_ids_on_pedidos(&config, 1).await.len(),
        1,
        "nothing published again"
    );
    api.stop().await;
}
