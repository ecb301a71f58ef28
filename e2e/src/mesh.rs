//! A whole test mesh: settings, start-up, and the orders tests post.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};
use shared::config::FraudConfig;
use shared::events::Order;
use testkit::Broker;

use crate::{eventually, message, Daemon};

/// Generous: CI machines are small and build in debug.
pub const WAIT: Duration = Duration::from_secs(90);

/// The four daemons as processes against one broker.
pub struct Mesh {
    pub api_url: String,
    pub api: Daemon,
    pub frauds: Vec<Daemon>,
    pub notification: Daemon,
    pub monitoring: Daemon,
    pub audit_file: PathBuf,
    /// The settings every daemon was started with.
    pub env: Vec<(String, String)>,
}

/// The fraud rules the tests run with (and predict verdicts from).
pub fn fraud_rules() -> FraudConfig {
    FraudConfig {
        seed: 7,
        refusal_probability: 0.2,
        max_valor: Some("5000".parse().unwrap()),
        max_total: Some("20000".parse().unwrap()),
        blocked_users: vec!["mallory".into()],
        blocked_products: vec!["contrabando".into()],
        ..FraudConfig::default()
    }
}

/// The `PEDIDOS_*` settings of a test mesh.
pub fn env(broker: &Broker, api_port: u16, audit_file: &Path) -> Vec<(String, String)> {
    let rules = fraud_rules();
    [
        ("PEDIDOS_KAFKA__BOOTSTRAP_SERVERS", broker.bootstrap()),
        ("PEDIDOS_KAFKA__STARTUP_TIMEOUT_SECS", "20".into()),
        ("PEDIDOS_API__LISTEN", format!("127.0.0.1:{api_port}")),
        (
            "PEDIDOS_MONITORING__AUDIT_FILE",
            audit_file.display().to_string(),
        ),
        ("PEDIDOS_MONITORING__SUMMARY_INTERVAL_SECS", "1".into()),
        ("PEDIDOS_FRAUD__SEED", rules.seed.to_string()),
        (
            "PEDIDOS_FRAUD__REFUSAL_PROBABILITY",
            rules.refusal_probability.to_string(),
        ),
        (
            "PEDIDOS_FRAUD__MAX_VALOR",
            format!("\"{}\"", rules.max_valor.unwrap()),
        ),
        (
            "PEDIDOS_FRAUD__MAX_TOTAL",
            format!("\"{}\"", rules.max_total.unwrap()),
        ),
        ("PEDIDOS_FRAUD__BLOCKED_USERS", r#"["mallory"]"#.into()),
        (
            "PEDIDOS_FRAUD__BLOCKED_PRODUCTS",
            r#"["contrabando"]"#.into(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Partitions a consumer holds according to its latest "partitions assigned" log line.
pub fn assigned(daemon: &Daemon) -> Option<Vec<String>> {
    daemon
        .log_events()
        .iter()
        .rev()
        .find(|e| message(e) == "partitions assigned" || message(e) == "partitions revoked")
        .filter(|e| message(e) == "partitions assigned")
        .map(|e| {
            e["partitions"]
                .as_str()
                .unwrap_or("")
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect()
        })
}

impl Mesh {
    /// Starts api, then fraud × `fraud_instances`, notification and monitoring, and returns once
    /// every consumer holds its partitions.
    pub async fn start(broker: &Broker, fraud_instances: usize) -> Mesh {
        Self::start_with(broker, fraud_instances, &[]).await
    }

    /// [`Mesh::start`] with extra `PEDIDOS_*` settings for every daemon.
    pub async fn start_with(
        broker: &Broker,
        fraud_instances: usize,
        extra: &[(&str, &str)],
    ) -> Mesh {
        let dir = broker.dir().to_path_buf();
        let api_port = testkit::free_port();
        let audit_file = dir.join("audit.jsonl");
        let mut env = env(broker, api_port, &audit_file);
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let api = Daemon::spawn("api", "api", &dir, &env);
        let api_url = format!("http://127.0.0.1:{api_port}");
        api.wait_for_log("the API to listen", WAIT, |e| {
            message(e).starts_with("pedidos API listening")
        });
        // Static membership, as a production deployment would run: a restarted consumer takes its
        // partitions back at once (and brokers that never evict a crashed member still recover).
        let with_instance = |id: &str| {
            let mut env = env.clone();
            env.push(("PEDIDOS_KAFKA__GROUP_INSTANCE_ID".into(), id.into()));
            env
        };
        let frauds = (0..fraud_instances)
            .map(|i| {
                Daemon::spawn(
                    &format!("fraud{i}"),
                    "fraud",
                    &dir,
                    &with_instance(&format!("fraud{i}")),
                )
            })
            .collect::<Vec<_>>();
        let notification = Daemon::spawn(
            "notification",
            "notification",
            &dir,
            &with_instance("notification"),
        );
        let monitoring = Daemon::spawn(
            "monitoring",
            "monitoring",
            &dir,
            &with_instance("monitoring"),
        );
        // Orders are only posted once every consumer holds its partitions, so the test measures
        // the steady state rather than a start-up rebalance.
        eventually(
            "fraud instances to share all Pedidos partitions",
            WAIT,
            || {
                let held: Vec<Vec<String>> = frauds.iter().map(assigned).collect::<Option<_>>()?;
                let all: HashSet<&String> = held.iter().flatten().collect();
                (held.iter().all(|h| !h.is_empty()) && all.len() == 3).then_some(())
            },
        )
        .await;
        eventually("notification to be assigned", WAIT, || {
            assigned(&notification).filter(|p| p.len() == 3)
        })
        .await;
        eventually("monitoring to be assigned", WAIT, || {
            assigned(&monitoring).filter(|p| p.len() == 18)
        })
        .await;
        Mesh {
            api_url,
            api,
            frauds,
            notification,
            monitoring,
            audit_file,
            env,
        }
    }

    /// One daemon by name: `api`, `fraud` (the first instance), `notification`, `monitoring`.
    pub fn daemon(&mut self, name: &str) -> &mut Daemon {
        match name {
            "api" => &mut self.api,
            "fraud" => &mut self.frauds[0],
            "notification" => &mut self.notification,
            "monitoring" => &mut self.monitoring,
            other => panic!("no daemon called {other}"),
        }
    }

    pub fn assert_all_running(&mut self) {
        let mut daemons: Vec<&mut Daemon> =
            vec![&mut self.api, &mut self.notification, &mut self.monitoring];
        daemons.extend(self.frauds.iter_mut());
        for d in daemons {
            assert!(d.is_running(), "{} exited. Log:\n{}", d.name, d.log_text());
        }
    }
}

/// The `i`-th test order: most ordinary, some chosen to trip each rule.
pub fn order_body(i: usize) -> Value {
    let (usuario, produto, quantidade, valor) = match i % 10 {
        0 => (
            "mallory".to_string(),
            "livro".to_string(),
            1,
            "10.00".to_string(),
        ),
        1 => (
            format!("cliente{}", i % 13),
            "contrabando".to_string(),
            1,
            "10.00".to_string(),
        ),
        2 => (
            format!("cliente{}", i % 13),
            "tv".to_string(),
            1,
            "6000.00".to_string(),
        ),
        3 => (
            format!("cliente{}", i % 13),
            "geladeira".to_string(),
            5,
            "4500.00".to_string(),
        ),
        _ => (
            format!("cliente{}", i % 13),
            format!("produto{}", i % 17),
            1 + i % 4,
            format!("{}.{:02}", 1 + i % 400, i % 100),
        ),
    };
    json!({"usuario": usuario, "produto": produto, "quantidade": quantidade, "valor": valor})
}

/// Posts orders concurrently; returns the accepted orders as the API described them.
pub async fn post_orders(api_url: &str, bodies: Vec<Value>) -> Vec<Order> {
    let client = reqwest::Client::new();
    stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            async move {
                let response = client
                    .post(format!("{api_url}/pedidos"))
                    .json(&body)
                    .send()
                    .await
                    .expect("POST sent");
                assert_eq!(response.status(), 202, "order {body} not accepted");
                let answer: Value = response.json().await.unwrap();
                Order {
                    id: answer["id"].as_str().unwrap().parse().unwrap(),
                    usuario: answer["usuario"].as_str().unwrap().into(),
                    produto: answer["produto"].as_str().unwrap().into(),
                    quantidade: answer["quantidade"].as_u64().unwrap() as u32,
                    valor: answer["valor"].as_str().unwrap().parse().unwrap(),
                    data_solicitacao: answer["dataSolicitacao"].as_str().unwrap().parse().unwrap(),
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}
