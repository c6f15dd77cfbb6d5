//! One worker, one studio and some sites, all connected in memory under a virtual clock: the
//! network of `diemcau_sfu::testkit`, with the meeting logic of the targets: sites consume the
//! studio, the studio consumes every site, and (optionally) every site consumes two producers
//! published on another worker.

use std::time::Duration;

use diemcau_sfu::str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use diemcau_sfu::testkit::{ClientConfig, Net};
use diemcau_sfu::{PeerId, ProducerId, ProducerInfo, Worker};

pub use diemcau_sfu::testkit::{Client, RIDS, STEP};

/// The studio: the first client, publishing audio and video to every site.
pub const STUDIO: PeerId = PeerId(1);
/// The publisher of the other worker's producers.
const REMOTE_PEER: PeerId = PeerId(1000);

/// How to build a [`Meeting`].
#[derive(Debug, Clone, Copy)]
pub struct MeetingConfig {
    pub sites: usize,
    /// Whether the worker is one of two, so that it relays packets and keyframe requests and
    /// its sites consume two producers (audio, video) of the other worker.
    pub remote_producers: bool,
    /// Whether the studio publishes its video in three simulcast layers ([`RIDS`]).
    pub simulcast: bool,
}

/// A worker and its connected clients. States: built (every client connected, every consumer
/// negotiated) → driven by a fuzz input's operations.
#[derive(Debug)]
pub struct Meeting {
    pub net: Net,
    /// Producers of the other worker that the sites consume.
    pub remote_producers: Vec<ProducerInfo>,
    /// Extended sequence number and RTP time of the last packet each client wrote, per
    /// published m-line.
    pub last_written: Vec<(PeerId, Mid, u64, u32)>,
}

impl Meeting {
    /// Builds the meeting and runs it until every client is connected and every consumer is
    /// negotiated. Panics if that does not happen: the harness is broken, not the input.
    pub fn new(config: MeetingConfig) -> Meeting {
        let mut net = Net::with_workers(studio_and_sites, 1, |worker| {
            if config.remote_producers {
                worker.workers = 2;
            }
        });
        // What the fuzzer sends may close peers: the meeting logic goes on without them.
        net.tolerate_refusals = true;
        net.join_client(
            STUDIO,
            ClientConfig {
                simulcast: config.simulcast,
                ..ClientConfig::default()
            },
        );
        for i in 0..config.sites {
            net.join_client(PeerId(2 + i as u64), ClientConfig::default());
        }
        let mut remote_producers = Vec::new();
        if config.remote_producers {
            // Ids of worker 1 of 2 are even; this worker allocates odd ones.
            for (id, kind) in [(2, MediaKind::Audio), (4, MediaKind::Video)] {
                let info = ProducerInfo {
                    id: ProducerId(id),
                    router: net.router,
                    peer: REMOTE_PEER,
                    kind,
                    layers: 1,
                    mid: diemcau_sfu::str0m::media::Mid::from("0"),
                    stream: None,
                };
                for site in sites(&net) {
                    net.add_consumer(site, &info, u8::MAX)
                        .expect("consumer of a remote producer");
                }
                remote_producers.push(info);
            }
        }
        net.pump();
        let mut meeting = Meeting {
            net,
            remote_producers,
            last_written: Vec::new(),
        };
        let expected_recv = |c: &Client| {
            if c.peer == STUDIO {
                2 * config.sites
            } else {
                2 + if config.remote_producers { 2 } else { 0 }
            }
        };
        for _ in 0..400 {
            if meeting
                .net
                .clients
                .iter()
                .all(|c| c.connected && c.recv_mids.len() == expected_recv(c))
            {
                // A little more time for the first RTCP and keyframe requests to settle.
                meeting.net.run(Duration::from_millis(50), |_| {});
                return meeting;
            }
            meeting.net.run(STEP, |_| {});
        }
        panic!("harness: the meeting did not come up");
    }

    /// The meeting's one worker.
    pub fn worker(&mut self) -> &mut Worker {
        self.net.workers.first_mut().expect("one worker")
    }

    pub fn sites(&self) -> Vec<PeerId> {
        sites(&self.net)
    }

    /// Client `client` (modulo their number) asks for a keyframe (FIR when `full`, else PLI)
    /// on the `mid`-th track it receives (modulo their number).
    pub fn request_keyframe(&mut self, client: u8, mid: u8, full: bool) {
        let index = usize::from(client) % self.net.clients.len();
        let c = &mut self.net.clients[index];
        if c.recv_mids.is_empty() {
            return;
        }
        let (_, mid) = c.recv_mids[usize::from(mid) % c.recv_mids.len()];
        let kind = if full {
            KeyframeRequestKind::Fir
        } else {
            KeyframeRequestKind::Pli
        };
        if let Some(stream) = c.rtc.direct_api().stream_rx_by_mid(mid, None) {
            stream.request_keyframe(kind);
        }
    }
}

/// Whether `subscriber` receives what `publisher` publishes.
fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

fn sites(net: &Net) -> Vec<PeerId> {
    net.clients
        .iter()
        .map(|c| c.peer)
        .filter(|p| *p != STUDIO)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use diemcau_sfu::str0m::format::Codec;
    use diemcau_sfu::str0m::rtp::{ExtensionValues, RtpWrite};
    use diemcau_sfu::{MediaPacket, Relay};

    use super::*;

    /// The targets explore nothing unless media really flows: check that it does, both ways in.
    #[test]
    fn studio_media_reaches_the_sites() {
        for simulcast in [false, true] {
            let mut meeting = Meeting::new(MeetingConfig {
                sites: 2,
                remote_producers: false,
                simulcast,
            });
            assert_eq!(
                meeting.net.producers.len(),
                6,
                "audio and video of three peers"
            );
            let studio = &mut meeting.net.clients[0];
            let (_, mid) = studio.send_mids[1];
            let pt = studio
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == Codec::Vp8)
                .map(|p| p.pt())
                .expect("VP8 negotiated");
            let now = meeting.net.now;
            for seq in 1..=10u64 {
                let mut direct = studio.rtc.direct_api();
                let rid = simulcast.then(|| RIDS[0].into());
                let stream = direct.stream_tx_by_mid(mid, rid).expect("video stream");
                // A VP8 keyframe start, then interframes.
                let header = if seq == 1 { 0x9c } else { 0x9d };
                let payload: Arc<[u8]> = Arc::from(vec![0x10, header, 0x01, 0x2a]);
                stream.write_rtp(
                    RtpWrite::new(pt, seq.into(), seq as u32 * 3000, now, payload).marker(true),
                );
            }
            let before = meeting.net.rtp_received();
            meeting.net.run(Duration::from_millis(100), |_| {});
            assert_sites_got_ten(&meeting, &before);
        }
    }

    #[test]
    fn relayed_media_reaches_the_sites() {
        let mut meeting = Meeting::new(MeetingConfig {
            sites: 2,
            remote_producers: true,
            simulcast: true,
        });
        let video = meeting.remote_producers[1].clone();
        let before = meeting.net.rtp_received();
        for seq in 1..=10u64 {
            let packet = MediaPacket {
                router: meeting.net.router,
                producer: video.id,
                kind: MediaKind::Video,
                codec: Codec::Vp8,
                seq_no: seq.into(),
                timestamp: seq as u32 * 3000,
                marker: true,
                extensions: ExtensionValues::default(),
                payload: Arc::from(vec![0x10; 100]),
                layer: 0,
                vp8: None,
                keyframe_start: None,
                received_at: meeting.net.now,
            };
            let now = meeting.net.now;
            meeting
                .worker()
                .handle_relay(now, Relay::Media(Arc::new(packet)));
            meeting.net.pump();
        }
        meeting.net.run(Duration::from_millis(100), |_| {});
        assert_sites_got_ten(&meeting, &before);
    }

    /// Every site received ten more packets than `before`, and no peer was closed.
    fn assert_sites_got_ten(meeting: &Meeting, before: &[u64]) {
        let after = meeting.net.rtp_received();
        for ((c, before), after) in meeting.net.clients.iter().zip(before).zip(after).skip(1) {
            assert!(after >= before + 10, "{} got its packets", c.peer);
        }
        assert!(meeting.net.closed.is_empty());
    }
}
