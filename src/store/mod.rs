//! Persistent state in SQLite (WAL): the sites directory, meeting plans with their join codes,
//! the append-only attendance log, and accounts with their login sessions.
//!
//! The log is written by one recorder thread that commits in groups: every event handed to
//! [`Recorder::append`] is on disk (`synchronous=FULL`) before the call returns, so an event the
//! hub has acknowledged survives a `kill -9` or a power cut. Triggers refuse any `UPDATE` or
//! `DELETE` of the log.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::attendance::{Event, EventKind, ExpectedSite, LeaveReason, MeetingPlan, Millis};
use crate::auth::{self, Account, Role};
use crate::directory::{Level, MAX_DELEGATES, Site};

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
"#;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "diemcau.sqlite3";

/// Errors of the store, split by whose fault they are.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request is wrong (unknown site, bad dates...): tell the user.
    #[error("{0}")]
    Invalid(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("database: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("the recorder has stopped")]
    RecorderStopped,
    /// The hub failed (no randomness, a write failed): not the user's fault.
    #[error("{0}")]
    Internal(String),
}

/// Why a join code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("this join code does not exist")]
    Unknown,
    #[error("this join code has been revoked; ask the organizer for a new link")]
    Revoked,
    #[error("this meeting has ended")]
    MeetingEnded,
    #[error("this join code belongs to another meeting")]
    OtherMeeting,
}

/// What a valid join code grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub meeting_id: i64,
    /// The site, or `None` for the studio's code.
    pub site: Option<ExpectedSite>,
    pub studio_name: String,
}

/// A new meeting as the organizer describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NewMeeting {
    pub title: String,
    pub scheduled_start: Millis,
    pub scheduled_end: Millis,
    pub studio_name: String,
    pub sites: Vec<InvitedSite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InvitedSite {
    pub code: String,
    /// Defaults to the directory's usual number.
    pub expected_delegates: Option<u32>,
}

/// A meeting with its plan, codes and state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MeetingView {
    #[serde(flatten)]
    pub plan: MeetingPlan,
    pub studio_name: String,
    pub studio_code: Option<String>,
    /// Current join code per site code (absent while revoked and not reissued).
    pub site_codes: HashMap<String, String>,
    pub state: MeetingState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MeetingState {
    Scheduled,
    InProgress,
    Ended,
}

/// An account as stored: the password only as its argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccount {
    pub username: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: Millis,
    pub disabled: bool,
}

/// A login session found by its token: whose it is and its CSRF token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSession {
    pub account: Account,
    pub csrf_token: String,
}

/// The store: one connection for plans and reads; the log has its own [`Recorder`].
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Invalid(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let conn = connect(&path)?;
        // Password hashes and session hashes are in it: readable by the hub's user only
        // (SQLite gives its -wal and -shm files the same mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| StoreError::Internal(format!("cannot restrict {}: {e}", path.display())),
            )?;
        }
        conn.execute_batch(SCHEMA)?;
        Ok(Store {
            inner: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the recorder thread that appends to the log.
    pub fn recorder(&self) -> Result<Recorder, StoreError> {
        Recorder::start(&self.path)
    }

    // ----- sites directory -----

    /// Adds or updates every site, in one transaction.
    pub fn import_sites(&self, sites: &[Site]) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO sites (code, name, level, kind, parent_code, parent_name, delegates)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(code) DO UPDATE SET name = excluded.name, level = excluded.level,
                   kind = excluded.kind, parent_code = excluded.parent_code,
                   parent_name = excluded.parent_name, delegates = excluded.delegates",
            )?;
            for s in sites {
                insert.execute(params![
                    s.code,
                    s.name,
                    level_name(s.level),
                    s.kind,
                    s.parent_code,
                    s.parent_name,
                    s.delegates
                ])?;
            }
        }
        tx.commit()?;
        Ok(sites.len())
    }

    pub fn sites(&self) -> Result<Vec<Site>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT code, name, level, kind, parent_code, parent_name, delegates FROM sites
             ORDER BY parent_code IS NOT NULL, parent_code, name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(Site {
                code: r.get(0)?,
                name: r.get(1)?,
                level: level_from(&r.get::<_, String>(2)?),
                kind: r.get(3)?,
                parent_code: r.get(4)?,
                parent_name: r.get(5)?,
                delegates: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn site_count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM sites", [], |r| r.get(0))?;
        Ok(count as u64)
    }

    // ----- meetings -----

    /// Creates a meeting with a join code for the studio and for each invited site.
    pub fn create_meeting(&self, new: &NewMeeting) -> Result<MeetingView, StoreError> {
        let title = new.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "the title must be 1 to 200 characters".into(),
            ));
        }
        let studio = new.studio_name.trim();
        if studio.is_empty() || studio.chars().count() > 200 {
            return Err(StoreError::Invalid(
                "the studio name must be 1 to 200 characters".into(),
            ));
        }
        if new.scheduled_end <= new.scheduled_start {
            return Err(StoreError::Invalid(
                "the scheduled end must be after the start".into(),
            ));
        }
        if new.sites.is_empty() {
            return Err(StoreError::Invalid("invite at least one site".into()));
        }
        let now = now_millis();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO meetings (title, scheduled_start, scheduled_end, studio_name, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![title, new.scheduled_start, new.scheduled_end, studio, now],
        )?;
        let id = tx.last_insert_rowid();
        let mut seen = std::collections::HashSet::new();
        for (position, invited) in new.sites.iter().enumerate() {
            if !seen.insert(invited.code.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "site {} is invited twice",
                    invited.code
                )));
            }
            let site: Option<(String, u32)> = tx
                .query_row(
                    "SELECT name, delegates FROM sites WHERE code = ?1",
                    [&invited.code],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((name, usual)) = site else {
                return Err(StoreError::Invalid(format!(
                    "unknown site code {}",
                    invited.code
                )));
            };
            let expected = invited.expected_delegates.unwrap_or(usual);
            if expected > MAX_DELEGATES {
                return Err(StoreError::Invalid(format!(
                    "{expected} expected delegates for {name} is more than {MAX_DELEGATES}"
                )));
            }
            tx.execute(
                "INSERT INTO roster (meeting_id, site_code, site_name, expected_delegates, position)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id, invited.code, name, expected, position as i64],
            )?;
            insert_code(&tx, id, Some(&invited.code), now)?;
        }
        insert_code(&tx, id, None, now)?;
        tx.commit()?;
        drop(conn);
        self.meeting(id)
    }

    pub fn meeting(&self, id: i64) -> Result<MeetingView, StoreError> {
        let conn = self.lock();
        meeting_view(&conn, id)
    }

    /// Every meeting, newest first.
    pub fn meetings(&self) -> Result<Vec<MeetingView>, StoreError> {
        let conn = self.lock();
        let ids: Vec<i64> = conn
            .prepare("SELECT id FROM meetings ORDER BY scheduled_start DESC, id DESC")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        ids.into_iter().map(|id| meeting_view(&conn, id)).collect()
    }

    /// Revokes a site's join code and issues a new one; returns the new code.
    pub fn reissue_code(&self, meeting_id: i64, site_code: &str) -> Result<String, StoreError> {
        let now = now_millis();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let on_roster: bool = tx
            .query_row(
                "SELECT COUNT(*) FROM roster WHERE meeting_id = ?1 AND site_code = ?2",
                params![meeting_id, site_code],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        if !on_roster {
            return Err(StoreError::NotFound(format!(
                "site {site_code} in meeting {meeting_id}"
            )));
        }
        tx.execute(
            "UPDATE join_codes SET revoked_at = ?1
             WHERE meeting_id = ?2 AND site_code = ?3 AND revoked_at IS NULL",
            params![now, meeting_id, site_code],
        )?;
        let code = insert_code(&tx, meeting_id, Some(site_code), now)?;
        tx.commit()?;
        Ok(code)
    }

    /// Checks a join code, optionally against the meeting the page was opened for.
    pub fn resolve_code(
        &self,
        code: &str,
        expected_meeting: Option<i64>,
    ) -> Result<Grant, CodeError> {
        let conn = self.lock();
        let row: Option<(i64, Option<String>, Option<i64>)> = conn
            .query_row(
                "SELECT meeting_id, site_code, revoked_at FROM join_codes WHERE code = ?1",
                [code],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .unwrap_or(None);
        let Some((meeting_id, site_code, revoked_at)) = row else {
            return Err(CodeError::Unknown);
        };
        if expected_meeting.is_some_and(|m| m != meeting_id) {
            return Err(CodeError::OtherMeeting);
        }
        if revoked_at.is_some() {
            return Err(CodeError::Revoked);
        }
        let view = meeting_view(&conn, meeting_id).map_err(|_| CodeError::Unknown)?;
        if view.state == MeetingState::Ended {
            return Err(CodeError::MeetingEnded);
        }
        let site = match site_code {
            Some(code) => Some(
                view.plan
                    .roster
                    .iter()
                    .find(|s| s.code == code)
                    .cloned()
                    .ok_or(CodeError::Unknown)?,
            ),
            None => None,
        };
        Ok(Grant {
            meeting_id,
            site,
            studio_name: view.studio_name,
        })
    }

    /// Notes that these sessions are alive now: after a crash, they are closed at the last
    /// such moment rather than at their last event.
    pub fn touch_sessions(&self, sessions: &[(i64, String)], at: Millis) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO liveness (session, meeting_id, last_seen) VALUES (?1, ?2, ?3)
                 ON CONFLICT(session) DO UPDATE SET last_seen = excluded.last_seen",
            )?;
            for (meeting, session) in sessions {
                upsert.execute(params![session, meeting, at])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The last time a site left a meeting: its session and when.
    pub fn last_leave(
        &self,
        meeting_id: i64,
        site_code: &str,
    ) -> Result<Option<(String, Millis)>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT session, at FROM events
                 WHERE meeting_id = ?1 AND site_code = ?2 AND kind = 'site_left'
                 ORDER BY seq DESC LIMIT 1",
                params![meeting_id, site_code],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// The whole log of a meeting, in order.
    pub fn events(&self, meeting_id: i64) -> Result<Vec<Event>, StoreError> {
        let conn = self.lock();
        read_events(&conn, meeting_id)
    }

    /// Closes every session the log shows open in a meeting that has not ended, at the last
    /// moment the hub knew it alive (its last event). Run at start-up, before serving: after a
    /// crash these sessions were cut off without a `site_left`. Returns how many were closed.
    pub fn close_interrupted_sessions(&self, recorder: &Recorder) -> Result<usize, StoreError> {
        let open: Vec<(i64, String, String, Millis)> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(
                "SELECT e.meeting_id, e.site_code, e.session,
                        MAX(MAX(e.at), COALESCE(MAX(l.last_seen), 0))
                 FROM events e LEFT JOIN liveness l ON l.session = e.session
                 WHERE e.session IS NOT NULL
                 GROUP BY e.meeting_id, e.session
                 HAVING SUM(e.kind = 'site_left') = 0",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<Result<_, _>>()?
        };
        let count = open.len();
        for (meeting_id, site, session, last_alive) in open {
            recorder.append_blocking(
                meeting_id,
                last_alive,
                EventKind::SiteLeft {
                    site,
                    session,
                    reason: LeaveReason::HubCrash,
                },
            )?;
        }
        Ok(count)
    }
}

/// Accounts and login sessions (see [`crate::auth`]).
impl Store {
    pub fn account_count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
        Ok(count as u64)
    }

    /// Adds an account; refused if the username is taken.
    pub fn add_account(
        &self,
        username: &str,
        role: Role,
        password_hash: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let added = self.lock().execute(
            "INSERT INTO accounts (username, role, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(username) DO NOTHING",
            params![username, role.as_str(), password_hash, now],
        )?;
        if added == 0 {
            return Err(StoreError::Invalid(format!(
                "account {username} exists already"
            )));
        }
        Ok(())
    }

    pub fn account(&self, username: &str) -> Result<Option<StoredAccount>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                "SELECT username, role, password_hash, created_at, disabled FROM accounts
                 WHERE username = ?1",
                [username],
                stored_account,
            )
            .optional()?)
    }

    /// Every account, by name.
    pub fn accounts(&self) -> Result<Vec<StoredAccount>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT username, role, password_hash, created_at, disabled FROM accounts
             ORDER BY username",
        )?;
        let rows = stmt.query_map([], stored_account)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Sets a new password and ends the account's login sessions.
    pub fn set_password(&self, username: &str, password_hash: &str) -> Result<(), StoreError> {
        self.change_account_ending_logins(
            username,
            "UPDATE accounts SET password_hash = ?1 WHERE username = ?2",
            params![password_hash, username],
        )
    }

    /// Disables an account (it can no longer log in) and ends its login sessions.
    pub fn disable_account(&self, username: &str) -> Result<(), StoreError> {
        self.change_account_ending_logins(
            username,
            "UPDATE accounts SET disabled = 1 WHERE username = ?1",
            [username],
        )
    }

    /// Lets a disabled account log in again.
    pub fn enable_account(&self, username: &str) -> Result<(), StoreError> {
        let updated = self.lock().execute(
            "UPDATE accounts SET disabled = 0 WHERE username = ?1",
            [username],
        )?;
        if updated == 0 {
            return Err(StoreError::NotFound(format!("account {username}")));
        }
        Ok(())
    }

    /// Runs `update` on the account's row and ends its login sessions, in one transaction.
    fn change_account_ending_logins(
        &self,
        username: &str,
        update: &str,
        params: impl rusqlite::Params,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        if tx.execute(update, params)? == 0 {
            return Err(StoreError::NotFound(format!("account {username}")));
        }
        tx.execute("DELETE FROM login_sessions WHERE username = ?1", [username])?;
        tx.commit()?;
        Ok(())
    }

    /// Records a new login session under the SHA-256 of its token; drops expired ones.
    pub fn create_login_session(
        &self,
        token_sha256: &str,
        username: &str,
        csrf_token: &str,
        now: Millis,
    ) -> Result<(), StoreError> {
        let conn = self.lock();
        delete_expired_sessions(&conn, now)?;
        conn.execute(
            "INSERT INTO login_sessions (token_sha256, username, csrf_token, created_at, last_seen)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![token_sha256, username, csrf_token, now],
        )?;
        Ok(())
    }

    /// The live session with this token hash, of an account that is not disabled; notes its
    /// use. An expired session is deleted and not returned.
    pub fn login_session(
        &self,
        token_sha256: &str,
        now: Millis,
    ) -> Result<Option<LoginSession>, StoreError> {
        let conn = self.lock();
        let found: Option<(String, String, String, Millis, Millis, bool)> = conn
            .prepare_cached(
                "SELECT s.username, a.role, s.csrf_token, s.created_at, s.last_seen, a.disabled
                 FROM login_sessions s JOIN accounts a ON a.username = s.username
                 WHERE s.token_sha256 = ?1",
            )?
            .query_row([token_sha256], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()?;
        let Some((username, role, csrf_token, created_at, last_seen, disabled)) = found else {
            return Ok(None);
        };
        let role = Role::parse(&role);
        if disabled || role.is_none() || session_expired(created_at, last_seen, now) {
            conn.execute(
                "DELETE FROM login_sessions WHERE token_sha256 = ?1",
                [token_sha256],
            )?;
            return Ok(None);
        }
        // One write a minute at most per session, not one per request.
        if now - last_seen >= 60_000 {
            conn.execute(
                "UPDATE login_sessions SET last_seen = ?1 WHERE token_sha256 = ?2",
                params![now, token_sha256],
            )?;
        }
        Ok(role.map(|role| LoginSession {
            account: Account { username, role },
            csrf_token,
        }))
    }

    pub fn delete_login_session(&self, token_sha256: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "DELETE FROM login_sessions WHERE token_sha256 = ?1",
            [token_sha256],
        )?;
        Ok(())
    }
}

fn stored_account(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredAccount> {
    let role: String = r.get(1)?;
    Ok(StoredAccount {
        username: r.get(0)?,
        role: Role::parse(&role).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown role {role}").into(),
            )
        })?,
        password_hash: r.get(2)?,
        created_at: r.get(3)?,
        disabled: r.get(4)?,
    })
}

fn session_expired(created_at: Millis, last_seen: Millis, now: Millis) -> bool {
    now - last_seen >= auth::SESSION_IDLE.as_millis() as Millis
        || now - created_at >= auth::SESSION_LIFETIME.as_millis() as Millis
}

fn delete_expired_sessions(conn: &Connection, now: Millis) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM login_sessions WHERE last_seen <= ?1 OR created_at <= ?2",
        params![
            now - auth::SESSION_IDLE.as_millis() as Millis,
            now - auth::SESSION_LIFETIME.as_millis() as Millis
        ],
    )?;
    Ok(())
}

/// Appends to the attendance log from a dedicated thread, committing in groups.
#[derive(Debug, Clone)]
pub struct Recorder {
    requests: crossbeam_channel::Sender<Append>,
}

struct Append {
    meeting_id: i64,
    at: Millis,
    kind: EventKind,
    done: Done,
}

enum Done {
    Async(oneshot::Sender<Result<Event, String>>),
    Blocking(crossbeam_channel::Sender<Result<Event, String>>),
}

impl Recorder {
    fn start(path: &Path) -> Result<Recorder, StoreError> {
        let conn = connect(path)?;
        let (requests, inbox) = crossbeam_channel::unbounded::<Append>();
        std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || record(conn, inbox))
            .map_err(|e| StoreError::Internal(format!("cannot start the recorder: {e}")))?;
        Ok(Recorder { requests })
    }

    /// Appends an event; the returned future resolves once it is on disk. The event takes its
    /// place in the log when this is called, not when the future is polled, so events keep
    /// the order of the calls.
    pub fn append(
        &self,
        meeting_id: i64,
        at: Millis,
        kind: EventKind,
    ) -> impl Future<Output = Result<Event, StoreError>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let sent = self
            .requests
            .send(Append {
                meeting_id,
                at,
                kind,
                done: Done::Async(done),
            })
            .is_ok();
        async move {
            if !sent {
                return Err(StoreError::RecorderStopped);
            }
            wait.await
                .map_err(|_| StoreError::RecorderStopped)?
                .map_err(StoreError::Internal)
        }
    }

    /// [`Recorder::append`] for callers outside async code.
    pub fn append_blocking(
        &self,
        meeting_id: i64,
        at: Millis,
        kind: EventKind,
    ) -> Result<Event, StoreError> {
        let (done, wait) = crossbeam_channel::bounded(1);
        self.requests
            .send(Append {
                meeting_id,
                at,
                kind,
                done: Done::Blocking(done),
            })
            .map_err(|_| StoreError::RecorderStopped)?;
        wait.recv()
            .map_err(|_| StoreError::RecorderStopped)?
            .map_err(StoreError::Internal)
    }
}

/// The recorder thread: take everything queued, write it in one transaction, then acknowledge.
fn record(mut conn: Connection, inbox: crossbeam_channel::Receiver<Append>) {
    let mut next_seq: HashMap<i64, u64> = HashMap::new();
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < 1024 {
            match inbox.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let recorded_at = now_millis();
        let result = write_batch(&mut conn, &mut next_seq, &batch, recorded_at);
        match result {
            Ok(events) => {
                for (append, event) in batch.into_iter().zip(events) {
                    reply(append.done, Ok(event));
                }
            }
            Err(e) => {
                // Nothing of the batch was written: the sequence cache may be ahead.
                next_seq.clear();
                tracing::error!("attendance log write failed: {e}");
                for append in batch {
                    reply(append.done, Err(e.to_string()));
                }
            }
        }
    }
}

fn reply(done: Done, result: Result<Event, String>) {
    match done {
        Done::Async(tx) => {
            let _ = tx.send(result);
        }
        Done::Blocking(tx) => {
            let _ = tx.send(result);
        }
    }
}

fn write_batch(
    conn: &mut Connection,
    next_seq: &mut HashMap<i64, u64>,
    batch: &[Append],
    recorded_at: Millis,
) -> Result<Vec<Event>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut events = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (meeting_id, seq, at, recorded_at, kind, site_code, session, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for append in batch {
            let seq = match next_seq.get(&append.meeting_id) {
                Some(seq) => *seq,
                None => {
                    let max: Option<i64> = tx.query_row(
                        "SELECT MAX(seq) FROM events WHERE meeting_id = ?1",
                        [append.meeting_id],
                        |r| r.get(0),
                    )?;
                    max.map_or(1, |m| m as u64 + 1)
                }
            };
            let event = Event {
                seq,
                at: append.at,
                recorded_at,
                kind: append.kind.clone(),
            };
            let body = serde_json::to_string(&event.kind)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            insert.execute(params![
                append.meeting_id,
                seq as i64,
                event.at,
                recorded_at,
                event.kind.name(),
                event.kind.site(),
                event.kind.session(),
                body
            ])?;
            next_seq.insert(append.meeting_id, seq + 1);
            events.push(event);
        }
    }
    tx.commit()?;
    Ok(events)
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn read_events(conn: &Connection, meeting_id: i64) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, recorded_at, body FROM events WHERE meeting_id = ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map([meeting_id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut events = Vec::new();
    for row in rows {
        let (seq, at, recorded_at, body) = row?;
        let kind: EventKind = serde_json::from_str(&body).map_err(|e| {
            StoreError::Internal(format!(
                "event {seq} of meeting {meeting_id} is unreadable: {e}"
            ))
        })?;
        events.push(Event {
            seq: seq as u64,
            at,
            recorded_at,
            kind,
        });
    }
    Ok(events)
}

fn meeting_view(conn: &Connection, id: i64) -> Result<MeetingView, StoreError> {
    let meeting: Option<(String, i64, i64, String)> = conn
        .query_row(
            "SELECT title, scheduled_start, scheduled_end, studio_name FROM meetings WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((title, scheduled_start, scheduled_end, studio_name)) = meeting else {
        return Err(StoreError::NotFound(format!("meeting {id}")));
    };
    let roster: Vec<ExpectedSite> = conn
        .prepare_cached(
            "SELECT site_code, site_name, expected_delegates FROM roster
             WHERE meeting_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| {
            Ok(ExpectedSite {
                code: r.get(0)?,
                name: r.get(1)?,
                expected_delegates: r.get(2)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut studio_code = None;
    let mut site_codes = HashMap::new();
    let mut stmt = conn.prepare_cached(
        "SELECT code, site_code FROM join_codes WHERE meeting_id = ?1 AND revoked_at IS NULL",
    )?;
    for row in stmt.query_map([id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?))
    })? {
        let (code, site) = row?;
        match site {
            Some(site) => {
                site_codes.insert(site, code);
            }
            None => studio_code = Some(code),
        }
    }
    let started: i64 = conn.query_row(
        "SELECT COUNT(*) FROM events WHERE meeting_id = ?1 AND kind = 'meeting_started'",
        [id],
        |r| r.get(0),
    )?;
    let ended: i64 = conn.query_row(
        "SELECT COUNT(*) FROM events WHERE meeting_id = ?1 AND kind = 'meeting_ended'",
        [id],
        |r| r.get(0),
    )?;
    let state = match (started > 0, ended > 0) {
        (_, true) => MeetingState::Ended,
        (true, false) => MeetingState::InProgress,
        (false, false) => MeetingState::Scheduled,
    };
    Ok(MeetingView {
        plan: MeetingPlan {
            id,
            title,
            scheduled_start,
            scheduled_end,
            roster,
        },
        studio_name,
        studio_code,
        site_codes,
        state,
    })
}

/// An unguessable join code: 100 random bits in 20 characters of [`random_text`].
/// Without an entropy source no code is made at all.
fn new_code() -> Result<String, StoreError> {
    random_text(20)
        .map_err(|e| StoreError::Internal(format!("no random bytes for a join code: {e}")))
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

fn insert_code(
    tx: &rusqlite::Transaction<'_>,
    meeting_id: i64,
    site_code: Option<&str>,
    now: Millis,
) -> Result<String, StoreError> {
    let code = new_code()?;
    tx.execute(
        "INSERT INTO join_codes (code, meeting_id, site_code, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![code, meeting_id, site_code, now],
    )?;
    Ok(code)
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Province => "province",
        Level::District => "district",
        Level::Commune => "commune",
    }
}

fn level_from(name: &str) -> Level {
    match name {
        "province" => Level::Province,
        "district" => Level::District,
        _ => Level::Commune,
    }
}

/// Wall-clock time in milliseconds since the epoch.
pub fn now_millis() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}
