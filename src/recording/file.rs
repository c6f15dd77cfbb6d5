//! One recording file, written by libwebm (the `webm` crate): WebM with one VP8 video track and
//! two Opus tracks (the programme's sound, the floor holder's) when the programme's picture is
//! VP8; Matroska with an H.264 track first and a VP8 one beside it (for a floor holder's browser)
//! when the picture is H.264 (a studio's encoder). libwebm writes each cluster as its
//! frames come, with its size marked unknown until the next cluster starts (then it seeks back
//! to write it), and the segment's size, duration and index (cues, for seeking) when the file
//! is finished. The bytes reach the file at least every [`FLUSH_EVERY`], so a file cut by a
//! crash is a valid WebM of unknown size and plays up to its last second or so.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use webm::mux::{AudioCodecId, SegmentBuilder, SegmentMode, VideoCodecId, Writer};

/// Longest time written bytes wait in memory.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// How often the file's data is forced to the disk.
const SYNC_EVERY: Duration = Duration::from_secs(5);
/// Room kept for the bytes waiting in memory (about a second of a programme).
const BUFFER: usize = 256 * 1024;

/// What a frame is, and so which track of the file takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TrackSlot {
    /// The picture, in VP8.
    Vp8Picture,
    /// The picture, in H.264.
    H264Picture,
    /// The programme's sound: the studio, or its encoder.
    ProgrammeAudio,
    /// The sound of the site holding the floor.
    FloorAudio,
}

/// The tracks a file is made with, chosen from the programme's first picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// WebM: 1 VP8, 2 the programme's Opus, 3 the floor holder's Opus.
    Vp8,
    /// Matroska: 1 H.264 (its `avcC` record given), 2 and 3 Opus as above, 4 VP8 (the picture
    /// of a site's browser holding the floor).
    H264 { avcc: Vec<u8> },
}

impl Layout {
    /// The track number of `slot`, if the file has a track for it.
    fn number(&self, slot: TrackSlot) -> Option<u64> {
        let h264 = matches!(self, Layout::H264 { .. });
        match slot {
            TrackSlot::Vp8Picture if h264 => Some(4),
            TrackSlot::Vp8Picture => Some(1),
            TrackSlot::H264Picture => h264.then_some(1),
            TrackSlot::ProgrammeAudio => Some(2),
            TrackSlot::FloorAudio => Some(3),
        }
    }
}

/// Why writing stopped.
#[derive(Debug)]
pub struct WriteFailure {
    /// Out of space (`ENOSPC`, a quota, or a file size limit).
    pub disk_full: bool,
    pub message: String,
}

impl WriteFailure {
    /// How the part ends for it.
    pub fn reason(&self) -> crate::attendance::RecordingStop {
        if self.disk_full {
            crate::attendance::RecordingStop::DiskFull
        } else {
            crate::attendance::RecordingStop::WriteError
        }
    }
}

/// The file's bytes on their way to disk: shared between libwebm's writer and the recording,
/// which flushes them on time and reads how much was written and the first error.
#[derive(Debug, Clone)]
struct Sink(Arc<Mutex<SinkState>>);

#[derive(Debug)]
struct SinkState {
    file: File,
    /// Bytes to write at `position`.
    buffer: Vec<u8>,
    /// Where the file's cursor is.
    position: u64,
    /// The file's length.
    written: u64,
    flushed_at: Instant,
    synced_at: Instant,
    error: Option<io::Error>,
}

impl Sink {
    fn lock(&self) -> MutexGuard<'_, SinkState> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl SinkState {
    fn flush(&mut self, now: Instant) -> io::Result<()> {
        if let Some(e) = &self.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        if !self.buffer.is_empty() {
            if let Err(e) = self.file.write_all(&self.buffer) {
                let copy = io::Error::new(e.kind(), e.to_string());
                // What was appended in part goes: the file ends with the last whole frame.
                if self.position >= self.written {
                    let _ = self.file.set_len(self.position);
                }
                self.error = Some(e);
                return Err(copy);
            }
            self.position += self.buffer.len() as u64;
            self.written = self.written.max(self.position);
            self.buffer.clear();
        }
        self.flushed_at = now;
        if now.saturating_duration_since(self.synced_at) >= SYNC_EVERY {
            self.synced_at = now;
            // Not fatal: the bytes are in the page cache, safe from a crash of the hub.
            if let Err(e) = self.file.sync_data() {
                tracing::warn!("recording not synced to disk: {e}");
            }
        }
        Ok(())
    }
}

impl Seek for Sink {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let mut state = self.lock();
        if to == SeekFrom::Current(0) {
            return Ok(state.position + state.buffer.len() as u64);
        }
        state.flush(Instant::now())?;
        let position = state.file.seek(to)?;
        state.position = position;
        Ok(position)
    }
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut state = self.lock();
        if let Some(e) = &state.error {
            return Err(io::Error::new(e.kind(), e.to_string()));
        }
        // Written out by the recording's flushes, between frames, so that the file always ends
        // with a whole frame.
        state.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.lock().flush(Instant::now())
    }
}

/// An open recording file.
pub struct RecordingFile {
    segment: webm::mux::Segment<Sink>,
    sink: Sink,
    layout: Layout,
    /// The time of the last frame written: libwebm wants them in order across tracks.
    last: Duration,
}

impl std::fmt::Debug for RecordingFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingFile")
            .field("bytes", &self.bytes())
            .field("last", &self.last)
            .finish()
    }
}

/// `OpusHead` (RFC 7845 5.1) for 48 kHz stereo: Matroska's `CodecPrivate` of an Opus track.
fn opus_head() -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1); // version
    head.push(2); // channels
    head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip: the stream starts mid-way
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes()); // output gain
    head.push(0); // mapping family 0: mono or stereo
    head
}

impl RecordingFile {
    /// Creates `path` (it must not exist) with the tracks of `layout`, the picture's
    /// `width`×`height`.
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        layout: Layout,
    ) -> io::Result<RecordingFile> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let now = Instant::now();
        let sink = Sink(Arc::new(Mutex::new(SinkState {
            file,
            buffer: Vec::with_capacity(BUFFER),
            position: 0,
            written: 0,
            flushed_at: now,
            synced_at: now,
            error: None,
        })));
        let muxer = |e: webm::mux::Error| io::Error::other(format!("WebM muxer: {e:?}"));
        let builder = SegmentBuilder::new(Writer::new(sink.clone()))
            .and_then(|b| b.set_mode(SegmentMode::File))
            .and_then(|b| b.set_writing_app("diemcau"))
            .map_err(muxer)?;
        let (width, height) = (width.max(16), height.max(16));
        let mut builder = builder;
        if let Layout::H264 { avcc } = &layout {
            let (next, track) = builder
                .add_video_track(width, height, VideoCodecId::H264, Some(1))
                .map_err(muxer)?;
            builder = next.set_codec_private(track, avcc).map_err(muxer)?;
        }
        let vp8 = layout.number(TrackSlot::Vp8Picture);
        let (next, _) = builder
            .add_video_track(width, height, VideoCodecId::VP8, vp8)
            .map_err(muxer)?;
        builder = next;
        for slot in [TrackSlot::ProgrammeAudio, TrackSlot::FloorAudio] {
            let (next, track) = builder
                .add_audio_track(48_000, 2, AudioCodecId::Opus, layout.number(slot))
                .map_err(muxer)?;
            builder = next.set_codec_private(track, &opus_head()).map_err(muxer)?;
        }
        Ok(RecordingFile {
            segment: builder.build(),
            sink,
            layout,
            last: Duration::ZERO,
        })
    }

    /// Whether the file has a track for `slot`.
    pub fn holds(&self, slot: TrackSlot) -> bool {
        self.layout.number(slot).is_some()
    }

    /// Writes one frame of `slot` at `at` from the start (moved up to the last frame's time
    /// if earlier: the file's frames are in time order).
    pub fn write(
        &mut self,
        slot: TrackSlot,
        at: Duration,
        data: &[u8],
        keyframe: bool,
    ) -> Result<(), WriteFailure> {
        let Some(track) = self.layout.number(slot) else {
            return Err(WriteFailure {
                disk_full: false,
                message: format!("the file has no track for {slot:?}"),
            });
        };
        let at = at.max(self.last);
        let nanos = u64::try_from(at.as_nanos()).unwrap_or(u64::MAX);
        if let Err(e) = self.segment.add_frame(track, data, nanos, keyframe) {
            return Err(self.failure(&format!("{e:?}")));
        }
        self.last = at;
        Ok(())
    }

    /// Writes out what waits in memory when it is due (or `now` is forced).
    pub fn flush_if_due(&mut self, now: Instant, force: bool) -> Result<(), WriteFailure> {
        let mut state = self.sink.lock();
        if !force && now.saturating_duration_since(state.flushed_at) < FLUSH_EVERY {
            return Ok(());
        }
        state.flush(now).map_err(|e| failure_of(&e))
    }

    /// Bytes of the file so far, those still in memory included.
    pub fn bytes(&self) -> u64 {
        let state = self.sink.lock();
        state
            .written
            .max(state.position + state.buffer.len() as u64)
    }

    /// The time of the last frame written.
    pub fn duration(&self) -> Duration {
        self.last
    }

    /// Ends the file cleanly (its last cluster and cues) and returns its size.
    pub fn finish(self) -> Result<u64, WriteFailure> {
        let sink = self.sink.clone();
        let duration_ms = u64::try_from(self.last.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        if self.segment.finalize(Some(duration_ms)).is_err() {
            tracing::warn!("recording not finalized (it still plays, without its index)");
        }
        let mut state = sink.lock();
        state.flush(Instant::now()).map_err(|e| failure_of(&e))?;
        if let Err(e) = state.file.sync_all() {
            tracing::warn!("recording not synced to disk: {e}");
        }
        Ok(state.file.metadata().map_or(state.written, |m| m.len()))
    }

    fn failure(&self, muxer_error: &str) -> WriteFailure {
        match &self.sink.lock().error {
            Some(e) => failure_of(e),
            None => WriteFailure {
                disk_full: false,
                message: format!("the muxer refused a frame: {muxer_error}"),
            },
        }
    }
}

pub(super) fn failure_of(e: &io::Error) -> WriteFailure {
    let disk_full = matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    );
    WriteFailure {
        disk_full,
        message: e.to_string(),
    }
}
