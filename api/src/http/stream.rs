//! `GET /pedidos/{id}/eventos`: the view's status changes of an order as server-sent events.

use std::time::Duration;

use poem::web::sse::Event;
use poem_openapi::types::ToJSON as _;

use super::dto::HistoryEvent;

/// A comment line this often keeps proxies from closing a quiet stream.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One status change as an SSE event: `event: status`, `id: <eventoId>`, the JSON as data.
pub(crate) fn to_sse(event: HistoryEvent) -> Event {
    let id = event.evento_id().to_string();
    Event::message(event.to_json_string())
        .event_type("status")
        .id(id)
}
