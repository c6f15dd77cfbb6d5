//! Inputs of a child hub's relay in a national meeting at this hub (docs/cascade.md): what its
//! console shows of its sites, and their answers to this meeting's roll call.

use diemcau_signaling::protocol::ConsoleSite;
use diemcau_signaling::{ErrorCode, ProtocolError, SiteCode};

use super::actions::action_error;
use super::carry::recorded;
use super::{Hub, Session, internal};
use crate::attendance::Millis;
use crate::meeting::{ActionError, Declaration, LiveMeeting};
use crate::store::now_millis;
use diemcau_sfu::PeerId;

impl Hub {
    /// The relay of `session` shows its hub's console rows of its sites.
    pub async fn relay_console(
        &self,
        session: &Session,
        rows: Vec<ConsoleSite>,
    ) -> Result<(), ProtocolError> {
        self.on_relay(session, |live, relay, _| {
            live.remote_console(relay, rows);
            Ok(())
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
        self.on_relay(session, |live, relay, now| {
            live.remote_roll_call_answer(now, relay, roll_call, site, declaration)
        })
        .await
    }

    /// Runs `input` on the relay's meeting and waits until what it logged is on disk.
    async fn on_relay(
        &self,
        session: &Session,
        input: impl FnOnce(&mut LiveMeeting, PeerId, Millis) -> Result<(), ActionError>,
    ) -> Result<(), ProtocolError> {
        let relay = session
            .participant
            .ok_or_else(|| ProtocolError::new(ErrorCode::NotJoined, "the relay has not joined"))?;
        let now = now_millis();
        let pending = {
            let mut state = self.lock();
            let meeting = state
                .participants
                .get(&relay)
                .map(|c| c.meeting)
                .ok_or_else(|| internal("relay vanished"))?;
            let live = state
                .meetings
                .get_mut(&meeting)
                .ok_or_else(|| internal("meeting vanished"))?;
            input(live, relay, now).map_err(action_error)?;
            self.carry(&mut state, meeting)
        };
        recorded(pending)
            .await
            .map_err(|e| internal(&format!("the relay's input could not be recorded: {e}")))
    }
}
