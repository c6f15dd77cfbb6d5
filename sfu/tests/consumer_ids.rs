//! Consumers named by the ids the hub chose, one worker, virtual clock: an id already in use is
//! refused without touching its consumer, and removing or capping a consumer by its id affects
//! that consumer of that peer alone.

use std::time::Duration;

use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;
use diemcau_sfu::{ConsumerId, PeerId, ProducerInfo, SfuError};

const STUDIO: PeerId = PeerId(1);
const A: PeerId = PeerId(2);
const B: PeerId = PeerId(3);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The studio (simulcast video) and sites `A` and `B` receiving it, after a few seconds.
fn meeting() -> (Net, ProducerInfo) {
    let mut net = Net::new(studio_and_sites);
    net.join_with(STUDIO, true);
    net.join(A);
    net.join(B);
    net.run(Duration::from_secs(2), |net| net.send_media(STUDIO, 0));
    let video = net
        .producers
        .iter()
        .find(|p| p.peer == STUDIO && p.kind == MediaKind::Video)
        .cloned()
        .expect("the studio's video");
    (net, video)
}

/// Packets of `kind` each site receives in a second of the studio's media.
fn second_of_media(net: &mut Net, kind: MediaKind) -> [u64; 2] {
    let before = [
        net.client(A).received_count(kind),
        net.client(B).received_count(kind),
    ];
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 0));
    [
        net.client(A).received_count(kind) - before[0],
        net.client(B).received_count(kind) - before[1],
    ]
}

#[test]
fn an_id_in_use_is_refused_and_its_consumer_kept() {
    let (mut net, video) = meeting();
    let a_video = net.consumers[&(A, video.id)];
    let refused = net.workers[0].add_consumer(B, a_video, &video, u8::MAX);
    assert_eq!(refused, Err(SfuError::ConsumerExists(a_video)));
    let refused = net.workers[0].add_consumer(A, a_video, &video, u8::MAX);
    assert_eq!(refused, Err(SfuError::ConsumerExists(a_video)));
    net.pump();
    let [a, b] = second_of_media(&mut net, MediaKind::Video);
    assert!(
        a > 20 && b > 20,
        "both sites still see the studio: {a}, {b}"
    );
    assert_eq!(
        net.client(B).offered_streams,
        vec![STUDIO.to_string()],
        "no second track offered"
    );
}

#[test]
fn removing_by_id_stops_that_consumer_of_that_peer_alone() {
    let (mut net, video) = meeting();
    let a_video = net.consumers[&(A, video.id)];
    let now = net.now;
    // B names A's consumer: ignored.
    net.workers[0].remove_consumer(now, B, a_video);
    // An id nobody chose: ignored.
    net.workers[0].remove_consumer(now, A, ConsumerId(999_999));
    net.pump();
    let [a, b] = second_of_media(&mut net, MediaKind::Video);
    assert!(a > 20 && b > 20, "nothing removed: {a}, {b}");

    let now = net.now;
    net.workers[0].remove_consumer(now, A, a_video);
    net.run(Duration::from_millis(200), |net| net.send_media(STUDIO, 0));
    let [a, b] = second_of_media(&mut net, MediaKind::Video);
    assert_eq!(a, 0, "A's video consumer is gone");
    assert!(b > 20, "B still sees the studio: {b}");
    let [a, _] = second_of_media(&mut net, MediaKind::Audio);
    assert!(a > 40, "A still hears the studio: {a}");
}

#[test]
fn capping_by_id_caps_that_consumer_alone() {
    let (mut net, video) = meeting();
    let a_video = net.consumers[&(A, video.id)];
    let now = net.now;
    net.workers[0].set_max_layer(now, A, a_video, 0);
    // B naming A's consumer changes nothing.
    net.workers[0].set_max_layer(now, B, a_video, 2);
    // Long enough for B to climb (one layer per upgrade period).
    net.run(Duration::from_secs(4), |net| net.send_media(STUDIO, 0));
    let before = [net.client(A).layers_received, net.client(B).layers_received];
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 0));
    let after = [net.client(A).layers_received, net.client(B).layers_received];
    let during = |site: usize, layer: usize| after[site][layer] - before[site][layer];
    assert!(during(0, 0) > 20, "A gets the lowest layer");
    assert_eq!(during(0, 1) + during(0, 2), 0, "and nothing above it");
    assert!(
        during(1, 1) + during(1, 2) > 20,
        "B keeps a higher layer: {:?}",
        [during(1, 0), during(1, 1), during(1, 2)]
    );
}
