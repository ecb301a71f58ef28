//! The view's retention (`api.view_retention_days`, off by default): every
//! `api.view_prune_interval_secs`, orders that have their verdict and are older than the
//! retention leave the store, a bounded batch per transaction with a pause between batches, so
//! the writer (and with it a POST on the shared store) waits at most one small batch. Orders
//! still in `Analise` and the offsets stay. See `Store::prune`.

use std::sync::LazyLock;
use std::time::Duration;

use chrono::Utc;
use shared::metrics::prometheus::IntCounter;
use tokio_util::sync::CancellationToken;

use super::store::Store;

/// Orders one transaction prunes.
const BATCH: u32 = 100;
/// Pause between two batches: the writer's commits go between them.
const PAUSE: Duration = Duration::from_millis(20);

static PRUNED: LazyLock<IntCounter> = LazyLock::new(|| {
    shared::metrics::counter(
        "pedidos_order_view_pruned_total",
        "Orders pruned from the order view by its retention (api.view_retention_days).",
    )
});

/// Starts pruning `store` every `every`, orders older than `retention`, until `shutdown`.
pub(super) fn start(
    store: Store,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    LazyLock::force(&PRUNED);
    tracing::info!(
        retention_days = retention.as_secs() / 86_400,
        every_secs = every.as_secs(),
        "order view retention: pruning orders with their verdict once older than the retention"
    );
    tokio::spawn(async move {
        loop {
            prune_past(&store, retention, &shutdown).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
        }
    })
}

/// One pass: batches until none is left (or the store fails: the next pass tries again);
/// returns how many orders it pruned.
pub async fn prune_past(store: &Store, retention: Duration, shutdown: &CancellationToken) -> u64 {
    let cutoff =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::TimeDelta::MAX);
    let mut pruned = 0u64;
    while !shutdown.is_cancelled() {
        match store.prune(cutoff, BATCH).await {
            Ok(0) => break,
            Ok(n) => {
                pruned += n;
                PRUNED.inc_by(n);
                tokio::time::sleep(PAUSE).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot prune the order view; trying again at the next pass");
                break;
            }
        }
    }
    if pruned > 0 {
        tracing::info!(pruned, cutoff = %cutoff, "order view: pruned orders past the retention");
    }
    pruned
}
