//! What the chair does (floor, mute, roll call, calling a site) and what a site asks of it.
//! Each action is authorised first; a refused action changes nothing and queues nothing.

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_signaling::{Role, ServerMessage, SiteCode};

use super::{ActionError, LiveMeeting, Output, Recipient, Route};
use crate::attendance::{EventKind, Millis};

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
            let new = self.floor != Some(id) && !self.queue.contains(&id);
            if new {
                self.queue.push(id);
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
            self.queue.retain(|q| *q != id);
            self.queue.len() != before
        };
        if changed {
            self.send_to_everyone(&self.floor_message());
        }
        Ok(())
    }

    /// The chair gives the floor to a site (asked for or not): its media goes to every site,
    /// and to the chair at full quality.
    pub fn give_floor(
        &mut self,
        now: Millis,
        chair: PeerId,
        site: &SiteCode,
    ) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        let target = self.connected_site(site)?;
        self.queue.retain(|q| *q != target);
        self.change_floor(now, Some(target));
        Ok(())
    }

    /// The chair takes the floor back.
    pub fn take_floor(&mut self, now: Millis, chair: PeerId) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        self.change_floor(now, None);
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
        let target = self.connected_site(site)?;
        self.set_muted(now, target, muted);
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
        Ok(())
    }

    /// The chair starts a roll call (numbered one more than the last, ending any running one).
    pub fn start_roll_call(&mut self, now: Millis, chair: PeerId) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        let number = self.roll_calls + 1;
        self.roll_calls = number;
        self.roll_call = Some(number);
        for status in self.sites.values_mut() {
            status.answered_roll_call = false;
        }
        self.log(now, EventKind::RollCallStarted { roll_call: number });
        self.send_to_everyone(&ServerMessage::RollCall {
            roll_call: number,
            active: true,
        });
        Ok(())
    }

    /// The chair ends the running roll call.
    pub fn end_roll_call(&mut self, now: Millis, chair: PeerId) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        let number = self.roll_call.take().ok_or(ActionError::NoRollCall)?;
        self.log(now, EventKind::RollCallEnded { roll_call: number });
        self.send_to_everyone(&ServerMessage::RollCall {
            roll_call: number,
            active: false,
        });
        Ok(())
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
        match self.roll_call {
            None => return Err(ActionError::NoRollCall),
            Some(n) if n != roll_call => return Err(ActionError::WrongRollCall),
            Some(_) => {}
        }
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
            let name = self.participants.get(&id).map(|p| p.info.name.clone());
            self.send(
                chair,
                ServerMessage::RollCallAnswer {
                    roll_call,
                    site: site.to_string(),
                    name: name.unwrap_or_default(),
                    count: declaration.count,
                    confirmed_by: declaration.confirmed_by,
                    position: declaration.position,
                    at: now,
                },
            );
        }
        Ok(ServerMessage::RollCallAnswerRecorded { roll_call, at: now })
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
            return Err(ActionError::NoPageOpen(site.clone()));
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

    /// Moves the floor, the media that follows it, records it and tells everyone.
    fn change_floor(&mut self, now: Millis, to: Option<PeerId>) {
        let from = self.floor;
        if from == to {
            return;
        }
        self.floor = to;
        for publisher in [from, to].into_iter().flatten() {
            self.reconcile_publisher(publisher);
        }
        if let Some(site) = from.and_then(|f| self.site_of(f)).cloned() {
            self.log(
                now,
                EventKind::FloorReturned {
                    site: site.to_string(),
                },
            );
        }
        if let Some(site) = to.and_then(|t| self.site_of(t)).cloned() {
            self.log(
                now,
                EventKind::FloorGiven {
                    site: site.to_string(),
                },
            );
        }
        self.send_to_everyone(&self.floor_message());
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

    /// Authorisation first: a site asking for a chair action learns it is forbidden, whatever
    /// the rest of its request.
    fn require_chair(&self, id: PeerId) -> Result<(), ActionError> {
        match self.role(id) {
            Some(Role::Studio) => Ok(()),
            Some(Role::Site) => Err(ActionError::ChairOnly),
            None => Err(ActionError::NotJoined),
        }
    }

    fn require_site(&self, id: PeerId) -> Result<SiteCode, ActionError> {
        match self.role(id) {
            Some(Role::Site) => self.site_of(id).cloned().ok_or(ActionError::SiteOnly),
            Some(Role::Studio) => Err(ActionError::SiteOnly),
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
