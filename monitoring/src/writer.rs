//! The audit writer: a thread that appends the lines handed to it in batches (one `write` for
//! many lines), rotating the file as configured, and acknowledges each line once it is in the
//! file — only then may the consumer loop store its record's offset.
//!
//! While the file cannot be written (a full disk, a lost permission), it retries and
//! acknowledges nothing: no offset is stored, the loop stops taking records once
//! `monitoring.max_in_flight` wait, `/ready` answers 503 naming the file, and
//! `pedidos_audit_write_blocked` is 1. It keeps how much of a batch already reached the file,
//! so once space returns it goes on from there: no gap, no repeated or torn line.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shared::metrics::readiness::ClientHealth;
use tokio::sync::{mpsc, oneshot};

use crate::audit::AuditEntry;
use crate::audit_file::{AuditFile, Reason, Rotation};
use crate::metrics;

/// Lines taken into one batch, at most.
const BATCH_LINES: usize = 10_000;
/// While blocked, how often the error is logged again.
const REMIND_EVERY: Duration = Duration::from_secs(30);

enum Request {
    /// A line (with its newline) and who waits for it to be in the file.
    Line(Vec<u8>, oneshot::Sender<()>),
    /// Open the file at its path again (SIGHUP).
    Reopen,
}

/// Hands lines to the writer thread; each line's receiver fires once it is in the file.
#[derive(Clone)]
pub struct AuditWriter {
    requests: mpsc::UnboundedSender<Request>,
}

/// Asks the writer to reopen its file, without keeping the writer alive.
pub struct Reopener(mpsc::WeakUnboundedSender<Request>);

impl Reopener {
    /// `false` once the writer is gone.
    pub fn reopen(&self) -> bool {
        self.0
            .upgrade()
            .is_some_and(|w| w.send(Request::Reopen).is_ok())
    }
}

impl AuditWriter {
    /// Opens (creating, appending) the file, cutting off a torn last line a crash left, and
    /// starts the writer thread. The thread ends once every `AuditWriter` is dropped and what
    /// they queued is written (or, if the file cannot be written then, abandoned unacknowledged).
    pub fn open(
        path: &Path,
        rotation: Rotation,
        fsync: bool,
    ) -> io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (file, cut) = AuditFile::open(path, rotation, fsync)?;
        if cut > 0 {
            tracing::warn!(
                file = %path.display(),
                bytes = cut,
                "cut off a torn last line of the audit file (a crash in mid-write); its record was not acknowledged and is recorded again"
            );
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || Writer::new(file).run(rx))?;
        Ok((Self { requests: tx }, thread))
    }

    /// Queues one entry; the receiver fires when it has been written.
    pub fn append(&self, entry: &AuditEntry) -> oneshot::Receiver<()> {
        let mut line = serde_json::to_vec(entry).expect("audit entries serialize");
        line.push(b'\n');
        let (done, wait) = oneshot::channel();
        // If the writer is gone the receiver reports it by being dropped.
        let _ = self.requests.send(Request::Line(line, done));
        wait
    }

    pub fn reopener(&self) -> Reopener {
        Reopener(self.requests.downgrade())
    }
}

/// Lines taken from the queue, to be written in one go.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    /// Where each line ends in `bytes`.
    ends: Vec<usize>,
    acks: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn push(&mut self, line: Vec<u8>, ack: oneshot::Sender<()>) {
        self.bytes.extend_from_slice(&line);
        self.ends.push(self.bytes.len());
        self.acks.push(ack);
    }

    fn start(&self, line: usize) -> usize {
        if line == 0 {
            0
        } else {
            self.ends[line - 1]
        }
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        self.acks.clear();
    }
}

struct Writer {
    file: AuditFile,
    path: String,
    blocked: Blocked,
    /// A rotation failed (logged once until one succeeds).
    rotation_failing: bool,
}

impl Writer {
    fn new(file: AuditFile) -> Self {
        let path = file.path().display().to_string();
        metrics::AUDIT_BLOCKED.set(0);
        metrics::AUDIT_FILE_BYTES.set(file.len() as i64);
        Self {
            file,
            blocked: Blocked::new(path.clone()),
            path,
            rotation_failing: false,
        }
    }

    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Request>) {
        let mut batch = Batch::default();
        while let Some(first) = rx.blocking_recv() {
            let mut reopen = false;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Line(line, ack) => batch.push(line, ack),
                    Request::Reopen => reopen = true,
                }
                if batch.acks.len() < BATCH_LINES {
                    next = rx.try_recv().ok();
                }
            }
            if reopen {
                self.reopen();
            }
            if !batch.acks.is_empty() && !self.write(&mut batch, &rx) {
                tracing::warn!(
                    file = %self.path,
                    lines = batch.acks.len(),
                    "stopping with lines the audit file could not take; their records are recorded again on the next start"
                );
                return;
            }
            batch.clear();
        }
    }

    fn reopen(&mut self) {
        match self.file.reopen() {
            Ok(()) => tracing::info!(file = %self.path, "reopened the audit file (SIGHUP)"),
            // The next write retries the open, blocked until it works.
            Err(e) => {
                tracing::error!(file = %self.path, error = %e, "cannot reopen the audit file (SIGHUP)")
            }
        }
        metrics::AUDIT_ROTATIONS
            .with_label_values(&["reopen"])
            .inc();
        metrics::AUDIT_FILE_BYTES.set(self.file.len() as i64);
    }

    /// Writes the batch, each line to exactly one file, acknowledging lines as they reach it.
    /// `false` if the writer must stop with lines unwritten (everyone is gone and the file
    /// still cannot be written).
    fn write(&mut self, batch: &mut Batch, rx: &mpsc::UnboundedReceiver<Request>) -> bool {
        let now = Utc::now();
        if self.file.due_by_time(now) {
            self.rotate(now, Reason::Time);
        }
        let n = batch.ends.len();
        let mut first = 0;
        while first < n {
            // The lines that fit before the size limit.
            let room = self.file.room();
            let from = batch.start(first);
            let mut last = first;
            while last < n && (batch.ends[last] - from) as u64 <= room {
                last += 1;
            }
            if last == first {
                if !self.file.is_empty() && self.rotate(now, Reason::Size) {
                    continue;
                }
                // A line longer than the limit goes alone into a file; after a failed
                // rotation, the rest goes where it can.
                last = if self.rotation_failing { n } else { first + 1 };
            }
            let chunk = &batch.bytes[from..batch.ends[last - 1]];
            if !self.append(chunk, now, rx) {
                // Whatever is in the file is acknowledged by nobody: its records come again.
                return false;
            }
            metrics::AUDIT_LINES.inc_by((last - first) as u64);
            metrics::AUDIT_FILE_BYTES.set(self.file.len() as i64);
            for ack in batch.acks.drain(..last - first) {
                let _ = ack.send(());
            }
            first = last;
        }
        true
    }

    /// Appends `chunk` whole, retrying while the file cannot be written; `false` if it gave up
    /// because everyone is gone.
    fn append(
        &mut self,
        chunk: &[u8],
        now: DateTime<Utc>,
        rx: &mpsc::UnboundedReceiver<Request>,
    ) -> bool {
        let started = Instant::now();
        let mut done = 0;
        let mut backoff = Duration::from_millis(100);
        while let Err(e) = self.file.append(chunk, &mut done, now) {
            self.blocked.failed(&e);
            if rx.is_closed() {
                return false;
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
        self.blocked.cleared();
        metrics::AUDIT_WRITE.observe(started.elapsed().as_secs_f64());
        true
    }

    /// `true` when the file was rotated.
    fn rotate(&mut self, now: DateTime<Utc>, reason: Reason) -> bool {
        match self.file.rotate(now) {
            Ok(rotated) => {
                tracing::info!(file = %self.path, rotated = %rotated.display(), reason = reason.as_str(), "rotated the audit file");
                metrics::AUDIT_ROTATIONS
                    .with_label_values(&[reason.as_str()])
                    .inc();
                metrics::AUDIT_FILE_BYTES.set(0);
                self.rotation_failing = false;
                true
            }
            Err(e) => {
                if !self.rotation_failing {
                    tracing::error!(file = %self.path, error = %e, "cannot rotate the audit file; writing on in it");
                }
                self.rotation_failing = true;
                false
            }
        }
    }
}

/// Whether the audit file currently refuses writes: `/ready`, the metric and the log.
struct Blocked {
    path: String,
    since: Option<Instant>,
    last_logged: Instant,
    /// Registered while blocked: `/ready` then answers 503 naming the file.
    not_ready: Option<Arc<ClientHealth>>,
}

impl Blocked {
    fn new(path: String) -> Self {
        Self {
            path,
            since: None,
            last_logged: Instant::now(),
            not_ready: None,
        }
    }

    fn failed(&mut self, error: &io::Error) {
        metrics::AUDIT_WRITE_ERRORS.inc();
        match self.since {
            None => {
                self.since = Some(Instant::now());
                self.last_logged = Instant::now();
                let health = ClientHealth::register_dependency(&format!(
                    "audit file {} cannot be written ({error})",
                    self.path
                ));
                health.set_reachable(false);
                self.not_ready = Some(health);
                metrics::AUDIT_BLOCKED.set(1);
                tracing::error!(file = %self.path, error = %error, "cannot write the audit file: no offset is stored until it can; retrying");
            }
            Some(since) if self.last_logged.elapsed() >= REMIND_EVERY => {
                self.last_logged = Instant::now();
                tracing::error!(file = %self.path, error = %error, blocked_secs = since.elapsed().as_secs(), "still cannot write the audit file; retrying");
            }
            Some(_) => {}
        }
    }

    fn cleared(&mut self) {
        if let Some(since) = self.since.take() {
            self.not_ready = None;
            metrics::AUDIT_BLOCKED.set(0);
            tracing::info!(file = %self.path, blocked_ms = since.elapsed().as_millis() as u64, "the audit file takes lines again; resuming where it stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::entry;
    use shared::config::TopicsConfig;
    use shared::pipeline::InRecord;

    fn line(i: usize) -> AuditEntry<'static> {
        let payload: &'static str = Box::leak(format!("{{\"n\":{i}}}").into_boxed_str());
        entry(
            &InRecord::new("x", Some(payload.as_bytes())),
            &TopicsConfig::default(),
            Utc::now(),
        )
    }

    fn all_lines(path: &Path) -> Vec<serde_json::Value> {
        let mut files = crate::audit_file::rotated_files(path).unwrap();
        files.push(path.to_path_buf());
        files
            .iter()
            .flat_map(|f| {
                std::fs::read_to_string(f)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[tokio::test]
    async fn lines_are_acknowledged_once_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.jsonl");
        let (writer, thread) = AuditWriter::open(&path, Rotation::default(), false).unwrap();
        let waits: Vec<_> = (0..100).map(|i| writer.append(&line(i))).collect();
        for w in waits {
            w.await.unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100);
        let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["value"]["n"], 99);
        drop(writer);
        thread.join().unwrap();
    }

    #[tokio::test]
    async fn batches_are_split_across_rotations_and_a_reopen_with_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            max_bytes: 4096,
            ..Rotation::default()
        };
        let (writer, thread) = AuditWriter::open(&path, rotation, false).unwrap();
        let first: Vec<_> = (0..500).map(|i| writer.append(&line(i))).collect();
        // Once they are written (the writer's own rotations of them done: an external rename
        // racing one would find the file gone for a moment), an external logrotate: rename,
        // then SIGHUP.
        for w in first {
            w.await.unwrap();
        }
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        assert!(writer.reopener().reopen());
        let second: Vec<_> = (500..1000).map(|i| writer.append(&line(i))).collect();
        for w in second {
            w.await.unwrap();
        }
        drop(writer);
        thread.join().unwrap();

        let mut lines = all_lines(&path);
        let moved = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        lines.extend(moved.lines().map(|l| serde_json::from_str(l).unwrap()));
        let mut numbers: Vec<u64> = lines
            .iter()
            .map(|l| l["value"]["n"].as_u64().unwrap())
            .collect();
        numbers.sort_unstable();
        assert_eq!(numbers, (0..1000).collect::<Vec<_>>(), "each line once");
        let rotated = crate::audit_file::rotated_files(&path).unwrap();
        assert!(rotated.len() >= 30, "{} rotations", rotated.len());
        for f in rotated {
            assert!(
                std::fs::metadata(&f).unwrap().len() <= 4096,
                "{}",
                f.display()
            );
        }
    }

    #[tokio::test]
    async fn a_file_that_refuses_writes_acknowledges_nothing_says_why_and_lets_shutdown_end() {
        // /dev/full fails every write with ENOSPC, as a full disk does.
        let path = Path::new("/dev/full");
        let (writer, thread) = AuditWriter::open(path, Rotation::default(), false).unwrap();
        let mut ack = writer.append(&line(0));
        let reasons = loop {
            if let Err(reasons) = shared::metrics::readiness::check() {
                if reasons.iter().any(|r| r.contains("/dev/full")) {
                    break reasons;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            reasons[0].starts_with("audit file /dev/full cannot be written (No space left"),
            "{reasons:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(ack.try_recv().is_err(), "not acknowledged while unwritten");
        // Everyone gone (the consumer loop ended): the writer gives up, unacknowledged.
        drop(writer);
        tokio::task::spawn_blocking(move || thread.join().unwrap())
            .await
            .unwrap();
        assert!(ack.await.is_err(), "dropped, never acknowledged");
        assert!(
            shared::metrics::readiness::check()
                .err()
                .is_none_or(|r| !r.iter().any(|r| r.contains("/dev/full"))),
            "the reason leaves /ready with the writer"
        );
    }

    #[test]
    fn a_reopener_does_not_keep_the_writer_alive() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, thread) =
            AuditWriter::open(&dir.path().join("a.jsonl"), Rotation::default(), false).unwrap();
        let reopener = writer.reopener();
        drop(writer);
        thread.join().unwrap();
        assert!(!reopener.reopen());
    }
}
