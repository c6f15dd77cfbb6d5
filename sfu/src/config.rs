//! How a worker is set up, and the str0m configuration every one of its peers starts from.

use std::net::SocketAddr;
use std::time::Duration;

use str0m::bwe::Bitrate;
use str0m::config::DtlsCert;
use str0m::{Rtc, RtcConfig};

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Index of this worker among `workers`: the producer ids it allocates are unique across
    /// all of them.
    pub index: u32,
    pub workers: u32,
    /// Host candidates announced to peers: the address(es) of this worker's UDP socket as the
    /// clients must reach it.
    pub candidates: Vec<SocketAddr>,
    /// Passive TCP host candidates (RFC 6544) announced beside the UDP ones: where clients
    /// whose network passes only TCP connect. ICE ranks them below UDP host candidates, so a
    /// client uses them only when UDP fails.
    pub tcp_candidates: Vec<SocketAddr>,
    /// At most one keyframe request per producer per this interval reaches its publisher.
    pub keyframe_interval: Duration,
    /// Shared DTLS certificate; one is generated when `None`.
    pub dtls_cert: Option<DtlsCert>,
    /// How often each peer's link quality is reported ([`crate::Event::Quality`]); `None`: never.
    pub quality_interval: Option<Duration>,
    /// Bandwidth estimate each peer's link starts from, before feedback corrects it.
    pub initial_bitrate: Bitrate,
}

impl WorkerConfig {
    pub fn new(candidates: Vec<SocketAddr>) -> WorkerConfig {
        WorkerConfig {
            index: 0,
            workers: 1,
            candidates,
            tcp_candidates: Vec::new(),
            keyframe_interval: Duration::from_millis(500),
            dtls_cert: None,
            quality_interval: Some(Duration::from_secs(10)),
            initial_bitrate: Bitrate::mbps(3),
        }
    }
}

/// The str0m configuration of every peer of a worker set up with `config`.
pub(crate) fn rtc_config(config: &WorkerConfig) -> RtcConfig {
    let mut rtc_config = Rtc::builder()
        .set_crypto_provider(crate::seal::provider())
        .set_rtp_mode(true)
        .set_ice_lite(true)
        .clear_codecs()
        // Opus with in-band FEC, and RFC 2198 RED where the client offers it.
        .enable_opus(true, true)
        .enable_vp8(true)
        .set_stats_interval(config.quality_interval)
        .enable_bwe(Some(config.initial_bitrate))
        // Every consumer's stream keeps its recent packets for retransmission: over half a
        // second of 2.5 Mbit/s video, longer on the lower layers (str0m's default of 1,000
        // was most of a site's memory), and a second of audio.
        .set_send_buffer_video(SEND_BUFFER_VIDEO)
        .set_send_buffer_audio(SEND_BUFFER_AUDIO);
    // H.264 for a studio's encoder (WHIP, which OBS and hardware encoders send): constrained
    // baseline and baseline in packetization mode 1, the profiles every browser decodes. After
    // VP8, so that a browser publishing keeps sending VP8.
    add_h264_profiles(rtc_config.codec_config());
    let cert = config.dtls_cert.clone().or_else(|| {
        str0m::crypto::from_feature_flags()
            .dtls_provider
            .generate_certificate()
    });
    if let Some(cert) = cert {
        rtc_config = rtc_config.set_dtls_cert(cert);
    }
    rtc_config
}

/// Adds the H.264 profiles the hub negotiates ([`H264_PROFILES`]) to `codecs`: whatever
/// carries the programme between hubs must take the encoder's H.264 as the sites' sessions do.
pub fn add_h264_profiles(codecs: &mut str0m::format::CodecConfig) {
    for (pt, rtx, profile_level_id) in H264_PROFILES {
        codecs.add_h264(pt.into(), Some(rtx.into()), true, profile_level_id);
    }
}

/// H.264 payload types (with their RTX) and profile-level-ids the hub negotiates: constrained
/// baseline and baseline, level 3.1 (any level is accepted; RFC 6184 levels are negotiable).
pub const H264_PROFILES: [(u8, u8, u32); 2] = [(108, 109, 0x42e01f), (127, 121, 0x42001f)];

/// Packets each consumer stream keeps for NACK repair (and str0m's probing resends): 600 ms
/// of the 2.5 Mbit/s layer, enough for a repair across a 300 ms round trip; 300 cost a site
/// about 90 KiB more.
const SEND_BUFFER_VIDEO: usize = 150;
const SEND_BUFFER_AUDIO: usize = 50;
