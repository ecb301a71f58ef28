//! Support for the audit-file tests (`tests/audit.rs`): monitoring's audit files (rotated ones
//! included) read back and checked against the records on the topics, a small tmpfs to fill,
//! SIGHUP to a daemon, and one figure of its `/metrics`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use shared::Config;
use testkit::read_topic;

use crate::ledger::{read_verdicts, Sent};
use crate::Daemon;

/// Where a record sits: topic, partition, offset. What an audit line is deduplicated by.
pub type Position = (String, i32, i64);

impl Daemon {
    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// SIGHUP (monitoring reopens its audit file).
    pub fn hangup(&self) {
        let pid = self.pid().expect("the daemon runs");
        crate::signal(pid, "HUP");
    }
}

/// One line of an audit file.
#[derive(Debug, Clone)]
pub struct Line {
    pub position: Position,
    pub recorded_at: DateTime<Utc>,
    pub file: PathBuf,
}

/// Everything the audit files of a directory hold.
#[derive(Debug, Default)]
pub struct AuditFiles {
    /// Each file with its size, by name.
    pub files: Vec<(PathBuf, u64)>,
    pub lines: Vec<Line>,
    /// Lines that are not a whole audit entry (a torn or interleaved write), with their file.
    pub broken: Vec<(PathBuf, String)>,
}

impl AuditFiles {
    /// Every file of `dir` whose name starts with `prefix` (the current file, its rotated
    /// files, and any an external rotation renamed).
    pub fn read(dir: &Path, prefix: &str) -> Self {
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("the audit directory")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        names.sort();
        let mut all = AuditFiles::default();
        for path in names {
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // deleted meanwhile
            };
            all.files.push((path.clone(), bytes.len() as u64));
            let text = String::from_utf8_lossy(&bytes);
            if !text.is_empty() && !text.ends_with('\n') {
                all.broken
                    .push((path.clone(), "no newline at the end".into()));
            }
            for line in text.lines() {
                match parse(line) {
                    Some((position, recorded_at)) => all.lines.push(Line {
                        position,
                        recorded_at,
                        file: path.clone(),
                    }),
                    None => all
                        .broken
                        .push((path.clone(), line.chars().take(200).collect())),
                }
            }
        }
        all
    }

    /// The copies of each position.
    pub fn copies(&self) -> HashMap<&Position, Vec<&Line>> {
        let mut copies: HashMap<&Position, Vec<&Line>> = HashMap::new();
        for line in &self.lines {
            copies.entry(&line.position).or_default().push(line);
        }
        copies
    }

    /// The positions of `wanted` no line holds.
    pub fn missing<'a>(&self, wanted: &'a HashSet<Position>) -> Vec<&'a Position> {
        let have: HashSet<&Position> = self.lines.iter().map(|l| &l.position).collect();
        let mut missing: Vec<&Position> = wanted.iter().filter(|p| !have.contains(p)).collect();
        missing.sort();
        missing
    }

    /// Positions held more than once.
    pub fn repeated(&self) -> Vec<(&Position, Vec<&Line>)> {
        let mut repeated: Vec<_> = self
            .copies()
            .into_iter()
            .filter(|(_, c)| c.len() > 1)
            .collect();
        repeated.sort_by(|a, b| a.0.cmp(b.0));
        repeated
    }
}

fn parse(line: &str) -> Option<(Position, DateTime<Utc>)> {
    let v: Value = serde_json::from_str(line).ok()?;
    let position = (
        v["topic"].as_str()?.to_string(),
        i32::try_from(v["partition"].as_i64()?).ok()?,
        v["offset"].as_i64()?,
    );
    let recorded_at = v["recordedAt"].as_str()?.parse().ok()?;
    Some((position, recorded_at))
}

/// The position of every record the mesh of `config` wrote for the orders of `sent`: each
/// accepted order's record on `Pedidos`, its two on `Notificacoes`, its verdict, and whatever
/// the dead-letter topics hold. Waits (up to `within`) for every accepted order's verdict.
pub async fn topic_positions(config: &Config, sent: &Sent, within: Duration) -> HashSet<Position> {
    let (kafka, topics) = (&config.kafka, &config.topics);
    let mut records = read_verdicts(
        kafka,
        &topics.pedidos_validos,
        &topics.pedidos_recusados,
        sent.accepted.keys(),
        within,
    )
    .await;
    let n = sent.accepted.len();
    records.extend(read_topic(kafka, &topics.pedidos, n, within).await);
    records.extend(read_topic(kafka, &topics.notificacoes, 2 * n, within).await);
    for dlq in [
        topics.dlq(&topics.pedidos),
        topics.dlq(&topics.notificacoes),
    ] {
        records.extend(read_topic(kafka, &dlq, 0, Duration::from_secs(2)).await);
    }
    records
        .into_iter()
        .map(|r| (r.topic, r.partition, r.offset))
        .collect()
}

/// Reads the audit files of `dir` until they hold every position of `wanted`, or `within`
/// runs out (then what they hold: the test reports what is missing).
pub async fn wait_audited(
    dir: &Path,
    prefix: &str,
    wanted: &HashSet<Position>,
    within: Duration,
) -> AuditFiles {
    let deadline = Instant::now() + within;
    loop {
        let files = AuditFiles::read(dir, prefix);
        if files.missing(wanted).is_empty() || Instant::now() > deadline {
            return files;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether this process runs as root (a tmpfs mount needs it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let uid = s.lines().find_map(|l| l.strip_prefix("Uid:"))?;
            // real, effective, saved, filesystem: the effective one counts.
            uid.split_whitespace().nth(1).map(|e| e == "0")
        })
        .unwrap_or(false)
}

/// A tmpfs of a fixed size mounted on a directory; unmounted when dropped.
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `dir` (created); `None` when not root, after saying so.
    pub fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        if !is_root() {
            eprintln!(
                "SKIPPED: mounting a tmpfs to fill needs root (the test machines run tests as root)"
            );
            return None;
        }
        std::fs::create_dir_all(dir).expect("the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("cannot run mount");
        assert!(
            output.status.success(),
            "mount -t tmpfs on {} failed although root: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Fills the tmpfs with a file of zeros until it is full; returns the file, whose removal
    /// frees the space.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler file");
        let block = vec![0u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling {}: {e}", self.dir.display()),
            }
        }
        // Down to the last byte: a partial page of the audit file must not take a line either.
        while file.write(&[0]).is_ok_and(|n| n == 1) {}
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a daemon not yet reaped): detach it now, gone once unused.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// The sum of a metric's samples (every label set) in a Prometheus text exposition.
pub fn metric_sum(exposition: &str, name: &str) -> f64 {
    metric_sum_where(exposition, name, "")
}

/// The sum of a metric's samples whose label set holds `label` (`client="producer"`, say).
pub fn metric_sum_where(exposition: &str, name: &str, label: &str) -> f64 {
    exposition
        .lines()
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with('{') || rest.starts_with(' ')) && rest.contains(label)
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `GET http://{address}/metrics`.
pub async fn scrape(address: &str) -> String {
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .unwrap_or_else(|e| panic!("GET {address}/metrics: {e}"))
        .text()
        .await
        .expect("metrics text")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_add_every_label_set_and_no_other_metric() {
        let text = "# TYPE a counter\na{x=\"1\"} 2\na{x=\"2\"} 3\na_total 7\nab 9\na 1\n";
        assert_eq!(metric_sum(text, "a"), 6.0);
        assert_eq!(metric_sum(text, "a_total"), 7.0);
        assert_eq!(metric_sum(text, "missing"), 0.0);
        assert_eq!(metric_sum_where(text, "a", "x=\"2\""), 3.0);
        assert_eq!(metric_sum_where(text, "a", "x=\"3\""), 0.0);
    }

    #[test]
    fn audit_files_are_read_whole_and_broken_lines_reported() {
        let dir = tempfile::tempdir().unwrap();
        let line = |offset: i64| {
            format!("{{\"recordedAt\":\"2026-12-06T21:00:00.5Z\",\"topic\":\"P\",\"partition\":1,\"offset\":{offset}}}\n")
        };
        std::fs::write(dir.path().join("audit.1.jsonl"), line(1) + &line(2)).unwrap();
        std::fs::write(dir.path().join("audit.jsonl"), line(2) + "{\"topic\"").unwrap();
        std::fs::write(dir.path().join("other.log"), line(9)).unwrap();
        let files = AuditFiles::read(dir.path(), "audit");
        assert_eq!(files.files.len(), 2);
        assert_eq!(files.lines.len(), 3);
        assert_eq!(
            files.broken.len(),
            2,
            "the torn line, and no newline at the end"
        );
        let wanted: HashSet<Position> = [1, 2, 3].map(|o| ("P".to_string(), 1, o)).into();
        assert_eq!(files.missing(&wanted), [&("P".to_string(), 1, 3)]);
        assert_eq!(files.repeated().len(), 1);
    }
}
