//! Who waits on which order: long-polls and event streams register here, and the store's writer
//! wakes exactly those whose order a commit touched. A waiter costs a map entry and a task
//! parked on a [`Notify`], never a thread.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;
use uuid::Uuid;

#[derive(Default)]
pub struct Live {
    watched: Mutex<HashMap<Uuid, Arc<Notify>>>,
}

impl Live {
    /// Starts watching `id` until the returned [`Watch`] is dropped.
    pub fn watch(self: &Arc<Self>, id: Uuid) -> Watch {
        let notify = self.watched.lock().unwrap().entry(id).or_default().clone();
        Watch {
            live: self.clone(),
            id,
            notify,
        }
    }

    /// Wakes every waiter on these orders.
    pub fn changed<'a>(&self, ids: impl Iterator<Item = &'a Uuid>) {
        let watched = self.watched.lock().unwrap();
        if watched.is_empty() {
            return;
        }
        for id in ids {
            if let Some(notify) = watched.get(id) {
                notify.notify_waiters();
            }
        }
    }

    /// How many orders someone is waiting on.
    #[cfg(test)]
    fn watched(&self) -> usize {
        self.watched.lock().unwrap().len()
    }
}

/// A registration to be woken when an order changes.
pub struct Watch {
    live: Arc<Live>,
    id: Uuid,
    notify: Arc<Notify>,
}

impl Watch {
    /// A wake-up armed now: a change committed after this call is not missed, even if it lands
    /// before the caller awaits it. Arm it, then read the store, then await.
    pub fn armed(&self) -> std::pin::Pin<Box<Notified<'_>>> {
        let mut notified = Box::pin(self.notify.notified());
        notified.as_mut().enable();
        notified
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watched = self.live.watched.lock().unwrap();
        // The map's reference and ours: no one else waits on this order.
        if Arc::strong_count(&self.notify) == 2 {
            watched.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_change_after_arming_wakes_the_waiter_and_others_do_not() {
        let live = Arc::new(Live::default());
        let (mine, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let watch = live.watch(mine);
        let woken = watch.armed();
        live.changed([other].iter());
        let early = tokio::time::timeout(Duration::from_millis(50), watch.armed()).await;
        assert!(early.is_err(), "another order's change must not wake it");
        // Committed after arming, before awaiting: not lost.
        live.changed([mine].iter());
        tokio::time::timeout(Duration::from_secs(5), woken)
            .await
            .expect("woken by its order's change");
    }

    #[test]
    fn the_last_watch_dropped_forgets_the_order() {
        let live = Arc::new(Live::default());
        let id = Uuid::from_u128(1);
        let (a, b) = (live.watch(id), live.watch(id));
        assert_eq!(live.watched(), 1);
        drop(a);
        assert_eq!(live.watched(), 1, "b still waits");
        drop(b);
        assert_eq!(live.watched(), 0);
    }
}
