//! The meeting rules: who may join, who holds the floor, who is muted, the roll call, and
//! whose media goes to whom. Plain types, no IO; the hub calls these and turns the answers
//! into media-plane calls and attendance events.

use std::collections::{BTreeMap, BTreeSet};

use diemcau_sfu::{PeerId, RouterId};
use diemcau_signaling::Role;

/// A meeting in progress. States: open (someone is in it) → gone (the last participant left
/// and the hub dropped it). The floor: free → held by one site → free.
#[derive(Debug)]
pub struct Meeting {
    pub id: String,
    pub router: RouterId,
    studio: Option<PeerId>,
    members: BTreeMap<PeerId, Member>,
    max_participants: usize,
    floor: Option<PeerId>,
    /// Sites that asked for the floor, oldest first.
    queue: Vec<PeerId>,
    muted: BTreeSet<PeerId>,
    roll_call: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub role: Role,
    pub name: String,
}

/// Why a join is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("this meeting already has a studio")]
    StudioTaken,
    #[error("this meeting is full")]
    Full,
}

/// Why a person may not take a meeting's chair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChairError {
    #[error("the studio's code needs an organizer logged in on this browser; log in first")]
    LoginRequired,
    #[error("only an organizer account may chair a meeting")]
    NotOrganizer,
}

/// The studio's join code alone does not make a chair: whoever uses it must also be logged in
/// with an organizer account (`account` is the role logged in, if any). A code that leaks with
/// a forwarded link then gives nobody the chair.
pub fn may_chair(account: Option<crate::auth::Role>) -> Result<(), ChairError> {
    match account {
        None => Err(ChairError::LoginRequired),
        Some(crate::auth::Role::Organizer) => Ok(()),
        Some(crate::auth::Role::Staff) => Err(ChairError::NotOrganizer),
    }
}

/// Why a floor, mute or roll-call action is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("only the chair (the studio) may do this")]
    ChairOnly,
    #[error("only a site may do this")]
    SiteOnly,
    #[error("no such site in the meeting")]
    NoSuchSite,
    #[error("no roll call is running")]
    NoRollCall,
    #[error("this roll call is over")]
    WrongRollCall,
}

/// The floor before and after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloorChange {
    pub from: Option<PeerId>,
    pub to: Option<PeerId>,
}

impl Meeting {
    pub fn new(id: String, router: RouterId, max_participants: usize) -> Meeting {
        Meeting {
            id,
            router,
            studio: None,
            members: BTreeMap::new(),
            max_participants,
            floor: None,
            queue: Vec::new(),
            muted: BTreeSet::new(),
            roll_call: None,
        }
    }

    pub fn join(&mut self, id: PeerId, role: Role, name: String) -> Result<(), JoinError> {
        if self.members.len() >= self.max_participants {
            return Err(JoinError::Full);
        }
        if role == Role::Studio {
            if self.studio.is_some() {
                return Err(JoinError::StudioTaken);
            }
            self.studio = Some(id);
        }
        self.members.insert(id, Member { role, name });
        Ok(())
    }

    /// Removes a participant; returns the floor change if it held the floor.
    pub fn leave(&mut self, id: PeerId) -> Option<FloorChange> {
        self.members.remove(&id)?;
        if self.studio == Some(id) {
            self.studio = None;
        }
        self.queue.retain(|p| *p != id);
        self.muted.remove(&id);
        if self.floor == Some(id) {
            self.floor = None;
            return Some(FloorChange {
                from: Some(id),
                to: None,
            });
        }
        None
    }

    /// Whether `subscriber` receives what `publisher` sends: sites receive the studio, the
    /// studio receives every site, and every site receives the site holding the floor.
    pub fn receives(&self, subscriber: PeerId, publisher: PeerId) -> bool {
        if subscriber == publisher {
            return false;
        }
        let (Some(s), Some(p)) = (self.members.get(&subscriber), self.members.get(&publisher))
        else {
            return false;
        };
        match (s.role, p.role) {
            (Role::Site, Role::Studio) | (Role::Studio, Role::Site) => true,
            (Role::Site, Role::Site) => self.floor == Some(publisher),
            (Role::Studio, Role::Studio) => false,
        }
    }

    pub fn members(&self) -> impl Iterator<Item = (PeerId, &Member)> {
        self.members.iter().map(|(id, m)| (*id, m))
    }

    pub fn role(&self, id: PeerId) -> Option<Role> {
        self.members.get(&id).map(|m| m.role)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn floor(&self) -> Option<PeerId> {
        self.floor
    }

    pub fn floor_queue(&self) -> &[PeerId] {
        &self.queue
    }

    pub fn is_muted(&self, id: PeerId) -> bool {
        self.muted.contains(&id)
    }

    pub fn roll_call(&self) -> Option<u32> {
        self.roll_call
    }

    /// A site asks for the floor. Returns false if it already holds it or is queued.
    pub fn request_floor(&mut self, site: PeerId) -> Result<bool, RuleError> {
        self.require(site, Role::Site)?;
        if self.floor == Some(site) || self.queue.contains(&site) {
            return Ok(false);
        }
        self.queue.push(site);
        Ok(true)
    }

    /// A site withdraws its request. Returns whether it was queued.
    pub fn cancel_floor_request(&mut self, site: PeerId) -> Result<bool, RuleError> {
        self.require(site, Role::Site)?;
        let before = self.queue.len();
        self.queue.retain(|p| *p != site);
        Ok(self.queue.len() != before)
    }

    /// The chair gives the floor to a site (asked for or not).
    pub fn give_floor(&mut self, chair: PeerId, site: PeerId) -> Result<FloorChange, RuleError> {
        self.require_chair(chair)?;
        if self.role(site) != Some(Role::Site) {
            return Err(RuleError::NoSuchSite);
        }
        self.queue.retain(|p| *p != site);
        let change = FloorChange {
            from: self.floor,
            to: Some(site),
        };
        self.floor = Some(site);
        Ok(change)
    }

    /// The chair takes the floor back.
    pub fn take_floor(&mut self, chair: PeerId) -> Result<FloorChange, RuleError> {
        self.require_chair(chair)?;
        let change = FloorChange {
            from: self.floor,
            to: None,
        };
        self.floor = None;
        Ok(change)
    }

    /// The chair mutes or unmutes one site. Returns whether anything changed.
    pub fn set_muted(
        &mut self,
        chair: PeerId,
        site: PeerId,
        muted: bool,
    ) -> Result<bool, RuleError> {
        self.require_chair(chair)?;
        if self.role(site) != Some(Role::Site) {
            return Err(RuleError::NoSuchSite);
        }
        Ok(if muted {
            self.muted.insert(site)
        } else {
            self.muted.remove(&site)
        })
    }

    /// The chair mutes or unmutes every site; returns the sites whose state changed.
    pub fn set_all_muted(&mut self, chair: PeerId, muted: bool) -> Result<Vec<PeerId>, RuleError> {
        self.require_chair(chair)?;
        let sites: Vec<PeerId> = self
            .members
            .iter()
            .filter(|(_, m)| m.role == Role::Site)
            .map(|(id, _)| *id)
            .collect();
        let mut changed = Vec::new();
        for site in sites {
            let did = if muted {
                self.muted.insert(site)
            } else {
                self.muted.remove(&site)
            };
            if did {
                changed.push(site);
            }
        }
        Ok(changed)
    }

    /// The chair starts roll call number `number` (ending any running one).
    pub fn start_roll_call(&mut self, chair: PeerId, number: u32) -> Result<(), RuleError> {
        self.require_chair(chair)?;
        self.roll_call = Some(number);
        Ok(())
    }

    /// The chair ends the running roll call; returns its number.
    pub fn end_roll_call(&mut self, chair: PeerId) -> Result<u32, RuleError> {
        self.require_chair(chair)?;
        self.roll_call.take().ok_or(RuleError::NoRollCall)
    }

    /// A site may answer roll call `number` only while it runs.
    pub fn check_roll_call_answer(&self, site: PeerId, number: u32) -> Result<(), RuleError> {
        self.require(site, Role::Site)?;
        match self.roll_call {
            None => Err(RuleError::NoRollCall),
            Some(n) if n != number => Err(RuleError::WrongRollCall),
            Some(_) => Ok(()),
        }
    }

    /// Only the chair may call a site, give the floor, mute...
    pub fn require_chair(&self, id: PeerId) -> Result<(), RuleError> {
        match self.role(id) {
            Some(Role::Studio) => Ok(()),
            _ => Err(RuleError::ChairOnly),
        }
    }

    fn require(&self, id: PeerId, role: Role) -> Result<(), RuleError> {
        match (self.role(id), role) {
            (Some(r), _) if r == role => Ok(()),
            (_, Role::Studio) => Err(RuleError::ChairOnly),
            (_, Role::Site) => Err(RuleError::SiteOnly),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIR: PeerId = PeerId(1);
    const A: PeerId = PeerId(2);
    const B: PeerId = PeerId(3);

    fn meeting() -> Meeting {
        let mut m = Meeting::new("m".into(), RouterId(1), 10);
        m.join(CHAIR, Role::Studio, "Studio".into()).expect("join");
        m.join(A, Role::Site, "Xã A".into()).expect("join");
        m.join(B, Role::Site, "Xã B".into()).expect("join");
        m
    }

    #[test]
    fn one_studio_per_meeting() {
        let mut m = meeting();
        assert_eq!(
            m.join(PeerId(9), Role::Studio, "Other".into()),
            Err(JoinError::StudioTaken)
        );
        m.leave(CHAIR);
        m.join(PeerId(9), Role::Studio, "Other".into())
            .expect("studio seat free again");
    }

    #[test]
    fn sites_receive_studio_and_studio_receives_sites() {
        let m = meeting();
        assert!(m.receives(A, CHAIR));
        assert!(m.receives(CHAIR, A));
        assert!(!m.receives(A, B), "sites do not receive each other");
        assert!(!m.receives(CHAIR, CHAIR));
        assert!(!m.receives(PeerId(9), CHAIR), "strangers receive nothing");
    }

    #[test]
    fn full_meeting_refuses() {
        let mut m = Meeting::new("m".into(), RouterId(1), 2);
        m.join(A, Role::Site, "A".into()).expect("join");
        m.join(B, Role::Site, "B".into()).expect("join");
        assert_eq!(
            m.join(PeerId(9), Role::Site, "late".into()),
            Err(JoinError::Full)
        );
    }

    #[test]
    fn floor_goes_to_one_site_whose_media_reaches_every_site() {
        let mut m = meeting();
        assert_eq!(m.request_floor(A), Ok(true));
        assert_eq!(m.request_floor(A), Ok(false), "already queued");
        assert_eq!(m.request_floor(B), Ok(true));
        assert_eq!(m.floor_queue(), &[A, B]);
        let change = m.give_floor(CHAIR, A).expect("chair gives");
        assert_eq!(
            change,
            FloorChange {
                from: None,
                to: Some(A)
            }
        );
        assert_eq!(m.floor_queue(), &[B]);
        assert!(m.receives(B, A), "every site receives the floor");
        assert!(!m.receives(A, B));
        let change = m.give_floor(CHAIR, B).expect("chair passes the floor on");
        assert_eq!(
            change,
            FloorChange {
                from: Some(A),
                to: Some(B)
            }
        );
        assert!(!m.receives(B, A));
        assert_eq!(
            m.leave(B),
            Some(FloorChange {
                from: Some(B),
                to: None
            })
        );
        assert_eq!(m.floor(), None);
    }

    #[test]
    fn only_the_chair_runs_the_meeting() {
        let mut m = meeting();
        assert_eq!(m.give_floor(A, B), Err(RuleError::ChairOnly));
        assert_eq!(m.take_floor(A), Err(RuleError::ChairOnly));
        assert_eq!(m.set_muted(A, B, true), Err(RuleError::ChairOnly));
        assert_eq!(m.set_all_muted(B, true), Err(RuleError::ChairOnly));
        assert_eq!(m.start_roll_call(A, 1), Err(RuleError::ChairOnly));
        assert_eq!(m.end_roll_call(A), Err(RuleError::ChairOnly));
        assert_eq!(m.request_floor(CHAIR), Err(RuleError::SiteOnly));
        assert_eq!(m.give_floor(CHAIR, CHAIR), Err(RuleError::NoSuchSite));
        assert_eq!(m.set_muted(CHAIR, CHAIR, true), Err(RuleError::NoSuchSite));
    }

    #[test]
    fn muting_and_roll_call() {
        let mut m = meeting();
        assert_eq!(m.set_muted(CHAIR, A, true), Ok(true));
        assert_eq!(m.set_muted(CHAIR, A, true), Ok(false));
        assert!(m.is_muted(A));
        assert_eq!(m.set_all_muted(CHAIR, true), Ok(vec![B]));
        assert_eq!(m.set_all_muted(CHAIR, false), Ok(vec![A, B]));
        assert_eq!(m.check_roll_call_answer(A, 1), Err(RuleError::NoRollCall));
        m.start_roll_call(CHAIR, 1).expect("start");
        assert_eq!(m.check_roll_call_answer(A, 1), Ok(()));
        assert_eq!(
            m.check_roll_call_answer(A, 7),
            Err(RuleError::WrongRollCall)
        );
        assert_eq!(m.check_roll_call_answer(CHAIR, 1), Err(RuleError::SiteOnly));
        assert_eq!(m.end_roll_call(CHAIR), Ok(1));
        assert_eq!(m.end_roll_call(CHAIR), Err(RuleError::NoRollCall));
    }
}
