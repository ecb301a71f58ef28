//! pedidos under a real Schema Registry (Apicurio Registry 3 through its Confluent-compatible
//! API, `testkit::Registry`, one per test binary): the whole flow framed, a topic holding plain
//! records before framed ones, bad frames dead-lettered, compatibility enforced, and start-up
//! refusals that name the registry.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::eventually;
use e2e::exit::run_until_exit;
use e2e::mesh::{fraud_rules, kafka_env, namespace_env, Mesh, Options, WAIT};
use e2e::notifications::Notifications;
use e2e::orders::{order_body, post_orders};
use serde_json::{json, Value};
use shared::config::SchemaRegistryConfig;
use shared::contracts::schema_of;
use shared::events::{Order, Status, StatusEvent};
use shared::schema_registry::Subjects;
use shared::wire;
use testkit::{read_topic, Broker, ConsumedRecord, Registry};

const POSTED: usize = 60;
const PLAIN: usize = 10;

/// The id the registry holds for `subject`'s latest version. A request the registry leaves
/// unanswered is asked again after 10 s, three times at most: with no timeout it would wait
/// for Apicurio's idle timeout, 30 minutes (a schema lookup once did, in CI).
async fn registered_id(registry: &Registry, subject: &str) -> u32 {
    let url = format!("{}/subjects/{subject}/versions/latest", registry.url());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut tries = 1;
    let answer: Value = loop {
        match client.get(&url).send().await {
            Ok(response) => break response.json().await.unwrap(),
            Err(e) if e.is_timeout() && tries < 3 => tries += 1,
            Err(e) => panic!("GET {url}: {e}"),
        }
    };
    let id = answer["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("GET {url}: {answer}"));
    u32::try_from(id).unwrap()
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn contracts_dir() -> PathBuf {
    workspace().join("contracts").join("schemas")
}

/// A committed contract, `contracts/schemas/<record>.json`, compiled.
fn committed_schema(record: &str) -> jsonschema::Validator {
    let path = contracts_dir().join(format!("{record}.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A record's schema id (`None`: plain JSON) and its JSON.
fn body(record: &ConsumedRecord) -> (Option<u32>, Value) {
    let payload = record.payload.as_deref().expect("a value");
    let body = wire::unframe(payload).expect("a whole frame");
    let json = serde_json::from_slice(body.json())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {payload:?}"));
    (body.schema_id(), json)
}

/// The virtualenv's python with confluent-kafka (`scripts/confluent-python.sh install`).
fn confluent_python() -> String {
    let out = Command::new("bash")
        .arg(workspace().join("scripts/confluent-python.sh"))
        .arg("install")
        .output()
        .expect("cannot run bash scripts/confluent-python.sh");
    assert!(
        out.status.success(),
        "confluent-kafka for Python is not available: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("the venv's python")
        .to_string()
}

/// Runs `e2e/interop/confluent_json.py` with `args` against `registry`; its stdout. On failure,
/// the end of the registry's log too (it lives in a temporary directory, gone after the test).
fn run_python(python: &str, registry: &Registry, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(workspace().join("e2e/interop/confluent_json.py"))
        .args(args)
        .args(["--registry", &registry.url()])
        .output()
        .expect("cannot run python");
    if !out.status.success() {
        let log = registry.log();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "confluent_json.py {}: {}\n{}\nthe end of the registry's log:\n{}",
            args[0],
            out.status,
            String::from_utf8_lossy(&out.stderr),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    String::from_utf8(out.stdout).unwrap()
}

fn registry_env(registry: &Registry) -> Vec<(String, String)> {
    vec![("PEDIDOS_SCHEMA_REGISTRY__URL".into(), registry.url())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_framed_plain_ones_still_flow_and_bad_frames_go_to_the_dlq() {
    let registry = Registry::shared();
    let config = Broker::shared().config();
    let (kafka, topics) = (config.kafka.clone(), config.topics.clone());
    shared::kafka::ensure_topics(&kafka, &topics).await.unwrap();

    // Plain records first, as a producer wrote them before the registry was turned on.
    let plain: Vec<Order> = (0..PLAIN)
        .map(|i| Order::new(format!("antigo{i}"), "livro", 1, "12.50".parse().unwrap()))
        .collect();
    let plain_json: Vec<Vec<u8>> = plain
        .iter()
        .map(|o| serde_json::to_vec(o).unwrap())
        .collect();
    let records: Vec<(Option<&[u8]>, &[u8])> = plain
        .iter()
        .zip(&plain_json)
        .map(|(o, j)| (Some(o.usuario.as_bytes()), j.as_slice()))
        .collect();
    testkit::produce_raw_many(&kafka, &topics.pedidos, &records).await;

    let options = Options {
        env: registry_env(registry),
        ..Options::default()
    };
    let mut mesh = Mesh::start_in(config, options).await;
    let posted = post_orders(&mesh.api_url, (0..POSTED).map(order_body).collect()).await;
    assert_eq!(posted.len(), POSTED);

    let ids: HashMap<String, u32> = {
        let mut ids = HashMap::new();
        for topic in topics.flow() {
            let id = registered_id(registry, &format!("{topic}-value")).await;
            ids.insert(topic.to_string(), id);
        }
        ids
    };
    let rules = fraud::Rules::new(&fraud_rules());
    let expected: HashMap<String, fraud::Verdict> = plain
        .iter()
        .chain(&posted)
        .map(|o| (o.id.to_string(), fraud::decide(o, &rules)))
        .collect();
    let total = expected.len();

    // Pedidos: the plain records as they were, every posted order framed with its id.
    let order_schema = committed_schema("Order");
    let pedidos = read_topic(&kafka, &topics.pedidos, total, WAIT).await;
    let mut plain_seen = 0;
    for record in &pedidos {
        let (id, json) = body(record);
        match id {
            None => plain_seen += 1,
            Some(id) => assert_eq!(id, ids[&topics.pedidos], "{json}"),
        }
        assert!(order_schema.is_valid(&json), "Order contract: {json}");
    }
    assert_eq!(
        plain_seen, PLAIN,
        "the plain orders, and only they, unframed"
    );

    // Every verdict exactly once, in the predicted topic, framed, under its contract.
    let evaluated_schema = committed_schema("EvaluatedOrder");
    let approved = expected
        .values()
        .filter(|v| v.status == Status::Aprovado)
        .count();
    let mut verdicts: HashMap<String, usize> = HashMap::new();
    for (topic, n, status) in [
        (&topics.pedidos_validos, approved, Status::Aprovado),
        (
            &topics.pedidos_recusados,
            total - approved,
            Status::Recusado,
        ),
    ] {
        for record in read_topic(&kafka, topic, n, WAIT).await {
            let (id, json) = body(&record);
            assert_eq!(id, Some(ids[topic.as_str()]), "{topic}: {json}");
            assert!(
                evaluated_schema.is_valid(&json),
                "EvaluatedOrder contract: {json}"
            );
            let order = json["id"].as_str().unwrap().to_string();
            assert_eq!(expected[&order].status, status, "order {order} in {topic}");
            assert_eq!(json["motivo"], expected[&order].motivo.as_str());
            *verdicts.entry(order).or_default() += 1;
        }
    }
    assert_eq!(verdicts.len(), total, "a verdict for every order");
    assert!(verdicts.values().all(|n| *n == 1), "one verdict each");

    // Notificacoes: the posted orders' Analise and every verdict, all framed.
    let event_schema = committed_schema("StatusEvent");
    let notificacoes = read_topic(&kafka, &topics.notificacoes, POSTED + total, WAIT).await;
    for record in &notificacoes {
        let (id, json) = body(record);
        assert_eq!(id, Some(ids[&topics.notificacoes]), "{json}");
        assert!(event_schema.is_valid(&json), "StatusEvent contract: {json}");
    }
    let notifications = eventually("notification to tell every status event", WAIT, || {
        let found = Notifications::from_log(&mesh.daemon("notification").log_events());
        (found.handled() >= POSTED + total).then_some(found)
    })
    .await;
    for (id, verdict) in &expected {
        let status = verdict.status.to_string();
        assert_eq!(notifications.times_told(id, &status), 1, "{id} {status}");
    }

    // The API's view reads framed records: GET shows each posted order's verdict.
    let client = reqwest::Client::new();
    for order in &posted {
        let url = format!("{}/pedidos/{}?wait=10", mesh.api_url, order.id);
        let got: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_eq!(
            got["status"],
            expected[&order.id.to_string()].status.as_str(),
            "{got}"
        );
    }

    // Another language through the registry, with its stock serializers: Confluent's Python
    // deserializer reads what the mesh produced, and fraud decides an order Confluent's Python
    // serializer produced.
    let python = confluent_python();
    let bootstrap = kafka.bootstrap_servers.clone();
    let decoded = run_python(
        &python,
        registry,
        &[
            "consume",
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topics.notificacoes,
            "--count",
            &notificacoes.len().to_string(),
        ],
    );
    let read_by_python: HashSet<String> = decoded
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["eventoId"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let produced: HashSet<String> = notificacoes
        .iter()
        .map(|r| body(r).1["eventoId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        read_by_python, produced,
        "Python decoded every status event"
    );
    let from_python = Order::new("python", "livro", 1, "10.00".parse().unwrap());
    run_python(
        &python,
        registry,
        &[
            "produce",
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topics.pedidos,
            "--schema",
            &contracts_dir().join("Order.json").display().to_string(),
            "--value",
            &serde_json::to_string(&from_python).unwrap(),
        ],
    );
    let url = format!("{}/pedidos/{}?wait=10", mesh.api_url, from_python.id);
    let got: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        got["status"],
        fraud::decide(&from_python, &rules).status.as_str(),
        "fraud decided the order Python produced: {got}"
    );

    // Monitoring records a framed record's JSON with its schema id.
    let audit_file = mesh.audit_file.clone();
    let framed_audited = eventually("the audit file to hold every framed record", WAIT, || {
        let text = std::fs::read_to_string(&audit_file).unwrap_or_default();
        let framed: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|l| l["schemaId"].is_u64())
            .collect();
        (framed.len() >= POSTED + POSTED + total + total).then_some(framed)
    })
    .await;
    assert!(framed_audited
        .iter()
        .all(|l| l["value"].is_object() && l["parseError"].is_null()));

    // Bad frames, on both consumed topics: each to its DLQ with the reason; nothing stops.
    let order_json = serde_json::to_value(&posted[0]).unwrap();
    let mut extra_field = order_json.clone();
    extra_field["cupom"] = json!("DESCONTO");
    let event = StatusEvent::received(&posted[0]);
    let mut event_extra = serde_json::to_value(&event).unwrap();
    event_extra["cupom"] = json!("DESCONTO");
    let bad = |id: u32, extra: &Value| {
        vec![
            (
                "unknown to the Schema Registry",
                wire::frame(987_654, &serde_json::to_vec(&order_json).unwrap()),
            ),
            ("truncated Schema Registry frame", vec![0, 0, 1]),
            (
                "breaks its schema",
                wire::frame(id, &serde_json::to_vec(extra).unwrap()),
            ),
        ]
    };
    // The dead letters of the daemon that handles each topic (fraud, notification).
    for (topic, extra, group) in [
        (&topics.pedidos, &extra_field, &mesh.config.fraud.group_id),
        (
            &topics.notificacoes,
            &event_extra,
            &mesh.config.notification.group_id,
        ),
    ] {
        let garbage = bad(ids[topic.as_str()], extra);
        let records: Vec<(Option<&[u8]>, &[u8])> = garbage
            .iter()
            .map(|(_, g)| (Some(&b"lixo"[..]), g.as_slice()))
            .collect();
        testkit::produce_raw_many(&kafka, topic, &records).await;
        let dead =
            e2e::dead_letters::of_group(&kafka, &topics.dlq(topic), group, garbage.len()).await;
        assert_eq!(dead.len(), garbage.len(), "{topic}'s DLQ");
        for (reason, payload) in &garbage {
            let copy = dead
                .iter()
                .find(|r| r.payload.as_deref() == Some(payload.as_slice()))
                .unwrap_or_else(|| panic!("{topic}: no dead letter for {reason}"));
            let error = copy.header("dlq-error").unwrap_or_default();
            assert!(error.contains(reason), "{topic}, {reason}: {error}");
        }
    }
    let after = post_orders(
        &mesh.api_url,
        (POSTED..POSTED + 5).map(order_body).collect(),
    )
    .await;
    for order in &after {
        let url = format!("{}/pedidos/{}?wait=10", mesh.api_url, order.id);
        let got: Value = client.get(&url).send().await.unwrap().json().await.unwrap();
        assert_ne!(
            got["status"], "Analise",
            "decided after the bad frames: {got}"
        );
    }
    mesh.assert_all_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backward_compatibility_refuses_a_breaking_change_and_takes_an_optional_field() {
    let registry = Registry::shared();
    let config = SchemaRegistryConfig {
        url: registry.url(),
        ..SchemaRegistryConfig::default()
    };
    let subjects = Subjects::new(&config).unwrap();
    let subject = format!("compat-{}-value", uuid_suffix());
    subjects
        .set_compatibility(&subject, "BACKWARD")
        .await
        .unwrap();
    let order = schema_of::<Order>();
    let first = subjects.register(&subject, &order).await.unwrap();
    assert_eq!(
        subjects.register(&subject, &order).await.unwrap(),
        first,
        "same schema, same id"
    );

    let mut retyped = order.clone();
    retyped["properties"]["valor"] = json!({ "type": "number" });
    let mut removed = order.clone();
    removed["properties"]
        .as_object_mut()
        .unwrap()
        .remove("usuario");
    removed["required"]
        .as_array_mut()
        .unwrap()
        .retain(|f| f != "usuario");
    for (change, schema, names) in [
        ("valor's type changed", retyped, "/properties/valor"),
        ("usuario removed", removed, "propertySchemasRemoved"),
    ] {
        let refused = subjects
            .register(&subject, &schema)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains(&subject)
                && refused.contains("HTTP 409")
                && refused.contains("Incompatible")
                && refused.contains(names),
            "{change}: {refused}"
        );
    }

    let mut added = order.clone();
    added["properties"]["cupom"] = json!({ "type": "string" });
    let second = subjects.register(&subject, &added).await.unwrap();
    assert_ne!(second, first, "an additive optional field is a new version");
}

#[test]
fn an_unreachable_registry_a_missing_schema_or_an_incompatible_one_stop_a_daemon_naming_it() {
    let registry = Registry::shared();
    let config = Broker::shared().config();
    let mut env = kafka_env(&config.kafka);
    env.extend(namespace_env(&config));
    let with = |extra: &[(&str, &str)]| {
        let mut env = env.clone();
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        env
    };
    let bound = Duration::from_secs(60);

    let closed = format!("http://127.0.0.1:{}/apis/ccompat/v7", testkit::free_port());
    let out = run_until_exit(
        "fraud",
        &with(&[
            ("PEDIDOS_SCHEMA_REGISTRY__URL", &closed),
            ("PEDIDOS_SCHEMA_REGISTRY__USERNAME", "chave"),
            ("PEDIDOS_SCHEMA_REGISTRY__PASSWORD", "segredo-do-registro"),
        ]),
        bound,
    );
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_stderr_names(&[&closed, "unreachable"]);
    assert!(!out.all_output().contains("segredo-do-registro"), "{out}");

    // auto_register off and nothing registered under this namespace's subjects.
    let out = run_until_exit(
        "notification",
        &with(&[
            ("PEDIDOS_SCHEMA_REGISTRY__URL", &registry.url()),
            ("PEDIDOS_SCHEMA_REGISTRY__AUTO_REGISTER", "false"),
        ]),
        bound,
    );
    assert_eq!(out.code, Some(1), "{out}");
    let subject = format!("{}-value", config.topics.pedidos);
    out.assert_stderr_names(&[&registry.url(), &subject, "auto_register"]);

    // A subject whose latest schema ours cannot read under BACKWARD.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let subjects = Subjects::new(&SchemaRegistryConfig {
            url: registry.url(),
            ..SchemaRegistryConfig::default()
        })
        .unwrap();
        let mut other = schema_of::<Order>();
        other["properties"]["valor"] = json!({ "type": "number" });
        subjects.register(&subject, &other).await.unwrap();
    });
    let out = run_until_exit(
        "fraud",
        &with(&[("PEDIDOS_SCHEMA_REGISTRY__URL", &registry.url())]),
        bound,
    );
    assert_eq!(out.code, Some(1), "{out}");
    out.assert_stderr_names(&[&registry.url(), &subject, "HTTP 409"]);
}

fn uuid_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
