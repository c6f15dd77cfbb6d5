//! The chair's wall on a link that carries every site's picture but not a full sound budget for
//! each site as well: the sites the chair has muted send no sound, and what was set aside for
//! it goes to their pictures.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;

const CHAIR: PeerId = PeerId(1);
const SITES: u64 = 12;
/// Each site's picture: one 1,000-byte packet a frame, about 250 kbit/s on the wire; twelve
/// take about 3 Mbit/s, and their sound 0.9 Mbit/s more. With a fixed 64 kbit/s set aside for
/// each site's sound, muted or not, the chair had 84 % of the pictures on this link in five runs
/// out of five; with what each sound sends set aside, every picture.
const CHAIR_LINK_BPS: u64 = 3_200_000;

fn chair_watches_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    subscriber == CHAIR && publisher != CHAIR
}

/// The chair and its sites joined, the sites' sound muted or not; video packets the chair
/// received in the last 4 s of 30.
fn wall(muted: bool) -> u64 {
    let mut net = Net::new(chair_watches_sites);
    // Bandwidth estimation reads arrival times, which a coarser step would quantise.
    net.step = Duration::from_millis(1);
    net.join(CHAIR);
    let c = net.client(CHAIR);
    c.downlink.rate_bps = Some(CHAIR_LINK_BPS);
    c.downlink.delay = Duration::from_millis(10);
    let sites: Vec<PeerId> = (2..2 + SITES).map(PeerId).collect();
    for &site in &sites {
        net.join(site);
    }
    net.subscribe_existing(CHAIR);
    if muted {
        let sounds: Vec<_> = net
            .producers
            .iter()
            .filter(|p| p.kind == MediaKind::Audio && p.peer != CHAIR)
            .cloned()
            .collect();
        assert_eq!(sounds.len() as u64, SITES);
        for p in sounds {
            net.worker_of(p.peer)
                .set_producer_paused(p.router, p.id, true);
        }
    }
    let publish = |net: &mut Net| {
        for &site in &sites {
            net.send_media(site, 1);
        }
    };
    net.run(Duration::from_secs(26), publish);
    let before = net.client(CHAIR).received_count(MediaKind::Video);
    net.run(Duration::from_secs(4), publish);
    net.client(CHAIR).received_count(MediaKind::Video) - before
}

#[test]
fn muted_sites_leave_their_sound_budget_to_the_pictures() {
    // Every picture: 12 sites, 30 frames a second, one packet each, for 4 s.
    let all = SITES * 30 * 4;
    let muted = wall(true);
    assert!(
        muted * 100 >= all * 95,
        "muted: {muted} video packets of {all}: every picture should be on"
    );
    // Speaking, their sound takes its share of the link.
    let speaking = wall(false);
    assert!(
        speaking < muted,
        "speaking: {speaking} video packets, muted: {muted}"
    );
}
