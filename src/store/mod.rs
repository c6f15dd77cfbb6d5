//! Persistent state in SQLite (WAL, the embedded default) or PostgreSQL (the shared record of
//! hubs that stand in for one another), one file per concern:
//!
//! - this file: opening the database, the [`Store`] handle and the errors all parts share;
//! - `db`: one connection to either engine, and the SQL dialect both read;
//! - `schema`: the tables of each engine and their versioned migrations;
//! - `postgres`: where a PostgreSQL database is and how the hub connects to it;
//! - `sites`: the sites directory;
//! - `meetings`: meeting plans, their join codes, [`Store::resolve_code`] and the views of a
//!   meeting;
//! - `log`: the append-only attendance log, written by the [`Recorder`]'s thread, with the
//!   liveness marks and the closing of sessions a crash left open;
//! - `accounts`: accounts and their login sessions;
//! - `stream_tokens`: the tokens a studio's encoder publishes a meeting's programme with
//!   (WHIP), and a watch link plays it with (WHEP);
//! - `leases`: which hub runs each live meeting, when hubs share a PostgreSQL database.
//!
//! The log is written by one recorder thread that commits in groups: every event handed to
//! [`Recorder::append`] is committed (on disk with SQLite's `synchronous=FULL`; flushed by
//! PostgreSQL's own commit) before the call returns, so an event the hub has acknowledged
//! survives a `kill -9` or a power cut. Triggers refuse any `UPDATE` or `DELETE` of the log.
//!
//! Every call blocks on the database: async code runs it through [`Store::blocking`]. Writes
//! queue on one writer connection; reads go to read connections of their own (one for SQLite,
//! which WAL lets run beside the writer; a small pool for PostgreSQL).

mod accounts;
pub mod backup;
pub(crate) mod db;
mod leases;
mod log;
mod meetings;
mod nodes;
mod postgres;
mod schema;
mod signals;
mod sites;
mod spool;
mod stream_tokens;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::attendance::Millis;
use db::Conn;

pub use accounts::{Account, AccountChangeError, LoginSession, Role, SessionLimits, StoredAccount};
pub use leases::{LeaseHolder, LeaseOutcome};
pub use log::{NodeBatch, Recorder};
pub use meetings::{
    CodeError, CreateMeetingError, Grant, InvitedSite, MeetingRoster, MeetingState, MeetingView,
    NewMeeting, ReissueError,
};
pub use nodes::{NodeChangeError, NodeRecord};
pub use postgres::PostgresTarget;
pub use schema::SCHEMA_VERSION;
pub use signals::HubSignal;
pub use spool::{DEFAULT_LIMIT as LOG_BUFFER_LIMIT, LogHealth};
pub use stream_tokens::{StreamTokenError, TokenKind};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "diemcau.sqlite3";

/// Where the store keeps its data.
#[derive(Debug, Clone)]
pub enum Database {
    /// SQLite, in [`DATABASE_FILE`] of this directory: the embedded default.
    Sqlite(PathBuf),
    /// A PostgreSQL database, which several hubs may share.
    Postgres(Box<PostgresTarget>),
}

/// A failure of the store itself (the database failed, the recorder thread is gone, the
/// machine refused randomness or a file), or a lookup of what does not exist. What a caller
/// may have got wrong is told by the error of each operation ([`CreateMeetingError`],
/// [`ReissueError`], [`CodeError`], [`AccountChangeError`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// What was asked for does not exist (a meeting by its id).
    #[error("not found: {0}")]
    NotFound(String),
    /// The database refused or failed (SQLite's or PostgreSQL's words).
    #[error("database: {0}")]
    Database(String),
    /// The database cannot be reached: the connection to the server failed or was lost
    /// (it stopped, restarted, or the network between went down). What was under way was not
    /// committed; the same work may succeed once the server is back.
    #[error("database unreachable: {0}")]
    Unreachable(String),
    /// The database's schema is newer than this hub knows: a newer release wrote it.
    #[error(
        "the database's schema is version {found}, newer than this hub's ({known}): \
         run the release that upgraded it, or a newer one"
    )]
    NewerSchema { found: i64, known: i64 },
    #[error("the recorder has stopped")]
    RecorderStopped,
    /// The hub failed otherwise (no randomness, a file it cannot write, an unreadable row).
    #[error("{0}")]
    Internal(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Database(e.to_string())
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> StoreError {
        if db::lost_connection(&e) {
            StoreError::Unreachable(db::postgres_message(&e))
        } else {
            StoreError::Database(db::postgres_message(&e))
        }
    }
}

/// The handle on the database: cheap to clone, shared by every task and thread. It lives as
/// long as its last clone; the [`Recorder`] it starts has its own connection and thread.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Connections>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        Store::connect(&Database::Sqlite(data_dir.to_owned()))
    }

    /// Opens the database, bringing its schema up to this hub's version; refuses one newer.
    pub fn connect(database: &Database) -> Result<Store, StoreError> {
        let (mut writer, readers) = match database {
            Database::Sqlite(data_dir) => {
                let path = sqlite_file(data_dir)?;
                let writer = Conn::Sqlite(connect(&path)?);
                (writer, None)
            }
            Database::Postgres(target) => (target.connect()?, Some(target)),
        };
        schema::migrate(&mut writer)?;
        let readers = match (database, readers) {
            (Database::Sqlite(data_dir), _) => {
                let reader = connect(&data_dir.join(DATABASE_FILE))?;
                // A read that tried to write would be a bug here; SQLite refuses it.
                reader.pragma_update(None, "query_only", true)?;
                vec![Mutex::new(Conn::Sqlite(reader))]
            }
            (_, Some(target)) => (0..postgres::READERS)
                .map(|_| {
                    let mut reader = target.connect()?;
                    // As SQLite's `query_only`: a read that tried to write is refused.
                    reader.set_setup("SET default_transaction_read_only = on")?;
                    Ok(Mutex::new(reader))
                })
                .collect::<Result<_, StoreError>>()?,
            (Database::Postgres(_), None) => Vec::new(),
        };
        Ok(Store {
            inner: Arc::new(Connections {
                writer: Mutex::new(writer),
                readers,
                database: database.clone(),
            }),
        })
    }

    /// The SQLite file, when the store is one.
    pub fn path(&self) -> Option<PathBuf> {
        match &self.inner.database {
            Database::Sqlite(data_dir) => Some(data_dir.join(DATABASE_FILE)),
            Database::Postgres(_) => None,
        }
    }

    /// Where the data is.
    pub fn database(&self) -> &Database {
        &self.inner.database
    }

    /// Whether other hubs may share this database (PostgreSQL): meetings are then run under a
    /// lease (`leases`). A SQLite file has one hub, which its data directory's lock ensures.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.database, Database::Postgres(_))
    }

    /// Runs `work` on a thread meant for blocking, so that an async task never waits on
    /// the database; the error of `work` comes back as it is.
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

    /// Starts the recorder thread that appends to the log, on a connection of its own.
    pub fn recorder(&self) -> Result<Recorder, StoreError> {
        let conn = match &self.inner.database {
            Database::Sqlite(data_dir) => Conn::Sqlite(connect(&data_dir.join(DATABASE_FILE))?),
            Database::Postgres(target) => target.connect()?,
        };
        Recorder::start(conn, None, Arc::default())
    }

    /// [`Store::recorder`], which, on a database of another machine (PostgreSQL), keeps what
    /// it cannot write while the database is unreachable in a buffer on local disk, in
    /// `buffer_dir`, `limit` events at most, and writes it when the database is back. Events
    /// a previous run left in the buffer are written first. The hub starts here even while
    /// the database is unreachable, if it was reached at the store's opening.
    pub fn buffered_recorder(
        &self,
        buffer_dir: &Path,
        limit: usize,
    ) -> Result<Recorder, StoreError> {
        let Database::Postgres(target) = &self.inner.database else {
            return self.recorder();
        };
        let health = Arc::new(LogHealth::default());
        let mut spool =
            spool::Spool::open(buffer_dir, limit, health.clone()).map_err(StoreError::Internal)?;
        let mut conn = target.connect()?;
        // What a previous run left goes in before anything is read or written at this start
        // (the closing of the sessions a crash cut off reads the log).
        if !spool.is_empty() {
            match spool.flush(&mut conn, &mut std::collections::HashMap::new()) {
                Ok(stored) => tracing::info!(
                    events = stored,
                    "attendance events buffered by a previous run are in the log"
                ),
                Err(e) => tracing::error!(
                    "attendance events buffered by a previous run could not be stored yet: {e}"
                ),
            }
        }
        Recorder::start(conn, Some(spool), health)
    }

    /// The connection that writes (and reads what must see its own writes at once).
    fn writer(&self) -> MutexGuard<'_, Conn> {
        self.inner
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A connection that only reads: it waits for other reads, never for the writer. The
    /// first free one of the pool, or the first if all are busy.
    fn reader(&self) -> MutexGuard<'_, Conn> {
        for reader in &self.inner.readers {
            if let Ok(conn) = reader.try_lock() {
                return conn;
            }
        }
        match self.inner.readers.first() {
            Some(reader) => reader
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
            None => self.writer(),
        }
    }
}

/// The SQLite file in `data_dir`, the directory made if missing, the file readable by the
/// hub's user only (password hashes and session hashes are in it; SQLite gives its -wal and
/// -shm files the same mode).
fn sqlite_file(data_dir: &Path) -> Result<PathBuf, StoreError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| StoreError::Internal(format!("cannot create {}: {e}", data_dir.display())))?;
    let path = data_dir.join(DATABASE_FILE);
    drop(connect(&path)?);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            StoreError::Internal(format!("cannot restrict {}: {e}", path.display()))
        })?;
    }
    Ok(path)
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

/// The connections of a [`Store`].
#[derive(Debug)]
struct Connections {
    writer: Mutex<Conn>,
    readers: Vec<Mutex<Conn>>,
    database: Database,
}

/// A connection as every part of the store uses it: WAL, a write on disk before its commit
/// returns, foreign keys checked, and a wait rather than a failure while another writes.
///
/// The writer and the recorder are two connections: every transaction that writes begins
/// `IMMEDIATE`, taking the write lock first (waiting for it as long as the busy timeout
/// allows). A deferred one that read first would fail at once with `SQLITE_BUSY` if the other
/// connection committed in between, since WAL cannot move its snapshot forward.
fn connect(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
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

    use super::db::{Conn, Engine};
    use super::{DATABASE_FILE, Database, PostgresTarget, Store};

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

    /// A fresh, empty store: SQLite in a fresh directory, or, when `DIEMCAU_TEST_STORE` is
    /// `postgres`, a schema of its own in the PostgreSQL database of `DIEMCAU_TEST_POSTGRES`
    /// (the throwaway cluster `scripts/test` starts). The store's tests run once on each.
    pub fn temp_store(name: &str) -> Store {
        Store::connect(&temp_database(name)).expect("the store opens")
    }

    /// Where [`temp_store`] keeps its data.
    pub fn temp_database(name: &str) -> Database {
        if std::env::var("DIEMCAU_TEST_STORE").as_deref() != Ok("postgres") {
            return Database::Sqlite(temp_dir(name));
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = std::env::var("DIEMCAU_TEST_POSTGRES")
            .expect("DIEMCAU_TEST_POSTGRES names the test cluster (scripts/test starts one)");
        let admin = PostgresTarget::new(&url, None, None).expect("the test cluster's URL");
        let schema = format!(
            "t_{}_{}_{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin
            .connect()
            .expect("the test cluster answers")
            .batch(&format!("CREATE SCHEMA {schema}"))
            .expect("a schema for the test");
        Database::Postgres(Box::new(admin.in_schema(&schema)))
    }

    /// A connection of its own to the store's database, as another program would open.
    pub fn second_connection(store: &Store) -> Conn {
        match store.database() {
            Database::Sqlite(dir) => {
                Conn::Sqlite(rusqlite::Connection::open(dir.join(DATABASE_FILE)).expect("opened"))
            }
            Database::Postgres(target) => target.connect().expect("connected"),
        }
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
                recording: None,
            })
            .expect("created");
        diemcau_signaling::MeetingId(view.plan.id)
    }

    /// Drops `table` through a connection of its own, as a failing disk or a careless
    /// administrator would: the store's next use of it is a database failure.
    pub fn drop_table(store: &Store, table: &str) {
        let mut conn = second_connection(store);
        let drop = match conn.engine() {
            Engine::Sqlite => format!("PRAGMA foreign_keys = OFF; DROP TABLE {table};"),
            Engine::Postgres => format!("DROP TABLE {table} CASCADE"),
        };
        conn.batch(&drop).expect("the table is dropped");
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
                &[],
            )
            .expect("written");
        let count: i64 = store
            .reader()
            .query_one("SELECT COUNT(*) FROM sites", &[])
            .and_then(|r| r.get(0))
            .expect("read");
        assert_eq!(count, 1);
        assert!(
            store.reader().execute("DELETE FROM sites", &[]).is_err(),
            "the read connection is read-only"
        );
    }

    #[test]
    fn reads_do_not_wait_for_a_write_in_progress() {
        let store = testing::temp_store("no-wait");
        store
            .import_sites(&[testing::site("2269", "Xã Thượng Lâm", 40)])
            .expect("imported");
        store
            .writer()
            .write(|tx| {
                tx.execute("DELETE FROM sites", &[])?;
                // The writer is held, mid-transaction: a read still answers, from the last
                // commit.
                assert_eq!(store.site_count().expect("read"), 1);
                assert_eq!(store.sites().expect("read").len(), 1);
                Ok::<_, StoreError>(())
            })
            .expect("committed");
        assert_eq!(store.site_count().expect("read"), 0);
    }

    /// PostgreSQL only (SQLite's connections are files): the server ends every connection
    /// of the store (a restart, an administrator); the next use of each works again, the
    /// readers still read-only.
    #[test]
    fn connections_the_database_server_ends_are_opened_again() {
        let store = testing::temp_store("reopen");
        if !store.is_shared() {
            return;
        }
        let recorder = store.recorder().expect("recorder");
        let meeting = testing::meeting(&store, &["2269"]);
        let mut admin = testing::second_connection(&store);
        let application = store
            .reader()
            .query_one("SELECT current_setting('application_name')", &[])
            .and_then(|r| r.get::<String>(0))
            .expect("the store's connections' name");
        let ended = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = $1 AND pid <> pg_backend_pid()",
                db::args![application],
            )
            .expect("the connections ended");
        assert!(
            ended.len() >= 3,
            "the writer, the readers and the recorder's"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
        // A use that was under way as the server ended it may fail; the next ones work.
        let _ = store.site_count();
        assert_eq!(store.site_count().expect("read again"), 1);
        store
            .import_sites(&[testing::site("2266", "Xã Lâm Bình", 30)])
            .expect("written again");
        assert!(
            store.reader().execute("DELETE FROM sites", &[]).is_err(),
            "a reader opened again is read-only still"
        );
        let _ = recorder.append_blocking(meeting, 1, crate::attendance::EventKind::MeetingStarted);
        recorder
            .append_blocking(meeting, 2, crate::attendance::EventKind::MeetingEnded)
            .expect("the recorder writes again");
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
