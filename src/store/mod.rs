//! Persistent state in SQLite (WAL), one file per concern:
//!
//! - this file: opening the database, its schema, the [`Store`] handle and the errors all
//!   parts share;
//! - `sites`: the sites directory;
//! - `meetings`: meeting plans, their join codes, [`Store::resolve_code`] and the views of a
//!   meeting;
//! - `log`: the append-only attendance log, written by the [`Recorder`]'s thread, with the
//!   liveness marks and the closing of sessions a crash left open;
//! - `accounts`: accounts and their login sessions.
//!
//! The log is written by one recorder thread that commits in groups: every event handed to
//! [`Recorder::append`] is on disk (`synchronous=FULL`) before the call returns, so an event the
//! hub has acknowledged survives a `kill -9` or a power cut. Triggers refuse any `UPDATE` or
//! `DELETE` of the log.
//!
//! Every call blocks on SQLite: async code runs it through [`Store::blocking`]. Writes queue on
//! one writer connection; reads go to a read connection of their own, which WAL lets run beside
//! the writer.

mod accounts;
pub mod backup;
mod log;
mod meetings;
mod nodes;
mod sites;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::attendance::Millis;

pub use accounts::{Account, AccountChangeError, LoginSession, Role, SessionLimits, StoredAccount};
pub use log::{NodeBatch, Recorder};
pub use meetings::{
    CodeError, CreateMeetingError, Grant, InvitedSite, MeetingRoster, MeetingState, MeetingView,
    NewMeeting, ReissueError,
};
pub use nodes::{NodeChangeError, NodeRecord};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "diemcau.sqlite3";

/// A failure of the store itself (SQLite failed, the recorder thread is gone, the machine
/// refused randomness or a file), or a lookup of what does not exist. What a caller may have
/// got wrong is told by the error of each operation ([`CreateMeetingError`], [`ReissueError`],
/// [`CodeError`], [`AccountChangeError`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What was asked for does not exist (a meeting by its id).
    #[error("not found: {0}")]
    NotFound(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the recorder has stopped")]
    RecorderStopped,
    /// The hub failed otherwise (no randomness, a file it cannot write, an unreadable row).
    #[error("{0}")]
    Internal(String),
}

/// The handle on the database: cheap to clone, shared by every task and thread. It lives as
/// long as its last clone; the [`Recorder`] it starts has its own connection and thread.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Connections>,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Internal(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let writer = connect(&path)?;
        // Password hashes and session hashes are in it: readable by the hub's user only
        // (SQLite gives its -wal and -shm files the same mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| StoreError::Internal(format!("cannot restrict {}: {e}", path.display())),
            )?;
        }
        writer.execute_batch(SCHEMA)?;
        let reader = connect(&path)?;
        // A read that tried to write would be a bug here; SQLite refuses it.
        reader.pragma_update(None, "query_only", true)?;
        Ok(Store {
            inner: Arc::new(Connections {
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                path,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `work` on a thread meant for blocking, so that an async task never waits on
    /// SQLite; the error of `work` comes back as it is.
    pub async fn blocking<T, E>(
        &self,
        work: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| E::from(StoreError::Internal(format!("a store task failed: {e}"))))?
    }

    /// Starts the recorder thread that appends to the log.
    pub fn recorder(&self) -> Result<Recorder, StoreError> {
        Recorder::start(self.path())
    }

    /// The connection that writes (and reads what must see its own writes at once).
    fn writer(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connection that only reads: it waits for other reads, never for the writer.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.inner
            .reader
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Wall-clock time in milliseconds since the epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// `length` characters of a 32-letter alphabet without look-alikes (no 0/1/l/o; 5 random bits
/// each): join codes and generated passwords.
pub fn random_text(length: usize) -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut bytes = vec![0u8; length];
    getrandom::fill(&mut bytes)?;
    Ok(bytes
        .iter()
        .filter_map(|b| ALPHABET.get(usize::from(b & 31)).copied().map(char::from))
        .collect())
}

/// The two connections of a [`Store`].
#[derive(Debug)]
struct Connections {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    path: PathBuf,
}

/// The tables, created when missing at every open.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS sites (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent_code TEXT,
    parent_name TEXT,
    delegates INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meetings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    scheduled_start INTEGER NOT NULL,
    scheduled_end INTEGER NOT NULL,
    studio_name TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS roster (
    meeting_id INTEGER NOT NULL REFERENCES meetings(id),
    site_code TEXT NOT NULL REFERENCES sites(code),
    site_name TEXT NOT NULL,
    expected_delegates INTEGER NOT NULL,
    position INTEGER NOT NULL,
    PRIMARY KEY (meeting_id, site_code)
);
CREATE TABLE IF NOT EXISTS join_codes (
    code TEXT PRIMARY KEY,
    meeting_id INTEGER NOT NULL REFERENCES meetings(id),
    site_code TEXT,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS join_codes_by_meeting ON join_codes(meeting_id);
CREATE TABLE IF NOT EXISTS events (
    meeting_id INTEGER NOT NULL REFERENCES meetings(id),
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,
    recorded_at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    site_code TEXT,
    session TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (meeting_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_session ON events(session);
CREATE TABLE IF NOT EXISTS liveness (
    session TEXT PRIMARY KEY,
    meeting_id INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_runs (
    started_at INTEGER PRIMARY KEY,
    last_seen INTEGER NOT NULL,
    stopped_at INTEGER
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the attendance log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the attendance log is append-only'); END;
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('organizer', 'staff')),
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS login_sessions (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts(username),
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS login_sessions_by_user ON login_sessions(username);
CREATE TABLE IF NOT EXISTS parent_meetings (
    parent_meeting_id INTEGER PRIMARY KEY,
    meeting_id INTEGER NOT NULL UNIQUE REFERENCES meetings(id),
    -- This meeting's log is stored at the parent up to this event.
    acked_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS node_streams (
    node TEXT NOT NULL,
    meeting_id INTEGER NOT NULL REFERENCES meetings(id),
    -- The node's log of this meeting is stored here up to this event of it.
    through INTEGER NOT NULL,
    PRIMARY KEY (node, meeting_id)
);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    provinces TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
"#;

/// A connection as every part of the store uses it: WAL, a write on disk before its commit
/// returns, foreign keys checked, and a wait rather than a failure while another writes.
///
/// The writer and the recorder are two connections: every transaction that writes begins
/// `IMMEDIATE`, taking the write lock first (waiting for it as long as the busy timeout
/// allows). A deferred one that read first would fail at once with `SQLITE_BUSY` if the other
/// connection committed in between, since WAL cannot move its snapshot forward.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

#[cfg(test)]
pub(crate) mod testing {
    //! A store in a fresh directory, and a way to break it behind its back.

    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::Store;

    /// A fresh, empty directory under the system's temporary one.
    pub fn temp_dir(name: &str) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "diemcau-store-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A store opened in a fresh directory.
    pub fn temp_store(name: &str) -> Store {
        Store::open(&temp_dir(name)).expect("the store opens")
    }

    /// A commune of the directory with the given code, name and usual delegates.
    pub fn site(code: &str, name: &str, delegates: u32) -> crate::directory::Site {
        crate::directory::Site {
            code: code.to_owned(),
            name: name.to_owned(),
            level: crate::directory::Level::Commune,
            kind: "xã".to_owned(),
            parent_code: Some("8".to_owned()),
            parent_name: Some("Tuyên Quang".to_owned()),
            delegates,
        }
    }

    /// A meeting inviting the sites `codes`, which are added to the directory first.
    pub fn meeting(store: &Store, codes: &[&str]) -> diemcau_signaling::MeetingId {
        let sites: Vec<_> = codes.iter().map(|code| site(code, "Xã", 10)).collect();
        store.import_sites(&sites).expect("imported");
        let view = store
            .create_meeting(&super::NewMeeting {
                title: "Họp".to_owned(),
                scheduled_start: 1,
                scheduled_end: 2,
                studio_name: "Studio".to_owned(),
                sites: codes
                    .iter()
                    .map(|code| super::InvitedSite {
                        code: (*code).to_owned(),
                        expected_delegates: None,
                    })
                    .collect(),
            })
            .expect("created");
        diemcau_signaling::MeetingId(view.plan.id)
    }

    /// Drops `table` through a connection of its own, as a failing disk or a careless
    /// administrator would: the store's next use of it is a database failure.
    pub fn drop_table(store: &Store, table: &str) {
        let conn = rusqlite::Connection::open(store.path()).expect("a second connection");
        conn.execute_batch(&format!("PRAGMA foreign_keys = OFF; DROP TABLE {table};"))
            .expect("the table is dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_is_shared_across_threads_and_tasks() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<Store>();
    }

    #[test]
    fn reads_see_committed_writes_and_cannot_write() {
        let store = testing::temp_store("reader");
        store
            .writer()
            .execute(
                "INSERT INTO sites (code, name, level, kind) VALUES ('1', 'A', 'province', 'tỉnh')",
                [],
            )
            .expect("written");
        let count: i64 = store
            .reader()
            .query_row("SELECT COUNT(*) FROM sites", [], |r| r.get(0))
            .expect("read");
        assert_eq!(count, 1);
        assert!(
            store.reader().execute("DELETE FROM sites", []).is_err(),
            "the read connection is read-only"
        );
    }

    #[test]
    fn reads_do_not_wait_for_a_write_in_progress() {
        let store = testing::temp_store("no-wait");
        store
            .import_sites(&[testing::site("2269", "Xã Thượng Lâm", 40)])
            .expect("imported");
        let mut writer = store.writer();
        let tx = writer.transaction().expect("a write begins");
        tx.execute("DELETE FROM sites", [])
            .expect("deleted, not committed");
        // The writer is held, mid-transaction: a read still answers, from the last commit.
        assert_eq!(store.site_count().expect("read"), 1);
        assert_eq!(store.sites().expect("read").len(), 1);
        tx.commit().expect("committed");
        drop(writer);
        assert_eq!(store.site_count().expect("read"), 0);
    }

    #[tokio::test]
    async fn blocking_work_returns_its_own_error() {
        let store = testing::temp_store("blocking");
        let count = store.blocking(|s| s.site_count()).await.expect("counted");
        assert_eq!(count, 0);
        testing::drop_table(&store, "sites");
        let failed = store.blocking(|s| s.site_count()).await;
        assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
    }
}
