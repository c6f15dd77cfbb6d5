//! The tables of each engine and their migrations. Each migration has a number; the database
//! keeps the numbers applied in `schema_version`. At every open the hub applies, in one
//! transaction, those it knows and the database lacks, and refuses a database that has a
//! number it does not know: a newer release migrated it, and this one would misread it.
//!
//! SQLite's first migration creates what is missing (`IF NOT EXISTS`): databases made before
//! the schema had numbers take it as they are.

use super::StoreError;
use super::db::{Conn, Engine, args};
use super::now_millis;

/// The schema version this hub writes and reads: the number of its last migration.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Each migration: its SQLite text, its PostgreSQL text. The n-th is version n.
const MIGRATIONS: [(&str, &str); 5] = [
    (SQLITE_V1, POSTGRES_V1),
    (V2, V2),
    (V3, V3),
    (V4, V4),
    (V5, V5),
];

/// Hubs that share a database: which hub runs each live meeting until when (its lease), and
/// each hub's own runs.
const V2: &str = r#"
CREATE TABLE meeting_leases (
    meeting_id BIGINT PRIMARY KEY REFERENCES meetings(id),
    -- The hub that runs the meeting (its --hub-name) and where its pages are.
    owner TEXT NOT NULL,
    address TEXT NOT NULL,
    -- The owner's run (when it started), to tell its restart from itself.
    run BIGINT NOT NULL,
    -- By the database's clock, in milliseconds since the epoch.
    expires_at BIGINT NOT NULL
);
ALTER TABLE hub_runs ADD COLUMN hub TEXT NOT NULL DEFAULT '';
"#;

/// The files of events a hub buffered on its own disk while the database was unreachable:
/// how far each is stored, so that none of its events is stored twice.
const V3: &str = r#"
CREATE TABLE event_spools (
    name TEXT PRIMARY KEY,
    through BIGINT NOT NULL
);
"#;

/// The tokens of a meeting's programme over HTTP: `encoder` (a studio encoder publishes, WHIP),
/// `watch` (a player plays, WHEP); one valid of each kind per meeting, the earlier revoked.
const V4: &str = r#"
CREATE TABLE stream_tokens (
    token TEXT PRIMARY KEY,
    meeting_id BIGINT NOT NULL REFERENCES meetings(id),
    kind TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX stream_tokens_meeting ON stream_tokens (meeting_id, kind);
"#;

/// Each meeting's own recording setting (`auto`, `manual`, `off`); `NULL` for the meetings made
/// before: they follow the hub's `--recording`.
const V5: &str = r#"
ALTER TABLE meetings ADD COLUMN recording TEXT CHECK (recording IN ('auto', 'manual', 'off'));
"#;

/// Brings the database to [`SCHEMA_VERSION`], or refuses one newer.
pub(super) fn migrate(conn: &mut Conn) -> Result<(), StoreError> {
    conn.batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
             version BIGINT PRIMARY KEY,
             applied_at BIGINT NOT NULL,
             release TEXT NOT NULL
         )",
    )?;
    conn.write(|tx| {
        if tx.engine() == Engine::Postgres {
            // Two hubs starting at once against one database: one migrates, the other
            // waits here and then finds it done.
            tx.execute("SELECT pg_advisory_xact_lock(7031, 1)", &[])?;
        }
        let found: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])?
            .get(0)?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                found,
                known: SCHEMA_VERSION,
            });
        }
        for (version, (sqlite, postgres)) in (1..).zip(MIGRATIONS) {
            if version <= found {
                continue;
            }
            tx.batch(match tx.engine() {
                Engine::Sqlite => sqlite,
                Engine::Postgres => postgres,
            })?;
            tx.execute(
                "INSERT INTO schema_version (version, applied_at, release) VALUES ($1, $2, $3)",
                args![version, now_millis(), env!("CARGO_PKG_VERSION")],
            )?;
        }
        Ok(())
    })
}

const SQLITE_V1: &str = r#"
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

const POSTGRES_V1: &str = r#"
CREATE TABLE sites (
    code TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    parent_code TEXT,
    parent_name TEXT,
    delegates BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE meetings (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    title TEXT NOT NULL,
    scheduled_start BIGINT NOT NULL,
    scheduled_end BIGINT NOT NULL,
    studio_name TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE roster (
    meeting_id BIGINT NOT NULL REFERENCES meetings(id),
    site_code TEXT NOT NULL REFERENCES sites(code),
    site_name TEXT NOT NULL,
    expected_delegates BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (meeting_id, site_code)
);
CREATE TABLE join_codes (
    code TEXT PRIMARY KEY,
    meeting_id BIGINT NOT NULL REFERENCES meetings(id),
    site_code TEXT,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX join_codes_by_meeting ON join_codes(meeting_id);
CREATE TABLE events (
    meeting_id BIGINT NOT NULL REFERENCES meetings(id),
    seq BIGINT NOT NULL,
    at BIGINT NOT NULL,
    recorded_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    site_code TEXT,
    session TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (meeting_id, seq)
);
CREATE INDEX events_by_session ON events(session);
CREATE TABLE liveness (
    session TEXT PRIMARY KEY,
    meeting_id BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE TABLE hub_runs (
    started_at BIGINT PRIMARY KEY,
    last_seen BIGINT NOT NULL,
    stopped_at BIGINT
);
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the attendance log is append-only';
END
$$;
CREATE TRIGGER events_no_update BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
CREATE TABLE accounts (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('organizer', 'staff')),
    password_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE login_sessions (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES accounts(username),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL
);
CREATE INDEX login_sessions_by_user ON login_sessions(username);
CREATE TABLE parent_meetings (
    parent_meeting_id BIGINT PRIMARY KEY,
    meeting_id BIGINT NOT NULL UNIQUE REFERENCES meetings(id),
    -- This meeting's log is stored at the parent up to this event.
    acked_seq BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE node_streams (
    node TEXT NOT NULL,
    meeting_id BIGINT NOT NULL REFERENCES meetings(id),
    -- The node's log of this meeting is stored here up to this event of it.
    through BIGINT NOT NULL,
    PRIMARY KEY (node, meeting_id)
);
CREATE TABLE nodes (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    provinces TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);
"#;

#[cfg(test)]
mod tests {
    use super::super::testing::temp_store;
    use super::super::{Store, StoreError};
    use super::*;

    #[test]
    fn a_database_migrated_by_a_newer_release_is_refused_and_left_as_it_is() {
        let store = temp_store("schema");
        // Opening again applies nothing more.
        drop(Store::connect(store.database()).expect("reopened"));
        let versions: i64 = store
            .writer()
            .query_one("SELECT COUNT(*) FROM schema_version", &[])
            .and_then(|r| r.get(0))
            .expect("counted");
        assert_eq!(versions, SCHEMA_VERSION);
        store
            .writer()
            .execute(
                "INSERT INTO schema_version (version, applied_at, release) VALUES ($1, 1, '9.9')",
                args![SCHEMA_VERSION + 1],
            )
            .expect("a newer release's migration");
        let refused = Store::connect(store.database()).expect_err("refused");
        assert!(
            matches!(refused, StoreError::NewerSchema { found, known }
                if found == SCHEMA_VERSION + 1 && known == SCHEMA_VERSION),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("newer than this hub's"),
            "{refused}"
        );
        assert_eq!(store.site_count().expect("the data is still there"), 0);
    }
}
