//! The routes: each handler, and every status it can answer (as the OpenAPI document lists them).
//! Doc comments on handlers and response variants are what clients read in the document.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{BoxStream, StreamExt as _};
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, OpenApi};
use shared::events::Order;
use uuid::Uuid;

use super::dto::{AcceptedOrder, Health, HistoryEvent, OrderPage, OrderStatus};
use super::error::ErrorBody;
use super::extract::{OrderId, OrderRequestBody};
use super::stream;
use crate::auth::Caller;
use crate::orders::{idempotency, Orders, PlaceError};
use crate::view::{StoreError, ViewHandle};

/// The longest `?wait=` a GET may ask for, in seconds.
pub(crate) const MAX_WAIT_SECS: u64 = 30;

// 400, 401, 408, 413 and 415 are raised before the handler runs and answered by `json_error`;
// they are listed here so the OpenAPI document tells clients about them.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum CreateResponse {
    /// Accepted: the order and its `Analise` event are on the broker. A retry with the same
    /// `Idempotency-Key` and body gets the same answer, and places nothing.
    #[oai(status = 202)]
    Accepted(Json<AcceptedOrder>, #[oai(header = "Location")] String),
    /// Malformed JSON (or a malformed chunked body), or a malformed `Idempotency-Key`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// A request with this `Idempotency-Key` is still being answered: retry shortly.
    #[oai(status = 409)]
    InProgress(Json<ErrorBody>),
    /// No valid bearer token (only under `api.auth = "jwt"`); `WWW-Authenticate` says why.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `usuario` is not the token's subject, and the token has no operator role.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Body larger than `api.max_body_bytes`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Content type is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// The body did not arrive within the server's body timeout (`api.body_timeout_ms`,
    /// 10 s by default).
    #[oai(status = 408)]
    RequestTimeout(Json<ErrorBody>),
    /// A field is missing or breaks a rule; `field` and `rule` say which. Also an
    /// `Idempotency-Key` already used for another order, or longer ago than
    /// `api.idempotency_ttl_secs`.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// The broker did not acknowledge the order in time, or the order store cannot write (a
    /// full disk: `store_unavailable`); it was not accepted (a retry with the same
    /// `Idempotency-Key` is safe either way).
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

// The 401 is raised by the authentication gate before the handler runs, listed so the document
// tells clients about it.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum GetResponse {
    #[oai(status = 200)]
    Ok(Json<OrderStatus>),
    /// The id is not a UUID.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (only under `api.auth = "jwt"`); `WWW-Authenticate` says why.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No order with this id is known to this caller: under `api.auth = "jwt"` another
    /// customer's order is not found either, so ids cannot be probed.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The order store cannot be read right now.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

// The 401 is raised by the authentication gate before the handler runs, listed so the document
// tells clients about it.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum EventsResponse {
    /// Server-sent events, one per status change (`id` is its `eventoId`, `event` is
    /// `status`): the history so far, then each change as it happens; the stream ends after
    /// the verdict. A reconnecting client sends `Last-Event-ID` and gets only what followed.
    #[oai(status = 200)]
    Stream(EventStream<BoxStream<'static, HistoryEvent>>),
    /// The id is not a UUID.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (only under `api.auth = "jwt"`); `WWW-Authenticate` says why.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// No order with this id is known to this caller.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The order store cannot be read right now.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

// The 400 and 401 are raised before the handler runs (answered by `json_error`), listed so the
// document tells clients about them.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<OrderPage>),
    /// `limit` or `offset` out of range.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No valid bearer token (only under `api.auth = "jwt"`); `WWW-Authenticate` says why.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// `usuario` names another customer, and the token has no operator role.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The order store cannot be read right now.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Health>),
}

/// The routes. Stateless: each handler takes the [`State`] it needs as request data, so the
/// OpenAPI document renders without a broker or a store.
pub struct OrdersApi;

/// What the handlers call: placing orders and reading the view.
pub struct State {
    pub orders: Orders,
    pub view: ViewHandle,
}

/// A 503 naming the store's failure.
fn store_error(e: &StoreError) -> ErrorBody {
    tracing::warn!(error = %e, "order store unavailable");
    ErrorBody::new(
        "store_unavailable",
        format!("the order store cannot answer right now, try again later: {e}"),
    )
}

fn not_found(id: Uuid) -> ErrorBody {
    ErrorBody::new("not_found", format!("no order with id {id}"))
}

fn invalid_id() -> ErrorBody {
    ErrorBody::new("invalid_id", "the order id must be a UUID").field("id", "must be a UUID")
}

/// An error naming the `Idempotency-Key` header and the rule it breaks.
fn key_error(kind: &str, rule: &str) -> ErrorBody {
    ErrorBody::new(kind, format!("{}: {rule}", idempotency::HEADER))
        .field(idempotency::HEADER, rule)
}

/// A 400 for a malformed `Idempotency-Key`.
fn bad_key(rule: &str) -> CreateResponse {
    CreateResponse::BadRequest(Json(key_error("invalid_idempotency_key", rule)))
}

fn accepted(order: &Order) -> CreateResponse {
    let location = format!("/pedidos/{}", order.id);
    CreateResponse::Accepted(Json(AcceptedOrder::new(order)), location)
}

/// The answer to an order that was not placed.
fn not_placed(e: PlaceError) -> CreateResponse {
    let message = e.to_string();
    match e {
        PlaceError::Forbidden => CreateResponse::Forbidden(Json(
            ErrorBody::new("forbidden", message)
                .field("usuario", "must equal the token's subject (`sub`)"),
        )),
        PlaceError::KeyInProgress => CreateResponse::InProgress(Json(
            ErrorBody::new("idempotency_key_in_progress", message).field(
                idempotency::HEADER,
                "must not be in use by a request in progress",
            ),
        )),
        PlaceError::KeyReused | PlaceError::KeyExpired => {
            CreateResponse::Invalid(Json(key_error("idempotency_key_reused", &message)))
        }
        PlaceError::Store(e) => CreateResponse::Unavailable(Json(store_error(&e))),
        PlaceError::NotWritable(e) => {
            tracing::warn!(error = %e, "order not placed: the order store cannot write");
            CreateResponse::Unavailable(Json(ErrorBody::new("store_unavailable", message)))
        }
        PlaceError::KeyUnchecked(_) | PlaceError::Broker(_) => {
            CreateResponse::Unavailable(Json(ErrorBody::new("broker_unavailable", message)))
        }
    }
}

#[OpenApi]
impl OrdersApi {
    /// Place an order.
    ///
    /// Validates it, assigns `id` and `dataSolicitacao`, publishes it to `Pedidos` and an
    /// `Analise` event to `Notificacoes`, and answers only once the broker acknowledged both.
    ///
    /// With an `Idempotency-Key`, a retry (same customer, same key, same body) gets the
    /// original answer and places nothing, on any instance and after a restart.
    #[oai(path = "/pedidos", method = "post")]
    async fn create(
        &self,
        state: Data<&Arc<State>>,
        caller: Data<&Caller>,
        body: Json<OrderRequestBody>,
        /// Makes a retry safe: 1–255 characters without control characters, unique per order
        /// of a customer (a UUID does). Kept `api.idempotency_ttl_secs` (a day by default).
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        http: &poem::Request,
    ) -> CreateResponse {
        // poem-openapi reads a value that is not text as no header at all: that client would
        // believe its retry safe.
        let unreadable =
            idempotency_key.0.is_none() && http.headers().contains_key(idempotency::HEADER);
        let key = match idempotency_key.0.as_deref().map(idempotency::check_key) {
            None if unreadable => return bad_key("must be text (visible ASCII or UTF-8)"),
            None => None,
            Some(Ok(key)) => Some(key),
            Some(Err(rule)) => return bad_key(rule),
        };
        let request = match body.0 .0 {
            Ok(request) => request,
            Err(e) => return CreateResponse::Invalid(Json(ErrorBody::from_field_error(&e))),
        };
        let trace = http
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_bytes())));
        match state.orders.place(&caller, request, key, trace).await {
            Ok(order) => accepted(&order),
            Err(e) => not_placed(e),
        }
    }

    /// An order's current status and history.
    ///
    /// With `wait`, a long-poll: the answer comes as soon as the order has its verdict, or
    /// after `wait` seconds with the status it has then.
    #[oai(path = "/pedidos/:id", method = "get")]
    async fn get(
        &self,
        state: Data<&Arc<State>>,
        caller: Data<&Caller>,
        id: Path<OrderId>,
        /// Seconds to wait for the verdict, 0–30 (default 0: answer at once).
        #[oai(validator(minimum(value = "0"), maximum(value = "30")))]
        wait: Query<Option<u64>>,
    ) -> GetResponse {
        let Some(id) = id.0 .0 else {
            return GetResponse::BadRequest(Json(invalid_id()));
        };
        let wait = wait.0.map(|s| Duration::from_secs(s.min(MAX_WAIT_SECS)));
        match state.view.order_for(&caller, id, wait).await {
            Ok(Some(view)) => GetResponse::Ok(Json((&view).into())),
            Ok(None) => GetResponse::NotFound(Json(not_found(id))),
            Err(e) => GetResponse::Unavailable(Json(store_error(&e))),
        }
    }

    /// An order's status changes, live (server-sent events).
    ///
    /// Sends the history so far, then each change as it happens, and ends after the verdict.
    /// `curl -N http://127.0.0.1:8000/pedidos/<id>/eventos`
    #[oai(path = "/pedidos/:id/eventos", method = "get")]
    async fn events(
        &self,
        state: Data<&Arc<State>>,
        caller: Data<&Caller>,
        id: Path<OrderId>,
        /// The `id` of the last event received, when reconnecting: only later ones are sent.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<String>>,
    ) -> EventsResponse {
        let Some(id) = id.0 .0 else {
            return EventsResponse::BadRequest(Json(invalid_id()));
        };
        let view = match state.view.order_for(&caller, id, None).await {
            Ok(Some(view)) => view,
            Ok(None) => return EventsResponse::NotFound(Json(not_found(id))),
            Err(e) => return EventsResponse::Unavailable(Json(store_error(&e))),
        };
        let after = last_event_id
            .0
            .as_deref()
            .and_then(|s| Uuid::try_parse(s.trim()).ok());
        let events = state
            .view
            .status_changes(view, after)
            .map(|h| HistoryEvent::from(&h));
        EventsResponse::Stream(
            EventStream::new(events.boxed())
                .keep_alive(stream::KEEP_ALIVE)
                .to_event(stream::to_sse),
        )
    }

    /// Recent orders, newest first: every customer's, or one's.
    ///
    /// Under `api.auth = "jwt"` a customer sees only their own orders; an operator sees
    /// everyone's and may filter by `usuario`.
    #[oai(path = "/pedidos", method = "get")]
    async fn list(
        &self,
        state: Data<&Arc<State>>,
        caller: Data<&Caller>,
        /// Only this customer's orders.
        usuario: Query<Option<String>>,
        /// How many to skip (default 0).
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
        /// Page size, 1–200 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ListResponse {
        let offset = offset.0.unwrap_or(0);
        let limit = limit.0.unwrap_or(20);
        let usuario = match (caller.own_orders_only(), usuario.0) {
            (Some(own), Some(asked)) if asked != own => {
                return ListResponse::Forbidden(Json(
                    ErrorBody::new("forbidden", "a customer may only list their own orders")
                        .field("usuario", "must be the token's subject (`sub`) or absent"),
                ))
            }
            (Some(own), _) => Some(own.to_string()),
            (None, asked) => asked,
        };
        let (total, page) = match state.view.page(usuario.as_deref(), offset, limit).await {
            Ok(found) => found,
            Err(e) => return ListResponse::Unavailable(Json(store_error(&e))),
        };
        let pedidos = page.iter().map(OrderStatus::from).collect();
        ListResponse::Ok(Json(OrderPage {
            total,
            offset,
            limit,
            pedidos,
        }))
    }

    /// Liveness.
    #[oai(path = "/health", method = "get")]
    async fn health(&self, state: Data<&Arc<State>>) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
            pedidos: state.view.count().await.ok(),
        }))
    }
}
