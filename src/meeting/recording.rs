//! The meeting's recording as the core decides it: whether one runs, which part, and which
//! producers it takes (what every site receives: the picture of the site holding the floor
//! while one does, else the programme's; the programme's sound and the floor holder's
//! sound). The hub writes the files (`crate::recording`) and reports back.

use diemcau_sfu::{PeerId, ProducerId, ProducerInfo};
use diemcau_signaling::ServerMessage;
use str0m::media::MediaKind;

use super::{ActionError, LiveMeeting, Output};
use crate::attendance::{Event, EventKind, Millis, RecordingStop};

/// When a meeting's recording starts: the hub's `--recording` (the default of its meetings,
/// and `off` for all of them), and each meeting's own setting.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RecordingMode {
    /// With the meeting: from its first participant on.
    #[default]
    Auto,
    /// When the chair presses record.
    Manual,
    /// Never: nothing is recorded.
    Off,
}

impl RecordingMode {
    /// As the database and the API write it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingMode::Auto => "auto",
            RecordingMode::Manual => "manual",
            RecordingMode::Off => "off",
        }
    }

    pub fn parse(text: &str) -> Option<RecordingMode> {
        [
            RecordingMode::Auto,
            RecordingMode::Manual,
            RecordingMode::Off,
        ]
        .into_iter()
        .find(|mode| mode.as_str() == text)
    }

    /// A meeting's mode on a hub whose `--recording` is `hub`: its own, except that a hub set
    /// to `off` records nothing.
    pub fn for_meeting(hub: RecordingMode, meeting: Option<RecordingMode>) -> RecordingMode {
        match (hub, meeting) {
            (RecordingMode::Off, _) => RecordingMode::Off,
            (_, Some(own)) => own,
            (hub, None) => hub,
        }
    }
}

/// The producers a recording takes, as the meeting chose them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordingSources {
    /// The picture, with its simulcast layer count.
    pub video: Option<(ProducerId, u8)>,
    pub programme_audio: Option<ProducerId>,
    pub floor_audio: Option<ProducerId>,
}

impl RecordingSources {
    /// The producers to tap.
    pub fn producers(&self) -> Vec<ProducerId> {
        [
            self.video.map(|(id, _)| id),
            self.programme_audio,
            self.floor_audio,
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// What the driver does about the recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingOutput {
    /// Start part `part` (checking the disk first: [`LiveMeeting::recording_started`] or
    /// [`LiveMeeting::recording_refused`] follows).
    Start {
        part: u32,
        sources: RecordingSources,
    },
    /// The running part takes these producers from now on.
    Sources(RecordingSources),
    /// Stop the running part ([`LiveMeeting::recording_stopped`] follows).
    Stop { reason: RecordingStop },
}

/// The recording's state in a live meeting.
#[derive(Debug, Clone, Default)]
pub(super) struct Recording {
    /// The chair (or the hub's mode) wants a recording.
    wanted: bool,
    /// The part asked for or running, and since when it runs.
    part: Option<(u32, Option<Millis>)>,
    /// Parts so far (the next one is numbered one more).
    parts: u32,
    /// The sources the running part was last given.
    sources: RecordingSources,
    /// Why the last part ended or could not start, when not by the chair.
    trouble: Option<String>,
    /// The running part was told to stop; its end is awaited.
    stopping: bool,
}

impl Recording {
    /// The state the log leaves: the parts so far, and whether recording goes on when the
    /// meeting is opened again (after a restart it does; after the chair stopped it, or the
    /// disk filled, it waits for the chair).
    pub(super) fn from_history(history: &[Event], mode: RecordingMode) -> Recording {
        let mut recording = Recording {
            wanted: mode == RecordingMode::Auto,
            ..Recording::default()
        };
        for event in history {
            match &event.kind {
                EventKind::RecordingStarted { part, .. } => {
                    recording.parts = recording.parts.max(*part);
                    recording.wanted = true;
                }
                EventKind::RecordingStopped { reason, .. } => {
                    recording.wanted = matches!(
                        reason,
                        RecordingStop::HubShutdown
                            | RecordingStop::HubStopped
                            | RecordingStop::PictureChanged
                    );
                }
                EventKind::RecordingRefused { .. } => recording.wanted = false,
                _ => {}
            }
        }
        recording.wanted &= mode != RecordingMode::Off;
        recording
    }
}

impl LiveMeeting {
    /// What a recording takes now.
    pub fn recording_sources(&self) -> RecordingSources {
        let programme = if self.encoder_on_air() {
            self.encoder
        } else {
            self.studio
        };
        let floor = self.floor_seat.or(self.floor);
        // A relay holding the floor sends up several sites: the floor holder's tracks.
        let floor_site = self.floor_remote.as_ref().map(|(site, _)| site);
        let carries = |p: &ProducerInfo| match (floor_site, self.upward.get(&p.peer)) {
            (Some(site), Some(streams)) => streams.get(&p.mid) == Some(site),
            _ => true,
        };
        let producer = |peer: Option<PeerId>, kind: MediaKind| {
            let p = self.participants.get(&peer?)?;
            p.producers
                .iter()
                .find(|p| p.kind == kind && carries(p))
                .cloned()
        };
        let video =
            producer(floor, MediaKind::Video).or_else(|| producer(programme, MediaKind::Video));
        RecordingSources {
            video: video.map(|p| (p.id, p.layers)),
            programme_audio: producer(programme, MediaKind::Audio).map(|p| p.id),
            floor_audio: producer(floor, MediaKind::Audio).map(|p| p.id),
        }
    }

    /// Starts a part if one is wanted and none runs (the meeting was opened, or the chair
    /// pressed record).
    pub(super) fn start_recording_if_wanted(&mut self) {
        if !self.recording.wanted || self.recording.part.is_some() || self.ended {
            return;
        }
        let part = self.recording.parts + 1;
        self.recording.parts = part;
        self.recording.part = Some((part, None));
        self.recording.sources = self.recording_sources();
        self.outputs
            .push_back(Output::Recording(RecordingOutput::Start {
                part,
                sources: self.recording.sources.clone(),
            }));
    }

    /// Follows the programme: the running part is told when what it takes changes. Called
    /// whenever the outputs run dry.
    pub(super) fn refresh_recording(&mut self) {
        if self.recording.part.is_none() || self.recording.stopping {
            return;
        }
        let sources = self.recording_sources();
        if sources != self.recording.sources {
            self.recording.sources = sources.clone();
            self.outputs
                .push_back(Output::Recording(RecordingOutput::Sources(sources)));
        }
    }

    /// The chair starts (`on`) or stops the recording.
    pub fn set_recording(&mut self, chair: PeerId, on: bool) -> Result<(), ActionError> {
        self.require_chair(chair)?;
        if self.config.recording == RecordingMode::Off {
            return Err(ActionError::RecordingOff);
        }
        self.recording.wanted = on;
        if on {
            self.recording.trouble = None;
            self.start_recording_if_wanted();
        } else {
            self.stop_recording(RecordingStop::Chair);
        }
        self.send_recording_state();
        Ok(())
    }

    /// The meeting ends (or the hub stops): the running part stops with `reason`.
    pub(super) fn stop_recording(&mut self, reason: RecordingStop) {
        if self.recording.part.is_some() && !self.recording.stopping {
            self.recording.stopping = true;
            self.outputs
                .push_back(Output::Recording(RecordingOutput::Stop { reason }));
        }
    }

    /// Part `part` started writing to `file`, on the hub at `hub` (a standby pair's).
    pub fn recording_started(&mut self, now: Millis, part: u32, file: String, hub: Option<String>) {
        if self.recording.part.map(|(p, _)| p) != Some(part) {
            return;
        }
        self.recording.part = Some((part, Some(now)));
        self.log(now, EventKind::RecordingStarted { part, file, hub });
        self.send_recording_state();
    }

    /// Part `part` could not start: the disk had too little space.
    pub fn recording_refused(
        &mut self,
        now: Millis,
        part: u32,
        free_bytes: u64,
        min_free_bytes: u64,
    ) {
        if self.recording.part.map(|(p, _)| p) != Some(part) {
            return;
        }
        self.recording.part = None;
        self.recording.parts = part - 1;
        self.recording.wanted = false;
        self.recording.trouble = Some("low_disk".to_owned());
        self.log(
            now,
            EventKind::RecordingRefused {
                free_bytes,
                min_free_bytes,
            },
        );
        self.send_recording_state();
    }

    /// Part `part` ended, its file holding `bytes`.
    pub fn recording_stopped(&mut self, now: Millis, part: u32, reason: RecordingStop, bytes: u64) {
        self.log(
            now,
            EventKind::RecordingStopped {
                part,
                reason,
                bytes,
            },
        );
        if self.recording.part.map(|(p, _)| p) == Some(part) {
            self.recording.part = None;
            self.recording.stopping = false;
            if matches!(reason, RecordingStop::DiskFull | RecordingStop::WriteError) {
                self.recording.wanted = false;
                self.recording.trouble = Some(
                    serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                );
            }
        }
        self.send_recording_state();
        // The chair pressed record again before the last part had ended.
        self.start_recording_if_wanted();
    }

    /// Whether the chair hears of the recording when it joins: where one runs, or the last
    /// one ran into trouble.
    pub(super) fn recording_worth_telling(&self) -> bool {
        self.recording.part.is_some() || self.recording.trouble.is_some()
    }

    pub(super) fn recording_message(&self) -> ServerMessage {
        let (part, since) = match self.recording.part {
            Some((part, since)) => (Some(part), since),
            None => (None, None),
        };
        ServerMessage::Recording {
            recording: part.is_some(),
            part,
            since,
            trouble: self.recording.trouble.clone(),
        }
    }

    fn send_recording_state(&mut self) {
        if let Some(studio) = self.studio {
            self.send(studio, self.recording_message());
        }
    }
}
