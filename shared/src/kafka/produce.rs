//! The mesh's producer, and handing [`OutRecord`]s to it: used by the consumer loop, the API and
//! loadgen.
//!
//! librdkafka reports deliveries on a queue that someone must poll. rust-rdkafka's
//! `FutureProducer` polls it from a thread that calls `poll(100 ms)` in a loop, and
//! `BaseProducer::poll` waits with the remaining time rounded down to whole milliseconds, so it
//! spins through the last millisecond of every call: 1 % of a core per idle producer
//! (BENCHMARKS.md). This producer polls from a thread of its own in calls of [`POLL_WINDOW`]: a
//! delivery report still wakes it at once, and the spin is a thousandth of the time.
//!
//! A producer may hold two librdkafka clients, one sending at once and one lingering to batch;
//! each record goes to one of them by the producer's rate ([`super::pace`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use rdkafka::bindings as rd;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer as _, ProducerContext};
use rdkafka::Message;

use super::pace::Pace;
use super::Context;
use crate::events::OutRecord;

/// How long one call of the polling thread waits for delivery reports. A report ends the wait
/// at once, so this is not a latency; it is how long the thread of a dropped producer lingers.
const POLL_WINDOW: Duration = Duration::from_secs(1);

/// An idempotent, `acks=all` producer (see [`super::producer`]). Cheap to clone: clones share
/// its librdkafka clients.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Clients>,
}

struct Clients {
    /// Takes every record while they trickle (it sends at once); a transactional producer's
    /// only client (it lingers, see [`super::transactional_producer`]).
    prompt: Polled,
    /// Lingers to batch, with the pace that says when to use it.
    batching: Option<(Polled, Mutex<Pace>)>,
}

/// The client and the flag that stops its polling thread once the last handle is gone.
struct Polled {
    base: Arc<BaseProducer<Context>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Polled {
    fn drop(&mut self) {
        // Not joined: the thread ends within POLL_WINDOW, and waiting for it here would block
        // the async runtime. Dropping the client there purges what was never acknowledged, as
        // rust-rdkafka's own producers do.
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Polled {
    /// Starts the thread that serves `base`'s delivery reports.
    fn serve(base: BaseProducer<Context>) -> Self {
        let base = Arc::new(base);
        let stop = Arc::new(AtomicBool::new(false));
        std::thread::Builder::new()
            .name("producer-poll".into())
            .spawn({
                let (base, stop) = (Arc::clone(&base), Arc::clone(&stop));
                move || {
                    while !stop.load(Ordering::Relaxed) {
                        base.poll(POLL_WINDOW);
                    }
                }
            })
            .expect("cannot start the producer's polling thread");
        Self { base, stop }
    }
}

impl Producer {
    pub(super) fn serve(prompt: BaseProducer<Context>) -> Self {
        Self::with_clients(Polled::serve(prompt), None)
    }

    /// `batching` takes the records while this producer sends `above_per_sec` records a second
    /// or more.
    pub(super) fn serve_pacing(
        prompt: BaseProducer<Context>,
        batching: BaseProducer<Context>,
        above_per_sec: u32,
    ) -> Self {
        let pace = Mutex::new(Pace::new(above_per_sec, Instant::now()));
        Self::with_clients(Polled::serve(prompt), Some((Polled::serve(batching), pace)))
    }

    fn with_clients(prompt: Polled, batching: Option<(Polled, Mutex<Pace>)>) -> Self {
        Self {
            inner: Arc::new(Clients { prompt, batching }),
        }
    }

    /// The prompt librdkafka producer, for what [`rdkafka::producer::Producer`] offers
    /// (transactions: a transactional producer has no other client).
    pub fn base(&self) -> &BaseProducer<Context> {
        &self.inner.prompt.base
    }

    /// Waits until every record handed to this producer is acknowledged, sending what lingers
    /// at once. Call it before `commit_transaction`: rust-rdkafka's runs its own `flush` first,
    /// which waits in `poll` calls of up to 100 ms, and the reports that would end them are
    /// taken by this producer's polling thread, so every commit with records outstanding waited
    /// 100 ms. librdkafka's own flush holds the linger off and returns at the last
    /// acknowledgement.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let batching = self.inner.batching.as_ref().map(|(client, _)| client);
        for client in std::iter::once(&self.inner.prompt).chain(batching) {
            // SAFETY: the pointer is that of a live client this producer owns for the whole
            // call; librdkafka's flush may run beside the polling thread's `poll`.
            let err = unsafe { rd::rd_kafka_flush(client.base.client().native_ptr(), timeout_ms) };
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(KafkaError::Flush(err.into()));
            }
        }
        Ok(())
    }

    /// The client this record goes to.
    fn client(&self) -> &BaseProducer<Context> {
        match &self.inner.batching {
            Some((batching, pace)) if pace.lock().unwrap().batch(Instant::now()) => &batching.base,
            _ => &self.inner.prompt.base,
        }
    }

    /// Hands a record to librdkafka's queue; the future resolves with the broker's answer.
    /// Fails at once when the queue is full (`QueueFull`) or the record cannot be sent.
    pub fn send(&self, out: &OutRecord) -> Result<DeliveryFuture, KafkaError> {
        let (tx, rx) = oneshot::channel();
        let mut headers = OwnedHeaders::new_with_capacity(out.headers.len());
        for (key, value) in &out.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_slice()),
            });
        }
        let mut record = BaseRecord::with_opaque_to(&out.topic, Box::new(tx))
            .payload(out.payload.as_slice())
            .headers(headers);
        if let Some(key) = &out.key {
            record = record.key(key.as_slice());
        }
        self.client()
            .send(record)
            .map(|()| DeliveryFuture { rx })
            .map_err(|(e, _)| e)
    }
}

/// Resolves with the broker's answer to one record, as rust-rdkafka's own `DeliveryFuture`
/// does: `Err(Canceled)` only if the producer went away without an answer.
#[must_use = "a delivery says whether the broker took the record"]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<OwnedDeliveryResult>,
}

impl Future for DeliveryFuture {
    type Output = Result<OwnedDeliveryResult, oneshot::Canceled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx)
    }
}

impl ProducerContext for Context {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, result: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match result {
            Ok(message) => Ok(Delivery {
                partition: message.partition(),
                offset: message.offset(),
                timestamp: message.timestamp(),
            }),
            Err((e, message)) => Err((e.clone(), message.detach())),
        };
        // The receiver is gone when its caller stopped waiting: nothing to tell.
        let _ = tx.send(owned);
    }
}

/// Hands a record to the producer's queue, waiting only while the queue is full. Other errors
/// (an unknown topic while metadata catches up, say) are retried after a pause: the caller
/// needs this record produced, not a reason.
pub async fn enqueue(producer: &Producer, out: &OutRecord) -> DeliveryFuture {
    loop {
        match producer.send(out) {
            Ok(delivery) => return delivery,
            Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Err(e) => {
                tracing::warn!(topic = %out.topic, error = %e, "cannot enqueue record; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
