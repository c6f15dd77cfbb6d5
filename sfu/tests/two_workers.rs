//! One meeting spread over two workers, virtual clock: the studio and one site on worker 0,
//! two sites on worker 1. The studio's packets reach the sites of worker 1 through the relay
//! between workers, their keyframe requests reach the studio through it (merged and throttled
//! with the requests of worker 0, as on one worker), removing the studio's producers on every
//! worker stops the forwarding, and the studio receives the sites of worker 1.

use std::time::Duration;

use diemcau_sfu::str0m::media::{KeyframeRequestKind, MediaKind};
use diemcau_sfu::testkit::{ClientConfig, Net};
use diemcau_sfu::{PeerId, ProducerId};

const STUDIO: PeerId = PeerId(1);
/// On worker 0, with the studio.
const NEAR: PeerId = PeerId(2);
/// On worker 1.
const FAR: [PeerId; 2] = [PeerId(3), PeerId(4)];

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The studio and `NEAR` on worker 0, `FAR` on worker 1, a few seconds of media both ways.
fn meeting() -> Net {
    let mut net = Net::with_workers(studio_and_sites, 2, |_| {});
    net.join(STUDIO);
    net.join(NEAR);
    for site in FAR {
        let worker1 = ClientConfig {
            worker: 1,
            ..ClientConfig::default()
        };
        net.join_client(site, worker1);
    }
    net.run(Duration::from_secs(3), |net| {
        net.send_media(STUDIO, 4);
        for site in [NEAR, FAR[0], FAR[1]] {
            net.send_media(site, 1);
        }
    });
    net
}

/// `site` asks for a keyframe of the studio's video (a PLI, as a browser whose decoder lost
/// the picture).
fn ask_for_keyframe(net: &mut Net, site: PeerId) {
    let c = net.client(site);
    let (_, mid) = *c
        .recv_mids
        .iter()
        .find(|(kind, _)| *kind == MediaKind::Video)
        .expect("the studio's video offered");
    let mut direct = c.rtc.direct_api();
    let stream = direct.stream_rx_by_mid(mid, None).expect("video stream");
    stream.request_keyframe(KeyframeRequestKind::Pli);
}

#[test]
fn sites_on_the_other_worker_receive_the_studio() {
    let mut net = meeting();
    for site in [NEAR, FAR[0], FAR[1]] {
        net.assert_receives(site, STUDIO);
        assert_eq!(net.client(site).offered_streams, vec![STUDIO.to_string()]);
    }
    let far = net.workers[1].stats();
    assert!(
        far.packets_forwarded > far.packets_received,
        "worker 1 forwards what worker 0 relayed: {far:?}"
    );
}

#[test]
fn a_site_on_the_other_worker_reaches_the_studio() {
    let mut net = meeting();
    assert_eq!(net.client(STUDIO).offered_streams.len(), 3);
    let before = net.client(STUDIO).received_count(MediaKind::Video);
    // Only one site of worker 1 publishes.
    net.run(Duration::from_secs(1), |net| net.send_media(FAR[0], 1));
    let sent = net.client(FAR[0]).sent_count(MediaKind::Video);
    let got = net.client(STUDIO).received_count(MediaKind::Video) - before;
    assert!(
        got >= 25,
        "studio received {got} video packets of {FAR:?}[0] in a second ({sent} sent in all)"
    );
}

#[test]
fn keyframe_requests_cross_workers_merged_and_throttled() {
    let mut net = meeting();
    // A quiet second: the studio's last keyframe request is older than the interval.
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
    let before = net.client(STUDIO).keyframe_requests;
    let sent_before = [
        net.workers[0].stats().keyframe_requests_sent,
        net.workers[1].stats().keyframe_requests_sent,
    ];
    // Every site asks for a keyframe of the studio's video at once: one of worker 0, two of
    // worker 1 (relayed to worker 0, where the studio's producer lives).
    for site in [NEAR, FAR[0], FAR[1]] {
        ask_for_keyframe(&mut net, site);
    }
    net.pump();
    net.run(Duration::from_millis(100), |net| net.send_media(STUDIO, 4));
    assert_eq!(
        net.client(STUDIO).keyframe_requests - before,
        1,
        "one request now"
    );
    net.run(Duration::from_millis(600), |net| net.send_media(STUDIO, 4));
    assert_eq!(
        net.client(STUDIO).keyframe_requests - before,
        2,
        "the others merged into one at the end of the interval"
    );
    let sent = [
        net.workers[0].stats().keyframe_requests_sent - sent_before[0],
        net.workers[1].stats().keyframe_requests_sent - sent_before[1],
    ];
    assert_eq!(sent, [2, 0], "sent by the studio's worker alone");

    // A site of worker 1 alone, a second later: its request reaches the studio.
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
    let before = net.client(STUDIO).keyframe_requests;
    ask_for_keyframe(&mut net, FAR[1]);
    net.run(Duration::from_millis(100), |net| net.send_media(STUDIO, 4));
    assert_eq!(net.client(STUDIO).keyframe_requests - before, 1);
}

#[test]
fn removing_the_producers_on_every_worker_stops_forwarding() {
    let mut net = meeting();
    let studio: Vec<ProducerId> = net
        .producers
        .iter()
        .filter(|p| p.peer == STUDIO)
        .map(|p| p.id)
        .collect();
    assert_eq!(studio.len(), 2, "the studio's audio and video");
    for producer in studio {
        net.remove_producer(producer);
    }
    // What the workers had already queued leaves; then nothing more.
    net.run(Duration::from_millis(200), |net| net.send_media(STUDIO, 4));
    let received: Vec<u64> = [NEAR, FAR[0], FAR[1]]
        .iter()
        .map(|site| net.client(*site).rtp_received())
        .collect();
    let forwarded = [
        net.workers[0].stats().packets_forwarded,
        net.workers[1].stats().packets_forwarded,
    ];
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
    for (site, before) in [NEAR, FAR[0], FAR[1]].iter().zip(received) {
        assert_eq!(
            net.client(*site).rtp_received(),
            before,
            "{site} receives nothing more"
        );
    }
    assert_eq!(
        [
            net.workers[0].stats().packets_forwarded,
            net.workers[1].stats().packets_forwarded,
        ],
        forwarded
    );
    assert!(
        net.client(STUDIO).sent_count(MediaKind::Video) > 0,
        "the studio kept sending"
    );
}

#[test]
fn a_tapped_producer_is_handed_out_once_per_packet_whatever_the_workers() {
    let mut net = meeting();
    let video = net
        .producers
        .iter()
        .find(|p| p.peer == STUDIO && p.kind == MediaKind::Video)
        .expect("the studio's video")
        .clone();
    for worker in &mut net.workers {
        worker.set_tapped(video.router, video.id, true);
    }
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
    let tapped = std::mem::take(&mut net.tapped);
    assert!(!tapped.is_empty(), "the studio's video is handed out");
    assert!(tapped.iter().all(|p| p.producer == video.id));
    let mut sequence: Vec<(u8, u64)> = tapped.iter().map(|p| (p.layer, *p.seq_no)).collect();
    let count = sequence.len();
    sequence.sort_unstable();
    sequence.dedup();
    assert_eq!(
        sequence.len(),
        count,
        "each packet once, though two workers forward it"
    );

    for worker in &mut net.workers {
        worker.set_tapped(video.router, video.id, false);
    }
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
    assert!(net.tapped.is_empty(), "no more once the tap is off");
}
