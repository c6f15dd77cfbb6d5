//! A worker over its capacity sheds video, a step at a time, and never sound: every site
//! keeps hearing the studio while the layers go down and then the pictures go; once the load
//! eases the video comes back by itself.

use std::time::Duration;

use diemcau_sfu::PeerId;
use diemcau_sfu::overload::MAX_LEVEL;
use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::testkit::Net;

const STUDIO: PeerId = PeerId(1);
const SITES: u64 = 8;

fn studio_and_sites(subscriber: PeerId, publisher: PeerId) -> bool {
    (publisher == STUDIO) != (subscriber == STUDIO)
}

/// Runs the studio's media for `duration`, the workers told every half second that their
/// loop was busy `busy` of it.
fn run_loaded(net: &mut Net, duration: Duration, busy: f32) {
    let mut next = net.now;
    net.run(duration, |net| {
        net.send_media(STUDIO, 0);
        if net.now >= next {
            net.load(busy);
            next = net.now + Duration::from_millis(500);
        }
    });
}

/// Each site's video packets per layer and audio packets during `duration`.
fn received_during(net: &mut Net, duration: Duration, busy: f32) -> Vec<([u64; 3], u64)> {
    let sites: Vec<PeerId> = (2..2 + SITES).map(PeerId).collect();
    let before: Vec<([u64; 3], u64)> = sites
        .iter()
        .map(|s| {
            let c = net.client(*s);
            (c.layers_received, c.received_count(MediaKind::Audio))
        })
        .collect();
    run_loaded(net, duration, busy);
    sites
        .iter()
        .zip(before)
        .map(|(s, (layers, audio))| {
            let c = net.client(*s);
            let l = c.layers_received;
            (
                [l[0] - layers[0], l[1] - layers[1], l[2] - layers[2]],
                c.received_count(MediaKind::Audio) - audio,
            )
        })
        .collect()
}

#[test]
fn an_overloaded_worker_sheds_video_and_keeps_every_sites_sound() {
    let mut net = Net::new(studio_and_sites);
    net.step = Duration::from_millis(2);
    net.join_with(STUDIO, true);
    for site in 2..2 + SITES {
        net.join(PeerId(site));
        net.subscribe_existing(PeerId(site));
    }
    run_loaded(&mut net, Duration::from_secs(12), 0.3);
    let calm = received_during(&mut net, Duration::from_secs(2), 0.3);
    for (layers, _) in &calm {
        assert!(
            layers[2] > layers[0] + layers[1],
            "the top layer first: {calm:?}"
        );
    }
    assert_eq!(net.workers[0].stats().shed_level, 0);

    // Overloaded: after the first two steps every site is on the lowest layer.
    run_loaded(&mut net, Duration::from_secs(4), 1.0);
    assert_eq!(net.workers[0].stats().shed_level, 2);
    // Busy but no longer over: the level holds while it is measured.
    let low = received_during(&mut net, Duration::from_secs(2), 0.85);
    assert_eq!(net.workers[0].stats().shed_level, 2);
    for (layers, audio) in &low {
        assert!(
            layers[0] > 0 && layers[1] + layers[2] <= 2,
            "the lowest layer only: {low:?}"
        );
        assert!(*audio >= 90, "sound goes on: {low:?}");
    }

    // Still saturated: the pictures go, a quarter of the sites every four seconds; sound stays.
    run_loaded(&mut net, Duration::from_secs(16), 1.0);
    assert_eq!(net.workers[0].stats().shed_level, MAX_LEVEL);
    let out_before = net.datagrams_out;
    let sound_only = received_during(&mut net, Duration::from_secs(2), 1.0);
    // Besides their sound the worker sends only RTCP (the sites' reports, the studio's
    // feedback): no padding toward video the load forbids, nor str0m's automatic 50 kbit/s,
    // which would take the core's time for nothing (about 20 padding packets a second a site).
    let out = net.datagrams_out - out_before;
    let audio: u64 = sound_only.iter().map(|(_, audio)| audio).sum();
    assert!(
        out.saturating_sub(audio) <= 12 * SITES,
        "{out} datagrams sent for {audio} sound packets: padding?"
    );
    for (layers, audio) in &sound_only {
        assert!(
            layers.iter().sum::<u64>() <= 2,
            "no picture: {sound_only:?}"
        );
        assert!(*audio >= 90, "sound goes on: {sound_only:?}");
    }
    for site in 2..2 + SITES {
        assert!(
            net.shed.contains(&(PeerId(site), true)),
            "p{site} told it is the hub's load: {:?}",
            net.shed
        );
    }

    // The load eases: a step back every ten seconds, and the pictures come back by themselves.
    run_loaded(&mut net, Duration::from_secs(15), 0.3);
    assert_eq!(net.workers[0].stats().shed_level, MAX_LEVEL - 1);
    let back = received_during(&mut net, Duration::from_secs(2), 0.3);
    let with_video = back.iter().filter(|(l, _)| l[0] > 10).count();
    assert_eq!(with_video, 2, "a quarter of the sites see again: {back:?}");
    assert!(back.iter().all(|(_, audio)| *audio >= 90), "{back:?}");
}
