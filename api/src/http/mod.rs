//! The HTTP surface, assembled: the routes with their JSON errors, Swagger UI at `/docs` and the
//! document at `/openapi.json`, behind the authentication gate, the body reader and the `Allow`
//! header; `/ready` and `/metrics` (Prometheus) beside them, and the HTTP metrics around all.

mod auth;
mod docs;
mod dto;
mod error;
mod extract;
pub(crate) mod metrics;
mod middleware;
mod request;
mod routes;
mod schema;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use poem::endpoint::make_sync;
use poem::web::Html;
use poem::{get, Endpoint, EndpointExt, Response, Route};

pub use self::error::ErrorBody;
use self::middleware::{allow_header, read_body, AllowedMethods};
pub use self::request::OrderRequest;
pub use self::routes::OrdersApi;
use crate::auth::Auth;

/// The whole HTTP application: API, Swagger UI at `/docs`, spec at `/openapi.json`, JSON errors.
pub fn app(
    api: OrdersApi,
    auth: Auth,
    max_body_bytes: usize,
    body_timeout: Duration,
) -> impl Endpoint {
    metrics::register();
    let service = docs::service(api);
    let (spec, page) = docs::documents(&service, auth.is_required());
    let auth = Arc::new(auth);
    let allowed = Arc::new(AllowedMethods::from_spec(&spec));
    let spec = serde_json::to_string_pretty(&spec).expect("a JSON value serializes");
    Route::new()
        .nest("/", service)
        .at("/docs", get(make_sync(move |_| Html(page.clone()))))
        .at("/ready", get(shared::admin::ready))
        .at("/metrics", get(shared::admin::metrics_text))
        .at(
            "/openapi.json",
            get(make_sync(move |_| {
                Response::builder()
                    .content_type("application/json")
                    .body(spec.clone())
            })),
        )
        .around(move |ep, req| read_body(ep, req, max_body_bytes, body_timeout))
        // Outside the body reader: a refused request's body is never read.
        .around(move |ep, req| auth::authenticate(ep, req, auth.clone()))
        .catch_all_error(|e| async move { error::json_error(e) })
        .around(move |ep, req| allow_header(ep, req, allowed.clone()))
        .around(metrics::observe)
}
