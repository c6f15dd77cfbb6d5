//! Sites joined to a child hub, in a national meeting at its parent (docs/cascade.md): the
//! child's relay tells what its own console shows of them, and relays their answers to this
//! meeting's roll call. The chair here then sees every site of the tree and counts them all.

use std::collections::{BTreeSet, HashMap};

use diemcau_sfu::str0m::media::Mid;
use diemcau_sfu::{PeerId, ProducerInfo};
use diemcau_signaling::protocol::{ConsoleSite, FloorState, SiteState};
use diemcau_signaling::{ClientMessage, Role, SiteCode};

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
        let Some(node) = self.node_name(relay).filter(|_| self.is_relay(relay)) else {
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

    /// Node `relay` says which of its sites each of its tracks carries now (`streams`: its
    /// m-lines, the others carrying none). A track that changes site stops reaching anyone
    /// and is routed again under the new site's name; a site not invited here is left out.
    pub fn relay_streams(
        &mut self,
        relay: PeerId,
        streams: Vec<(Mid, SiteCode)>,
    ) -> Result<(), ActionError> {
        if !self.is_relay(relay) {
            return Err(ActionError::NotJoined);
        }
        let streams: HashMap<Mid, SiteCode> = streams
            .into_iter()
            .filter(|(_, site)| self.invited(site))
            .collect();
        let before = self
            .upward
            .insert(relay, streams.clone())
            .unwrap_or_default();
        let changed: Vec<ProducerInfo> = self
            .participants
            .get(&relay)
            .map(|p| p.producers.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|p| before.get(&p.mid) != streams.get(&p.mid))
            .collect();
        let subscribers: Vec<PeerId> = self.participants.keys().copied().collect();
        for producer in &changed {
            self.drop_consumers_of(producer);
        }
        // Viewers first: their one picture is freed before another is added.
        self.reconcile_viewers();
        for producer in &changed {
            for subscriber in &subscribers {
                self.reconcile(*subscriber, producer);
            }
        }
        Ok(())
    }

    /// The chair's console shows the pictures of `sites` now. The relays here send up the
    /// small pictures of those of their sites (each is told); at a province's part, its relay
    /// (the chair here) passes on the national chair's choice and the small pictures of
    /// those sites go up to it.
    pub fn set_tiles(&mut self, chair: PeerId, sites: Vec<SiteCode>) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        let tiles: BTreeSet<SiteCode> = sites.into_iter().collect();
        if tiles == self.tiles {
            return Ok(());
        }
        let before = std::mem::replace(&mut self.tiles, tiles);
        self.tiles_changed(&before);
        Ok(())
    }

    /// The tiles the chair shows are no longer `before`: what goes up follows, and every
    /// relay is told.
    pub(super) fn tiles_changed(&mut self, before: &BTreeSet<SiteCode>) {
        let changed: BTreeSet<&SiteCode> = self.tiles.symmetric_difference(before).collect();
        let publishers: Vec<PeerId> = self
            .participants
            .iter()
            .filter(|(id, p)| {
                self.is_relay(**id) || p.site.as_ref().is_some_and(|s| changed.contains(s))
            })
            .map(|(id, _)| *id)
            .collect();
        for publisher in publishers {
            self.reconcile_publisher(publisher);
        }
        for relay in self.relays() {
            self.tell_relay_tiles(relay);
        }
    }

    /// Tells a relay which sites the chair's console shows (a new relay hears it when it
    /// joins).
    pub(super) fn tell_relay_tiles(&mut self, relay: PeerId) {
        let sites = self.tiles.iter().cloned().collect();
        self.ask_relay(relay, ClientMessage::Tiles { sites });
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
            .keys()
            .copied()
            .filter(|id| self.is_relay(*id))
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
