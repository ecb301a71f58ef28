//! A topic deleted and created again under the same name, on the same cluster, with each store
//! (SQLite, PostgreSQL): the view knows each topic's Kafka id (KIP-516), so the API refuses to
//! start on a view read from the old topic, naming the topic, both ids and the way out;
//! `api.rebuild_view_for_topic_ids` with the new id rebuilds it, and a retried
//! `Idempotency-Key` then places its order on the new topic. A topic recreated while the API
//! runs stops it with the same message.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use shared::Config;
use tokio_util::sync::CancellationToken;

mod support;

use support::TestApi;

fn order(produto: &str) -> Value {
    json!({"usuario": "ana", "produto": produto, "quantidade": 1, "valor": "9.90"})
}

async fn topic_id(config: &Config, topic: &str) -> String {
    let ids =
        shared::kafka::topic_ids(&config.kafka, &[topic.to_string()], Duration::from_secs(10))
            .await
            .expect("the topic's id");
    ids[topic].clone()
}

/// Deletes `topic` and creates it again, as an operator changing its partitions would; returns
/// its new id once the broker shows it.
async fn recreate(config: &Config, topic: &str) -> String {
    let old = topic_id(config, topic).await;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.bootstrap_servers)
        .create()
        .expect("an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    admin
        .delete_topics(&[topic], &options)
        .await
        .expect("DeleteTopics answered")[0]
        .as_ref()
        .expect("deleted");
    let deadline = Instant::now() + Duration::from_secs(30);
    let partitions = config.topics.partitions;
    loop {
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let created = admin.create_topics(&[new], &options).await.unwrap();
        if created[0].is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{topic} not created again: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    loop {
        if let Ok(ids) =
            shared::kafka::topic_ids(&config.kafka, &[topic.to_string()], Duration::from_secs(10))
                .await
        {
            if ids.get(topic).is_some_and(|id| *id != old) {
                return ids[topic].clone();
            }
        }
        assert!(Instant::now() < deadline, "{topic}'s new id not shown");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_of_a_recreated_topic_is_refused_rebuilt_when_asked_and_stops_a_running_api() {
    for (store, mut config) in support::per_store() {
        let api = TestApi::start(&config).await;
        let keyed = support::place(&api, Some(b"k-1"), &order("livro")).await;
        api.stop().await;

        let pedidos = config.topics.pedidos.clone();
        let old = topic_id(&config, &pedidos).await;
        let new = recreate(&config, &pedidos).await;
        let error = match api::Application::build(&config).await {
            Ok(_) => panic!("{store}: started on a view of the old {pedidos}"),
            Err(e) => e.to_string(),
        };
        for named in [
            pedidos.as_str(),
            old.as_str(),
            new.as_str(),
            "api.rebuild_view_for_topic_ids",
        ] {
            assert!(error.contains(named), "{store}: names {named}: {error}");
        }
        config.api.rebuild_view_for_topic_ids = vec![old.clone()];
        assert!(
            api::Application::build(&config).await.is_err(),
            "{store}: only the new id rebuilds"
        );

        config.api.rebuild_view_for_topic_ids = vec![new.clone()];
        let api = TestApi::start(&config).await;
        assert_eq!(
            support::place(&api, Some(b"k-1"), &order("livro")).await,
            keyed,
            "{store}: the retry is the same order"
        );
        assert!(
            support::order_ids_on_pedidos(&config, 1)
                .await
                .contains(&keyed),
            "{store}: the retried order was published on the new topic (the view was emptied: \
             answered from the old one, it would have published nothing)"
        );
        api.stop().await;

        // While it runs: Notificacoes recreated under it stops the API, naming it.
        let app = api::Application::build(&config)
            .await
            .expect("starts: left set, the option changes nothing");
        let running = tokio::spawn(app.run_until(CancellationToken::new()));
        let notificacoes = config.topics.notificacoes.clone();
        let renewed = recreate(&config, &notificacoes).await;
        let stopped = tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .unwrap_or_else(|_| {
                panic!("{store}: still running 60 s after {notificacoes} was recreated")
            })
            .expect("the server task ends");
        let error = stopped.expect_err("stops with an error").to_string();
        for named in [
            notificacoes.as_str(),
            renewed.as_str(),
            "while the API ran",
            "api.rebuild_view_for_topic_ids",
        ] {
            assert!(error.contains(named), "{store}: names {named}: {error}");
        }
        eprintln!("{store}: {error}");
    }
}
