//! Recording of the programme: what every site receives (the studio, or the site holding the
//! floor while it holds it) in one file per part of a meeting, without transcoding, the
//! programme's sound and the floor holder's as separate tracks: WebM when the programme's
//! picture is VP8, Matroska when it is H.264 (a studio's encoder), with a VP8 track beside it
//! for the pictures of sites' browsers.
//!
//! The meeting core decides when a part starts and stops and which producers it records
//! ([`crate::meeting::RecordingSources`]); the hub taps those producers on the media workers
//! ([`diemcau_sfu::Worker::set_tapped`]) and hands their packets here. One thread writes
//! every meeting's file: it puts packets back in order and joins frames ([`track`]), keeps
//! frames of all tracks in time order for a short while, and writes them through libwebm
//! ([`file`]). What happens to a part comes back to the hub as [`Report`]s.
//!
//! A file's tracks are chosen from the programme's first picture. A picture that comes later in
//! a codec the file has no track for (a studio going over from its browser's VP8 to an
//! encoder's H.264) ends the part with [`RecordingStop::PictureChanged`]; the meeting starts
//! the next one at once, made for it.
//!
//! Files are `<data-dir>/recordings/meeting-<id>-<part>.mkv` (WebM inside when the picture is
//! VP8: any WebM player reads it).

pub mod file;
pub mod h264;
pub mod track;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use diemcau_sfu::{MediaPacket, ProducerId, RouterId};
use diemcau_signaling::MeetingId;
use tokio::sync::mpsc;

use crate::attendance::RecordingStop;
use crate::meeting::RecordingSources as Sources;
use diemcau_sfu::str0m::format::Codec;
use file::{Layout, RecordingFile, TrackSlot, WriteFailure};
use track::{AudioTrack, Frame, VideoTrack};

/// How long frames wait before they are written: enough for a repaired packet to complete its
/// frame, so that every track's frames go into the file in time order.
const HOLD: Duration = Duration::from_millis(700);
/// A file waits this long for the picture's first keyframe (for its size) before it is made
/// with [`DEFAULT_SIZE`].
const SIZE_WAIT: Duration = Duration::from_secs(3);
const DEFAULT_SIZE: (u32, u32) = (1280, 720);
/// How often the thread looks at its parts when no packet comes.
const TICK: Duration = Duration::from_millis(100);
/// How long the thread lets tapped packets gather after one wakes it: about 8 packets of a
/// 2.5 Mbit/s programme per wake-up instead of one.
const GATHER: Duration = Duration::from_millis(25);
/// Packets waiting for the thread at most; beyond, packets are dropped (and counted).
pub const TAP_CAPACITY: usize = 65_536;

/// An instruction for the recording thread.
#[derive(Debug)]
pub enum Command {
    Start {
        meeting: MeetingId,
        router: RouterId,
        part: u32,
        path: PathBuf,
        sources: Sources,
    },
    Sources {
        meeting: MeetingId,
        sources: Sources,
    },
    Stop {
        meeting: MeetingId,
        reason: RecordingStop,
    },
    /// Every part stops (the hub shuts down); `done` gets their ends once the files are
    /// closed.
    StopAll {
        done: std::sync::mpsc::Sender<Vec<Report>>,
    },
}

/// What the thread tells the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// A part ended: its file holds `bytes` (0 and no file when nothing was recorded).
    Stopped {
        meeting: MeetingId,
        part: u32,
        reason: RecordingStop,
        bytes: u64,
        message: Option<String>,
    },
    /// A keyframe of this producer's layer is needed to start or go on.
    Keyframe {
        router: RouterId,
        producer: ProducerId,
        layer: u8,
    },
}

/// The hub's handle on the recording thread.
#[derive(Debug, Clone)]
pub struct Recordings {
    dir: PathBuf,
    min_free_bytes: u64,
    commands: Sender<Command>,
}

impl Recordings {
    /// Starts the thread: it reads tapped packets from `taps` and reports on `reports`.
    /// Recordings go in `dir` (made when missing), each refused while its disk has less than
    /// `min_free_bytes` free.
    pub fn start(
        dir: PathBuf,
        min_free_bytes: u64,
        taps: Receiver<Arc<MediaPacket>>,
        reports: mpsc::UnboundedSender<Report>,
    ) -> std::io::Result<Recordings> {
        std::fs::create_dir_all(&dir)?;
        let (commands, inbox) = crossbeam_channel::unbounded();
        crate::essential::spawn("recording", move || {
            Thread {
                parts: HashMap::new(),
                reports,
            }
            .run(&inbox, &taps)
        })?;
        Ok(Recordings {
            dir,
            min_free_bytes,
            commands,
        })
    }

    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            tracing::error!("the recording thread is gone");
        }
    }

    /// Where part `part` of `meeting` is written.
    pub fn path(&self, meeting: MeetingId, part: u32) -> PathBuf {
        path_in(&self.dir, meeting, part)
    }

    /// The file name of part `part` of `meeting` (as the attendance log names it).
    pub fn file_name(meeting: MeetingId, part: u32) -> String {
        format!("meeting-{}-{part}.mkv", meeting.0)
    }

    /// `Err(free bytes)` when the recordings' disk has less free space than the floor.
    pub fn check_space(&self) -> Result<(), u64> {
        match free_bytes(&self.dir) {
            Some(free) if free < self.min_free_bytes => Err(free),
            _ => Ok(()),
        }
    }

    pub fn min_free_bytes(&self) -> u64 {
        self.min_free_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes every open file, waiting at most `wait`, and returns how each part ended.
    pub fn stop_all(&self, wait: Duration) -> Vec<Report> {
        let (done, closed) = std::sync::mpsc::channel();
        self.send(Command::StopAll { done });
        closed.recv_timeout(wait).unwrap_or_default()
    }
}

/// Where part `part` of `meeting` is written in `dir`.
pub fn path_in(dir: &Path, meeting: MeetingId, part: u32) -> PathBuf {
    dir.join(Recordings::file_name(meeting, part))
}

/// The file of part `part` of `meeting` in `dir`, if there is one: written by this version
/// (`.mkv`), or by one before it, which named every file `.webm`.
pub fn existing_in(dir: &Path, meeting: MeetingId, part: u32) -> Option<PathBuf> {
    let path = path_in(dir, meeting, part);
    let earlier = path.with_extension("webm");
    [path, earlier].into_iter().find(|p| p.is_file())
}

/// The media type of a recording, from its EBML header: `video/webm` when its DocType is WebM
/// (a VP8 picture), `video/x-matroska` otherwise (an H.264 one).
pub fn media_type(header: &[u8]) -> &'static str {
    if header.windows(4).any(|w| w == b"webm") {
        "video/webm"
    } else {
        "video/x-matroska"
    }
}

/// Free bytes for an unprivileged writer on `dir`'s file system.
#[allow(clippy::useless_conversion)] // the block counts are not `u64` on every platform
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

/// A frame waiting for its turn in the file.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    at: Duration,
    /// Arrival order, for frames of the same time.
    order: u64,
    slot: TrackSlot,
    keyframe: bool,
    data: Vec<u8>,
}

/// One meeting's part being recorded.
#[derive(Debug)]
struct Part {
    meeting: MeetingId,
    router: RouterId,
    part: u32,
    path: PathBuf,
    start: Instant,
    file: Option<RecordingFile>,
    /// The picture's size, from its first keyframe.
    size: Option<(u32, u32)>,
    /// The parameter sets of an H.264 picture, from its first keyframe that has them.
    h264: Option<h264::Parameters>,
    /// A picture came in a codec the file has no track for: the part ends.
    picture_changed: bool,
    video: VideoTrack,
    programme: AudioTrack,
    floor: AudioTrack,
    queue: BinaryHeap<Reverse<Queued>>,
    order: u64,
}

impl Part {
    fn follow(&mut self, now: Instant, sources: &Sources) {
        self.video.follow(now, sources.video);
        self.programme.follow(sources.programme_audio);
        self.floor.follow(sources.floor_audio);
    }

    /// Queues an audio frame for `slot`, or a picture.
    fn queue(&mut self, slot: Option<TrackSlot>, frame: Frame) {
        let slot = match (slot, frame.codec) {
            (Some(slot), _) => slot,
            (None, Codec::H264) => {
                if self.h264.is_none() {
                    // Its track cannot be made without its parameter sets.
                    self.h264 = frame
                        .keyframe
                        .then(|| h264::parameters(&frame.data))
                        .flatten();
                    let Some(parameters) = &self.h264 else {
                        return;
                    };
                    self.size = self.size.or(parameters.size).or(Some(DEFAULT_SIZE));
                }
                TrackSlot::H264Picture
            }
            (None, _) => {
                if self.size.is_none() && frame.keyframe {
                    self.size = track::vp8_size(&frame.data);
                }
                TrackSlot::Vp8Picture
            }
        };
        self.order += 1;
        self.queue.push(Reverse(Queued {
            at: frame.at,
            order: self.order,
            slot,
            keyframe: frame.keyframe,
            data: frame.data,
        }));
    }

    /// Writes the frames due at `now` (all with `all`) and flushes on time.
    fn write_due(&mut self, now: Instant, all: bool) -> Result<(), WriteFailure> {
        let elapsed = now.saturating_duration_since(self.start);
        if self.file.is_none() {
            let waited = elapsed >= SIZE_WAIT;
            if self.queue.is_empty() || (self.size.is_none() && !waited && !all) {
                return Ok(());
            }
            let (width, height) = self.size.unwrap_or(DEFAULT_SIZE);
            let layout = match &self.h264 {
                Some(parameters) => Layout::H264 {
                    avcc: parameters.avcc.clone(),
                },
                None => Layout::Vp8,
            };
            let file = RecordingFile::create(&self.path, width, height, layout).map_err(|e| {
                let failure = file::failure_of(&e);
                WriteFailure {
                    message: format!("{}: {}", self.path.display(), failure.message),
                    ..failure
                }
            })?;
            tracing::info!(meeting = %self.meeting, part = self.part, width, height, "recording file created");
            self.file = Some(file);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let due = elapsed.saturating_sub(HOLD);
        while let Some(Reverse(next)) = self.queue.peek() {
            if !all && next.at > due {
                break;
            }
            let Some(Reverse(frame)) = self.queue.pop() else {
                break;
            };
            if !file.holds(frame.slot) {
                self.picture_changed = true;
                continue;
            }
            file.write(frame.slot, frame.at, &frame.data, frame.keyframe)?;
        }
        file.flush_if_due(now, all)
    }
}

struct Thread {
    parts: HashMap<MeetingId, Part>,
    reports: mpsc::UnboundedSender<Report>,
}

impl Thread {
    fn run(mut self, inbox: &Receiver<Command>, taps: &Receiver<Arc<MediaPacket>>) {
        let mut next_tick = Instant::now() + TICK;
        loop {
            crossbeam_channel::select! {
                recv(inbox) -> command => match command {
                    Ok(command) => self.handle(command),
                    Err(_) => break,
                },
                recv(taps) -> packet => match packet {
                    Ok(packet) => {
                        self.packet(packet);
                        // Let the packets that follow gather instead of waking the thread
                        // (and making the media worker pay a wake-up) one by one: frames keep
                        // their arrival times, and wait HOLD before they are written anyway.
                        std::thread::sleep(GATHER);
                        for packet in taps.try_iter() {
                            self.packet(packet);
                        }
                    }
                    Err(_) => break,
                },
                default(next_tick.saturating_duration_since(Instant::now())) => {}
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                self.tick(now);
            }
        }
        self.stop_all(RecordingStop::HubShutdown);
    }

    fn handle(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Start {
                meeting,
                router,
                part,
                path,
                sources,
            } => {
                if let Some(previous) = self.parts.remove(&meeting) {
                    self.finish(previous, RecordingStop::Chair, None);
                }
                let mut recording = Part {
                    meeting,
                    router,
                    part,
                    path,
                    start: now,
                    file: None,
                    size: None,
                    h264: None,
                    picture_changed: false,
                    video: VideoTrack::default(),
                    programme: AudioTrack::default(),
                    floor: AudioTrack::default(),
                    queue: BinaryHeap::new(),
                    order: 0,
                };
                recording.follow(now, &sources);
                self.parts.insert(meeting, recording);
                self.send_requests(meeting);
            }
            Command::Sources { meeting, sources } => {
                if let Some(part) = self.parts.get_mut(&meeting) {
                    part.follow(now, &sources);
                }
                self.send_requests(meeting);
            }
            Command::Stop { meeting, reason } => {
                if let Some(part) = self.parts.remove(&meeting) {
                    self.finish(part, reason, None);
                }
            }
            Command::StopAll { done } => {
                let _ = done.send(self.stop_all(RecordingStop::HubShutdown));
            }
        }
    }

    fn packet(&mut self, packet: Arc<MediaPacket>) {
        let now = Instant::now();
        let Some(part) = self.parts.values_mut().find(|p| p.router == packet.router) else {
            return;
        };
        let meeting = part.meeting;
        let start = part.start;
        if let Some(frame) = part.programme.push(start, &packet) {
            part.queue(Some(TrackSlot::ProgrammeAudio), frame);
        }
        if let Some(frame) = part.floor.push(start, &packet) {
            part.queue(Some(TrackSlot::FloorAudio), frame);
        }
        if part.video.source() == Some(packet.producer) {
            for frame in part.video.push(now, start, packet) {
                part.queue(None, frame);
            }
        }
        self.send_requests(meeting);
    }

    fn tick(&mut self, now: Instant) {
        let meetings: Vec<MeetingId> = self.parts.keys().copied().collect();
        for meeting in meetings {
            let Some(part) = self.parts.get_mut(&meeting) else {
                continue;
            };
            let start = part.start;
            for frame in part.video.tick(now, start) {
                part.queue(None, frame);
            }
            if let Err(failure) = part.write_due(now, false) {
                if let Some(part) = self.parts.remove(&meeting) {
                    self.finish(part, failure.reason(), Some(failure.message));
                }
                continue;
            }
            if part.picture_changed {
                tracing::info!(meeting = %meeting, part = part.part, "the programme's picture changed codec: the next part follows");
                if let Some(part) = self.parts.remove(&meeting) {
                    self.finish(part, RecordingStop::PictureChanged, None);
                }
                continue;
            }
            self.send_requests(meeting);
        }
    }

    fn send_requests(&mut self, meeting: MeetingId) {
        let Some(part) = self.parts.get_mut(&meeting) else {
            return;
        };
        for wanted in part.video.take_requests() {
            let _ = self.reports.send(Report::Keyframe {
                router: part.router,
                producer: wanted.producer,
                layer: wanted.layer,
            });
        }
    }

    /// Writes what is left, closes the file and reports the part's end.
    fn finish(&mut self, part: Part, reason: RecordingStop, failure: Option<String>) {
        let report = close(part, reason, failure);
        let _ = self.reports.send(report);
    }

    fn stop_all(&mut self, reason: RecordingStop) -> Vec<Report> {
        self.parts
            .drain()
            .map(|(_, part)| close(part, reason, None))
            .collect()
    }
}

/// Writes what is left of `part`, closes its file and says how it ended.
fn close(mut part: Part, reason: RecordingStop, failure: Option<String>) -> Report {
    {
        let mut message = failure;
        let mut reason = reason;
        if message.is_none()
            && let Err(e) = part.write_due(Instant::now(), true)
        {
            reason = e.reason();
            message = Some(e.message);
        }
        let bytes = match part.file.take() {
            Some(file) if message.is_none() => match file.finish() {
                Ok(bytes) => bytes,
                Err(e) => {
                    message = Some(e.message);
                    file_size(&part.path)
                }
            },
            Some(_) => file_size(&part.path),
            None => 0,
        };
        if part.video.other_codec_frames > 0 {
            tracing::warn!(meeting = %part.meeting, frames = part.video.other_codec_frames, "video frames of a codec other than VP8 and H.264 were not recorded");
        }
        match &message {
            Some(m) => {
                tracing::error!(meeting = %part.meeting, part = part.part, ?reason, bytes, "recording stopped: {m}")
            }
            None => {
                tracing::info!(meeting = %part.meeting, part = part.part, ?reason, bytes, "recording stopped")
            }
        }
        Report::Stopped {
            meeting: part.meeting,
            part: part.part,
            reason,
            bytes,
            message,
        }
    }
}

/// The size of the file at `path` (0 when it cannot be read).
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}
