//! A fault inside str0m while it handles one peer (a panic on something that peer sent), one
//! worker, virtual clock: that peer is closed, as a peer whose connection fails is, and the
//! worker goes on with every other peer of the meeting, instead of stopping with all of them.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);
const SITES: [PeerId; 3] = [PeerId(2), PeerId(3), PeerId(4)];
const FAILING: PeerId = PeerId(3);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The studio and the three sites, joined, after 3 s of the studio's media.
fn a_meeting_under_way() -> Net {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    for site in SITES {
        net.join(site);
        net.subscribe_existing(site);
    }
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));
    net
}

/// The RTP packets each site receives while the studio sends for `seconds`.
fn received_by_the_sites(net: &mut Net, seconds: u64) -> Vec<(PeerId, u64)> {
    let before = net.rtp_received();
    net.run(Duration::from_secs(seconds), |net| {
        net.send_media(STUDIO, 4)
    });
    let after = net.rtp_received();
    // The studio joined first: the sites are the clients after it, in order.
    let counts = before.iter().zip(&after).skip(1);
    SITES
        .into_iter()
        .zip(counts)
        .map(|(site, (before, after))| (site, after - before))
        .collect()
}

#[test]
fn a_peer_whose_connection_panics_is_closed_and_the_others_go_on() {
    let mut net = a_meeting_under_way();
    for site in SITES {
        net.assert_receives(site, STUDIO);
    }
    assert_eq!(net.workers[0].stats().peers_failed, 0);

    net.workers[0].fail_next_call(FAILING);
    let received = received_by_the_sites(&mut net, 3);

    assert_eq!(
        net.closed,
        vec![FAILING],
        "the failing site alone is closed"
    );
    assert_eq!(net.workers[0].stats().peers_failed, 1);
    assert_eq!(net.workers[0].peer_count(), 3, "the studio and two sites");
    for (site, got) in received {
        if site == FAILING {
            assert!(
                got < 10,
                "{site} received {got} RTP packets after the fault"
            );
        } else {
            assert!(
                got > 300,
                "{site} received {got} RTP packets after the fault"
            );
        }
    }
    // The worker still takes new sites.
    let late = PeerId(5);
    net.join(late);
    net.subscribe_existing(late);
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));
    let received = net.client(late).rtp_received();
    assert!(
        received > 300,
        "the late site received {received} RTP packets"
    );
}

#[test]
fn a_panic_on_a_datagram_closes_its_peer_alone() {
    let mut net = a_meeting_under_way();

    // The site's next datagram meets the fault as the worker takes it in.
    net.workers[0].fail_next_call(FAILING);
    let client = net.client(FAILING);
    let (addr, datagram) = (client.addr, client.datagrams_sent.back().cloned());
    net.deliver(addr, &datagram.expect("the site sent datagrams"));
    assert_eq!(net.closed, vec![FAILING]);
    assert_eq!(net.workers[0].stats().peers_failed, 1);

    for (site, got) in received_by_the_sites(&mut net, 2) {
        if site != FAILING {
            assert!(
                got > 200,
                "{site} received {got} RTP packets after the fault"
            );
        }
    }
}
