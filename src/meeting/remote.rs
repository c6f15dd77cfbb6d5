//! Sites joined to a child hub, in a national meeting at its parent (docs/cascade.md): the
//! child's relay tells what its own console shows of them, and relays their answers to this
//! meeting's roll call. The chair here then sees every site of the tree and counts them all.

use diemcau_sfu::PeerId;
use diemcau_signaling::protocol::{ConsoleSite, FloorState, SiteState};
use diemcau_signaling::{Role, SiteCode};

use super::chair::Declaration;
use super::{ActionError, LiveMeeting};
use crate::attendance::{EventKind, Millis};

impl LiveMeeting {
    /// Node `relay`'s console rows of its sites: the rows of this meeting's roster replace what
    /// it said before. A site it shows joined while a roll call runs is seen by the roll call;
    /// one it shows asking for the floor joins this meeting's queue (and leaves it when its
    /// hub no longer shows it asking); one holding the floor here that it no longer shows
    /// joined returns the floor, as a site leaving this hub does.
    pub fn remote_console(&mut self, now: Millis, relay: PeerId, rows: Vec<ConsoleSite>) {
        let Some(node) = self.node_name(relay) else {
            return;
        };
        self.remote_sites.retain(|_, (n, _)| *n != node);
        for row in rows {
            let Ok(code) = SiteCode::try_from(row.site.as_str()) else {
                continue;
            };
            if !self.invited(&code) {
                continue;
            }
            if joined(row.state) {
                self.roll_call_sees(&code);
            }
            self.remote_sites.insert(code, (node.clone(), row));
        }
        let speaker_gone = self.floor == Some(relay)
            && self.floor_remote.as_ref().is_some_and(|(site, _)| {
                !self
                    .remote_sites
                    .get(site)
                    .is_some_and(|(_, row)| joined(row.state))
            });
        if speaker_gone {
            self.change_floor(now, None, None);
        }
        self.update_remote_queue(now);
    }

    /// The queue of child hubs' sites follows their rows: a site shown asking is added (and
    /// its request recorded) at the time its hub says it asked, one no longer shown asking,
    /// or holding the floor, leaves it.
    fn update_remote_queue(&mut self, now: Millis) {
        let asking = |m: &LiveMeeting, site: &SiteCode| {
            m.remote_sites
                .get(site)
                .is_some_and(|(_, row)| row.floor == FloorState::Requested)
                && m.floor_remote.as_ref().is_none_or(|(held, _)| held != site)
        };
        let before = self.remote_queue.len();
        let kept: Vec<(SiteCode, Millis)> = self
            .remote_queue
            .iter()
            .filter(|(site, _)| asking(self, site))
            .cloned()
            .collect();
        let mut changed = kept.len() != before;
        self.remote_queue = kept;
        let mut new: Vec<(SiteCode, Millis)> = self
            .remote_sites
            .iter()
            .filter(|(site, _)| {
                asking(self, site) && !self.remote_queue.iter().any(|(q, _)| q == *site)
            })
            .map(|(site, (_, row))| (site.clone(), asked_at(row, now)))
            .collect();
        new.sort_by_key(|(_, at)| *at);
        for (site, at) in new {
            self.log(
                at,
                EventKind::FloorRequested {
                    site: site.to_string(),
                },
            );
            self.remote_queue.push((site, at));
            changed = true;
        }
        if changed {
            self.remote_queue.sort_by_key(|(_, at)| *at);
            self.send_to_everyone(&self.floor_message());
        }
    }

    /// A site of node `relay` answered roll call `roll_call` on its own hub.
    pub fn remote_roll_call_answer(
        &mut self,
        now: Millis,
        relay: PeerId,
        roll_call: u32,
        site: &SiteCode,
        declaration: Declaration,
    ) -> Result<(), ActionError> {
        let node = self.node_name(relay).ok_or(ActionError::NotJoined)?;
        let name = match self.remote_sites.get(site) {
            Some((n, row)) if *n == node => row.name.clone(),
            _ => return Err(ActionError::SiteNotConnected(site.clone())),
        };
        self.record_answer(now, site.clone(), name, roll_call, declaration)
    }

    /// The relay of the child hub `site` is joined to, when it is not joined here.
    pub(super) fn remote_relay_of(&self, site: &SiteCode) -> Option<PeerId> {
        if self
            .sites
            .get(site)
            .is_some_and(|s| s.participant.is_some())
        {
            return None;
        }
        let (node, _) = self.remote_sites.get(site)?;
        self.relays().into_iter().find(|id| {
            self.participants
                .get(id)
                .is_some_and(|p| p.info.name == *node)
        })
    }

    /// Every child hub's relay here.
    pub(super) fn relays(&self) -> Vec<PeerId> {
        self.participants
            .iter()
            .filter(|(id, p)| p.info.role == Role::Node && self.floor_seat != Some(**id))
            .map(|(id, _)| *id)
            .collect()
    }

    fn node_name(&self, relay: PeerId) -> Option<String> {
        let p = self.participants.get(&relay)?;
        (p.info.role == Role::Node).then(|| p.info.name.clone())
    }
}

/// A console state of a site in the meeting now.
pub(super) fn joined(state: SiteState) -> bool {
    matches!(
        state,
        SiteState::Connecting | SiteState::Live | SiteState::AudioOnly
    )
}

/// How long before its row arrived a child hub may say its site asked for the floor: beyond
/// that its clock is off, and the request counts from the row's arrival.
const CLOCK_SLACK: Millis = 60_000;

/// When a child hub's site asked for the floor: as its hub says, within [`CLOCK_SLACK`] before
/// `now` and never after it; `now` if the hub does not say.
fn asked_at(row: &ConsoleSite, now: Millis) -> Millis {
    row.floor_requested_at
        .filter(|at| (now - CLOCK_SLACK..=now).contains(at))
        .unwrap_or(now)
}
