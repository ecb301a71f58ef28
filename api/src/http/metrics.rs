//! The API's HTTP metrics, taken around every request (outermost, so refusals by the gates
//! count too): requests by route, method and status, their duration, and refused orders by
//! reason. Handles are resolved on first use of each combination and kept in fixed tables:
//! afterwards a request costs atomic increments, no lock and no allocation.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Instant;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use shared::metrics::prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

/// Route templates, so a label never holds an order id.
const ROUTES: [&str; 9] = [
    "/pedidos",
    "/pedidos/{id}",
    "/health",
    "/ready",
    "/metrics",
    "/docs",
    "/openapi.json",
    "/pedidos/{id}/eventos",
    "other",
];
const METHODS: [&str; 4] = ["GET", "POST", "HEAD", "other"];
/// The statuses the API answers; anything else is counted as its class (`5xx`, …).
const STATUSES: [u16; 16] = [
    200, 202, 400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 422, 500, 503, 0,
];

struct Families {
    requests: IntCounterVec,
    duration: HistogramVec,
    rejected: IntCounterVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    requests: shared::metrics::counter_vec(
        "pedidos_http_requests_total",
        "HTTP requests answered, by route template, method and status.",
        &["route", "method", "status"],
    ),
    duration: shared::metrics::histogram_vec(
        "pedidos_http_request_duration_seconds",
        "Time from a request's head to its response, by route template and method.",
        &["route", "method"],
    ),
    rejected: shared::metrics::counter_vec(
        "pedidos_orders_rejected_total",
        "POST /pedidos not accepted, by reason (from the status answered).",
        &["reason"],
    ),
});

/// Orders published and acknowledged (a retried `Idempotency-Key` answered from memory is not
/// counted again).
pub(crate) static ORDERS_ACCEPTED: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_orders_accepted_total",
        "Orders accepted: published to Pedidos and acknowledged by the broker (202).",
    )
});

/// The broker's acknowledgement of each record the API publishes.
pub(crate) static BROKER_ACK: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_broker_ack_duration_seconds",
        "From handing a record to the producer to the broker's acknowledgement (or failure).",
    )
});

/// Registers the families up front, so they are scraped (at zero) before the first order: a
/// rate needs the counter's value before its first increase.
pub(crate) fn register() {
    LazyLock::force(&FAMILIES);
    LazyLock::force(&ORDERS_ACCEPTED);
    LazyLock::force(&BROKER_ACK);
    crate::store::register_metrics();
}

type Table<T, const N: usize> = [OnceLock<T>; N];

struct Handles {
    requests: [[Table<IntCounter, { STATUSES.len() }>; METHODS.len()]; ROUTES.len()],
    duration: [Table<Histogram, { METHODS.len() }>; ROUTES.len()],
    rejected: Table<IntCounter, { STATUSES.len() }>,
}

static HANDLES: LazyLock<Handles> = LazyLock::new(|| Handles {
    requests: std::array::from_fn(|_| {
        std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new()))
    }),
    duration: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
    rejected: std::array::from_fn(|_| OnceLock::new()),
});

fn route(path: &str) -> usize {
    let path = path.trim_end_matches('/');
    match path {
        "/pedidos" => 0,
        "/health" => 2,
        "/ready" => 3,
        "/metrics" => 4,
        "/docs" => 5,
        "/openapi.json" => 6,
        p if p
            .strip_prefix("/pedidos/")
            .is_some_and(|id| !id.contains('/')) =>
        {
            1
        }
        p if p
            .strip_prefix("/pedidos/")
            .and_then(|rest| rest.strip_suffix("/eventos"))
            .is_some_and(|id| !id.is_empty() && !id.contains('/')) =>
        {
            7
        }
        _ => 8,
    }
}

fn method(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::POST => 1,
        Method::HEAD => 2,
        _ => 3,
    }
}

fn status(s: StatusCode) -> usize {
    STATUSES
        .iter()
        .position(|&c| c == s.as_u16())
        .unwrap_or(STATUSES.len() - 1)
}

fn status_label(index: usize, s: StatusCode) -> String {
    match STATUSES[index] {
        0 => format!("{}xx", s.as_u16() / 100),
        code => code.to_string(),
    }
}

/// Why an order was not accepted, from the status it got (see `routes::CreateResponse`).
fn reason(s: StatusCode) -> &'static str {
    match s.as_u16() {
        400 => "malformed",
        401 => "unauthorized",
        403 => "forbidden",
        408 => "body_timeout",
        409 => "key_in_progress",
        413 => "too_large",
        415 => "not_json",
        422 => "invalid",
        503 => "broker_unavailable",
        _ => "other",
    }
}

/// Counts and times every request.
pub(crate) async fn observe<E: Endpoint>(ep: Arc<E>, req: Request) -> poem::Result<Response> {
    let started = Instant::now();
    let (r, m) = (route(req.uri().path()), method(req.method()));
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let code = match &result {
        Ok(response) => response.status(),
        Err(e) => e.status(),
    };
    let handles = &*HANDLES;
    let s = status(code);
    handles.requests[r][m][s]
        .get_or_init(|| {
            FAMILIES
                .requests
                .with_label_values(&[ROUTES[r], METHODS[m], &status_label(s, code)])
        })
        .inc();
    handles.duration[r][m]
        .get_or_init(|| {
            FAMILIES
                .duration
                .with_label_values(&[ROUTES[r], METHODS[m]])
        })
        .observe(started.elapsed().as_secs_f64());
    if r == 0 && m == 1 && !code.is_success() {
        handles.rejected[s]
            .get_or_init(|| FAMILIES.rejected.with_label_values(&[reason(code)]))
            .inc();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_never_hold_an_id_or_an_unknown_path() {
        assert_eq!(ROUTES[route("/pedidos/4b3c0e52-7f2e")], "/pedidos/{id}");
        assert_eq!(ROUTES[route("/pedidos/")], "/pedidos");
        assert_eq!(ROUTES[route("/pedidos/x/y")], "other");
        assert_eq!(
            ROUTES[route("/pedidos/4b3c/eventos")],
            "/pedidos/{id}/eventos"
        );
        assert_eq!(ROUTES[route("/wp-admin.php")], "other");
        let teapot = StatusCode::IM_A_TEAPOT;
        assert_eq!(status_label(status(teapot), teapot), "4xx");
        assert_eq!(
            status_label(status(StatusCode::ACCEPTED), StatusCode::ACCEPTED),
            "202"
        );
    }
}
