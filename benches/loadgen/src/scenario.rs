//! A run from start to report: set up the meeting, join the studio and the sites, warm up,
//! measure a window, leave, measure the floor, and turn what every peer counted into a
//! [`Report`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::{
    Engine, EngineConfig, PeerLink, PeerReport, PeerSpec, PeerStatus, STUDIO, ThreadReport,
};
use crate::floor::{self, FloorConfig};
use crate::http::{self, HubUrl};
use crate::hub_process::{SpawnConfig, SpawnedHub};
use crate::link::{self, LinkClass};
use crate::measure::{Histogram, Window};
use crate::media::{Clock, Kind, VideoProfile};
use crate::procfs::{self, MachineCpu, ProcessSample, UdpCounters};
use crate::report::{
    ConsoleSite, FailedJoin, Flow, Forwarding, Generator, HubCost, HubInfo, HubView, Joins,
    LinkClassReport, Machine, ReceiverSummary, Report, Settings, Spread,
};
use crate::setup::{self, JoinMode};
use crate::signaling::{Records, Session, SignallingRecord};
use crate::{JoinModeOption, Options, Scenario};

/// Runs `options.scenario` and returns its report. Every process and thread it started is
/// stopped before it returns.
pub async fn run(options: Options) -> Result<Report, String> {
    let started_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut spawned = match &options.spawn_hub {
        Some(binary) => {
            let config = SpawnConfig {
                binary: binary.clone(),
                cpus: options.hub_cpus.clone(),
                workers: options.hub_workers,
                log: options.hub_log.clone(),
                extra_args: options.hub_args.clone(),
            };
            Some(
                tokio::task::spawn_blocking(move || SpawnedHub::start(&config))
                    .await
                    .map_err(|e| e.to_string())??,
            )
        }
        None => None,
    };
    let hub = match &spawned {
        Some(s) => s.url.clone(),
        None => HubUrl::parse(&options.hub)?,
    };
    let hub_pid = spawned.as_ref().map(|s| s.pid).or(options.hub_pid);
    let result = Run::new(options, hub, hub_pid, spawned.is_some(), started_unix_ms)
        .execute()
        .await;
    if let Some(mut hub) = spawned.take() {
        let _ = tokio::task::spawn_blocking(move || hub.stop()).await;
    }
    result
}

struct Run {
    options: Options,
    hub: HubUrl,
    hub_pid: Option<u32>,
    spawned: bool,
    started_unix_ms: u64,
    clock: Clock,
    window: Arc<Window>,
    studio_video: VideoProfile,
    /// The `--link` classes, with a `direct` class for the sites their shares leave.
    classes: Vec<LinkClass>,
    /// Each site's class (site i at i - 1).
    site_class: Vec<Option<usize>>,
    warnings: Vec<String>,
    /// When the joins were judged (run clock, ns).
    join_deadline_ns: u64,
}

/// Hub and generator readings at one instant.
struct Readings {
    at: Instant,
    hub: Option<ProcessSample>,
    generator: Option<ProcessSample>,
    udp: Option<UdpCounters>,
    machine: Option<MachineCpu>,
    load: Option<f64>,
    health: Option<serde_json::Value>,
    /// The hub's own count of forwarded packets (`/metrics`), when it has one.
    forwarded: Option<u64>,
}

impl Run {
    fn new(
        options: Options,
        hub: HubUrl,
        hub_pid: Option<u32>,
        spawned: bool,
        started_unix_ms: u64,
    ) -> Run {
        let studio_video = VideoProfile {
            bitrate_bps: options.video_kbps * 1000,
            fps: options.fps.max(1),
            keyframe_every: Duration::from_secs_f64(options.keyframe_interval.max(0.1)),
            ..VideoProfile::studio()
        };
        let mut classes = options.links.clone();
        let mut warnings = Vec::new();
        if !classes.is_empty() {
            let total: f64 = classes.iter().map(|c| c.share_percent).sum();
            if total < 99.999 {
                classes.push(LinkClass::direct(100.0 - total));
            } else if total > 100.001 {
                warnings.push(format!(
                    "the --link shares add up to {total:.1} %: taken as weights"
                ));
            }
            if !options.simulcast {
                warnings.push(
                    "sites behind links but the studio sends one layer (no --simulcast): the hub can only send it or nothing".to_owned(),
                );
            }
        }
        let site_class = link::assign(&classes, options.sites);
        Run {
            options,
            hub,
            hub_pid,
            spawned,
            started_unix_ms,
            clock: Clock::new(),
            window: Window::new(),
            studio_video,
            classes,
            site_class,
            warnings,
            join_deadline_ns: 0,
        }
    }

    async fn read(&self) -> Readings {
        let health = match http::request(&self.hub, "GET", "/api/health", None, b"").await {
            Ok(r) if r.status == 200 => r.json().ok(),
            _ => None,
        };
        let forwarded = match http::request(&self.hub, "GET", "/metrics", None, b"").await {
            Ok(r) if r.status == 200 => {
                prometheus_counter(&r.text(), "diemcau_packets_forwarded_total")
            }
            _ => None,
        };
        Readings {
            at: Instant::now(),
            forwarded,
            hub: self.hub_pid.and_then(|pid| procfs::sample(pid).ok()),
            generator: procfs::sample(std::process::id()).ok(),
            udp: UdpCounters::read(),
            machine: MachineCpu::read(),
            load: procfs::load_average(),
            health,
        }
    }

    /// The link class of site `id`; `None` for the studio and sites without a link.
    fn class_of_site(&self, id: u32) -> Option<usize> {
        self.site_class
            .get((id as usize).wrapping_sub(1))
            .copied()
            .flatten()
    }

    fn site_spec(&self, id: u32) -> PeerSpec {
        let wall = self.options.scenario == Scenario::Wall;
        let link = self.class_of_site(id).and_then(|class| {
            let c = self.classes.get(class)?;
            Some(PeerLink {
                class,
                down: c.down.clone(),
                up: c.up.clone(),
            })
        });
        PeerSpec {
            id,
            audio: wall && self.options.site_audio,
            video: wall.then(|| VideoProfile {
                bitrate_bps: self.options.site_video_kbps * 1000,
                fps: self.options.site_fps.max(1),
                ..VideoProfile::site_thumbnail()
            }),
            simulcast: false,
            drop_percent: 0.0,
            link,
        }
    }

    async fn execute(mut self) -> Result<Report, String> {
        let o = self.options.clone();
        let engine = Arc::new(
            Engine::start(EngineConfig {
                threads: o.threads.max(1),
                local_ip: o.local_ip,
                clock: self.clock,
                window: self.window.clone(),
            })
            .map_err(|e| format!("starting the engine: {e}"))?,
        );
        let mode = match o.join_mode {
            JoinModeOption::Auto => None,
            JoinModeOption::Codes => Some(JoinMode::Codes),
            JoinModeOption::Legacy => Some(JoinMode::Legacy),
        };
        let meeting =
            match setup::prepare(&self.hub, o.sites, o.bad_joins, o.scenario.name(), mode).await {
                Ok(meeting) => meeting,
                Err(e) => {
                    engine.finish().await;
                    return Err(e);
                }
            };
        let before_joins = self.read().await;
        let records = Arc::new(Records::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut sessions = JoinSet::new();
        let setup_timeout = Duration::from_secs_f64(o.join_timeout.max(1.0));
        let session = |join, spec| Session {
            hub: self.hub.clone(),
            join,
            spec,
            engine: engine.clone(),
            records: records.clone(),
            clock: self.clock,
            setup_timeout,
        };

        // The studio first: it publishes before anyone watches.
        let studio = session(
            meeting.studio.clone(),
            PeerSpec {
                id: STUDIO,
                audio: !o.no_audio,
                video: Some(self.studio_video),
                simulcast: o.simulcast,
                drop_percent: o.drop_percent,
                link: None,
            },
        );
        sessions.spawn(studio.run(stop_rx.clone()));
        let studio_deadline = Instant::now() + setup_timeout;
        let studio_ok = loop {
            let status = engine.status().await;
            if status
                .iter()
                .any(|s| s.id == STUDIO && s.connected_ns.is_some())
            {
                break true;
            }
            if records.get(STUDIO).is_some_and(|r| r.failure.is_some())
                || Instant::now() > studio_deadline
            {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if !studio_ok {
            self.warnings
                .push("the studio did not connect; sites will receive nothing".to_owned());
        }

        // Then the sites.
        let joins_started = Instant::now();
        let joins_started_ns = self.clock.ns(joins_started);
        let storm = o.scenario == Scenario::JoinStorm;
        let interval = if storm || o.join_rate <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(1.0 / o.join_rate)
        };
        for (i, join) in meeting.sites.iter().enumerate() {
            let id = i as u32 + 1;
            sessions.spawn(session(join.clone(), self.site_spec(id)).run(stop_rx.clone()));
            if !interval.is_zero() {
                tokio::time::sleep_until((joins_started + interval * (i as u32 + 1)).into()).await;
            }
        }
        let join_deadline = Instant::now() + setup_timeout;
        loop {
            let statuses = engine.status().await;
            let records_now = records.snapshot();
            let settled = (1..=o.sites as u32)
                .filter(|id| {
                    let media = statuses
                        .iter()
                        .any(|s| s.id == *id && s.first_media_ns.is_some());
                    let failed = records_now
                        .iter()
                        .any(|r| r.id == *id && r.failure.is_some())
                        || statuses.iter().any(|s| s.id == *id && s.error.is_some());
                    media || failed
                })
                .count();
            if settled >= o.sites || Instant::now() > join_deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.join_deadline_ns = self.clock.ns(Instant::now());
        let join_statuses = engine.status().await;
        let join_records = records.snapshot();
        let joins = self.joins(&join_statuses, &join_records, joins_started_ns, o.bad_joins);

        tokio::time::sleep(Duration::from_secs_f64(o.warmup.max(0.0))).await;
        let start = self.read().await;
        self.window.open(self.clock.ns(start.at));
        tokio::time::sleep(Duration::from_secs_f64(o.duration.max(0.1))).await;
        let end = self.read().await;
        self.window.close(self.clock.ns(end.at));
        let console = records.get(STUDIO).and_then(|r| r.last_console);
        // Packets sent just before the window closed are still on their way.
        tokio::time::sleep(Duration::from_millis(1000)).await;

        let _ = stop_tx.send(true);
        let leave_deadline = tokio::time::sleep(Duration::from_secs(15));
        tokio::pin!(leave_deadline);
        loop {
            tokio::select! {
                next = sessions.join_next() => if next.is_none() { break },
                _ = &mut leave_deadline => {
                    self.warnings.push(format!("{} sessions did not leave in 15 s", sessions.len()));
                    sessions.abort_all();
                    break;
                }
            }
        }
        let final_records = records.snapshot();
        let threads = engine.finish().await;
        let _ = setup::end(&self.hub, &meeting).await;

        let floor = if o.floor_seconds > 0.0 {
            let config = FloorConfig {
                destinations: o.sites.max(1),
                video: self.studio_video,
                audio: !o.no_audio,
                budget: Duration::from_secs_f64(o.floor_seconds),
                local_ip: o.local_ip,
            };
            match tokio::task::spawn_blocking(move || floor::measure(&config)).await {
                Ok(Ok(floor)) => Some(floor),
                Ok(Err(e)) => {
                    self.warnings.push(format!("floor not measured: {e}"));
                    None
                }
                Err(e) => {
                    self.warnings.push(format!("floor not measured: {e}"));
                    None
                }
            }
        } else {
            None
        };

        let mode_name = match meeting.mode {
            JoinMode::Codes => "codes",
            JoinMode::Legacy => "legacy",
        };
        Ok(self.report(
            mode_name,
            joins,
            &final_records,
            &threads,
            &before_joins,
            &start,
            &end,
            floor,
            console,
        ))
    }

    fn joins(
        &self,
        statuses: &[PeerStatus],
        records: &[SignallingRecord],
        joins_started_ns: u64,
        bad_joins: usize,
    ) -> Joins {
        let status_of: HashMap<u32, &PeerStatus> = statuses.iter().map(|s| (s.id, s)).collect();
        let record_of: HashMap<u32, &SignallingRecord> =
            records.iter().map(|r| (r.id, r)).collect();
        let mut joins = Joins {
            attempted: self.options.sites,
            injected_bad_joins: bad_joins,
            ..Joins::default()
        };
        let studio = status_of.get(&STUDIO);
        joins.studio_connected = studio.is_some_and(|s| s.connected_ns.is_some());
        if !joins.studio_connected {
            joins.studio_failure =
                Some(classify(studio.copied(), record_of.get(&STUDIO).copied(), false).0);
        }
        let mut time_to_media = Histogram::default();
        let mut last_media = None;
        for id in 1..=self.options.sites as u32 {
            let status = status_of.get(&id).copied();
            let record = record_of.get(&id).copied();
            match status.and_then(|s| s.first_media_ns) {
                Some(media) if record.is_none_or(|r| r.failure.is_none()) => {
                    joins.succeeded += 1;
                    let started = record
                        .and_then(|r| r.started_ns)
                        .unwrap_or(joins_started_ns);
                    time_to_media.record(media.saturating_sub(started) / 1000);
                    last_media = last_media.max(Some(media));
                }
                _ => {
                    let (reason, detail) = classify(status, record, true);
                    joins.failed += 1;
                    *joins.failures.entry(reason.clone()).or_default() += 1;
                    if joins.failed_sites.len() < 50 {
                        joins.failed_sites.push(FailedJoin {
                            site: id,
                            reason,
                            detail,
                            hub_saw_media_connected: record
                                .is_some_and(|r| r.hub_connected_ns.is_some()),
                            media_after_deadline_ms: None,
                        });
                    }
                }
            }
        }
        if joins.succeeded > 0 {
            joins.time_to_media = Some(time_to_media.percentiles());
        }
        if let Some(last) = last_media {
            let ms = last.saturating_sub(joins_started_ns) as f64 / 1e6;
            joins.time_to_last_media_ms = Some(ms);
            if joins.succeeded + bad_joins.min(joins.failed) >= self.options.sites {
                joins.time_to_all_media_ms = Some(ms);
            }
        }
        joins
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
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
        let downstream = flow(
            peers
                .iter()
                .copied()
                .filter(|p| p.status.id != STUDIO && joined.contains(&p.status.id))
                .collect(),
            |publisher| publisher == STUDIO,
            &sent,
            &downstream_delay,
            &studio_streams,
            &simulcast,
        );
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
        let mut hub_cost = HubCost::default();
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
        let mut machine = machine();
        machine.load_average = start.load;
        if let (Some(a), Some(b)) = (&start.machine, &end.machine)
            && window_s > 0.0
        {
            let busy = b.busy_ns.saturating_sub(a.busy_ns) as f64 / 1e9 / window_s;
            let ours = hub_cost.cpu_seconds / window_s + generator.cpu_seconds_window / window_s;
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
        };
        report.check_targets();
        report
    }
}

/// What [`Run::link_classes`] reads.
struct LinkClassInputs<'a> {
    peers: &'a [&'a PeerReport],
    records: &'a [SignallingRecord],
    console: Option<&'a serde_json::Value>,
    threads: &'a [ThreadReport],
    sent: &'a HashMap<(u32, Kind), u64>,
    simulcast: &'a HashSet<u32>,
    studio_streams: &'a [(u32, Kind)],
    joined: &'a HashSet<u32>,
    window_s: f64,
    window_end_ns: u64,
}

impl Run {
    /// Studio → sites per link class: the flow through the link and the hub, what each site
    /// received, and which layer the hub had it on.
    fn link_classes(&self, inputs: &LinkClassInputs<'_>) -> Vec<LinkClassReport> {
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

/// Why a participant did not get media: signalling first (it comes first), then ICE, DTLS,
/// and media.
fn classify(
    status: Option<&PeerStatus>,
    record: Option<&SignallingRecord>,
    expects_media: bool,
) -> (String, String) {
    if let Some(failure) = record.and_then(|r| r.failure.as_ref()) {
        return (
            failure.reason(),
            serde_json::to_string(failure).unwrap_or_default(),
        );
    }
    let Some(status) = status else {
        return (
            "signalling:no_answer".to_owned(),
            "no peer was created (no `joined` from the hub)".to_owned(),
        );
    };
    if status.ice_connected_ns.is_none() {
        // str0m may report a DTLS timeout too, but without ICE no DTLS packet got through.
        let detail = match &status.error {
            Some(error) => format!("ICE never connected; then str0m failed: {error}"),
            None => "no ICE connectivity before the deadline".to_owned(),
        };
        return ("ice_timeout".to_owned(), detail);
    }
    if let Some(error) = &status.error {
        return ("dtls_failure".to_owned(), error.clone());
    }
    if status.connected_ns.is_none() {
        return (
            "dtls_failure".to_owned(),
            "ICE up, DTLS handshake not finished before the deadline".to_owned(),
        );
    }
    if expects_media && status.first_media_ns.is_none() {
        return (
            "no_media".to_owned(),
            "connected, but no media before the deadline".to_owned(),
        );
    }
    ("ok".to_owned(), String::new())
}

/// Adds up what `receivers` got from publishers matching `from`; `expected` lists the streams
/// each receiver should have had. The video of a publisher in `simulcast` is expected as the
/// receiver's runs on one layer ([`crate::measure::LayerRuns`]): the hub sends one layer at a
/// time, or none.
fn flow(
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
    let mut expected_by_kind: HashMap<Kind, u64> = HashMap::new();
    let mut received_by_kind: HashMap<Kind, u64> = HashMap::new();
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
            *expected_by_kind.entry(key.1).or_default() += want;
            *received_by_kind.entry(key.1).or_default() += got;
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
        f.expected_packets += peer_expected;
        f.received_packets += peer_received;
        f.per_receiver.push(ReceiverSummary {
            id: peer.status.id,
            expected_packets: peer_expected,
            received_packets: peer_received,
            late_packets: peer
                .received
                .iter()
                .filter(|r| from(r.publisher))
                .map(|r| r.reception.late)
                .sum(),
        });
        if peer_expected > 0 && (peer_expected - peer_received) * 100 > peer_expected {
            f.receivers_over_1pct_loss += 1;
        }
    }
    f.lost_packets = f.expected_packets - f.received_packets;
    let percent = |lost: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            lost as f64 * 100.0 / of as f64
        }
    };
    f.loss_percent = percent(f.lost_packets, f.expected_packets);
    f.late_percent = percent(f.late_packets, f.received_packets);
    for (kind, target) in [
        (Kind::Audio, &mut f.audio_loss_percent),
        (Kind::Video, &mut f.video_loss_percent),
    ] {
        let want = expected_by_kind.get(&kind).copied().unwrap_or(0);
        let got = received_by_kind.get(&kind).copied().unwrap_or(0);
        *target = percent(want - got, want);
    }
    f.jitter_mean_ms = if f.streams == 0 {
        0.0
    } else {
        jitter_sum / f.streams as f64
    };
    f
}

/// The sum of a counter's samples (every label set) in Prometheus text exposition.
fn prometheus_counter(text: &str, name: &str) -> Option<u64> {
    let mut total = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split_whitespace();
        let (Some(metric), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if metric.split('{').next() == Some(name)
            && let Ok(value) = value.parse::<f64>()
        {
            *total.get_or_insert(0) += value as u64;
        }
    }
    total
}

/// A forwarded-packets counter in the hub's health document, if it has one.
fn forwarded_counter(health: &serde_json::Value) -> Option<u64> {
    health
        .get("packets_forwarded")
        .or_else(|| health.pointer("/media/packets_forwarded"))
        .and_then(serde_json::Value::as_u64)
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_counters() {
        let text = "# HELP diemcau_packets_forwarded_total packets\n\
                    # TYPE diemcau_packets_forwarded_total counter\n\
                    diemcau_packets_forwarded_total 1234\n\
                    diemcau_packets_forwarded_total_other 9\n";
        assert_eq!(
            prometheus_counter(text, "diemcau_packets_forwarded_total"),
            Some(1234)
        );
        let labelled = "x{worker=\"0\"} 2\nx{worker=\"1\"} 3\n";
        assert_eq!(prometheus_counter(labelled, "x"), Some(5));
        assert_eq!(prometheus_counter(text, "missing"), None);
    }
}
