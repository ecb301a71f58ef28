//! The API against a real broker process: what a client sees over HTTP, and what lands on the
//! topics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::events::{HEADER_CORRELATION_ID, HEADER_EVENT_TYPE, HEADER_SCHEMA_VERSION};
use shared::Config;
use testkit::{read_topic, Broker};

mod support;

use support::TestApi;

fn order(n: usize) -> Value {
    json!({
        "usuario": format!("cliente{}", n % 7),
        "produto": format!("produto {n}"),
        "quantidade": 1 + n % 5,
        "valor": format!("{}.{:02}", 10 + n, n % 100),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_orders_are_on_both_topics_exactly_once_with_keys_and_headers() {
    let config = support::config();
    let api = TestApi::start(&config).await;

    let mut accepted: HashMap<String, (Value, Value)> = HashMap::new();
    for n in 0..40 {
        let body = order(n);
        let response = api.post_json(&body).await;
        assert_eq!(response.status(), 202);
        let location = response.headers()["location"].to_str().unwrap().to_string();
        let answer: Value = response.json().await.unwrap();
        let id = answer["id"].as_str().unwrap().to_string();
        assert_eq!(location, format!("/pedidos/{id}"));
        assert_eq!(answer["status"], "Analise");
        accepted.insert(id, (body, answer));
    }

    let timeout = Duration::from_secs(20);
    let pedidos = read_topic(
        &config.kafka,
        &config.topics.pedidos,
        accepted.len(),
        timeout,
    )
    .await;
    let notificacoes = read_topic(
        &config.kafka,
        &config.topics.notificacoes,
        accepted.len(),
        timeout,
    )
    .await;
    assert_eq!(
        pedidos.len(),
        accepted.len(),
        "each order exactly once on Pedidos"
    );
    assert_eq!(
        notificacoes.len(),
        accepted.len(),
        "one Analise per order on Notificacoes"
    );

    for record in &pedidos {
        let value = record.json();
        let id = value["id"].as_str().unwrap();
        let (sent, answer) = accepted
            .get(id)
            .expect("only accepted orders are published");
        assert_eq!(
            record.key_str().as_deref(),
            sent["usuario"].as_str(),
            "keyed by usuario"
        );
        assert_eq!(value["usuario"], sent["usuario"]);
        assert_eq!(value["produto"], sent["produto"]);
        assert_eq!(value["quantidade"], sent["quantidade"]);
        assert_eq!(value["valor"], sent["valor"], "money is exact");
        assert_eq!(value["dataSolicitacao"], answer["dataSolicitacao"]);
        assert_eq!(
            record.header(HEADER_EVENT_TYPE).as_deref(),
            Some("pedido.criado")
        );
        assert_eq!(record.header(HEADER_SCHEMA_VERSION).as_deref(), Some("1"));
        assert_eq!(record.header(HEADER_CORRELATION_ID).as_deref(), Some(id));
    }
    let mut seen = std::collections::HashSet::new();
    for record in &notificacoes {
        let value = record.json();
        let id = value["pedidoId"].as_str().unwrap();
        assert!(seen.insert(id.to_string()), "one Analise per order");
        let (sent, _) = accepted
            .get(id)
            .expect("only accepted orders are published");
        assert_eq!(value["status"], "Analise");
        assert_eq!(value["usuario"], sent["usuario"]);
        assert!(value["eventoId"].is_string());
        assert_eq!(record.key_str().as_deref(), sent["usuario"].as_str());
        assert_eq!(
            record.header(HEADER_EVENT_TYPE).as_deref(),
            Some("pedido.status")
        );
        assert_eq!(record.header(HEADER_CORRELATION_ID).as_deref(), Some(id));
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_gets_a_json_error_naming_the_field_and_publishes_nothing() {
    let config = support::config();
    let api = TestApi::start(&config).await;

    let mut good = order(1);
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "missing usuario",
            {
                let mut b = good.clone();
                b.as_object_mut().unwrap().remove("usuario");
                b
            },
            422,
            "usuario",
        ),
        (
            "empty produto",
            {
                let mut b = good.clone();
                b["produto"] = json!("");
                b
            },
            422,
            "produto",
        ),
        (
            "oversized usuario",
            {
                let mut b = good.clone();
                b["usuario"] = json!("x".repeat(101));
                b
            },
            422,
            "usuario",
        ),
        (
            "quantidade 0",
            {
                let mut b = good.clone();
                b["quantidade"] = json!(0);
                b
            },
            422,
            "quantidade",
        ),
        (
            "quantidade as text",
            {
                let mut b = good.clone();
                b["quantidade"] = json!("dois");
                b
            },
            422,
            "quantidade",
        ),
        (
            "valor 0",
            {
                let mut b = good.clone();
                b["valor"] = json!(0);
                b
            },
            422,
            "valor",
        ),
        (
            "valor negative",
            {
                let mut b = good.clone();
                b["valor"] = json!(-5);
                b
            },
            422,
            "valor",
        ),
        (
            "valor with 3 decimals",
            {
                let mut b = good.clone();
                b["valor"] = json!("1.005");
                b
            },
            422,
            "valor",
        ),
        (
            "unknown field",
            {
                let mut b = good.clone();
                b["desconto"] = json!(5);
                b
            },
            422,
            "body",
        ),
        ("not an object", json!([1, 2, 3]), 422, "body"),
    ];
    for (what, body, status, field) in &cases {
        let response = api.post_json(body).await;
        assert_eq!(response.status().as_u16(), *status, "{what}");
        let error: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
        assert_eq!(error["field"], *field, "{what}: {error}");
        assert!(
            error["rule"].as_str().is_some_and(|r| !r.is_empty()),
            "{what}: {error}"
        );
        assert!(error["message"].is_string(), "{what}: {error}");
    }

    let raw_cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            "application/json",
            br#"{"usuario": "ana", "#.to_vec(),
            400,
            "body",
        ),
        (
            "wrong content type",
            "text/plain",
            good.to_string().into_bytes(),
            415,
            "content-type",
        ),
        (
            "oversized body",
            "application/json",
            format!(r#"{{"usuario": "{}"}}"#, "a".repeat(10_000)).into_bytes(),
            413,
            "body",
        ),
        ("empty body", "application/json", Vec::new(), 422, "body"),
    ];
    for (what, content_type, body, status, field) in raw_cases {
        let response = api.post_raw(content_type, body).await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        let error: Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{what}: body is not JSON: {e}"));
        assert_eq!(error["field"], field, "{what}: {error}");
    }

    // One good order after all the bad ones: the only record on either topic.
    good["usuario"] = json!("the-only-one");
    assert_eq!(api.post_json(&good).await.status(), 202);
    let pedidos = read_topic(
        &config.kafka,
        &config.topics.pedidos,
        1,
        Duration::from_secs(10),
    )
    .await;
    let notificacoes = read_topic(
        &config.kafka,
        &config.topics.notificacoes,
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        pedidos.len(),
        1,
        "rejected input published nothing to Pedidos"
    );
    assert_eq!(
        notificacoes.len(),
        1,
        "rejected input published nothing to Notificacoes"
    );
    assert_eq!(pedidos[0].key_str().as_deref(), Some("the-only-one"));
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_returns_what_was_posted_and_survives_a_restart() {
    let config = support::config();
    let api = TestApi::start(&config).await;

    let response = api
        .post_json(&json!({"usuario": "ana", "produto": "livro", "quantidade": 3, "valor": 19.9}))
        .await;
    assert_eq!(response.status(), 202);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let got: Value = api.get_json(&format!("/pedidos/{id}")).await;
    assert_eq!(got["id"], id.as_str());
    assert_eq!(got["usuario"], "ana");
    assert_eq!(got["produto"], "livro");
    assert_eq!(got["quantidade"], 3);
    assert_eq!(got["valor"], "19.90");
    assert_eq!(got["status"], "Analise");
    assert_eq!(got["historico"].as_array().unwrap().len(), 1);

    let list: Value = api.get_json("/pedidos?limit=10").await;
    assert_eq!(list["pedidos"][0]["id"], id.as_str());

    let unknown = api.get(&format!("/pedidos/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "not_found");
    let not_uuid = api.get("/pedidos/123").await;
    assert_eq!(not_uuid.status(), 400);
    assert_eq!(not_uuid.json::<Value>().await.unwrap()["field"], "id");
    api.stop().await;

    // A new API process knows the order from the topics alone.
    let api = TestApi::start(&config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = api.get(&format!("/pedidos/{id}")).await;
        if response.status() == 200 {
            let got: Value = response.json().await.unwrap();
            assert_eq!(got["usuario"], "ana");
            assert_eq!(got["valor"], "19.90");
            assert_eq!(got["status"], "Analise");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted API never learned order {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_down_post_answers_503_never_202() {
    let broker = Broker::start();
    let config = support::config_on(&broker);
    let api = TestApi::start(&config).await;
    assert_eq!(api.post_json(&order(1)).await.status(), 202);

    broker.kill();
    for n in 0..3 {
        let started = Instant::now();
        let response = api.post_json(&order(n)).await;
        assert_eq!(response.status(), 503, "broker down must not give 202");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "broker_unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "503 within the publish deadline"
        );
    }
    // Health stays up: the process is alive, only the broker is not.
    assert_eq!(api.get("/health").await.status(), 200);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_and_spec_are_served() {
    let api = TestApi::start(&support::config()).await;
    let docs = api.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("swagger"));
    let spec: Value = api.get_json("/openapi.json").await;
    assert!(spec["paths"]["/pedidos"]["post"].is_object());
    assert!(spec["paths"]["/pedidos/{id}"]["get"].is_object());
    let responses = &spec["paths"]["/pedidos"]["post"]["responses"];
    for status in ["202", "400", "408", "413", "415", "422", "503"] {
        assert!(responses[status].is_object(), "POST documents {status}");
    }
    // The body schema says everything the parser enforces, so generated clients (and
    // Schemathesis) send only what is accepted.
    let body = &spec["components"]["schemas"]["PedidoNovo"];
    assert_eq!(body["additionalProperties"], false, "{body}");
    assert_eq!(body["required"].as_array().map(Vec::len), Some(4), "{body}");
    let valor = &body["properties"]["valor"]["oneOf"];
    assert_eq!(valor[0]["type"], "number", "{valor}");
    assert_eq!(valor[0]["multipleOf"], 0.01, "{valor}");
    assert_eq!(valor[1]["type"], "string", "{valor}");
    assert!(valor[1]["pattern"].is_string(), "{valor}");
    let id = &spec["paths"]["/pedidos/{id}"]["get"]["parameters"][0]["schema"];
    assert_eq!(id["format"], "uuid", "{id}");
    // Swagger UI shows the same, completed document.
    let html = api.get("/docs").await.text().await.unwrap();
    assert!(html.contains(r#""additionalProperties": false"#));
    api.stop().await;
}

/// The Kafka side's contract: the document is valid AsyncAPI by the AsyncAPI Initiative's own
/// parser (scripts/asyncapi-check.sh, which ./scripts/test.sh installs), names the topics this API
/// was configured with, carries the committed record schemas, and /docs links to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_asyncapi_document_of_the_topics_is_served_valid_and_linked_from_docs() {
    let config = support::config();
    let api = TestApi::start(&config).await;
    let response = api.get("/asyncapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let document: Value = serde_json::from_str(&text).unwrap();

    let addresses: Vec<&str> = document["channels"]
        .as_object()
        .unwrap()
        .values()
        .filter_map(|channel| channel["address"].as_str())
        .collect();
    for topic in config.topics.all() {
        assert!(
            addresses.contains(&topic.as_str()),
            "{topic} in {addresses:?}"
        );
    }
    let schemas = &document["components"]["schemas"];
    for (record, committed) in shared::contracts::record_schemas() {
        let served = &schemas[record];
        assert_eq!(
            served["properties"].as_object().map(|p| p.len()),
            committed["properties"].as_object().map(|p| p.len()),
            "{record}"
        );
        assert_eq!(served["required"], committed["required"], "{record}");
    }
    let order = &document["components"]["messages"]["Order"];
    assert_eq!(
        order["bindings"]["kafka"]["key"]["type"], "string",
        "{order}"
    );
    assert_eq!(
        order["payload"]["schema"]["$ref"],
        "#/components/schemas/Order"
    );

    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &text).unwrap();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/asyncapi-check.sh");
    let checked = std::process::Command::new(&script)
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    eprintln!("{said}");
    assert!(
        checked.status.success(),
        "the AsyncAPI parser refuses the document:\n{said}"
    );
    assert!(said.contains("valid AsyncAPI"), "{said}");

    let docs = api.get("/docs").await.text().await.unwrap();
    assert!(
        docs.contains("/asyncapi.json"),
        "/docs links the AsyncAPI document"
    );
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_and_405_says_what_is_allowed() {
    let api = TestApi::start(&support::config()).await;

    for (path, field) in [
        ("/pedidos?limit=0", "limit"),
        ("/pedidos?limit=201", "limit"),
        ("/pedidos?offset=-1", "offset"),
        ("/pedidos?offset=abc", "offset"),
        ("/pedidos/not-a-uuid", "id"),
    ] {
        let response = api.get(path).await;
        assert_eq!(response.status(), 400, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["field"], field, "{path}: {error}");
    }

    for (method, path, allowed) in [
        (reqwest::Method::DELETE, "/pedidos", vec!["GET", "POST"]),
        (
            reqwest::Method::PUT,
            "/pedidos/0e3bb516-f251-49ef-bbbb-89d033610932",
            vec!["GET"],
        ),
        (reqwest::Method::POST, "/health", vec!["GET"]),
    ] {
        let response = api.request(method.clone(), path).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        let allow = response.headers()["allow"].to_str().unwrap().to_string();
        let listed: Vec<&str> = allow.split(", ").collect();
        for method in &allowed {
            assert!(listed.contains(method), "{path}: Allow: {allow}");
        }
        assert!(!listed.contains(&"DELETE"), "{path}: Allow: {allow}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"], "method_not_allowed");
    }
    // HEAD, listed with GET, is answered.
    let head = api.request(reqwest::Method::HEAD, "/health").await;
    assert_eq!(head.status(), 200);

    let unknown = api.get("/nowhere").await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["error"], "not_found");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_a_plain_startup_error() {
    let mut config = Config::default();
    let port = testkit::free_port();
    config.kafka.bootstrap_servers = format!("127.0.0.1:{port}");
    config.kafka.startup_timeout_secs = 2;
    // The store opens first (and is fine): a file of this test's own, not the default one.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("view.db");
    config.api.store_url = shared::config::Secret::new(format!("sqlite:{}", store.display()));
    config.api.listen = "127.0.0.1:0".into();
    let started = Instant::now();
    let error = match api::Application::build(&config).await {
        Ok(_) => panic!("started without a broker"),
        Err(e) => e.to_string(),
    };
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "gave up in time"
    );
    assert!(error.contains(&format!("127.0.0.1:{port}")), "{error}");
    assert!(error.contains("PLAINTEXT"), "{error}");
}
