//! A run from start to report: set up the meeting, join the studio and the sites, warm up,
//! measure a window, leave, measure the floor, and turn what every peer counted into a
//! [`Report`].
//!
//! Layout: this file runs the scenario; `results` turns what was counted into the report,
//! `link_classes` its part per emulated link class, `classify` the reason a join failed.

mod classify;
mod link_classes;
mod results;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::engine::{Engine, EngineConfig, PeerLink, PeerSpec, PeerStatus, STUDIO};
use crate::floor::{self, FloorConfig};
use crate::http::{self, HubUrl};
use crate::hub_process::{SpawnConfig, SpawnedHub};
use crate::janus::JanusSession;
use crate::link::{self, LinkClass};
use crate::measure::{Histogram, Window};
use crate::media::{Clock, VideoProfile};
use crate::procfs::{self, MachineCpu, ProcessSample, UdpCounters};
use crate::report::{FailedJoin, Joins, Report};
use crate::setup::{self, FIRST_SITE_CODE, JoinMode};
use crate::signaling::{Records, Session, SignallingRecord};
use crate::tree::Tree;
use crate::{ArrivalTime, JoinModeOption, Options, ReceiveMode, Scenario};
use classify::classify;

/// Runs `options.scenario` and returns its report. Every process and thread it started is
/// stopped before it returns.
pub async fn run(options: Options) -> Result<Report, String> {
    if options.janus.is_some()
        && (options.simulcast || options.provinces > 0 || options.spawn_hub.is_some())
    {
        return Err(
            "--janus runs one layer against a Janus already started: no --simulcast, --provinces or --spawn-hub"
                .to_owned(),
        );
    }
    if options.receive == ReceiveMode::Headers && !options.links.is_empty() {
        return Err(
            "--receive headers cannot be combined with --link: the link classes' figures read every packet's stamp"
                .to_owned(),
        );
    }
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
                log_file: options.hub_log_file.clone(),
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
    let tree = match (&spawned, options.provinces) {
        (_, 0) => None,
        (None, _) => return Err("--provinces needs --spawn-hub".to_owned()),
        (Some(root), count) => {
            let config = SpawnConfig {
                binary: options.spawn_hub.clone().unwrap_or_default(),
                cpus: options.hub_cpus.clone(),
                workers: options.hub_workers,
                log: options.hub_log.clone(),
                log_file: None,
                extra_args: options.hub_args.clone(),
            };
            let root_url = root.url.clone();
            let root_dir = root.data_dir().map(std::path::Path::to_path_buf);
            Some(
                tokio::task::spawn_blocking(move || {
                    Tree::start(&root_url, root_dir.as_deref(), &config, count)
                })
                .await
                .map_err(|e| e.to_string())??,
            )
        }
    };
    let mut run = Run::new(options, hub, hub_pid, spawned.is_some(), started_unix_ms);
    run.tree = tree;
    let result = run.execute().await;
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
    /// The provincial hubs of `--provinces`.
    tree: Option<Tree>,
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
    /// ICE-TCP media connections the hub holds (`/metrics`), when it says.
    tcp_connections: Option<u64>,
    /// The hub's highest media shed level (`/metrics`), when it says.
    shed_level: Option<u64>,
    /// Each provincial hub of `--provinces`.
    provinces: Vec<Option<ProcessSample>>,
    /// Datagrams dropped at the hub's UDP sockets since they opened.
    hub_socket_drops: Option<u64>,
    /// RTCP datagrams the hub read and dropped unhandled while behind (`/metrics`).
    rtcp_shed: Option<u64>,
    /// UDP datagrams the hub sent, and the messages they left in (`/metrics`).
    datagrams_sent: Option<u64>,
    datagram_messages: Option<u64>,
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
            tree: None,
        }
    }

    async fn read(&self) -> Readings {
        let diemcau = self.options.janus.is_none();
        let health = match http::request(&self.hub, "GET", "/api/health", None, b"").await {
            Ok(r) if diemcau && r.status == 200 => r.json().ok(),
            _ => None,
        };
        let metrics = match http::request(&self.hub, "GET", "/metrics", None, b"").await {
            Ok(r) if diemcau && r.status == 200 => r.text(),
            _ => String::new(),
        };
        let forwarded = prometheus_counter(&metrics, "diemcau_packets_forwarded_total");
        let tcp_connections = prometheus_counter(&metrics, "diemcau_media_tcp_connections");
        let shed_level = prometheus_max(&metrics, "diemcau_media_worker_shed_level");
        let rtcp_shed = prometheus_counter(&metrics, "diemcau_rtcp_shed_total");
        let datagrams_sent = prometheus_counter(&metrics, "diemcau_datagrams_sent_total");
        let datagram_messages =
            prometheus_counter(&metrics, "diemcau_datagram_messages_sent_total");
        Readings {
            datagrams_sent,
            datagram_messages,
            at: Instant::now(),
            forwarded,
            tcp_connections,
            shed_level,
            hub: self.hub_pid.and_then(|pid| procfs::sample(pid).ok()),
            hub_socket_drops: self.hub_pid.and_then(procfs::socket_drops),
            rtcp_shed,
            generator: procfs::sample(std::process::id()).ok(),
            provinces: self
                .tree
                .as_ref()
                .map(|t| {
                    t.pids()
                        .into_iter()
                        .map(|pid| procfs::sample(pid).ok())
                        .collect()
                })
                .unwrap_or_default(),
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
            drop_down_percent: self.options.drop_down_percent,
            receive_headers: self.options.receive == ReceiveMode::Headers,
            kernel_arrivals: self.options.arrival == ArrivalTime::Kernel,
            answer_only: self.options.janus.is_some(),
            tcp: self
                .class_of_site(id)
                .and_then(|class| self.classes.get(class))
                .is_some_and(|c| c.tcp),
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
        let prepared = match &o.janus {
            // Janus has no meetings: the sites subscribe to the studio's feed in its room.
            Some(_) => Ok(setup::Meeting::placeholder(o.sites)),
            None => {
                setup::prepare(
                    &self.hub,
                    o.sites,
                    o.bad_joins,
                    o.scenario.name(),
                    mode,
                    o.provinces,
                )
                .await
            }
        };
        let mut meeting = match prepared {
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
        // In a tree, each site joins its own province's hub.
        let site_hubs: Vec<HubUrl> = match (&self.tree, meeting.id) {
            (Some(tree), Some(id)) => match tree.joins(id, o.sites, setup_timeout).await {
                Ok(joins) => {
                    meeting.sites = joins.iter().map(|(join, _)| join.clone()).collect();
                    joins.into_iter().map(|(_, hub)| hub).collect()
                }
                Err(e) => {
                    engine.finish().await;
                    return Err(e);
                }
            },
            _ => Vec::new(),
        };
        let session = |hub: HubUrl, join, spec| Session {
            hub,
            join,
            spec,
            engine: engine.clone(),
            records: records.clone(),
            clock: self.clock,
            setup_timeout,
            after_join: Vec::new(),
        };

        // The studio first: it publishes before anyone watches.
        let mut studio = session(
            self.hub.clone(),
            meeting.studio.clone(),
            PeerSpec {
                id: STUDIO,
                audio: !o.no_audio,
                video: Some(self.studio_video),
                simulcast: o.simulcast,
                drop_percent: o.drop_percent,
                drop_down_percent: 0.0,
                link: None,
                tcp: false,
                receive_headers: false,
                kernel_arrivals: false,
                answer_only: false,
            },
        );
        // A wall through a tree: the chair's console shows every commune's tile (as many as
        // one `tiles` message names), so their small pictures come up through their provinces.
        if o.scenario == Scenario::Wall && self.tree.is_some() {
            let sites: Vec<String> = (1..=o.sites.min(200))
                .map(|i| (FIRST_SITE_CODE + i as u32).to_string())
                .collect();
            studio
                .after_join
                .push(json!({"type": "tiles", "sites": sites}));
        }
        let (feed_tx, feed_rx) = watch::channel(None);
        let janus = |spec: PeerSpec, publish_feed| JanusSession {
            url: o.janus.clone().unwrap_or_default(),
            spec,
            engine: engine.clone(),
            records: records.clone(),
            clock: self.clock,
            setup_timeout,
            feed: feed_rx.clone(),
            publish_feed,
        };
        if o.janus.is_some() {
            sessions.spawn(janus(studio.spec.clone(), Some(feed_tx)).run(stop_rx.clone()));
        } else {
            sessions.spawn(studio.run(stop_rx.clone()));
        }
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
            let hub = site_hubs
                .get(i)
                .cloned()
                .unwrap_or_else(|| self.hub.clone());
            if o.janus.is_some() {
                sessions.spawn(janus(self.site_spec(id), None).run(stop_rx.clone()));
            } else {
                sessions.spawn(session(hub, join.clone(), self.site_spec(id)).run(stop_rx.clone()));
            }
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

        // The window's bounds are set before it opens, so that senders and receivers judge
        // every packet by the same ones (`Window::set`); the readings are taken as it opens
        // and closes.
        let opens = Instant::now() + Duration::from_secs_f64(o.warmup.max(0.0));
        let closes = opens + Duration::from_secs_f64(o.duration.max(0.1));
        self.window.set(self.clock.ns(opens), self.clock.ns(closes));
        tokio::time::sleep_until(opens.into()).await;
        let start = self.read().await;
        tokio::time::sleep_until(closes.into()).await;
        let end = self.read().await;
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
        if o.janus.is_none() {
            let _ = setup::end(&self.hub, &meeting).await;
        }

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
            _ if o.janus.is_some() => "janus",
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
}

/// The values of a metric's samples (every label set) in Prometheus text exposition.
fn prometheus_samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = u64> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(move |line| {
            let mut parts = line.split_whitespace();
            let (metric, value) = (parts.next()?, parts.next()?);
            (metric.split('{').next() == Some(name)).then_some(())?;
            value.parse::<f64>().ok().map(|v| v as u64)
        })
}

/// The sum of a counter's samples (every label set).
fn prometheus_counter(text: &str, name: &str) -> Option<u64> {
    prometheus_samples(text, name).reduce(|a, b| a + b)
}

/// The highest value of a labelled gauge.
fn prometheus_max(text: &str, name: &str) -> Option<u64> {
    prometheus_samples(text, name).max()
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
        assert_eq!(prometheus_max(labelled, "x"), Some(3));
        assert_eq!(prometheus_counter(text, "missing"), None);
        assert_eq!(prometheus_max(text, "missing"), None);
    }
}
