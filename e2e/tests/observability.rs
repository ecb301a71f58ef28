//! What an operator sees: the four daemons' `/metrics`, `/health` and `/ready`, scraped by a
//! real Prometheus (Debian's `prometheus`) during a flow run, and every panel of the Grafana
//! dashboard (`ops/grafana/pedidos.json`, read from the file) answered by it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::mesh::{Mesh, WAIT};
use e2e::orders::{order_body, post_orders};
use e2e::ready_becomes;
use serde_json::Value;
use testkit::Broker;

const ORDERS: usize = 200;

/// The Prometheus binary (`PROMETHEUS`, else `prometheus` on the PATH), or a failure that says
/// how to get it: this test must not pass by not running.
fn prometheus_binary() -> String {
    let binary = std::env::var("PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    match Command::new(&binary).arg("--version").output() {
        Ok(out) if out.status.success() => binary,
        _ => panic!(
            "no Prometheus server at {binary:?}: install Debian's prometheus package \
             (apt-get install prometheus; .ci/run does) or set PROMETHEUS to its path"
        ),
    }
}

/// A Prometheus server of this test's own: a free port, a temporary configuration scraping
/// `targets` (job, host:port) every second, and temporary storage. Killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Prometheus {
    async fn start(binary: &str, targets: &[(&str, String)]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("pedidos-prometheus-")
            .tempdir()
            .unwrap();
        let mut config = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, target) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ));
        }
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).unwrap();
        let port = testkit::free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start prometheus");
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::Client::new(),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = prometheus.http.get(&ready).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready within {WAIT:?}. Log:\n{}",
                prometheus.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's result vector, through the HTTP API as Grafana sends it.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let response: Value = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .expect("query sent")
            .json()
            .await
            .expect("a JSON answer");
        assert_eq!(response["status"], "success", "{expr}: {response}");
        response["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query's one sample (a sum), if it has one.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let result = self.query(expr).await;
        (result.len() == 1).then(|| value(&result[0]))
    }

    /// Polls `check` until it answers `Some`, failing with `what` and the last answer after
    /// `within`.
    async fn until<T, F, Fut>(&self, what: &str, within: Duration, check: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + within;
        loop {
            match check().await {
                Ok(v) => return v,
                Err(last) if Instant::now() > deadline => {
                    panic!("timed out after {within:?} waiting for {what}; last: {last}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {sample}"))
}

/// Every query of every panel of the dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ops/grafana/pedidos.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard")).unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?").to_string();
        let targets = panel["targets"].as_array().expect("each panel has queries");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queries.push((title.clone(), expr.to_string()));
        }
    }
    queries
}

async fn get(url: &str) -> (u16, String, String) {
    let response = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_mesh_and_every_dashboard_panel_has_data() {
    let binary = prometheus_binary();
    let queries = dashboard_queries();
    let mesh = Mesh::start(Broker::shared(), 1).await;
    let (kafka, topics) = (&mesh.config.kafka, &mesh.config.topics);
    let admin = |d: &e2e::Daemon| {
        d.admin_address()
            .unwrap_or_else(|| panic!("{} logged no admin address:\n{}", d.name, d.log_text()))
    };
    // Every daemon of the list: the API on its own port, the others on their admin ports.
    let targets: Vec<(&str, String)> = e2e::DAEMONS
        .iter()
        .map(|&name| match name {
            "api" => (name, mesh.api_url.trim_start_matches("http://").to_string()),
            _ => (name, admin(mesh.daemon(name))),
        })
        .collect();

    // Each daemon by hand, as an operator with curl: alive, ready (its consumer holds
    // partitions), and its metrics in Prometheus's text format.
    for (job, address) in &targets {
        let (status, _, body) = get(&format!("http://{address}/health")).await;
        assert_eq!(status, 200, "{job} /health: {body}");
        let (status, _, body) = get(&format!("http://{address}/ready")).await;
        assert_eq!(status, 200, "{job} /ready: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["status"],
            "ready"
        );
        let (status, content_type, body) = get(&format!("http://{address}/metrics")).await;
        assert_eq!(status, 200, "{job} /metrics");
        assert!(
            content_type.starts_with("text/plain"),
            "{job}: {content_type}"
        );
        assert!(body.contains("# TYPE pedidos_"), "{job} /metrics:\n{body}");
    }
    let prometheus = Prometheus::start(&binary, &targets).await;

    // Every daemon scraped once before the first order, so rates see the counters rise.
    let jobs = targets.len();
    prometheus
        .until("a first scrape of every daemon", WAIT, || async {
            let up = prometheus.query("up == 1").await;
            (up.len() == jobs).then_some(()).ok_or(format!("{up:?}"))
        })
        .await;
    let orders = post_orders(&mesh.api_url, (0..ORDERS).map(order_body).collect()).await;
    assert_eq!(orders.len(), ORDERS);
    // A record fraud cannot read: the dead-letter series get data.
    testkit::produce_raw(
        kafka,
        &topics.pedidos,
        Some(b"lixo".as_slice()),
        b"not an order",
    )
    .await;

    // Every accepted order got exactly one verdict, as the counters tell it.
    let counted = prometheus
        .until(
            "verdicts to add up to the orders accepted",
            WAIT,
            || async {
                let accepted = prometheus
                    .scalar("sum(pedidos_orders_accepted_total)")
                    .await;
                let verdicts = prometheus.scalar("sum(pedidos_fraud_verdicts_total)").await;
                match (accepted, verdicts) {
                    (Some(a), Some(v)) if a == ORDERS as f64 && v == a => Ok((a, v)),
                    other => Err(format!("(accepted, verdicts) = {other:?}")),
                }
            },
        )
        .await;
    println!(
        "sum(pedidos_orders_accepted_total) = sum(pedidos_fraud_verdicts_total) = {counted:?}"
    );

    // Every group (and the API's read model) drains back to no lag.
    let groups: BTreeSet<String> = [
        mesh.config.fraud.group_id.clone(),
        mesh.config.notification.group_id.clone(),
        mesh.config.monitoring.group_id.clone(),
        "reader".to_string(),
    ]
    .into();
    let lag_query = "sum by (group) (pedidos_consumer_lag_records)";
    let lags = prometheus
        .until("every group's lag to return to 0", WAIT, || async {
            let lags: BTreeMap<String, f64> = prometheus
                .query(lag_query)
                .await
                .iter()
                .map(|s| {
                    (
                        s["metric"]["group"].as_str().unwrap_or("").to_string(),
                        value(s),
                    )
                })
                .collect();
            let seen: BTreeSet<String> = lags.keys().cloned().collect();
            if seen.is_superset(&groups) && lags.values().all(|&l| l == 0.0) {
                Ok(lags)
            } else {
                Err(format!("{lags:?}"))
            }
        })
        .await;
    println!("{lag_query} = {lags:?}");

    let up = prometheus.query("up").await;
    let jobs: BTreeMap<String, f64> = up
        .iter()
        .map(|s| (s["metric"]["job"].as_str().unwrap().to_string(), value(s)))
        .collect();
    assert_eq!(
        jobs,
        targets
            .iter()
            .map(|(job, _)| (job.to_string(), 1.0))
            .collect(),
        "up"
    );

    // Waited for, not read once: a lag of 0 comes from librdkafka's periodic statistics and
    // can predate the garbage record's arrival (CI saw the counter still at 0 here).
    let dead_query = "sum(pedidos_records_dead_lettered_total)";
    prometheus
        .until("the garbage record to be dead-lettered", WAIT, || async {
            match prometheus.scalar(dead_query).await {
                Some(d) if d >= 1.0 => Ok(d),
                other => Err(format!("{dead_query} = {other:?}")),
            }
        })
        .await;
    // One more scrape, then exactly one: a second dead letter would be a bug.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dead = prometheus.scalar(dead_query).await;
    assert_eq!(
        dead,
        Some(1.0),
        "the one garbage record was dead-lettered once"
    );

    // Every panel of the dashboard has something to draw.
    for (title, expr) in &queries {
        let result = prometheus
            .until(&format!("panel {title:?}: {expr}"), WAIT, || async {
                // Something to draw: a number (a quantile of no traffic is NaN).
                let result = prometheus.query(expr).await;
                if result.iter().any(|s| value(s).is_finite()) {
                    Ok(result)
                } else {
                    Err(format!("no data: {result:?}"))
                }
            })
            .await;
        let values: Vec<String> = result
            .iter()
            .map(|s| format!("{} {}", s["metric"], s["value"][1]))
            .collect();
        println!("{title}: {expr}\n    {}", values.join("\n    "));
    }
    let accepted_rate = prometheus
        .scalar("sum(rate(pedidos_orders_accepted_total[1m]))")
        .await;
    assert!(accepted_rate.is_some_and(|r| r > 0.0), "{accepted_rate:?}");
    // What an operator reads with curl after the run (for the record, with --nocapture).
    for (job, address) in &targets {
        let (_, _, ready) = get(&format!("http://{address}/ready")).await;
        let (_, _, metrics) = get(&format!("http://{address}/metrics")).await;
        let samples: Vec<&str> = metrics
            .lines()
            .filter(|l| l.starts_with("pedidos_") && !l.contains("_bucket{"))
            .collect();
        println!(
            "== {job} {address}\n/ready {ready}\n/metrics\n{}",
            samples.join("\n")
        );
    }
    // A calm run answers no 5xx: the panel draws zero.
    let errors = prometheus
        .scalar(r#"sum(rate(pedidos_http_requests_total{status=~"5.."}[1m])) or vector(0)"#)
        .await;
    assert_eq!(errors, Some(0.0));
}

#[tokio::test(flavor = "multi_thread")]
async fn ready_says_503_and_why_while_the_broker_is_down_and_200_once_it_is_back() {
    let broker = Broker::start();
    let mesh = Mesh::start(&broker, 1).await;
    let urls: Vec<(String, String)> = e2e::DAEMONS
        .iter()
        .filter(|&&name| name != "api")
        .map(|&name| mesh.daemon(name))
        .map(|d| {
            (
                d.name.clone(),
                format!("http://{}", d.admin_address().unwrap()),
            )
        })
        .chain([("api".to_string(), mesh.api_url.clone())])
        .collect();
    for (name, url) in &urls {
        ready_becomes(name, url, 200).await;
    }
    broker.kill();
    for (name, url) in &urls {
        let body = ready_becomes(name, url, 503).await;
        assert_eq!(body["status"], "not_ready", "{name}: {body}");
        let reasons = body["reasons"].to_string();
        assert!(reasons.contains("Kafka unreachable"), "{name}: {body}");
        println!("{name} /ready with the broker down: 503 {body}");
        // Alive all the same.
        let (status, _, _) = get(&format!("{url}/health")).await;
        assert_eq!(status, 200, "{name} /health");
    }
    tokio::task::block_in_place(|| broker.restart());
    for (name, url) in &urls {
        ready_becomes(name, url, 200).await;
    }
}
