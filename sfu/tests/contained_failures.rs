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

#[test]
fn a_peer_whose_connection_panics_is_closed_and_the_others_go_on() {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    for site in SITES {
        net.join(site);
        net.subscribe_existing(site);
    }
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));
    for site in SITES {
        net.assert_receives(site, STUDIO);
    }
    assert_eq!(net.workers[0].stats().peers_failed, 0);

    net.workers[0].fail_next_call(FAILING);
    let before = net.rtp_received();
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));
    let after = net.rtp_received();

    assert_eq!(
        net.closed,
        vec![FAILING],
        "the failing site alone is closed"
    );
    assert_eq!(net.workers[0].stats().peers_failed, 1);
    assert_eq!(net.workers[0].peer_count(), 3, "the studio and two sites");
    for (index, site) in SITES.iter().enumerate() {
        let (before, after) = (before[index + 1], after[index + 1]);
        if *site == FAILING {
            assert!(
                after < before + 10,
                "{site} received {before}, then {after}"
            );
        } else {
            assert!(
                after > before + 300,
                "{site} received {before}, then {after}"
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
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    for site in SITES {
        net.join(site);
        net.subscribe_existing(site);
    }
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));

    // The site's next datagram meets the fault as the worker takes it in.
    net.workers[0].fail_next_call(FAILING);
    let client = net.client(FAILING);
    let (addr, datagram) = (client.addr, client.datagrams_sent.back().cloned());
    net.deliver(addr, &datagram.expect("the site sent datagrams"));
    assert_eq!(net.closed, vec![FAILING]);
    assert_eq!(net.workers[0].stats().peers_failed, 1);

    let before = net.rtp_received();
    net.run(Duration::from_secs(2), |net| net.send_media(STUDIO, 4));
    let after = net.rtp_received();
    for (index, site) in SITES.iter().enumerate() {
        if *site != FAILING {
            let (before, after) = (before[index + 1], after[index + 1]);
            assert!(
                after > before + 200,
                "{site} received {before}, then {after}"
            );
        }
    }
}
