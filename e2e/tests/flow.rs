//! The whole mesh end to end on a real broker: api, fraud (one or two), notification and
//! monitoring as separate processes, orders posted over HTTP, and every place a user would look
//! checked: the verdict topics, Notificacoes, notification's log, monitoring's audit file, and
//! `GET /pedidos/{id}`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use e2e::audit::{metric_sum_where, scrape};
use e2e::dead_letters;
use e2e::mesh::{assigned, fraud_rules, Mesh, WAIT};
use e2e::notifications::Notifications;
use e2e::orders::{order_body, post_orders};
use e2e::{eventually, message};
use serde_json::Value;
use shared::events::{Order, Status};
use testkit::{read_topic, Broker, ConsumedRecord};

const ORDERS: usize = 520;

fn id_of(record: &ConsumedRecord, field: &str) -> String {
    record.json()[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {:?}", record.payload_str()))
        .to_string()
}

/// The flow checked everywhere; `extra` settings for every daemon. Returns the mesh, still up.
async fn whole_flow(fraud_instances: usize, extra: &[(&str, &str)]) -> Mesh {
    let mut mesh = Mesh::start_with(Broker::shared(), fraud_instances, extra).await;
    let (kafka, topics) = (mesh.config.kafka.clone(), mesh.config.topics.clone());

    let orders = post_orders(&mesh.api_url, (0..ORDERS).map(order_body).collect()).await;
    assert_eq!(orders.len(), ORDERS);
    let rules = fraud::Rules::new(&fraud_rules());
    let expected: HashMap<String, fraud::Verdict> = orders
        .iter()
        .map(|o| (o.id.to_string(), fraud::decide(o, &rules)))
        .collect();
    let by_id: HashMap<String, &Order> = orders.iter().map(|o| (o.id.to_string(), o)).collect();

    // The rules really were exercised: each kind of special order (one in ten each) is refused
    // for its own reason; ordinary orders stay far below the limits.
    for reason in [
        "usuário bloqueado",
        "produto bloqueado",
        "valor unitário",
        "valor total",
    ] {
        let n = expected
            .values()
            .filter(|v| v.motivo.starts_with(reason))
            .count();
        assert_eq!(n, ORDERS / 10, "orders refused for {reason:?}");
    }
    let refused_at_random = expected
        .values()
        .filter(|v| v.motivo == "recusado pela análise de risco")
        .count();
    assert!(refused_at_random > 0, "the random rule refused some orders");

    // Every order exactly once across both verdict topics, in the predicted one.
    let expected_valid = expected
        .values()
        .filter(|v| v.status == Status::Aprovado)
        .count();
    let validos = read_topic(&kafka, &topics.pedidos_validos, expected_valid, WAIT).await;
    let recusados = read_topic(
        &kafka,
        &topics.pedidos_recusados,
        ORDERS - expected_valid,
        WAIT,
    )
    .await;
    let mut verdicts: HashMap<String, usize> = HashMap::new();
    for (records, status) in [(&validos, Status::Aprovado), (&recusados, Status::Recusado)] {
        for record in records.iter() {
            let id = id_of(record, "id");
            *verdicts.entry(id.clone()).or_default() += 1;
            let want = expected
                .get(&id)
                .unwrap_or_else(|| panic!("verdict for unknown order {id}"));
            assert_eq!(want.status, status, "order {id} in the wrong verdict topic");
            let value = record.json();
            assert_eq!(value["motivo"], want.motivo.as_str());
            assert_eq!(
                record.key_str().as_deref(),
                Some(by_id[&id].usuario.as_str())
            );
            assert_eq!(
                record.header("correlation-id").as_deref(),
                Some(id.as_str())
            );
            assert_eq!(
                record.header("event-type").as_deref(),
                Some("pedido.avaliado")
            );
        }
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !verdicts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} orders without a verdict, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let doubled: Vec<(&String, &usize)> = verdicts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        doubled.is_empty(),
        "orders with more than one verdict record: {doubled:?}"
    );

    // Notificacoes: one Analise and one matching verdict, in the same partition. In either
    // order: the API sends the order and its Analise together, so fraud's verdict may land
    // first.
    let notificacoes = read_topic(&kafka, &topics.notificacoes, 2 * ORDERS, WAIT).await;
    let mut statuses: HashMap<String, Vec<String>> = HashMap::new();
    for record in &notificacoes {
        let value = record.json();
        statuses
            .entry(id_of(record, "pedidoId"))
            .or_default()
            .push(value["status"].as_str().unwrap().to_string());
    }
    let mut verdict_first = HashSet::new();
    for (id, verdict) in &expected {
        // read_topic keeps each partition's offset order, and both events share a partition.
        let got = statuses.get(id).cloned().unwrap_or_default();
        let analise_first = vec!["Analise".to_string(), verdict.status.to_string()];
        let late_analise = vec![verdict.status.to_string(), "Analise".to_string()];
        assert!(
            got == analise_first || got == late_analise,
            "status events of order {id}: {got:?}"
        );
        if got == late_analise {
            verdict_first.insert(id.clone());
        }
    }
    println!(
        "{} of {ORDERS} verdicts reached Notificacoes before their Analise",
        verdict_first.len()
    );

    // notification told each verdict once, and each Analise once before it; an Analise that
    // came after its verdict (in the partition's order, as notification reads it) was held
    // back, never told.
    let notifications = eventually("notification to handle every status event", WAIT, || {
        let found = Notifications::from_log(&mesh.daemon("notification").log_events());
        (found.handled() >= 2 * ORDERS).then_some(found)
    })
    .await;
    for (id, verdict) in &expected {
        let status = verdict.status.to_string();
        assert_eq!(
            notifications.times_told(id, &status),
            1,
            "order {id} {status} told once"
        );
        let late = verdict_first.contains(id);
        assert_eq!(
            notifications.times_told(id, "Analise"),
            usize::from(!late),
            "order {id} Analise told once, unless it came after the verdict"
        );
        assert_eq!(
            notifications.held_back.contains(id),
            late,
            "order {id} Analise held back exactly when it came after the verdict"
        );
    }
    let sample = mesh
        .daemon("notification")
        .log_events()
        .into_iter()
        .find(|e| e["target"] == "notification" && e["status"] == "Recusado")
        .unwrap();
    assert!(
        message(&sample).contains(", seu pedido ")
            && message(&sample).contains(" está Recusado (motivo: "),
        "{sample}"
    );

    // monitoring recorded every record of all four topics.
    let pedidos = read_topic(&kafka, &topics.pedidos, ORDERS, WAIT).await;
    assert_eq!(pedidos.len(), ORDERS);
    let all: Vec<&ConsumedRecord> = pedidos
        .iter()
        .chain(&notificacoes)
        .chain(&validos)
        .chain(&recusados)
        .collect();
    let audit_file = mesh.audit_file.clone();
    let audited = eventually("the audit file to hold every record", WAIT, || {
        let text = std::fs::read_to_string(&audit_file).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("audit lines are JSON"))
            .collect();
        (lines.len() >= all.len()).then_some(lines)
    })
    .await;
    let positions: HashSet<(String, i64, i64)> = audited
        .iter()
        .map(|l| {
            (
                l["topic"].as_str().unwrap().to_string(),
                l["partition"].as_i64().unwrap(),
                l["offset"].as_i64().unwrap(),
            )
        })
        .collect();
    for r in &all {
        assert!(
            positions.contains(&(r.topic.clone(), r.partition as i64, r.offset)),
            "audit misses {}[{}]@{}",
            r.topic,
            r.partition,
            r.offset
        );
    }
    let one = audited
        .iter()
        .find(|l| l["topic"] == topics.pedidos_recusados.as_str())
        .unwrap();
    assert!(
        one["headers"]["correlation-id"].is_string()
            && one["pedidoId"].is_string()
            && one["value"]["motivo"].is_string(),
        "{one}"
    );
    mesh.daemon("monitoring")
        .wait_for_log("a traffic summary", WAIT, |e| {
            message(e) == "traffic summary" && e["verdict_p99_ms"].is_u64()
        });

    // GET /pedidos/{id} shows the final status.
    let client = reqwest::Client::new();
    for (id, verdict) in &expected {
        let url = format!("{}/pedidos/{id}", mesh.api_url);
        let mut last = Value::Null;
        for _ in 0..100 {
            last = client.get(&url).send().await.unwrap().json().await.unwrap();
            if last["status"] == verdict.status.as_str() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(last["status"], verdict.status.as_str(), "GET {url}: {last}");
        assert_eq!(
            last["historico"].as_array().map(Vec::len),
            Some(2),
            "{last}"
        );
    }

    if fraud_instances > 1 {
        for f in mesh.instances("fraud") {
            let held = assigned(f).unwrap_or_default();
            assert!(!held.is_empty(), "{} held no partition", f.name);
        }
    }
    mesh.assert_all_running();
    mesh
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_order_gets_exactly_one_predicted_verdict_and_is_seen_everywhere() {
    whole_flow(1, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_fraud_instances_share_the_work_and_still_one_verdict_each() {
    whole_flow(2, &[]).await;
}

/// With the switch rate far below the test's, the API's and fraud's producers send through
/// their lingering client once records flow, and through the prompt one first (before a rate
/// is known): the whole flow holds, and each client's count of records sent shows it carried
/// some.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_that_flow_linger_in_the_batching_client_and_the_flow_holds() {
    let switch = [("PEDIDOS_KAFKA__BATCH_ABOVE_RECORDS_PER_SEC", "20")];
    let mesh = whole_flow(1, &switch).await;
    let api = mesh.api_url.trim_start_matches("http://").to_string();
    let fraud = mesh
        .daemon("fraud")
        .admin_address()
        .expect("fraud's admin endpoint");
    let sent = |metrics: &str, client: &str| {
        let label = format!("client=\"{client}\"");
        metric_sum_where(metrics, "pedidos_producer_records_sent_total", &label)
    };
    for (name, address) in [("api", api), ("fraud", fraud)] {
        // librdkafka's statistics, which the counts come from, arrive every 5 s.
        let deadline = Instant::now() + WAIT;
        loop {
            let metrics = scrape(&address).await;
            let prompt = sent(&metrics, "producer");
            let batching = sent(&metrics, "producer-batching");
            if prompt > 0.0 && batching > 0.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: records sent by the prompt client {prompt}, by the batching one {batching}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_go_to_dead_letter_topics_and_block_nothing() {
    let mut mesh = Mesh::start(Broker::shared(), 1).await;
    let (kafka, topics) = (mesh.config.kafka.clone(), mesh.config.topics.clone());

    let before = post_orders(&mesh.api_url, (100..120).map(order_body).collect()).await;
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("invalid UTF-8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("truncated JSON", br#"{"id": "4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10", "usuario": "an"#.to_vec()),
        ("wrong types", br#"{"id": 5, "usuario": [], "produto": {}, "quantidade": "x", "valor": true, "dataSolicitacao": 1}"#.to_vec()),
        ("missing fields", br#"{"id": "4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10"}"#.to_vec()),
        ("huge value", format!(r#"{{"blob": "{}"}}"#, "x".repeat(900_000)).into_bytes()),
        ("breaks a rule", br#"{"id":"4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b11","usuario":"ana","produto":"livro","quantidade":0,"valor":"1.00","dataSolicitacao":"2026-01-01T00:00:00Z"}"#.to_vec()),
    ];
    for topic in [&topics.pedidos, &topics.notificacoes] {
        let records: Vec<(Option<&[u8]>, &[u8])> = garbage
            .iter()
            .map(|(_, g)| (Some(&b"lixo"[..]), g.as_slice()))
            .collect();
        testkit::produce_raw_many(&kafka, topic, &records).await;
    }
    let after = post_orders(&mesh.api_url, (120..140).map(order_body).collect()).await;

    // Every good order around the garbage still got its verdict.
    let good = before.len() + after.len();
    let rules = fraud::Rules::new(&fraud_rules());
    let approved = before
        .iter()
        .chain(&after)
        .filter(|o| fraud::decide(o, &rules).status == Status::Aprovado)
        .count();
    let validos = read_topic(&kafka, &topics.pedidos_validos, approved, WAIT).await;
    let recusados = read_topic(&kafka, &topics.pedidos_recusados, good - approved, WAIT).await;
    assert_eq!(
        validos.len() + recusados.len(),
        good,
        "one verdict per good order, none for garbage"
    );
    let verdict_ids: HashSet<String> = validos
        .iter()
        .chain(&recusados)
        .map(|r| id_of(r, "id"))
        .collect();
    for o in before.iter().chain(&after) {
        assert!(
            verdict_ids.contains(&o.id.to_string()),
            "order {} behind the garbage got no verdict",
            o.id
        );
    }

    // The dead letters of the daemon that handles each topic (fraud, notification), by their
    // `dlq-consumer-group`: any other daemon reading the topic dead-letters its own copies.
    for (topic, group) in [
        (&topics.pedidos, &mesh.config.fraud.group_id),
        (&topics.notificacoes, &mesh.config.notification.group_id),
    ] {
        let dlq = &topics.dlq(topic);
        let dead = dead_letters::of_group(&kafka, dlq, group, garbage.len()).await;
        // "breaks a rule" is valid JSON for an order but not a status event: both DLQs get all.
        assert_eq!(
            dead.len(),
            garbage.len(),
            "{dlq}: {:?}",
            dead.iter()
                .map(|d| d.header("dlq-error"))
                .collect::<Vec<_>>()
        );
        for (record, (what, payload)) in dead.iter().zip(&garbage) {
            if payload.len() > shared::pipeline::DLQ_MAX_PAYLOAD {
                // Cut to fit a Kafka record, and marked so.
                let cut = &payload[..shared::pipeline::DLQ_MAX_PAYLOAD];
                assert_eq!(record.payload.as_deref(), Some(cut), "{dlq}: {what}");
                assert_eq!(
                    record.header("dlq-payload-truncated"),
                    Some(payload.len().to_string())
                );
            } else {
                assert_eq!(
                    record.payload.as_deref(),
                    Some(payload.as_slice()),
                    "{dlq} keeps the {what} bytes as they were"
                );
            }
            assert_eq!(
                record.header("dlq-source-topic").as_deref(),
                Some(topic.as_str())
            );
            assert!(record
                .header("dlq-source-offset")
                .is_some_and(|o| o.parse::<i64>().is_ok()));
            assert!(record.header("dlq-source-partition").is_some());
            assert!(
                record.header("dlq-error").is_some_and(|e| !e.is_empty()),
                "{what}: reason given"
            );
        }
    }
    // monitoring keeps every record, the garbage raw with its parse error (the order that only
    // breaks a validation rule parses fine, so it is recorded as a normal order).
    let audit_file = mesh.audit_file.clone();
    eventually(
        "monitoring to record the garbage with its parse error",
        WAIT,
        || {
            let text = std::fs::read_to_string(&audit_file).unwrap_or_default();
            let flagged = |topic: &str| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|l| l["parseError"].is_string() && l["topic"] == topic)
                    .count()
            };
            (flagged(&topics.pedidos) == garbage.len() - 1
                && flagged(&topics.notificacoes) == garbage.len())
            .then_some(())
        },
    )
    .await;
    mesh.assert_all_running();
}
