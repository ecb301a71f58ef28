//! Traces across the mesh: an order posted with a `traceparent` is one trace from the API to
//! every daemon — on the records (Pedidos, the verdict topic, Notificacoes), in the spans the
//! four daemons export over OTLP (to `e2e::otlp`'s receiver), and in their log lines — and an
//! OTLP endpoint nobody listens on changes nothing for the orders.

use std::collections::{BTreeSet, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use e2e::mesh::{fraud_rules, Mesh, WAIT};
use e2e::notifications::Notifications;
use e2e::orders::{order_body, post_orders};
use e2e::otlp::{ReceivedSpan, Receiver};
use e2e::{eventually, message};
use serde_json::Value;
use shared::events::{OutRecord, Status};
use testkit::{read_topic, Broker, ConsumedRecord};

/// The span id the test's own (client) span has: the API's span must name it as its parent.
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// A trace id no earlier run used.
fn fresh_trace_id() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:032x}", nanos ^ (u128::from(std::process::id()) << 96))
}

/// `traceparent`'s trace id and span id, checking the exact W3C shape.
fn trace_of(record: &ConsumedRecord) -> (String, String) {
    let header = record
        .header("traceparent")
        .unwrap_or_else(|| panic!("no traceparent on {}: {:?}", record.topic, record.headers));
    let parts: Vec<&str> = header.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    assert!(
        parts.len() == 4
            && parts[0] == "00"
            && hex(parts[1], 32)
            && hex(parts[2], 16)
            && hex(parts[3], 2),
        "not a W3C traceparent on {}: {header:?}",
        record.topic
    );
    (parts[1].to_string(), parts[2].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_across_records_spans_and_logs() {
    let receiver = Receiver::start().await;
    let mesh = Mesh::start_with(
        Broker::shared(),
        1,
        &[("PEDIDOS_TELEMETRY__OTLP_ENDPOINT", &receiver.endpoint)],
    )
    .await;
    let (kafka, topics) = (&mesh.config.kafka, &mesh.config.topics);
    let trace = fresh_trace_id();

    let response = reqwest::Client::new()
        .post(format!("{}/pedidos", mesh.api_url))
        .header("traceparent", format!("00-{trace}-{CLIENT_SPAN}-01"))
        .json(&order_body(4))
        .send()
        .await
        .expect("POST sent");
    assert_eq!(response.status(), 202);
    let answer: Value = response.json().await.unwrap();
    let id = answer["id"].as_str().unwrap().to_string();
    let order = shared::events::Order {
        id: id.parse().unwrap(),
        usuario: answer["usuario"].as_str().unwrap().into(),
        produto: answer["produto"].as_str().unwrap().into(),
        quantidade: answer["quantidade"].as_u64().unwrap() as u32,
        valor: answer["valor"].as_str().unwrap().parse().unwrap(),
        data_solicitacao: answer["dataSolicitacao"].as_str().unwrap().parse().unwrap(),
    };
    let verdict = fraud::decide(&order, &fraud::Rules::new(&fraud_rules()));
    let verdict_topic = match verdict.status {
        Status::Aprovado => &topics.pedidos_validos,
        _ => &topics.pedidos_recusados,
    };

    // The records: the API's two under the API's span, fraud's two under fraud's.
    let pedidos = read_topic(kafka, &topics.pedidos, 1, WAIT).await;
    let verdicts = read_topic(kafka, verdict_topic, 1, WAIT).await;
    let notificacoes = read_topic(kafka, &topics.notificacoes, 2, WAIT).await;
    let (pedido_trace, api_span) = trace_of(&pedidos[0]);
    assert_eq!(pedido_trace, trace, "Pedidos carries the client's trace");
    let (verdict_trace, fraud_span) = trace_of(&verdicts[0]);
    assert_eq!(
        verdict_trace, trace,
        "the verdict carries the client's trace"
    );
    let mut notificacoes_spans = BTreeSet::new();
    for record in &notificacoes {
        let (t, span) = trace_of(record);
        assert_eq!(t, trace, "Notificacoes carries the client's trace");
        notificacoes_spans.insert(span);
    }
    assert_eq!(
        notificacoes_spans,
        BTreeSet::from([api_span.clone(), fraud_span.clone()]),
        "Analise under the API's span, the verdict's status event under fraud's"
    );
    assert_ne!(api_span, CLIENT_SPAN, "the API has a span of its own");
    assert_ne!(fraud_span, api_span, "fraud has a span of its own");

    // The spans: every daemon's, in that one trace, each the child of the span whose record it
    // handled.
    let every_daemon: BTreeSet<&str> = e2e::DAEMONS.iter().copied().collect();
    let spans: Vec<ReceivedSpan> = eventually("spans from every daemon", WAIT, || {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == trace)
            .collect();
        let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        // monitoring handles all four records; wait for each of them.
        let monitored = spans.iter().filter(|s| s.service == "monitoring").count();
        (services == every_daemon && monitored >= 4).then_some(spans)
    })
    .await;
    let by_id: HashMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    let api = by_id[api_span.as_str()];
    assert_eq!((api.service.as_str(), api.name.as_str()), ("api", "order"));
    assert_eq!(api.parent_span_id, CLIENT_SPAN);
    let fraud = by_id[fraud_span.as_str()];
    assert_eq!(fraud.service, "fraud");
    assert_eq!(
        fraud.parent_span_id, api_span,
        "fraud continues the API's span"
    );
    for span in spans.iter().filter(|s| s.service != "api") {
        assert!(
            [api_span.as_str(), fraud_span.as_str()].contains(&span.parent_span_id.as_str()),
            "{span:?} is the child of a record's producer"
        );
    }

    // A record fraud refuses: its dead letter carries the trace on, under fraud's span.
    let garbage_trace = fresh_trace_id();
    let producer = shared::kafka::producer(kafka, WAIT).expect("a producer");
    let garbage = OutRecord {
        topic: topics.pedidos.clone(),
        key: None,
        payload: b"not an order".to_vec(),
        headers: vec![(
            "traceparent".into(),
            format!("00-{garbage_trace}-{CLIENT_SPAN}-01").into_bytes(),
        )],
    };
    let delivered = producer.send(&garbage).expect("enqueued").await;
    assert!(
        matches!(delivered, Ok(Ok(_))),
        "garbage produced: {delivered:?}"
    );
    let dead = read_topic(kafka, &topics.dlq(&topics.pedidos), 1, WAIT).await;
    let (dead_trace, dead_span) = trace_of(&dead[0]);
    assert_eq!(
        dead_trace, garbage_trace,
        "the dead letter continues its record's trace"
    );
    assert_ne!(
        dead_span, CLIENT_SPAN,
        "under fraud's span, not the input's"
    );
    assert_eq!(
        dead[0]
            .headers
            .iter()
            .filter(|(k, _)| k == "traceparent")
            .count(),
        1,
        "the input's traceparent replaced, not kept beside"
    );

    // The logs: notification's message and monitoring's record lines name the trace.
    let in_trace =
        |e: &Value| e["span"]["trace_id"] == trace.as_str() && e["pedido"] == id.as_str();
    mesh.daemon("notification")
        .wait_for_log("the notification in the trace", WAIT, in_trace);
    mesh.daemon("monitoring")
        .wait_for_log("a monitored record in the trace", WAIT, |e| {
            message(e) == "record" && in_trace(e)
        });
    mesh.daemon("api")
        .wait_for_log("the API's acceptance in the trace", WAIT, |e| {
            message(e) == "order accepted" && in_trace(e)
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_nobody_listens_on_changes_nothing_for_the_orders() {
    const ORDERS: usize = 60;
    let closed = format!("http://127.0.0.1:{}", testkit::free_port());
    let mut mesh = Mesh::start_with(
        Broker::shared(),
        1,
        &[("PEDIDOS_TELEMETRY__OTLP_ENDPOINT", &closed)],
    )
    .await;
    let (kafka, topics) = (mesh.config.kafka.clone(), mesh.config.topics.clone());
    let orders = post_orders(&mesh.api_url, (0..ORDERS).map(order_body).collect()).await;
    assert_eq!(orders.len(), ORDERS);

    // Every order decided and told, each record carrying its order's trace on.
    let expected_valid = {
        let rules = fraud::Rules::new(&fraud_rules());
        orders
            .iter()
            .filter(|o| fraud::decide(o, &rules).status == Status::Aprovado)
            .count()
    };
    let validos = read_topic(&kafka, &topics.pedidos_validos, expected_valid, WAIT).await;
    let recusados = read_topic(
        &kafka,
        &topics.pedidos_recusados,
        ORDERS - expected_valid,
        WAIT,
    )
    .await;
    let pedidos = read_topic(&kafka, &topics.pedidos, ORDERS, WAIT).await;
    let notificacoes = read_topic(&kafka, &topics.notificacoes, 2 * ORDERS, WAIT).await;
    let trace_by_order: HashMap<String, String> = pedidos
        .iter()
        .map(|r| (r.json()["id"].as_str().unwrap().to_string(), trace_of(r).0))
        .collect();
    assert_eq!(trace_by_order.len(), ORDERS);
    let traces: BTreeSet<&String> = trace_by_order.values().collect();
    assert_eq!(traces.len(), ORDERS, "a trace per order");
    for record in validos.iter().chain(&recusados) {
        let id = record.json()["id"].as_str().unwrap().to_string();
        assert_eq!(trace_of(record).0, trace_by_order[&id], "verdict of {id}");
    }
    for record in &notificacoes {
        let id = record.json()["pedidoId"].as_str().unwrap().to_string();
        assert_eq!(
            trace_of(record).0,
            trace_by_order[&id],
            "status event of {id}"
        );
    }
    eventually("notification to handle every status event", WAIT, || {
        let handled = Notifications::from_log(&mesh.daemon("notification").log_events()).handled();
        (handled == 2 * ORDERS).then_some(())
    })
    .await;
    mesh.assert_all_running();
    // And a graceful stop still ends in a clean exit, the last flush given up on.
    for daemon in mesh.daemons() {
        assert_eq!(
            daemon.terminate(WAIT),
            Some(0),
            "{} exit status",
            daemon.name
        );
    }
}
