//! Audio resilience on weak links: the hub keeps Opus in-band FEC in what it negotiates, takes
//! RFC 2198 redundant audio (RED) from a publisher that sends it, and forwards it as RED to the
//! sites that negotiated RED and as plain Opus (the primary block) to those that did not; plain
//! Opus from a publisher reaches the RED sites wrapped in RED by the hub.

use std::time::{Duration, Instant};

use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;
use diemcau_sfu::{
    ConsumerId, Event, Output, PeerId, ProducerId, ProducerInfo, RouterId, Worker, WorkerConfig,
};

const STUDIO: PeerId = PeerId(1);

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The frame number the test client writes at the start of each audio frame.
fn frame_number(frame: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(frame.get(..8)?.try_into().ok()?))
}

/// Splits a RED payload with at most one redundant block into (redundant, primary).
fn split_red(payload: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let first = *payload.first()?;
    if first & 0x80 == 0 {
        return Some((None, payload.get(1..)?));
    }
    let len = (usize::from(*payload.get(2)? & 0x03) << 8) | usize::from(*payload.get(3)?);
    if payload.get(4)? & 0x80 != 0 {
        return None;
    }
    Some((Some(payload.get(5..5 + len)?), payload.get(5 + len..)?))
}

/// The Opus payload type a client negotiated, and the RED type wrapping it if any.
fn opus_and_red(net: &mut Net, peer: PeerId) -> Option<(u8, Option<u8>)> {
    net.client(peer)
        .rtc
        .codec_config()
        .find(|p| p.spec().codec == diemcau_sfu::str0m::format::Codec::Opus)
        .map(|p| (*p.pt(), p.red().map(|r| *r)))
}

/// Whether every audio packet a client kept is the studio's 120-byte frame as plain Opus
/// (payload type 111).
fn only_plain_opus_frames(net: &mut Net, peer: PeerId) -> bool {
    net.client(peer)
        .audio_packets
        .iter()
        .all(|(pt, payload)| *pt == 111 && payload.len() == 120)
}

#[test]
fn red_reaches_the_sites_that_negotiated_it_and_plain_opus_the_others() {
    let mut net = Net::new(studio_and_sites);
    let (with_red, without_red) = (PeerId(2), PeerId(3));
    net.red = vec![STUDIO, with_red];
    net.join(STUDIO);
    net.join(with_red);
    net.join(without_red);
    net.subscribe_existing(with_red);
    net.subscribe_existing(without_red);
    net.run(Duration::from_secs(4), |net| net.send_media(STUDIO, 1));

    let (opus, red) = opus_and_red(&mut net, with_red).expect("opus negotiated");
    let red = red.expect("the hub accepted RED from a client that offers it");
    let (plain_opus, no_red) = opus_and_red(&mut net, without_red).expect("opus negotiated");
    assert_eq!(no_red, None, "no RED for a client that does not offer it");

    let site = net.client(with_red);
    assert!(
        site.received_count(MediaKind::Audio) > 150,
        "the RED site hears the studio: {:?}",
        site.received
    );
    let mut with_redundancy = 0;
    for (pt, payload) in &site.audio_packets {
        assert_eq!(*pt, red, "a RED site receives RED");
        let (redundant, primary) = split_red(payload).expect("well-formed RED");
        assert_eq!(payload.first().map(|b| b & 0x7f), Some(opus));
        let number = frame_number(primary).expect("a whole primary frame");
        if let Some(redundant) = redundant {
            assert_eq!(
                frame_number(redundant),
                Some(number - 1),
                "redundancy carries the previous frame"
            );
            with_redundancy += 1;
        }
    }
    assert!(
        with_redundancy >= 40,
        "{with_redundancy} packets with redundancy"
    );

    let site = net.client(without_red);
    assert!(
        site.received_count(MediaKind::Audio) > 150,
        "the other site hears the studio: {:?}",
        site.received
    );
    let mut previous = None;
    for (pt, payload) in &site.audio_packets {
        assert_eq!(*pt, plain_opus, "a site without RED receives plain Opus");
        assert_eq!(payload.len(), 120, "the primary frame alone");
        let number = frame_number(payload);
        if let (Some(before), Some(now)) = (previous, number) {
            assert_eq!(now, before + 1, "one frame per packet, in order");
        }
        previous = number;
    }
}

#[test]
fn the_hub_adds_redundancy_for_sites_that_negotiated_red() {
    // Chromium negotiates RED but sends plain Opus: the hub wraps it for the sites that can
    // take RED, with the previous frame as redundancy, and sends the others plain Opus.
    let mut net = Net::new(studio_and_sites);
    let (with_red, without_red) = (PeerId(2), PeerId(3));
    net.red = vec![with_red];
    net.join(STUDIO);
    net.join(with_red);
    net.join(without_red);
    net.subscribe_existing(with_red);
    net.subscribe_existing(without_red);
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 1));

    let red = opus_and_red(&mut net, with_red)
        .and_then(|(_, red)| red)
        .expect("RED negotiated");
    let site = net.client(with_red);
    assert!(
        site.received_count(MediaKind::Audio) > 100,
        "{:?}",
        site.received
    );
    let mut with_redundancy = 0;
    for (pt, payload) in &site.audio_packets {
        assert_eq!(*pt, red, "the RED site receives RED");
        let (redundant, primary) = split_red(payload).expect("well-formed RED");
        assert_eq!(primary.len(), 120, "the studio's frame as primary");
        let number = frame_number(primary).expect("frame number");
        if let Some(redundant) = redundant {
            assert_eq!(frame_number(redundant), Some(number - 1), "previous frame");
            with_redundancy += 1;
        }
    }
    assert!(
        with_redundancy >= 40,
        "{with_redundancy} packets with redundancy"
    );

    assert!(
        only_plain_opus_frames(&mut net, without_red),
        "plain Opus as the studio sent it"
    );
}

#[test]
fn a_site_without_a_microphone_gets_what_its_answer_accepted() {
    // Its first offer has video alone, so the hub's own audio payload types, RED among them,
    // stay in its codec configuration. The studio's audio reaches it on an m-line the hub
    // offers later, which the site answers with plain Opus alone: that is what it must get,
    // not RED it never accepted (which its stack would drop, leaving the hall in silence).
    let mut net = Net::new(studio_and_sites);
    let site = PeerId(2);
    net.red = vec![STUDIO];
    net.video_only = vec![site];
    net.join(STUDIO);
    net.join(site);
    net.subscribe_existing(site);
    net.run(Duration::from_secs(3), |net| net.send_media(STUDIO, 1));

    let hall = net.client(site);
    assert!(
        hall.received_count(MediaKind::Audio) > 100,
        "the hall hears the studio: {:?}",
        hall.received
    );
    assert!(
        only_plain_opus_frames(&mut net, site),
        "plain Opus, the studio's primary frames"
    );
}

/// What Chromium 156 offers for a microphone (`addTransceiver('audio')`), candidates removed.
const CHROMIUM_AUDIO_OFFER: &str = "v=0\r\n\
o=- 3040416644171747271 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0\r\n\
a=extmap-allow-mixed\r\n\
a=msid-semantic: WMS\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
c=IN IP4 0.0.0.0\r\n\
a=rtcp:9 IN IP4 0.0.0.0\r\n\
a=ice-ufrag:RrGH\r\n\
a=ice-pwd:TnMjqG33zn+bl9ugnmSlZ3hG\r\n\
a=ice-options:trickle\r\n\
a=fingerprint:sha-256 4C:26:F3:4E:1A:61:21:DA:86:A4:C0:AF:98:E7:E2:C4:5A:FD:9A:9A:D3:EF:AF:E6:52:8D:3B:D9:7F:9A:CF:BC\r\n\
a=setup:actpass\r\n\
a=mid:0\r\n\
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n\
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n\
a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n\
a=sendonly\r\n\
a=msid:- 230d542b-2574-41a1-9e7b-57781dd25676\r\n\
a=rtcp-mux\r\n\
a=rtcp-rsize\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n\
a=rtpmap:9 G722/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:13 CN/8000\r\n\
a=rtpmap:110 telephone-event/48000\r\n\
a=rtpmap:126 telephone-event/8000\r\n\
a=ssrc:4200936103 cname:7z6D+AgS9DNYHVSE\r\n\
a=ssrc:4200936103 msid:- 230d542b-2574-41a1-9e7b-57781dd25676\r\n";

/// The `m=audio` line and the Opus fmtp of an SDP.
fn audio_codecs(sdp: &str) -> (String, Option<String>) {
    let section = sdp
        .split("\r\nm=")
        .find(|s| s.starts_with("audio"))
        .unwrap_or_default();
    let m_line = section.lines().next().unwrap_or_default().to_owned();
    let fmtp = section
        .lines()
        .find(|l| l.starts_with("a=fmtp:111 "))
        .map(str::to_owned);
    (m_line, fmtp)
}

/// Chromium sends Opus FEC only when the other side's fmtp says `useinbandfec=1`, and RED only
/// when `red` comes before the Opus it wraps.
fn assert_fec_and_red(sdp: &str, what: &str) {
    let (m_line, fmtp) = audio_codecs(sdp);
    let fmtp = fmtp.unwrap_or_else(|| panic!("{what}: no Opus fmtp in\n{sdp}"));
    assert!(fmtp.contains("useinbandfec=1"), "{what}: {fmtp}");
    assert!(
        sdp.contains("a=rtpmap:63 red/48000/2") && sdp.contains("a=fmtp:63 111/111"),
        "{what}: RED for Opus\n{sdp}"
    );
    let order: Vec<&str> = m_line.split(' ').skip(3).collect();
    let red = order.iter().position(|pt| *pt == "63");
    let opus = order.iter().position(|pt| *pt == "111");
    assert!(
        red.is_some() && red < opus,
        "{what}: RED before Opus: {m_line}"
    );
}

#[test]
fn the_hub_negotiates_opus_fec_and_red_with_chromium() {
    let now = Instant::now();
    let hub = "127.0.0.1:40000".parse().expect("address");
    let mut worker = Worker::new(WorkerConfig::new(vec![hub]));
    let router = RouterId(1);
    let answer = worker
        .add_peer(now, STUDIO, router, CHROMIUM_AUDIO_OFFER)
        .expect("the hub answers Chromium");
    assert_fec_and_red(&answer, "answer to the studio");

    // Producers are announced once the studio's connection is up; the site's offer needs only
    // its description.
    let producer = ProducerInfo {
        id: ProducerId(99),
        router,
        peer: STUDIO,
        kind: MediaKind::Audio,
        layers: 1,
        mid: diemcau_sfu::str0m::media::Mid::from("0"),
        stream: None,
    };

    let site = PeerId(2);
    let site_offer = CHROMIUM_AUDIO_OFFER
        .replace("a=sendonly", "a=recvonly")
        .replace("a=ice-ufrag:RrGH", "a=ice-ufrag:SiTe");
    worker
        .add_peer(now, site, router, &site_offer)
        .expect("the hub answers the site");
    worker
        .add_consumer(site, ConsumerId(1), &producer, u8::MAX)
        .expect("consumer added");
    let mut offer = None;
    loop {
        match worker.poll_output() {
            Output::Event(Event::Offer { peer, sdp }) if peer == site => offer = Some(sdp),
            Output::Timeout(_) => break,
            _ => {}
        }
    }
    let offer = offer.expect("the hub offers the studio's audio to the site");
    assert_fec_and_red(&offer, "offer to the site");
}
