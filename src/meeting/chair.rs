//! What the chair does (floor, mute, roll call, calling a site) and what a site asks of it.
//! Each action is authorised first; a refused action changes nothing and queues nothing.

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use std::collections::BTreeSet;

use diemcau_signaling::protocol::{
    ProgrammeSource, RollCallAnswered, RollCallResult, SiteName, SiteState,
};
use diemcau_signaling::{ClientMessage, Role, ServerMessage, SiteCode};

use super::{ActionError, LiveMeeting, Output, Recipient, Route};
use crate::attendance::{EventKind, Millis};

/// A roll call while it runs.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RunningRollCall {
    pub(super) number: u32,
    started_at: Millis,
    /// Every site in the meeting at some time since it started.
    pub(super) present: BTreeSet<SiteCode>,
    /// The answers so far, in order, one per site.
    pub(super) answers: Vec<(SiteCode, u32)>,
}

impl RunningRollCall {
    pub(super) fn new(number: u32, started_at: Millis) -> RunningRollCall {
        RunningRollCall {
            number,
            started_at,
            present: BTreeSet::new(),
            answers: Vec::new(),
        }
    }
}

/// Where the national chair put the floor, as a province's part of the meeting sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FloorAbove {
    /// One of this hub's own sites.
    Here(SiteCode),
    /// A site elsewhere in the tree (at the centre, or in another province).
    Elsewhere { site: SiteCode, name: String },
}

/// A head count as a site declares it, alone or answering a roll call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub count: u32,
    pub confirmed_by: String,
    pub position: String,
}

impl LiveMeeting {
    /// A site declares how many delegates are present. Returns the reply to the site.
    pub fn declare_head_count(
        &mut self,
        now: Millis,
        id: PeerId,
        declaration: Declaration,
    ) -> Result<ServerMessage, ActionError> {
        let site = self.require_site(id)?;
        self.log(
            now,
            EventKind::HeadCount {
                site: site.to_string(),
                count: declaration.count,
                confirmed_by: declaration.confirmed_by,
                position: declaration.position,
            },
        );
        if let Some(status) = self.sites.get_mut(&site) {
            status.head_count = Some(declaration.count);
        }
        Ok(ServerMessage::HeadCountRecorded {
            count: declaration.count,
            at: now,
        })
    }

    /// A site asks for the floor (`asking`) or withdraws its request.
    pub fn request_floor(
        &mut self,
        now: Millis,
        id: PeerId,
        asking: bool,
    ) -> Result<(), ActionError> {
        let site = self.require_site(id)?;
        let changed = if asking {
            let new = self.floor != Some(id) && self.queued_at(id).is_none();
            if new {
                self.queue.push((id, now));
                self.log(
                    now,
                    EventKind::FloorRequested {
                        site: site.to_string(),
                    },
                );
            }
            new
        } else {
            let before = self.queue.len();
            self.queue.retain(|(q, _)| *q != id);
            self.queue.len() != before
        };
        if changed {
            self.send_to_everyone(&self.floor_message());
            // A province's part of a national meeting: its relay (this part's studio) takes
            // the request up to the national chair with the console, sent now.
            if self.studio_relayed {
                self.send_console(now);
            }
        }
        Ok(())
    }

    /// The chair gives the floor to a site (asked for or not): its media goes to every site,
    /// and to the chair at full quality. A commune joined to its provincial hub gets it there
    /// (the relay learns it from the `floor` message) and its media comes up through that
    /// hub's relay, which then holds the floor here in its name.
    pub fn give_floor(
        &mut self,
        now: Millis,
        chair: PeerId,
        site: &SiteCode,
    ) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        if let Ok(target) = self.connected_site(site) {
            self.queue.retain(|(q, _)| *q != target);
            self.change_floor(now, Some(target), None);
            return Ok(());
        }
        let relay = self
            .remote_relay_of(site)
            .ok_or_else(|| ActionError::SiteNotConnected(site.clone()))?;
        let name = match self.remote_sites.get(site) {
            Some((_, row)) if super::remote::joined(row.state) => row.name.clone(),
            _ => return Err(ActionError::SiteNotConnected(site.clone())),
        };
        self.remote_queue.retain(|(q, _)| q != site);
        self.change_floor(now, Some(relay), Some((site.clone(), name)));
        Ok(())
    }

    /// The chair takes the floor back.
    pub fn take_floor(&mut self, now: Millis, chair: PeerId) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        self.change_floor(now, None, None);
        Ok(())
    }

    /// In a province's part of a national meeting: the national chair moved the floor, as
    /// the relay (this part's studio, `chair`) read it in the centre's `floor` message.
    pub fn floor_from_above(
        &mut self,
        now: Millis,
        chair: PeerId,
        floor: Option<FloorAbove>,
    ) -> Result<(), ActionError> {
        if self.studio != Some(chair) || !self.studio_relayed {
            return Err(ActionError::ChairOnly);
        }
        match floor {
            Some(FloorAbove::Here(site)) => match self.connected_site(&site) {
                Ok(target) => {
                    self.queue.retain(|(q, _)| *q != target);
                    self.change_floor(now, Some(target), None);
                }
                Err(_) => self.change_floor(now, None, None),
            },
            Some(FloorAbove::Elsewhere { site, name }) => match self.floor_seat {
                Some(seat) => self.change_floor(now, Some(seat), Some((site, name))),
                None => self.change_floor(now, None, None),
            },
            None => self.change_floor(now, None, None),
        }
        Ok(())
    }

    /// The chair mutes or unmutes one site: its audio reaches nobody while muted.
    pub fn mute(
        &mut self,
        now: Millis,
        chair: PeerId,
        site: &SiteCode,
        muted: bool,
    ) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        if let Some(relay) = self.remote_relay_of(site) {
            let action = ClientMessage::Mute {
                site: site.clone(),
                muted,
            };
            self.ask_relay(relay, action);
            self.log(
                now,
                EventKind::SiteMuted {
                    site: site.to_string(),
                    muted,
                },
            );
            return Ok(());
        }
        let target = self.connected_site(site)?;
        self.set_muted(now, target, muted);
        Ok(())
    }

    /// The chair puts the encoder's programme or its own camera on air (what the sites, the
    /// child hubs and the watch link receive from the studio while the encoder publishes).
    /// The choice holds while no encoder publishes, for the next one.
    pub fn switch_programme(
        &mut self,
        now: Millis,
        chair: PeerId,
        source: ProgrammeSource,
    ) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        if self.programme != source {
            self.programme = source;
            self.log(now, EventKind::ProgrammeSwitched { source });
        }
        self.encoder_changed();
        Ok(())
    }

    /// The chair mutes or unmutes every site.
    pub fn mute_all(&mut self, now: Millis, chair: PeerId, muted: bool) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        let sites: Vec<PeerId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.info.role == Role::Site)
            .map(|(id, _)| *id)
            .collect();
        for site in sites {
            self.set_muted(now, site, muted);
        }
        // And every provincial hub's sites, by their hub.
        for relay in self.relays() {
            self.ask_relay(relay, ClientMessage::MuteAll { muted });
        }
        Ok(())
    }

    /// The chair starts a roll call (numbered one more than the last, ending any running one).
    pub fn start_roll_call(&mut self, now: Millis, chair: PeerId) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        self.finish_roll_call(now);
        let number = self.roll_calls + 1;
        self.roll_calls = number;
        let present = self
            .participants
            .values()
            .filter_map(|p| p.site.clone())
            .collect();
        self.roll_call = Some(RunningRollCall {
            number,
            started_at: now,
            present,
            answers: Vec::new(),
        });
        for status in self.sites.values_mut() {
            status.answered_roll_call = false;
        }
        self.log(now, EventKind::RollCallStarted { roll_call: number });
        self.send_to_everyone(&ServerMessage::RollCall {
            roll_call: number,
            active: true,
            result: None,
        });
        Ok(())
    }

    /// The chair ends the running roll call.
    pub fn end_roll_call(&mut self, now: Millis, chair: PeerId) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        if self.roll_call.is_none() {
            return Err(ActionError::NoRollCall);
        }
        self.finish_roll_call(now);
        Ok(())
    }

    /// Ends the running roll call, if any: its result is fixed now, logged with the sites that
    /// did not answer, sent to the chair with it and to the sites without it.
    pub(super) fn finish_roll_call(&mut self, now: Millis) {
        let Some(running) = self.roll_call.take() else {
            return;
        };
        let number = running.number;
        let result = self.roll_call_result(running, now);
        self.log(
            now,
            EventKind::RollCallEnded {
                roll_call: number,
                not_answered: result.not_answered.iter().map(|s| s.site.clone()).collect(),
            },
        );
        for id in self.participants.keys().copied().collect::<Vec<_>>() {
            let for_chair = Some(id) == self.studio;
            self.send(
                id,
                ServerMessage::RollCall {
                    roll_call: number,
                    active: false,
                    result: for_chair.then(|| result.clone()),
                },
            );
        }
        self.last_roll_call = Some((number, result));
    }

    fn roll_call_result(&self, running: RunningRollCall, now: Millis) -> RollCallResult {
        let name = |code: &SiteCode| {
            self.roster
                .iter()
                .find(|(c, _)| c == code)
                .map(|(_, site)| site.name.clone())
                .unwrap_or_default()
        };
        let answered_codes: BTreeSet<&SiteCode> = running.answers.iter().map(|(c, _)| c).collect();
        let not_answered = self
            .roster
            .iter()
            .filter(|(code, _)| running.present.contains(code) && !answered_codes.contains(code))
            .map(|(code, site)| SiteName {
                site: code.to_string(),
                name: site.name.clone(),
            })
            .collect();
        RollCallResult {
            started_at: running.started_at,
            ended_at: now,
            delegates: running.answers.iter().map(|(_, count)| *count).sum(),
            answered: running
                .answers
                .iter()
                .map(|(code, count)| RollCallAnswered {
                    site: code.to_string(),
                    name: name(code),
                    count: *count,
                })
                .collect(),
            not_answered,
        }
    }

    /// A site joined while a roll call runs: it is expected to answer.
    pub(super) fn roll_call_sees(&mut self, site: &SiteCode) {
        if let Some(running) = &mut self.roll_call {
            running.present.insert(site.clone());
        }
    }

    /// The last roll call's result, for a chair who joins after it ended.
    pub(super) fn last_roll_call_message(&self) -> Option<ServerMessage> {
        let (number, result) = self.last_roll_call.as_ref()?;
        Some(ServerMessage::RollCall {
            roll_call: *number,
            active: false,
            result: Some(result.clone()),
        })
    }

    /// A site answers roll call `roll_call` while it runs: present, with its head count. The
    /// chair is told at once. Returns the reply to the site.
    pub fn answer_roll_call(
        &mut self,
        now: Millis,
        id: PeerId,
        roll_call: u32,
        declaration: Declaration,
    ) -> Result<ServerMessage, ActionError> {
        let site = self.require_site(id)?;
        let name = self
            .participants
            .get(&id)
            .map(|p| p.info.name.clone())
            .unwrap_or_default();
        self.record_answer(now, site, name, roll_call, declaration)?;
        Ok(ServerMessage::RollCallAnswerRecorded { roll_call, at: now })
    }

    /// An answer of `site` (named `name`) to roll call `roll_call`: counted, logged, and told to
    /// the chair at once.
    pub(super) fn record_answer(
        &mut self,
        now: Millis,
        site: SiteCode,
        name: String,
        roll_call: u32,
        declaration: Declaration,
    ) -> Result<(), ActionError> {
        let running = match &mut self.roll_call {
            None => return Err(ActionError::NoRollCall),
            Some(running) if running.number != roll_call => {
                return Err(ActionError::WrongRollCall);
            }
            Some(running) => running,
        };
        // A site that answers again corrects its count: one answer per site.
        running.answers.retain(|(code, _)| *code != site);
        running.answers.push((site.clone(), declaration.count));
        running.present.insert(site.clone());
        self.log(
            now,
            EventKind::RollCallAnswered {
                roll_call,
                site: site.to_string(),
                count: declaration.count,
                confirmed_by: declaration.confirmed_by.clone(),
                position: declaration.position.clone(),
            },
        );
        if let Some(status) = self.sites.get_mut(&site) {
            status.head_count = Some(declaration.count);
            status.answered_roll_call = true;
        }
        if let Some(chair) = self.studio {
            self.send(
                chair,
                ServerMessage::RollCallAnswer {
                    roll_call,
                    site: site.to_string(),
                    name,
                    count: declaration.count,
                    confirmed_by: declaration.confirmed_by,
                    position: declaration.position,
                    at: now,
                },
            );
        }
        Ok(())
    }

    /// The chair calls a site whose page is open on standby.
    pub fn call_site(
        &mut self,
        now: Millis,
        chair: PeerId,
        site: &SiteCode,
    ) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        let pages: Vec<_> = self
            .pages
            .iter()
            .filter(|(_, s)| *s == site)
            .map(|(page, _)| *page)
            .collect();
        if pages.is_empty() {
            let remote_page = self
                .remote_sites
                .get(site)
                .is_some_and(|(_, row)| row.state == SiteState::PageOpen);
            let Some(relay) = self.remote_relay_of(site).filter(|_| remote_page) else {
                return Err(ActionError::NoPageOpen(site.clone()));
            };
            self.ask_relay(relay, ClientMessage::CallSite { site: site.clone() });
            self.log(
                now,
                EventKind::SiteCalled {
                    site: site.to_string(),
                },
            );
            return Ok(());
        }
        let by = self
            .participants
            .get(&chair)
            .map(|p| p.info.name.clone())
            .unwrap_or_default();
        for page in pages {
            self.outputs.push_back(Output::Send {
                to: Recipient::Page(page),
                message: ServerMessage::Called { by: by.clone() },
            });
        }
        self.log(
            now,
            EventKind::SiteCalled {
                site: site.to_string(),
            },
        );
        Ok(())
    }

    /// Moves the floor, the media that follows it, records it and tells everyone. `remote`:
    /// the site of another hub that `to`, a `node` participant, stands for.
    pub(super) fn change_floor(
        &mut self,
        now: Millis,
        to: Option<PeerId>,
        remote: Option<(SiteCode, String)>,
    ) {
        let from = self.floor;
        // The floor of a site not back since the meeting was opened again is returned by any
        // move of the chair's.
        let absent = self.floor_absent.take();
        if let Some(site) = &absent {
            self.log(
                now,
                EventKind::FloorReturned {
                    site: site.to_string(),
                },
            );
        }
        if from == to && self.floor_remote == remote {
            if absent.is_some() {
                self.send_to_everyone(&self.floor_message());
            }
            return;
        }
        let returned = self.floor_site();
        // A site of another hub given the floor no longer waits for it.
        if let Some((site, _)) = &remote {
            self.remote_queue.retain(|(q, _)| q != site);
        }
        self.floor = to;
        self.floor_remote = remote;
        // Viewers first: their one picture is freed before the new speaker's is added.
        self.reconcile_viewers();
        for publisher in [from, to].into_iter().flatten() {
            self.reconcile_publisher(publisher);
        }
        // A site of another hub is in this meeting's record when it is invited here (at the
        // root), not when it is a commune of another province (at a child).
        for (site, given) in [(returned, false), (self.floor_site(), true)] {
            let Some(site) = site.filter(|s| self.invited(s)) else {
                continue;
            };
            let site = site.to_string();
            let kind = if given {
                EventKind::FloorGiven { site }
            } else {
                EventKind::FloorReturned { site }
            };
            self.log(now, kind);
        }
        self.send_to_everyone(&self.floor_message());
    }

    /// The site holding the floor: one joined here, or one of another hub.
    fn floor_site(&self) -> Option<SiteCode> {
        let holder = self.floor?;
        self.site_of(holder)
            .cloned()
            .or_else(|| self.floor_remote.as_ref().map(|(site, _)| site.clone()))
    }

    /// Pauses or resumes a site's audio everywhere, tells it and records it, if it changes.
    fn set_muted(&mut self, now: Millis, site: PeerId, muted: bool) {
        let changed = if muted {
            self.muted.insert(site)
        } else {
            self.muted.remove(&site)
        };
        if !changed {
            return;
        }
        let Some(p) = self.participants.get(&site) else {
            return;
        };
        let pauses: Vec<Output> = p
            .producers
            .iter()
            .filter(|producer| producer.kind == MediaKind::Audio)
            .map(|producer| {
                Output::Route(Route::PauseProducer {
                    router: producer.router,
                    producer: producer.id,
                    paused: muted,
                })
            })
            .collect();
        let code = self.site_of(site).cloned();
        self.outputs.extend(pauses);
        // A province's relay takes the sound of unmuted sites only.
        self.reconcile_publisher(site);
        self.send(site, ServerMessage::Muted { muted });
        if let Some(code) = code {
            self.log(
                now,
                EventKind::SiteMuted {
                    site: code.to_string(),
                    muted,
                },
            );
        }
    }

    /// Asks a child hub's relay to do `action` on its own hub, as that hub's chair.
    pub(super) fn ask_relay(&mut self, relay: PeerId, action: ClientMessage) {
        self.send(
            relay,
            ServerMessage::RelayChair {
                action: Box::new(action),
            },
        );
    }

    /// Authorisation first: a site asking for a chair action learns it is forbidden, whatever
    /// the rest of its request.
    pub(super) fn require_chair(&self, id: PeerId) -> Result<(), ActionError> {
        match self.role(id) {
            Some(Role::Studio) => Ok(()),
            Some(Role::Site | Role::Node | Role::Observer | Role::Encoder | Role::Viewer) => {
                Err(ActionError::ChairOnly)
            }
            None => Err(ActionError::NotJoined),
        }
    }

    fn require_site(&self, id: PeerId) -> Result<SiteCode, ActionError> {
        match self.role(id) {
            Some(Role::Site) => self.site_of(id).cloned().ok_or(ActionError::SiteOnly),
            Some(Role::Studio | Role::Node | Role::Observer | Role::Encoder | Role::Viewer) => {
                Err(ActionError::SiteOnly)
            }
            None => Err(ActionError::NotJoined),
        }
    }

    /// The participant joined now for one of the meeting's sites.
    fn connected_site(&self, site: &SiteCode) -> Result<PeerId, ActionError> {
        self.sites
            .get(site)
            .and_then(|s| s.participant)
            .ok_or_else(|| ActionError::SiteNotConnected(site.clone()))
    }
}
