//! The report of a run: what every peer, thread and reading counted, turned into [`Report`].

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::engine::{STUDIO, ThreadReport};
use crate::floor::{self};
use crate::measure::Histogram;
use crate::media::Kind;
use crate::report::{
    Forwarding, Generator, HeaderReceptionSummary, HubCost, HubInfo, HubView, Joins, Machine,
    Report, Settings,
};
use crate::signaling::SignallingRecord;
use crate::{ReceiveMode, Scenario};

use super::link_classes::{LinkClassInputs, flow, header_flow};
use super::{Readings, Run};

impl Run {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn report(
        mut self,
        join_mode: &str,
        mut joins: Joins,
        records: &[SignallingRecord],
        threads: &[ThreadReport],
        before_joins: &Readings,
        start: &Readings,
        end: &Readings,
        floor: Option<floor::FloorReport>,
        console: Option<serde_json::Value>,
    ) -> Report {
        let o = &self.options;
        let window_s = end.at.saturating_duration_since(start.at).as_secs_f64();
        let peers: Vec<&crate::engine::PeerReport> =
            threads.iter().flat_map(|t| t.peers.iter()).collect();
        // What each publisher wrote in the window, per stream.
        let mut sent: HashMap<(u32, Kind), u64> = HashMap::new();
        let mut published = 0u64;
        let mut published_streams = Vec::new();
        for peer in &peers {
            for s in &peer.sent {
                published_streams.push(s.clone());
                *sent.entry((s.publisher, s.kind)).or_default() += s.sent_window;
                published += s.sent_window;
            }
        }
        published_streams.sort_by_key(|s| (s.publisher, s.kind));
        let joined: HashSet<u32> = peers
            .iter()
            .filter(|p| p.status.id != STUDIO && p.status.first_media_ns.is_some())
            .map(|p| p.status.id)
            .collect();
        let mut downstream_delay = Histogram::default();
        let mut upstream_delay = Histogram::default();
        for t in threads {
            downstream_delay.merge(&t.downstream_delay);
            upstream_delay.merge(&t.upstream_delay);
        }
        let simulcast: HashSet<u32> = o.simulcast.then_some(STUDIO).into_iter().collect();
        // Every joined site expects both studio streams, even one it never got.
        let studio_streams: Vec<(u32, Kind)> = [(STUDIO, Kind::Audio), (STUDIO, Kind::Video)]
            .into_iter()
            .filter(|k| sent.contains_key(k))
            .collect();
        let link_classes = self.link_classes(&LinkClassInputs {
            peers: &peers,
            records,
            console: console.as_ref(),
            threads,
            sent: &sent,
            simulcast: &simulcast,
            studio_streams: &studio_streams,
            joined: &joined,
            window_s,
            window_end_ns: self.clock.ns(end.at),
        });
        let receivers: Vec<&crate::engine::PeerReport> = peers
            .iter()
            .copied()
            .filter(|p| p.status.id != STUDIO && joined.contains(&p.status.id))
            .collect();
        let header_reception = (o.receive == ReceiveMode::Headers).then(|| {
            let mut summary = HeaderReceptionSummary {
                sample_every: crate::engine::SAMPLE_EVERY,
                ..HeaderReceptionSummary::default()
            };
            for counts in receivers.iter().filter_map(|p| p.headers.as_ref()) {
                summary.sites += 1;
                summary.counts.add(counts);
                if counts
                    .window
                    .get(&Kind::Audio)
                    .is_none_or(|w| w.received == 0)
                {
                    summary.sites_without_audio += 1;
                }
            }
            summary
        });
        let downstream = match &header_reception {
            Some(_) => header_flow(receivers, &downstream_delay),
            None => flow(
                receivers,
                |publisher| publisher == STUDIO,
                &sent,
                &downstream_delay,
                &studio_streams,
                &simulcast,
            ),
        };
        if let Some(summary) = &header_reception
            && !o.no_audio
            && summary.sites_without_audio > 0
        {
            self.warnings.push(format!(
                "{} sites received no audio in the window (header-only reception counts loss from the sequence numbers of what arrived)",
                summary.sites_without_audio
            ));
        }
        let upstream = (o.scenario == Scenario::Wall).then(|| {
            let expected: Vec<(u32, Kind)> = sent
                .keys()
                .filter(|(p, _)| *p != STUDIO && joined.contains(p))
                .copied()
                .collect();
            flow(
                peers
                    .iter()
                    .copied()
                    .filter(|p| p.status.id == STUDIO)
                    .collect(),
                |publisher| publisher != STUDIO,
                &sent,
                &upstream_delay,
                &expected,
                &simulcast,
            )
        });
        let received =
            downstream.received_packets + upstream.as_ref().map_or(0, |u| u.received_packets);
        let counter = |r: &Readings| {
            r.forwarded
                .or_else(|| r.health.as_ref().and_then(forwarded_counter))
        };
        let hub_reported = match (counter(start), counter(end)) {
            (Some(a), Some(b)) if window_s > 0.0 => Some(b.saturating_sub(a) as f64 / window_s),
            _ => None,
        };
        let forwarding = Forwarding {
            packets_per_second: if window_s > 0.0 {
                received as f64 / window_s
            } else {
                0.0
            },
            received_packets: received,
            published_packets: published,
            published_packets_per_second: if window_s > 0.0 {
                published as f64 / window_s
            } else {
                0.0
            },
            hub_reported_packets_per_second: hub_reported,
        };
        let mut hub_cost = HubCost {
            tcp_connections: end.tcp_connections,
            shed_level: end.shed_level,
            socket_drops: end.hub_socket_drops,
            socket_drops_in_window: grown(start.hub_socket_drops, end.hub_socket_drops),
            rtcp_shed: end.rtcp_shed,
            rtcp_shed_in_window: grown(start.rtcp_shed, end.rtcp_shed),
            datagrams_sent_in_window: grown(start.datagrams_sent, end.datagrams_sent),
            datagram_messages_in_window: grown(start.datagram_messages, end.datagram_messages),
            ..HubCost::default()
        };
        hub_cost.datagrams_per_message = match (
            hub_cost.datagrams_sent_in_window,
            hub_cost.datagram_messages_in_window,
        ) {
            (Some(d), Some(m)) if m > 0 => Some(d as f64 / m as f64),
            _ => None,
        };
        if let (Some(a), Some(b)) = (&start.hub, &end.hub) {
            let cpu = b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e9;
            hub_cost.measured = true;
            hub_cost.cpu_seconds = cpu;
            hub_cost.cores_busy = if window_s > 0.0 { cpu / window_s } else { 0.0 };
            hub_cost.cpu_us_per_forwarded_packet =
                (received > 0).then(|| cpu * 1e6 / received as f64);
            hub_cost.cpu_ms_per_site_second = (joins.succeeded > 0 && window_s > 0.0)
                .then(|| cpu * 1e3 / window_s / joins.succeeded as f64);
            hub_cost.rss_window_start_bytes = Some(a.rss_bytes);
            hub_cost.rss_window_end_bytes = Some(b.rss_bytes);
            hub_cost.threads = Some(b.threads);
            if let Some(before) = &before_joins.hub {
                hub_cost.rss_before_joins_bytes = Some(before.rss_bytes);
                let connected = joins.succeeded.max(1) as f64;
                hub_cost.rss_per_site_bytes =
                    Some(b.rss_bytes.saturating_sub(before.rss_bytes) as f64 / connected);
                if let (Some(end), Some(start)) = (b.rss_anon_bytes, before.rss_anon_bytes) {
                    hub_cost.rss_anon_per_site_bytes =
                        Some(end.saturating_sub(start) as f64 / connected);
                }
                if let (Some(end), Some(start)) = (b.rss_file_bytes, before.rss_file_bytes) {
                    hub_cost.rss_file_growth_bytes = Some(end as i64 - start as i64);
                }
            }
        } else if self.hub_pid.is_some() {
            self.warnings
                .push("the hub's /proc entries could not be read".to_owned());
        }
        let mut floor_ratio = BTreeMap::new();
        if let (Some(floor), Some(us)) = (&floor, hub_cost.cpu_us_per_forwarded_packet) {
            for v in &floor.variants {
                if v.ns_per_packet > 0.0 {
                    floor_ratio.insert(v.name.to_owned(), us * 1000.0 / v.ns_per_packet);
                }
            }
        }
        let studio = peers.iter().find(|p| p.status.id == STUDIO);
        let generator = Generator {
            engine_threads: threads.len(),
            cpu_seconds_window: match (&start.generator, &end.generator) {
                (Some(a), Some(b)) => b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e9,
                _ => 0.0,
            },
            engine_thread_cpu_seconds: threads.iter().map(|t| t.cpu_ns as f64 / 1e9).collect(),
            late_media_timers: threads.iter().map(|t| t.late_media_timers).sum(),
            send_would_block: threads.iter().map(|t| t.send_would_block).sum(),
            send_errors: threads.iter().map(|t| t.send_errors).sum(),
            injected_drops: peers.iter().map(|p| p.dropped_injected).sum(),
            injected_down_drops: peers.iter().map(|p| p.dropped_down_injected).sum(),
            studio_rtp_datagrams_sent: studio.map_or(0, |s| s.rtp_datagrams_sent),
            keyframe_requests_to_studio: studio.map_or(0, |s| s.keyframe_requests),
            unstamped_packets: peers.iter().map(|p| p.unstamped).sum(),
        };
        if generator.late_media_timers > 0 {
            self.warnings.push(format!(
                "the generator fell behind its media schedule {} times: it is overloaded, figures understate the load",
                generator.late_media_timers
            ));
        }
        for failed in &mut joins.failed_sites {
            let late = peers
                .iter()
                .find(|p| p.status.id == failed.site)
                .and_then(|p| p.status.first_media_ns);
            failed.media_after_deadline_ms =
                late.map(|ns| ns.saturating_sub(self.join_deadline_ns) as f64 / 1e6);
            if records
                .iter()
                .any(|r| r.id == failed.site && r.hub_connected_ns.is_some())
            {
                failed.hub_saw_media_connected = true;
            }
        }
        for r in records {
            for code in &r.later_errors {
                *joins.later_errors.entry(code.clone()).or_default() += 1;
            }
        }
        joins.dropped_after_join = peers
            .iter()
            .filter(|p| p.status.first_media_ns.is_some())
            .filter(|p| p.status.disconnected || p.status.closed && p.status.error.is_some())
            .count()
            + records.iter().filter(|r| r.closed_by_hub).count();
        let hub_view = console.as_ref().and_then(HubView::from_console);
        if let Some(audio_only) = hub_view
            .as_ref()
            .and_then(|v| v.sites_by_state.get("audio_only").copied())
            .filter(|n| *n > 0)
        {
            self.warnings.push(format!(
                "the hub had {audio_only} sites on audio only (its bandwidth allocation): their missing video is the hub's choice, not packet loss"
            ));
        }
        let kernel_udp = match (&start.udp, &end.udp) {
            (Some(a), Some(b)) => Some(b.since(a)),
            _ => None,
        };
        let provinces: Vec<crate::tree::ProvinceCost> = self
            .tree
            .as_ref()
            .map(|tree| {
                tree.provinces
                    .iter()
                    .enumerate()
                    .map(|(p, province)| {
                        let sample = |r: &Readings| r.provinces.get(p).copied().flatten();
                        let cpu = match (sample(start), sample(end)) {
                            (Some(a), Some(b)) => b.cpu_ns.saturating_sub(a.cpu_ns) as f64 / 1e9,
                            _ => 0.0,
                        };
                        crate::tree::ProvinceCost {
                            name: province.name.clone(),
                            sites: (1..=o.sites)
                                .filter(|i| {
                                    crate::tree::province_of_site(*i, tree.provinces.len()) == p + 1
                                })
                                .count(),
                            cpu_seconds: cpu,
                            cores_busy: if window_s > 0.0 { cpu / window_s } else { 0.0 },
                            rss_bytes: sample(end).map(|s| s.rss_bytes),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let provinces_cpu: f64 = provinces.iter().map(|p| p.cpu_seconds).sum();
        let mut machine = machine();
        machine.load_average = start.load;
        if let (Some(a), Some(b)) = (&start.machine, &end.machine)
            && window_s > 0.0
        {
            let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64 / 1e9 / window_s;
            let ours =
                (hub_cost.cpu_seconds + provinces_cpu + generator.cpu_seconds_window) / window_s;
            machine.busy_cores_window = Some(busy);
            machine.other_busy_cores_window = Some((busy - ours).max(0.0));
            if busy - ours > 0.25 {
                self.warnings.push(format!(
                    "other processes kept {:.2} cores busy during the window: delay and loss are not the hub's alone",
                    busy - ours
                ));
            }
        }
        let mut report = Report {
            scenario: o.scenario.name().to_owned(),
            sites_requested: o.sites,
            started_unix_ms: self.started_unix_ms,
            machine,
            settings: Settings {
                window_s,
                warmup_s: o.warmup,
                engine_threads: o.threads.max(1),
                video_bitrate_bps: self.studio_video.bitrate_bps,
                video_fps: self.studio_video.fps,
                keyframe_every_s: self.studio_video.keyframe_every.as_secs_f64(),
                audio: !o.no_audio,
                site_video_bitrate_bps: (o.scenario == Scenario::Wall)
                    .then_some(o.site_video_kbps * 1000),
                drop_percent: o.drop_percent,
                bad_joins: o.bad_joins,
                join_rate_per_s: (o.scenario != Scenario::JoinStorm).then_some(o.join_rate),
                simulcast: o.simulcast,
                links: self.classes.clone(),
                receive_mode: o.receive.name().to_owned(),
                arrival: o.arrival.name().to_owned(),
            },
            join_mode: join_mode.to_owned(),
            hub: HubInfo {
                url: self.hub.http(),
                pid: self.hub_pid,
                spawned: self.spawned,
                cpus: o.hub_cpus.clone(),
                workers: o.hub_workers,
                health_start: start.health.clone(),
                health_end: end.health.clone(),
            },
            joins,
            published: published_streams,
            downstream: Some(downstream),
            header_reception,
            upstream,
            link_classes,
            forwarding,
            hub_view,
            hub_cost,
            floor,
            floor_ratio,
            generator,
            kernel_udp,
            targets: Vec::new(),
            warnings: std::mem::take(&mut self.warnings),
            provinces,
        };
        report.check_targets();
        report
    }
}

/// What a counter read at the window's start and end grew by, where both were read.
fn grown(start: Option<u64>, end: Option<u64>) -> Option<u64> {
    Some(end?.saturating_sub(start?))
}

/// A forwarded-packets counter in the hub's health document, if it has one.
fn forwarded_counter(health: &serde_json::Value) -> Option<u64> {
    health
        .get("packets_forwarded")
        .or_else(|| health.pointer("/media/packets_forwarded"))
        .and_then(serde_json::Value::as_u64)
}

/// The machine the run is on, from /proc.
fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown".to_owned(), |m| m.trim().to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or("unknown".to_owned(), |k| k.trim().to_owned());
    Machine {
        // Every CPU of the machine, not only those this process may run on (taskset).
        cpus: cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count()
            .max(1),
        cpu_model,
        kernel,
        load_average: None,
        busy_cores_window: None,
        other_busy_cores_window: None,
    }
}
