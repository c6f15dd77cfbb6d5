//! Inputs of a child hub's relay in a national meeting at this hub (docs/cascade.md): what its
//! console shows of its sites, and their answers to this meeting's roll call; and of this
//! hub's own relay in its part of one: where the national chair put the floor.

use diemcau_sfu::PeerId;
use diemcau_signaling::protocol::ConsoleSite;
use diemcau_signaling::{ErrorCode, ProtocolError, SiteCode};

use super::{Hub, Session};
use crate::meeting::{Declaration, FloorAbove};

impl Hub {
    /// The relay of `session` shows its hub's console rows of its sites.
    pub async fn relay_console(
        &self,
        session: &Session,
        rows: Vec<ConsoleSite>,
    ) -> Result<(), ProtocolError> {
        let relay = Self::relay_of(session)?;
        self.input(relay, "relay_console", |live, now| {
            live.remote_console(now, relay, rows);
            Ok(())
        })
        .await
    }

    /// Which of the relay's sites each of its tracks carries now.
    pub async fn relay_streams(
        &self,
        session: &Session,
        streams: Vec<(diemcau_sfu::str0m::media::Mid, SiteCode)>,
    ) -> Result<(), ProtocolError> {
        let relay = Self::relay_of(session)?;
        self.input(relay, "relay_streams", |live, _| {
            live.relay_streams(relay, streams)
        })
        .await
    }

    /// A site of the relay's hub answered roll call `roll_call` of this meeting.
    pub async fn relay_roll_call_answer(
        &self,
        session: &Session,
        roll_call: u32,
        site: &SiteCode,
        declaration: Declaration,
    ) -> Result<(), ProtocolError> {
        let relay = Self::relay_of(session)?;
        self.input(relay, "relay_roll_call_answer", |live, now| {
            live.remote_roll_call_answer(now, relay, roll_call, site, declaration)
        })
        .await
    }

    /// This hub's relay, the studio of `session` in a province's part of a national meeting,
    /// read where the national chair put the floor.
    pub async fn relay_floor(
        &self,
        session: &Session,
        floor: Option<FloorAbove>,
    ) -> Result<(), ProtocolError> {
        let studio = Self::relay_of(session)?;
        self.input(studio, "floor_from_above", |live, now| {
            live.floor_from_above(now, studio, floor)
        })
        .await
    }

    /// The relay's participant.
    fn relay_of(session: &Session) -> Result<PeerId, ProtocolError> {
        session
            .participant
            .ok_or_else(|| ProtocolError::new(ErrorCode::NotJoined, "the relay has not joined"))
    }
}
