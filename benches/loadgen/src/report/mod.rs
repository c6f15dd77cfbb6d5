//! A run's results: the JSON document (`--json`) and the table printed on stdout, with the
//! targets from BENCHMARKS.md checked against the figures.//!
//! Layout: this file holds the document and its targets; `table` renders it as text.

mod table;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::floor::{self, FloorReport};
use crate::link::{LinkClass, LinkStats};
use crate::measure::Percentiles;
use crate::procfs::UdpCounters;

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub sites_requested: usize,
    pub started_unix_ms: u64,
    pub machine: Machine,
    pub settings: Settings,
    pub join_mode: String,
    pub hub: HubInfo,
    pub joins: Joins,
    /// Every stream published, with what it wrote in the window.
    pub published: Vec<crate::engine::SentStream>,
    /// Studio → sites.
    pub downstream: Option<Flow>,
    /// Header-only reception's own counts, when the sites used it.
    pub header_reception: Option<HeaderReceptionSummary>,
    /// Sites → studio (`wall`).
    pub upstream: Option<Flow>,
    /// Studio → sites, per class of emulated link (`--link`); empty without links.
    pub link_classes: Vec<LinkClassReport>,
    pub forwarding: Forwarding,
    /// The hub's own view of the sites at the window's end (the chair's `console`), when the
    /// hub sends one.
    pub hub_view: Option<HubView>,
    pub hub_cost: HubCost,
    pub floor: Option<FloorReport>,
    /// Hub CPU per forwarded packet divided by the floor's, per floor variant.
    pub floor_ratio: BTreeMap<String, f64>,
    pub generator: Generator,
    /// The kernel's UDP counters over the window (all sockets of the machine).
    pub kernel_udp: Option<UdpCounters>,
    pub targets: Vec<Target>,
    /// Things that make the figures doubtful, in words.
    pub warnings: Vec<String>,
    /// With `--provinces`: what each provincial hub cost over the window (the hub figures
    /// above are the root's).
    pub provinces: Vec<crate::tree::ProvinceCost>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    /// 1-minute load average when the window opened.
    pub load_average: Option<f64>,
    /// Cores busy over the window, machine-wide.
    pub busy_cores_window: Option<f64>,
    /// Of which neither the hub nor the generator: other processes sharing the machine.
    pub other_busy_cores_window: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Settings {
    pub window_s: f64,
    pub warmup_s: f64,
    pub engine_threads: usize,
    pub video_bitrate_bps: u64,
    pub video_fps: u32,
    pub keyframe_every_s: f64,
    pub audio: bool,
    pub site_video_bitrate_bps: Option<u64>,
    pub drop_percent: f64,
    pub bad_joins: usize,
    pub join_rate_per_s: Option<f64>,
    /// The studio published three simulcast layers.
    pub simulcast: bool,
    /// The link classes the sites were spread over (`--link`).
    pub links: Vec<LinkClass>,
    /// How the sites counted what they received: `full` (every packet through str0m, its
    /// stamp read) or `headers` (from the clear RTP headers; see `header_reception`).
    pub receive_mode: String,
    /// In header-only reception, when a datagram counted as arrived: `handled` (when the
    /// engine's thread read it) or `kernel` (the kernel's receive stamp).
    pub arrival: String,
}

/// What the sites counted in header-only reception (`--receive headers`), summed over them.
/// `downstream` then comes from the sequence numbers: loss is the gaps in what the hub sent
/// each site, as a receiver's RTCP reports it, and the delay is that of the sampled packets
/// (one in [`HeaderReceptionSummary::sample_every`] per stream, and each keyframe's first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderReceptionSummary {
    pub sites: usize,
    /// One media packet in this many per stream was unprotected for its stamp.
    pub sample_every: u64,
    /// Joined sites that received no audio in the window.
    pub sites_without_audio: usize,
    pub counts: crate::engine::HeaderCounts,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HubInfo {
    pub url: String,
    pub pid: Option<u32>,
    pub spawned: bool,
    pub cpus: Option<String>,
    pub workers: Option<usize>,
    /// `GET /api/health` at the window's start and end.
    pub health_start: Option<serde_json::Value>,
    pub health_end: Option<serde_json::Value>,
}

/// How the joins went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Joins {
    pub attempted: usize,
    /// Sites that received the studio's media before the join deadline.
    pub succeeded: usize,
    pub failed: usize,
    /// Failures by reason: `signalling:<code>`, `ice_timeout`, `dtls_failure`, `no_media`...
    pub failures: BTreeMap<String, usize>,
    /// Up to 50 failed sites with their reason and detail.
    pub failed_sites: Vec<FailedJoin>,
    /// Of which were asked for (`--bad-joins`).
    pub injected_bad_joins: usize,
    pub studio_connected: bool,
    pub studio_failure: Option<String>,
    /// From the first site's join to the last site's first media packet, when every site
    /// (but the injected bad joins) got media.
    pub time_to_all_media_ms: Option<f64>,
    /// From the first site's join to the last successful site's first media packet.
    pub time_to_last_media_ms: Option<f64>,
    /// Per site, from opening its WebSocket to its first media packet.
    pub time_to_media: Option<Percentiles>,
    /// Sites whose connection dropped after they had joined.
    pub dropped_after_join: usize,
    /// Hub error codes received after setup, by code.
    pub later_errors: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailedJoin {
    pub site: u32,
    pub reason: String,
    pub detail: String,
    /// The hub said `media_state: connected` for this site (its side of ICE and DTLS is up).
    pub hub_saw_media_connected: bool,
    /// When the site did get media after all, ms after the join deadline; `None`: never.
    pub media_after_deadline_ms: Option<f64>,
}

/// Media in one direction, for packets sent inside the window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Flow {
    pub receivers: usize,
    pub streams: usize,
    pub expected_packets: u64,
    pub received_packets: u64,
    pub lost_packets: u64,
    pub loss_percent: f64,
    pub audio_loss_percent: f64,
    pub video_loss_percent: f64,
    /// Arrived after a later packet (repaired by retransmission, or reordered).
    pub late_packets: u64,
    pub late_percent: f64,
    pub duplicates: u64,
    pub jitter_mean_ms: f64,
    pub jitter_max_ms: f64,
    /// Sender to receiver through the hub (includes both endpoints' own processing).
    pub delay: Percentiles,
    /// Receivers that missed more than 1 % of their packets.
    pub receivers_over_1pct_loss: usize,
    /// Of the packets the hub forwarded (in full reception, the span of the sequence numbers
    /// it gave each received stream, [`crate::measure::ForwardedSpan`]; in header-only
    /// reception, the same as `expected_packets`), those that did not arrive. `lost_packets`
    /// also counts what the hub did not forward: pictures it shed or turned off for a
    /// receiver's link, as a chair's wall does while the chair's estimate climbs.
    pub forwarded_expected_packets: u64,
    pub forwarded_lost_packets: u64,
    pub forwarded_loss_percent: f64,
    /// Per receiver (participant index: 0 is the studio, i is site i).
    pub per_receiver: Vec<ReceiverSummary>,
}

/// What the sites of one link class received from the studio, and what the hub chose for them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkClassReport {
    pub name: String,
    /// The link in words.
    pub link: String,
    pub share_percent: f64,
    pub sites: usize,
    /// Sites that received media before the join deadline.
    pub sites_with_media: usize,
    /// Studio → these sites: loss, late packets, jitter, delay (through the link and the hub).
    /// With simulcast, video loss counts holes in what the hub forwarded, not the layers it
    /// chose not to send.
    pub downstream: Flow,
    /// Studio video received per site over the window (RTP payload, kbit/s).
    pub video_kbps: Spread,
    /// Audio received per site over the window (RTP payload, kbit/s).
    pub audio_kbps: Spread,
    /// Sites by what they were receiving at the window's end: a layer's rid (`q`, `h`, `f`;
    /// `single` without simulcast), `audio_only` (audio arriving, no video in the window's
    /// last 1.5 s) or `nothing`.
    pub layer_at_end: BTreeMap<String, usize>,
    /// Studio video packets received in the window, by layer.
    pub video_packets_by_layer: BTreeMap<String, u64>,
    /// Layer changes seen by these sites in the window.
    pub layer_switches: u64,
    /// Sites whose last `reception` message from the hub said audio only.
    pub hub_said_audio_only: usize,
    /// The hub's `console` states of these sites at the window's end.
    pub hub_states: BTreeMap<String, usize>,
    /// The hub's mean outgoing bitrate, loss and RTT for these sites (`console`).
    pub hub_bitrate_out_kbps_mean: Option<f64>,
    pub hub_loss_permille_mean: Option<f64>,
    pub hub_rtt_ms_mean: Option<f64>,
    /// The emulated links, all the run (not only the window), summed over the sites.
    pub downlink: LinkStats,
    pub uplink: LinkStats,
}

/// Mean, lowest and highest of a per-site figure.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        Spread {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }
}

/// One receiver's share of a [`Flow`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReceiverSummary {
    pub id: u32,
    pub expected_packets: u64,
    pub received_packets: u64,
    pub late_packets: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Forwarding {
    /// Packets received by all participants per second (what the hub forwarded and delivered).
    pub packets_per_second: f64,
    /// Packets received by all participants in the window.
    pub received_packets: u64,
    /// Packets the publishers wrote in the window.
    pub published_packets: u64,
    /// Packets the publishers wrote per second.
    pub published_packets_per_second: f64,
    /// Forwarded packets per second as the hub counts them (`/metrics`), when it does.
    pub hub_reported_packets_per_second: Option<f64>,
}

/// What the hub says about the sites (protocol.md `console`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HubView {
    pub sites_by_state: BTreeMap<String, usize>,
    /// Sum over sites of the hub's outgoing bitrate.
    pub bitrate_out_kbps_total: u64,
    pub mean_loss_permille: f64,
    pub mean_rtt_ms: f64,
}

impl HubView {
    pub fn from_console(console: &serde_json::Value) -> Option<HubView> {
        let sites = ConsoleSite::all(console)?;
        let mut view = HubView::default();
        let (mut loss, mut rtt) = (0.0, 0.0);
        for site in &sites {
            *view
                .sites_by_state
                .entry(site.state.to_owned())
                .or_default() += 1;
            view.bitrate_out_kbps_total += site.bitrate_out_kbps as u64;
            loss += site.loss_permille;
            rtt += site.rtt_ms;
        }
        if !sites.is_empty() {
            view.mean_loss_permille = loss / sites.len() as f64;
            view.mean_rtt_ms = rtt / sites.len() as f64;
        }
        Some(view)
    }
}

/// One site of the hub's `console` message (protocol.md), the fields the report reads; a
/// missing state reads `unknown`, a missing figure 0.
#[derive(Debug, Clone, Copy)]
pub struct ConsoleSite<'a> {
    pub participant: Option<&'a str>,
    pub state: &'a str,
    pub bitrate_out_kbps: f64,
    pub loss_permille: f64,
    pub rtt_ms: f64,
}

impl<'a> ConsoleSite<'a> {
    /// The sites of a `console` message; `None` when it has no `sites` list.
    pub fn all(console: &'a serde_json::Value) -> Option<Vec<ConsoleSite<'a>>> {
        let sites = console.get("sites")?.as_array()?;
        Some(sites.iter().map(ConsoleSite::read).collect())
    }

    fn read(site: &'a serde_json::Value) -> ConsoleSite<'a> {
        let text = |key: &str| site.get(key).and_then(serde_json::Value::as_str);
        let number = |key: &str| {
            site.get(key)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(0.0)
        };
        ConsoleSite {
            participant: text("participant"),
            state: text("state").unwrap_or("unknown"),
            bitrate_out_kbps: number("bitrate_out_kbps"),
            loss_permille: number("loss_permille"),
            rtt_ms: number("rtt_ms"),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HubCost {
    pub measured: bool,
    pub cpu_seconds: f64,
    /// Hub CPU time over wall time: 1.0 is one core busy.
    pub cores_busy: f64,
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// Hub CPU per connected site and second of the window, in ms: what a site costs the
    /// hub whatever layer it gets (weak sites get fewer packets, and cost timers, pacing and
    /// retransmissions all the same).
    pub cpu_ms_per_site_second: Option<f64>,
    pub rss_before_joins_bytes: Option<u64>,
    pub rss_window_start_bytes: Option<u64>,
    pub rss_window_end_bytes: Option<u64>,
    /// (RSS at the window's end - RSS before the joins) / connected sites.
    pub rss_per_site_bytes: Option<f64>,
    /// The same for the private memory alone (RssAnon: heap, stacks): what the sites hold,
    /// without the binary's code pages that the first media brings in (RssFile).
    pub rss_anon_per_site_bytes: Option<f64>,
    /// RssFile at the window's end - RssFile before the joins: the binary's code and the
    /// other mapped files first touched after the joins, counted once in `rss_per_site_bytes`.
    pub rss_file_growth_bytes: Option<i64>,
    pub threads: Option<u64>,
    /// ICE-TCP media connections the hub held at the window's end (its `/metrics`).
    pub tcp_connections: Option<u64>,
    /// How much video the hub shed at the window's end to keep up (its `/metrics`, the
    /// highest worker's level: 0 none, 6 sound only), when it says.
    pub shed_level: Option<u64>,
    /// Datagrams the kernel dropped at the hub's UDP sockets (their receive buffers full)
    /// from when they opened to the window's end: the joins and the warm-up included. A
    /// datagram dropped there never reached the hub, whatever it would have done with it.
    pub socket_drops: Option<u64>,
    /// The same within the window.
    pub socket_drops_in_window: Option<u64>,
    /// RTCP datagrams the hub read and dropped unhandled while its socket was behind, from
    /// its start to the window's end (its `/metrics`, when it says): shed so that the
    /// kernel does not drop media and handshakes with the rest.
    pub rtcp_shed: Option<u64>,
    /// The same within the window.
    pub rtcp_shed_in_window: Option<u64>,
    /// UDP datagrams the hub sent within the window (its `/metrics`, when it says): the
    /// forwarded packets, the RTCP and the handshakes.
    pub datagrams_sent_in_window: Option<u64>,
    /// The messages they left in within the window: a run of datagrams to one site goes as
    /// one message with segmentation offload (GSO), as the floor's `srtp_gcm_gso` sends a
    /// frame's packets to one destination.
    pub datagram_messages_in_window: Option<u64>,
    /// The one over the other: 1.0 where every datagram went alone.
    pub datagrams_per_message: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Generator {
    pub engine_threads: usize,
    /// The generator's whole process over the window.
    pub cpu_seconds_window: f64,
    pub engine_thread_cpu_seconds: Vec<f64>,
    pub late_media_timers: u64,
    pub send_would_block: u64,
    pub send_errors: u64,
    /// RTP datagrams dropped by `--drop-percent` (the studio's outgoing).
    pub injected_drops: u64,
    /// RTP datagrams dropped by `--drop-down-percent` (the sites' incoming).
    pub injected_down_drops: u64,
    pub studio_rtp_datagrams_sent: u64,
    pub keyframe_requests_to_studio: u64,
    pub unstamped_packets: u64,
}

/// A target from BENCHMARKS.md and whether this run met it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None` when this run does not measure it.
    pub met: Option<bool>,
}

impl Report {
    /// Fills `targets` from the figures.
    pub fn check_targets(&mut self) {
        let mut targets = Vec::new();
        if let (Some(ratio), Some(us)) = (
            self.floor_ratio.get(floor::GCM_GSO),
            self.hub_cost.cpu_us_per_forwarded_packet,
        ) {
            targets.push(Target {
                name: "hub cpu per forwarded packet".to_owned(),
                target: "<= 2x the SRTP-GCM + GSO floor, <= 5 µs".to_owned(),
                measured: format!("{ratio:.2}x, {us:.2} µs"),
                met: Some(*ratio <= 2.0 && us <= 5.0),
            });
        }
        if self.scenario == "fanout"
            && let Some(down) = &self.downstream
        {
            let at_scale = self.sites_requested >= 1000;
            targets.push(Target {
                name: format!("{} sites: loss", self.sites_requested),
                target: "< 0.1 % (1,000 sites, hub on one core)".to_owned(),
                measured: format!("{:.3} %", down.loss_percent),
                met: at_scale.then_some(down.loss_percent < 0.1),
            });
            targets.push(Target {
                name: format!("{} sites: p99 added delay", self.sites_requested),
                target: "< 50 ms (1,000 sites, hub on one core)".to_owned(),
                measured: format!("{:.1} ms", down.delay.p99_ms),
                met: at_scale.then_some(down.delay.p99_ms < 50.0),
            });
        }
        if self.scenario == "join-storm" {
            let all = self.joins.time_to_all_media_ms;
            let failed = self.joins.failed - self.joins.injected_bad_joins.min(self.joins.failed);
            targets.push(Target {
                name: format!("{} sites join at once", self.sites_requested),
                target: "500 within 10 s, no failed handshake".to_owned(),
                measured: format!(
                    "{} in {}, {failed} failed",
                    self.joins.succeeded,
                    all.map_or("-".to_owned(), |ms| format!("{:.1} s", ms / 1000.0))
                ),
                met: (self.sites_requested >= 500)
                    .then(|| failed == 0 && all.is_some_and(|ms| ms <= 10_000.0)),
            });
        }
        if let Some(per_site) = self.hub_cost.rss_per_site_bytes {
            targets.push(Target {
                name: "hub memory per connected site".to_owned(),
                target: "<= 256 KiB".to_owned(),
                measured: format!("{:.0} KiB", per_site / 1024.0),
                met: Some(per_site <= 256.0 * 1024.0),
            });
        }
        self.targets = targets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu_target(us: f64, floor_ns: f64) -> Option<bool> {
        let mut report = Report {
            scenario: "fanout".to_owned(),
            ..Report::default()
        };
        report.hub_cost.cpu_us_per_forwarded_packet = Some(us);
        report
            .floor_ratio
            .insert(floor::GCM_GSO.to_owned(), us * 1000.0 / floor_ns);
        report.check_targets();
        report
            .targets
            .iter()
            .find(|t| t.name == "hub cpu per forwarded packet")
            .and_then(|t| t.met)
    }

    #[test]
    fn the_cpu_target_is_twice_the_gso_floor_and_five_microseconds() {
        assert_eq!(cpu_target(3.4, 1700.0), Some(true));
        assert_eq!(cpu_target(3.6, 1700.0), Some(false), "over twice the floor");
        assert_eq!(cpu_target(5.2, 2800.0), Some(false), "over 5 µs");
    }

    #[test]
    fn no_cpu_target_without_the_hubs_cpu() {
        let mut report = Report::default();
        report.floor_ratio.insert(floor::GCM_GSO.to_owned(), 0.0);
        report.check_targets();
        assert!(report.targets.is_empty());
    }
}
