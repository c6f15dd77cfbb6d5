//! Chair actions and site requests: each message is one call on the meeting core, whose reply
//! goes back once the facts it made are on disk.

use diemcau_sfu::PeerId;
use diemcau_signaling::{ClientMessage, ErrorCode, ProtocolError, ServerMessage};

use super::carry::recorded;
use super::{Hub, internal};
use crate::attendance::Millis;
use crate::meeting::{ActionError, Declaration, LiveMeeting};
use crate::store::now_millis;

impl Hub {
    /// Chair actions and site requests, after `join`.
    pub(super) async fn act(
        &self,
        id: PeerId,
        message: ClientMessage,
    ) -> Result<Option<ServerMessage>, ProtocolError> {
        let kind = message.kind();
        let reply = self
            .input(id, kind, |live, now| {
                let done = |()| None;
                match message {
                    ClientMessage::HeadCount {
                        count,
                        confirmed_by,
                        position,
                    } => live
                        .declare_head_count(
                            now,
                            id,
                            Declaration {
                                count,
                                confirmed_by,
                                position,
                            },
                        )
                        .map(Some),
                    ClientMessage::RequestFloor => live.request_floor(now, id, true).map(done),
                    ClientMessage::CancelFloorRequest => {
                        live.request_floor(now, id, false).map(done)
                    }
                    ClientMessage::GiveFloor { site } => live.give_floor(now, id, &site).map(done),
                    ClientMessage::TakeFloor => live.take_floor(now, id).map(done),
                    ClientMessage::Mute { site, muted } => {
                        live.mute(now, id, &site, muted).map(done)
                    }
                    ClientMessage::MuteAll { muted } => live.mute_all(now, id, muted).map(done),
                    ClientMessage::StartRollCall => live.start_roll_call(now, id).map(done),
                    ClientMessage::EndRollCall => live.end_roll_call(now, id).map(done),
                    ClientMessage::AnswerRollCall {
                        roll_call,
                        count,
                        confirmed_by,
                        position,
                    } => live
                        .answer_roll_call(
                            now,
                            id,
                            roll_call,
                            Declaration {
                                count,
                                confirmed_by,
                                position,
                            },
                        )
                        .map(Some),
                    ClientMessage::CallSite { site } => live.call_site(now, id, &site).map(done),
                    ClientMessage::SwitchProgramme { source } => {
                        live.switch_programme(now, id, source).map(done)
                    }
                    ClientMessage::Record { on } => live.set_recording(id, on).map(done),
                    ClientMessage::Tiles { sites } => live.set_tiles(id, sites).map(done),
                    _ => Err(ActionError::NotAnAction),
                }
            })
            .await?;
        Ok(Some(reply.unwrap_or(ServerMessage::Done {
            request: kind.to_owned(),
        })))
    }

    /// Runs `input` (named `what` in errors) on the meeting of participant `id` at the time
    /// now, and returns its result once what it logged is on disk.
    pub(super) async fn input<T>(
        &self,
        id: PeerId,
        what: &str,
        input: impl FnOnce(&mut LiveMeeting, Millis) -> Result<T, ActionError>,
    ) -> Result<T, ProtocolError> {
        let now = now_millis();
        let (result, pending) = {
            let mut state = self.lock();
            let meeting = state
                .participants
                .get(&id)
                .map(|c| c.meeting)
                .ok_or_else(|| internal("participant vanished"))?;
            let live = state
                .meetings
                .get_mut(&meeting)
                .ok_or_else(|| internal("meeting vanished"))?;
            let result = input(live, now).map_err(|e| match e {
                ActionError::NotAnAction => {
                    internal(&format!("`{what}` is not a chair or site action"))
                }
                e => action_error(e),
            })?;
            (result, self.carry(&mut state, meeting))
        };
        recorded(pending)
            .await
            .map_err(|e| internal(&format!("`{what}` could not be recorded: {e}")))?;
        Ok(result)
    }
}

pub(super) fn action_error(e: ActionError) -> ProtocolError {
    let code = match e {
        ActionError::ChairOnly | ActionError::SiteOnly | ActionError::RecordingOff => {
            ErrorCode::Forbidden
        }
        ActionError::SiteNotConnected(_) | ActionError::NoPageOpen(_) => ErrorCode::SiteUnavailable,
        ActionError::NoRollCall | ActionError::WrongRollCall => ErrorCode::NoRollCall,
        ActionError::NotJoined | ActionError::NotAnAction => ErrorCode::Internal,
    };
    ProtocolError::new(code, e.to_string())
}
