//! The one task that writes to the store: it takes the POST handlers' orders and the reader's
//! batches, merges whatever is waiting into one transaction (a group commit: one commit for many
//! requests), then tells who waits on those orders. POSTs go first: a GET may wait on each,
//! while the reader's batches only move the view along.
//!
//! When a POST's 202 waits for its commit depends on the store. A shared one (PostgreSQL) may
//! be read next by another instance, so the 202 waits. The embedded one serves this instance
//! alone: the 202 goes out once the order is queued, and a read of an order still queued waits
//! for its commit instead ([`Unwritten`]). The order is on the broker either way, so a crash
//! before the commit loses nothing: the reader writes it from `Pedidos`.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use shared::metrics::prometheus::Histogram;

use super::blocked::WriteBlocked;
use super::live::Live;
use super::store::Store;
use super::{Changes, Posted, Unwritten};

/// Most rows one transaction writes; what is still waiting goes into the next one.
const MAX_ROWS_PER_COMMIT: usize = 5_000;
/// The reader's batches waiting for the writer: beyond this, the reader waits (backpressure).
const BATCH_QUEUE: usize = 8;
/// POSTs waiting for the writer; each holds a request open, so HTTP concurrency bounds them.
const POST_QUEUE: usize = 1_024;
/// How long a commit that starts with a POST waits for more POSTs to join it, when the POST
/// waits for that commit (a shared store).
const POST_LINGER: Duration = Duration::from_millis(1);
/// How long a commit that starts with a POST waits for the reader's next batch to join it, when
/// nothing but a GET may wait on it (the embedded store): a little more than the reader's fetch
/// wait (`shared::kafka::BRIEF_FETCH_WAIT_MS`), so at a light load a POST's order rides in the
/// reader's next commit rather than costing one of its own (BENCHMARKS.md, issue 26).
const POST_LINGER_FOR_BATCH: Duration = Duration::from_millis(25);
/// Pause after a failed commit before the same batch is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Each of the writer's transactions: how long the store took it, from the first attempt to the
/// commit (a retry's pause included). What a POST waits for on PostgreSQL, a GET right after a
/// 202 on SQLite.
static COMMIT: LazyLock<Histogram> = LazyLock::new(|| {
    shared::metrics::histogram(
        "pedidos_order_store_commit_duration_seconds",
        "One write of the order view (one transaction): from its first attempt to its commit.",
    )
});

/// Registers the writer's metrics up front, so they are scraped (at zero) before any write.
pub(super) fn register_metrics() {
    LazyLock::force(&COMMIT);
    super::blocked::register_metrics();
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("the order store did not take the write within {0:?}")]
    Timeout(Duration),
    #[error("the order store's writer has stopped")]
    Stopped,
}

struct Job {
    changes: Changes,
    /// A POST's order, rather than a batch the reader read.
    post: bool,
    done: Option<oneshot::Sender<()>>,
}

/// A handle to the writer task. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    posts: mpsc::Sender<Job>,
    batches: mpsc::Sender<Job>,
    /// Whether a POST waits for its order's commit (a shared store) or only for its queueing.
    post_waits_for_commit: bool,
    unwritten: Arc<Unwritten>,
    blocked: Arc<WriteBlocked>,
}

/// Called after every commit with what it wrote (for the reader's progress).
pub type OnCommit = Box<dyn Fn(&Changes) + Send + Sync>;

impl Writer {
    /// Starts the task; it ends once `shutdown` is cancelled and what was queued is written.
    pub fn start(
        store: Store,
        live: Arc<Live>,
        posted: Arc<Posted>,
        on_commit: OnCommit,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let linger = match store.is_shared() {
            true => Linger::ForPosts(POST_LINGER),
            false => Linger::ForBatch(POST_LINGER_FOR_BATCH),
        };
        Self::start_lingering(store, live, posted, on_commit, linger, shutdown)
    }

    fn start_lingering(
        store: Store,
        live: Arc<Live>,
        posted: Arc<Posted>,
        on_commit: OnCommit,
        linger: Linger,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (posts, post_queue) = mpsc::channel(POST_QUEUE);
        let (batches, batch_queue) = mpsc::channel(BATCH_QUEUE);
        let queues = Queues {
            posts: post_queue,
            batches: batch_queue,
        };
        let post_waits_for_commit = matches!(linger, Linger::ForPosts(_));
        let unwritten = Arc::new(Unwritten::default());
        let blocked = Arc::new(WriteBlocked::new(store.label().to_string()));
        let committed = Committed {
            live,
            posted,
            unwritten: unwritten.clone(),
            on_commit,
        };
        let task = tokio::spawn(run(
            store,
            committed,
            queues,
            linger,
            blocked.clone(),
            shutdown,
        ));
        let writer = Self {
            posts,
            batches,
            post_waits_for_commit,
            unwritten,
            blocked,
        };
        (writer, task)
    }

    /// Writes a POST's order and its `Analise`, ahead of the reader's batches, and waits up to
    /// `within` for the commit on a shared store, for a place in the queue on the embedded one.
    /// Once committed, the reader skips them when it reads them back. Until some commit writes
    /// the order (this one, or the reader's if this one never comes), a read of it here waits
    /// for it ([`Unwritten`]) rather than answering that it does not exist.
    pub async fn post(&self, changes: Changes, within: Duration) -> Result<(), WriterError> {
        self.unwritten.add(&changes);
        let (done, committed) = match self.post_waits_for_commit {
            true => {
                let (done, committed) = oneshot::channel();
                (Some(done), Some(committed))
            }
            false => (None, None),
        };
        let job = Job {
            changes,
            post: true,
            done,
        };
        let sent = async {
            self.posts
                .send(job)
                .await
                .map_err(|_| WriterError::Stopped)?;
            match committed {
                Some(committed) => committed.await.map_err(|_| WriterError::Stopped),
                None => Ok(()),
            }
        };
        tokio::time::timeout(within, sent)
            .await
            .map_err(|_| WriterError::Timeout(within))
            .and_then(|sent| sent)
    }

    /// Whether the store takes writes now.
    pub fn blocked(&self) -> &WriteBlocked {
        &self.blocked
    }

    /// The orders POSTed here and not yet committed.
    pub fn unwritten(&self) -> &Unwritten {
        &self.unwritten
    }

    /// Queues a batch without waiting for its commit; waits only while the queue is full.
    pub async fn send(&self, changes: Changes) -> Result<(), WriterError> {
        let job = Job {
            changes,
            post: false,
            done: None,
        };
        self.batches
            .send(job)
            .await
            .map_err(|_| WriterError::Stopped)
    }
}

/// What a commit that starts with a POST waits for before it is written.
#[derive(Clone, Copy)]
enum Linger {
    /// More POSTs, up to this long: each of them waits for the commit.
    ForPosts(Duration),
    /// The reader's next batch, up to this long; POSTs queued meanwhile join without waking the
    /// writer.
    ForBatch(Duration),
}

struct Queues {
    posts: mpsc::Receiver<Job>,
    batches: mpsc::Receiver<Job>,
}

impl Queues {
    /// The next job, POSTs first; `None` once both queues are closed and empty.
    async fn next(&mut self, shutdown: &CancellationToken) -> Option<Job> {
        if !shutdown.is_cancelled() {
            tokio::select! {
                biased;
                Some(job) = self.posts.recv() => return Some(job),
                Some(job) = self.batches.recv() => return Some(job),
                _ = shutdown.cancelled() => {}
            }
        }
        // Stopping: write what is already queued, then stop.
        self.posts.close();
        self.batches.close();
        match self.posts.recv().await {
            Some(job) => Some(job),
            None => self.batches.recv().await,
        }
    }

    /// The job that a linger begun at `started` waits for, if it comes in time.
    async fn lingered(&mut self, linger: Linger, started: tokio::time::Instant) -> Option<Job> {
        let next = match linger {
            Linger::ForPosts(wait) => tokio::time::timeout_at(started + wait, self.posts.recv()),
            Linger::ForBatch(wait) => tokio::time::timeout_at(started + wait, self.batches.recv()),
        };
        next.await.ok().flatten()
    }

    /// A job that is ready now, POSTs first.
    fn ready(&mut self) -> Option<Job> {
        self.posts
            .try_recv()
            .or_else(|_| self.batches.try_recv())
            .ok()
    }
}

/// Who hears of a commit.
struct Committed {
    live: Arc<Live>,
    posted: Arc<Posted>,
    unwritten: Arc<Unwritten>,
    on_commit: OnCommit,
}

async fn run(
    store: Store,
    committed: Committed,
    mut queues: Queues,
    linger: Linger,
    blocked: Arc<WriteBlocked>,
    shutdown: CancellationToken,
) {
    let mut conn = store.write_connection();
    loop {
        let Some(first) = queues.next(&shutdown).await else {
            return;
        };
        let mut changes = Changes::default();
        let mut posts: Vec<uuid::Uuid> = Vec::new();
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        // A commit that starts with a POST waits a moment for more (see `Linger`): commits cost
        // the same however few rows they hold, and whoever waits on it (a 202 on the shared
        // store, a GET on the embedded one) waits mostly on the broker anyway. A reader's batch
        // ends the wait: the view moves on at once.
        let mut lingering = first.post.then(tokio::time::Instant::now);
        let mut next = Some(first);
        while let Some(job) = next.take() {
            if job.post {
                posts.extend(job.changes.touched().copied());
            } else {
                lingering = None;
            }
            if changes.is_empty() {
                changes = job.changes;
            } else {
                changes.absorb(job.changes);
            }
            waiting.extend(job.done);
            if changes.len() < MAX_ROWS_PER_COMMIT {
                next = queues.ready();
                if let (None, Some(started)) = (&next, lingering) {
                    next = queues.lingered(linger, started).await;
                    if next.is_none() {
                        // Waited out: what was queued meanwhile joins, then the commit.
                        lingering = None;
                        next = queues.ready();
                    }
                }
            }
        }
        // A batch is never dropped: its offsets would move past rows never written.
        let mut attempt = 0u32;
        let started = Instant::now();
        // Retried as it is: what the reader and POSTs queue meanwhile waits (the reader stops
        // reading once its queue is full), so nothing is held in memory beyond the queues.
        while let Err(e) = conn.write(&changes).await {
            attempt += 1;
            blocked.failed(&e, attempt);
            if shutdown.is_cancelled() && attempt >= 3 {
                tracing::error!(
                    "stopping with order view changes unwritten: they will be read again"
                );
                return;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
        COMMIT.observe(started.elapsed().as_secs_f64());
        blocked.cleared();
        // Off the unwritten set before the waiters wake, so they find the rows: every part of
        // an order this commit wrote, whoever queued it.
        committed.unwritten.written(&changes);
        committed.posted.insert(posts);
        (committed.on_commit)(&changes);
        committed.live.changed(changes.touched());
        for done in waiting {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;
    use shared::config::{ApiConfig, Secret};
    use shared::events::{Order, StatusEvent};
    use tempfile::TempDir;

    use super::*;

    /// What a POST writes: an order and its `Analise`.
    fn posted() -> Changes {
        let order = Order::new("ana", "livro", 1, Decimal::ONE);
        Changes::accepted(&order, &StatusEvent::received(&order))
    }

    /// A reader's batch: another order, read up to an offset.
    fn read(offset: i64) -> Changes {
        let mut changes = posted();
        changes.read_up_to("Pedidos", 0, offset);
        changes
    }

    /// A writer on a fresh SQLite file, lingering as told, and the orders each of its commits
    /// wrote, as they come.
    async fn writer(linger: Linger) -> (Writer, mpsc::UnboundedReceiver<usize>, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let api = ApiConfig {
            store_url: Secret::new(format!("sqlite:{}", dir.path().join("view.db").display())),
            ..ApiConfig::default()
        };
        let store = Store::open(&api).await.unwrap();
        let (tx, commits) = mpsc::unbounded_channel();
        let on_commit: OnCommit = Box::new(move |changes| {
            let _ = tx.send(changes.touched().count());
        });
        let (writer, _task) = Writer::start_lingering(
            store,
            Arc::default(),
            Arc::default(),
            on_commit,
            linger,
            CancellationToken::new(),
        );
        (writer, commits, dir)
    }

    const LONG: Duration = Duration::from_secs(3600);
    const WITHIN: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn on_the_embedded_store_a_post_rides_in_the_readers_next_commit() {
        let (writer, mut commits, _dir) = writer(Linger::ForBatch(LONG)).await;
        writer.post(posted(), WITHIN).await.unwrap();
        // The writer takes the POST and lingers (this runtime has one thread: it runs now).
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        writer.send(read(1)).await.unwrap();
        let commit = tokio::time::timeout(WITHIN, commits.recv()).await;
        assert_eq!(
            commit.expect("committed as the batch came, not at the end of the linger"),
            Some(2),
            "the POST's order and the batch's in one commit"
        );
    }

    #[tokio::test]
    async fn a_post_is_written_once_its_linger_is_over_without_a_batch() {
        for linger in [
            Linger::ForBatch(POST_LINGER_FOR_BATCH),
            Linger::ForPosts(POST_LINGER),
        ] {
            let (writer, mut commits, _dir) = writer(linger).await;
            let changes = posted();
            let id = *changes.touched().next().unwrap();
            writer.post(changes, WITHIN).await.unwrap();
            assert_eq!(commits.recv().await, Some(1));
            assert!(!writer.unwritten().contains(id));
        }
    }
}
