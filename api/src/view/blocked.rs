//! Whether the store takes writes right now. While it does not (a full disk, a PostgreSQL that
//! refuses writes), the writer retries the same batch, `/ready` answers 503 naming the store
//! and its error, the gauge `pedidos_order_store_write_blocked` is 1, and the API places no
//! order (see `Orders::place`): a 202 promises that a GET, or a retried `Idempotency-Key`,
//! finds the order, which a store that cannot write cannot keep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use shared::metrics::prometheus::IntGauge;
use shared::metrics::readiness::ClientHealth;

use super::store::StoreError;

/// How often a write that keeps failing is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(30);

static BLOCKED: LazyLock<IntGauge> = LazyLock::new(|| {
    shared::metrics::gauge(
        "pedidos_order_store_write_blocked",
        "1 while the order view's store refuses writes (a full disk, say): no order is placed \
         and the view does not move until it takes them again.",
    )
});

/// Registers the gauge up front, so it is scraped (at zero) before any failure.
pub(super) fn register_metrics() {
    LazyLock::force(&BLOCKED);
}

/// The store's write state, shared by the writer (which sets it) and the readers of the view.
pub struct WriteBlocked {
    store: String,
    blocked: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    reason: Option<String>,
    since: Option<Instant>,
    last_logged: Option<Instant>,
    /// Registered while blocked: `/ready` then answers 503 naming the store and the error.
    not_ready: Option<Arc<ClientHealth>>,
}

impl WriteBlocked {
    /// `store` is the store's label (`api.store_url` without credentials).
    pub fn new(store: String) -> Self {
        Self {
            store,
            blocked: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    /// The error that stops writes, while they are stopped.
    pub fn check(&self) -> Result<(), StoreError> {
        if !self.blocked.load(Ordering::Acquire) {
            return Ok(());
        }
        let state = self.state.lock().unwrap();
        match &state.reason {
            Some(reason) => Err(StoreError::CannotWrite {
                store: self.store.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// A write failed with `error`; `attempt` counts this batch's failures.
    pub fn failed(&self, error: &StoreError, attempt: u32) {
        let mut state = self.state.lock().unwrap();
        let reason = match error {
            StoreError::Query(e) => e.to_string(),
            other => other.to_string(),
        };
        let now = Instant::now();
        if state.reason.as_deref() != Some(reason.as_str()) {
            let health = ClientHealth::register_dependency(&format!(
                "order store {} cannot be written ({reason})",
                self.store
            ));
            health.set_reachable(false);
            state.not_ready = Some(health);
            state.reason = Some(reason);
        }
        let since = *state.since.get_or_insert(now);
        let remind = state
            .last_logged
            .is_none_or(|at| now.duration_since(at) >= REMIND_EVERY);
        if remind {
            state.last_logged = Some(now);
            tracing::error!(
                store = %self.store,
                error = %error,
                attempt,
                blocked_secs = since.elapsed().as_secs(),
                "cannot write the order view: no order is placed until it can; retrying"
            );
        }
        self.blocked.store(true, Ordering::Release);
        BLOCKED.set(1);
    }

    /// A write went through.
    pub fn cleared(&self) {
        if !self.blocked.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().unwrap();
        let since = state.since.take();
        *state = State::default();
        self.blocked.store(false, Ordering::Release);
        BLOCKED.set(0);
        tracing::info!(
            store = %self.store,
            blocked_ms = since.map_or(0, |s| s.elapsed().as_millis() as u64),
            "the order view's store takes writes again; placing orders again"
        );
    }
}
