//! A hall without camera or microphone, one worker, virtual clock: its first offer has one
//! `recvonly` audio m-line. The hub has nothing to send on that m-line, so it answers it
//! `inactive`, with no stream and no SSRC (a browser would otherwise fire `ontrack` for a
//! stream of no participant), and sends the studio on m-lines of its own.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::{Direction, MediaKind};
use diemcau_sfu::testkit::{ClientConfig, Net};

const STUDIO: PeerId = PeerId(1);
const HALL: PeerId = PeerId(2);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The m-section of `sdp` with mid `mid`.
fn section<'a>(sdp: &'a str, mid: &str) -> &'a str {
    sdp.split("\r\nm=")
        .skip(1)
        .find(|s| s.contains(&format!("\r\na=mid:{mid}\r\n")))
        .unwrap_or_else(|| panic!("no m-line {mid} in:\n{sdp}"))
}

#[test]
fn a_recvonly_m_line_is_answered_inactive_without_a_stream() {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    let listen_only = ClientConfig {
        audio: Some(Direction::RecvOnly),
        video: false,
        ..ClientConfig::default()
    };
    net.join_client(HALL, listen_only);
    let answer = net.client(HALL).first_answer.clone();
    // The answer's only m-line is the hall's own.
    let own = answer
        .lines()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .expect("a mid in the answer")
        .to_owned();
    let answered = section(&answer, &own);
    assert!(
        answered.contains("\r\na=inactive"),
        "answered inactive:\n{answered}"
    );
    for attribute in ["a=sendonly", "a=sendrecv", "a=msid:", "a=ssrc:"] {
        assert!(
            !answered.contains(attribute),
            "no {attribute} in the answer to a recvonly m-line:\n{answered}"
        );
    }
    assert!(
        !answer.contains("a=ice-options:trickle"),
        "the hub does not trickle:\n{answer}"
    );

    // The studio's tracks come on m-lines the hub offers, under the studio's id; the hall's
    // own m-line stays as it was answered.
    net.run(Duration::from_secs(2), |net| net.send_media(STUDIO, 2));
    let hall = net.client(HALL);
    assert_eq!(hall.offered_streams, vec![STUDIO.to_string()]);
    let offer = hall.last_offer.clone();
    let own_line = section(&offer, &own);
    assert!(
        own_line.contains("\r\na=inactive") && !own_line.contains("a=msid:"),
        "the hall's own m-line in the hub's offer:\n{own_line}"
    );
    assert!(
        hall.received_count(MediaKind::Audio) > 50,
        "the hall hears the studio"
    );
    assert!(
        hall.received_count(MediaKind::Video) > 50,
        "the hall sees the studio"
    );
}
