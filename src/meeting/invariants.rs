//! What must always hold in a live meeting, checked by the tests and the fuzz target.

use std::collections::HashMap;

use diemcau_sfu::{PeerId, ProducerId, ProducerInfo};
use diemcau_signaling::Role;

use super::LiveMeeting;

impl LiveMeeting {
    /// Checks what must always hold, for tests and fuzzing: one studio at most and it is the
    /// one joined as studio; the floor holder is a joined site and not queued, or a `node`
    /// participant standing for a site of another hub (named, and only then); a child hub's
    /// site queued for the floor is one its relay shows, not holding it; the queue and the
    /// muted are joined sites; every consumer's subscriber is attached, its producer is
    /// published by someone in the meeting, and it is one [`LiveMeeting::wanted_consumers`]
    /// wants; every consumer the rules want for an attached subscriber exists; a roll call runs only
    /// while someone is in the meeting, and every site that answered it was seen by it.
    pub fn check_invariants(&self) -> Result<(), String> {
        let studios = self
            .participants
            .iter()
            .filter(|(_, p)| p.info.role == Role::Studio)
            .map(|(id, _)| *id)
            .collect::<Vec<_>>();
        if studios.len() > 1 || studios.first().copied() != self.studio {
            return Err(format!(
                "studio {:?} but joined as studio {studios:?}",
                self.studio
            ));
        }
        let is_site = |id: &PeerId| self.role(*id) == Some(Role::Site);
        let is_node = |id: &PeerId| self.role(*id) == Some(Role::Node);
        if let Some(holder) = self.floor {
            let stands_for_a_site = is_node(&holder) && self.floor_remote.is_some();
            if !(is_site(&holder) || stands_for_a_site) || self.queued_at(holder).is_some() {
                return Err(format!(
                    "floor holder {holder} is not a joined site or a node standing for one, or is queued"
                ));
            }
        }
        if self.floor_remote.is_some() && !self.floor.is_some_and(|h| is_node(&h)) {
            return Err("a site of another hub named without a node holding the floor".into());
        }
        if let Some((site, _)) = self.remote_queue.iter().find(|(site, _)| {
            !self.remote_sites.contains_key(site)
                || self
                    .floor_remote
                    .as_ref()
                    .is_some_and(|(held, _)| held == site)
        }) {
            return Err(format!(
                "{site} is queued for the floor without a child hub's row, or holds it"
            ));
        }
        if let Some(id) = self
            .queue
            .iter()
            .map(|(id, _)| id)
            .chain(&self.muted)
            .find(|id| !is_site(id))
        {
            return Err(format!("{id} is queued or muted but is not a joined site"));
        }
        if let Some(running) = &self.roll_call {
            if self.participants.is_empty() {
                return Err(format!(
                    "roll call {} runs with nobody in the meeting",
                    running.number
                ));
            }
            if let Some((site, _)) = running
                .answers
                .iter()
                .find(|(site, _)| !running.present.contains(site))
            {
                return Err(format!(
                    "{site} answered roll call {} but is not counted present",
                    running.number
                ));
            }
        }
        let producers: HashMap<ProducerId, &ProducerInfo> = self
            .participants
            .values()
            .flat_map(|p| p.producers.iter().map(|pr| (pr.id, pr)))
            .collect();
        for ((subscriber, producer, pinned), consumer) in &self.consumers {
            let attached = self
                .participants
                .get(subscriber)
                .is_some_and(|p| p.attached);
            let Some(info) = producers.get(producer) else {
                return Err(format!(
                    "consumer of {producer} at {subscriber}: no such producer"
                ));
            };
            let wanted = self.wanted_consumers(*subscriber, info);
            if !attached || !wanted.contains(&(*pinned, consumer.max_layer)) {
                return Err(format!(
                    "{subscriber} receives {producer} of {} (pinned {pinned:?}) at layer {} against the rules",
                    info.peer, consumer.max_layer
                ));
            }
        }
        for (subscriber, p) in &self.participants {
            if !p.attached {
                continue;
            }
            for (producer, info) in &producers {
                for (pinned, _) in self.wanted_consumers(*subscriber, info) {
                    if !self
                        .consumers
                        .contains_key(&(*subscriber, *producer, pinned))
                    {
                        return Err(format!(
                            "{subscriber} should receive {producer} of {} (pinned {pinned:?})",
                            info.peer
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
