//! The bookkeeping of the fault tests: a load driver that remembers every order the API
//! accepted, and a ledger check of what the mesh did with them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use shared::config::KafkaConfig;
use shared::Config;
use testkit::{read_topic, ConsumedRecord};

use crate::mesh::{Mesh, WAIT};
use crate::notifications::Notifications;
use crate::orders::order_body;

/// What the driver saw.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    pub sent: usize,
    /// Order id → usuario, for every 202.
    pub accepted: HashMap<String, String>,
    /// Failure kind (`http 503`, `connect`, `timeout`, ...) → count.
    pub failures: BTreeMap<String, usize>,
}

/// Posts `total` orders at `rate` orders/s with up to `concurrency` requests in flight,
/// tolerating a dead API (a failed order is counted, not retried).
pub struct Driver {
    state: Arc<Mutex<Sent>>,
    accepted: Arc<AtomicUsize>,
    paused: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Driver {
    pub fn start(api_url: &str, total: usize, rate: u32, concurrency: usize) -> Self {
        let state = Arc::new(Mutex::new(Sent::default()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let paused = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        // A dispatcher hands out order numbers at the pace asked; workers post them.
        let (tx, rx) = tokio::sync::mpsc::channel::<usize>(concurrency);
        let next = Arc::new(tokio::sync::Mutex::new(rx));
        let (dispatch_paused, dispatch_stopped) = (paused.clone(), stopped.clone());
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate.max(1))));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut i = 0;
            while i < total && !dispatch_stopped.load(Ordering::SeqCst) {
                tick.tick().await;
                if dispatch_paused.load(Ordering::SeqCst) {
                    continue;
                }
                if tx.send(i).await.is_err() {
                    break;
                }
                i += 1;
            }
        });
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client");
        let workers = (0..concurrency)
            .map(|_| {
                let (state, accepted, next, client) = (
                    state.clone(),
                    accepted.clone(),
                    next.clone(),
                    client.clone(),
                );
                let url = format!("{api_url}/pedidos");
                tokio::spawn(async move {
                    loop {
                        let Some(i) = next.lock().await.recv().await else {
                            break;
                        };
                        let outcome = match client.post(&url).json(&order_body(i)).send().await {
                            Ok(r) if r.status() == 202 => match r.json::<Value>().await {
                                Ok(v) => Ok((
                                    v["id"].as_str().unwrap_or_default().to_string(),
                                    v["usuario"].as_str().unwrap_or_default().to_string(),
                                )),
                                Err(_) => Err("body".to_string()),
                            },
                            Ok(r) => Err(format!("http {}", r.status().as_u16())),
                            Err(e) if e.is_timeout() => Err("timeout".into()),
                            Err(e) if e.is_connect() => Err("connect".into()),
                            Err(_) => Err("other".into()),
                        };
                        let failed = {
                            let mut s = state.lock().unwrap();
                            s.sent += 1;
                            match outcome {
                                Ok((id, usuario)) => {
                                    s.accepted.insert(id, usuario);
                                    accepted.fetch_add(1, Ordering::SeqCst);
                                    false
                                }
                                Err(kind) => {
                                    *s.failures.entry(kind).or_default() += 1;
                                    true
                                }
                            }
                        };
                        if failed {
                            // A dead API answers at once: do not race through the orders.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                })
            })
            .collect();
        Self {
            state,
            accepted,
            paused,
            stopped,
            workers,
        }
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` orders were accepted.
    pub async fn wait_accepted(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        while self.accepted() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} orders accepted in {within:?}: {:?}",
                self.accepted(),
                self.state.lock().unwrap().failures
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Sends no more orders (those in flight finish): for a stream that lasts as long as a
    /// test's faults rather than a set number of orders. [`Driver::finish`] then waits only for
    /// those in flight.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Waits for every order to be sent (or, after [`Driver::stop`], the ones in flight).
    pub async fn finish(self) -> Sent {
        for w in self.workers {
            w.await.expect("driver worker");
        }
        let sent = self.state.lock().unwrap().clone();
        sent
    }
}

/// The outcome of a run, per accepted order.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub accepted: usize,
    pub failures: BTreeMap<String, usize>,
    pub verdict_records: usize,
    /// Extra copies of a verdict identical in status (at-least-once replay).
    pub duplicate_verdicts: usize,
    /// Orders with two different verdicts: must be empty.
    pub contradictory: Vec<String>,
    /// Accepted orders without any verdict: must be empty.
    pub lost: Vec<String>,
    /// Accepted orders whose verdict was never told by notification, or whose Analise was
    /// neither told nor held back behind the verdict.
    pub not_notified: Vec<String>,
    /// Status changes told more than once (replays after a crash).
    pub notification_repeats: usize,
    /// `Analise` events notification held back, their order's verdict having come first.
    pub analise_held_back: usize,
    /// Records of the four topics missing from the audit file.
    pub not_audited: usize,
    /// Records audited more than once (replays after a crash).
    pub audit_repeats: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent={} accepted={} failures={:?} verdict_records={} duplicate_verdicts={} contradictory={} lost={} not_notified={} notification_repeats={} analise_held_back={} not_audited={} audit_repeats={}",
            self.sent,
            self.accepted,
            self.failures,
            self.verdict_records,
            self.duplicate_verdicts,
            self.contradictory.len(),
            self.lost.len(),
            self.not_notified.len(),
            self.notification_repeats,
            self.analise_held_back,
            self.not_audited,
            self.audit_repeats
        )
    }
}

impl Report {
    /// How many POSTs failed with `kind` (`http 503`, `connect`, ...).
    pub fn failed(&self, kind: &str) -> usize {
        self.failures.get(kind).copied().unwrap_or(0)
    }

    /// Nothing lost, nothing contradictory, everything seen by notification and monitoring.
    pub fn assert_sound(&self) {
        assert!(
            self.contradictory.is_empty(),
            "orders with two different verdicts: {:?}\n{self}",
            &self.contradictory[..self.contradictory.len().min(5)]
        );
        assert!(
            self.lost.is_empty(),
            "accepted orders without a verdict: {:?}\n{self}",
            &self.lost[..self.lost.len().min(5)]
        );
        assert!(
            self.not_notified.is_empty(),
            "accepted orders notification never told: {:?}\n{self}",
            &self.not_notified[..self.not_notified.len().min(5)]
        );
        assert_eq!(
            self.not_audited, 0,
            "records missing from the audit file\n{self}"
        );
    }
}

/// Finishes the stream and checks `mesh`'s ledger (nothing lost, contradictory, unnotified or
/// unaudited) and that every daemon still runs; prints the report as the ledger after `what`.
pub async fn finish_and_check(mesh: &mut Mesh, driver: Driver, what: &str) -> Report {
    let sent = driver.finish().await;
    check_sent(mesh, &sent, what).await
}

/// Checks `mesh`'s ledger against what was `sent` (by a [`Driver`] or by hand), as
/// [`finish_and_check`] does.
pub async fn check_sent(mesh: &mut Mesh, sent: &Sent, what: &str) -> Report {
    let notification = mesh.daemon("notification");
    let report = check(
        &mesh.config,
        sent,
        || notification.log_events(),
        &mesh.audit_file,
        WAIT,
    )
    .await;
    eprintln!("ledger after {what}: {report}");
    report.assert_sound();
    mesh.assert_all_running();
    report
}

/// Reads what the mesh did and checks it against what the API accepted, waiting (up to
/// `within`) for the mesh to drain.
pub async fn check(
    config: &Config,
    sent: &Sent,
    notification_logs: impl Fn() -> Vec<Value>,
    audit_file: &Path,
    within: Duration,
) -> Report {
    let (kafka, topics) = (&config.kafka, &config.topics);
    let deadline = Instant::now() + within;
    // Wait until every accepted order has a verdict (or time runs out: then it is lost).
    let verdicts = read_verdicts(
        kafka,
        &topics.pedidos_validos,
        &topics.pedidos_recusados,
        sent.accepted.keys(),
        within,
    )
    .await;
    let mut report = Report {
        sent: sent.sent,
        accepted: sent.accepted.len(),
        failures: sent.failures.clone(),
        verdict_records: verdicts.len(),
        ..Report::default()
    };
    let mut by_order: HashMap<String, Vec<String>> = HashMap::new();
    for r in &verdicts {
        by_order
            .entry(field(r, "id"))
            .or_default()
            .push(r.topic.clone());
    }
    for id in sent.accepted.keys() {
        match by_order.get(id) {
            None => report.lost.push(id.clone()),
            Some(topics) => {
                if topics.iter().any(|t| t != &topics[0]) {
                    report.contradictory.push(id.clone());
                }
                report.duplicate_verdicts += topics.len() - 1;
            }
        }
    }

    // notification: every accepted order's verdict told at least once, and its Analise told or
    // held back behind the verdict.
    let verdict_status: HashMap<&String, &str> = verdicts
        .iter()
        .map(|r| {
            (
                sent.accepted.get_key_value(&field(r, "id")).map(|(k, _)| k),
                if r.topic == topics.pedidos_validos {
                    "Aprovado"
                } else {
                    "Recusado"
                },
            )
        })
        .filter_map(|(k, s)| k.map(|k| (k, s)))
        .collect();
    let notifications = loop {
        let found = Notifications::from_log(&notification_logs());
        let complete = sent.accepted.keys().all(|id| {
            found.analise_handled(id)
                && verdict_status
                    .get(id)
                    .is_some_and(|s| found.times_told(id, s) > 0)
        });
        if complete || Instant::now() > deadline {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for id in sent.accepted.keys() {
        let verdict = verdict_status
            .get(id)
            .is_some_and(|s| notifications.times_told(id, s) > 0);
        if !(notifications.analise_handled(id) && verdict) {
            report.not_notified.push(id.clone());
        }
    }
    report.analise_held_back = notifications.held_back.len();
    let told = notifications.told;
    report.notification_repeats = told.values().map(|n| n - 1).sum();

    // monitoring: every record of the four topics in the audit file.
    let mut records: Vec<ConsumedRecord> = verdicts;
    let n = sent.accepted.len();
    records.extend(read_topic(kafka, &topics.pedidos, n, within).await);
    records.extend(read_topic(kafka, &topics.notificacoes, 2 * n, within).await);
    let wanted: HashSet<(String, i32, i64)> = records
        .iter()
        .map(|r| (r.topic.clone(), r.partition, r.offset))
        .collect();
    loop {
        let text = std::fs::read_to_string(audit_file).unwrap_or_default();
        let mut seen: HashMap<(String, i32, i64), usize> = HashMap::new();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let key = (
                v["topic"].as_str().unwrap_or("").to_string(),
                v["partition"].as_i64().unwrap_or(-1) as i32,
                v["offset"].as_i64().unwrap_or(-1),
            );
            *seen.entry(key).or_default() += 1;
        }
        report.not_audited = wanted.iter().filter(|k| !seen.contains_key(*k)).count();
        report.audit_repeats = seen.values().map(|n| n - 1).sum();
        if report.not_audited == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    report
}

/// Every record of the verdict topics `validos` and `recusados`, read again until each order of
/// `ids` has one there, or `within` runs out (then whatever is there: the rest are lost).
pub async fn read_verdicts<'a>(
    kafka: &KafkaConfig,
    validos: &str,
    recusados: &str,
    ids: impl Iterator<Item = &'a String> + Clone,
    within: Duration,
) -> Vec<ConsumedRecord> {
    let deadline = Instant::now() + within;
    let quick = Duration::from_secs(2);
    loop {
        let mut all = read_topic(kafka, validos, 0, quick).await;
        all.extend(read_topic(kafka, recusados, 0, quick).await);
        let found: HashSet<String> = all.iter().map(|r| field(r, "id")).collect();
        if ids.clone().all(|id| found.contains(id)) || Instant::now() > deadline {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn field(record: &ConsumedRecord, name: &str) -> String {
    record.json()[name].as_str().unwrap_or_default().to_string()
}
