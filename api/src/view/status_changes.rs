//! An order's status changes as a stream: what `GET /pedidos/{id}/eventos` sends.

use std::collections::{HashSet, VecDeque};

use futures::stream::{self, BoxStream, StreamExt as _};
use uuid::Uuid;

use super::live::Watch;
use super::{HistoryEntry, OrderView, ViewHandle};

struct Progress {
    view: ViewHandle,
    watch: Watch,
    id: Uuid,
    pending: VecDeque<HistoryEntry>,
    sent: HashSet<Uuid>,
    /// A verdict is sent: end once `pending` is empty.
    done: bool,
}

/// The history of `current` after the event `after` (all of it when `after` is not in it), then
/// each new event as the store takes it in; ends once the verdict is sent.
pub(super) fn after(
    view: ViewHandle,
    current: OrderView,
    after: Option<Uuid>,
) -> BoxStream<'static, HistoryEntry> {
    let watch = view.live.watch(current.id);
    let seen_up_to = after.and_then(|a| current.history.iter().position(|h| h.evento_id == a));
    let mut progress = Progress {
        view,
        watch,
        id: current.id,
        pending: VecDeque::new(),
        sent: HashSet::new(),
        done: false,
    };
    for (i, entry) in current.history.into_iter().enumerate() {
        if seen_up_to.is_some_and(|last| i <= last) {
            progress.done |= entry.status.is_final();
            progress.sent.insert(entry.evento_id);
        } else {
            progress.pending.push_back(entry);
        }
    }
    stream::unfold(progress, next).boxed()
}

async fn next(mut p: Progress) -> Option<(HistoryEntry, Progress)> {
    loop {
        if let Some(entry) = p.pending.pop_front() {
            p.sent.insert(entry.evento_id);
            p.done |= entry.status.is_final();
            return Some((entry, p));
        }
        if p.done {
            return None;
        }
        // Armed before reading, so a change committed in between is not missed.
        let changed = p.watch.armed();
        let fresh = match p.view.store.get(p.id).await {
            Ok(fresh) => fresh?,
            Err(e) => {
                tracing::warn!(pedido = %p.id, error = %e, "event stream ends: store unavailable");
                return None;
            }
        };
        let new: Vec<HistoryEntry> = fresh
            .history
            .into_iter()
            .filter(|h| !p.sent.contains(&h.evento_id))
            .collect();
        if new.is_empty() {
            changed.await;
        } else {
            drop(changed);
            p.pending.extend(new);
        }
    }
}
