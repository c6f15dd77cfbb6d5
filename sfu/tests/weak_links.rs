//! Weak commune links, emulated: each site gets the best simulcast layer of the studio its own
//! link carries; a link that collapses falls to audio only and comes back by itself, even when
//! what it carries is just the lowest layer; heavy loss
//! keeps the audio flowing. A relaying hub's tracks pinned to one layer each carry every layer
//! from the first second, outside the allocator.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);

/// A network stepped every millisecond: bandwidth estimation reads arrival times, which a
/// coarser step would quantise into jitter.
fn net() -> Net {
    let mut net = Net::new(studio_and_sites);
    net.step = Duration::from_millis(1);
    net
}

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// The simulcast studio and one site on an unconstrained link, receiving it.
fn studio_and_one_site() -> (Net, PeerId) {
    let mut net = net();
    net.join_with(STUDIO, true);
    let site = PeerId(2);
    net.join(site);
    net.subscribe_existing(site);
    (net, site)
}

/// Video packets each layer delivered to `peer` during `run`.
fn layers_during(net: &mut Net, peer: PeerId, duration: Duration) -> [u64; 3] {
    let before = net.client(peer).layers_received;
    net.run(duration, |net| net.send_media(STUDIO, 0));
    let after = net.client(peer).layers_received;
    [
        after[0] - before[0],
        after[1] - before[1],
        after[2] - before[2],
    ]
}

fn main_layer(counts: [u64; 3]) -> Option<usize> {
    let total: u64 = counts.iter().sum();
    let (layer, most) = counts.iter().enumerate().max_by_key(|(_, c)| **c)?;
    (total > 0 && *most * 10 >= total * 8).then_some(layer)
}

#[test]
fn each_site_gets_the_layer_its_link_carries() {
    let mut net = net();
    net.join_with(STUDIO, true);
    let (slow, middle, fast) = (PeerId(2), PeerId(3), PeerId(4));
    for (site, rate) in [
        (slow, Some(300_000)),
        (middle, Some(1_000_000)),
        (fast, None),
    ] {
        net.join(site);
        let c = net.client(site);
        c.downlink.rate_bps = rate;
        c.downlink.delay = Duration::from_millis(20);
        net.subscribe_existing(site);
    }
    // Let the estimates settle, then look at what each site receives.
    net.run(Duration::from_secs(20), |net| net.send_media(STUDIO, 0));
    let slow_layers = layers_during(&mut net, slow, Duration::from_secs(4));
    let middle_layers = layers_during(&mut net, middle, Duration::from_secs(4));
    let fast_layers = layers_during(&mut net, fast, Duration::from_secs(4));
    assert_eq!(
        main_layer(slow_layers),
        Some(0),
        "300 kbit/s site: {slow_layers:?}"
    );
    assert_eq!(
        main_layer(middle_layers),
        Some(1),
        "1 Mbit/s site: {middle_layers:?}"
    );
    assert_eq!(
        main_layer(fast_layers),
        Some(2),
        "unconstrained site: {fast_layers:?}"
    );
    for site in [slow, middle, fast] {
        let audio = net.client(site).received_count(MediaKind::Audio);
        assert!(
            audio > 1000,
            "{site} hears the studio: {audio} audio packets"
        );
    }
}

#[test]
fn a_collapsed_link_falls_to_audio_only_and_comes_back() {
    let (mut net, site) = studio_and_one_site();
    net.run(Duration::from_secs(6), |net| net.send_media(STUDIO, 0));
    assert!(
        net.client(site).layers_received.iter().sum::<u64>() > 100,
        "video flows first"
    );

    // The link collapses below the lowest layer.
    net.client(site).downlink.rate_bps = Some(90_000);
    net.run(Duration::from_secs(12), |net| net.send_media(STUDIO, 0));
    assert!(
        net.receptions.contains(&(site, true)),
        "the hub reports audio only: {:?}",
        net.receptions
    );
    let audio_before = net.client(site).received_count(MediaKind::Audio);
    let video = layers_during(&mut net, site, Duration::from_secs(3));
    let audio_after = net.client(site).received_count(MediaKind::Audio);
    assert!(
        video.iter().sum::<u64>() <= 5,
        "no video on a collapsed link: {video:?}"
    );
    assert!(
        audio_after - audio_before >= 120,
        "audio goes on: {}",
        audio_after - audio_before
    );

    // The link recovers: video comes back by itself.
    net.client(site).downlink.rate_bps = None;
    net.run(Duration::from_secs(15), |net| net.send_media(STUDIO, 0));
    assert_eq!(
        net.receptions.last(),
        Some(&(site, false)),
        "{:?}",
        net.receptions
    );
    let video = layers_during(&mut net, site, Duration::from_secs(3));
    assert!(video.iter().sum::<u64>() > 100, "video is back: {video:?}");
}

#[test]
fn a_link_that_carries_the_lowest_layer_gets_it_back_after_a_collapse() {
    // On audio only a site receives its sound and the hub's padding, and str0m's estimate of
    // the link settles lower than with video flowing: on this 235 kbit/s link about 200 kbit/s,
    // short of the margin that brings the picture back at once (1.1 times the lowest layer,
    // plus the sound: about 214 kbit/s), so the site once stayed on sound only for good. It
    // now gets the lowest layer on trial after waiting on audio only, and keeps it.
    let (mut net, site) = studio_and_one_site();
    let c = net.client(site);
    c.downlink.rate_bps = Some(235_000);
    c.downlink.delay = Duration::from_millis(40);
    c.downlink.loss_percent = 1;
    net.run(Duration::from_secs(16), |net| net.send_media(STUDIO, 0));
    let layers = layers_during(&mut net, site, Duration::from_secs(4));
    assert_eq!(
        main_layer(layers),
        Some(0),
        "the lowest layer first: {layers:?}"
    );

    net.client(site).downlink.rate_bps = Some(90_000);
    net.run(Duration::from_secs(15), |net| net.send_media(STUDIO, 0));
    assert_eq!(
        net.receptions.last(),
        Some(&(site, true)),
        "a collapse: audio only"
    );

    net.client(site).downlink.rate_bps = Some(235_000);
    net.run(Duration::from_secs(15), |net| net.send_media(STUDIO, 0));
    assert_eq!(
        net.receptions.last(),
        Some(&(site, false)),
        "the picture is back: {:?}",
        net.receptions
    );
    let layers = layers_during(&mut net, site, Duration::from_secs(5));
    assert_eq!(main_layer(layers), Some(0), "and it holds: {layers:?}");
    assert!(layers[0] > 100, "and it holds: {layers:?}");
}

#[test]
fn twenty_percent_loss_keeps_audio_flowing() {
    let (mut net, site) = studio_and_one_site();
    net.run(Duration::from_secs(2), |net| net.send_media(STUDIO, 0));
    net.client(site).downlink.loss_percent = 20;
    let sent_before = net.client(STUDIO).sent_count(MediaKind::Audio);
    let got_before = net.client(site).received_count(MediaKind::Audio);
    net.run(Duration::from_secs(10), |net| net.send_media(STUDIO, 0));
    let sent = net.client(STUDIO).sent_count(MediaKind::Audio) - sent_before;
    let got = net.client(site).received_count(MediaKind::Audio) - got_before;
    assert!(sent >= 450, "studio kept speaking: {sent}");
    assert!(
        got * 100 >= sent * 70,
        "site heard {got} of {sent} audio packets through 20 % loss"
    );
}

#[test]
fn a_new_site_on_a_good_link_climbs_at_once() {
    // A site that has just connected starts on the lowest layer and climbs one layer per
    // upgrade period (3 s) while its estimate allows: the top layer within about 8 s. Probes
    // sent in the first moments once made every new site's estimate collapse to a few hundred
    // kbit/s, and the climb then started 3 s later.
    let (mut net, site) = studio_and_one_site();
    net.run(Duration::from_secs(9), |net| net.send_media(STUDIO, 0));
    let layers = layers_during(&mut net, site, Duration::from_secs(1));
    assert_eq!(main_layer(layers), Some(2), "9 s after joining: {layers:?}");
}

#[test]
fn a_relaying_hubs_pinned_tracks_carry_every_layer_from_the_start() {
    let mut net = net();
    net.join_with(STUDIO, true);
    let relay = PeerId(2);
    net.join(relay);
    net.client(relay).downlink.delay = Duration::from_millis(20);
    let producers = net.producers.clone();
    for producer in producers.iter().filter(|p| p.peer == STUDIO) {
        if producer.kind == MediaKind::Video {
            assert_eq!(producer.layers, 3, "the studio's three layers");
            for layer in 0..producer.layers {
                net.add_pinned_consumer(relay, producer, layer)
                    .expect("a pinned track");
            }
        } else {
            net.add_consumer(relay, producer, u8::MAX)
                .expect("the audio");
        }
    }
    net.pump();
    // A site starts on the lowest layer and climbs one layer every few seconds as its
    // estimate grows; the relay's tracks carry all three from the start.
    net.run(Duration::from_secs(1), |net| net.send_media(STUDIO, 0));
    let relay_layers = layers_during(&mut net, relay, Duration::from_secs(2));
    assert!(
        relay_layers.iter().all(|n| *n > 20),
        "the relay receives every layer: {relay_layers:?}"
    );
    assert!(
        !net.receptions
            .iter()
            .any(|(p, audio_only)| *p == relay && *audio_only),
        "pinned tracks never fall to audio only"
    );
}
