//! The audit trail: one JSON line per record, with everything needed to reconstruct an order's
//! journey. Building a line is pure; [`crate::writer`] writes it, and [`crate::audit_file`]
//! keeps the file.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use shared::config::TopicsConfig;
use shared::events::{decode, EvaluatedOrder, Order, StatusEvent};
use shared::pipeline::InRecord;

/// One line of the audit file. Borrows from the record: it is serialised at once, and building
/// and dropping owned copies of every field was most of monitoring's per-record CPU.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry<'a> {
    pub recorded_at: DateTime<Utc>,
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
    pub key: Option<Cow<'a, str>>,
    /// By name (sorted); `null` for a header without a value.
    pub headers: BTreeMap<&'a str, Option<Cow<'a, str>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pedido_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The body when it is JSON: as it came, or compacted when it spans lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Cow<'a, RawValue>>,
    /// The Schema Registry id the body was framed with (its JSON is then `value`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
    /// The body as text when it is not JSON; hex when it is not even UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_hex: Option<String>,
    /// Why the body is not the event its topic carries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// Order creation → verdict, for verdict records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verdict_latency_ms: Option<i64>,
}

/// Describes a record for the audit trail. Never fails: what cannot be parsed is kept raw.
pub fn entry<'a>(
    record: &InRecord<'a>,
    topics: &TopicsConfig,
    now: DateTime<Utc>,
) -> AuditEntry<'a> {
    let payload = record.payload.unwrap_or_default();
    let mut e = AuditEntry {
        recorded_at: now,
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp_ms: record.timestamp_ms,
        key: record.key.map(String::from_utf8_lossy),
        headers: record
            .headers()
            .map(|(k, v)| (k, v.map(String::from_utf8_lossy)))
            .collect(),
        pedido_id: None,
        status: None,
        value: None,
        schema_id: None,
        raw: None,
        raw_hex: None,
        parse_error: None,
        verdict_latency_ms: None,
    };
    // A framed body's JSON is recorded as such, with its schema id; a truncated frame, raw.
    let json = match shared::wire::unframe(payload) {
        Ok(body) => {
            e.schema_id = body.schema_id();
            body.json()
        }
        Err(_) => payload,
    };
    // Validating JSON without building a tree; the typed decode below parses the bytes itself.
    match serde_json::from_slice::<&RawValue>(json) {
        Ok(v) => e.value = Some(single_line(v)),
        Err(_) => match std::str::from_utf8(payload) {
            Ok(text) => e.raw = Some(text),
            Err(_) => e.raw_hex = Some(payload.iter().map(|b| format!("{b:02x}")).collect()),
        },
    }
    let t = record.topic;
    let parsed: Result<(), String> = if t == topics.pedidos {
        // An order carries no status of its own: its `Analise` travels on Notificacoes.
        decode::<Order>(Some(payload)).map(|o| e.pedido_id = Some(o.id.to_string()))
    } else if t == topics.notificacoes {
        decode::<StatusEvent>(Some(payload)).map(|s| {
            e.pedido_id = Some(s.pedido_id.to_string());
            e.status = Some(s.status.to_string());
        })
    } else if t == topics.pedidos_validos || t == topics.pedidos_recusados {
        decode::<EvaluatedOrder>(Some(payload)).map(|v| {
            e.pedido_id = Some(v.pedido.id.to_string());
            e.status = Some(v.status.to_string());
            e.verdict_latency_ms =
                Some((v.data_avaliacao - v.pedido.data_solicitacao).num_milliseconds());
        })
    } else {
        // Dead-letter topics carry whatever was refused: keep it as it is.
        e.pedido_id = e
            .headers
            .get(shared::events::HEADER_CORRELATION_ID)
            .and_then(|v| v.as_deref())
            .map(str::to_string);
        Ok(())
    }
    .map_err(|err| err.to_string());
    e.parse_error = parsed.err();
    e
}

/// A JSON body fit for one line of the file: line breaks in valid JSON can only be whitespace
/// between tokens, so a body that has any (pretty-printed) is re-serialised compactly.
fn single_line(body: &RawValue) -> Cow<'_, RawValue> {
    if !body.get().contains(['\n', '\r']) {
        return Cow::Borrowed(body);
    }
    serde_json::from_str::<serde_json::Value>(body.get())
        .and_then(|v| serde_json::value::to_raw_value(&v))
        .map_or(Cow::Borrowed(body), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::events::{OutRecord, Status};

    fn topics() -> TopicsConfig {
        TopicsConfig::default()
    }

    fn order() -> Order {
        Order {
            data_solicitacao: "2026-01-01T00:00:00Z".parse().unwrap(),
            ..Order::new("ana", "livro", 1, "10".parse().unwrap())
        }
    }

    #[test]
    fn an_order_is_recorded_with_its_id() {
        let o = order();
        let rec = OutRecord::event("Pedidos", &o);
        let e = entry(
            &InRecord::new("Pedidos", Some(&rec.payload)),
            &topics(),
            Utc::now(),
        );
        assert_eq!(e.pedido_id, Some(o.id.to_string()));
        let value: serde_json::Value =
            serde_json::from_str(e.value.as_ref().unwrap().get()).unwrap();
        assert_eq!(value["usuario"], "ana");
        assert!(e.parse_error.is_none());
        assert_eq!(e.status, None, "an order has no status of its own");
        let line = serde_json::to_string(&e).unwrap();
        assert!(
            !line.contains("\"status\"") && !line.contains("parseError"),
            "{line}"
        );
    }

    #[test]
    fn a_verdict_carries_its_latency() {
        let o = order();
        let v = EvaluatedOrder {
            pedido: o.clone(),
            status: Status::Recusado,
            motivo: "x".into(),
            data_avaliacao: "2026-01-01T00:00:00.250Z".parse().unwrap(),
        };
        let payload = serde_json::to_vec(&v).unwrap();
        let e = entry(
            &InRecord::new("Pedidos_recusados", Some(&payload)),
            &topics(),
            Utc::now(),
        );
        assert_eq!(e.status.as_deref(), Some("Recusado"));
        assert_eq!(e.verdict_latency_ms, Some(250));
    }

    #[test]
    fn garbage_is_kept_raw_with_the_parse_error() {
        let e = entry(
            &InRecord::new("Pedidos", Some(b"{\"trunc")),
            &topics(),
            Utc::now(),
        );
        assert_eq!(e.raw, Some("{\"trunc"));
        assert!(e.parse_error.is_some());
        let e = entry(
            &InRecord::new("Notificacoes", Some(&[0xff, 0x00, 0x41])),
            &topics(),
            Utc::now(),
        );
        assert_eq!(e.raw_hex.as_deref(), Some("ff0041"));
        assert!(e.parse_error.unwrap().contains("UTF-8"));
        let e = entry(
            &InRecord::new("Pedidos", Some(b"{\"id\": 5}")),
            &topics(),
            Utc::now(),
        );
        assert!(
            e.value.is_some(),
            "JSON of the wrong shape is still kept as JSON"
        );
        assert!(e.parse_error.is_some());
    }

    #[test]
    fn a_pretty_printed_body_still_makes_one_line() {
        let o = order();
        let body = serde_json::to_vec_pretty(&o).unwrap();
        let e = entry(
            &InRecord::new("Pedidos", Some(&body)),
            &topics(),
            Utc::now(),
        );
        let line = serde_json::to_string(&e).unwrap();
        assert!(!line.contains('\n'), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["value"]["usuario"], "ana");
        assert_eq!(e.pedido_id, Some(o.id.to_string()));
    }
}
