//! The orders tests post: the `i`-th test order, posting many at once, and posting while the
//! broker cannot acknowledge.

use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use shared::events::Order;

/// The `i`-th test order: most ordinary, some chosen to trip each rule.
pub fn order_body(i: usize) -> Value {
    let (usuario, produto, quantidade, valor) = match i % 10 {
        0 => (
            "mallory".to_string(),
            "livro".to_string(),
            1,
            "10.00".to_string(),
        ),
        1 => (
            format!("cliente{}", i % 13),
            "contrabando".to_string(),
            1,
            "10.00".to_string(),
        ),
        2 => (
            format!("cliente{}", i % 13),
            "tv".to_string(),
            1,
            "6000.00".to_string(),
        ),
        3 => (
            format!("cliente{}", i % 13),
            "geladeira".to_string(),
            5,
            "4500.00".to_string(),
        ),
        _ => (
            format!("cliente{}", i % 13),
            format!("produto{}", i % 17),
            1 + i % 4,
            format!("{}.{:02}", 1 + i % 400, i % 100),
        ),
    };
    json!({"usuario": usuario, "produto": produto, "quantidade": quantidade, "valor": valor})
}

/// Posts orders concurrently; returns the accepted orders as the API described them.
pub async fn post_orders(api_url: &str, bodies: Vec<Value>) -> Vec<Order> {
    let client = reqwest::Client::new();
    stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{api_url}/pedidos"))
                    .json(&body)
                    .send()
                    .await
                    .expect("POST sent");
                assert_eq!(response.status(), 202, "order {body} not accepted");
                let answer: Value = response.json().await.unwrap();
                Order {
                    id: answer["id"].as_str().unwrap().parse().unwrap(),
                    usuario: answer["usuario"].as_str().unwrap().into(),
                    produto: answer["produto"].as_str().unwrap().into(),
                    quantidade: answer["quantidade"].as_u64().unwrap() as u32,
                    valor: answer["valor"].as_str().unwrap().parse().unwrap(),
                    data_solicitacao: answer["dataSolicitacao"].as_str().unwrap().parse().unwrap(),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// Posts a few orders at once while the broker cannot acknowledge them: each must answer 503,
/// none 202, within `within`. Returns the answers' messages.
pub async fn assert_posts_answer_503(api_url: &str, within: Duration) -> Vec<String> {
    let client = reqwest::Client::builder()
        .timeout(within)
        .build()
        .expect("HTTP client");
    let posts = (0..3).map(|i| {
        client
            .post(format!("{api_url}/pedidos"))
            .json(&order_body(i))
            .send()
    });
    let mut messages = Vec::new();
    for response in futures::future::join_all(posts).await {
        let response =
            response.unwrap_or_else(|e| panic!("the API answers within {within:?}: {e}"));
        assert_eq!(
            response.status(),
            503,
            "no 202 while the broker cannot acknowledge"
        );
        let body: Value = response.json().await.expect("a JSON error body");
        messages.push(body["message"].as_str().unwrap_or_default().to_string());
    }
    messages
}
