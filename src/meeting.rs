//! The meeting rules: who may join, and whose media goes to whom. Plain types, no IO; the
//! signalling layer calls these and turns the answers into media-plane calls.

use std::collections::BTreeMap;

use diemcau_sfu::{PeerId, RouterId};
use diemcau_signaling::Role;

/// A meeting in progress. States: open (someone is in it) → gone (the last participant left
/// and the hub dropped it).
#[derive(Debug)]
pub struct Meeting {
    pub id: String,
    pub router: RouterId,
    studio: Option<PeerId>,
    members: BTreeMap<PeerId, Member>,
    max_participants: usize,
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

impl Meeting {
    pub fn new(id: String, router: RouterId, max_participants: usize) -> Meeting {
        Meeting {
            id,
            router,
            studio: None,
            members: BTreeMap::new(),
            max_participants,
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

    pub fn leave(&mut self, id: PeerId) {
        if self.members.remove(&id).is_some() && self.studio == Some(id) {
            self.studio = None;
        }
    }

    /// Whether `subscriber` receives what `publisher` sends: sites receive the studio, the
    /// studio receives every site.
    pub fn receives(&self, subscriber: PeerId, publisher: PeerId) -> bool {
        if subscriber == publisher {
            return false;
        }
        let (Some(s), Some(p)) = (self.members.get(&subscriber), self.members.get(&publisher))
        else {
            return false;
        };
        matches!(
            (s.role, p.role),
            (Role::Site, Role::Studio) | (Role::Studio, Role::Site)
        )
    }

    pub fn members(&self) -> impl Iterator<Item = (PeerId, &Member)> {
        self.members.iter().map(|(id, m)| (*id, m))
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meeting() -> Meeting {
        Meeting::new("m".into(), RouterId(1), 3)
    }

    #[test]
    fn one_studio_per_meeting() {
        let mut m = meeting();
        m.join(PeerId(1), Role::Studio, "Studio".into())
            .expect("first studio");
        assert_eq!(
            m.join(PeerId(2), Role::Studio, "Other".into()),
            Err(JoinError::StudioTaken)
        );
        m.leave(PeerId(1));
        m.join(PeerId(2), Role::Studio, "Other".into())
            .expect("studio seat free again");
    }

    #[test]
    fn sites_receive_studio_and_studio_receives_sites() {
        let mut m = meeting();
        m.join(PeerId(1), Role::Studio, "Studio".into())
            .expect("join");
        m.join(PeerId(2), Role::Site, "Xã A".into()).expect("join");
        m.join(PeerId(3), Role::Site, "Xã B".into()).expect("join");
        assert!(m.receives(PeerId(2), PeerId(1)));
        assert!(m.receives(PeerId(1), PeerId(2)));
        assert!(
            !m.receives(PeerId(2), PeerId(3)),
            "sites do not receive each other"
        );
        assert!(!m.receives(PeerId(1), PeerId(1)));
        assert!(
            !m.receives(PeerId(9), PeerId(1)),
            "strangers receive nothing"
        );
    }

    #[test]
    fn full_meeting_refuses() {
        let mut m = meeting();
        for i in 0..3 {
            m.join(PeerId(i), Role::Site, format!("Xã {i}"))
                .expect("join");
        }
        assert_eq!(
            m.join(PeerId(9), Role::Site, "late".into()),
            Err(JoinError::Full)
        );
    }
}
