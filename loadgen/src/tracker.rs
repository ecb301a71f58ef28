//! The Kafka side of the latency measurement: reads `Notificacoes` (every partition, from its end
//! as it was before the first order is sent) and matches `Analise` and verdict events to the
//! orders this run placed, by `pedidoId`.
//!
//! An event may be read before the 202 that names its order has reached us (the API answers only
//! after the broker acknowledged the `Analise` event), so events of not-yet-known orders are kept
//! for a while and matched when the order is registered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::Message;
use shared::config::Config;
use shared::events::{decode, Status, StatusEvent};
use shared::kafka::{self, Consumer, StartupError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::stats::Latency;
use crate::watermarks;

/// Events of unknown orders older than this are taken to be other clients' and dropped.
const EARLY_EVENT_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error(transparent)]
    Kafka(#[from] StartupError),
    #[error("cannot read the partitions of topic {topic}: {reason}")]
    Partitions { topic: String, reason: String },
}

/// What the tracker measured.
#[derive(Default)]
pub struct Tracked {
    pub post_analise: Latency,
    pub post_verdict: Latency,
    pub analise_seen: u64,
    pub verdicts: u64,
    pub aprovado: u64,
    pub recusado: u64,
    pub last_verdict_at: Option<Instant>,
    /// Orders whose verdict was on the topic before their `Analise` event.
    pub analise_after_verdict: u64,
    /// Events that never matched an order of this run.
    pub foreign_events: u64,
}

/// A running tracker.
pub struct Tracker {
    orders: mpsc::UnboundedSender<(Uuid, Instant)>,
    verdicts: Arc<AtomicU64>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Tracked>,
}

impl Tracker {
    /// Connects, pins every partition of the status topic at its current end, and starts reading.
    /// Returns only once the positions are fixed: every event produced afterwards will be seen.
    pub async fn start(config: &Config) -> Result<Self, TrackerError> {
        kafka::check_connectivity(&config.kafka).await?;
        let topic = config.topics.notificacoes.clone();
        let consumer = Arc::new(kafka::reader(&config.kafka)?);
        let timeout = config.kafka.startup_timeout();
        let unreadable = |e: rdkafka::error::KafkaError| TrackerError::Partitions {
            topic: topic.clone(),
            reason: e.to_string(),
        };
        let mut ends = watermarks::end_offsets(&consumer, &topic, timeout)
            .await
            .map_err(unreadable)?;
        if ends.is_empty() {
            // A fresh cluster: create the mesh's topics as the daemons would.
            kafka::ensure_topics(&config.kafka, &config.topics).await?;
            ends = watermarks::end_offsets(&consumer, &topic, timeout)
                .await
                .map_err(unreadable)?;
        }
        if ends.is_empty() {
            return Err(TrackerError::Partitions {
                topic,
                reason: "the topic has no partitions".into(),
            });
        }
        watermarks::assign_at(&consumer, &topic, &ends).map_err(StartupError::Client)?;

        let (orders, registrations) = mpsc::unbounded_channel();
        let verdicts = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn(track(
            consumer,
            registrations,
            verdicts.clone(),
            stop.clone(),
        ));
        Ok(Self {
            orders,
            verdicts,
            stop,
            task,
        })
    }

    /// A handle for registering accepted orders.
    pub fn registrar(&self) -> Registrar {
        Registrar(self.orders.clone())
    }

    /// Verdicts matched so far.
    pub fn verdicts(&self) -> Arc<AtomicU64> {
        self.verdicts.clone()
    }

    /// Waits until `expected` verdicts were matched or `timeout` passed.
    pub async fn wait_for_verdicts(&self, expected: impl Fn() -> u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.verdicts.load(Ordering::Relaxed) < expected()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops reading and hands back the measurements.
    pub async fn finish(self) -> Tracked {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// Registers accepted orders with the tracker: the order id and when its POST was sent.
#[derive(Clone)]
pub struct Registrar(mpsc::UnboundedSender<(Uuid, Instant)>);

impl Registrar {
    pub fn register(&self, id: Uuid, sent_at: Instant) {
        // The tracker outlives every sender; a closed channel only means it was stopped early.
        let _ = self.0.send((id, sent_at));
    }
}

/// Status events seen for an order not registered yet.
#[derive(Default)]
struct Early {
    first_seen: Option<Instant>,
    analise: Option<Instant>,
    verdict: Option<(Instant, Status)>,
}

/// The matching state, apart from any I/O, so the rules are testable.
#[derive(Default)]
struct Matcher {
    /// Registered orders still waiting for their verdict: when the POST was sent, and whether
    /// their `Analise` was seen.
    waiting: HashMap<Uuid, (Instant, bool)>,
    /// Registered orders whose verdict came before their `Analise`: when the POST was sent.
    verdict_first: HashMap<Uuid, Instant>,
    early: HashMap<Uuid, Early>,
    out: Tracked,
}

impl Matcher {
    fn register(&mut self, id: Uuid, sent_at: Instant) {
        let mut analise_seen = false;
        if let Some(early) = self.early.remove(&id) {
            if let Some(at) = early.analise {
                self.analise(at.saturating_duration_since(sent_at));
                analise_seen = true;
            }
            if let Some((at, status)) = early.verdict {
                self.verdict(at.saturating_duration_since(sent_at), status, at);
                match early.analise {
                    Some(analise_at) if analise_at > at => self.out.analise_after_verdict += 1,
                    Some(_) => {}
                    None => {
                        self.verdict_first.insert(id, sent_at);
                    }
                }
                return;
            }
        }
        self.waiting.insert(id, (sent_at, analise_seen));
    }

    fn event(&mut self, id: Uuid, status: Status, now: Instant) {
        if !status.is_final() {
            if let Some(sent_at) = self.verdict_first.remove(&id) {
                self.out.analise_after_verdict += 1;
                self.analise(now.saturating_duration_since(sent_at));
                return;
            }
        }
        match self.waiting.get_mut(&id) {
            Some((sent_at, analise_seen)) => {
                let latency = now.saturating_duration_since(*sent_at);
                if status.is_final() {
                    let (sent_at, analise_seen) = (*sent_at, *analise_seen);
                    self.waiting.remove(&id);
                    if !analise_seen {
                        self.verdict_first.insert(id, sent_at);
                    }
                    self.verdict(latency, status, now);
                } else if !*analise_seen {
                    *analise_seen = true;
                    self.analise(latency);
                }
            }
            None => {
                let early = self.early.entry(id).or_default();
                early.first_seen.get_or_insert(now);
                if status.is_final() {
                    early.verdict.get_or_insert((now, status));
                } else {
                    early.analise.get_or_insert(now);
                }
            }
        }
    }

    fn analise(&mut self, latency: Duration) {
        self.out.analise_seen += 1;
        self.out.post_analise.record(latency);
    }

    fn verdict(&mut self, latency: Duration, status: Status, at: Instant) {
        self.out.verdicts += 1;
        match status {
            Status::Aprovado => self.out.aprovado += 1,
            _ => self.out.recusado += 1,
        }
        self.out.post_verdict.record(latency);
        self.out.last_verdict_at = Some(self.out.last_verdict_at.map_or(at, |t| t.max(at)));
    }

    /// Drops unmatched events older than `ttl`.
    fn prune(&mut self, now: Instant, ttl: Duration) {
        let before = self.early.len();
        self.early.retain(|_, e| match e.first_seen {
            Some(t) => now.saturating_duration_since(t) < ttl,
            None => true,
        });
        self.out.foreign_events += (before - self.early.len()) as u64;
    }

    fn finish(mut self) -> Tracked {
        self.out.foreign_events += self.early.len() as u64;
        self.out
    }
}

async fn track(
    consumer: Arc<Consumer>,
    mut registrations: mpsc::UnboundedReceiver<(Uuid, Instant)>,
    verdicts: Arc<AtomicU64>,
    stop: CancellationToken,
) -> Tracked {
    let mut m = Matcher::default();
    let mut prune = tokio::time::interval(Duration::from_secs(5));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some((id, sent_at)) = registrations.recv() => m.register(id, sent_at),
            received = consumer.recv() => {
                let now = Instant::now();
                let message = match received {
                    Ok(message) => message,
                    Err(e) => {
                        tracing::warn!(error = %e, "status topic read error");
                        continue;
                    }
                };
                if let Ok(event) = decode::<StatusEvent>(message.payload()) {
                    m.event(event.pedido_id, event.status, now);
                }
            }
            _ = prune.tick() => m.prune(Instant::now(), EARLY_EVENT_TTL),
        }
        verdicts.store(m.out.verdicts, Ordering::Relaxed);
    }
    // Orders registered just before the stop.
    while let Ok((id, sent_at)) = registrations.try_recv() {
        m.register(id, sent_at);
    }
    m.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn events_after_registration_are_timed_from_the_post() {
        let t0 = Instant::now();
        let id = Uuid::new_v4();
        let mut m = Matcher::default();
        m.register(id, t0);
        m.event(id, Status::Analise, t0 + ms(3));
        m.event(id, Status::Aprovado, t0 + ms(10));
        let out = m.finish();
        assert_eq!((out.analise_seen, out.verdicts, out.aprovado), (1, 1, 1));
        assert!((out.post_analise.summary().max_ms - 3.0).abs() < 0.01);
        assert!((out.post_verdict.summary().max_ms - 10.0).abs() < 0.02);
        assert_eq!(out.foreign_events, 0);
    }

    #[test]
    fn events_read_before_the_202_are_matched_later() {
        let t0 = Instant::now();
        let id = Uuid::new_v4();
        let mut m = Matcher::default();
        m.event(id, Status::Analise, t0 + ms(2));
        m.event(id, Status::Recusado, t0 + ms(5));
        m.register(id, t0);
        let out = m.finish();
        assert_eq!((out.analise_seen, out.verdicts, out.recusado), (1, 1, 1));
        assert!((out.post_verdict.summary().max_ms - 5.0).abs() < 0.01);
        assert_eq!(out.foreign_events, 0);
    }

    #[test]
    fn only_analise_early_then_verdict_after_registration() {
        let t0 = Instant::now();
        let id = Uuid::new_v4();
        let mut m = Matcher::default();
        m.event(id, Status::Analise, t0 + ms(2));
        m.register(id, t0);
        m.event(id, Status::Aprovado, t0 + ms(8));
        let out = m.finish();
        assert_eq!((out.analise_seen, out.verdicts), (1, 1));
    }

    #[test]
    fn a_verdict_before_its_analise_is_counted_and_both_are_timed() {
        let t0 = Instant::now();
        let (late, early) = (Uuid::new_v4(), Uuid::new_v4());
        let mut m = Matcher::default();
        // Registered first, then the verdict, then the Analise.
        m.register(late, t0);
        m.event(late, Status::Aprovado, t0 + ms(5));
        m.event(late, Status::Analise, t0 + ms(7));
        // Both read before the 202, verdict first.
        m.event(early, Status::Recusado, t0 + ms(4));
        m.event(early, Status::Analise, t0 + ms(6));
        m.register(early, t0);
        let out = m.finish();
        assert_eq!(out.verdicts, 2);
        assert_eq!(out.analise_seen, 2);
        assert_eq!(out.analise_after_verdict, 2);
        assert_eq!(out.foreign_events, 0);
    }

    #[test]
    fn verdict_before_registration_then_analise_after_it() {
        let t0 = Instant::now();
        let id = Uuid::new_v4();
        let mut m = Matcher::default();
        m.event(id, Status::Aprovado, t0 + ms(4));
        m.register(id, t0);
        m.event(id, Status::Analise, t0 + ms(6));
        let out = m.finish();
        assert_eq!(
            (out.verdicts, out.analise_seen, out.analise_after_verdict),
            (1, 1, 1)
        );
    }

    #[test]
    fn replayed_events_count_once() {
        let t0 = Instant::now();
        let id = Uuid::new_v4();
        let mut m = Matcher::default();
        m.register(id, t0);
        m.event(id, Status::Analise, t0 + ms(1));
        m.event(id, Status::Analise, t0 + ms(2));
        m.event(id, Status::Aprovado, t0 + ms(3));
        m.event(id, Status::Aprovado, t0 + ms(4));
        let out = m.finish();
        assert_eq!((out.analise_seen, out.verdicts), (1, 1));
        // The replay arrived after the order was done: it matches nothing.
        assert_eq!(out.foreign_events, 1);
    }

    #[test]
    fn other_clients_events_are_pruned_and_counted() {
        let t0 = Instant::now();
        let mut m = Matcher::default();
        m.event(Uuid::new_v4(), Status::Analise, t0);
        m.event(Uuid::new_v4(), Status::Aprovado, t0 + ms(50));
        m.prune(t0 + ms(60), ms(30));
        assert_eq!(m.early.len(), 1);
        assert_eq!(m.out.foreign_events, 1);
        let out = m.finish();
        assert_eq!(out.foreign_events, 2);
        assert_eq!(out.verdicts, 0);
    }

    #[test]
    fn registered_orders_without_events_are_missing_not_counted() {
        let mut m = Matcher::default();
        m.register(Uuid::new_v4(), Instant::now());
        let out = m.finish();
        assert_eq!((out.analise_seen, out.verdicts), (0, 0));
    }
}
