//! The report as the table printed on stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Report;

impl Report {
    /// The readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "diemcau-loadgen {} — {} sites requested, hub {} (pid {}), join mode {}",
            self.scenario,
            self.sites_requested,
            self.hub.url,
            self.hub.pid.map_or("?".to_owned(), |p| p.to_string()),
            self.join_mode
        );
        let _ = writeln!(
            t,
            "machine: {} CPUs, {}; window {:.1} s after {:.1} s warm-up; {} engine thread(s)",
            self.machine.cpus,
            self.machine.cpu_model,
            self.settings.window_s,
            self.settings.warmup_s,
            self.settings.engine_threads
        );
        if let (Some(busy), Some(other)) = (
            self.machine.busy_cores_window,
            self.machine.other_busy_cores_window,
        ) {
            let _ = writeln!(
                t,
                "machine busy in window: {busy:.2} cores, of which {other:.2} by other processes (load average {:.2})",
                self.machine.load_average.unwrap_or(0.0)
            );
        }
        if let Some(h) = &self.header_reception {
            let c = &h.counts;
            let _ = writeln!(
                t,
                "receive mode: headers, arrivals {} ({} sites counted from RTP headers, 1 packet in {} unprotected: {} sampled, {} failed; {} keyframes' first packets sampled of {} large frames, {} failed; {} repairs, {} reordered, {} redundant, {} padding, {} NACKed, {} transport-wide feedbacks)",
                self.settings.arrival,
                h.sites,
                h.sample_every,
                c.sampled,
                c.sample_failures,
                c.keyframes_sampled,
                c.keyframe_candidates,
                c.keyframe_sample_failures,
                c.repairs,
                c.reordered,
                c.redundant_repairs,
                c.padding,
                c.nacked_packets,
                c.twcc_feedbacks
            );
        } else {
            let _ = writeln!(t, "receive mode: {}", self.settings.receive_mode);
        }
        let j = &self.joins;
        let _ = writeln!(t);
        row(
            &mut t,
            "sites connected (media received)",
            format!("{} of {}", j.succeeded, j.attempted),
        );
        row(
            &mut t,
            "failed joins",
            if j.failures.is_empty() {
                "0".to_owned()
            } else {
                let reasons: Vec<String> = j
                    .failures
                    .iter()
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect();
                format!("{} ({})", j.failed, reasons.join(", "))
            },
        );
        if let Some(f) = &j.studio_failure {
            row(&mut t, "studio failure", f.clone());
        }
        if let Some(ms) = j.time_to_all_media_ms {
            row(
                &mut t,
                "time until every site had media",
                format!("{:.2} s", ms / 1000.0),
            );
        }
        if let Some(p) = &j.time_to_media {
            row(
                &mut t,
                "per-site join to media p50 / p99 / max",
                format!("{:.0} / {:.0} / {:.0} ms", p.p50_ms, p.p99_ms, p.max_ms),
            );
        }
        if j.dropped_after_join > 0 {
            row(
                &mut t,
                "sites dropped after joining",
                j.dropped_after_join.to_string(),
            );
        }
        if !j.later_errors.is_empty() {
            row(
                &mut t,
                "hub errors after setup",
                format!("{:?}", j.later_errors),
            );
        }
        for (name, flow) in [
            ("studio → sites", &self.downstream),
            ("sites → studio", &self.upstream),
        ] {
            let Some(f) = flow else { continue };
            let _ = writeln!(t);
            let _ = writeln!(
                t,
                "{name}: {} receivers, {} streams",
                f.receivers, f.streams
            );
            row(
                &mut t,
                "  packets expected / received",
                format!("{} / {}", f.expected_packets, f.received_packets),
            );
            row(
                &mut t,
                "  loss (audio / video)",
                format!(
                    "{:.3} % ({:.3} % / {:.3} %), {} receivers over 1 %",
                    f.loss_percent,
                    f.audio_loss_percent,
                    f.video_loss_percent,
                    f.receivers_over_1pct_loss
                ),
            );
            row(
                &mut t,
                "  of what the hub forwarded",
                format!(
                    "{:.3} % lost ({} of {} packets)",
                    f.forwarded_loss_percent,
                    f.forwarded_lost_packets,
                    f.forwarded_expected_packets
                ),
            );
            row(
                &mut t,
                "  late (repaired or reordered)",
                format!(
                    "{} ({:.3} %), {} duplicates",
                    f.late_packets, f.late_percent, f.duplicates
                ),
            );
            row(
                &mut t,
                "  delay p50 / p99 / max",
                format!(
                    "{:.2} / {:.2} / {:.1} ms",
                    f.delay.p50_ms, f.delay.p99_ms, f.delay.max_ms
                ),
            );
            row(
                &mut t,
                "  jitter mean / max",
                format!("{:.2} / {:.2} ms", f.jitter_mean_ms, f.jitter_max_ms),
            );
        }
        for c in &self.link_classes {
            let _ = writeln!(t);
            let _ = writeln!(
                t,
                "link class {} ({} %, {}): {} sites, {} with media",
                c.name,
                trim(c.share_percent),
                c.link,
                c.sites,
                c.sites_with_media
            );
            let d = &c.downstream;
            row(
                &mut t,
                "  loss audio / video, late",
                format!(
                    "{:.3} % / {:.3} %, {:.2} % late",
                    d.audio_loss_percent, d.video_loss_percent, d.late_percent
                ),
            );
            row(
                &mut t,
                "  delay p50 / p99 / max",
                format!(
                    "{:.1} / {:.1} / {:.1} ms",
                    d.delay.p50_ms, d.delay.p99_ms, d.delay.max_ms
                ),
            );
            row(
                &mut t,
                "  video received per site",
                format!(
                    "{:.0} kbit/s mean ({:.0}–{:.0}); audio {:.0} kbit/s",
                    c.video_kbps.mean, c.video_kbps.min, c.video_kbps.max, c.audio_kbps.mean
                ),
            );
            row(
                &mut t,
                "  receiving at the window's end",
                format!(
                    "{}; {} layer switches",
                    counts(&c.layer_at_end),
                    c.layer_switches
                ),
            );
            let hub = match (c.hub_bitrate_out_kbps_mean, c.hub_loss_permille_mean) {
                (Some(out), Some(loss)) => format!(
                    "; console {} (out {out:.0} kbit/s, loss {loss:.1} ‰, rtt {:.0} ms)",
                    counts(&c.hub_states),
                    c.hub_rtt_ms_mean.unwrap_or(0.0)
                ),
                _ => String::new(),
            };
            row(
                &mut t,
                "  hub's view",
                format!("{} told audio only{hub}", c.hub_said_audio_only),
            );
            if c.downlink.offered > 0 {
                row(
                    &mut t,
                    "  link hub → site (whole run)",
                    format!(
                        "{} datagrams, {} lost, {} queue full, longest wait {:.0} ms",
                        c.downlink.offered,
                        c.downlink.lost,
                        c.downlink.queue_full,
                        c.downlink.max_queue_wait_us as f64 / 1000.0
                    ),
                );
            }
            if c.uplink.offered > 0 {
                row(
                    &mut t,
                    "  link site → hub (whole run)",
                    format!(
                        "{} datagrams, {} lost, {} queue full",
                        c.uplink.offered, c.uplink.lost, c.uplink.queue_full
                    ),
                );
            }
        }
        let _ = writeln!(t);
        let fw = &self.forwarding;
        row(
            &mut t,
            "packets forwarded per second",
            format!(
                "{:.0} (publishers wrote {:.0}/s{})",
                fw.packets_per_second,
                fw.published_packets_per_second,
                fw.hub_reported_packets_per_second
                    .map_or(String::new(), |h| format!(", hub says {h:.0}/s"))
            ),
        );
        if let Some(v) = &self.hub_view {
            row(
                &mut t,
                "hub's view (console)",
                format!(
                    "{:?}; out {:.1} Mbit/s; loss {:.1} ‰; rtt {:.0} ms",
                    v.sites_by_state,
                    v.bitrate_out_kbps_total as f64 / 1000.0,
                    v.mean_loss_permille,
                    v.mean_rtt_ms
                ),
            );
        }
        let h = &self.hub_cost;
        if h.measured {
            row(
                &mut t,
                "hub CPU",
                format!("{:.2} s ({:.2} cores busy)", h.cpu_seconds, h.cores_busy),
            );
            if let Some(us) = h.cpu_us_per_forwarded_packet {
                row(
                    &mut t,
                    "hub CPU per forwarded packet",
                    format!("{us:.2} µs"),
                );
            }
            if let Some(ms) = h.cpu_ms_per_site_second {
                row(&mut t, "hub CPU per site and second", format!("{ms:.2} ms"));
            }
            if let Some(level) = h.shed_level.filter(|l| *l > 0) {
                row(
                    &mut t,
                    "hub over capacity",
                    format!("shedding video, level {level} of 6"),
                );
            }
            if let Some(drops) = h.socket_drops {
                row(
                    &mut t,
                    "hub's UDP sockets dropped",
                    format!(
                        "{drops} datagrams since they opened, {} in the window",
                        h.socket_drops_in_window.unwrap_or(0)
                    ),
                );
            }
            if let Some(shed) = h.rtcp_shed.filter(|n| *n > 0) {
                row(
                    &mut t,
                    "RTCP the hub shed while behind",
                    format!(
                        "{shed} datagrams since it started, {} in the window",
                        h.rtcp_shed_in_window.unwrap_or(0)
                    ),
                );
            }
            if let (Some(d), Some(m), Some(per)) = (
                h.datagrams_sent_in_window,
                h.datagram_messages_in_window,
                h.datagrams_per_message,
            ) {
                row(
                    &mut t,
                    "hub's UDP sends in the window",
                    format!("{d} datagrams in {m} messages ({per:.2} a message)"),
                );
            }
            if let Some(n) = h.tcp_connections.filter(|n| *n > 0) {
                row(&mut t, "hub's ICE-TCP media connections", n.to_string());
            }
            if let Some(b) = h.rss_per_site_bytes {
                row(
                    &mut t,
                    "hub memory per connected site",
                    format!(
                        "{:.0} KiB (RSS {:.1} → {:.1} MiB)",
                        b / 1024.0,
                        h.rss_before_joins_bytes.unwrap_or(0) as f64 / 1048576.0,
                        h.rss_window_end_bytes.unwrap_or(0) as f64 / 1048576.0
                    ),
                );
            }
            if let (Some(anon), Some(file)) = (h.rss_anon_per_site_bytes, h.rss_file_growth_bytes) {
                row(
                    &mut t,
                    "of which private memory per site",
                    format!(
                        "{:.0} KiB (code and other file pages: {:+.1} MiB in all)",
                        anon / 1024.0,
                        file as f64 / 1048576.0
                    ),
                );
            }
        } else {
            row(
                &mut t,
                "hub CPU and memory",
                "not measured (no --hub-pid)".to_owned(),
            );
        }
        if !self.provinces.is_empty() {
            let _ = writeln!(t);
            let _ = writeln!(
                t,
                "tree: the hub above is the root; its {} provincial hubs:",
                self.provinces.len()
            );
            for p in &self.provinces {
                row(
                    &mut t,
                    &format!("  {} ({} communes)", p.name, p.sites),
                    format!(
                        "{:.2} s CPU ({:.2} cores busy), RSS {:.1} MiB",
                        p.cpu_seconds,
                        p.cores_busy,
                        p.rss_bytes.unwrap_or(0) as f64 / 1048576.0
                    ),
                );
            }
        }
        if let Some(floor) = &self.floor {
            let _ = writeln!(t);
            let _ = writeln!(
                t,
                "floor ({} destinations, {:.0}-byte datagrams, GSO up to {} segments):",
                floor.destinations, floor.mean_datagram_bytes, floor.gso_max_segments
            );
            for v in &floor.variants {
                let ratio = self
                    .floor_ratio
                    .get(v.name)
                    .map_or(String::new(), |r| format!("   hub = {r:.2}x"));
                row(
                    &mut t,
                    &format!("  {}", v.name),
                    format!("{:.2} µs/packet{ratio}", v.ns_per_packet / 1000.0),
                );
            }
        }
        let g = &self.generator;
        let _ = writeln!(t);
        row(
            &mut t,
            "generator CPU in window",
            format!(
                "{:.2} s; late media timers {}, send would-block {}, injected drops {} (studio) / {} (sites)",
                g.cpu_seconds_window,
                g.late_media_timers,
                g.send_would_block,
                g.injected_drops,
                g.injected_down_drops
            ),
        );
        if let Some(k) = &self.kernel_udp {
            row(
                &mut t,
                "kernel UDP in window",
                format!(
                    "{} datagrams in, receive buffer overflows {}, send buffer errors {}",
                    k.in_datagrams, k.rcvbuf_errors, k.sndbuf_errors
                ),
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(t);
            let _ = writeln!(t, "targets:");
            for target in &self.targets {
                let verdict = match target.met {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "n/a at this size",
                };
                let _ = writeln!(
                    t,
                    "  {:<44} {:<36} {:<28} {verdict}",
                    target.name, target.target, target.measured
                );
            }
        }
        for w in &self.warnings {
            let _ = writeln!(t, "warning: {w}");
        }
        t
    }
}

/// `f: 35, q: 5`.
fn counts(map: &BTreeMap<String, usize>) -> String {
    if map.is_empty() {
        return "-".to_owned();
    }
    map.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn row(t: &mut String, name: &str, value: String) {
    let _ = writeln!(t, "{name:<42} {value}");
}
