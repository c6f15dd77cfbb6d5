//! Copies of the database an operator can keep: `diemcau backup` while the hub runs, and
//! `diemcau restore` while it does not.
//!
//! A backup uses SQLite's online backup API from a read transaction of its own: in WAL mode
//! that sees one consistent moment of the database and does not hold up the hub's writer, so
//! attendance keeps being recorded meanwhile. The copy is written beside its final name,
//! checked (`PRAGMA integrity_check`, the tables a hub needs), flushed to disk and then renamed,
//! so a backup that fails half way leaves no file that looks complete.
//!
//! A restore checks the copy the same way, refuses while a hub holds the data directory
//! ([`DataDirLock`]), keeps the database it replaces beside it, and puts the copy in place the
//! same way.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::{DATABASE_FILE, StoreError};

/// The lock file a running hub holds in its data directory.
pub const LOCK_FILE: &str = "diemcau.lock";

/// The tables every diemcau database has; a file without them is not one.
const REQUIRED_TABLES: &[&str] = &[
    "sites",
    "meetings",
    "roster",
    "join_codes",
    "events",
    "accounts",
];

/// An exclusive hold on a data directory, for as long as it lives: one hub per directory, and
/// no restore under a running hub. The operating system releases it when the process ends,
/// however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// How long [`DataDirLock::acquire`] waits for a lock another process holds: a hub
    /// restarted right after the last one stopped, or a process that was being started in
    /// the meantime and held a copy of its file until it ran its program, gets it then.
    const WAIT: Duration = Duration::from_secs(2);

    /// Takes the directory's lock, or says that another process holds it (after
    /// [`DataDirLock::WAIT`]).
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Internal(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(LOCK_FILE);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::Internal(format!("cannot open {}: {e}", path.display())))?;
        let deadline = Instant::now() + Self::WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(DataDirLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(StoreError::Internal(format!(
                        "another diemcau hub is running with the data directory {}; stop it first",
                        data_dir.display()
                    )));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(StoreError::Internal(format!(
                        "cannot lock {}: {e}",
                        path.display()
                    )));
                }
            }
        }
    }
}

/// What a backup or a restore copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySummary {
    pub path: PathBuf,
    pub bytes: u64,
    pub meetings: u64,
    pub events: u64,
}

impl std::fmt::Display for CopySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} meetings, {} attendance events, {} bytes, integrity check ok",
            self.path.display(),
            self.meetings,
            self.events,
            self.bytes
        )
    }
}

/// Copies the database of `data_dir` to `target`, consistent as of one moment, while a hub may
/// be running on it. An existing `target` is replaced only once the new copy is complete.
pub fn backup(data_dir: &Path, target: &Path) -> Result<CopySummary, StoreError> {
    let source_path = data_dir.join(DATABASE_FILE);
    if !source_path.is_file() {
        return Err(StoreError::NotFound(format!(
            "no diemcau database in {}",
            data_dir.display()
        )));
    }
    // Read-only: a backup never writes to the live database.
    let source = Connection::open_with_flags(
        &source_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    copy_checked(&source, target)
}

/// Puts the database copy `source` in place in `data_dir`, which no hub may be running on. The
/// database it replaces, if any, is kept beside it with the time of the restore in its name.
/// Returns what was restored and where the previous database went.
pub fn restore(
    data_dir: &Path,
    source: &Path,
) -> Result<(CopySummary, Option<PathBuf>), StoreError> {
    let _lock = DataDirLock::acquire(data_dir)?;
    let copy = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Internal(format!("cannot open {}: {e}", source.display())))?;
    check(&copy, source)?;
    let live = data_dir.join(DATABASE_FILE);
    let kept = if live.exists() {
        let stamp = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year][month][day]-[hour][minute][second]Z"
            ))
            .map_err(|e| StoreError::Internal(format!("cannot format the time: {e}")))?;
        let kept = data_dir.join(format!("{DATABASE_FILE}.before-restore-{stamp}"));
        // Fold the write-ahead log into the file first, so the kept database is one file.
        let previous = Connection::open(&live)?;
        previous.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
        drop(previous);
        std::fs::rename(&live, &kept).map_err(|e| {
            StoreError::Internal(format!("cannot move {} aside: {e}", live.display()))
        })?;
        for suffix in ["-wal", "-shm"] {
            let side = data_dir.join(format!("{DATABASE_FILE}{suffix}"));
            if side.exists() {
                std::fs::remove_file(&side).map_err(|e| {
                    StoreError::Internal(format!("cannot remove {}: {e}", side.display()))
                })?;
            }
        }
        Some(kept)
    } else {
        None
    };
    let summary = copy_checked(&copy, &live)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&live, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            StoreError::Internal(format!("cannot restrict {}: {e}", live.display()))
        })?;
    }
    Ok((summary, kept))
}

/// Copies `source` into a new file beside `target`, checks it, flushes it and renames it to
/// `target`.
fn copy_checked(source: &Connection, target: &Path) -> Result<CopySummary, StoreError> {
    let partial = partial_name(target);
    let _ = std::fs::remove_file(&partial);
    let result = (|| {
        let mut copy = Connection::open(&partial).map_err(|e| {
            StoreError::Internal(format!("cannot create {}: {e}", partial.display()))
        })?;
        {
            let backup = rusqlite::backup::Backup::new(source, &mut copy)?;
            // Every page in one step: one read transaction, so one consistent moment, and no
            // restart when the hub writes meanwhile.
            match backup.step(-1)? {
                rusqlite::backup::StepResult::Done => {}
                other => {
                    return Err(StoreError::Internal(format!(
                        "the database was busy during the copy ({other:?}); try again"
                    )));
                }
            }
        }
        // A copy stands alone: no write-ahead log beside it.
        copy.pragma_update(None, "journal_mode", "DELETE")?;
        let (meetings, events) = check(&copy, &partial)?;
        drop(copy);
        File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| {
                StoreError::Internal(format!("cannot flush {}: {e}", partial.display()))
            })?;
        Ok((meetings, events))
    })();
    let (meetings, events) = match result {
        Ok(counts) => counts,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, target)
        .map_err(|e| StoreError::Internal(format!("cannot rename to {}: {e}", target.display())))?;
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename itself on disk.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or(0);
    Ok(CopySummary {
        path: target.to_owned(),
        bytes,
        meetings,
        events,
    })
}

/// Checks that `db` is a whole diemcau database: SQLite's integrity check passes and the
/// tables are there. Returns its numbers of meetings and events.
fn check(db: &Connection, path: &Path) -> Result<(u64, u64), StoreError> {
    let not_ours = |why: String| StoreError::Internal(format!("{}: {why}", path.display()));
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| not_ours(format!("not a readable SQLite database ({e})")))?;
    if integrity != "ok" {
        return Err(not_ours(format!("integrity check failed: {integrity}")));
    }
    for table in REQUIRED_TABLES {
        let found: bool = db.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |row| row.get(0),
        )?;
        if !found {
            return Err(not_ours(format!(
                "not a diemcau database (no table `{table}`)"
            )));
        }
    }
    let count = |table: &str| -> Result<u64, StoreError> {
        let n: i64 = db.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |row| {
            row.get(0)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    Ok((count("meetings")?, count("events")?))
}

/// `target` with `.partial` added to its file name.
fn partial_name(target: &Path) -> PathBuf {
    let mut name = target.file_name().map(|n| n.to_owned()).unwrap_or_default();
    name.push(".partial");
    target.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::testing::temp_dir;

    #[test]
    fn a_second_lock_on_a_directory_is_refused_until_the_first_goes() {
        let dir = temp_dir("lock");
        let first = DataDirLock::acquire(&dir).expect("first");
        let refused = DataDirLock::acquire(&dir).expect_err("second");
        assert!(
            refused.to_string().contains("another diemcau hub"),
            "{refused}"
        );
        drop(first);
        DataDirLock::acquire(&dir).expect("free again");
    }

    #[test]
    fn a_lock_released_meanwhile_is_taken() {
        let dir = temp_dir("lock-wait");
        let first = DataDirLock::acquire(&dir).expect("first");
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        let started = Instant::now();
        DataDirLock::acquire(&dir).expect("taken once the first goes");
        assert!(started.elapsed() >= Duration::from_millis(250));
        release.join().expect("the first lock released");
    }

    #[test]
    fn a_backup_restores_and_a_file_that_is_not_a_database_is_refused() {
        let dir = temp_dir("backup-source");
        drop(Store::open(&dir).expect("store"));
        let target = dir.join("copy.sqlite3");
        let summary = backup(&dir, &target).expect("backup");
        assert_eq!((summary.meetings, summary.events), (0, 0));
        assert!(!partial_name(&target).exists(), "no partial file left");

        let other = temp_dir("backup-target");
        drop(Store::open(&other).expect("store"));
        let (_, kept) = restore(&other, &target).expect("restore");
        assert!(
            kept.is_some_and(|k| k.exists()),
            "the replaced database is kept"
        );
        drop(Store::open(&other).expect("the restored database opens"));

        let junk = dir.join("junk.sqlite3");
        std::fs::write(&junk, b"not a database at all, just text").expect("write");
        let refused = restore(&other, &junk).expect_err("junk");
        assert!(refused.to_string().contains("junk.sqlite3"), "{refused}");
        drop(Store::open(&other).expect("the database is still there after a refusal"));
    }
}
