//! A long meeting, one worker, virtual clock: sites come and go for hours while the studio
//! stays. The studio's SDP must not grow with every site that ever joined: a new site's tracks
//! reuse the m-lines of sites gone, and still reach the studio.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);
/// Join-and-leave cycles of one site.
const CYCLES: u64 = 200;

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The m-lines of an SDP, and how many of them the hub sends on.
fn m_lines(sdp: &str) -> (usize, usize) {
    let sections: Vec<&str> = sdp.split("\r\nm=").skip(1).collect();
    let sending = sections
        .iter()
        .filter(|s| s.contains("\r\na=sendonly"))
        .count();
    (sections.len(), sending)
}

#[test]
fn a_site_joining_and_leaving_two_hundred_times_leaves_the_studio_sdp_small() {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    // A site that stays the whole meeting: two sites are present at the peak.
    net.join(PeerId(2));
    for cycle in 0..CYCLES {
        let site = PeerId(100 + cycle);
        net.join(site);
        let (lines, sending) = m_lines(&net.client(STUDIO).last_offer);
        // The studio's own audio and video, and two sites' audio and video at most; an m-line
        // is added only when every idle one is taken.
        assert!(
            lines <= 2 + 2 * 2,
            "cycle {cycle}: the studio's offer has {lines} m-lines:\n{}",
            net.client(STUDIO).last_offer
        );
        assert_eq!(sending, 4, "cycle {cycle}: two sites' tracks offered");
        assert!(
            net.client(STUDIO)
                .offered_streams
                .iter()
                .any(|s| *s == site.to_string()),
            "cycle {cycle}: the studio is offered {site}'s tracks under its id"
        );
        if cycle % 50 == 0 || cycle == CYCLES - 1 {
            // Now and then, the studio must really get the new site's media on a reused
            // m-line, from a keyframe on.
            let before = [
                net.client(STUDIO).received_count(MediaKind::Audio),
                net.client(STUDIO).received_count(MediaKind::Video),
            ];
            net.run(Duration::from_millis(1500), |net| net.send_media(site, 2));
            let after = [
                net.client(STUDIO).received_count(MediaKind::Audio),
                net.client(STUDIO).received_count(MediaKind::Video),
            ];
            assert!(
                after[0] - before[0] > 40 && after[1] - before[1] > 40,
                "cycle {cycle}: the studio received {} audio and {} video packets of {site}",
                after[0] - before[0],
                after[1] - before[1]
            );
            assert!(
                net.client(site).keyframe_requests > 0,
                "cycle {cycle}: {site} was asked for a keyframe for the studio's m-line"
            );
        }
        net.leave(site);
        let (_, sending) = m_lines(&net.client(STUDIO).last_offer);
        assert_eq!(
            sending, 2,
            "cycle {cycle}: the site left, its m-lines are inactive"
        );
    }
    let offer = net.client(STUDIO).last_offer.clone();
    for line in offer.lines() {
        assert_ne!(line, "a=ice-options:trickle", "the hub does not trickle");
    }
    let inactive: Vec<&str> = offer
        .split("\r\nm=")
        .skip(1)
        .filter(|s| s.contains("\r\na=inactive"))
        .collect();
    assert_eq!(
        inactive.len(),
        2,
        "the left site's m-lines are idle:\n{offer}"
    );
    for section in inactive {
        assert!(
            !section.contains("a=msid:") && !section.contains("a=ssrc:"),
            "an idle m-line announces no stream:\n{section}"
        );
    }
}
