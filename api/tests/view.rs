//! The order view over HTTP, with each store (embedded SQLite, and a real PostgreSQL server):
//! it survives a restart, long-polls and server-sent events answer when the verdict lands, and
//! a thousand waiters are all answered. Verdicts are put on `Notificacoes` as fraud would.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::events::{Order, OutRecord, Status, StatusEvent};
use shared::Config;
use testkit::{produce_raw_many, Postgres};

mod support;

use support::TestApi;

/// The test's configuration once per store: SQLite (the default), then PostgreSQL.
fn stores() -> Vec<(&'static str, Config)> {
    let sqlite = support::config();
    let mut postgres = support::config();
    postgres.api.store_url = shared::config::Secret::new(Postgres::shared().database());
    vec![("sqlite", sqlite), ("postgres", postgres)]
}

async fn place(api: &TestApi, usuario: &str) -> Order {
    let response = api
        .post_json(
            &json!({"usuario": usuario, "produto": "livro", "quantidade": 1, "valor": "9.90"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    serde_json::from_value(response.json().await.unwrap()).expect("the 202 reads as an order")
}

/// Puts each order's verdict on `Notificacoes`, as fraud does.
async fn decide(config: &Config, orders: &[Order], status: Status) -> Vec<StatusEvent> {
    let events: Vec<StatusEvent> = orders
        .iter()
        .map(|o| StatusEvent::verdict(o, status, "teste", chrono::Utc::now()))
        .collect();
    let records: Vec<OutRecord> = events
        .iter()
        .map(|e| OutRecord::event(&config.topics.notificacoes, e))
        .collect();
    let raw: Vec<(Option<&[u8]>, &[u8])> = records
        .iter()
        .map(|r| (r.key.as_deref(), r.payload.as_slice()))
        .collect();
    produce_raw_many(&config.kafka, &config.topics.notificacoes, &raw).await;
    events
}

async fn status_of(api: &TestApi, id: uuid::Uuid, wait: u64) -> (u16, Value) {
    let response = api.get(&format!("/pedidos/{id}?wait={wait}")).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn the_view_survives_a_restart_with_every_status() {
    for (store, config) in stores() {
        let api = TestApi::start(&config).await;
        let mut orders = Vec::new();
        for n in 0..30 {
            orders.push(place(&api, &format!("cliente{}", n % 3)).await);
        }
        let (approved, refused) = orders.split_at(20);
        decide(&config, approved, Status::Aprovado).await;
        decide(&config, refused, Status::Recusado).await;
        let last = orders.last().unwrap().id;
        assert_eq!(
            status_of(&api, last, 10).await.1["status"],
            "Recusado",
            "{store}"
        );
        for o in approved {
            assert_eq!(
                status_of(&api, o.id, 10).await.1["status"],
                "Aprovado",
                "{store}"
            );
        }
        api.stop().await;

        let api = TestApi::start(&config).await;
        for (o, want) in approved
            .iter()
            .map(|o| (o, "Aprovado"))
            .chain(refused.iter().map(|o| (o, "Recusado")))
        {
            // At once, from the store: the restart did not need the topics to answer.
            let (code, body) = status_of(&api, o.id, 0).await;
            assert_eq!(code, 200, "{store}: {body}");
            assert_eq!(body["status"], want, "{store}: {body}");
            assert_eq!(body["valor"], "9.90", "{store}: {body}");
            assert_eq!(
                body["historico"].as_array().unwrap().len(),
                2,
                "{store}: {body}"
            );
        }
        let page: Value = api.get_json("/pedidos?usuario=cliente1&limit=4").await;
        assert_eq!(page["total"], 10, "{store}: {page}");
        let listed: Vec<&str> = page["pedidos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap())
            .collect();
        let mut newest: Vec<&Order> = orders.iter().filter(|o| o.usuario == "cliente1").collect();
        newest.sort_by_key(|o| std::cmp::Reverse((o.data_solicitacao, o.id)));
        let expected: Vec<String> = newest.iter().take(4).map(|o| o.id.to_string()).collect();
        assert_eq!(listed, expected, "{store}: newest first");
        api.stop().await;
    }
}

/// What a client does next: the order its 202 named is there at once, alone and in its
/// customer's listing, newest first. The shared store commits it before the 202; the embedded
/// one answers first, and this is the read that must wait for its commit.
#[tokio::test]
async fn an_order_is_found_and_listed_right_after_its_202() {
    for (store, config) in stores() {
        let api = TestApi::start(&config).await;
        let customers = (0..16).map(|c| {
            let api = &api;
            async move {
                let usuario = format!("logo{c}-{}", uuid::Uuid::new_v4().simple());
                for placed in 1..=25 {
                    let order = place(api, &usuario).await;
                    let (code, body) = status_of(api, order.id, 0).await;
                    assert_eq!(code, 200, "{store}: GET right after the 202: {body}");
                    assert_eq!(body["status"], "Analise", "{store}: {body}");
                    let page: Value = api
                        .get_json(&format!("/pedidos?usuario={usuario}&limit=1"))
                        .await;
                    assert_eq!(page["total"], placed, "{store}: {page}");
                    assert_eq!(
                        page["pedidos"][0]["id"],
                        order.id.to_string(),
                        "{store}: the newest first: {page}"
                    );
                }
            }
        });
        futures::future::join_all(customers).await;
        // The commits behind those reads, as an operator sees them.
        let metrics = api.get("/metrics").await.text().await.unwrap();
        let commits = metrics
            .lines()
            .find_map(|l| l.strip_prefix("pedidos_order_store_commit_duration_seconds_count "))
            .and_then(|n| n.parse::<u64>().ok());
        assert!(
            commits.is_some_and(|n| n > 0),
            "{store}: commits counted: {commits:?}"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn a_long_poll_answers_when_the_verdict_lands_not_at_its_deadline() {
    for (store, config) in stores() {
        let api = TestApi::start(&config).await;
        let order = place(&api, "ana").await;
        let waited_out = Instant::now();
        let (code, body) = status_of(&api, order.id, 1).await;
        assert_eq!(
            (code, body["status"].as_str()),
            (200, Some("Analise")),
            "{store}"
        );
        assert!(
            waited_out.elapsed() >= Duration::from_secs(1),
            "{store}: waited its second"
        );

        let url = format!("{}/pedidos/{}?wait=25", api.url, order.id);
        let client = api.client_with_timeout(Duration::from_secs(40));
        let waiter = tokio::spawn(async move {
            let response = client.get(url).send().await.unwrap();
            let answered = Instant::now();
            (answered, response.json::<Value>().await.unwrap())
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !waiter.is_finished(),
            "{store}: no verdict yet, still waiting"
        );
        let decided = Instant::now();
        decide(&config, std::slice::from_ref(&order), Status::Aprovado).await;
        let (answered, body) = waiter.await.unwrap();
        assert_eq!(body["status"], "Aprovado", "{store}: {body}");
        let after = answered.saturating_duration_since(decided);
        eprintln!("{store}: long-poll answered {after:?} after the verdict was acknowledged");
        assert!(
            after < Duration::from_secs(10),
            "{store}: answered {after:?} after the verdict, as if at the deadline"
        );
        api.stop().await;
    }
}

#[tokio::test]
async fn a_thousand_waiting_clients_are_all_answered() {
    for (store, config) in stores() {
        let api = TestApi::start(&config).await;
        let mut orders = Vec::new();
        for n in 0..100 {
            orders.push(place(&api, &format!("cliente{n}")).await);
        }
        let client = api.client_with_timeout(Duration::from_secs(60));
        let waiters: Vec<_> = (0..1_000)
            .map(|n| {
                let url = format!("{}/pedidos/{}?wait=30", api.url, orders[n % 100].id);
                let client = client.clone();
                tokio::spawn(async move {
                    let response = client.get(url).send().await.unwrap();
                    response.json::<Value>().await.unwrap()["status"].clone()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        decide(&config, &orders, Status::Recusado).await;
        let mut answered = 0;
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), "Recusado", "{store}");
            answered += 1;
        }
        assert_eq!(answered, 1_000, "{store}");
        api.stop().await;
    }
}

/// The events of a server-sent stream, until it closes: (id, event type, data).
async fn read_events(response: reqwest::Response) -> Vec<(String, String, Value)> {
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut response = response;
    let mut text = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("the stream moves or closes within 30 s")
        .expect("the stream reads")
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text.split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
            };
            let data = field("data:")?;
            Some((
                field("id:").unwrap_or_default(),
                field("event:").unwrap_or_default(),
                serde_json::from_str(&data).expect("JSON data"),
            ))
        })
        .collect()
}

#[tokio::test]
async fn an_event_stream_sends_analise_then_the_verdict_then_closes_and_resumes_by_last_event_id() {
    for (store, config) in stores() {
        let api = TestApi::start(&config).await;
        let order = place(&api, "bia").await;
        let url = format!("{}/pedidos/{}/eventos", api.url, order.id);
        let client = api.client_with_timeout(Duration::from_secs(60));
        let stream = {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { read_events(client.get(url).send().await.unwrap()).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(!stream.is_finished(), "{store}: open until the verdict");
        let verdict = decide(&config, std::slice::from_ref(&order), Status::Aprovado).await;
        let events = stream.await.unwrap();
        let statuses: Vec<&str> = events
            .iter()
            .map(|e| e.2["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, ["Analise", "Aprovado"], "{store}: {events:?}");
        assert!(
            events.iter().all(|e| e.1 == "status"),
            "{store}: {events:?}"
        );
        assert_eq!(events[1].0, verdict[0].evento_id.to_string(), "{store}");
        assert_eq!(events[0].0, events[0].2["eventoId"], "{store}");

        // Reconnecting after Analise: only the verdict; after the verdict: nothing.
        let resumed = client
            .get(&url)
            .header("Last-Event-ID", &events[0].0)
            .send()
            .await
            .unwrap();
        let resumed = read_events(resumed).await;
        assert_eq!(resumed.len(), 1, "{store}: {resumed:?}");
        assert_eq!(resumed[0].2["status"], "Aprovado", "{store}");
        let done = client
            .get(&url)
            .header("Last-Event-ID", &events[1].0)
            .send()
            .await
            .unwrap();
        assert!(read_events(done).await.is_empty(), "{store}");

        let unknown = api
            .get(&format!("/pedidos/{}/eventos", uuid::Uuid::new_v4()))
            .await;
        assert_eq!(unknown.status(), 404, "{store}");
        api.stop().await;
    }
}

#[tokio::test]
async fn an_unreachable_store_is_a_clear_startup_error() {
    let mut config = support::config();
    let port = testkit::free_port();
    config.api.store_url =
        shared::config::Secret::new(format!("postgres://pedidos:hunter2@127.0.0.1:{port}/x"));
    let error = match api::Application::build(&config).await {
        Ok(_) => panic!("started without its store"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("api.store_url"), "{error}");
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(!error.contains("hunter2"), "{error}");
}

/// An SQLite file serves one instance (its 202 does not wait for the commit a GET elsewhere
/// would need): a second one on the same file is refused at start-up, and may start once the
/// first has stopped.
#[tokio::test]
async fn a_second_instance_on_one_sqlite_file_is_refused_until_the_first_stops() {
    let config = support::config();
    let first = TestApi::start(&config).await;
    let error = match api::Application::build(&config).await {
        Ok(_) => panic!("a second instance started on the same SQLite file"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("api.store_url"), "{error}");
    assert!(error.contains("another API instance"), "{error}");
    assert!(error.contains("PostgreSQL"), "{error}");
    first.stop().await;
    // The kernel drops the lock once every copy of its descriptor is closed: a process another
    // test forks at that moment holds a copy until it execs, so allow a moment for that.
    let deadline = Instant::now() + Duration::from_secs(10);
    let app = loop {
        match api::Application::build(&config).await {
            Ok(app) => break app,
            Err(e) if Instant::now() < deadline => {
                assert!(e.to_string().contains("another API instance"), "{e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("still refused 10 s after the first stopped: {e}"),
        }
    };
    let second = TestApi::serve(app);
    place(&second, "ana").await;
    second.stop().await;
}
