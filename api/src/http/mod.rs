//! The HTTP surface, assembled: the routes with their JSON errors, Swagger UI at `/docs` and the
//! document at `/openapi.json`, the Kafka side's AsyncAPI document at `/asyncapi.json`, behind the authentication gate, the body reader and the `Allow`
//! header; `/ready` and `/metrics` (Prometheus) beside them, and the HTTP metrics around all.

mod auth;
mod docs;
mod dto;
mod error;
mod extract;
mod guard;
mod metrics;
mod middleware;
mod paths;
mod routes;
mod schema;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::make_sync;
use poem::web::Html;
use poem::{get, Endpoint, EndpointExt, Response, Route};

pub use self::error::ErrorBody;
pub use self::guard::{GuardedAcceptor, HttpTimeouts};
use self::metrics::HttpMetrics;
use self::middleware::{allow_header, read_body, AllowedMethods};
use self::paths::RouteTemplates;
pub use self::routes::State;
use crate::auth::Auth;

/// The whole HTTP application: API, Swagger UI at `/docs`, spec at `/openapi.json`, the topics'
/// document (`asyncapi`) at `/asyncapi.json`, JSON errors.
pub fn app(
    state: State,
    auth: Auth,
    asyncapi: &serde_json::Value,
    max_body_bytes: usize,
    body_timeout: Duration,
) -> impl Endpoint {
    let service = docs::service();
    let (spec, page) = docs::documents(&service, auth.is_required());
    let metrics = Arc::new(HttpMetrics::new(RouteTemplates::new(&spec)));
    let auth = Arc::new(auth);
    let allowed = Arc::new(AllowedMethods::from_spec(&spec));
    let spec = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    let asyncapi = serde_json::to_string_pretty(asyncapi).expect("a JSON value serializes");
    Route::new()
        .nest("/", service)
        .at("/docs", get(make_sync(move |_| Html(page.clone()))))
        .at("/ready", get(shared::admin::ready))
        .at("/metrics", get(shared::admin::metrics_text))
        .at("/openapi.json", get(make_sync(move |_| json(&spec))))
        .at("/asyncapi.json", get(make_sync(move |_| json(&asyncapi))))
        .data(Arc::new(state))
        .around(move |ep, req| read_body(ep, req, max_body_bytes, body_timeout))
        // Outside the body reader: a refused request's body is never read.
        .around(move |ep, req| auth::authenticate(ep, req, auth.clone()))
        .catch_all_error(|e| async move { error::json_error(e) })
        .around(move |ep, req| allow_header(ep, req, allowed.clone()))
        .around(move |ep, req| metrics::observe(ep, req, metrics.clone()))
}

fn json(document: &str) -> Response {
    Response::builder()
        .content_type("application/json")
        .body(document.to_string())
}
