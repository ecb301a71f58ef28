//! The one place that defines what travels on the topics: JSON bodies with the Portuguese field
//! names of the original project, keyed by `usuario`, with headers for type, schema version and
//! correlation id.

use std::collections::HashMap;
use std::sync::OnceLock;

use chrono::{DateTime, SubsecRound, Utc};
use rust_decimal::Decimal;
use schemars::JsonSchema;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use uuid::Uuid;

use crate::validation::{MAX_QUANTIDADE, MAX_TEXT_CHARS, MIN_QUANTIDADE};
use crate::wire;

/// Header naming the event type (`pedido.criado`, `pedido.status`, `pedido.avaliado`).
pub const HEADER_EVENT_TYPE: &str = "event-type";
/// Header with the schema version of the body.
pub const HEADER_SCHEMA_VERSION: &str = "schema-version";
/// Header with the order id: every record of one order's journey carries it.
pub const HEADER_CORRELATION_ID: &str = "correlation-id";
pub const HEADER_CONTENT_TYPE: &str = "content-type";
pub const SCHEMA_VERSION: &str = "1";

// The `JsonSchema` derives of the record types are the data contract (`crate::contracts`):
// their doc comments become the schemas' descriptions, and the limits are
// `crate::validation`'s. The schemas are closed (`additionalProperties: false`), which is what
// lets a registry's BACKWARD rule take a new optional field and refuse a removed one; decoding
// itself still ignores unknown fields.

/// An order, as published to `Pedidos`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Order {
    /// The order id (a UUIDv7, or a UUIDv5 of the customer and their `Idempotency-Key`).
    pub id: Uuid,
    /// The customer; also the record key.
    #[schemars(length(min = 1, max = MAX_TEXT_CHARS))]
    pub usuario: String,
    #[schemars(length(min = 1, max = MAX_TEXT_CHARS))]
    pub produto: String,
    #[schemars(range(min = MIN_QUANTIDADE, max = MAX_QUANTIDADE))]
    pub quantidade: u32,
    /// Unit price, an exact decimal (JSON string, e.g. `"19.90"`): never a binary float.
    #[serde(with = "rust_decimal::serde::str")]
    #[schemars(with = "String", regex(pattern = r"^[0-9]+(\.[0-9]+)?$"))]
    pub valor: Decimal,
    /// When the API accepted the order (UTC, millisecond precision).
    pub data_solicitacao: DateTime<Utc>,
}

impl Order {
    /// A new order, placed now: a fresh id, and the time at millisecond precision (what every
    /// consumer, and Kafka's own timestamps, can keep). The id is a UUIDv7 (RFC 9562): time
    /// first, then 74 random bits, so ids placed one after another sort together and the
    /// order store's indexes grow at their end rather than at a random page per order.
    pub fn new(
        usuario: impl Into<String>,
        produto: impl Into<String>,
        quantidade: u32,
        valor: Decimal,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            usuario: usuario.into(),
            produto: produto.into(),
            quantidade,
            valor,
            data_solicitacao: Utc::now().trunc_subsecs(3),
        }
    }

    /// `valor × quantidade`, exact.
    pub fn total(&self) -> Decimal {
        self.valor * Decimal::from(self.quantidade)
    }
}

/// Where an order stands: `Analise` until fraud's verdict, then `Aprovado` or `Recusado`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Status {
    // Accepted by the API, waiting for the fraud check. (A plain comment: a doc comment here
    // would turn the schema's `enum` into a `oneOf`.)
    Analise,
    Aprovado,
    Recusado,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Analise => "Analise",
            Status::Aprovado => "Aprovado",
            Status::Recusado => "Recusado",
        }
    }
    /// A verdict, as opposed to the initial `Analise`.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Analise)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of an order's status, as published to `Notificacoes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct StatusEvent {
    /// Unique per status change; a replay of the same change keeps the same id.
    pub evento_id: Uuid,
    pub pedido_id: Uuid,
    pub usuario: String,
    pub status: Status,
    /// Why the verdict was given; absent for `Analise`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motivo: Option<String>,
    pub data_evento: DateTime<Utc>,
}

impl StatusEvent {
    /// The `Analise` event of a new order. Its id is derived from the order id, like a
    /// verdict's: an order published twice (a retried `Idempotency-Key`) is told once.
    pub fn received(order: &Order) -> Self {
        Self {
            evento_id: Uuid::new_v5(&order.id, Status::Analise.as_str().as_bytes()),
            pedido_id: order.id,
            usuario: order.usuario.clone(),
            status: Status::Analise,
            motivo: None,
            data_evento: order.data_solicitacao,
        }
    }

    /// The verdict event. Its id is derived from the order id and the status, so a replayed
    /// verdict is recognisable downstream as the same event.
    pub fn verdict(order: &Order, status: Status, motivo: &str, at: DateTime<Utc>) -> Self {
        Self {
            evento_id: Uuid::new_v5(&order.id, status.as_str().as_bytes()),
            pedido_id: order.id,
            usuario: order.usuario.clone(),
            status,
            motivo: Some(motivo.to_string()),
            data_evento: at,
        }
    }
}

/// An order with its fraud verdict, as published to `Pedidos_validos` / `Pedidos_recusados`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct EvaluatedOrder {
    #[serde(flatten)]
    pub pedido: Order,
    pub status: Status,
    pub motivo: String,
    /// When fraud decided.
    pub data_avaliacao: DateTime<Utc>,
}

/// What every event type knows about itself for keys and headers.
pub trait Event: Serialize + DeserializeOwned + JsonSchema {
    const TYPE: &'static str;
    /// The record key: the customer, so one customer's events stay in order.
    fn key(&self) -> &str;
    fn correlation_id(&self) -> Uuid;
}

impl Event for Order {
    const TYPE: &'static str = "pedido.criado";
    fn key(&self) -> &str {
        &self.usuario
    }
    fn correlation_id(&self) -> Uuid {
        self.id
    }
}

impl Event for StatusEvent {
    const TYPE: &'static str = "pedido.status";
    fn key(&self) -> &str {
        &self.usuario
    }
    fn correlation_id(&self) -> Uuid {
        self.pedido_id
    }
}

impl Event for EvaluatedOrder {
    const TYPE: &'static str = "pedido.avaliado";
    fn key(&self) -> &str {
        &self.pedido.usuario
    }
    fn correlation_id(&self) -> Uuid {
        self.pedido.id
    }
}

/// Schema Registry ids of the topics whose records this process frames (`crate::wire`), set
/// once at start-up by `crate::schema_registry::start` when a registry is configured. Global
/// because records are encoded deep inside the daemons' handlers, and the ids are the
/// process's for its whole life.
static SCHEMA_IDS: OnceLock<HashMap<String, u32>> = OnceLock::new();

/// From now on, [`OutRecord::event`] frames records for these topics with their schema ids.
/// Only the first call counts (a process registers its schemas once); returns whether this
/// was it.
pub fn frame_topics_with(schema_ids: HashMap<String, u32>) -> bool {
    SCHEMA_IDS.set(schema_ids).is_ok()
}

/// The schema id this process frames `topic`'s records with, if any.
pub fn schema_id_of(topic: &str) -> Option<u32> {
    SCHEMA_IDS.get()?.get(topic).copied()
}

/// A record ready to be produced: owned, so it can be retried.
#[derive(Debug, Clone, PartialEq)]
pub struct OutRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl OutRecord {
    /// Encodes an event for `topic` with its key and standard headers: JSON, framed with the
    /// topic's schema id when a Schema Registry is configured.
    pub fn event<E: Event>(topic: &str, event: &E) -> Self {
        let json = serde_json::to_vec(event).expect("event types always serialize");
        let payload = match schema_id_of(topic) {
            Some(id) => wire::frame(id, &json),
            None => json,
        };
        Self {
            topic: topic.to_string(),
            key: Some(event.key().as_bytes().to_vec()),
            payload,
            headers: vec![
                (HEADER_EVENT_TYPE.into(), E::TYPE.as_bytes().to_vec()),
                (
                    HEADER_SCHEMA_VERSION.into(),
                    SCHEMA_VERSION.as_bytes().to_vec(),
                ),
                (
                    HEADER_CORRELATION_ID.into(),
                    event.correlation_id().to_string().into_bytes(),
                ),
                (HEADER_CONTENT_TYPE.into(), b"application/json".to_vec()),
            ],
        }
    }
}

/// Why a record's body could not be turned into an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty payload")]
    Empty,
    #[error(transparent)]
    TruncatedFrame(#[from] wire::TruncatedFrame),
    #[error("payload is not UTF-8: {0}")]
    NotUtf8(String),
    #[error("payload is not a valid {kind}: {message}")]
    Invalid { kind: &'static str, message: String },
}

/// Decodes a record body into an event, with an error a human can act on. Takes plain JSON
/// and Schema Registry frames alike (the frame's schema id is checked by the consumer loop,
/// `crate::schema_registry`, not here).
pub fn decode<E: Event>(payload: Option<&[u8]>) -> Result<E, DecodeError> {
    let bytes = payload
        .filter(|p| !p.is_empty())
        .ok_or(DecodeError::Empty)?;
    let bytes = wire::unframe(bytes)?.json();
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8(e.to_string()))?;
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(invalid::<E, _>)
}

fn invalid<E: Event, D: std::fmt::Display>(e: serde_path_to_error::Error<D>) -> DecodeError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    DecodeError::Invalid {
        kind: E::TYPE,
        // Name the field when the error is about one.
        message: if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order() -> Order {
        Order {
            id: Uuid::parse_str("4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10").unwrap(),
            data_solicitacao: "2026-11-22T10:00:00Z".parse().unwrap(),
            ..Order::new("ana", "livro", 3, Decimal::new(1990, 2))
        }
    }

    #[test]
    fn order_json_uses_the_original_field_names_and_exact_money() {
        let v: serde_json::Value = serde_json::to_value(order()).unwrap();
        assert_eq!(
            v,
            json!({
                "id": "4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10",
                "usuario": "ana",
                "produto": "livro",
                "quantidade": 3,
                "valor": "19.90",
                "dataSolicitacao": "2026-11-22T10:00:00Z"
            })
        );
    }

    #[test]
    fn money_is_never_rounded_through_floats() {
        let mut o = order();
        o.valor = "0.10".parse().unwrap();
        o.quantidade = 3;
        assert_eq!(o.total().to_string(), "0.30"); // 0.1 * 3 in f64 is 0.30000000000000004
        let back: Order = decode(Some(&serde_json::to_vec(&o).unwrap())).unwrap();
        assert_eq!(back.valor.to_string(), "0.10");
    }

    #[test]
    fn status_event_round_trips_with_camel_case_fields() {
        let e = StatusEvent::verdict(
            &order(),
            Status::Recusado,
            "valor acima do limite",
            Utc::now(),
        );
        let v = serde_json::to_value(&e).unwrap();
        for field in [
            "eventoId",
            "pedidoId",
            "usuario",
            "status",
            "motivo",
            "dataEvento",
        ] {
            assert!(v.get(field).is_some(), "missing {field} in {v}");
        }
        assert_eq!(v["status"], "Recusado");
        let back: StatusEvent = decode(Some(&serde_json::to_vec(&e).unwrap())).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn status_event_ids_are_stable_for_the_same_order_and_status() {
        let o = order();
        let a = StatusEvent::verdict(&o, Status::Aprovado, "ok", Utc::now());
        let b = StatusEvent::verdict(&o, Status::Aprovado, "ok", Utc::now());
        let c = StatusEvent::verdict(&o, Status::Recusado, "no", Utc::now());
        assert_eq!(a.evento_id, b.evento_id);
        assert_ne!(a.evento_id, c.evento_id);
        let analise = StatusEvent::received(&o).evento_id;
        assert_eq!(analise, StatusEvent::received(&o).evento_id);
        assert!(analise != a.evento_id && analise != c.evento_id);
        let other = Order::new("ana", "livro", 3, Decimal::new(1990, 2));
        assert_ne!(analise, StatusEvent::received(&other).evento_id);
    }

    #[test]
    fn evaluated_order_is_the_order_plus_its_verdict() {
        let e = EvaluatedOrder {
            pedido: order(),
            status: Status::Aprovado,
            motivo: "aprovado".into(),
            data_avaliacao: Utc::now(),
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["id"], "4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10");
        assert_eq!(v["status"], "Aprovado");
        assert!(v.get("dataAvaliacao").is_some());
        let back: EvaluatedOrder = decode(Some(&serde_json::to_vec(&e).unwrap())).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn framed_records_decode_like_plain_ones() {
        let json = serde_json::to_vec(&order()).unwrap();
        let framed = wire::frame(7, &json);
        assert_eq!(decode::<Order>(Some(&framed)).unwrap(), order());
        assert_eq!(decode::<Order>(Some(&json)).unwrap(), order());
        assert_eq!(
            decode::<Order>(Some(&wire::frame(7, b""))),
            Err(DecodeError::Empty)
        );
    }

    #[test]
    fn records_are_keyed_by_usuario_with_headers() {
        let r = OutRecord::event("Pedidos", &order());
        assert_eq!(r.topic, "Pedidos");
        assert_eq!(r.key.as_deref(), Some(&b"ana"[..]));
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
        };
        assert_eq!(header(HEADER_EVENT_TYPE).as_deref(), Some("pedido.criado"));
        assert_eq!(header(HEADER_SCHEMA_VERSION).as_deref(), Some("1"));
        assert_eq!(
            header(HEADER_CORRELATION_ID).as_deref(),
            Some("4b3c0e52-7f2e-4a51-9d8e-0c4d3f7a9b10")
        );
    }

    #[test]
    fn bad_payloads_give_specific_errors() {
        assert_eq!(decode::<Order>(None), Err(DecodeError::Empty));
        assert_eq!(decode::<Order>(Some(b"")), Err(DecodeError::Empty));
        assert!(matches!(
            decode::<Order>(Some(&[0xff, 0xfe])),
            Err(DecodeError::NotUtf8(_))
        ));
        let truncated = decode::<Order>(Some(br#"{"id": "4b3c0e52"#)).unwrap_err();
        assert!(
            matches!(truncated, DecodeError::Invalid { .. }),
            "{truncated}"
        );
        let mut v = serde_json::to_value(order()).unwrap();
        v["quantidade"] = json!("três");
        let wrong_type = decode::<Order>(Some(v.to_string().as_bytes())).unwrap_err();
        assert!(
            wrong_type.to_string().contains("quantidade: invalid type"),
            "{wrong_type}"
        );
        assert!(matches!(
            decode::<Order>(Some(&[0, 0, 1])),
            Err(DecodeError::TruncatedFrame(_))
        ));
        let mut v = serde_json::to_value(order()).unwrap();
        v.as_object_mut().unwrap().remove("usuario");
        let missing = decode::<Order>(Some(v.to_string().as_bytes())).unwrap_err();
        assert!(missing.to_string().contains("usuario"), "{missing}");
    }
}
