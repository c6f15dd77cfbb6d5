//! Chair flows through the meeting core alone, on a virtual clock: each test feeds inputs and
//! asserts the exact outputs. This file holds the setup they share.

use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::{ConsumerId, PeerId, ProducerId, ProducerInfo, RouterId};
use diemcau_signaling::protocol::{FloorSite, FloorState, ProgrammeSource, SiteState};
use diemcau_signaling::{ErrorCode, ProtocolError, ServerMessage, SessionId, SiteCode};

use super::*;

mod chair;
mod media;
mod presence;
mod recording;
use crate::attendance::{EventKind, ExpectedSite, LeaveReason};

pub(super) const STUDIO: PeerId = PeerId(100);
pub(super) const A: PeerId = PeerId(101);
pub(super) const B: PeerId = PeerId(102);
pub(super) const GRACE: Millis = 120_000;
pub(super) const T0: Millis = 1_700_000_000_000;

pub(super) fn code(s: &str) -> SiteCode {
    SiteCode::try_from(s).expect("a site code")
}

pub(super) fn roster() -> Vec<ExpectedSite> {
    [("001", "Xã A"), ("002", "Xã B"), ("003", "Xã C")]
        .into_iter()
        .map(|(code, name)| ExpectedSite {
            code: code.into(),
            name: name.into(),
            expected_delegates: 40,
            province: None,
        })
        .collect()
}

pub(super) fn meeting() -> LiveMeeting {
    reopened(Vec::new())
}

/// The meeting opened again on the hub with `history` as its log so far (after a crash, or
/// taken over from another hub).
pub(super) fn reopened(history: Vec<Event>) -> LiveMeeting {
    let setup = MeetingSetup {
        id: MeetingId(7),
        title: "Hội nghị".into(),
        roster: roster(),
        history,
    };
    let config = MeetingConfig {
        max_participants: 10,
        max_viewers: 2,
        grace: GRACE,
        console_interval: 2_000,
        ..MeetingConfig::default()
    };
    // Consumer ids from 1000, so tests can name them.
    let ids = IdAllocator::default();
    while ids.next() < 999 {}
    LiveMeeting::new(setup, RouterId(1), config, ids)
}

pub(super) fn studio_seat(name: &str) -> Seat {
    Seat::Studio {
        name: name.into(),
        session: SessionId("s-studio".into()),
        relayed: false,
    }
}

/// The studio's seat of a province's part of a national meeting, taken by its relay.
pub(super) fn relayed_studio_seat() -> Seat {
    Seat::Studio {
        name: "Trường quay Chính phủ".into(),
        session: SessionId("s-relay".into()),
        relayed: true,
    }
}

pub(super) fn site_seat(site: &str, name: &str, session: &str) -> Seat {
    Seat::Site {
        code: code(site),
        name: name.into(),
        session: SessionId(session.into()),
    }
}

pub(super) fn drain(m: &mut LiveMeeting) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

pub(super) fn producer(id: u64, peer: PeerId, kind: MediaKind) -> ProducerInfo {
    ProducerInfo {
        id: ProducerId(id),
        router: RouterId(1),
        peer,
        kind,
        // Video as browsers publish it: three simulcast layers.
        layers: if kind == MediaKind::Video { 3 } else { 1 },
        mid: diemcau_sfu::str0m::media::Mid::from(id.to_string().as_str()),
        stream: None,
    }
}

pub(super) fn audio(peer: PeerId) -> ProducerInfo {
    producer(peer.0 * 10, peer, MediaKind::Audio)
}

pub(super) fn video(peer: PeerId) -> ProducerInfo {
    producer(peer.0 * 10 + 1, peer, MediaKind::Video)
}

pub(super) fn send(to: PeerId, message: ServerMessage) -> Output {
    Output::Send {
        to: Recipient::Participant(to),
        message,
    }
}

pub(super) fn log(at: Millis, kind: EventKind) -> Output {
    Output::Log { at, kind }
}

pub(super) fn floor_site(site: &str, name: &str, id: PeerId) -> FloorSite {
    FloorSite {
        site: site.into(),
        name: name.into(),
        participant: id.to_string(),
    }
}

pub(super) fn floor(holder: Option<FloorSite>, queue: Vec<FloorSite>) -> ServerMessage {
    ServerMessage::Floor { holder, queue }
}

pub(super) fn logs(outputs: &[Output]) -> Vec<EventKind> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Log { kind, .. } => Some(kind.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn routes(outputs: &[Output]) -> Vec<Route> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Route(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// The studio and sites A (001) and B (002) joined, attached, each publishing audio and video;
/// the outputs so far are drained.
pub(super) fn meeting_in_session() -> LiveMeeting {
    let mut m = meeting();
    m.join(T0, STUDIO, studio_seat("Studio"), "", "")
        .expect("studio joins");
    m.join(T0, A, site_seat("001", "Xã A", "s-a"), "ua", "10.0.0.1")
        .expect("A joins");
    m.join(T0, B, site_seat("002", "Xã B", "s-b"), "ua", "10.0.0.2")
        .expect("B joins");
    for id in [STUDIO, A, B] {
        m.attached(id);
        m.producer_added(audio(id));
        m.producer_added(video(id));
    }
    drain(&mut m);
    m
}

pub(super) fn console_of(
    m: &mut LiveMeeting,
    now: Millis,
) -> Vec<diemcau_signaling::protocol::ConsoleSite> {
    m.send_console(now);
    match drain(m).pop() {
        Some(Output::Send {
            message: ServerMessage::Console { sites, .. },
            ..
        }) => sites,
        other => panic!("expected the console, got {other:?}"),
    }
}
