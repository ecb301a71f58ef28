//! The order view knows which Kafka cluster it was built from. Pointed at another cluster with
//! the same store, the API refuses to start, naming both clusters and the way out; with
//! `api.rebuild_view_for_cluster` set to the new cluster's id it empties the view and starts,
//! and a retried `Idempotency-Key` then places its order on the new cluster instead of being
//! answered from the old cluster's view with nothing published. With each store.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use shared::config::KafkaConfig;
use testkit::Broker;

mod support;

use support::TestApi;

/// The cluster's id, as the broker reports it.
fn cluster_id(kafka: &KafkaConfig) -> String {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create()
        .expect("a client");
    consumer
        .client()
        .fetch_cluster_id(Duration::from_secs(10))
        .expect("the broker names its cluster")
}

fn order(produto: &str) -> Value {
    json!({"usuario": "ana", "produto": produto, "quantidade": 1, "valor": "9.90"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_of_another_cluster_is_refused_and_rebuilt_only_when_asked() {
    let other = Broker::start();
    for (store, config) in support::per_store() {
        let first_cluster = cluster_id(&config.kafka);
        let api = TestApi::start(&config).await;
        let keyed = support::place(&api, Some(b"k-1"), &order("livro")).await;
        let plain = support::place(&api, None, &order("caneta")).await;
        api.stop().await;

        // The same store and topic names, on another cluster.
        let mut moved = config.clone();
        moved.kafka = other.kafka_config();
        let second_cluster = cluster_id(&moved.kafka);
        assert_ne!(first_cluster, second_cluster);
        let error = match api::Application::build(&moved).await {
            Ok(_) => panic!("{store}: started on a view of another cluster"),
            Err(e) => e.to_string(),
        };
        for named in [
            "api.store_url",
            first_cluster.as_str(),
            second_cluster.as_str(),
            "api.rebuild_view_for_cluster",
        ] {
            assert!(error.contains(named), "{store}: names {named}: {error}");
        }

        // Only the connected cluster's id rebuilds it.
        moved.api.rebuild_view_for_cluster = Some(first_cluster.clone());
        assert!(
            api::Application::build(&moved).await.is_err(),
            "{store}: rebuilt for a cluster it is not connected to"
        );
        moved.api.rebuild_view_for_cluster = Some(second_cluster.clone());
        let api = TestApi::start(&moved).await;
        // The retry is the same order (its id derives from the key), now on this cluster.
        assert_eq!(
            support::place(&api, Some(b"k-1"), &order("livro")).await,
            keyed,
            "{store}"
        );
        assert!(
            support::order_ids_on_pedidos(&moved, 1)
                .await
                .contains(&keyed),
            "{store}: the retried order was published on the new cluster"
        );
        let old = api.get(&format!("/pedidos/{plain}")).await;
        assert_eq!(
            old.status(),
            404,
            "{store}: the old cluster's orders are gone"
        );
        api.stop().await;

        // Left set, the option changes nothing: the view is this cluster's now.
        let api = TestApi::start(&moved).await;
        let kept = api.get(&format!("/pedidos/{keyed}")).await;
        assert_eq!(kept.status(), 200, "{store}: the rebuilt view is kept");
        api.stop().await;
    }
}
