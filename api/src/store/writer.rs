//! The one task that writes to the store: it takes the reader's batches and the POST handlers'
//! orders, merges whatever is waiting into one transaction (a group commit: one commit for many
//! requests), then tells who waits on those orders.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Changes, Store};
use crate::live::Live;

/// Most rows one transaction writes; what is still waiting goes into the next one.
const MAX_ROWS_PER_COMMIT: usize = 5_000;
/// Batches waiting for the writer: beyond this, the reader waits (backpressure).
const QUEUE: usize = 8;
/// Pause after a failed commit before the same batch is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("the order store did not take the write within {0:?}")]
    Timeout(Duration),
    #[error("the order store's writer has stopped")]
    Stopped,
}

struct Job {
    changes: Changes,
    done: Option<oneshot::Sender<()>>,
}

/// A handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

/// Called after every commit with what it wrote (for the reader's progress).
pub type OnCommit = Box<dyn Fn(&Changes) + Send + Sync>;

impl Writer {
    /// Starts the task; it ends once `shutdown` is cancelled and what was queued is written.
    pub fn start(
        store: Store,
        live: Arc<Live>,
        on_commit: OnCommit,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (jobs, queue) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, live, on_commit, queue, shutdown));
        (Self { jobs }, task)
    }

    /// Writes and waits for the commit, up to `within`.
    pub async fn write(&self, changes: Changes, within: Duration) -> Result<(), WriterError> {
        let (done, committed) = oneshot::channel();
        let job = Job {
            changes,
            done: Some(done),
        };
        let sent = async {
            self.jobs
                .send(job)
                .await
                .map_err(|_| WriterError::Stopped)?;
            committed.await.map_err(|_| WriterError::Stopped)
        };
        tokio::time::timeout(within, sent)
            .await
            .map_err(|_| WriterError::Timeout(within))?
    }

    /// Queues a batch without waiting for its commit; waits only while the queue is full.
    pub async fn send(&self, changes: Changes) -> Result<(), WriterError> {
        let job = Job {
            changes,
            done: None,
        };
        self.jobs.send(job).await.map_err(|_| WriterError::Stopped)
    }
}

async fn run(
    store: Store,
    live: Arc<Live>,
    on_commit: OnCommit,
    mut queue: mpsc::Receiver<Job>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            biased;
            job = queue.recv() => job,
            _ = shutdown.cancelled() => {
                // Write what is already queued, then stop.
                queue.close();
                queue.recv().await
            }
        };
        let Some(first) = first else { return };
        let mut changes = first.changes;
        let mut waiting: Vec<oneshot::Sender<()>> = first.done.into_iter().collect();
        while changes.len() < MAX_ROWS_PER_COMMIT {
            match queue.try_recv() {
                Ok(job) => {
                    changes.absorb(job.changes);
                    waiting.extend(job.done);
                }
                Err(_) => break,
            }
        }
        // A batch is never dropped: its offsets would move past rows never written.
        let mut attempt = 0u32;
        while let Err(e) = store.write(&changes).await {
            attempt += 1;
            tracing::warn!(error = %e, attempt, "cannot write the order view; retrying");
            if shutdown.is_cancelled() && attempt >= 3 {
                tracing::error!(
                    "stopping with order view changes unwritten: they will be read again"
                );
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        on_commit(&changes);
        live.changed(changes.touched());
        for done in waiting {
            let _ = done.send(());
        }
    }
}
