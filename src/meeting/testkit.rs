//! Random input sequences for the meeting core, for the fuzz target `meeting_core` and the unit
//! tests: every three bytes are one input (joins, leaves, media events, chair actions from
//! anyone, time passing); after each input the outputs are carried as a driver would, and what
//! must always hold is checked: the core's own invariants ([`LiveMeeting::check_invariants`]),
//! a muted site's audio paused on every worker, a removed participant gone for good, every
//! event at the time of its input.

use std::collections::{BTreeMap, HashMap};

use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::{PeerId, ProducerId, ProducerInfo, RouterId};
use diemcau_signaling::protocol::ProgrammeSource;
use diemcau_signaling::{MeetingId, SessionId, SiteCode};

use super::{
    Declaration, FloorAbove, IdAllocator, LiveMeeting, MeetingConfig, MeetingSetup, Output,
    PageKey, Route, Seat,
};
use crate::attendance::{ExpectedSite, LeaveReason, Millis};

/// Participant slots the inputs name; each join in a slot is a new participant.
const SLOTS: u8 = 6;
/// Site codes the inputs name: the roster's four and one that is not invited.
const SITES: [&str; 5] = ["001", "002", "003", "004", "099"];

/// Plays `data` as inputs to one meeting; panics when something that must hold does not.
pub fn run(data: &[u8]) {
    let roster = SITES
        .iter()
        .take(4)
        .map(|code| ExpectedSite {
            code: (*code).into(),
            name: format!("Xã {code}"),
            expected_delegates: 30,
            province: None,
        })
        .collect();
    let setup = MeetingSetup {
        id: MeetingId(1),
        title: "fuzz".into(),
        roster,
        history: Vec::new(),
    };
    let config = MeetingConfig {
        max_participants: 5,
        max_viewers: 2,
        grace: 10_000,
        console_interval: 2_000,
        recording: super::RecordingMode::Auto,
    };
    let mut player = Player {
        meeting: LiveMeeting::new(setup, RouterId(1), config, IdAllocator::default()),
        slots: BTreeMap::new(),
        next_peer: 1,
        next_producer: 1,
        paused: HashMap::new(),
        removed: Vec::new(),
        now: 1_000_000,
        recording: None,
    };
    for input in data.chunks(3) {
        let (op, a, b) = match *input {
            [op, a, b] => (op, a, b),
            _ => return,
        };
        player.now += Millis::from(b) * 40;
        player.play(op, a, b);
        player.carry();
        player.check();
    }
}

struct Player {
    meeting: LiveMeeting,
    /// The participant in each slot now.
    slots: BTreeMap<u8, PeerId>,
    next_peer: u64,
    next_producer: u64,
    /// Each live producer's pause state on the workers, as the outputs set it.
    paused: HashMap<ProducerId, (PeerId, MediaKind, bool)>,
    removed: Vec<PeerId>,
    now: Millis,
    /// The recording's part running, as the driver started it.
    recording: Option<u32>,
}

impl Player {
    fn play(&mut self, op: u8, a: u8, b: u8) {
        let now = self.now;
        let slot = a % SLOTS;
        let peer = self.slots.get(&slot).copied().unwrap_or(PeerId(999));
        let code = SITES
            .get(usize::from(b) % SITES.len())
            .copied()
            .unwrap_or("001");
        let Ok(site) = SiteCode::try_from(code) else {
            unreachable!("the fixed site codes are administrative codes")
        };
        let declaration = Declaration {
            count: u32::from(b),
            confirmed_by: "Nguyễn Văn An".into(),
            position: "Chủ tịch".into(),
        };
        let m = &mut self.meeting;
        // Refusals are part of the game: only what the outputs and state say is checked.
        match op % 23 {
            0 | 1 => {
                let id = PeerId(self.next_peer);
                self.next_peer += 1;
                let seat = if op.is_multiple_of(18) && b.is_multiple_of(4) {
                    Seat::Studio {
                        name: "Studio".into(),
                        session: SessionId(format!("s{}", id.0)),
                        relayed: b % 8 == 4,
                    }
                } else if b % 16 == 1 {
                    Seat::Node {
                        node: "tuyen-quang".into(),
                        session: SessionId(format!("s{}", id.0)),
                    }
                } else if b % 16 == 3 {
                    Seat::Above {
                        session: SessionId(format!("s{}", id.0)),
                    }
                } else if b % 16 == 5 {
                    Seat::Observer {
                        session: SessionId(format!("s{}", id.0)),
                    }
                } else if b % 16 == 7 {
                    Seat::Encoder {
                        session: SessionId(format!("s{}", id.0)),
                    }
                } else if b % 16 == 9 {
                    Seat::Viewer {
                        session: SessionId(format!("s{}", id.0)),
                    }
                } else {
                    Seat::Site {
                        code: site,
                        name: "Xã".into(),
                        session: SessionId(format!("s{}", id.0)),
                    }
                };
                if m.join(now, id, seat, "fuzz", "127.0.0.1").is_ok() {
                    self.slots.insert(slot, id);
                }
            }
            2 => {
                let reason = match b % 4 {
                    0 => LeaveReason::Closed,
                    1 => LeaveReason::NetworkTimeout,
                    2 => LeaveReason::HubShutdown,
                    _ => LeaveReason::Removed,
                };
                m.leave(now, peer, reason, None);
            }
            3 => m.attached(peer),
            4 => {
                let kind = if b.is_multiple_of(2) {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                let id = ProducerId(self.next_producer);
                self.next_producer += 1;
                if m.contains(peer) {
                    self.paused.insert(id, (peer, kind, false));
                }
                m.producer_added(ProducerInfo {
                    id,
                    router: RouterId(1),
                    peer,
                    kind,
                    layers: if b.is_multiple_of(3) { 3 } else { 1 },
                    mid: diemcau_sfu::str0m::media::Mid::from((b % 4).to_string().as_str()),
                    stream: None,
                });
            }
            5 => m.peer_closed(now, peer),
            6 => {
                let _ = m.request_floor(now, peer, b.is_multiple_of(2));
            }
            7 => {
                let _ = m.give_floor(now, peer, &site);
            }
            8 => {
                let _ = m.take_floor(now, peer);
            }
            9 => {
                let _ = m.mute(now, peer, &site, !b.is_multiple_of(3));
            }
            10 => {
                let _ = m.mute_all(now, peer, b.is_multiple_of(2));
            }
            11 if b.is_multiple_of(2) => {
                let _ = m.start_roll_call(now, peer);
            }
            11 => {
                let _ = m.end_roll_call(now, peer);
            }
            12 => {
                let _ = m.answer_roll_call(now, peer, u32::from(b % 3), declaration);
            }
            13 => {
                let _ = m.declare_head_count(now, peer, declaration);
            }
            14 if b.is_multiple_of(2) => {
                let _ = m.open_page(PageKey(u64::from(a)), site);
            }
            14 => m.close_page(PageKey(u64::from(a))),
            15 => {
                let _ = m.call_site(now, peer, &site);
            }
            16 => m.handle_timeout(now),
            // A child hub's relay shows one of its sites joined (or not) there.
            17 => m.remote_console(now, peer, vec![remote_row(code, b)]),
            18 => {
                let floor = match b % 3 {
                    0 => None,
                    1 => Some(FloorAbove::Here(site)),
                    _ => Some(FloorAbove::Elsewhere {
                        site,
                        name: "Xã".into(),
                    }),
                };
                let _ = m.floor_from_above(now, peer, floor);
            }
            19 => {
                let source = if b.is_multiple_of(2) {
                    ProgrammeSource::Camera
                } else {
                    ProgrammeSource::Encoder
                };
                let _ = m.switch_programme(now, peer, source);
            }
            // The chair's console shows a site's tile (or none).
            20 => {
                let sites = if b.is_multiple_of(2) {
                    vec![site]
                } else {
                    Vec::new()
                };
                let _ = m.set_tiles(peer, sites);
            }
            // A relay's track carries one of its sites (or none).
            21 => {
                let mid = diemcau_sfu::str0m::media::Mid::from((a % 4).to_string().as_str());
                let streams = if b.is_multiple_of(3) {
                    Vec::new()
                } else {
                    vec![(mid, site)]
                };
                let _ = m.relay_streams(peer, streams);
            }
            _ if b == 255 => m.end(now),
            _ => m.reception_changed(now, peer, b.is_multiple_of(2), b.is_multiple_of(3)),
        }
    }

    /// Drains the outputs as a driver carries them.
    fn carry(&mut self) {
        while let Some(output) = self.meeting.poll_output() {
            match output {
                Output::Route(Route::PauseProducer {
                    producer, paused, ..
                }) => {
                    if let Some(state) = self.paused.get_mut(&producer) {
                        state.2 = paused;
                    }
                }
                Output::Route(Route::RemoveProducer { producer, .. }) => {
                    self.paused.remove(&producer);
                }
                Output::Log { at, .. } => assert_eq!(at, self.now, "an event at its input's time"),
                Output::Removed(id) => {
                    assert!(!self.meeting.contains(id), "{id} removed but still joined");
                    self.removed.push(id);
                }
                // The recording starts and stops at once, as a driver with room on its disk.
                Output::Recording(super::RecordingOutput::Start { part, .. }) => {
                    self.recording = Some(part);
                    let file = format!("meeting-1-{part}.mkv");
                    self.meeting.recording_started(self.now, part, file, None);
                }
                Output::Recording(super::RecordingOutput::Stop { reason }) => {
                    if let Some(part) = self.recording.take() {
                        self.meeting.recording_stopped(self.now, part, reason, 1);
                    }
                }
                Output::Recording(super::RecordingOutput::Sources(_))
                | Output::Route(_)
                | Output::Send { .. }
                | Output::Close { .. } => {}
            }
        }
    }

    fn check(&self) {
        if let Err(broken) = self.meeting.check_invariants() {
            panic!("invariant broken: {broken}");
        }
        for (producer, (peer, kind, paused)) in &self.paused {
            if *kind == MediaKind::Audio && self.meeting.is_muted(*peer) {
                assert!(paused, "muted {peer}'s audio {producer} still forwarded");
            }
        }
        for id in &self.removed {
            assert!(
                !self.meeting.contains(*id),
                "{id} came back after its removal"
            );
        }
    }
}

/// A child hub's console row of `site`: joined there when `b` is odd.
fn remote_row(site: &str, b: u8) -> diemcau_signaling::protocol::ConsoleSite {
    use diemcau_signaling::protocol::{ConsoleSite, FloorState, SiteState};
    ConsoleSite {
        site: site.into(),
        name: "Xã".into(),
        state: if b % 2 == 1 {
            SiteState::Live
        } else {
            SiteState::NotJoined
        },
        participant: None,
        muted: false,
        floor: if b % 4 == 3 {
            FloorState::Requested
        } else {
            FloorState::None
        },
        floor_requested_at: None,
        bitrate_in_kbps: 0,
        bitrate_out_kbps: 0,
        loss_permille: 0,
        rtt_ms: 0,
        transport: None,
        expected_delegates: 0,
        head_count: None,
        answered_roll_call: false,
        code_leak_suspected: false,
        node: None,
        province: None,
    }
}
