//! The view's retention (`api.view_retention_days`), with each store (SQLite, PostgreSQL):
//! orders with their verdict older than it are pruned; recent ones and those still in
//! `Analise` stay; a retried `Idempotency-Key` of a pruned order is told it expired (422) and
//! nothing is published; a recent key is answered as ever; and the offsets stay, so a restart
//! (retention off) neither re-reads the topics nor brings a pruned order back.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use shared::events::{Order, OutRecord, Status, StatusEvent};
use shared::Config;

mod support;

use support::TestApi;

fn order_at(usuario: &str, at: DateTime<Utc>) -> Order {
    Order {
        data_solicitacao: at,
        ..Order::new(usuario, "livro", 1, "9.90".parse().unwrap())
    }
}

/// An order, its `Analise` and, when `final`, its verdict: as the API and fraud publish them.
fn records(config: &Config, order: &Order, decided: bool) -> Vec<OutRecord> {
    let mut out = vec![
        OutRecord::event(&config.topics.pedidos, order),
        OutRecord::event(&config.topics.notificacoes, &StatusEvent::received(order)),
    ];
    if decided {
        let verdict = StatusEvent::verdict(order, Status::Aprovado, "ok", order.data_solicitacao);
        out.push(OutRecord::event(&config.topics.notificacoes, &verdict));
    }
    out
}

fn body(usuario: &str) -> Value {
    json!({"usuario": usuario, "produto": "livro", "quantidade": 1, "valor": "9.90"})
}

async fn total(api: &TestApi) -> u64 {
    api.get_json("/pedidos?limit=1").await["total"]
        .as_u64()
        .unwrap()
}

async fn status_of(api: &TestApi, id: impl std::fmt::Display) -> (u16, Value) {
    let response = api.get(&format!("/pedidos/{id}")).await;
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_orders_past_the_retention_are_pruned_and_a_retried_key_of_one_is_told_it_expired() {
    for (store, mut config) in support::per_store() {
        let old = Utc::now() - chrono::Duration::days(10);
        let old_final: Vec<Order> = (0..1_200)
            .map(|i| order_at(&format!("velho{}", i % 7), old))
            .collect();
        let old_pending: Vec<Order> = (0..5).map(|_| order_at("pendente", old)).collect();
        let recent: Vec<Order> = (0..20).map(|_| order_at("recente", Utc::now())).collect();
        // A keyed order placed ten days ago, as the API would have placed it.
        let old_keyed = Order {
            id: api::orders::idempotency::order_id("chave", "velha"),
            ..order_at("chave", old)
        };
        let mut all = Vec::new();
        for o in &old_final {
            all.extend(records(&config, o, true));
        }
        for o in &old_pending {
            all.extend(records(&config, o, false));
        }
        all.extend(records(&config, &old_keyed, true));
        for o in &recent {
            all.extend(records(&config, o, true));
        }
        testkit::produce_events(&config.kafka, &all).await;

        config.api.view_retention_days = Some(7);
        config.api.view_prune_interval_secs = 1;
        let api = TestApi::start(&config).await;
        let response = api.post_json_keyed(b"nova", &body("chave")).await;
        assert_eq!(response.status(), 202, "{store}");
        let fresh: Value = response.json().await.unwrap();

        // Kept: the pending, the recent and the new keyed order.
        let kept = (old_pending.len() + recent.len() + 1) as u64;
        let deadline = Instant::now() + Duration::from_secs(30);
        while total(&api).await != kept {
            assert!(
                Instant::now() < deadline,
                "{store}: the view holds {} orders, not {kept}",
                total(&api).await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (code, _) = status_of(&api, old_final[0].id).await;
        assert_eq!(code, 404, "{store}: an old final order is pruned");
        let (code, view) = status_of(&api, old_pending[0].id).await;
        assert_eq!(
            (code, view["status"].as_str()),
            (200, Some("Analise")),
            "{store}: {view}"
        );
        let (code, view) = status_of(&api, recent[0].id).await;
        assert_eq!(
            (code, view["status"].as_str()),
            (200, Some("Aprovado")),
            "{store}: {view}"
        );

        // Past the retention: the key's order is gone, and the retry is told it expired.
        let response = api.post_json_keyed(b"velha", &body("chave")).await;
        assert_eq!(response.status(), 422, "{store}");
        let refused: Value = response.json().await.unwrap();
        assert_eq!(refused["field"], "Idempotency-Key", "{store}: {refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("longer ago"),
            "{store}: {refused}"
        );
        // Within it: the original answer.
        let response = api.post_json_keyed(b"nova", &body("chave")).await;
        assert_eq!(response.status(), 202, "{store}");
        let replayed: Value = response.json().await.unwrap();
        assert_eq!(replayed["id"], fresh["id"], "{store}");
        assert_eq!(
            replayed["dataSolicitacao"], fresh["dataSolicitacao"],
            "{store}"
        );
        api.stop().await;

        // The offsets stayed: restarted without retention, the view re-reads nothing, so no
        // pruned order comes back.
        config.api.view_retention_days = None;
        let api = TestApi::start(&config).await;
        let response = api.post_json_keyed(b"depois", &body("chave")).await;
        assert_eq!(
            response.status(),
            202,
            "{store}: a keyed POST waits for the view to catch up"
        );
        assert_eq!(total(&api).await, kept + 1, "{store}");
        let (code, _) = status_of(&api, old_keyed.id).await;
        assert_eq!(code, 404, "{store}: the pruned keyed order stays pruned");
        api.stop().await;

        let on_pedidos = support::order_ids_on_pedidos(&config, all.len() / 3).await;
        let velha = old_keyed.id.to_string();
        assert_eq!(
            on_pedidos.iter().filter(|id| **id == velha).count(),
            1,
            "{store}: the expired key published nothing"
        );
    }
}
