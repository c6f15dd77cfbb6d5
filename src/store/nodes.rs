//! The hubs below this one in a national tree (nodes): each with the hash of its credential and
//! the provinces it serves. The rules for names and credentials are [`crate::cascade`]'s.

use super::db::{Row, args};
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
        self.writer().write(|tx| {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM nodes WHERE name = $1)",
                    args![name],
                )?
                .get(0)?;
            if exists {
                return Err(NodeChangeError::Exists(name.to_owned()));
            }
            tx.execute(
                "INSERT INTO nodes (name, token_sha256, provinces, created_at)
                 VALUES ($1, $2, $3, $4)",
                args![name, token_sha256, provinces.join(","), now],
            )?;
            Ok(())
        })
    }

    /// Every node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.reader()
            .query(
                "SELECT name, provinces, created_at, revoked_at FROM nodes ORDER BY name",
                &[],
            )?
            .iter()
            .map(node_record)
            .collect()
    }

    /// The node whose credential hashes to `token_sha256`, revoked or not.
    pub fn node_by_token(&self, token_sha256: &str) -> Result<Option<NodeRecord>, StoreError> {
        self.reader()
            .query_opt(
                "SELECT name, provinces, created_at, revoked_at FROM nodes WHERE token_sha256 = $1",
                args![token_sha256],
            )?
            .as_ref()
            .map(node_record)
            .transpose()
    }

    /// Revokes a node's credential: its link is refused from now on.
    pub fn revoke_node(&self, name: &str, now: Millis) -> Result<(), NodeChangeError> {
        self.writer().write(|tx| {
            let revoked: Option<Option<Millis>> = tx
                .query_opt("SELECT revoked_at FROM nodes WHERE name = $1", args![name])?
                .map(|row| row.get(0))
                .transpose()?;
            match revoked {
                None => Err(NodeChangeError::NotFound(name.to_owned())),
                Some(Some(_)) => Err(NodeChangeError::AlreadyRevoked(name.to_owned())),
                Some(None) => {
                    tx.execute(
                        "UPDATE nodes SET revoked_at = $2 WHERE name = $1",
                        args![name, now],
                    )?;
                    Ok(())
                }
            }
        })
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
            .query_opt(
                "SELECT meeting_id FROM parent_meetings WHERE parent_meeting_id = $1",
                args![parent_meeting],
            )?
            .map(|r| r.get(0))
            .transpose()?
            .map(diemcau_signaling::MeetingId))
    }

    /// Every meeting of this hub that is its part of a parent's meeting: `(parent meeting, this
    /// hub's meeting, how far its log is stored at the parent)`.
    pub fn mirrors(&self) -> Result<Vec<(i64, diemcau_signaling::MeetingId, u64)>, StoreError> {
        self.reader()
            .query(
                "SELECT parent_meeting_id, meeting_id, acked_seq FROM parent_meetings
                 ORDER BY meeting_id",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok((
                    r.get::<i64>(0)?,
                    diemcau_signaling::MeetingId(r.get(1)?),
                    r.get::<u64>(2)?,
                ))
            })
            .collect()
    }

    /// The parent stored the log of its `parent_meeting`'s part here up to `through`.
    pub fn set_acked(&self, parent_meeting: i64, through: u64) -> Result<(), StoreError> {
        self.writer().execute(
            "UPDATE parent_meetings SET acked_seq = $2
             WHERE parent_meeting_id = $1 AND acked_seq < $2",
            args![parent_meeting, through],
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
            "INSERT INTO parent_meetings (parent_meeting_id, meeting_id) VALUES ($1, $2)",
            args![parent_meeting, meeting.0],
        )?;
        Ok(())
    }
}

fn node_record(row: &Row) -> Result<NodeRecord, StoreError> {
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
