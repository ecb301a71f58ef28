//! The HTTP surface: routes, OpenAPI schema, and JSON errors for everything that can go wrong.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use poem::endpoint::make_sync;
use poem::error::ReadBodyError;
use poem::http::StatusCode;
use poem::web::Html;
use poem::{get, Endpoint, EndpointExt, IntoResponse, Response, Route};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, OpenApiService};
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use shared::events::{Order, StatusEvent};
use shared::validation::{self, FieldError};
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

/// `usuario` and `produto`: no control character, and at least one character that is neither
/// white space nor control (the API trims the text, and refuses it empty). The white space is
/// Rust's `char::is_whitespace`, spelled out so every regex dialect reads it alike.
const TEXT_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";

/// `valor` as a string: a plain decimal, no sign, exponent, leading zero or white space, at
/// most 2 decimals, from 0.01 to 1000000000 (`body::parse_new_order` accepts exactly these).
pub const VALOR_PATTERN: &str =
    r"^([1-9][0-9]{0,8}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?)|1000000000(\.00?)?)$";

/// The documented shape of the `POST /pedidos` body. Written by hand because `valor` is one
/// of two types; `additionalProperties: false` is added to the document by [`documents`].
fn pedido_novo_schema() -> MetaSchema {
    fn inline(schema: MetaSchema) -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(schema))
    }
    let text = |description| MetaSchema {
        description: Some(description),
        min_length: Some(1),
        max_length: Some(validation::MAX_TEXT_CHARS),
        pattern: Some(TEXT_PATTERN.into()),
        ..MetaSchema::new("string")
    };
    let max_valor = validation::MAX_VALOR
        .to_f64()
        .expect("MAX_VALOR fits an f64");
    MetaSchema {
        description: Some("An order to place. No other field is accepted."),
        required: vec!["usuario", "produto", "quantidade", "valor"],
        properties: vec![
            ("usuario", inline(text("Customer name (1–100 characters)."))),
            ("produto", inline(text("Product name (1–100 characters)."))),
            (
                "quantidade",
                inline(MetaSchema {
                    description: Some("How many units."),
                    minimum: Some(1.0),
                    maximum: Some(validation::MAX_QUANTIDADE.into()),
                    ..MetaSchema::new_with_format("integer", "int32")
                }),
            ),
            (
                "valor",
                inline(MetaSchema {
                    description: Some(
                        "Unit price, from 0.01 to 1000000000 with at most 2 decimal places: a JSON \
                         number (`19.9`) or a decimal string (`\"19.90\"`). Kept exact, never \
                         rounded through a binary float.",
                    ),
                    one_of: vec![
                        inline(MetaSchema {
                            minimum: Some(0.01),
                            maximum: Some(max_valor),
                            multiple_of: Some(0.01),
                            ..MetaSchema::new("number")
                        }),
                        inline(MetaSchema {
                            pattern: Some(VALOR_PATTERN.into()),
                            ..MetaSchema::new("string")
                        }),
                    ],
                    ..MetaSchema::ANY
                }),
            ),
        ],
        example: Some(serde_json::json!({
            "usuario": "ana", "produto": "livro", "quantidade": 2, "valor": 19.9
        })),
        ..MetaSchema::new("object")
    }
}

/// The parsed `POST /pedidos` body: the field-by-field verdict of [`parse_new_order`], so a
/// rejection can name the field and the rule (poem-openapi's own errors cannot).
pub struct PedidoNovo(Result<NewOrder, FieldError>);

impl Type for PedidoNovo {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "PedidoNovo".into()
    }
    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }
    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| pedido_novo_schema());
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

/// The `{id}` of `/pedidos/{id}`: documented as a UUID, checked by the handler so that a bad
/// one gets a 400 naming `id` (poem-openapi's own error would name it `param0`).
pub struct PedidoId(Option<Uuid>);

impl Type for PedidoId {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        Uuid::name()
    }
    fn schema_ref() -> MetaSchemaRef {
        Uuid::schema_ref()
    }
    fn register(registry: &mut Registry) {
        Uuid::register(registry)
    }
    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }
    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromParameter for PedidoId {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(Uuid::parse_str(value).ok()))
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

// 400, 408, 413 and 415 are raised before the handler runs and answered by `json_error`; they are
// listed here so the OpenAPI document tells clients about them.
#[allow(dead_code)]
#[derive(ApiResponse)]
enum CreateResponse {
    /// Accepted: the order and its `Analise` event are on the broker.
    #[oai(status = 202)]
    Accepted(Json<Pedido>, #[oai(header = "Location")] String),
    /// Malformed JSON (or a malformed chunked body).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
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
        let order = Order::new(new.usuario, new.produto, new.quantidade, new.valor);
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
    async fn get(&self, id: Path<PedidoId>) -> GetResponse {
        let Some(id) = id.0 .0 else {
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
        #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
        offset: Query<Option<u64>>,
        /// Page size, 1–200 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<Option<u64>>,
    ) -> ListResponse {
        let offset = offset.0.unwrap_or(0);
        let limit = limit.0.unwrap_or(20);
        // Checked by the validator above already (a 400 from `json_error`); kept for clarity.
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
pub fn app(api: PedidosApi, max_body_bytes: usize, body_timeout: Duration) -> impl Endpoint {
    // No `servers` entry: Swagger UI then calls whatever origin it was loaded from.
    let service = OpenApiService::new(api, "pedidos", env!("CARGO_PKG_VERSION"))
        .description("Orders in, verdicts out: the HTTP entry of the pedidos Kafka mesh.");
    let (spec, docs) = documents(&service);
    let allowed = Arc::new(AllowedMethods::from_spec(&spec));
    let spec = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    Route::new()
        .nest("/", service)
        .at("/docs", get(make_sync(move |_| Html(docs.clone()))))
        .at(
            "/openapi.json",
            get(make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(spec.clone())
            })),
        )
        .around(move |ep, req| read_body(ep, req, max_body_bytes, body_timeout))
        .catch_all_error(|e| async move { json_error(e) })
        .around(move |ep, req| allow_header(ep, req, allowed.clone()))
}

/// The OpenAPI document and the Swagger UI page showing it, with what poem-openapi cannot
/// express added: `PedidoNovo` forbids other properties (the parser refuses unknown fields,
/// and the document must say so, or clients and Schemathesis take extras for valid).
fn documents(service: &OpenApiService<PedidosApi, ()>) -> (Value, String) {
    let generated = service.spec();
    let mut spec: Value = serde_json::from_str(&generated).expect("poem-openapi writes JSON");
    let body = &mut spec["components"]["schemas"]["PedidoNovo"];
    assert!(body.is_object(), "the PedidoNovo schema is in the document");
    body["additionalProperties"] = Value::Bool(false);
    let patched = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    // The page embeds the document as it was generated: swap in the completed one.
    let page = service.swagger_ui_html();
    assert!(page.contains(&generated), "Swagger UI embeds the document");
    (spec, page.replacen(&generated, &patched, 1))
}

/// Which methods each documented path answers, for the `Allow` header of a 405.
struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    fn from_spec(spec: &Value) -> Self {
        let mut routes = vec![
            (segments("/docs"), "GET, HEAD".to_string()),
            (segments("/openapi.json"), "GET, HEAD".to_string()),
        ];
        for (path, operations) in spec["paths"].as_object().into_iter().flatten() {
            let mut methods: Vec<String> = operations
                .as_object()
                .into_iter()
                .flatten()
                .map(|(method, _)| method.to_uppercase())
                .collect();
            if methods.iter().any(|m| m == "GET") {
                methods.push("HEAD".into()); // poem answers HEAD wherever GET is routed
            }
            routes.push((segments(path), methods.join(", ")));
        }
        Self(routes)
    }

    /// The methods of the route matching `path` (a `{parameter}` matches any one segment).
    fn of(&self, path: &str) -> Option<&str> {
        let wanted = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template.iter().zip(&wanted).all(|(t, w)| {
                        (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_string)
        .collect()
}

/// A 405 says which methods the resource does answer (RFC 9110 requires `Allow`).
async fn allow_header<E: Endpoint>(
    ep: Arc<E>,
    req: poem::Request,
    allowed: Arc<AllowedMethods>,
) -> poem::Result<Response> {
    let path = req.uri().path().to_string();
    let mut response = ep.call(req).await?.into_response();
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        if let Some(methods) = allowed.of(&path) {
            if let Ok(value) = poem::http::HeaderValue::from_str(methods) {
                response
                    .headers_mut()
                    .insert(poem::http::header::ALLOW, value);
            }
        }
    }
    Ok(response)
}

/// Reads the whole body before any handler runs, within `max` bytes and `timeout`: 413 when
/// it is larger, whether announced by `Content-Length` or streamed chunked (poem's `SizeLimit`
/// only looks at the header, and demands it even on GET); 408 when the client is too slow;
/// 400 when the chunked framing is broken.
async fn read_body<E: Endpoint>(
    ep: Arc<E>,
    mut req: poem::Request,
    max: usize,
    timeout: Duration,
) -> poem::Result<Response> {
    let announced = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    let body = req.take_body();
    let bytes = match tokio::time::timeout(timeout, body.into_bytes_limit(max)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(ReadBodyError::PayloadTooLarge)) => {
            return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Ok(Err(e)) => {
            return Err(poem::Error::from_string(
                e.to_string(),
                StatusCode::BAD_REQUEST,
            ))
        }
        Err(_) => return Err(poem::Error::from_status(StatusCode::REQUEST_TIMEOUT)),
    };
    req.set_body(bytes);
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
    } else if status == StatusCode::REQUEST_TIMEOUT {
        ErrorBody::new("request_timeout", "the request body did not arrive in time")
            .field("body", "must arrive within the body timeout")
    } else if status == StatusCode::BAD_REQUEST {
        ErrorBody::new(
            "malformed_body",
            format!("the request body is malformed: {e}"),
        )
        .field("body", "must be well-formed")
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
