//! The data contracts of the topics: each record type's JSON Schema, generated from the types
//! of [`crate::events`], and, per topic of the flow, the Schema Registry subject it goes under.
//!
//! The schemas are committed under `contracts/schemas/<record>.json` at the repository's root;
//! a test fails when the types and those files differ, so a change to a record is always a
//! visible diff. Subjects follow the registry's default naming (`TopicNameStrategy`):
//! `<topic>-value`.

use schemars::generate::SchemaSettings;
use serde_json::Value;

use crate::config::TopicsConfig;
use crate::events::{EvaluatedOrder, Event, Order, StatusEvent};

/// One topic's contract.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicContract {
    /// The topic, as configured (`Pedidos` by default).
    pub topic: String,
    /// Its value subject in a Schema Registry: `<topic>-value`.
    pub subject: String,
    /// The record type's name (`Order`), also its committed file's stem.
    pub record: &'static str,
    /// The `event-type` header its records carry (`pedido.criado`).
    pub event_type: &'static str,
    /// The record's JSON Schema (draft-07).
    pub schema: Value,
}

/// The four topics of the flow with their contracts, in [`TopicsConfig::flow`]'s order:
/// `Pedidos` (Order), `Notificacoes` (StatusEvent), `Pedidos_validos` and
/// `Pedidos_recusados` (both EvaluatedOrder).
pub fn topic_contracts(topics: &TopicsConfig) -> [TopicContract; 4] {
    [
        topic_contract::<Order>(&topics.pedidos),
        topic_contract::<StatusEvent>(&topics.notificacoes),
        topic_contract::<EvaluatedOrder>(&topics.pedidos_validos),
        topic_contract::<EvaluatedOrder>(&topics.pedidos_recusados),
    ]
}

/// The contract of `topic` when it carries `E`.
pub fn topic_contract<E: Event>(topic: &str) -> TopicContract {
    TopicContract {
        topic: topic.to_string(),
        subject: value_subject(topic),
        record: record_name::<E>(),
        event_type: E::TYPE,
        schema: schema_of::<E>(),
    }
}

/// Every record type with its schema, one entry per committed file: `(record, schema)`.
pub fn record_schemas() -> [(&'static str, Value); 3] {
    [
        (record_name::<Order>(), schema_of::<Order>()),
        (record_name::<StatusEvent>(), schema_of::<StatusEvent>()),
        (
            record_name::<EvaluatedOrder>(),
            schema_of::<EvaluatedOrder>(),
        ),
    ]
}

/// The registry subject of a topic's record values.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The record type's name: its Rust type's (`Order`, `StatusEvent`, `EvaluatedOrder`).
pub fn record_name<E: Event>() -> &'static str {
    match E::schema_name() {
        std::borrow::Cow::Borrowed(name) => name,
        // Only generic types get an owned name; no event type is generic.
        std::borrow::Cow::Owned(name) => unreachable!("event type {name} is not generic"),
    }
}

/// `E`'s JSON Schema, as what producers write (serialization), self-contained (shared parts
/// under `definitions`). Draft-07: registries' compatibility checkers (Apicurio's, Confluent's)
/// do not all understand 2020-12.
pub fn schema_of<E: Event>() -> Value {
    let schema = SchemaSettings::draft07()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<E>();
    schema.to_value()
}

/// A schema as committed: pretty JSON with a final newline.
pub fn schema_file_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a JSON value always serializes");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Set to rewrite the committed schemas from the types.
    const UPDATE_ENV: &str = "UPDATE_CONTRACTS";
    const UPDATE_COMMAND: &str = "UPDATE_CONTRACTS=1 cargo test -p shared --lib contracts::";

    fn schemas_dir() -> PathBuf {
        let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let root = shared.parent().expect("shared sits in the workspace");
        root.join("contracts").join("schemas")
    }

    #[test]
    fn committed_schemas_are_the_types_schemas() {
        let dir = schemas_dir();
        let update = std::env::var_os(UPDATE_ENV).is_some();
        let mut stale = Vec::new();
        for (record, schema) in record_schemas() {
            let path = dir.join(format!("{record}.json"));
            let generated = schema_file_text(&schema);
            if update {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, &generated).unwrap();
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(committed) if committed == generated => {}
                Ok(_) => stale.push(format!("{} differs from {record}'s type", path.display())),
                Err(e) => stale.push(format!("{}: {e}", path.display())),
            }
        }
        let committed: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        for file in committed {
            let known = record_schemas()
                .iter()
                .any(|(record, _)| file == format!("{record}.json"));
            if !known {
                stale.push(format!("{file} is no record type's schema: remove it"));
            }
        }
        assert!(
            stale.is_empty(),
            "the committed data contracts are not the code's:\n  {}\nrewrite them with:\n  {UPDATE_COMMAND}\nand commit the diff (a breaking change also needs a new subject or compatibility review)",
            stale.join("\n  ")
        );
    }

    #[test]
    fn every_flow_topic_has_its_value_subject_and_record() {
        let topics = TopicsConfig::default();
        let contracts = topic_contracts(&topics);
        let got: Vec<(&str, &str, &str)> = contracts
            .iter()
            .map(|c| (c.topic.as_str(), c.subject.as_str(), c.record))
            .collect();
        assert_eq!(
            got,
            [
                ("Pedidos", "Pedidos-value", "Order"),
                ("Notificacoes", "Notificacoes-value", "StatusEvent"),
                ("Pedidos_validos", "Pedidos_validos-value", "EvaluatedOrder"),
                (
                    "Pedidos_recusados",
                    "Pedidos_recusados-value",
                    "EvaluatedOrder"
                ),
            ]
        );
        assert_eq!(contracts[0].event_type, "pedido.criado");
    }

    #[test]
    fn schemas_follow_the_serde_attributes() {
        let order = schema_of::<Order>();
        let props = &order["properties"];
        assert_eq!(props["valor"]["type"], "string", "{order}");
        assert_eq!(props["id"]["format"], "uuid");
        assert_eq!(props["dataSolicitacao"]["format"], "date-time");
        assert_eq!(order["required"].as_array().unwrap().len(), 6, "{order}");

        let event = schema_of::<StatusEvent>();
        let required = event["required"].as_array().unwrap();
        assert!(!required.contains(&"motivo".into()), "{event}");
        assert!(event["properties"].get("eventoId").is_some(), "{event}");

        // The verdict is the order's fields plus its own, flat.
        let evaluated = schema_of::<EvaluatedOrder>();
        for field in [
            "id",
            "usuario",
            "valor",
            "status",
            "motivo",
            "dataAvaliacao",
        ] {
            assert!(
                evaluated["properties"].get(field).is_some(),
                "{field} missing in {evaluated}"
            );
        }
    }

    #[test]
    fn records_as_produced_validate_against_their_schemas_and_breaks_do_not() {
        use crate::events::Status;
        use chrono::Utc;

        let order = Order::new("ana", "livro", 2, "19.90".parse().unwrap());
        let analise = StatusEvent::received(&order);
        let verdict = StatusEvent::verdict(&order, Status::Recusado, "motivo", Utc::now());
        let evaluated = EvaluatedOrder {
            pedido: order.clone(),
            status: Status::Aprovado,
            motivo: "aprovado".into(),
            data_avaliacao: Utc::now(),
        };
        let check = |schema: Value, record: Value| {
            let validator = jsonschema::validator_for(&schema).expect("a valid schema");
            validator.validate(&record).map_err(|e| e.to_string())
        };
        let order_json = serde_json::to_value(&order).unwrap();
        check(schema_of::<Order>(), order_json.clone()).unwrap();
        check(
            schema_of::<StatusEvent>(),
            serde_json::to_value(&analise).unwrap(),
        )
        .unwrap();
        check(
            schema_of::<StatusEvent>(),
            serde_json::to_value(&verdict).unwrap(),
        )
        .unwrap();
        check(
            schema_of::<EvaluatedOrder>(),
            serde_json::to_value(&evaluated).unwrap(),
        )
        .unwrap();

        let mut float_money = order_json.clone();
        float_money["valor"] = serde_json::json!(19.9);
        assert!(check(schema_of::<Order>(), float_money).is_err());
        let mut extra = order_json.clone();
        extra["cupom"] = serde_json::json!("X");
        assert!(check(schema_of::<Order>(), extra).is_err(), "closed schema");
        let mut no_user = order_json;
        no_user.as_object_mut().unwrap().remove("usuario");
        let err = check(schema_of::<Order>(), no_user).unwrap_err();
        assert!(err.contains("usuario"), "{err}");
    }
}
