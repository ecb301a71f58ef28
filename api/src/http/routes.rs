//! The routes: each handler, and every status it can answer (as the OpenAPI document lists them).
//! Doc comments on handlers and response variants are what clients read in the document.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;
use futures::stream::BoxStream;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::{EventStream, Json};
use poem_openapi::{ApiResponse, OpenApi};
use shared::config::ApiConfig;
use shared::events::{Order, StatusEvent};
use uuid::Uuid;

use super::dto::{AcceptedOrder, Health, HistoryEvent, OrderPage, OrderStatus};
use super::error::ErrorBody;
use super::extract::{OrderId, OrderRequestBody};
use super::request::OrderRequest;
use super::stream;
use crate::auth::Caller;
use crate::idempotency::{self, Replay};
use crate::orders::OrderView;
use crate::publisher::Publisher;
use crate::read_model::ViewHandle;
use crate::store::{Changes, StoreError};
use shared::telemetry::trace_context;

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
    /// The broker did not acknowledge the order in time; it was not accepted (a retry with the
    /// same `Idempotency-Key` is safe either way).
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

pub struct OrdersApi {
    publisher: Publisher,
    view: ViewHandle,
    /// How long a keyed request may wait for the view to catch up with `Pedidos`, a POST for
    /// the store's writer to take its order, and a read for this instance's own write.
    catch_up_timeout: Duration,
    idempotency_ttl: Duration,
    /// The order ids of keyed requests being answered right now, on this instance.
    keys_in_flight: Mutex<HashSet<Uuid>>,
}

impl OrdersApi {
    pub fn new(publisher: Publisher, view: ViewHandle, api: &ApiConfig) -> Self {
        Self {
            publisher,
            view,
            catch_up_timeout: Duration::from_millis(api.publish_timeout_ms),
            idempotency_ttl: api.idempotency_ttl(),
            keys_in_flight: Mutex::default(),
        }
    }

    /// The answer to a keyed request whose key already stands for an order, if it does.
    async fn replayed(&self, id: Uuid, request: &OrderRequest) -> Option<CreateResponse> {
        let view = match self.view.order(id, self.catch_up_timeout).await {
            Ok(view) => view?,
            Err(e) => return Some(CreateResponse::Unavailable(Json(store_error(&e)))),
        };
        let original = view.order.as_ref()?;
        let now = Utc::now();
        let refused =
            |rule: &str| CreateResponse::Invalid(Json(key_error("idempotency_key_reused", rule)));
        Some(
            match idempotency::replay(original, request, now, self.idempotency_ttl) {
                Replay::Same => accepted(original),
                Replay::Conflict => {
                    refused("was used for another order: a retry must repeat the same body")
                }
                Replay::Expired => {
                    refused("was used longer ago than api.idempotency_ttl_secs: send a new key")
                }
            },
        )
    }

    /// For a keyed request: the answer when its key already stands for an order, or — once no
    /// instance can have published one under it — the claim to publish it here.
    async fn claim_key(
        &self,
        id: Uuid,
        request: &OrderRequest,
    ) -> Result<KeyClaim<'_>, CreateResponse> {
        if let Some(answer) = self.replayed(id, request).await {
            return Err(answer);
        }
        let claim =
            KeyClaim::take(&self.keys_in_flight, id).ok_or_else(|| {
                CreateResponse::InProgress(Json(
                ErrorBody::new(
                    "idempotency_key_in_progress",
                    "a request with this Idempotency-Key is still being answered: retry shortly",
                )
                .field(idempotency::HEADER, "must not be in use by a request in progress"),
            ))
            })?;
        // Another instance, or this one before a restart, may have published it: wait until the
        // store holds everything on Pedidos up to now.
        if let Err(e) = self.view.catch_up.wait(self.catch_up_timeout).await {
            tracing::warn!(pedido = %id, error = %e, "cannot check an Idempotency-Key");
            return Err(CreateResponse::Unavailable(Json(ErrorBody::new(
                "broker_unavailable",
                format!("cannot tell whether this Idempotency-Key was used, try again later: {e}"),
            ))));
        }
        match self.replayed(id, request).await {
            Some(answer) => Err(answer),
            None => Ok(claim),
        }
    }

    /// The order's view if this caller may see it, waiting up to `wait` for its verdict.
    async fn view_of(
        &self,
        caller: &Caller,
        id: Uuid,
        wait: Option<Duration>,
    ) -> Result<Option<OrderView>, StoreError> {
        let Some(wait) = wait.filter(|w| !w.is_zero()) else {
            return Ok(self
                .view
                .order(id, self.catch_up_timeout)
                .await?
                .filter(|v| caller.may_act_for(&v.usuario)));
        };
        let deadline = tokio::time::Instant::now() + wait;
        let watch = self.view.live.watch(id);
        loop {
            let changed = watch.armed();
            let view = self.view.order(id, self.catch_up_timeout).await?;
            let view = view.filter(|v| caller.may_act_for(&v.usuario));
            // An unknown order is not waited for: the instance that took it has written it, or
            // is this one and `order` waited for it.
            if view.as_ref().is_none_or(OrderView::is_final) {
                return Ok(view);
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return Ok(view);
            }
        }
    }
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

/// An order id this instance is placing; released when the request ends, however it ends.
struct KeyClaim<'a> {
    set: &'a Mutex<HashSet<Uuid>>,
    id: Uuid,
}

impl<'a> KeyClaim<'a> {
    fn take(set: &'a Mutex<HashSet<Uuid>>, id: Uuid) -> Option<Self> {
        set.lock().unwrap().insert(id).then_some(Self { set, id })
    }
}

impl Drop for KeyClaim<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap().remove(&self.id);
    }
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
        if !caller.may_act_for(&request.usuario) {
            return CreateResponse::Forbidden(Json(
                ErrorBody::new(
                    "forbidden",
                    "an order may only be placed for the token's own subject",
                )
                .field("usuario", "must equal the token's subject (`sub`)"),
            ));
        }
        // Held until the answer is out: the key is this request's meanwhile.
        let claim = match key {
            None => None,
            Some(key) => {
                let id = idempotency::order_id(&request.usuario, key);
                match self.claim_key(id, &request).await {
                    Ok(claim) => Some(claim),
                    Err(answer) => return answer,
                }
            }
        };
        let mut order = Order::new(
            request.usuario,
            request.produto,
            request.quantidade,
            request.valor,
        );
        if let Some(claim) = &claim {
            order.id = claim.id;
        }
        let received = StatusEvent::received(&order);
        // The order's span: continues the caller's trace (`traceparent`) or starts one; the
        // records carry it on, and the log lines below name it.
        let span =
            tracing::info_span!("order", trace_id = tracing::field::Empty, pedido = %order.id);
        let headers = http.headers().iter();
        let trace = trace_context::continue_trace(
            &span,
            headers.map(|(k, v)| (k.as_str(), Some(v.as_bytes()))),
        );
        let published = self.publisher.publish(&order, &received, &trace).await;
        let stored = match &published {
            // A GET that follows the 202 finds the order, on any instance sharing the store: in
            // a shared store before the answer; in the embedded one, the GET waits for the
            // commit (see `store::writer`). The order is on the broker whatever happens here,
            // so a failure still answers 202; the reader writes it later.
            Ok(()) => {
                let mut changes = Changes::default();
                changes.order(&order);
                changes.status(&received);
                self.view.writer.post(changes, self.catch_up_timeout).await
            }
            Err(_) => Ok(()),
        };
        // Entered only now: no await follows while it is held.
        let _in_span = span.enter();
        match published {
            Ok(()) => {
                if let Err(e) = stored {
                    tracing::warn!(pedido = %order.id, error = %e, "accepted order not in the store yet");
                }
                tracing::info!(pedido = %order.id, usuario = %order.usuario, "order accepted");
                super::metrics::ORDERS_ACCEPTED.inc();
                accepted(&order)
            }
            Err(e) => {
                tracing::warn!(pedido = %order.id, error = %e, "order not accepted: broker unavailable");
                CreateResponse::Unavailable(Json(ErrorBody::new(
                    "broker_unavailable",
                    format!("the order was not accepted, try again later: {e}"),
                )))
            }
        }
    }

    /// An order's current status and history.
    ///
    /// With `wait`, a long-poll: the answer comes as soon as the order has its verdict, or
    /// after `wait` seconds with the status it has then.
    #[oai(path = "/pedidos/:id", method = "get")]
    async fn get(
        &self,
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
        match self.view_of(&caller, id, wait).await {
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
        caller: Data<&Caller>,
        id: Path<OrderId>,
        /// The `id` of the last event received, when reconnecting: only later ones are sent.
        #[oai(name = "Last-Event-ID")]
        last_event_id: Header<Option<String>>,
    ) -> EventsResponse {
        let Some(id) = id.0 .0 else {
            return EventsResponse::BadRequest(Json(invalid_id()));
        };
        let view = match self.view_of(&caller, id, None).await {
            Ok(Some(view)) => view,
            Ok(None) => return EventsResponse::NotFound(Json(not_found(id))),
            Err(e) => return EventsResponse::Unavailable(Json(store_error(&e))),
        };
        let after = last_event_id
            .0
            .as_deref()
            .and_then(|s| Uuid::try_parse(s.trim()).ok());
        let events = stream::status_changes(self.view.clone(), view, after);
        EventsResponse::Stream(
            EventStream::new(events)
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
        let (total, page) = match self
            .view
            .page(usuario.as_deref(), offset, limit, self.catch_up_timeout)
            .await
        {
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
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Health {
            status: "ok".into(),
            pedidos: self.view.store.count().await.ok(),
        }))
    }
}
