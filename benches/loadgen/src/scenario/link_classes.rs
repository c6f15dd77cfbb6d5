//! Studio → sites per emulated link class: the flow through the link and the hub, and why a
//! participant did not get media.

use std::collections::{HashMap, HashSet};

use crate::engine::{PeerReport, STUDIO, ThreadReport};
use crate::measure::Histogram;
use crate::media::Kind;
use crate::report::{ConsoleSite, Flow, LinkClassReport, ReceiverSummary, Spread};
use crate::signaling::SignallingRecord;

use super::Run;

/// What [`Run::link_classes`] reads.
pub(super) struct LinkClassInputs<'a> {
    pub(super) peers: &'a [&'a PeerReport],
    pub(super) records: &'a [SignallingRecord],
    pub(super) console: Option<&'a serde_json::Value>,
    pub(super) threads: &'a [ThreadReport],
    pub(super) sent: &'a HashMap<(u32, Kind), u64>,
    pub(super) simulcast: &'a HashSet<u32>,
    pub(super) studio_streams: &'a [(u32, Kind)],
    pub(super) joined: &'a HashSet<u32>,
    pub(super) window_s: f64,
    pub(super) window_end_ns: u64,
}

impl Run {
    /// Studio → sites per link class: the flow through the link and the hub, what each site
    /// received, and which layer the hub had it on.
    pub(super) fn link_classes(&self, inputs: &LinkClassInputs<'_>) -> Vec<LinkClassReport> {
        let i = inputs;
        // Layer names, lowest first: the studio's rids, or `single`.
        let layer_names: Vec<String> = i
            .peers
            .iter()
            .filter(|p| p.status.id == STUDIO)
            .flat_map(|p| p.sent.iter())
            .filter(|s| s.kind == Kind::Video)
            .map(|s| s.rid.clone().unwrap_or_else(|| "single".to_owned()))
            .collect();
        let layer_name = |layer: u8| {
            layer_names
                .get(usize::from(layer))
                .cloned()
                .unwrap_or_else(|| format!("layer{layer}"))
        };
        let participant_class: HashMap<&str, usize> = i
            .records
            .iter()
            .filter_map(|r| Some((r.participant.as_deref()?, self.class_of_site(r.id)?)))
            .collect();
        let console_sites = i.console.and_then(ConsoleSite::all).unwrap_or_default();
        let mut out = Vec::new();
        for (index, class) in self.classes.iter().enumerate() {
            let members: Vec<&PeerReport> = i
                .peers
                .iter()
                .copied()
                .filter(|p| p.status.id != STUDIO && p.link_class == Some(index))
                .collect();
            let sites = self
                .site_class
                .iter()
                .filter(|c| **c == Some(index))
                .count();
            let with_media: Vec<&PeerReport> = members
                .iter()
                .copied()
                .filter(|p| i.joined.contains(&p.status.id))
                .collect();
            let mut delay = Histogram::default();
            for t in i.threads {
                if let Some(h) = t.downstream_delay_by_class.get(&Some(index)) {
                    delay.merge(h);
                }
            }
            let mut downstream = flow(
                with_media.clone(),
                |publisher| publisher == STUDIO,
                i.sent,
                &delay,
                i.studio_streams,
                i.simulcast,
            );
            downstream.per_receiver.clear();
            let kbps = |p: &PeerReport, kind: Kind| {
                let bytes: u64 = p
                    .received
                    .iter()
                    .filter(|r| r.publisher == STUDIO && r.kind == kind)
                    .map(|r| r.reception.received_bytes)
                    .sum();
                if i.window_s > 0.0 {
                    bytes as f64 * 8.0 / i.window_s / 1000.0
                } else {
                    0.0
                }
            };
            let video: Vec<f64> = with_media.iter().map(|p| kbps(p, Kind::Video)).collect();
            let audio: Vec<f64> = with_media.iter().map(|p| kbps(p, Kind::Audio)).collect();
            let mut report = LinkClassReport {
                name: class.name.clone(),
                link: class.describe(),
                share_percent: class.share_percent,
                sites,
                sites_with_media: with_media.len(),
                downstream,
                video_kbps: Spread::of(&video),
                audio_kbps: Spread::of(&audio),
                ..LinkClassReport::default()
            };
            for p in &members {
                let runs = p
                    .video_runs
                    .iter()
                    .find(|(publisher, _)| *publisher == STUDIO)
                    .map(|(_, r)| r);
                let recent = runs
                    .and_then(|r| r.last)
                    .filter(|(_, at)| *at + 1_500_000_000 >= i.window_end_ns);
                let audio_arrived = p.received.iter().any(|r| {
                    r.publisher == STUDIO && r.kind == Kind::Audio && r.reception.received > 0
                });
                let state = match recent {
                    Some((layer, _)) => layer_name(layer),
                    None if audio_arrived => "audio_only".to_owned(),
                    None => "nothing".to_owned(),
                };
                *report.layer_at_end.entry(state).or_default() += 1;
                report.layer_switches += runs.map_or(0, |r| r.runs.saturating_sub(1));
                for r in &p.received {
                    if r.publisher == STUDIO && r.kind == Kind::Video {
                        *report
                            .video_packets_by_layer
                            .entry(layer_name(r.layer))
                            .or_default() += r.reception.received;
                    }
                }
                if let Some(l) = &p.downlink {
                    report.downlink.add(l);
                }
                if let Some(l) = &p.uplink {
                    report.uplink.add(l);
                }
            }
            report.hub_said_audio_only = i
                .records
                .iter()
                .filter(|r| r.audio_only == Some(true) && self.class_of_site(r.id) == Some(index))
                .count();
            let (mut out_kbps, mut loss, mut rtt, mut n) = (0.0, 0.0, 0.0, 0usize);
            for site in &console_sites {
                if site.participant.and_then(|p| participant_class.get(p)) != Some(&index) {
                    continue;
                }
                *report.hub_states.entry(site.state.to_owned()).or_default() += 1;
                out_kbps += site.bitrate_out_kbps;
                loss += site.loss_permille;
                rtt += site.rtt_ms;
                n += 1;
            }
            if n > 0 {
                report.hub_bitrate_out_kbps_mean = Some(out_kbps / n as f64);
                report.hub_loss_permille_mean = Some(loss / n as f64);
                report.hub_rtt_ms_mean = Some(rtt / n as f64);
            }
            out.push(report);
        }
        out
    }
}

/// Adds up what `receivers` got from publishers matching `from`; `expected` lists the streams
/// each receiver should have had. The video of a publisher in `simulcast` is expected as the
/// receiver's runs on one layer ([`crate::measure::LayerRuns`]): the hub sends one layer at a
/// time, or none.
pub(super) fn flow(
    receivers: Vec<&PeerReport>,
    from: impl Fn(u32) -> bool,
    sent: &HashMap<(u32, Kind), u64>,
    delay: &Histogram,
    expected: &[(u32, Kind)],
    simulcast: &HashSet<u32>,
) -> Flow {
    let mut f = Flow {
        delay: delay.percentiles(),
        ..Flow::default()
    };
    // Per kind: (expected, received).
    let mut by_kind: HashMap<Kind, (u64, u64)> = HashMap::new();
    let mut jitter_sum = 0.0;
    for peer in receivers {
        f.receivers += 1;
        let mut peer_expected = 0u64;
        let mut peer_received = 0u64;
        for key in expected {
            let want = if key.1 == Kind::Video && simulcast.contains(&key.0) {
                peer.video_runs
                    .iter()
                    .find(|(publisher, _)| *publisher == key.0)
                    .map_or(0, |(_, runs)| runs.expected)
            } else {
                sent.get(key).copied().unwrap_or(0)
            };
            // One stream per simulcast layer received.
            let streams: Vec<_> = peer
                .received
                .iter()
                .filter(|r| (r.publisher, r.kind) == *key && from(r.publisher))
                .collect();
            let got = streams
                .iter()
                .map(|s| s.reception.received)
                .sum::<u64>()
                .min(want);
            f.streams += 1;
            peer_expected += want;
            peer_received += got;
            if let Some((_, span)) = peer.forwarded.iter().find(|(k, _)| k == key) {
                f.forwarded_expected_packets += span.expected();
                f.forwarded_lost_packets += span.expected().saturating_sub(span.received);
            }
            let k = by_kind.entry(key.1).or_default();
            k.0 += want;
            k.1 += got;
            if !streams.is_empty() {
                let jitter_ms = streams
                    .iter()
                    .map(|s| s.reception.jitter_ns / 1e6)
                    .fold(0.0, f64::max);
                for s in &streams {
                    f.late_packets += s.reception.late;
                    f.duplicates += s.reception.duplicates;
                }
                jitter_sum += jitter_ms;
                f.jitter_max_ms = f.jitter_max_ms.max(jitter_ms);
            }
        }
        count_receiver(
            &mut f,
            ReceiverSummary {
                id: peer.status.id,
                expected_packets: peer_expected,
                received_packets: peer_received,
                late_packets: peer
                    .received
                    .iter()
                    .filter(|r| from(r.publisher))
                    .map(|r| r.reception.late)
                    .sum(),
            },
        );
    }
    fill_percentages(&mut f, &by_kind);
    f.jitter_mean_ms = if f.streams == 0 {
        0.0
    } else {
        jitter_sum / f.streams as f64
    };
    f
}

/// What `receivers` counted in header-only reception, as a [`Flow`]: per site and kind, the
/// packets that arrived in the window against those their sequence numbers say were sent.
pub(super) fn header_flow(receivers: Vec<&PeerReport>, delay: &Histogram) -> Flow {
    let mut f = Flow {
        delay: delay.percentiles(),
        ..Flow::default()
    };
    let mut by_kind: HashMap<Kind, (u64, u64)> = HashMap::new();
    for peer in receivers {
        f.receivers += 1;
        let Some(counts) = &peer.headers else {
            continue;
        };
        let (mut expected, mut received) = (0, 0);
        for (kind, w) in &counts.window {
            f.streams += 1;
            expected += w.expected;
            received += w.received.min(w.expected);
            let k = by_kind.entry(*kind).or_default();
            k.0 += w.expected;
            k.1 += w.received.min(w.expected);
        }
        f.forwarded_expected_packets += expected;
        f.forwarded_lost_packets += expected - received;
        f.duplicates += counts.duplicates;
        f.late_packets += counts.repairs + counts.reordered;
        count_receiver(
            &mut f,
            ReceiverSummary {
                id: peer.status.id,
                expected_packets: expected,
                received_packets: received,
                late_packets: counts.repairs + counts.reordered,
            },
        );
    }
    fill_percentages(&mut f, &by_kind);
    f
}

/// Adds one receiver's totals to `f`.
fn count_receiver(f: &mut Flow, receiver: ReceiverSummary) {
    let (expected, received) = (receiver.expected_packets, receiver.received_packets);
    f.expected_packets += expected;
    f.received_packets += received;
    if expected > 0 && (expected - received) * 100 > expected {
        f.receivers_over_1pct_loss += 1;
    }
    f.per_receiver.push(receiver);
}

/// Fills `f`'s lost packets and percentages from its totals and `by_kind` (expected,
/// received).
fn fill_percentages(f: &mut Flow, by_kind: &HashMap<Kind, (u64, u64)>) {
    f.lost_packets = f.expected_packets - f.received_packets;
    let percent = |lost: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / of as f64
        }
    };
    f.loss_percent = percent(f.lost_packets, f.expected_packets);
    f.forwarded_loss_percent = percent(f.forwarded_lost_packets, f.forwarded_expected_packets);
    f.late_percent = percent(f.late_packets, f.received_packets);
    for (kind, target) in [
        (Kind::Audio, &mut f.audio_loss_percent),
        (Kind::Video, &mut f.video_loss_percent),
    ] {
        let (want, got) = by_kind.get(&kind).copied().unwrap_or_default();
        *target = percent(want - got, want);
    }
}
