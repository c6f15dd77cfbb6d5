//! The tokens of a meeting's programme over HTTP (docs/api.md): the studio encoder's, which
//! publishes it (WHIP), and the watch link's, which plays it (WHEP). One valid token of each
//! kind per meeting at a time, issued by an organizer, revoked by issuing the next. Kept in
//! clear, as join codes are: the organizer's page shows them.

use diemcau_signaling::MeetingId;

use super::db::{Conn, args};
use super::meetings::meeting_state;
use super::{MeetingState, Store, StoreError, now_millis, random_text};

/// What a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// The studio's encoder publishes the programme (WHIP).
    Encoder,
    /// A player watches the programme (WHEP).
    Watch,
}

impl TokenKind {
    fn as_str(self) -> &'static str {
        match self {
            TokenKind::Encoder => "encoder",
            TokenKind::Watch => "watch",
        }
    }
}

/// Why a token opens nothing.
#[derive(Debug, thiserror::Error)]
pub enum StreamTokenError {
    #[error("this token is not one of this meeting's")]
    Unknown,
    #[error("this token was replaced by a newer one; copy the new one from the meeting's page")]
    Revoked,
    #[error("this meeting has ended")]
    MeetingEnded,
    #[error(transparent)]
    Database(#[from] StoreError),
}

impl Store {
    /// The meeting's valid token of `kind`, if one was issued.
    pub fn stream_token(
        &self,
        meeting: MeetingId,
        kind: TokenKind,
    ) -> Result<Option<String>, StoreError> {
        self.reader().read(|tx| {
            tx.query_opt(
                "SELECT token FROM stream_tokens
                 WHERE meeting_id = $1 AND kind = $2 AND revoked_at IS NULL",
                args![meeting.0, kind.as_str()],
            )?
            .map(|r| r.get(0))
            .transpose()
        })
    }

    /// Issues a new token of `kind` for `meeting`, revoking the one before (what was started
    /// with it goes on until it stops; it starts nothing again). [`StoreError::NotFound`] for
    /// an unknown meeting.
    pub fn issue_stream_token(
        &self,
        meeting: MeetingId,
        kind: TokenKind,
    ) -> Result<String, StoreError> {
        let token = random_text(32)
            .map_err(|e| StoreError::Internal(format!("no random bytes for a token: {e}")))?;
        let now = now_millis();
        self.writer().write(|tx| {
            let exists: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM meetings WHERE id = $1)",
                    args![meeting.0],
                )?
                .get(0)?;
            if !exists {
                return Err(StoreError::NotFound(format!("meeting {meeting}")));
            }
            tx.execute(
                "UPDATE stream_tokens SET revoked_at = $1
                 WHERE meeting_id = $2 AND kind = $3 AND revoked_at IS NULL",
                args![now, meeting.0, kind.as_str()],
            )?;
            tx.execute(
                "INSERT INTO stream_tokens (token, meeting_id, kind, created_at)
                 VALUES ($1, $2, $3, $4)",
                args![token, meeting.0, kind.as_str(), now],
            )?;
            Ok(token.clone())
        })
    }

    /// Checks `token` against `meeting`'s token of `kind`, and that the meeting has not ended.
    pub fn check_stream_token(
        &self,
        meeting: MeetingId,
        kind: TokenKind,
        token: &str,
    ) -> Result<(), StreamTokenError> {
        self.reader().read(|tx| check_in(tx, meeting, kind, token))
    }
}

fn check_in(
    tx: &mut Conn,
    meeting: MeetingId,
    kind: TokenKind,
    token: &str,
) -> Result<(), StreamTokenError> {
    let revoked: Option<Option<i64>> = tx
        .query_opt(
            "SELECT revoked_at FROM stream_tokens
             WHERE token = $1 AND meeting_id = $2 AND kind = $3",
            args![token, meeting.0, kind.as_str()],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    match revoked {
        None => Err(StreamTokenError::Unknown),
        Some(Some(_)) => Err(StreamTokenError::Revoked),
        Some(None) => match meeting_state(tx, meeting)? {
            MeetingState::Ended => Err(StreamTokenError::MeetingEnded),
            MeetingState::Scheduled | MeetingState::InProgress => Ok(()),
        },
    }
}
