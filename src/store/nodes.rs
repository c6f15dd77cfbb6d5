//! The hubs below this one in a national tree (nodes): each with the hash of its credential and
//! the provinces it serves. The rules for names and credentials are [`crate::cascade`]'s.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};
use crate::attendance::Millis;

/// A child hub as stored: never its credential, only the credential's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    /// The province codes whose sites it serves.
    pub provinces: Vec<String>,
    pub created_at: Millis,
    /// When its credential was revoked; a revoked node is refused.
    pub revoked_at: Option<Millis>,
}

/// Why a change to the nodes was refused.
#[derive(Debug, thiserror::Error)]
pub enum NodeChangeError {
    #[error("node {0} exists already (revoke it, then add it again under another name)")]
    Exists(String),
    #[error("no node {0}")]
    NotFound(String),
    #[error("node {0} is revoked already")]
    AlreadyRevoked(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Adds a node with the hash of its new credential.
    pub fn add_node(
        &self,
        name: &str,
        provinces: &[String],
        token_sha256: &str,
        now: Millis,
    ) -> Result<(), NodeChangeError> {
        let conn = self.writer();
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM nodes WHERE name = ?1)",
                [name],
                |row| row.get(0),
            )
            .map_err(StoreError::from)?;
        if exists {
            return Err(NodeChangeError::Exists(name.to_owned()));
        }
        conn.execute(
            "INSERT INTO nodes (name, token_sha256, provinces, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, token_sha256, provinces.join(","), now],
        )
        .map_err(StoreError::from)?;
        Ok(())
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let conn = self.reader();
        let mut statement = conn.prepare_cached(
            "SELECT name, provinces, created_at, revoked_at FROM nodes ORDER BY name",
        )?;
        let rows = statement.query_map([], node_record)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The node whose credential hashes to `token_sha256`, revoked or not.
    pub fn node_by_token(&self, token_sha256: &str) -> Result<Option<NodeRecord>, StoreError> {
        let conn = self.reader();
        Ok(conn
            .prepare_cached(
                "SELECT name, provinces, created_at, revoked_at FROM nodes WHERE token_sha256 = ?1",
            )?
            .query_row([token_sha256], node_record)
            .optional()?)
    }

    /// Revokes a node's credential: its link is refused from now on.
    pub fn revoke_node(&self, name: &str, now: Millis) -> Result<(), NodeChangeError> {
        let conn = self.writer();
        let revoked: Option<Option<Millis>> = conn
            .query_row(
                "SELECT revoked_at FROM nodes WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(StoreError::from)?;
        match revoked {
            None => Err(NodeChangeError::NotFound(name.to_owned())),
            Some(Some(_)) => Err(NodeChangeError::AlreadyRevoked(name.to_owned())),
            Some(None) => {
                conn.execute(
                    "UPDATE nodes SET revoked_at = ?2 WHERE name = ?1",
                    params![name, now],
                )
                .map_err(StoreError::from)?;
                Ok(())
            }
        }
    }
}

impl Store {
    /// This hub's meeting that is its part of the parent's meeting `parent_meeting`, if made.
    pub fn mirrored_meeting(
        &self,
        parent_meeting: i64,
    ) -> Result<Option<diemcau_signaling::MeetingId>, StoreError> {
        Ok(self
            .reader()
            .prepare_cached("SELECT meeting_id FROM parent_meetings WHERE parent_meeting_id = ?1")?
            .query_row([parent_meeting], |r| r.get(0))
            .optional()?
            .map(diemcau_signaling::MeetingId))
    }

    /// Every meeting of this hub that is its part of a parent's meeting: `(parent meeting, this
    /// hub's meeting, how far its log is stored at the parent)`.
    pub fn mirrors(&self) -> Result<Vec<(i64, diemcau_signaling::MeetingId, u64)>, StoreError> {
        let conn = self.reader();
        let mut statement = conn.prepare_cached(
            "SELECT parent_meeting_id, meeting_id, acked_seq FROM parent_meetings ORDER BY meeting_id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                diemcau_signaling::MeetingId(r.get(1)?),
                u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
            ))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The parent stored the log of its `parent_meeting`'s part here up to `through`.
    pub fn set_acked(&self, parent_meeting: i64, through: u64) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE parent_meetings SET acked_seq = MAX(acked_seq, ?2) WHERE parent_meeting_id = ?1",
            params![parent_meeting, i64::try_from(through).unwrap_or(i64::MAX)],
        )?;
        Ok(())
    }

    /// Notes that `meeting` is this hub's part of the parent's `parent_meeting`.
    pub fn record_mirror(
        &self,
        parent_meeting: i64,
        meeting: diemcau_signaling::MeetingId,
    ) -> Result<(), StoreError> {
        self.writer().execute(
            "INSERT INTO parent_meetings (parent_meeting_id, meeting_id) VALUES (?1, ?2)",
            params![parent_meeting, meeting.0],
        )?;
        Ok(())
    }
}

fn node_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    let provinces: String = row.get(1)?;
    Ok(NodeRecord {
        name: row.get(0)?,
        provinces: provinces
            .split(',')
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at: row.get(2)?,
        revoked_at: row.get(3)?,
    })
}
