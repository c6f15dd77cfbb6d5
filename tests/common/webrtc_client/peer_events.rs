//! The peer connection's events: state changes go to the watched states, and each remote
//! track gets a task that counts what arrives on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceConnectionState, RTCIceGatheringState, RTCPeerConnectionState,
};

use super::media::vp8_packet_starts_keyframe;
use super::state::{RemoteTrackStats, Shared, Watches, lock};

/// The `PeerConnectionEventHandler`: forwards state to watch channels and starts one reader task
/// per remote track on the test's tokio runtime.
///
/// The trait is declared with `#[async_trait]`; the methods below are its expansion written out
/// by hand, so the tests need no `async-trait` dependency. Each does its work synchronously and
/// returns a ready future, so it never blocks webrtc-rs's driver.
pub struct Handler {
    pub shared: Arc<Shared>,
    pub watches: Arc<Watches>,
    pub runtime: tokio::runtime::Handle,
}

impl PeerConnectionEventHandler for Handler {
    fn on_ice_gathering_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceGatheringState,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.shared.note(format!("ice gathering: {state}"));
        self.watches.gathering.send_replace(state);
        Box::pin(async {})
    }

    fn on_ice_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCIceConnectionState,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.shared.note(format!("ice connection: {state}"));
        self.watches.ice_state.send_replace(state);
        Box::pin(async {})
    }

    fn on_connection_state_change<'life0, 'async_trait>(
        &'life0 self,
        state: RTCPeerConnectionState,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.shared.note(format!("peer connection: {state}"));
        self.watches.pc_state.send_replace(state);
        Box::pin(async {})
    }

    fn on_track<'life0, 'async_trait>(
        &'life0 self,
        track: Arc<dyn TrackRemote>,
    ) -> BoxFut<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let shared = Arc::clone(&self.shared);
        self.runtime.spawn(read_remote_track(shared, track));
        Box::pin(async {})
    }
}

type BoxFut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Reads one remote track until it ends, counting what arrives.
async fn read_remote_track(shared: Arc<Shared>, track: Arc<dyn TrackRemote>) {
    let stream_id = track.stream_id().await.to_string();
    let track_id = track.track_id().await.to_string();
    let kind = track.kind().await;
    let ssrcs = track.ssrcs().await;
    let mut mime = String::new();
    if let Some(ssrc) = ssrcs.first()
        && let Some(codec) = track.codec(*ssrc).await
    {
        mime = codec.mime_type;
    }
    let is_video = kind == RtpCodecKind::Video;
    let stats = Arc::new(RemoteTrackStats {
        stream_id: stream_id.clone(),
        track_id: track_id.clone(),
        kind: if is_video { "video" } else { "audio" }.to_string(),
        mime: Mutex::new(mime.clone()),
        ssrcs: ssrcs.clone(),
        packets: AtomicU64::new(0),
        payload_bytes: AtomicU64::new(0),
        keyframes: AtomicU64::new(0),
        first_payload_type: Mutex::new(None),
        last_payload_type: Mutex::new(None),
        sequence: Mutex::default(),
        ended: AtomicBool::new(false),
        opened_at: shared.started.elapsed(),
        last_packet_at: Mutex::new(Instant::now()),
    });
    shared.note(format!(
        "on_track: kind={kind} stream_id={stream_id:?} track_id={track_id:?} ssrcs={ssrcs:?} mime={mime:?}"
    ));
    lock(&shared.tracks).push(Arc::clone(&stats));

    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let first = stats.packets.fetch_add(1, Ordering::Relaxed) == 0;
                *lock(&stats.last_packet_at) = Instant::now();
                *lock(&stats.last_payload_type) = Some(packet.header.payload_type);
                lock(&stats.sequence).note(packet.header.sequence_number);
                stats
                    .payload_bytes
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                if is_video && vp8_packet_starts_keyframe(&packet.payload) {
                    stats.keyframes.fetch_add(1, Ordering::Relaxed);
                }
                if first {
                    *lock(&stats.first_payload_type) = Some(packet.header.payload_type);
                    if lock(&stats.mime).is_empty()
                        && let Some(codec) = track.codec(packet.header.ssrc).await
                    {
                        *lock(&stats.mime) = codec.mime_type;
                    }
                    shared.note(format!(
                        "first RTP on {kind} track of {stream_id:?}: pt={} ssrc={} {} bytes",
                        packet.header.payload_type,
                        packet.header.ssrc,
                        packet.payload.len()
                    ));
                }
            }
            TrackRemoteEvent::OnEnded => {
                shared.note(format!("{kind} track of {stream_id:?} ended"));
                break;
            }
            _ => {}
        }
    }
    stats.ended.store(true, Ordering::Relaxed);
}
