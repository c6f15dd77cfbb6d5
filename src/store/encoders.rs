//! The token a studio's encoder publishes a meeting's programme with (WHIP, docs/api.md
//! "Studio encoders"): one valid token per meeting at a time, issued by an organizer,
//! revoked by issuing the next. Kept in clear, as join codes are: the organizer's page shows it.

use diemcau_signaling::MeetingId;

use super::db::{Conn, args};
use super::meetings::meeting_state;
use super::{MeetingState, Store, StoreError, now_millis, random_text};

/// Why an encoder's token opens nothing.
#[derive(Debug, thiserror::Error)]
pub enum EncoderTokenError {
    #[error("this token is not this meeting's encoder token")]
    Unknown,
    #[error(
        "this encoder token was replaced by a newer one; copy the new one from the meeting's page"
    )]
    Revoked,
    #[error("this meeting has ended")]
    MeetingEnded,
    #[error(transparent)]
    Database(#[from] StoreError),
}

impl Store {
    /// The meeting's valid encoder token, if one was issued.
    pub fn encoder_token(&self, meeting: MeetingId) -> Result<Option<String>, StoreError> {
        self.reader().read(|tx| {
            tx.query_opt(
                "SELECT token FROM encoder_tokens WHERE meeting_id = $1 AND revoked_at IS NULL",
                args![meeting.0],
            )?
            .map(|r| r.get(0))
            .transpose()
        })
    }

    /// Issues a new encoder token for `meeting`, revoking the one before (an encoder
    /// publishing with it goes on until it stops; it cannot start again).
    /// [`StoreError::NotFound`] for an unknown meeting.
    pub fn issue_encoder_token(&self, meeting: MeetingId) -> Result<String, StoreError> {
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
                "UPDATE encoder_tokens SET revoked_at = $1 WHERE meeting_id = $2 AND revoked_at IS NULL",
                args![now, meeting.0],
            )?;
            tx.execute(
                "INSERT INTO encoder_tokens (token, meeting_id, created_at) VALUES ($1, $2, $3)",
                args![token, meeting.0, now],
            )?;
            Ok(token.clone())
        })
    }

    /// Checks `token` against `meeting`'s encoder token, and that the meeting has not ended.
    pub fn check_encoder_token(
        &self,
        meeting: MeetingId,
        token: &str,
    ) -> Result<(), EncoderTokenError> {
        self.reader().read(|tx| check_in(tx, meeting, token))
    }
}

fn check_in(tx: &mut Conn, meeting: MeetingId, token: &str) -> Result<(), EncoderTokenError> {
    let revoked: Option<Option<i64>> = tx
        .query_opt(
            "SELECT revoked_at FROM encoder_tokens WHERE token = $1 AND meeting_id = $2",
            args![token, meeting.0],
        )?
        .map(|r| r.get(0))
        .transpose()?;
    match revoked {
        None => Err(EncoderTokenError::Unknown),
        Some(Some(_)) => Err(EncoderTokenError::Revoked),
        Some(None) => match meeting_state(tx, meeting)? {
            MeetingState::Ended => Err(EncoderTokenError::MeetingEnded),
            MeetingState::Scheduled | MeetingState::InProgress => Ok(()),
        },
    }
}
