//! The Kafka side's contract as an AsyncAPI 3 document: the flow's topics as channels, what
//! each daemon sends and receives as operations, and each record's payload (the committed JSON
//! Schemas of [`crate::contracts`]), key and headers as messages. The API serves it at
//! `/asyncapi.json` with the topic names and servers it was configured with, as OpenAPI's
//! `/openapi.json` describes the HTTP side.

use serde_json::{json, Map, Value};

use crate::config::{KafkaConfig, SecurityProtocol, TopicsConfig};
use crate::contracts;
use crate::events::{
    EvaluatedOrder, Event, Order, StatusEvent, HEADER_CONTENT_TYPE, HEADER_CORRELATION_ID,
    HEADER_EVENT_TYPE, HEADER_SCHEMA_VERSION, SCHEMA_VERSION,
};
use crate::pipeline::dead_letter::{
    DLQ_CONSUMER_GROUP, DLQ_ERROR, DLQ_PAYLOAD_TRUNCATED, DLQ_SOURCE_OFFSET, DLQ_SOURCE_PARTITION,
    DLQ_SOURCE_TOPIC,
};
use crate::telemetry::trace_context::{TRACEPARENT, TRACESTATE};
use crate::Config;

/// The Kafka bindings' version the document follows.
const KAFKA_BINDING: &str = "0.5.0";
/// The payloads' schema dialect: JSON Schema as [`contracts`] writes it.
const SCHEMA_FORMAT: &str = "application/schema+json;version=draft-07";

/// The document for a mesh configured with `config`.
pub fn document(config: &Config) -> Value {
    let topics = &config.topics;
    let mut channels = Map::new();
    let mut messages = Map::new();
    let mut schemas = Map::new();
    let framed = config.schema_registry.enabled();
    for (record, schema) in contracts::record_schemas() {
        let (event_type, title) = describe(record);
        messages.insert(record.into(), message(record, event_type, title, framed));
        add_schema(&mut schemas, record, schema);
    }
    messages.insert(DEAD_LETTER.into(), dead_letter_message());
    schemas.insert(HEADERS.into(), record_headers());

    for contract in contracts::topic_contracts(topics) {
        let description = channel_description(&contract.topic, topics);
        channels.insert(
            channel_id(&contract.topic),
            channel(
                &contract.topic,
                contract.record,
                &description,
                topics.partitions,
            ),
        );
    }
    for input in [&topics.pedidos, &topics.notificacoes] {
        let dlq = topics.dlq(input);
        let description = format!(
            "Records of `{input}` a consumer could not handle, copied with their bytes untouched \
             and the reason in `{DLQ_ERROR}`."
        );
        channels.insert(
            channel_id(&dlq),
            channel(&dlq, DEAD_LETTER, &description, topics.partitions),
        );
    }

    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "pedidos",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The Kafka side of the pedidos mesh: what its daemons publish and \
                consume. Records are JSON, keyed by the customer (`usuario`) so one customer's \
                records keep their order. With a schema registry configured, each value is \
                framed in Confluent's wire format (a zero byte, the schema id as 4 bytes \
                big-endian, then the JSON); consumers read both framed and plain values. The \
                HTTP side is described at `/openapi.json`.",
        },
        "defaultContentType": "application/json",
        "servers": servers(&config.kafka, &config.schema_registry.url),
        "channels": channels,
        "operations": operations(config),
        "components": {
            "messages": messages,
            "schemas": schemas,
            "securitySchemes": security_schemes(),
        },
    })
}

/// The message id of a dead-lettered record, and of the record headers' schema.
const DEAD_LETTER: &str = "DeadLetter";
const HEADERS: &str = "RecordHeaders";

/// Each record's `event-type` header and a title for people.
fn describe(record: &str) -> (&'static str, &'static str) {
    match record {
        "Order" => (Order::TYPE, "An order, as the API accepted it"),
        "StatusEvent" => (StatusEvent::TYPE, "A change of an order's status"),
        "EvaluatedOrder" => (EvaluatedOrder::TYPE, "An order with fraud's verdict"),
        other => unreachable!("no record type {other}"),
    }
}

fn channel_description(topic: &str, topics: &TopicsConfig) -> String {
    let what = if topic == topics.pedidos {
        "Orders placed through the API."
    } else if topic == topics.notificacoes {
        "Every change of an order's status: `Analise` from the API, the verdict from fraud."
    } else if topic == topics.pedidos_validos {
        "Orders fraud approved, with the verdict."
    } else {
        "Orders fraud refused, with the reason."
    };
    what.to_string()
}

/// A record's schema under `components.schemas`, its shared parts (`$defs` or `definitions`:
/// `Status`) beside it: a `$ref` inside an AsyncAPI document resolves from the document's root.
fn add_schema(schemas: &mut Map<String, Value>, record: &str, mut schema: Value) {
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(defs)) = object.remove(key) {
                for (name, mut def) in defs {
                    rewrite_refs(&mut def);
                    schemas.insert(name, def);
                }
            }
        }
    }
    rewrite_refs(&mut schema);
    schemas.insert(record.into(), schema);
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object.iter_mut() {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => {
                        let name = target
                            .strip_prefix("#/$defs/")
                            .or_else(|| target.strip_prefix("#/definitions/"));
                        if let Some(name) = name {
                            *target = format!("#/components/schemas/{name}");
                        }
                    }
                    (_, inner) => rewrite_refs(inner),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn channel(topic: &str, message_id: &str, description: &str, partitions: i32) -> Value {
    let mut binding = json!({ "topic": topic, "bindingVersion": KAFKA_BINDING });
    if partitions > 0 {
        binding["partitions"] = json!(partitions);
    }
    json!({
        "address": topic,
        "description": description,
        "messages": { message_id: { "$ref": format!("#/components/messages/{message_id}") } },
        "bindings": { "kafka": binding },
    })
}

/// Who sends and who receives on each channel: the mesh described as one application.
fn operations(config: &Config) -> Value {
    let topics = &config.topics;
    let fraud = Some(config.fraud.group_id.as_str());
    let notification = Some(config.notification.group_id.as_str());
    let monitoring = Some(config.monitoring.group_id.as_str());
    let pedidos_dlq = topics.dlq(&topics.pedidos);
    let notificacoes_dlq = topics.dlq(&topics.notificacoes);
    // (id, daemon, action, consumer group, topic, message, summary)
    #[rustfmt::skip]
    let table = [
        ("apiSendsOrder", "api", "send", None, &topics.pedidos, "Order",
            "The API publishes each order it accepts (POST /pedidos), before answering 202."),
        ("apiSendsAnalise", "api", "send", None, &topics.notificacoes, "StatusEvent",
            "The API publishes the order's first status, `Analise`, together with the order."),
        ("fraudReceivesOrder", "fraud", "receive", fraud, &topics.pedidos, "Order",
            "fraud decides each order: a pure function of the order and its rules."),
        ("fraudSendsApproved", "fraud", "send", None, &topics.pedidos_validos, "EvaluatedOrder",
            "An approved order, with its verdict."),
        ("fraudSendsRefused", "fraud", "send", None, &topics.pedidos_recusados, "EvaluatedOrder",
            "A refused order, with the reason."),
        ("fraudSendsVerdict", "fraud", "send", None, &topics.notificacoes, "StatusEvent",
            "The verdict as a status change: `Aprovado` or `Recusado`, with `motivo`."),
        ("fraudDeadLetters", "fraud", "send", None, &pedidos_dlq, DEAD_LETTER,
            "fraud copies an order it cannot handle here and moves on."),
        ("notificationReceivesStatus", "notification", "receive", notification, &topics.notificacoes, "StatusEvent",
            "notification tells the customer of each status change, once per event id."),
        ("notificationDeadLetters", "notification", "send", None, &notificacoes_dlq, DEAD_LETTER,
            "notification copies a status event it cannot handle here and moves on."),
        ("apiReceivesStatus", "api", "receive", None, &topics.notificacoes, "StatusEvent",
            "The API's order view reads every status change (no consumer group: it keeps its own offsets)."),
        ("apiReceivesOrder", "api", "receive", None, &topics.pedidos, "Order",
            "The API's order view reads every order, those other instances placed included."),
        ("monitoringReceivesOrder", "monitoring", "receive", monitoring, &topics.pedidos, "Order",
            "monitoring records every record of the flow in its audit file."),
        ("monitoringReceivesStatus", "monitoring", "receive", monitoring, &topics.notificacoes, "StatusEvent",
            "monitoring records every record of the flow in its audit file."),
        ("monitoringReceivesApproved", "monitoring", "receive", monitoring, &topics.pedidos_validos, "EvaluatedOrder",
            "monitoring records every record of the flow in its audit file."),
        ("monitoringReceivesRefused", "monitoring", "receive", monitoring, &topics.pedidos_recusados, "EvaluatedOrder",
            "monitoring records every record of the flow in its audit file."),
        ("monitoringReceivesDeadOrders", "monitoring", "receive", monitoring, &pedidos_dlq, DEAD_LETTER,
            "monitoring records every dead-lettered record too, raw, with the reason."),
        ("monitoringReceivesDeadStatus", "monitoring", "receive", monitoring, &notificacoes_dlq, DEAD_LETTER,
            "monitoring records every dead-lettered record too, raw, with the reason."),
    ];
    let operations = table
        .into_iter()
        .map(|(id, daemon, action, group, topic, message, summary)| {
            let op = operation(action, daemon, group, topic, message, summary);
            (id.to_string(), op)
        })
        .collect();
    Value::Object(operations)
}

fn operation(
    action: &str,
    daemon: &str,
    group: Option<&str>,
    topic: &str,
    message: &str,
    summary: &str,
) -> Value {
    let mut op = json!({
        "action": action,
        "title": format!("{daemon}: {action} on {topic}"),
        "summary": summary,
        "channel": { "$ref": format!("#/channels/{}", channel_id(topic)) },
        "messages": [
            { "$ref": format!("#/channels/{}/messages/{message}", channel_id(topic)) }
        ],
    });
    if let Some(group) = group {
        op["bindings"] = json!({
            "kafka": {
                "groupId": { "type": "string", "enum": [group] },
                "bindingVersion": KAFKA_BINDING,
            }
        });
    }
    op
}

/// A topic's channel id: AsyncAPI keys are `[A-Za-z0-9_-]+`, Kafka topic names may also hold `.`.
fn channel_id(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `framed`: values in Confluent's wire format, the schema id in the payload's first bytes.
fn message(record: &str, event_type: &str, title: &str, framed: bool) -> Value {
    let mut kafka = json!({
        "key": { "type": "string", "description": "The customer, `usuario`." },
        "bindingVersion": KAFKA_BINDING,
    });
    if framed {
        kafka["schemaIdLocation"] = json!("payload");
        kafka["schemaIdPayloadEncoding"] = json!("confluent");
        kafka["schemaLookupStrategy"] = json!("TopicNameStrategy");
    }
    json!({
        "name": event_type,
        "title": title,
        "contentType": "application/json",
        "headers": { "$ref": format!("#/components/schemas/{HEADERS}") },
        "payload": {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": { "$ref": format!("#/components/schemas/{record}") },
        },
        "correlationId": {
            "description": "The order's id: every record of one order's journey carries it.",
            "location": format!("$message.header#/{HEADER_CORRELATION_ID}"),
        },
        "bindings": { "kafka": kafka },
    })
}

fn dead_letter_message() -> Value {
    let text = |description: &str| json!({ "type": "string", "description": description });
    json!({
        "name": "dead-letter",
        "title": "A record no consumer could handle",
        "contentType": "application/octet-stream",
        "summary": "The input record's key, value and headers, untouched, plus why it was refused.",
        "headers": {
            "type": "object",
            "required": [DLQ_SOURCE_TOPIC, DLQ_SOURCE_PARTITION, DLQ_SOURCE_OFFSET, DLQ_ERROR, DLQ_CONSUMER_GROUP],
            "properties": {
                DLQ_SOURCE_TOPIC: text("The topic the record came from."),
                DLQ_SOURCE_PARTITION: text("Its partition, in decimal."),
                DLQ_SOURCE_OFFSET: text("Its offset, in decimal."),
                DLQ_ERROR: text("Why it was refused, for a human."),
                DLQ_CONSUMER_GROUP: text("The consumer group that refused it."),
                DLQ_PAYLOAD_TRUNCATED: text("Present when the value was cut to fit: its original size in bytes."),
            },
        },
        "payload": { "description": "The refused record's value, byte for byte." },
    })
}

fn record_headers() -> Value {
    json!({
        "type": "object",
        "required": [HEADER_EVENT_TYPE, HEADER_SCHEMA_VERSION, HEADER_CORRELATION_ID, HEADER_CONTENT_TYPE],
        "properties": {
            HEADER_EVENT_TYPE: {
                "type": "string",
                "enum": [Order::TYPE, StatusEvent::TYPE, EvaluatedOrder::TYPE],
                "description": "The record's type.",
            },
            HEADER_SCHEMA_VERSION: { "type": "string", "const": SCHEMA_VERSION },
            HEADER_CORRELATION_ID: {
                "type": "string",
                "format": "uuid",
                "description": "The order's id.",
            },
            HEADER_CONTENT_TYPE: { "type": "string", "const": "application/json" },
            TRACEPARENT: {
                "type": "string",
                "description": "W3C trace context: the trace the record belongs to, when tracing is on.",
            },
            TRACESTATE: { "type": "string", "description": "W3C trace context, vendor part." },
        },
    })
}

/// One server per bootstrap server; with a schema registry (`registry_url`), its address in
/// each server's Kafka binding. The URL is shown without credentials.
fn servers(kafka: &KafkaConfig, registry_url: &str) -> Value {
    let registry = registry_url.trim();
    let protocol = match kafka.security_protocol {
        SecurityProtocol::Plaintext | SecurityProtocol::SaslPlaintext => "kafka",
        SecurityProtocol::Ssl | SecurityProtocol::SaslSsl => "kafka-secure",
    };
    let security = kafka.security_protocol.uses_sasl().then(|| {
        let scheme = match kafka.sasl_mechanisms.to_ascii_uppercase().as_str() {
            "SCRAM-SHA-256" => "scramSha256",
            "SCRAM-SHA-512" => "scramSha512",
            _ => "plain",
        };
        json!([{ "$ref": format!("#/components/securitySchemes/{scheme}") }])
    });
    let mut servers = Map::new();
    for (i, host) in kafka
        .bootstrap_servers
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .enumerate()
    {
        let mut server = json!({
            "host": host,
            "protocol": protocol,
            "description": format!(
                "A bootstrap server of the cluster this API is configured for ({}).",
                kafka.security_protocol.as_str()
            ),
        });
        if let Some(security) = &security {
            server["security"] = security.clone();
        }
        if !registry.is_empty() {
            server["bindings"] = json!({
                "kafka": {
                    "schemaRegistryUrl": without_userinfo(registry),
                    "schemaRegistryVendor": "confluent",
                    "bindingVersion": KAFKA_BINDING,
                }
            });
        }
        servers.insert(format!("broker{}", i + 1), server);
    }
    Value::Object(servers)
}

/// `https://user:pass@host/x` → `https://host/x`: credentials belong in
/// `schema_registry.username`/`password`, but a URL carrying them must not leak them.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host);
            format!("{scheme}://{host}{path}")
        }
        None => url.to_string(),
    }
}

fn security_schemes() -> Value {
    json!({
        "plain": { "type": "plain", "description": "SASL/PLAIN: on Confluent Cloud, a cluster API key and secret." },
        "scramSha256": { "type": "scramSha256", "description": "SASL/SCRAM-SHA-256." },
        "scramSha512": { "type": "scramSha512", "description": "SASL/SCRAM-SHA-512." },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` of `value`, as JSON pointers into the document.
    fn refs(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(object) => {
                for (key, inner) in object {
                    match (key.as_str(), inner) {
                        ("$ref", Value::String(target)) => found.push(target.clone()),
                        _ => refs(inner, found),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_inside_the_document() {
        let document = document(&Config::default());
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for target in found {
            let pointer = target.strip_prefix('#').expect("local references only");
            assert!(document.pointer(pointer).is_some(), "{target} resolves");
        }
    }

    #[test]
    fn channels_are_the_configured_topics_and_their_dead_letter_topics() {
        let mut config = Config::default();
        config.topics.pedidos = "loja.Pedidos".into();
        let document = document(&config);
        let channels = document["channels"].as_object().unwrap();
        let addresses: Vec<&str> = channels
            .values()
            .map(|c| c["address"].as_str().unwrap())
            .collect();
        let mut expected = config.topics.all();
        expected.sort();
        let mut got: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
        got.sort();
        assert_eq!(got, expected);
        // A `.` is fine in a topic name, not in an AsyncAPI key.
        assert!(channels.contains_key("loja_Pedidos"));
        assert!(channels.keys().all(|k| k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')));
    }

    #[test]
    fn payloads_are_the_committed_schemas_with_shared_parts_beside_them() {
        let document = document(&Config::default());
        let schemas = &document["components"]["schemas"];
        for (record, schema) in contracts::record_schemas() {
            assert_eq!(
                schemas[record]["properties"].as_object().unwrap().len(),
                schema["properties"].as_object().unwrap().len(),
                "{record}"
            );
        }
        assert_eq!(
            schemas["StatusEvent"]["properties"]["status"]["$ref"],
            "#/components/schemas/Status"
        );
        assert!(schemas["Status"]["enum"].is_array());
    }

    #[test]
    fn servers_say_how_to_connect_but_never_the_secret() {
        let mut config = Config::default();
        config.kafka.bootstrap_servers = "a.example:9092, b.example:9092".into();
        config.kafka.security_protocol = SecurityProtocol::SaslSsl;
        config.kafka.sasl_mechanisms = "PLAIN".into();
        config.kafka.sasl_username = "KEY123".into();
        let document = document(&config);
        let servers = document["servers"].as_object().unwrap();
        assert_eq!(servers.len(), 2);
        assert_eq!(servers["broker2"]["host"], "b.example:9092");
        assert_eq!(servers["broker1"]["protocol"], "kafka-secure");
        assert_eq!(
            servers["broker1"]["security"][0]["$ref"],
            "#/components/securitySchemes/plain"
        );
        assert!(!document.to_string().contains("KEY123"));
        // Plain JSON values: no schema id to look for.
        let order = &document["components"]["messages"]["Order"]["bindings"]["kafka"];
        assert!(order.get("schemaIdLocation").is_none(), "{order}");
    }

    #[test]
    fn with_a_registry_messages_say_where_the_schema_id_is() {
        let mut config = Config::default();
        config.schema_registry.url = "https://sr-key:sr-secret@psrc-1.example.cloud".into();
        let document = document(&config);
        let order = &document["components"]["messages"]["Order"]["bindings"]["kafka"];
        assert_eq!(order["schemaIdLocation"], "payload");
        assert_eq!(order["schemaIdPayloadEncoding"], "confluent");
        assert_eq!(
            document["servers"]["broker1"]["bindings"]["kafka"]["schemaRegistryUrl"],
            "https://psrc-1.example.cloud"
        );
        assert!(!document.to_string().contains("sr-secret"));
    }
}
