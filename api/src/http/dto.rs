//! What the handlers answer: the response bodies, named in Rust in English and, for clients, with
//! the Portuguese schema names of the domain (`#[oai(rename)]`). Doc comments here are the
//! descriptions clients read in the OpenAPI document.

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use shared::events::{Order, Status};
use uuid::Uuid;

use crate::view::{HistoryEntry, OrderView};

/// An accepted order.
#[derive(Debug, Object)]
#[oai(rename = "Pedido")]
pub(crate) struct AcceptedOrder {
    id: Uuid,
    usuario: String,
    produto: String,
    quantidade: u32,
    /// Exact decimal, as a string (e.g. `"19.90"`).
    valor: String,
    /// RFC 3339, UTC.
    #[oai(rename = "dataSolicitacao")]
    data_solicitacao: String,
    /// `Analise`, `Aprovado` or `Recusado`.
    status: String,
}

impl AcceptedOrder {
    /// The answer to a `POST`: the order as published, still in `Analise`.
    pub(crate) fn new(order: &Order) -> Self {
        Self {
            id: order.id,
            usuario: order.usuario.clone(),
            produto: order.produto.clone(),
            quantidade: order.quantidade,
            valor: order.valor.to_string(),
            data_solicitacao: timestamp(order.data_solicitacao),
            status: Status::Analise.to_string(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename = "Evento")]
pub(crate) struct HistoryEvent {
    #[oai(rename = "eventoId")]
    evento_id: Uuid,
    status: String,
    #[oai(skip_serializing_if_is_none)]
    motivo: Option<String>,
    /// RFC 3339, UTC.
    #[oai(rename = "dataEvento")]
    data_evento: String,
}

impl HistoryEvent {
    pub(crate) fn evento_id(&self) -> Uuid {
        self.evento_id
    }
}

impl From<&HistoryEntry> for HistoryEvent {
    fn from(h: &HistoryEntry) -> Self {
        Self {
            evento_id: h.evento_id,
            status: h.status.to_string(),
            motivo: h.motivo.clone(),
            data_evento: timestamp(h.data_evento),
        }
    }
}

/// An order's current status and the history that led to it.
#[derive(Debug, Object)]
#[oai(rename = "PedidoStatus")]
pub(crate) struct OrderStatus {
    id: Uuid,
    usuario: String,
    status: String,
    #[oai(skip_serializing_if_is_none)]
    motivo: Option<String>,
    /// Missing only when the order itself has not been read back yet.
    #[oai(skip_serializing_if_is_none)]
    produto: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    quantidade: Option<u32>,
    #[oai(skip_serializing_if_is_none)]
    valor: Option<String>,
    /// RFC 3339, UTC.
    #[oai(rename = "dataSolicitacao", skip_serializing_if_is_none)]
    data_solicitacao: Option<String>,
    historico: Vec<HistoryEvent>,
}

impl From<&OrderView> for OrderStatus {
    fn from(v: &OrderView) -> Self {
        Self {
            id: v.id,
            usuario: v.usuario.clone(),
            status: v.status().to_string(),
            motivo: v.motivo().map(str::to_string),
            produto: v.order.as_ref().map(|p| p.produto.clone()),
            quantidade: v.order.as_ref().map(|p| p.quantidade),
            valor: v.order.as_ref().map(|p| p.valor.to_string()),
            data_solicitacao: v.data_solicitacao().map(timestamp),
            historico: v.history.iter().map(HistoryEvent::from).collect(),
        }
    }
}

#[derive(Debug, Object)]
#[oai(rename = "PaginaPedidos")]
pub(crate) struct OrderPage {
    /// Orders in the view (one customer's, when filtered).
    pub(crate) total: u64,
    pub(crate) offset: u64,
    pub(crate) limit: u64,
    /// Newest first.
    pub(crate) pedidos: Vec<OrderStatus>,
}

#[derive(Debug, Object)]
pub(crate) struct Health {
    pub(crate) status: String,
    /// Orders in the view; absent when the store cannot be read.
    #[oai(skip_serializing_if_is_none)]
    pub(crate) pedidos: Option<u64>,
}

/// Timestamps exactly as the events on the topics spell them (`...Z`).
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::ToJSON;
    use rust_decimal::Decimal;
    use serde_json::json;
    use shared::events::StatusEvent;

    use super::*;
    use crate::view::{HistoryEntry, OrderView};

    fn entry(e: &StatusEvent) -> HistoryEntry {
        HistoryEntry {
            evento_id: e.evento_id,
            status: e.status,
            motivo: e.motivo.clone(),
            data_evento: e.data_evento,
        }
    }

    fn order() -> Order {
        Order {
            id: Uuid::from_u128(7),
            data_solicitacao: "2026-01-02T03:04:05.678Z".parse().unwrap(),
            ..Order::new("ana", "livro", 2, Decimal::new(1990, 2))
        }
    }

    #[test]
    fn an_accepted_order_reads_like_the_event_on_pedidos() {
        assert_eq!(
            AcceptedOrder::new(&order()).to_json(),
            Some(json!({
                "id": "00000000-0000-0000-0000-000000000007",
                "usuario": "ana",
                "produto": "livro",
                "quantidade": 2,
                "valor": "19.90",
                "dataSolicitacao": "2026-01-02T03:04:05.678Z",
                "status": "Analise",
            }))
        );
    }

    #[test]
    fn a_status_carries_the_verdict_and_its_history_oldest_first() {
        let order = order();
        let at = "2026-01-02T03:04:06Z".parse().unwrap();
        let verdict = StatusEvent::verdict(&order, Status::Recusado, "limite", at);
        let events = [entry(&StatusEvent::received(&order)), entry(&verdict)];
        let view = OrderView::assemble(order.id, "ana".into(), Some(order.clone()), events);
        let status = OrderStatus::from(&view).to_json().unwrap();
        assert_eq!(status["status"], "Recusado");
        assert_eq!(status["motivo"], "limite");
        assert_eq!(status["valor"], "19.90");
        assert_eq!(status["dataSolicitacao"], "2026-01-02T03:04:05.678Z");
        let history = status["historico"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert_eq!(history[0]["status"], "Analise");
        assert!(history[0].get("motivo").is_none(), "{status}");
        assert_eq!(
            history[1],
            json!({
                "eventoId": verdict.evento_id.to_string(),
                "status": "Recusado",
                "motivo": "limite",
                "dataEvento": "2026-01-02T03:04:06Z",
            })
        );
    }

    #[test]
    fn a_status_known_only_from_an_event_omits_what_only_the_order_says() {
        let order = order();
        let events = [entry(&StatusEvent::received(&order))];
        let view = OrderView::assemble(order.id, "ana".into(), None, events);
        let status = OrderStatus::from(&view).to_json().unwrap();
        for absent in ["produto", "quantidade", "valor", "motivo"] {
            assert!(status.get(absent).is_none(), "{absent}: {status}");
        }
        assert_eq!(status["dataSolicitacao"], "2026-01-02T03:04:05.678Z");
        assert_eq!(status["status"], "Analise");
    }
}
