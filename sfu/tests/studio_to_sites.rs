//! One studio, several sites, one worker, virtual clock: the studio's packets reach every site,
//! every site's packets reach the studio, and a late joiner makes the hub ask the studio for a
//! keyframe; a site is sent nothing before its connection is up, and a keyframe once it is.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

#[test]
fn studio_reaches_every_site_and_late_joiner_gets_keyframe() {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    let sites = [PeerId(2), PeerId(3), PeerId(4)];
    for site in sites {
        net.join(site);
        net.subscribe_existing(site);
    }
    net.run(Duration::from_secs(3), |net| {
        net.send_media(STUDIO, 4);
        for site in [PeerId(2), PeerId(3), PeerId(4)] {
            net.send_media(site, 1);
        }
    });

    for site in sites {
        net.assert_receives(site, STUDIO);
        assert_eq!(
            net.client(site).offered_streams,
            vec![STUDIO.to_string()],
            "{site} offered the studio only"
        );
    }
    let studio = net.client(STUDIO);
    let video = studio.received_count(MediaKind::Video);
    assert!(video > 3 * 50, "studio received {video} site video packets");
    assert_eq!(studio.offered_streams.len(), 3);

    let before = net.client(STUDIO).keyframe_requests;
    let late = PeerId(5);
    net.join(late);
    net.subscribe_existing(late);
    net.run(Duration::from_secs(2), |net| net.send_media(STUDIO, 4));
    let after = net.client(STUDIO).keyframe_requests;
    assert!(
        after > before,
        "late joiner triggered a keyframe request ({before} -> {after})"
    );
    let late_video = net.client(late).received_count(MediaKind::Video);
    assert!(
        late_video > 100,
        "late joiner received {late_video} video packets"
    );
    assert!(net.workers[0].stats().keyframe_requests_sent >= 2);
}

#[test]
fn a_site_is_sent_nothing_before_its_connection_and_a_keyframe_once_up() {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    let site = PeerId(2);
    net.unreachable.push(site);
    net.join(site);
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 4));
    assert!(
        !net.client(site).connected,
        "the site's link loses everything"
    );
    assert_eq!(net.client(site).received_count(MediaKind::Video), 0);

    // The link comes back: the site's handshake completes, and from then on it gets the
    // studio, starting from a keyframe asked for at its connection; what the studio sent
    // before is not delivered late.
    net.client(site).downlink.loss_percent = 0;
    let requests_before = net.client(STUDIO).keyframe_requests;
    let mut sent_before_connection = None;
    net.run(Duration::from_secs(5), |net| {
        if sent_before_connection.is_none() && net.client(site).connected {
            sent_before_connection = Some(net.client(STUDIO).sent[&MediaKind::Video]);
        }
        net.send_media(STUDIO, 4);
    });
    let sent_before_connection = sent_before_connection.expect("the site connects");
    let sent_since = net.client(STUDIO).sent[&MediaKind::Video] - sent_before_connection;
    let received = net.client(site).received_count(MediaKind::Video);
    assert!(
        received * 100 >= sent_since * 95,
        "the site received {received} of the {sent_since} video packets sent since it connected"
    );
    assert!(
        received <= sent_since,
        "the site received {received} video packets: more than the {sent_since} sent since it \
         connected"
    );
    assert!(
        net.client(STUDIO).keyframe_requests > requests_before,
        "the site's connection asked the studio for a keyframe"
    );
}
