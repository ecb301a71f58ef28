//! The order view as users meet it, with the daemons as processes: a kill -9 of the API after
//! 5,000 orders loses no status and re-reads no topic; two API instances on one PostgreSQL
//! answer each other's orders at once; `/ready` says 503 while the store refuses connections,
//! and nothing is lost; and the API's memory stays flat while its view grows from 10,000 to
//! 200,000 orders.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use e2e::mesh::{self, Mesh, Options, WAIT};
use e2e::orders::{order_body, post_orders};
use e2e::{eventually, message, ready_becomes, Daemon};
use futures::stream::{self, StreamExt};
use serde_json::Value;
use shared::events::{Order, OutRecord, Status, StatusEvent};
use testkit::{Broker, Postgres};

async fn status(client: &reqwest::Client, api_url: &str, id: &str, wait: u64) -> (u16, Value) {
    let response = client
        .get(format!("{api_url}/pedidos/{id}?wait={wait}"))
        .send()
        .await
        .expect("GET answered");
    let code = response.status().as_u16();
    (code, response.json().await.unwrap_or(Value::Null))
}

/// Each order's status (GET, 16 at a time, each long-polling up to `wait` seconds), by id.
async fn statuses(
    client: &reqwest::Client,
    api_url: &str,
    orders: &[Order],
    wait: u64,
) -> HashMap<String, String> {
    stream::iter(orders)
        .map(|o| async move {
            let (code, body) = status(client, api_url, &o.id.to_string(), wait).await;
            assert_eq!(code, 200, "{body}");
            let status = body["status"].as_str().unwrap().to_string();
            (o.id.to_string(), status)
        })
        .buffer_unordered(16)
        .collect()
        .await
}

/// The last log line of `daemon` with this message.
fn last_log(daemon: &Daemon, text: &str) -> Option<Value> {
    daemon
        .log_events()
        .into_iter()
        .rev()
        .find(|e| message(e) == text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_9_of_the_api_every_order_answers_its_verdict_without_rereading_the_topics() {
    const ORDERS: usize = 5_000;
    let mut mesh = Mesh::start(Broker::shared(), 1).await;
    let orders = post_orders(&mesh.api_url, (0..ORDERS).map(order_body).collect()).await;
    assert_eq!(orders.len(), ORDERS);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let api_url = mesh.api_url.clone();
    let before = statuses(&client, &api_url, &orders, 30).await;
    let undecided = before.values().filter(|s| *s == "Analise").count();
    assert_eq!(undecided, 0, "every order has its verdict before the kill");

    mesh.daemon_mut("api").kill();
    let restarted = Instant::now();
    mesh.daemon_mut("api").start();
    let caught_up_lines = |api: &Daemon| {
        api.log_events()
            .iter()
            .filter(|e| message(e) == "order view caught up")
            .count()
    };
    eventually("the restarted API to catch up", WAIT, || {
        (caught_up_lines(mesh.daemon("api")) == 2).then_some(())
    })
    .await;
    let ready_in = restarted.elapsed();
    let caught_up = last_log(mesh.daemon("api"), "order view caught up").unwrap();
    let resumed = last_log(
        mesh.daemon("api"),
        "order view: reading from the offsets the store holds",
    )
    .unwrap();
    let records = caught_up["records"].as_u64().unwrap();
    eprintln!(
        "restart: caught up {ready_in:?} after the start, {records} records read (of {} on the \
         topics), the view's own figure {} ms",
        3 * ORDERS,
        caught_up["elapsed_ms"]
    );
    assert_eq!(resumed["resumed"], resumed["partitions"], "{resumed}");
    assert!(
        records < ORDERS as u64 / 10,
        "the restart re-read {records} records: the topics hold {}",
        3 * ORDERS
    );

    let after = statuses(&client, &api_url, &orders, 0).await;
    assert_eq!(
        after, before,
        "every order answers the status it had before the kill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_instances_on_one_postgres_answer_each_others_orders_at_once() {
    const ORDERS: usize = 1_000;
    let store = Postgres::shared().database();
    let options = Options::default().with_env(&[("PEDIDOS_API__STORE_URL", &store)]);
    let mesh = Mesh::start_with_options(Broker::shared(), options).await;
    let port = testkit::free_port();
    let mut env = mesh.env.clone();
    env.push(("PEDIDOS_API__LISTEN".into(), format!("127.0.0.1:{port}")));
    let other = Daemon::spawn("api2", "api", mesh.dir.path(), &env);
    other.wait_for_log("the second API to listen", WAIT, |e| {
        message(e).starts_with("pedidos API listening")
    });
    let other_url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let not_found: usize = stream::iter(0..ORDERS)
        .map(|i| {
            let (client, a, b) = (client.clone(), mesh.api_url.clone(), other_url.clone());
            async move {
                let posted = client
                    .post(format!("{a}/pedidos"))
                    .json(&order_body(i))
                    .send()
                    .await
                    .expect("POST answered");
                assert_eq!(posted.status(), 202);
                let id = posted.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
                let (code, body) = status(&client, &b, &id, 0).await;
                assert!(code == 200 || code == 404, "{code}: {body}");
                usize::from(code == 404)
            }
        })
        .buffer_unordered(16)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    assert_eq!(
        not_found, 0,
        "orders the other instance did not find right after their 202"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_503_while_the_store_refuses_connections_and_the_order_lands_once_it_is_back() {
    let postgres = Postgres::shared();
    let store = postgres.database();
    let database = store.rsplit('/').next().unwrap().to_string();
    let options = Options::default().with_env(&[("PEDIDOS_API__STORE_URL", &store)]);
    let mesh = Mesh::start_with_options(Broker::shared(), options).await;
    let client = reqwest::Client::new();
    ready_becomes("api", &mesh.api_url, 200).await;

    // The store goes away under the running API: no new connection, the open ones cut.
    postgres.admin_sql(&format!(
        "ALTER DATABASE {database} ALLOW_CONNECTIONS false; \
         SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{database}'"
    ));
    // The broker takes the order, so it is accepted (202); the store cannot have it yet.
    let id = post_orders(&mesh.api_url, vec![order_body(0)]).await[0]
        .id
        .to_string();
    let body = ready_becomes("api", &mesh.api_url, 503).await;
    let reasons = body["reasons"].to_string();
    assert!(reasons.contains("order store"), "{body}");
    println!("/ready with the store refusing connections: 503 {body}");

    postgres.admin_sql(&format!("ALTER DATABASE {database} ALLOW_CONNECTIONS true"));
    ready_becomes("api", &mesh.api_url, 200).await;
    // Nothing was lost meanwhile: the commit that made it ready again held the order, and its
    // verdict follows (the long-poll answers once the order has one).
    let (code, body) = status(&client, &mesh.api_url, &id, 30).await;
    assert_eq!(code, 200, "{body}");
    assert!(
        ["Aprovado", "Recusado"].contains(&body["status"].as_str().unwrap_or("")),
        "{body}"
    );
}

/// Orders with their verdicts, as the API and fraud would have put them on the topics.
fn records(config: &shared::Config, range: std::ops::Range<usize>) -> Vec<OutRecord> {
    range
        .flat_map(|i| {
            let order = Order::new(
                format!("cliente{}", i % 97),
                "livro",
                1,
                "9.90".parse().unwrap(),
            );
            let verdict =
                StatusEvent::verdict(&order, Status::Aprovado, "ok", order.data_solicitacao);
            [
                OutRecord::event(&config.topics.pedidos, &order),
                OutRecord::event(&config.topics.notificacoes, &verdict),
            ]
        })
        .collect()
}

async fn produce(config: &shared::Config, records: &[OutRecord]) {
    testkit::produce_events(&config.kafka, records).await;
}

async fn view_holds(api_url: &str, orders: u64) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let health: Value = client
            .get(format!("{api_url}/health"))
            .send()
            .await
            .expect("health answered")
            .json()
            .await
            .unwrap();
        if health["pedidos"].as_u64() == Some(orders) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the view holds {health}, not {orders} orders"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apis_memory_is_flat_from_10_000_to_200_000_orders() {
    let config = Broker::shared().config();
    shared::kafka::ensure_topics(&config.kafka, &config.topics)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = testkit::free_port();
    let env = mesh::env(&config, port, &dir.path().join("audit.jsonl"));
    let api = Daemon::spawn("api", "api", dir.path(), &env);
    api.wait_for_log("the API to listen", WAIT, |e| {
        message(e).starts_with("pedidos API listening")
    });
    let api_url = format!("http://127.0.0.1:{port}");

    // Steady load, ten thousand orders at a time, each taken in before the next: the RSS then
    // measures what the view keeps, not how much a burst queues on its way in.
    const STEP: usize = 10_000;
    produce(&config, &records(&config, 0..STEP)).await;
    view_holds(&api_url, STEP as u64).await;
    let small = api.rss_bytes().expect("the API runs");
    let mut middle = 0;
    for start in (STEP..200_000).step_by(STEP) {
        produce(&config, &records(&config, start..start + STEP)).await;
        view_holds(&api_url, (start + STEP) as u64).await;
        let figures: Vec<String> = ["VmRSS", "RssAnon", "RssFile", "RssShmem"]
            .iter()
            .map(|f| {
                format!(
                    "{f} {:.1}",
                    api.memory(f).unwrap_or_default() as f64 / 1048576.0
                )
            })
            .collect();
        eprintln!("{} orders: {} MiB", start + STEP, figures.join(", "));
        if start + STEP == 100_000 {
            middle = api.rss_bytes().expect("the API runs");
        }
    }
    let large = api.rss_bytes().expect("the API runs");
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    eprintln!(
        "API RSS: {:.1} MiB with 10,000 orders, {:.1} MiB with 100,000, {:.1} MiB with 200,000",
        mib(small),
        mib(middle),
        mib(large)
    );
    // Measured: +2.8 MiB from 10,000 to 200,000 orders (35.2 → 38.0 MiB), +0.6 MiB of it after
    // 100,000; the rest is the process warming up (SQLite's bounded page caches filling). A view
    // held in memory would break both bounds.
    assert!(
        large < small + 8 * 1024 * 1024,
        "RSS grew from {:.1} MiB to {:.1} MiB with the view",
        mib(small),
        mib(large)
    );
    assert!(
        large < middle + 4 * 1024 * 1024,
        "RSS grew from {:.1} MiB to {:.1} MiB between 100,000 and 200,000 orders",
        mib(middle),
        mib(large)
    );
}
