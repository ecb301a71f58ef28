//! The admin endpoint of the consuming daemons (`<section>.admin_listen`), and the handlers the
//! API mounts on its own port:
//!
//! - `GET /metrics`: the Prometheus text exposition of [`crate::metrics`];
//! - `GET /health`: the process is alive;
//! - `GET /ready`: the daemon can do its job ([`crate::metrics::readiness`]), else 503 with a
//!   JSON body saying why.

use std::net::SocketAddr;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Json;
use poem::{get, handler, IntoResponse, Response, Route};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::metrics;

#[derive(Debug, thiserror::Error)]
#[error("cannot serve {key} on {addr}: {source}")]
pub struct AdminError {
    pub key: String,
    pub addr: String,
    pub source: std::io::Error,
}

/// `GET /metrics`.
#[handler]
pub fn metrics_text() -> Response {
    Response::builder()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}

/// `GET /ready`: 200 `{"status":"ready"}`, or 503 `{"status":"not_ready","reasons":[…]}`.
#[handler]
pub fn ready() -> Response {
    match metrics::readiness::check() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reasons) => Json(json!({"status": "not_ready", "reasons": reasons}))
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response(),
    }
}

#[handler]
fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "daemon": metrics::daemon()}))
}

/// Binds `addr` (the value of configuration key `key`) and serves the three routes until
/// `shutdown`; `Ok(None)` when `addr` is `""` (turned off). Binding happens before this
/// returns, so a port in use is a start-up error.
pub async fn serve(
    key: &str,
    addr: &str,
    shutdown: CancellationToken,
) -> Result<Option<SocketAddr>, AdminError> {
    if addr.is_empty() {
        return Ok(None);
    }
    let acceptor = TcpListener::bind(addr.to_string())
        .into_acceptor()
        .await
        .map_err(|source| AdminError {
            key: key.to_string(),
            addr: addr.to_string(),
            source,
        })?;
    let local = acceptor
        .local_addr()
        .first()
        .and_then(|a| a.as_socket_addr().copied())
        .expect("a TCP listener has a socket address");
    let app = Route::new()
        .at("/metrics", get(metrics_text))
        .at("/health", get(health))
        .at("/ready", get(ready));
    tracing::info!(address = %local, "admin endpoint (/metrics, /health, /ready) listening on http://{local}");
    tokio::spawn(async move {
        let served = poem::Server::new_with_acceptor(acceptor)
            .run_with_graceful_shutdown(app, shutdown.cancelled_owned(), None)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });
    Ok(Some(local))
}
