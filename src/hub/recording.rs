//! Carries the core's recording decisions out: the disk is checked, the producers on air are
//! tapped on the media workers, the recording thread is told; what the thread reports (a part
//! ended, a keyframe needed) comes back into the core.

use std::collections::HashMap;
use std::sync::Arc;

use diemcau_sfu::{ProducerId, Relay, RouterId};
use diemcau_signaling::MeetingId;
use tokio::sync::mpsc;

use super::Hub;
use crate::attendance::{EventKind, RecordingStop};
use crate::media::Command as MediaCommand;
use crate::meeting::{LiveMeeting, RecordingOutput};
use crate::recording::{Command, Recordings, Report};
use crate::store::now_millis;

/// The producers each meeting's recording has tapped, with their router.
pub(super) type Taps = HashMap<MeetingId, (RouterId, Vec<ProducerId>)>;

impl Hub {
    /// The hub records meetings with `recordings`.
    pub fn recording(mut self, recordings: Recordings) -> Hub {
        self.recordings = Some(recordings);
        self
    }

    pub fn recordings(&self) -> Option<&Recordings> {
        self.recordings.as_ref()
    }

    /// Carries out one recording output of `live`.
    pub(super) fn carry_recording(
        &self,
        taps: &mut Taps,
        live: &mut LiveMeeting,
        output: RecordingOutput,
    ) {
        let Some(recordings) = &self.recordings else {
            return;
        };
        let meeting = live.id();
        let router = live.router();
        match output {
            RecordingOutput::Start { part, sources } => {
                if let Err(free) = recordings.check_space() {
                    tracing::warn!(meeting = %meeting, free_bytes = free, "recording refused: too little free disk space");
                    live.recording_refused(now_millis(), part, free, recordings.min_free_bytes());
                    return;
                }
                self.set_taps(taps, meeting, router, sources.producers());
                recordings.send(Command::Start {
                    meeting,
                    router,
                    part,
                    path: recordings.path(meeting, part),
                    sources,
                });
                tracing::info!(meeting = %meeting, part, "recording started");
                let hub = self.sharing.as_ref().map(|s| s.me.address.clone());
                live.recording_started(
                    now_millis(),
                    part,
                    Recordings::file_name(meeting, part),
                    hub,
                );
            }
            RecordingOutput::Sources(sources) => {
                self.set_taps(taps, meeting, router, sources.producers());
                recordings.send(Command::Sources { meeting, sources });
            }
            RecordingOutput::Stop { reason } => {
                self.set_taps(taps, meeting, router, Vec::new());
                recordings.send(Command::Stop { meeting, reason });
            }
        }
    }

    /// Taps exactly `producers` for `meeting`'s recording.
    fn set_taps(
        &self,
        taps: &mut Taps,
        meeting: MeetingId,
        router: RouterId,
        producers: Vec<ProducerId>,
    ) {
        let before = taps.remove(&meeting).map(|(_, p)| p).unwrap_or_default();
        for producer in before.iter().filter(|p| !producers.contains(p)) {
            let producer = *producer;
            self.media.broadcast(|| MediaCommand::SetTapped {
                router,
                producer,
                tapped: false,
            });
        }
        for producer in producers.iter().filter(|p| !before.contains(p)) {
            let producer = *producer;
            self.media.broadcast(|| MediaCommand::SetTapped {
                router,
                producer,
                tapped: true,
            });
        }
        if !producers.is_empty() {
            taps.insert(meeting, (router, producers));
        }
    }

    /// Taps nothing more for `meeting`'s recording.
    fn untap(&self, taps: &mut Taps, meeting: MeetingId) {
        if let Some((router, _)) = taps.get(&meeting).cloned() {
            self.set_taps(taps, meeting, router, Vec::new());
        }
    }

    /// Handles what the recording thread reports, until it is gone.
    pub async fn run_recording_reports(
        self: Arc<Self>,
        mut reports: mpsc::UnboundedReceiver<Report>,
    ) {
        while let Some(report) = reports.recv().await {
            match report {
                Report::Keyframe {
                    router,
                    producer,
                    layer,
                } => self.media.broadcast(|| {
                    MediaCommand::Relay(vec![Relay::KeyframeRequest {
                        router,
                        producer,
                        layer,
                    }])
                }),
                Report::Stopped {
                    meeting,
                    part,
                    reason,
                    bytes,
                    ..
                } => self.recording_stopped(meeting, part, reason, bytes).await,
            }
        }
    }

    /// Part `part` of `meeting` ended: logged in the meeting if it is open here, else
    /// directly.
    pub(super) async fn recording_stopped(
        &self,
        meeting: MeetingId,
        part: u32,
        reason: RecordingStop,
        bytes: u64,
    ) {
        let now = now_millis();
        let pending = {
            let mut state = self.lock();
            let stopped_itself =
                !matches!(reason, RecordingStop::Chair | RecordingStop::MeetingEnded);
            if stopped_itself {
                // The thread stopped by itself (the disk): the taps go.
                self.untap(&mut state.taps, meeting);
            }
            match state.meetings.get_mut(&meeting) {
                Some(live) => {
                    live.recording_stopped(now, part, reason, bytes);
                    self.carry(&mut state, meeting)
                }
                None => vec![Box::pin(self.recorder.append(
                    meeting,
                    now,
                    EventKind::RecordingStopped {
                        part,
                        reason,
                        bytes,
                    },
                )) as super::carry::PendingEvent],
            }
        };
        if let Err(e) = super::carry::recorded(pending).await {
            tracing::error!("the end of a recording was not logged: {e}");
        }
    }

    /// `meeting` is no longer run here (another hub took it over): its recording stops.
    pub(super) fn drop_recording(&self, taps: &mut Taps, meeting: MeetingId) {
        self.untap(taps, meeting);
        if let Some(recordings) = &self.recordings {
            recordings.send(Command::Stop {
                meeting,
                reason: RecordingStop::HubShutdown,
            });
        }
    }

    /// The hub shuts down: every recording is closed and its end logged.
    pub(super) async fn stop_recordings(&self) {
        let Some(recordings) = &self.recordings else {
            return;
        };
        let recordings = recordings.clone();
        let reports = tokio::task::spawn_blocking(move || {
            recordings.stop_all(std::time::Duration::from_secs(5))
        })
        .await
        .unwrap_or_default();
        for report in reports {
            if let Report::Stopped {
                meeting,
                part,
                reason,
                bytes,
                ..
            } = report
            {
                let logged = self
                    .recorder
                    .append(
                        meeting,
                        now_millis(),
                        EventKind::RecordingStopped {
                            part,
                            reason,
                            bytes,
                        },
                    )
                    .await;
                if let Err(e) = logged {
                    tracing::error!("the end of a recording was not logged: {e}");
                }
            }
        }
    }
}
