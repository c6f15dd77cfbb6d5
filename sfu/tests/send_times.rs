//! A busy hub writes a turn's datagrams first and sends them together afterwards, so a
//! datagram waits in the hub between the time str0m protects it and the time it leaves, for
//! longer as the core gets busier. The send time a site's transport-wide feedback is compared
//! with must be the time the datagram left (`Worker::datagrams_sent`, which the hub's driver
//! calls after each send): otherwise the hub's own growing queue reads as a congested link,
//! and a site on a good link is taken off its picture.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);
const SITE: PeerId = PeerId(2);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The hub's queue of unsent datagrams building up for 400 ms to 60 ms, then drained, over
/// and over: a core that falls behind and catches up.
fn busy_core(since_start: Duration) -> Duration {
    let phase = since_start.as_millis() % 400;
    Duration::from_micros(phase as u64 * 150)
}

/// Video packets of each layer the site received in the last 10 s of 30 s of the simulcast
/// studio, the hub's sends waiting as [`busy_core`] says, and the hub told when they left or
/// not.
fn layers_received(says_sent: bool) -> [u64; 3] {
    let mut net = Net::new(studio_and_sites);
    // Bandwidth estimation reads arrival times, which a coarser step would quantise.
    net.step = Duration::from_millis(1);
    net.send_wait = Some(busy_core);
    net.says_sent = says_sent;
    net.join_with(STUDIO, true);
    net.join(SITE);
    net.subscribe_existing(SITE);
    net.run(Duration::from_secs(20), |net| net.send_media(STUDIO, 0));
    let before = net.client(SITE).layers_received;
    net.run(Duration::from_secs(10), |net| net.send_media(STUDIO, 0));
    let after = net.client(SITE).layers_received;
    [
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    ]
}

#[test]
fn a_site_keeps_its_picture_when_the_hub_says_when_its_datagrams_left() {
    let told = layers_received(true);
    let total: u64 = told.iter().sum();
    assert!(
        told[2] * 10 >= total * 9 && total > 0,
        "the site on an unconstrained link stays on the top layer: {told:?}"
    );

    // The same waits, the hub not told: the site's estimate reads them as congestion. (This
    // shows the scenario is one the send times decide.)
    let untold = layers_received(false);
    assert!(
        untold[2] * 2 < told[2],
        "with the protect times the site loses the top layer: {untold:?} against {told:?}"
    );
}
