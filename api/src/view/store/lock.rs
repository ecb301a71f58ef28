//! An SQLite file serves one API instance: its POSTs answer before their commit, and only the
//! instance that took an order waits for that commit when the order is read (see `writer`). A
//! second instance on the same file would answer 404 for an order the first just accepted, so
//! it is refused at start-up. The lock is the kernel's (`flock` on a file beside the store), so
//! it goes with the process however that ends, `kill -9` included.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{path} is held by another API instance{holder}: an SQLite store serves one instance; \
         give each its own file, or share one view with PostgreSQL"
    )]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for as long as the store is open.
#[derive(Debug)]
pub struct OneInstance {
    _file: File,
}

impl OneInstance {
    /// The lock beside this database file (`<file>.lock`), which then names this process.
    pub fn take(database: &Path) -> Result<Self, LockError> {
        let mut path = database.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let holder = match pid.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(LockError::Held { path, holder });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_naming_the_first_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("view.db");
        let first = OneInstance::take(&database).expect("the first takes it");
        let refused = OneInstance::take(&database).expect_err("held");
        let message = refused.to_string();
        assert!(message.contains("view.db.lock"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("PostgreSQL"), "{message}");
        drop(first);
        OneInstance::take(&database).expect("free again once the first is gone");
    }
}
