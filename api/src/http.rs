//! The HTTP surface: routes, OpenAPI schema, and JSON errors for everything that can go wrong.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, SubsecRound, Utc};
use poem::http::StatusCode;
use poem::{Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService};
use serde_json::Value;
use shared::events::{Order, StatusEvent};
use shared::validation::FieldError;
use uuid::Uuid;

use crate::body::{parse_new_order, NewOrder};
use crate::orders::{OrderBook, OrderView};
use crate::publisher::Publisher;

/// Every error the API answers has this body.
#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// Machine-readable kind: `validation_failed`, `malformed_json`, `unsupported_media_type`,
    /// `payload_too_large`, `not_found`, `broker_unavailable`, ...
    pub error: String,
    /// A sentence for humans.
    pub message: String,
    /// The offending field, when there is one (`body` for the body as a whole).
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
    /// The rule the field broke.
    #[oai(skip_serializing_if_is_none)]
    pub rule: Option<String>,
}

impl ErrorBody {
    fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
            field: None,
            rule: None,
        }
    }
    fn field(mut self, field: &str, rule: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self.rule = Some(rule.into());
        self
    }
    fn from_field_error(e: &FieldError) -> Self {
        Self::new("validation_failed", e.to_string()).field(e.field, e.rule.clone())
    }
}

/// Request body of `POST /pedidos` (documentation of the accepted shape).
#[derive(Debug, Object)]
#[oai(rename = "PedidoNovo")]
struct PedidoNovoSchema {
    /// Customer name (1–100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    usuario: String,
    /// Product name (1–100 characters).
    #[oai(validator(min_length = 1, max_length = 100))]
    produto: String,
    /// How many units (at least 1).
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    quantidade: u32,
    /// Unit price, greater than 0 with at most 2 decimal places. A JSON number (`19.9`) or a
    /// decimal string (`"19.90"`); it is kept exact, never rounded through a binary float.
    #[oai(validator(minimum(value = "0.01"), maximum(value = "1000000000")))]
    valor: f64,
}

/// The parsed `POST /pedidos` body: the field-by-field verdict of [`parse_new_order`], so a
/// rejection can name the field and the rule (poem-openapi's own errors cannot).
pub struct PedidoNovo(Result<NewOrder, FieldError>);

impl Type for PedidoNovo {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        PedidoNovoSchema::name()
    }
    fn schema_ref() -> MetaSchemaRef {
        PedidoNovoSchema::schema_ref()
    }
    fn register(registry: &mut Registry) {
        PedidoNovoSchema::register(registry)
    }
    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }
    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for PedidoNovo {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Ok(Self(parse_new_order(&value.unwrap_or_default())))
    }
}

/// An accepted order.
#[derive(Debug, Object)]
struct Pedido {
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

/// Timestamps exactly as the events on the topics spell them (`...Z`).
fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

impl Pedido {
    fn new(order: &Order, status: &str) -> Self {
        Self {
            id: order.id,
            usuario: order.usuario.clone(),
            produto: order.produto.clone(),
            quantidade: order.quantidade,
            valor: order.valor.to_string(),
            data_solicitacao: timestamp(order.data_solicitacao),
            status: status.to_string(),
        }
    }
}

#[derive(Debug, Object)]
struct Evento {
    #[oai(rename = "eventoId")]
    evento_id: Uuid,
    status: String,
    #[oai(skip_serializing_if_is_none)]
    motivo: Option<String>,
    /// RFC 3339, UTC.
    #[oai(rename = "dataEvento")]
    data_evento: String,
}

/// An order's current status and the history that led to it.
#[derive(Debug, Object)]
struct PedidoStatus {
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
    historico: Vec<Evento>,
}

impl From<&OrderView> for PedidoStatus {
    fn from(v: &OrderView) -> Self {
        Self {
            id: v.id,
            usuario: v.usuario.clone(),
            status: v.status().to_string(),
            motivo: v.motivo().map(str::to_string),
            produto: v.pedido.as_ref().map(|p| p.produto.clone()),
            quantidade: v.pedido.as_ref().map(|p| p.quantidade),
            valor: v.pedido.as_ref().map(|p| p.valor.to_string()),
            data_solicitacao: v.data_solicitacao().map(timestamp),
            historico: v
                .historico
                .iter()
                .map(|h| Evento {
                    evento_id: h.evento_id,
                    status: h.status.to_string(),
                    motivo: h.motivo.clone(),
                    data_evento: timestamp(h.data_evento),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Object)]
struct PaginaPedidos {
    /// Orders known to this API process.
    total: u64,
    offset: u64,
    limit: u64,
    /// Newest first.
    pedidos: Vec<PedidoStatus>,
}

#[derive(Debug, Object)]
struct Health {
    status: String,
    /// Orders in the read model.
    pedidos: u64,
}

// 400, 413 and 415 are raised before the handler runs and answered by `json_error`; they are
// listed here so the OpenAPI document tells clients about them.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum CreateResponse {
    /// Accepted: the order and its `Analise` event are on the broker.
    #[oai(status = 202)]
    Accepted(Json<Pedido>, #[oai(header = "Location")] String),
    /// Malformed JSON.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Body larger than `api.max_body_bytes`.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Content type is not `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// A field is missing or breaks a rule; `field` and `rule` say which.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// The broker did not acknowledge the order in time; it was not accepted.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum GetResponse {
    #[oai(status = 200)]
    Ok(Json<PedidoStatus>),
    /// The id is not a UUID.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// No order with this id is known.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum ListResponse {
    #[oai(status = 200)]
    Ok(Json<PaginaPedidos>),
    /// `limit` or `offset` out of range.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
}

#[derive(ApiResponse)]
enum HealthResponse {
    #[oai(status = 200)]
    Ok(Json<Health>),
}

pub struct PedidosApi {
    pub publisher: Publisher,
    pub book: Arc<RwLock<OrderBook>>,
}

#[OpenApi]
impl PedidosApi {
    /// Place an order.
    ///
    /// Validates it, assigns `id` and `dataSolicitacao`, publishes it to `Pedidos` and an
    /// `Analise` event to `Notificacoes`, and answers only once the broker acknowledged both.
    #[oai(path = "/pedidos", method = "post")]
    async fn create(&self, body: Json<PedidoNovo>) -> CreateResponse {
        let new = match body.0 .0 {
            Ok(new) => new,
            Err(e) => return CreateResponse::Invalid(Json(ErrorBody::from_field_error(&e))),
        };
        let order = Order {
            id: Uuid::new_v4(),
            usuario: new.usuario,
            produto: new.produto,
            quantidade: new.quantidade,
            valor: new.valor,
            // Millisecond precision: what every consumer (and Kafka's own timestamps) can keep.
            data_solicitacao: Utc::now().trunc_subsecs(3),
        };
        let received = StatusEvent::received(&order);
        match self.publisher.publish(&order, &received).await {
            Ok(()) => {
                {
                    // Our own write is visible to GET at once, before the reader catches up.
                    let mut book = self.book.write().unwrap();
                    book.apply_order(&order);
                    book.apply_status(&received);
                }
                tracing::info!(pedido = %order.id, usuario = %order.usuario, "order accepted");
                let location = format!("/pedidos/{}", order.id);
                CreateResponse::Accepted(Json(Pedido::new(&order, "Analise")), location)
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
    #[oai(path = "/pedidos/:id", method = "get")]
    async fn get(&self, id: Path<String>) -> GetResponse {
        let Ok(id) = Uuid::parse_str(&id.0) else {
            return GetResponse::BadRequest(Json(
                ErrorBody::new("invalid_id", "the order id must be a UUID")
                    .field("id", "must be a UUID"),
            ));
        };
        match self.book.read().unwrap().get(&id) {
            Some(view) => GetResponse::Ok(Json(view.into())),
            None => GetResponse::NotFound(Json(ErrorBody::new(
                "not_found",
                format!("no order with id {id}"),
            ))),
        }
    }

    /// Recent orders, newest first.
    #[oai(path = "/pedidos", method = "get")]
    async fn list(
        &self,
        /// How many to skip (default 0).
        offset: Query<Option<u64>>,
        /// Page size, 1–200 (default 20).
        limit: Query<Option<u64>>,
    ) -> ListResponse {
        let offset = offset.0.unwrap_or(0);
        let limit = limit.0.unwrap_or(20);
        if !(1..=200).contains(&limit) {
            return ListResponse::BadRequest(Json(
                ErrorBody::new("invalid_parameter", "limit must be between 1 and 200")
                    .field("limit", "must be between 1 and 200"),
            ));
        }
        let book = self.book.read().unwrap();
        let pedidos = book
            .page(
                usize::try_from(offset).unwrap_or(usize::MAX),
                limit as usize,
            )
            .into_iter()
            .map(PedidoStatus::from)
            .collect();
        ListResponse::Ok(Json(PaginaPedidos {
            total: book.len() as u64,
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
            pedidos: self.book.read().unwrap().len() as u64,
        }))
    }
}

/// The whole HTTP application: API, Swagger UI at `/docs`, spec at `/openapi.json`, JSON errors.
pub fn app(api: PedidosApi, max_body_bytes: usize) -> impl Endpoint {
    // No `servers` entry: Swagger UI then calls whatever origin it was loaded from.
    let service = OpenApiService::new(api, "pedidos", env!("CARGO_PKG_VERSION"))
        .description("Orders in, verdicts out: the HTTP entry of the pedidos Kafka mesh.");
    let spec = service.spec_endpoint();
    let docs = service.swagger_ui();
    Route::new()
        .nest("/", service)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .around(move |ep, req| limit_body(ep, req, max_body_bytes))
        .catch_all_error(|e| async move { json_error(e) })
}

/// Rejects bodies over `max` with 413, whether announced by `Content-Length` or streamed
/// chunked (poem's `SizeLimit` only looks at the header, and demands it even on GET).
async fn limit_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: poem::Request,
    max: usize,
) -> poem::Result<Response> {
    let too_large = || poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE);
    let announced = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(n) if n > max as u64 => return Err(too_large()),
        Some(_) => {}
        None => {
            let body = req.take_body();
            let bytes = body.into_bytes_limit(max).await.map_err(|_| too_large())?;
            req.set_body(bytes);
        }
    }
    ep.call(req).await.map(IntoResponse::into_response)
}

/// Maps any error poem or poem-openapi raises before a handler runs into a JSON body.
fn json_error(e: poem::Error) -> Response {
    use poem_openapi::error::{
        ContentTypeError, ParseParamError, ParsePathError, ParseRequestPayloadError,
    };
    let status = e.status();
    let body = if let Some(p) = e.downcast_ref::<ParseRequestPayloadError>() {
        ErrorBody::new(
            "malformed_json",
            format!("the body is not valid JSON: {}", p.reason),
        )
        .field("body", "must be a valid JSON document")
    } else if let Some(c) = e.downcast_ref::<ContentTypeError>() {
        ErrorBody::new("unsupported_media_type", c.to_string())
            .field("content-type", "must be application/json")
    } else if let Some(p) = e.downcast_ref::<ParseParamError>() {
        ErrorBody::new("invalid_parameter", p.to_string()).field(p.name, p.reason.clone())
    } else if let Some(p) = e.downcast_ref::<ParsePathError>() {
        ErrorBody::new("invalid_parameter", p.to_string()).field(p.name, p.reason.clone())
    } else if status == StatusCode::PAYLOAD_TOO_LARGE {
        ErrorBody::new("payload_too_large", "the request body is too large")
            .field("body", "must be at most api.max_body_bytes")
    } else if status == StatusCode::NOT_FOUND {
        ErrorBody::new("not_found", "no such resource")
    } else if status == StatusCode::METHOD_NOT_ALLOWED {
        ErrorBody::new("method_not_allowed", "method not allowed on this resource")
    } else {
        ErrorBody::new(
            status
                .canonical_reason()
                .unwrap_or("error")
                .to_lowercase()
                .replace(' ', "_")
                .as_str(),
            e.to_string(),
        )
    };
    (status, poem::web::Json(body.to_json())).into_response()
}
