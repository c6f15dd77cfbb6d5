//! The media a client sends: VP8- and Opus-shaped frames from a fake camera and microphone,
//! the codecs it offers, its local tracks, and the keyframe test for what it receives.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_RTX, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::MediaEngine;
use webrtc::rtp_transceiver::RtpSender;

use super::state::{SendStats, Shared, lock};

/// A source of frames to send on a local track.
#[derive(Debug)]
pub struct Source {
    /// `"video"` or `"audio"`, for notes and errors.
    pub kind: &'static str,
    /// The codec the hub's answer must have negotiated for this track.
    pub mime: &'static str,
    /// One frame each period.
    pub period: Duration,
    /// The frame of a given index.
    pub frame: fn(u64) -> Vec<u8>,
    /// The counter of frames sent.
    pub counter: fn(&SendStats) -> &AtomicU64,
}

/// ~30 fps VP8-shaped frames, a keyframe each second so that a late subscriber can start.
pub const CAMERA: Source = Source {
    kind: "video",
    mime: MIME_TYPE_VP8,
    period: Duration::from_millis(33),
    frame: |index| fake_vp8_frame(index, index.is_multiple_of(30)),
    counter: |sent| &sent.video_frames,
};

/// A real camera's VP8 (320×180, 30 fps, a keyframe each second): the frames of
/// `fixtures/camera-vp8.ivf` (libvpx, two seconds), looped. A decoder decodes them.
#[allow(dead_code)] // not every test binary sends it
pub const DECODABLE_CAMERA: Source = Source {
    kind: "video",
    mime: MIME_TYPE_VP8,
    period: Duration::from_millis(33),
    frame: |index| looped(ivf_frames(), index),
    counter: |sent| &sent.video_frames,
};

/// Frame `index` of a fixture's `frames`, played in a loop.
fn looped(frames: &[Vec<u8>], index: u64) -> Vec<u8> {
    frames
        .get((index as usize) % frames.len().max(1))
        .cloned()
        .unwrap_or_default()
}

/// The frames of the VP8 fixture: an IVF file (a 32-byte header, then each frame after a
/// 12-byte header starting with its length).
fn ivf_frames() -> &'static [Vec<u8>] {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        const STREAM: &[u8] = include_bytes!("../../../fixtures/camera-vp8.ivf");
        let mut frames = Vec::new();
        let mut at = 32;
        while let Some(header) = STREAM.get(at..at + 12) {
            let len = header
                .first_chunk::<4>()
                .map_or(0, |b| u32::from_le_bytes(*b)) as usize;
            match STREAM.get(at + 12..at + 12 + len) {
                Some(frame) => frames.push(frame.to_vec()),
                None => break,
            }
            at += 12 + len;
        }
        frames
    })
}

/// A studio encoder's H.264 (constrained baseline, 320×240, 15 fps, an IDR picture with its
/// SPS and PPS each second): the frames of `fixtures/studio-h264.264`, looped. A browser
/// decodes them.
pub const ENCODER: Source = Source {
    kind: "video",
    mime: MIME_TYPE_H264,
    period: Duration::from_millis(66),
    frame: |index| looped(encoder_frames(), index),
    counter: |sent| &sent.video_frames,
};

/// The access units of the H.264 fixture (Annex B, each starting with an access unit
/// delimiter, as `ffmpeg -bsf:v h264_metadata=aud=insert` writes them).
fn encoder_frames() -> &'static [Vec<u8>] {
    static FRAMES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    FRAMES.get_or_init(|| {
        const STREAM: &[u8] = include_bytes!("../../../fixtures/studio-h264.264");
        const AUD: &[u8] = &[0, 0, 0, 1, 9];
        let starts: Vec<usize> = (0..STREAM.len().saturating_sub(AUD.len()))
            .filter(|&i| STREAM.get(i..i + AUD.len()) == Some(AUD))
            .chain([STREAM.len()])
            .collect();
        starts
            .windows(2)
            .filter_map(|w| match w {
                [start, end] => STREAM.get(*start..*end).map(<[u8]>::to_vec),
                _ => None,
            })
            .collect()
    })
}

/// 20 ms Opus-shaped frames.
pub const MICROPHONE: Source = Source {
    kind: "audio",
    mime: MIME_TYPE_OPUS,
    period: Duration::from_millis(20),
    frame: |index| {
        // An Opus TOC byte (config 31: CELT FB 20 ms, mono, one frame), then noise.
        let mut data = vec![0xf8u8];
        data.extend((0..79u64).map(|n| (n * 7 + index) as u8));
        data
    },
    counter: |sent| &sent.audio_frames,
};

/// Starts sending `source`'s frames on `track` until the task is aborted, counting them (and
/// write errors) in `shared`.
pub async fn start_sending(
    shared: Arc<Shared>,
    track: &Arc<TrackLocalStaticSample>,
    sender: &Arc<dyn RtpSender>,
    source: &'static Source,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let (ssrc, pt) = sender_ssrc_pt(track, sender, source.mime).await?;
    shared.note(format!("sending {}: ssrc={ssrc} pt={pt}", source.kind));
    let track = Arc::clone(track);
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(source.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut index = 0u64;
        loop {
            tick.tick().await;
            let sample = Sample {
                data: (source.frame)(index).into(),
                duration: source.period,
                ..Sample::new(Instant::now())
            };
            match track.sample_writer(ssrc, pt).write_sample(&sample).await {
                Ok(()) => {
                    (source.counter)(&shared.sent).fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    shared.sent.write_errors.fetch_add(1, Ordering::Relaxed);
                    *lock(&shared.sent.last_write_error) = Some(format!("{}: {e}", source.kind));
                }
            }
            index += 1;
        }
    }))
}

/// True when a VP8 RTP payload (RFC 7741) starts a keyframe: S=1, partition 0, and the VP8
/// frame tag's bit 0 (P, inverse keyframe flag) clear.
pub fn vp8_packet_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&b0) = payload.first() else {
        return false;
    };
    let extended = b0 & 0x80 != 0;
    let start = b0 & 0x10 != 0;
    let partition = b0 & 0x07;
    if !start || partition != 0 {
        return false;
    }
    let mut i = 1usize;
    if extended {
        let Some(&x) = payload.get(1) else {
            return false;
        };
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits (M bit).
            let Some(&p) = payload.get(i) else {
                return false;
            };
            i += if p & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID/Y/KEYIDX
        }
    }
    payload.get(i).is_some_and(|tag| tag & 0x01 == 0)
}

/// A VP8-shaped frame: a keyframe header (frame tag + start code + 640x360) or an interframe tag,
/// then filler. Not decodable, but any depacketizer or keyframe detector takes it for VP8.
pub fn fake_vp8_frame(index: u64, keyframe: bool) -> Vec<u8> {
    let mut frame = if keyframe {
        let mut f = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01];
        f.resize(3000, 0);
        f
    } else {
        let mut f = vec![0x11, 0x02, 0x00];
        f.resize(700, 0);
        f
    };
    // Vary the filler so packets are not all identical.
    for (n, byte) in frame.iter_mut().enumerate().skip(10) {
        *byte = (n as u64).wrapping_add(index) as u8;
    }
    frame
}

/// The codecs this client offers: Opus, VP8 with the feedback Chromium offers, and VP8's RTX;
/// then H.264 (with its RTX), which it receives from a studio encoder.
pub fn media_engine() -> Result<MediaEngine, String> {
    let mut me = MediaEngine::default();
    let video_feedback = video_feedback_of_chromium();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: PT_OPUS,
        },
        RtpCodecKind::Audio,
    )
    .map_err(|e| format!("register opus: {e}"))?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                rtcp_feedback: video_feedback.clone(),
                ..vp8_codec()
            },
            payload_type: PT_VP8,
        },
        RtpCodecKind::Video,
    )
    .map_err(|e| format!("register vp8: {e}"))?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_RTX.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: format!("apt={PT_VP8}"),
                rtcp_feedback: vec![],
            },
            payload_type: PT_VP8_RTX,
        },
        RtpCodecKind::Video,
    )
    .map_err(|e| format!("register rtx: {e}"))?;
    register_h264(&mut me, video_feedback)?;
    Ok(me)
}

/// The codecs a studio encoder offers over WHIP, as OBS does: Opus, and H.264 constrained
/// baseline in packetization mode 1 with its RTX.
pub fn encoder_media_engine() -> Result<MediaEngine, String> {
    let mut me = MediaEngine::default();
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: PT_OPUS,
        },
        RtpCodecKind::Audio,
    )
    .map_err(|e| format!("register opus: {e}"))?;
    register_h264(&mut me, video_feedback_of_chromium())?;
    Ok(me)
}

fn video_feedback_of_chromium() -> Vec<RTCPFeedback> {
    ["goog-remb:", "ccm:fir", "nack:", "nack:pli"]
        .iter()
        .map(|s| {
            let (typ, parameter) = s.split_once(':').unwrap_or((s, ""));
            RTCPFeedback {
                typ: typ.to_string(),
                parameter: parameter.to_string(),
            }
        })
        .collect()
}

/// H.264 constrained baseline in packetization mode 1, and its RTX: what a site receives from
/// a studio encoder.
fn register_h264(me: &mut MediaEngine, feedback: Vec<RTCPFeedback>) -> Result<(), String> {
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                rtcp_feedback: feedback,
                ..h264_codec()
            },
            payload_type: PT_H264,
        },
        RtpCodecKind::Video,
    )
    .map_err(|e| format!("register h264: {e}"))?;
    me.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_RTX.to_owned(),
                clock_rate: 90000,
                channels: 0,
                sdp_fmtp_line: format!("apt={PT_H264}"),
                rtcp_feedback: vec![],
            },
            payload_type: PT_H264_RTX,
        },
        RtpCodecKind::Video,
    )
    .map_err(|e| format!("register h264 rtx: {e}"))
}

pub fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
            .to_owned(),
        rtcp_feedback: vec![],
    }
}

pub fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

pub fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// A local track of `kind` in the stream `stream_id`, with a random SSRC.
pub fn local_track(
    stream_id: &str,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
) -> Result<Arc<TrackLocalStaticSample>, String> {
    let ssrc = rand_u32();
    let kind_name = if kind == RtpCodecKind::Video {
        "video"
    } else {
        "audio"
    };
    let track = MediaStreamTrack::new(
        stream_id.to_string(),
        format!("{stream_id}-{kind_name}"),
        format!("{kind_name} of {stream_id}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    TrackLocalStaticSample::new(Instant::now(), track)
        .map(Arc::new)
        .map_err(|e| format!("TrackLocalStaticSample::new({kind_name}): {e}"))
}

/// Payload types this client offers (the same numbers Chromium uses for these codecs).
const PT_OPUS: u8 = 111;
pub(super) const PT_VP8: u8 = 96;
const PT_VP8_RTX: u8 = 97;
pub(super) const PT_H264: u8 = 108;
const PT_H264_RTX: u8 = 109;

/// The SSRC of a local track and the payload type the hub's answer negotiated for `mime`.
async fn sender_ssrc_pt(
    track: &TrackLocalStaticSample,
    sender: &Arc<dyn RtpSender>,
    mime: &str,
) -> Result<(u32, u8), String> {
    let ssrc = *track.ssrcs().await.first().ok_or("track has no SSRC")?;
    let params = sender
        .get_parameters()
        .await
        .map_err(|e| format!("get_parameters: {e}"))?;
    let pt = params
        .rtp_parameters
        .codecs
        .iter()
        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
        .map(|c| c.payload_type)
        .ok_or_else(|| {
            format!(
                "{mime} not negotiated; sender codecs: {:?}",
                params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .map(|c| (c.payload_type, c.rtp_codec.mime_type.clone()))
                    .collect::<Vec<_>>()
            )
        })?;
    Ok((ssrc, pt))
}

/// A random-enough u32 without a `rand` dependency.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    (h.finish() as u32) | 1
}
