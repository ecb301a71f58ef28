//! The HTTP side: posts generated orders to `POST /pedidos`, either at a fixed rate (open loop,
//! with a cap on requests in flight) or as fast as a fixed number of concurrent senders can.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::orders::OrderGen;
use crate::stats::{ErrorCounts, ErrorKind, Latency};
use crate::tracker::Registrar;

/// How the run is paced and when it ends.
#[derive(Debug, Clone)]
pub struct DriveOptions {
    /// Base URL of the API, e.g. `http://127.0.0.1:8000`.
    pub url: String,
    /// Orders per second; `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Stop sending after this long (`None` and no `count`: until stopped).
    pub duration: Option<Duration>,
    /// Stop after this many orders.
    pub count: Option<u64>,
    /// Per-request timeout.
    pub timeout: Duration,
    /// `Bearer <token>`, built once ([`crate::auth::bearer`]) and sent with every request.
    pub authorization: Option<HeaderValue>,
    /// After each 202, `GET /pedidos/{id}` at once: what a client that reads its own order
    /// right after placing it sees (any answer but 200 is counted as `get_http_<status>`).
    pub get_after_202: bool,
}

impl DriveOptions {
    fn endpoint(&self) -> String {
        format!("{}/pedidos", self.url.trim_end_matches('/'))
    }
}

/// Live counters, read by the progress bar.
#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub accepted: AtomicU64,
    pub errors: AtomicU64,
}

/// What the HTTP side measured.
pub struct Driven {
    pub errors: ErrorCounts,
    pub post_202: Latency,
    /// Empty unless `get_after_202`.
    pub get_after_202: Latency,
    /// From the first request sent to the last response received.
    pub send_phase: Duration,
    pub started: Instant,
    pub max_schedule_lag: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The part of the 202 body we need.
#[derive(Deserialize)]
struct Accepted {
    id: Uuid,
}

/// What the answers came to: the HTTP side of the report.
#[derive(Default)]
struct Outcomes {
    post_202: Latency,
    get_after_202: Latency,
    errors: ErrorCounts,
    last_response: Option<Instant>,
}

struct Sender {
    client: reqwest::Client,
    endpoint: String,
    orders: Mutex<OrderGen>,
    registrar: Option<Registrar>,
    counters: Arc<Counters>,
    outcomes: Mutex<Outcomes>,
    get_after_202: bool,
}

impl Sender {
    fn next_body(&self) -> Vec<u8> {
        let order = self.orders.lock().expect("order generator").next_order();
        serde_json::to_vec(&order).expect("orders always serialize")
    }

    /// Posts one order and records the outcome.
    async fn send(&self, body: Vec<u8>) {
        self.counters.sent.fetch_add(1, Ordering::Relaxed);
        let sent_at = Instant::now();
        let outcome = self.post(body).await;
        let done = Instant::now();
        match outcome {
            Ok(id) => {
                if let Some(registrar) = &self.registrar {
                    registrar.register(id, sent_at);
                }
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let read = match outcome {
            Ok(id) if self.get_after_202 => Some(self.get(id).await),
            _ => None,
        };
        let last = Instant::now();
        let mut outcomes = self.outcomes.lock().expect("driver outcomes");
        match outcome {
            Ok(_) => outcomes.post_202.record(done - sent_at),
            Err(kind) => outcomes.errors.add(kind),
        }
        match read {
            Some(Ok(())) => outcomes.get_after_202.record(last - done),
            Some(Err(kind)) => outcomes.errors.add(kind),
            None => {}
        }
        outcomes.last_response = Some(outcomes.last_response.map_or(last, |t| t.max(last)));
    }

    /// Reads the order just accepted.
    async fn get(&self, id: Uuid) -> Result<(), ErrorKind> {
        let response = self
            .client
            .get(format!("{}/{id}", self.endpoint))
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        response.bytes().await.map_err(|e| classify(&e))?;
        match status {
            StatusCode::OK => Ok(()),
            other => Err(ErrorKind::Get(other.as_u16())),
        }
    }

    async fn post(&self, body: Vec<u8>) -> Result<Uuid, ErrorKind> {
        let response = self
            .client
            .post(&self.endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        // Read the whole body either way, so the connection can be reused.
        let bytes = response.bytes().await.map_err(|e| classify(&e))?;
        if status != StatusCode::ACCEPTED {
            return Err(ErrorKind::Http(status.as_u16()));
        }
        serde_json::from_slice::<Accepted>(&bytes)
            .map(|a| a.id)
            .map_err(|_| ErrorKind::InvalidResponse)
    }
}

fn classify(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else {
        // Refused, reset, closed mid-body: the connection failed us.
        ErrorKind::Connection
    }
}

/// Sends orders until the count or duration is reached or `stop` is cancelled, then waits for
/// the requests still in flight.
pub async fn drive(
    options: &DriveOptions,
    orders: OrderGen,
    registrar: Option<Registrar>,
    counters: Arc<Counters>,
    stop: CancellationToken,
) -> Result<Driven, DriveError> {
    let concurrency = options.concurrency.max(1);
    // The client's default headers: the one value is cloned into each request (a reference
    // count), not formatted again.
    let mut headers = HeaderMap::new();
    if let Some(value) = &options.authorization {
        headers.insert(AUTHORIZATION, value.clone());
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .timeout(options.timeout)
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()?;
    let sender = Arc::new(Sender {
        client,
        endpoint: options.endpoint(),
        orders: Mutex::new(orders),
        registrar,
        counters,
        outcomes: Mutex::new(Outcomes::default()),
        get_after_202: options.get_after_202,
    });
    let started = Instant::now();
    let deadline = options.duration.map(|d| started + d);
    let max_schedule_lag = match options.rate {
        Some(rate) => paced(&sender, options, rate, concurrency, started, &stop).await,
        None => {
            flat_out(&sender, options.count, deadline, concurrency, &stop).await;
            Duration::ZERO
        }
    };
    let outcomes = std::mem::take(&mut *sender.outcomes.lock().expect("driver outcomes"));
    let send_phase = outcomes.last_response.map_or_else(
        || started.elapsed(),
        |t| t.saturating_duration_since(started),
    );
    Ok(Driven {
        errors: outcomes.errors,
        post_202: outcomes.post_202,
        get_after_202: outcomes.get_after_202,
        send_phase,
        started,
        max_schedule_lag,
    })
}

/// `concurrency` senders, each posting its next order as soon as the previous one answered.
async fn flat_out(
    sender: &Arc<Sender>,
    count: Option<u64>,
    deadline: Option<Instant>,
    concurrency: usize,
    stop: &CancellationToken,
) {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (sender, next, stop) = (sender.clone(), next.clone(), stop.clone());
            tokio::spawn(async move {
                loop {
                    if stop.is_cancelled() || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if count.is_some_and(|c| n >= c) {
                        break;
                    }
                    let body = sender.next_body();
                    sender.send(body).await;
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.await;
    }
}

/// Order `i` is due at `start + i / rate`; late orders are sent at once (the schedule does not
/// slip), unless `concurrency` requests are already in flight. Returns the worst lateness.
async fn paced(
    sender: &Arc<Sender>,
    options: &DriveOptions,
    rate: f64,
    concurrency: usize,
    started: Instant,
    stop: &CancellationToken,
) -> Duration {
    let slots = Arc::new(Semaphore::new(concurrency));
    let due_at = |i: u64| started + Duration::from_secs_f64(i as f64 / rate);
    let limit = options.count.unwrap_or(u64::MAX);
    let mut issued: u64 = 0;
    let mut worst_lag = Duration::ZERO;
    'schedule: while issued < limit {
        let elapsed = started.elapsed();
        if options.duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        let due = ((elapsed.as_secs_f64() * rate) as u64 + 1).min(limit);
        while issued < due {
            if options
                .duration
                .is_some_and(|d| due_at(issued) >= started + d)
            {
                break 'schedule;
            }
            let slot = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("semaphore never closed"),
                _ = stop.cancelled() => break 'schedule,
            };
            worst_lag = worst_lag.max(Instant::now().saturating_duration_since(due_at(issued)));
            let sender = sender.clone();
            let body = sender.next_body();
            tokio::spawn(async move {
                sender.send(body).await;
                drop(slot);
            });
            issued += 1;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(due_at(issued).into()) => {}
            _ = stop.cancelled() => break,
        }
    }
    // Every slot free again: all requests answered.
    let _ = slots.acquire_many(concurrency as u32).await;
    worst_lag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_tolerates_a_trailing_slash() {
        let mut o = DriveOptions {
            url: "http://127.0.0.1:8000/".into(),
            rate: None,
            concurrency: 1,
            duration: None,
            count: Some(1),
            timeout: Duration::from_secs(1),
            authorization: None,
            get_after_202: false,
        };
        assert_eq!(o.endpoint(), "http://127.0.0.1:8000/pedidos");
        o.url = "http://127.0.0.1:8000".into();
        assert_eq!(o.endpoint(), "http://127.0.0.1:8000/pedidos");
    }

    /// A loopback HTTP/1.1 server answering every request with `status` (202 with an order id,
    /// anything else with `{}`), keeping each request's `Authorization` header, keep-alive.
    async fn serve(status: u16) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let head_end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            let mut chunk = [0u8; 4096];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                        let header = |name: &str| {
                            head.lines().find_map(|line| {
                                let (k, v) = line.split_once(':')?;
                                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                            })
                        };
                        let length: usize =
                            header("content-length").map_or(0, |v| v.parse().unwrap());
                        log.lock().unwrap().push(header("authorization"));
                        while buf.len() < head_end + length {
                            let mut chunk = [0u8; 4096];
                            match conn.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..head_end + length);
                        let body = if status == 202 {
                            format!("{{\"id\":\"{}\"}}", Uuid::new_v4())
                        } else {
                            "{}".to_string()
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if conn.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, seen)
    }

    async fn drive_count(
        url: String,
        count: u64,
        authorization: Option<HeaderValue>,
    ) -> (Driven, Arc<Counters>) {
        let options = DriveOptions {
            url,
            rate: None,
            concurrency: 2,
            duration: None,
            count: Some(count),
            timeout: Duration::from_secs(5),
            authorization,
            get_after_202: false,
        };
        let counters = Arc::new(Counters::default());
        let driven = drive(
            &options,
            OrderGen::new(1, 10),
            None,
            counters.clone(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        (driven, counters)
    }

    #[tokio::test]
    async fn every_request_carries_the_bearer_token() {
        let (url, seen) = serve(202).await;
        let token = crate::auth::bearer("aaa.bbb.ccc").unwrap();
        let (driven, counters) = drive_count(url, 6, Some(token)).await;
        assert_eq!(driven.errors.total(), 0);
        assert_eq!(counters.accepted.load(Ordering::Relaxed), 6);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 6);
        assert!(
            seen.iter()
                .all(|h| h.as_deref() == Some("Bearer aaa.bbb.ccc")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn no_token_sends_no_authorization_header() {
        let (url, seen) = serve(202).await;
        let (driven, _) = drive_count(url, 2, None).await;
        assert_eq!(driven.errors.total(), 0);
        assert_eq!(*seen.lock().unwrap(), vec![None, None]);
    }

    #[tokio::test]
    async fn refused_credentials_are_counted_as_errors() {
        for status in [401, 403] {
            let (url, _) = serve(status).await;
            let (driven, counters) = drive_count(url, 3, None).await;
            assert_eq!(counters.accepted.load(Ordering::Relaxed), 0);
            assert_eq!(counters.errors.load(Ordering::Relaxed), 3);
            assert_eq!(driven.errors.refused_credentials(), 3);
            assert_eq!(driven.errors.by_label()[&format!("http_{status}")], 3);
        }
    }
}
