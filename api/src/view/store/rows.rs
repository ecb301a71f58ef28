//! How a batch reaches the store: each table's rows as one JSON array, bound as one text
//! parameter and unpacked by the engine (`json_each` on SQLite, `json_populate_recordset` on
//! PostgreSQL). The statements' text is then the same for every batch, so each connection
//! prepares it once, rather than parsing a `VALUES` list sized to every batch and binding
//! seven parameters per row.

use serde::Serialize;
use uuid::Uuid;

use super::nanos;
use crate::view::Changes;

/// One write on SQLite, in one call: the transaction and its three statements (sqlx runs a
/// call's statements in order, binding the anonymous parameters across them). `IMMEDIATE`
/// takes the write lock at once, as the only writer does anyway.
///
/// Orders: the `WHERE` leaves rows whose order is already known alone, so a status event's row
/// changes nothing; without it SQLite would still rewrite the row and both its index entries.
pub(super) const SQLITE_WRITE: &str = "\
BEGIN IMMEDIATE;
INSERT INTO pedidos (id, usuario, produto, quantidade, valor, data_solicitacao, recebido) \
SELECT value ->> 'id', value ->> 'usuario', value ->> 'produto', value ->> 'quantidade', \
value ->> 'valor', value ->> 'data_solicitacao', value ->> 'recebido' \
FROM json_each(?) WHERE true \
ON CONFLICT (id) DO UPDATE SET \
produto = excluded.produto, quantidade = excluded.quantidade, valor = excluded.valor, \
data_solicitacao = excluded.data_solicitacao, \
recebido = COALESCE(excluded.data_solicitacao, min(pedidos.recebido, excluded.recebido)) \
WHERE pedidos.data_solicitacao IS NULL;
INSERT INTO eventos (evento_id, pedido_id, status, motivo, data_evento) \
SELECT value ->> 'evento_id', value ->> 'pedido_id', value ->> 'status', value ->> 'motivo', \
value ->> 'data_evento' \
FROM json_each(?) WHERE true \
ON CONFLICT (pedido_id, evento_id) DO NOTHING;
INSERT INTO offsets (topic, part, next_offset) \
SELECT value ->> 'topic', value ->> 'part', value ->> 'next_offset' \
FROM json_each(?) WHERE true \
ON CONFLICT (topic, part) DO UPDATE SET \
next_offset = max(offsets.next_offset, excluded.next_offset);
COMMIT";

/// The same write on PostgreSQL, one statement per call (its extended protocol's rule).
pub(super) const POSTGRES_WRITE: [&str; 3] = [
    "INSERT INTO pedidos (id, usuario, produto, quantidade, valor, data_solicitacao, recebido) \
     SELECT id, usuario, produto, quantidade, valor, data_solicitacao, recebido \
     FROM json_populate_recordset(NULL::pedidos, $1::json) \
     ON CONFLICT (id) DO UPDATE SET \
     produto = excluded.produto, quantidade = excluded.quantidade, valor = excluded.valor, \
     data_solicitacao = excluded.data_solicitacao, \
     recebido = COALESCE(excluded.data_solicitacao, least(pedidos.recebido, excluded.recebido)) \
     WHERE pedidos.data_solicitacao IS NULL",
    "INSERT INTO eventos (evento_id, pedido_id, status, motivo, data_evento) \
     SELECT evento_id, pedido_id, status, motivo, data_evento \
     FROM json_populate_recordset(NULL::eventos, $1::json) \
     ON CONFLICT (pedido_id, evento_id) DO NOTHING",
    "INSERT INTO offsets (topic, part, next_offset) \
     SELECT topic, part, next_offset \
     FROM json_populate_recordset(NULL::offsets, $1::json) \
     ON CONFLICT (topic, part) DO UPDATE SET \
     next_offset = greatest(offsets.next_offset, excluded.next_offset)",
];

/// The events of the orders whose ids are in the JSON array bound to it.
pub(super) const SQLITE_EVENTS_OF: &str = "\
SELECT evento_id, pedido_id, status, motivo, data_evento FROM eventos \
WHERE pedido_id IN (SELECT value FROM json_each(?))";
pub(super) const POSTGRES_EVENTS_OF: &str = "\
SELECT evento_id, pedido_id, status, motivo, data_evento FROM eventos \
WHERE pedido_id IN (SELECT json_array_elements_text($1::json))";

#[derive(Serialize)]
struct PedidoRow<'a> {
    id: Uuid,
    usuario: &'a str,
    // Absent (NULL) until the order itself is read; its status events may come first.
    produto: Option<&'a str>,
    quantidade: Option<u32>,
    valor: Option<String>,
    data_solicitacao: Option<i64>,
    recebido: i64,
}

#[derive(Serialize)]
struct EventoRow<'a> {
    evento_id: Uuid,
    pedido_id: Uuid,
    status: &'a str,
    motivo: Option<&'a str>,
    data_evento: i64,
}

#[derive(Serialize)]
struct OffsetRow<'a> {
    topic: &'a str,
    part: i32,
    next_offset: i64,
}

/// The batch's orders, events and offsets, each as a JSON array of rows named as the columns.
pub(super) fn as_json(changes: &Changes) -> [String; 3] {
    let orders: Vec<PedidoRow> = changes
        .rows()
        .map(|row| {
            let order = row.order.as_ref();
            PedidoRow {
                id: row.id,
                usuario: &row.usuario,
                produto: order.map(|o| o.produto.as_str()),
                quantidade: order.map(|o| o.quantidade),
                valor: order.map(|o| o.valor.to_string()),
                data_solicitacao: order.map(|o| nanos(o.data_solicitacao)),
                recebido: nanos(row.recebido),
            }
        })
        .collect();
    let events: Vec<EventoRow> = changes
        .events()
        .map(|e| EventoRow {
            evento_id: e.evento_id,
            pedido_id: e.pedido_id,
            status: e.status.as_str(),
            motivo: e.motivo.as_deref(),
            data_evento: nanos(e.data_evento),
        })
        .collect();
    let offsets: Vec<OffsetRow> = changes
        .offsets()
        .map(|(topic, part, next_offset)| OffsetRow {
            topic,
            part,
            next_offset,
        })
        .collect();
    // Plain structs of strings and integers: serializing them cannot fail.
    [
        serde_json::to_string(&orders).expect("rows serialize"),
        serde_json::to_string(&events).expect("rows serialize"),
        serde_json::to_string(&offsets).expect("rows serialize"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use serde_json::Value;
    use shared::events::{Order, Status, StatusEvent};

    #[test]
    fn each_table_gets_its_rows_under_its_column_names_and_an_unknown_order_null_fields() {
        let known = Order::new("ana", "livro \"raro\"", 2, Decimal::new(1990, 2));
        let unknown = Order::new("bia", "caneta", 1, Decimal::new(500, 2));
        let mut changes = Changes::default();
        changes.order(&known);
        changes.status(&StatusEvent::verdict(
            &unknown,
            Status::Recusado,
            "valor",
            unknown.data_solicitacao,
        ));
        changes.read_up_to("Pedidos", 2, 41);
        let [orders, events, offsets] = as_json(&changes);
        let orders: Value = serde_json::from_str(&orders).unwrap();
        let mut orders = orders.as_array().unwrap().clone();
        orders.sort_by_key(|o| o["usuario"].as_str().unwrap().to_string());
        assert_eq!(orders[0]["id"], known.id.to_string());
        assert_eq!(orders[0]["produto"], "livro \"raro\"");
        assert_eq!(orders[0]["quantidade"], 2);
        assert_eq!(orders[0]["valor"], "19.90");
        assert_eq!(orders[0]["data_solicitacao"], nanos(known.data_solicitacao));
        assert_eq!(orders[0]["recebido"], nanos(known.data_solicitacao));
        for column in ["produto", "quantidade", "valor", "data_solicitacao"] {
            assert_eq!(orders[1][column], Value::Null, "{column}");
        }
        let events: Value = serde_json::from_str(&events).unwrap();
        assert_eq!(events[0]["pedido_id"], unknown.id.to_string());
        assert_eq!(events[0]["status"], "Recusado");
        assert_eq!(events[0]["motivo"], "valor");
        let offsets: Value = serde_json::from_str(&offsets).unwrap();
        assert_eq!(
            offsets,
            serde_json::json!([{"topic": "Pedidos", "part": 2, "next_offset": 42}])
        );
    }
}
