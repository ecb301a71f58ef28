//! The audit file on disk: whole lines appended, rotation by size and by time with a kept
//! count, and a reopen for an external logrotate.
//!
//! Hand-written rather than a rotation crate's `Write`: monitoring acknowledges a line (and so
//! lets its offset be stored) only once the line is in the file, which needs to know exactly
//! how many bytes a failed write left there (a full disk writes part of a buffer, then fails)
//! and that a rotation never splits a line. The crates looked at (`file-rotate`) count bytes
//! before writing, split at byte boundaries and retry with `write_all`, which would duplicate
//! or tear lines here.
//!
//! What is on disk at any instant, a `kill -9` included: every line ever acknowledged is whole
//! in the current file or in a rotated one (a rotation is one `rename`, which moves no data).
//! Only the current file's last line can be torn, by a crash in the middle of its `write`; it
//! was not acknowledged, so its record is read again, and [`AuditFile::open`] cuts it off.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// When a file is rotated; see `[monitoring]` in conf.example.toml.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// Rotate before a line would take the file past this size; 0: never by size.
    pub max_bytes: u64,
    /// Rotate when a line falls in another period (of this many seconds since the epoch) than
    /// the file's last line; 0: never by time.
    pub period_secs: u64,
    /// Rotated files kept; 0: all.
    pub keep: usize,
}

/// Why a file was rotated (the `reason` label of `pedidos_audit_rotations_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Size,
    Time,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Size => "size",
            Reason::Time => "time",
        }
    }
}

/// The current audit file and what rotation needs to know of it.
pub struct AuditFile {
    path: PathBuf,
    /// `None` after a rotation or a reopen whose open failed: the next append opens it.
    file: Option<File>,
    /// Bytes in the current file.
    len: u64,
    /// The rotation period of the file's last line; `None` while it is empty.
    period: Option<u64>,
    rotation: Rotation,
    fsync: bool,
}

impl AuditFile {
    /// Opens (creating, appending) the file at `path`, cutting off a torn last line left by a
    /// crash; returns the file and how many bytes were cut.
    pub fn open(path: &Path, rotation: Rotation, fsync: bool) -> io::Result<(Self, u64)> {
        if let Some(dir) = parent(path) {
            std::fs::create_dir_all(dir)?;
        }
        let mut audit = Self {
            path: path.to_path_buf(),
            file: None,
            len: 0,
            period: None,
            rotation,
            fsync,
        };
        audit.open_current()?;
        let cut = audit.cut_torn_tail()?;
        Ok((audit, cut))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes in the current file.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes a rotation by size leaves room for in the current file (`u64::MAX`: no limit).
    pub fn room(&self) -> u64 {
        match self.rotation.max_bytes {
            0 => u64::MAX,
            max => max.saturating_sub(self.len),
        }
    }

    /// Whether the current file must be rotated before lines written at `now` go in.
    pub fn due_by_time(&self, now: DateTime<Utc>) -> bool {
        !self.is_empty()
            && self
                .period
                .is_some_and(|p| period_of(now, self.rotation.period_secs) != Some(p))
    }

    /// Appends `bytes` (whole lines, written at `now`) of which `done` are already in the file:
    /// on success all of them are, and with `fsync` on disk; on error `done` says how far it got
    /// and a call with the same arguments goes on from there.
    pub fn append(&mut self, bytes: &[u8], done: &mut usize, now: DateTime<Utc>) -> io::Result<()> {
        if self.file.is_none() {
            self.open_current()?;
        }
        let file = self.file.as_mut().expect("opened above");
        while *done < bytes.len() {
            match file.write(&bytes[*done..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    *done += n;
                    self.len += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.fsync {
            file.sync_data()?;
        }
        self.period = period_of(now, self.rotation.period_secs);
        Ok(())
    }

    /// Renames the current file to `<stem>.<UTC time>.<ext>` beside it, deletes the oldest
    /// rotated files beyond the kept count, and starts a new file (opened by the next append
    /// if it cannot be now). Returns the rotated file's path.
    pub fn rotate(&mut self, now: DateTime<Utc>) -> io::Result<PathBuf> {
        let rotated = free_rotated_name(&self.path, now);
        std::fs::rename(&self.path, &rotated)?;
        self.file = None;
        self.len = 0;
        self.period = None;
        if self.fsync {
            if let Err(e) = sync_dir(&self.path) {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot sync the audit file's directory after a rotation");
            }
        }
        if let Err(e) = self.prune() {
            tracing::warn!(file = %self.path.display(), error = %e, "cannot delete old rotated audit files");
        }
        // A failure here is the next append's to report and retry.
        let _ = self.open_current();
        Ok(rotated)
    }

    /// Opens the file at the path again (SIGHUP: an external logrotate renamed it).
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = None;
        self.open_current()
    }

    /// The rotated files of this audit file, oldest first.
    pub fn rotated_files(&self) -> io::Result<Vec<PathBuf>> {
        rotated_files(&self.path)
    }

    fn open_current(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)?;
        let meta = file.metadata()?;
        self.len = meta.len();
        self.period = if self.len == 0 {
            None
        } else {
            let modified = meta.modified().map(DateTime::<Utc>::from)?;
            period_of(modified, self.rotation.period_secs)
        };
        self.file = Some(file);
        Ok(())
    }

    /// Truncates the file after its last newline.
    fn cut_torn_tail(&mut self) -> io::Result<u64> {
        let file = self.file.as_ref().expect("open");
        let mut end = self.len;
        let mut chunk = vec![0u8; 64 * 1024];
        let whole = loop {
            if end == 0 {
                break 0;
            }
            let start = end.saturating_sub(chunk.len() as u64);
            let buf = &mut chunk[..(end - start) as usize];
            file.read_exact_at(buf, start)?;
            if let Some(i) = buf.iter().rposition(|&b| b == b'\n') {
                break start + i as u64 + 1;
            }
            end = start;
        };
        let cut = self.len - whole;
        if cut > 0 {
            file.set_len(whole)?;
            self.len = whole;
        }
        Ok(cut)
    }

    fn prune(&self) -> io::Result<()> {
        if self.rotation.keep == 0 {
            return Ok(());
        }
        let rotated = self.rotated_files()?;
        let excess = rotated.len().saturating_sub(self.rotation.keep);
        for old in &rotated[..excess] {
            std::fs::remove_file(old)?;
            tracing::info!(file = %old.display(), "deleted a rotated audit file beyond monitoring.audit_keep");
        }
        Ok(())
    }
}

fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

fn period_of(t: DateTime<Utc>, period_secs: u64) -> Option<u64> {
    (period_secs > 0).then(|| t.timestamp().max(0) as u64 / period_secs)
}

/// `monitoring.audit.jsonl` → (`monitoring.audit`, `Some("jsonl")`).
fn stem_and_ext(path: &Path) -> (String, Option<String>) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_string(), Some(ext.to_string())),
        _ => (name, None),
    }
}

const STAMP: &str = "%Y%m%dT%H%M%S%.3fZ";

/// A rotated file's name, sorting in rotation order: `<stem>.<UTC time>[-n].<ext>`.
fn rotated_name(path: &Path, now: DateTime<Utc>, n: u32) -> PathBuf {
    let (stem, ext) = stem_and_ext(path);
    let mut name = format!("{stem}.{}", now.format(STAMP));
    if n > 0 {
        name.push_str(&format!("-{n}"));
    }
    if let Some(ext) = ext {
        name.push('.');
        name.push_str(&ext);
    }
    path.with_file_name(name)
}

/// A rotated name not taken yet (two rotations within a millisecond get `-1`, `-2`, …).
fn free_rotated_name(path: &Path, now: DateTime<Utc>) -> PathBuf {
    (0..)
        .map(|n| rotated_name(path, now, n))
        .find(|p| !p.exists())
        .expect("some suffix is free")
}

/// Where `name` sorts among `path`'s rotated files (its stamp, then its `-n`); `None` when it
/// is not one of them (logrotate's, say).
fn rotation_order(path: &Path, name: &str) -> Option<(String, u32)> {
    let (stem, ext) = stem_and_ext(path);
    let rest = name.strip_prefix(&stem)?.strip_prefix('.')?;
    let stamp = match &ext {
        Some(ext) => rest.strip_suffix(ext.as_str())?.strip_suffix('.')?,
        None => rest,
    };
    let (stamp, n) = match stamp.split_once('-') {
        Some((stamp, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (stamp, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (stamp, 0),
    };
    let valid = stamp.len() == "20261206T210000.123Z".len()
        && chrono::NaiveDateTime::parse_from_str(stamp, STAMP).is_ok();
    valid.then(|| (stamp.to_string(), n))
}

/// The rotated files of the audit file at `path`, oldest first.
pub fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = parent(path).unwrap_or(Path::new("."));
    let mut rotated: Vec<((String, u32), String)> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter_map(|n| Some((rotation_order(path, &n)?, n)))
        .collect();
    rotated.sort();
    Ok(rotated.into_iter().map(|(_, n)| dir.join(n)).collect())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    File::open(parent(path).unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + secs, 0).unwrap()
    }

    fn lines(from: usize, to: usize) -> Vec<u8> {
        (from..to)
            .flat_map(|i| format!("{{\"n\":{i:04}}}\n").into_bytes())
            .collect()
    }

    /// Appends each line, rotating first when it does not fit, as the writer does.
    fn write_lines(audit: &mut AuditFile, bytes: &[u8], now: DateTime<Utc>) {
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if audit.room() < line.len() as u64 && !audit.is_empty() {
                audit.rotate(now).unwrap();
            }
            audit.append(line, &mut 0, now).unwrap();
        }
    }

    fn concatenated(path: &Path) -> String {
        let mut text = String::new();
        for f in rotated_files(path).unwrap() {
            text.push_str(&std::fs::read_to_string(f).unwrap());
        }
        text + &std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn size_rotation_never_splits_a_line_and_loses_or_repeats_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("monitoring.audit.jsonl");
        let rotation = Rotation {
            max_bytes: 100,
            ..Rotation::default()
        };
        let (mut audit, cut) = AuditFile::open(&path, rotation, false).unwrap();
        assert_eq!(cut, 0);
        let all = lines(0, 50);
        // 11-byte lines, 100-byte files: 9 lines each. Several rotations in one millisecond.
        write_lines(&mut audit, &all, at(0));
        assert_eq!(concatenated(&path), String::from_utf8(all).unwrap());
        let rotated = rotated_files(&path).unwrap();
        assert_eq!(rotated.len(), 5, "{rotated:?}");
        for f in &rotated {
            let text = std::fs::read_to_string(f).unwrap();
            assert_eq!(text.len(), 99, "{}", f.display());
            assert!(text.ends_with('\n'));
        }
        let names: Vec<String> = rotated
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(
            names[0].starts_with("monitoring.audit.20260528T") && names[0].ends_with(".jsonl"),
            "{names:?}"
        );
    }

    #[test]
    fn a_line_longer_than_the_limit_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let rotation = Rotation {
            max_bytes: 10,
            ..Rotation::default()
        };
        let (mut audit, _) = AuditFile::open(&path, rotation, false).unwrap();
        write_lines(&mut audit, &lines(0, 3), at(0));
        assert_eq!(rotated_files(&path).unwrap().len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":0002}\n");
    }

    #[test]
    fn the_oldest_rotated_files_beyond_the_kept_count_are_deleted_and_others_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let foreign = [
            "audit.jsonl.1",
            "audit.backup.jsonl",
            "other.20260101T000000.000Z.jsonl",
        ];
        for f in foreign {
            std::fs::write(dir.path().join(f), "x\n").unwrap();
        }
        let rotation = Rotation {
            max_bytes: 12,
            keep: 2,
            ..Rotation::default()
        };
        let (mut audit, _) = AuditFile::open(&path, rotation, false).unwrap();
        for i in 0..5 {
            write_lines(&mut audit, &lines(i, i + 1), at(i as i64));
        }
        let rotated = rotated_files(&path).unwrap();
        let kept: Vec<String> = rotated
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert_eq!(kept, ["{\"n\":0002}\n", "{\"n\":0003}\n"], "the newest two");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":0004}\n");
        for f in foreign {
            assert!(dir.path().join(f).exists(), "{f} is not ours to delete");
        }
    }

    #[test]
    fn time_rotation_starts_a_file_per_period_and_counts_an_existing_file_from_its_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let rotation = Rotation {
            period_secs: 3600,
            ..Rotation::default()
        };
        let (mut audit, _) = AuditFile::open(&path, rotation, false).unwrap();
        let hour = at(0).timestamp() - at(0).timestamp() % 3600;
        let in_hour = |s: i64| DateTime::from_timestamp(hour + s, 0).unwrap();
        assert!(
            !audit.due_by_time(in_hour(0)),
            "an empty file is never rotated"
        );
        audit.append(&lines(0, 1), &mut 0, in_hour(10)).unwrap();
        assert!(!audit.due_by_time(in_hour(3599)));
        assert!(audit.due_by_time(in_hour(3600)));
        audit.rotate(in_hour(3600)).unwrap();
        audit.append(&lines(1, 2), &mut 0, in_hour(3600)).unwrap();
        assert_eq!(rotated_files(&path).unwrap().len(), 1);

        // After a restart the file's period is its last write's: now, so not due now.
        drop(audit);
        let (audit, _) = AuditFile::open(&path, rotation, false).unwrap();
        assert!(!audit.due_by_time(Utc::now()));
        assert!(audit.due_by_time(Utc::now() + chrono::Duration::hours(1)));
    }

    #[test]
    fn a_torn_last_line_left_by_a_crash_is_cut_off_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":2}\n{\"n\"").unwrap();
        let (mut audit, cut) = AuditFile::open(&path, Rotation::default(), false).unwrap();
        assert_eq!(cut, 4);
        audit.append(b"{\"n\":3}\n", &mut 0, at(0)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n"
        );
        std::fs::write(&path, "no newline at all").unwrap();
        let (audit, cut) = AuditFile::open(&path, Rotation::default(), false).unwrap();
        assert_eq!((cut, audit.len()), (17, 0));
    }

    #[test]
    fn a_reopen_after_an_external_rename_writes_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let (mut audit, _) = AuditFile::open(&path, Rotation::default(), true).unwrap();
        audit.append(&lines(0, 2), &mut 0, at(0)).unwrap();
        let moved = dir.path().join("audit.jsonl.1");
        std::fs::rename(&path, &moved).unwrap();
        audit.append(&lines(2, 3), &mut 0, at(0)).unwrap();
        audit.reopen().unwrap();
        audit.append(&lines(3, 4), &mut 0, at(0)).unwrap();
        let old = std::fs::read_to_string(&moved).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert_eq!(old + &new, String::from_utf8(lines(0, 4)).unwrap());
        assert_eq!(new, "{\"n\":0003}\n");
        assert_eq!(audit.len(), 11);
    }

    #[test]
    fn rotated_names_are_recognised_exactly() {
        let path = Path::new("/x/monitoring.audit.jsonl");
        let name = rotated_name(path, at(0), 0);
        let name = name.file_name().unwrap().to_str().unwrap();
        assert!(rotation_order(path, name).is_some(), "{name}");
        let second = rotated_name(path, at(0), 2);
        assert_eq!(
            rotation_order(path, second.file_name().unwrap().to_str().unwrap()),
            Some(("20260528T202640.000Z".to_string(), 2))
        );
        for other in [
            "monitoring.audit.jsonl",
            "monitoring.audit.jsonl.1",
            "monitoring.audit.20260101.jsonl",
            "monitoring.audit.20260101T000000.000Z-.jsonl",
            "monitoring.audit.20260101T000000.000Z.jsonl.gz",
        ] {
            assert_eq!(rotation_order(path, other), None, "{other}");
        }
        let bare = Path::new("audit");
        let name = rotated_name(bare, at(0), 0);
        assert_eq!(name.to_str().unwrap(), "audit.20260528T202640.000Z");
        assert!(rotation_order(bare, name.to_str().unwrap()).is_some());
    }
}
