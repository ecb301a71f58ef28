//! The API's HTTP metrics, taken around every request (outermost, so refusals by the gates
//! count too): requests by route, method and status, their duration, and refused orders by
//! reason. Handles are resolved on first use of each combination and kept in fixed tables:
//! afterwards a request costs atomic increments, no lock and no allocation.

use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Instant;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use shared::metrics::prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec};

use super::paths::RouteTemplates;

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

type Table<T, const N: usize> = [OnceLock<T>; N];

/// Every label combination's handles, by route index (of [`RouteTemplates`]), method and
/// status.
struct Handles {
    requests: Vec<[Table<IntCounter, { STATUSES.len() }>; METHODS.len()]>,
    duration: Vec<Table<Histogram, { METHODS.len() }>>,
    rejected: Table<IntCounter, { STATUSES.len() }>,
}

/// The HTTP metrics of one application: its route templates and their handles.
pub(crate) struct HttpMetrics {
    routes: RouteTemplates,
    handles: Handles,
}

impl HttpMetrics {
    /// Registers the families up front, so they are scraped (at zero) before the first
    /// request: a rate needs the counter's value before its first increase.
    pub(crate) fn new(routes: RouteTemplates) -> Self {
        LazyLock::force(&FAMILIES);
        let n = routes.len();
        let handles = Handles {
            requests: (0..n)
                .map(|_| std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())))
                .collect(),
            duration: (0..n)
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
            rejected: std::array::from_fn(|_| OnceLock::new()),
        };
        Self { routes, handles }
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
pub(crate) async fn observe<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    metrics: Arc<HttpMetrics>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let (r, m) = (metrics.routes.index(req.uri().path()), method(req.method()));
    let is_post_of_an_order = metrics.routes.is_orders(r) && m == 1;
    let result = ep.call(req).await.map(IntoResponse::into_response);
    let code = match &result {
        Ok(response) => response.status(),
        Err(e) => e.status(),
    };
    let (handles, route) = (&metrics.handles, metrics.routes.label(r));
    let s = status(code);
    handles.requests[r][m][s]
        .get_or_init(|| {
            FAMILIES
                .requests
                .with_label_values(&[route, METHODS[m], &status_label(s, code)])
        })
        .inc();
    handles.duration[r][m]
        .get_or_init(|| FAMILIES.duration.with_label_values(&[route, METHODS[m]]))
        .observe(started.elapsed().as_secs_f64());
    if is_post_of_an_order && !code.is_success() {
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
    fn statuses_outside_the_table_are_counted_by_class() {
        let teapot = StatusCode::IM_A_TEAPOT;
        assert_eq!(status_label(status(teapot), teapot), "4xx");
        assert_eq!(
            status_label(status(StatusCode::ACCEPTED), StatusCode::ACCEPTED),
            "202"
        );
    }
}
