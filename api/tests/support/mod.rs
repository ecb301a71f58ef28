//! The one harness of the API's test binaries (`mod support;` in each): the API built and
//! served in the test process on a real broker, and an HTTP client for it.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use api::HttpTimeouts;
use serde_json::Value;
use shared::Config;
use testkit::Broker;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// The body limit of every test configuration: small, so the tests reach it cheaply.
pub const MAX_BODY_BYTES: usize = 4_096;

/// A test's own configuration on the broker shared by this test binary: topics and groups no
/// other test uses, test-sized limits.
pub fn config() -> Config {
    config_on(Broker::shared())
}

/// The same on a broker of the test's own, for a test that stops or kills it.
pub fn config_on(broker: &Broker) -> Config {
    let mut config = broker.config();
    config.api.publish_timeout_ms = 1_500;
    config.api.max_body_bytes = MAX_BODY_BYTES;
    config
}

/// The order ids of every record on `config`'s `Pedidos`, waiting for at least `at_least`.
pub async fn order_ids_on_pedidos(config: &Config, at_least: usize) -> Vec<String> {
    testkit::order_ids(
        &config.kafka,
        &config.topics.pedidos,
        at_least,
        Duration::from_secs(10),
    )
    .await
}

/// A test's configuration once per store: SQLite (the default), then PostgreSQL.
pub fn per_store() -> Vec<(&'static str, Config)> {
    let sqlite = config();
    let mut postgres = config();
    postgres.api.store_url = shared::config::Secret::new(testkit::Postgres::shared().database());
    vec![("sqlite", sqlite), ("postgres", postgres)]
}

/// Posts `body` (with `key`, if any), expects a 202 and returns the order's id.
pub async fn place(api: &TestApi, key: Option<&[u8]>, body: &Value) -> String {
    let response = match key {
        Some(key) => api.post_json_keyed(key, body).await,
        None => api.post_json(body).await,
    };
    assert_eq!(response.status(), 202);
    let accepted: Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_string()
}

/// The API serving in this process until [`TestApi::stop`].
pub struct TestApi {
    pub addr: SocketAddr,
    pub url: String,
    pub client: reqwest::Client,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

impl TestApi {
    /// The API exactly as `config` describes it, as `api::run` would serve it.
    pub async fn start(config: &Config) -> Self {
        Self::serve(api::Application::build(config).await.expect("API starts"))
    }

    /// The API as `config` describes it, but for the HTTP deadlines, set in code.
    pub async fn start_with_timeouts(config: &Config, timeouts: HttpTimeouts) -> Self {
        let app = api::Application::build(config).await.expect("API starts");
        Self::serve(app.with_timeouts(timeouts))
    }

    /// Serves an API already built.
    pub fn serve(app: api::Application) -> Self {
        let addr = app.address();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let server = tokio::spawn(async move {
            app.run_until(token).await.expect("API serves");
        });
        Self {
            addr,
            url: format!("http://{addr}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            stop,
            server,
        }
    }

    /// A client of its own, for requests that may take longer than the default 10 s.
    pub fn client_with_timeout(&self, timeout: Duration) -> reqwest::Client {
        reqwest::Client::builder().timeout(timeout).build().unwrap()
    }

    pub async fn post_json(&self, body: &Value) -> reqwest::Response {
        self.post_raw("application/json", body.to_string()).await
    }

    /// `POST /pedidos` with `Authorization: Bearer <token>`.
    pub async fn post_json_as(&self, token: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/pedidos", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("POST /pedidos answered")
    }

    /// `POST /pedidos` with an `Idempotency-Key` header (raw bytes: any value a client may send).
    pub async fn post_json_keyed(&self, key: &[u8], body: &Value) -> reqwest::Response {
        let key = reqwest::header::HeaderValue::from_bytes(key).expect("a sendable header value");
        self.client
            .post(format!("{}/pedidos", self.url))
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .expect("POST /pedidos answered")
    }

    /// `GET path` with `Authorization: Bearer <token>`.
    pub async fn get_as(&self, token: &str, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} answered: {e}"))
    }

    pub async fn post_raw(
        &self,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.client
            .post(format!("{}/pedidos", self.url))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST /pedidos answered")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path).await
    }

    /// A GET's body, read as JSON whatever its status.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path)
            .await
            .json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: the body is not JSON: {e}"))
    }

    pub async fn request(&self, method: reqwest::Method, path: &str) -> reqwest::Response {
        self.client
            .request(method.clone(), format!("{}{path}", self.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} answered: {e}"))
    }

    /// A raw TCP connection, for clients that no HTTP library would be.
    pub async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.expect("connects")
    }

    /// Stops the server and waits for it, at most 15 s (in-flight requests get
    /// `api.shutdown_timeout_ms`).
    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(15)).await;
    }

    /// Stops the server; returns how long it took to stop, which must be under `limit`.
    pub async fn stop_within(self, limit: Duration) -> Duration {
        let stopping = Instant::now();
        self.stop.cancel();
        tokio::time::timeout(limit, self.server)
            .await
            .unwrap_or_else(|_| panic!("still serving {limit:?} after the stop"))
            .expect("the server task ends cleanly");
        stopping.elapsed()
    }
}
