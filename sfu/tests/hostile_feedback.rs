//! A site that writes its own transport-wide feedback, one worker, virtual clock: feedback
//! the hub cannot take is dropped, and the worker goes on forwarding to that site and every
//! other. The feedback here reports its packets as a run of none, then a run of three large
//! deltas: str0m 0.25.0 took it, and iterating it then found large deltas where its statuses
//! called for small ones, and panicked, taking down the worker and every meeting on it. (A
//! fault inside str0m now closes its peer alone, `contained_failures.rs`; here the feedback is
//! refused and the site keeps its connection.)

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);
const WRITER: PeerId = PeerId(2);
const OTHER: PeerId = PeerId(3);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// An RTCP transport-wide feedback (RTPFB, FMT 15) reporting three packets from
/// `base_seq`: a run-length chunk of no packets, then one of three received with large deltas.
fn feedback_with_a_run_of_none(base_seq: u16) -> Vec<u8> {
    let mut packet = vec![0x80 | 15, 205, 0, 7]; // V=2, FMT 15, RTPFB, 8 words
    packet.extend_from_slice(&[0, 0, 0, 1]); // sender SSRC
    packet.extend_from_slice(&[0, 0, 0, 2]); // media SSRC
    packet.extend_from_slice(&base_seq.to_be_bytes());
    packet.extend_from_slice(&[0, 3]); // three statuses
    packet.extend_from_slice(&[0, 0, 0, 0]); // reference time, feedback count
    packet.extend_from_slice(&[0b0010_0000, 0]); // a run of received small deltas, of none
    packet.extend_from_slice(&[0b0100_0000, 3]); // a run of received large deltas, of three
    packet.extend_from_slice(&[0, 4, 0, 4, 0, 4, 0, 0]); // their deltas, and padding
    assert_eq!(packet.len(), 32);
    packet
}

#[test]
fn feedback_the_hub_cannot_take_is_dropped_and_forwarding_goes_on() {
    let mut net = Net::new(studio_and_sites);
    net.join(STUDIO);
    for site in [WRITER, OTHER] {
        net.join(site);
        net.subscribe_existing(site);
    }
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));
    net.assert_receives(WRITER, STUDIO);
    net.assert_receives(OTHER, STUDIO);

    // The site writes the feedback under its session's keys, for sequence numbers the hub
    // has sent and for ones it has not.
    let writer = net.client(WRITER);
    let addr = writer.addr;
    let (_, mut srtcp) = writer.rtc.srtp_contexts().expect("the site's keys");
    for base_seq in [0, 100, 60_000] {
        let protected = srtcp.protect_rtcp(&feedback_with_a_run_of_none(base_seq));
        net.deliver(addr, &protected);
    }

    let before = net.rtp_received();
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 4));
    let after = net.rtp_received();
    for (index, (before, after)) in before.iter().zip(&after).enumerate() {
        if index == 0 {
            continue; // the studio receives nothing of the sites here
        }
        assert!(
            after > &(before + 300),
            "client {index} received {before} RTP packets, then {after}"
        );
    }
    net.assert_receives(WRITER, STUDIO);
    net.assert_receives(OTHER, STUDIO);
    let video = net.client(WRITER).received_count(MediaKind::Video);
    assert!(video > 400, "the writer received {video} video packets");
}
