//! diemcau-loadgen: plays one studio and N commune sites against a diemcau hub from a single
//! process, and measures what the hub costs per forwarded packet.
//!
//! Every simulated participant speaks the real signalling protocol over WebSocket
//! (docs/protocol.md) and real WebRTC (ICE, DTLS-SRTP) through a str0m `Rtc`; a few engine
//! threads drive all of them ([`engine`]). The studio publishes VP8-like video and Opus-like
//! audio ([`media`]), every payload stamped with its send time so receivers measure loss,
//! jitter and one-way delay ([`measure`]). The hub's CPU time and memory come from /proc
//! ([`procfs`]); the same packets are also encrypted and sent with no WebRTC logic at all to
//! give the floor the hub is compared with ([`floor`]). Sites may sit behind emulated links
//! (rate, delay, jitter, loss: [`link`]), and the studio may publish three simulcast layers,
//! so the report shows per link class which layer the hub chose for its sites.
//!
//! For the largest runs the sites may count from the clear RTP headers once connected
//! (`--receive headers`: batched reads, a sample unprotected, their own RTCP), which takes a
//! third of the generator's CPU per site. The same fan-out can run through Janus's VideoRoom
//! instead of a hub (`--janus`, [`janus`]), for the side-by-side benchmark.
//!
//! Layout: [`setup`] (meeting through the HTTP API), [`signaling`] (one WebSocket session per
//! participant), [`janus`] (the same with Janus), [`engine`], [`link`] (the link model),
//! [`scenario`] (fanout, join-storm, wall), [`report`] (JSON and the table), [`hub_process`]
//! (starting the hub as a child).
//!
//! ```no_run
//! use clap::Parser;
//! # async fn run() -> Result<(), String> {
//! let options = diemcau_loadgen::Options::parse_from(["diemcau-loadgen", "fanout", "--sites", "50"]);
//! let report = diemcau_loadgen::scenario::run(options).await?;
//! println!("{}", report.table());
//! # Ok(()) }
//! ```

pub mod engine;
pub mod floor;
pub mod http;
pub mod hub_process;
pub mod janus;
pub mod link;
pub mod measure;
pub mod media;
pub mod procfs;
pub mod report;
pub mod scenario;
pub mod setup;
pub mod signaling;
pub mod tree;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// What the run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// One studio to N sites; sites publish nothing.
    Fanout,
    /// N sites join at once: time until every site has media, and every failed handshake.
    JoinStorm,
    /// N sites each send a small video to the studio while receiving the studio.
    Wall,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Fanout => "fanout",
            Scenario::JoinStorm => "join-storm",
            Scenario::Wall => "wall",
        }
    }
}

/// How the sites count what they receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReceiveMode {
    /// Every packet through str0m: decrypted, its stamp read (every figure, per layer and
    /// link class).
    Full,
    /// Once connected, count from the clear RTP headers, unprotect one packet in 50 for the
    /// delay, and answer with the site's own RTCP (transport-wide feedback, NACK, receiver
    /// reports): about a third of the generator's CPU per site, for the largest runs.
    Headers,
}

impl ReceiveMode {
    pub fn name(self) -> &'static str {
        match self {
            ReceiveMode::Full => "full",
            ReceiveMode::Headers => "headers",
        }
    }
}

/// When a datagram arrived at a site in header-only reception: the time in its transport-wide
/// feedback and in the delay figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArrivalTime {
    /// When the engine's thread read it.
    Handled,
    /// When the kernel received it (`SO_TIMESTAMPNS`, read with the batch).
    Kernel,
}

impl ArrivalTime {
    pub fn name(self) -> &'static str {
        match self {
            ArrivalTime::Handled => "handled",
            ArrivalTime::Kernel => "kernel",
        }
    }
}

/// How participants join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JoinModeOption {
    /// Join codes if the hub has the meetings API, else the old join by meeting name.
    Auto,
    Codes,
    Legacy,
}

/// diemcau-loadgen: one studio and N sites over real signalling and WebRTC, from one process.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Options {
    pub scenario: Scenario,

    /// The hub's web address (ignored with --spawn-hub).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub hub: String,

    /// Start this hub binary as a child on loopback with free ports, and stop it at the end.
    #[arg(long)]
    pub spawn_hub: Option<PathBuf>,

    /// Pin the spawned hub to these CPUs (`taskset -c`), e.g. `0`.
    #[arg(long)]
    pub hub_cpus: Option<String>,

    /// Media workers of the spawned hub (its --workers).
    #[arg(long)]
    pub hub_workers: Option<usize>,

    /// RUST_LOG of the spawned hub.
    #[arg(long, default_value = "warn")]
    pub hub_log: String,

    /// A file for the spawned hub's log (at `--hub-log`'s level) and its start-up lines;
    /// by default the log goes to the generator's standard error. Only the hub the
    /// generator joins, not a tree's provincial hubs.
    #[arg(long)]
    pub hub_log_file: Option<std::path::PathBuf>,

    /// Extra argument for the spawned hub (repeatable).
    #[arg(long = "hub-arg", allow_hyphen_values = true)]
    pub hub_args: Vec<String>,

    /// PID of a hub started elsewhere, to read its CPU time and memory.
    #[arg(long)]
    pub hub_pid: Option<u32>,

    /// Number of sites.
    #[arg(long, default_value_t = 50)]
    pub sites: usize,

    /// Length of the measurement window, in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,

    /// Time between the last join and the window, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,

    /// Sites joining per second (fanout, wall); join-storm joins all at once.
    #[arg(long, default_value_t = 100.0)]
    pub join_rate: f64,

    /// Seconds every site has to receive media after its join starts.
    #[arg(long, default_value_t = 30.0)]
    pub join_timeout: f64,

    /// Engine threads driving the peers.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// The studio's video bitrate in kbit/s.
    #[arg(long, default_value_t = 2500)]
    pub video_kbps: u64,

    /// The studio's frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,

    /// Seconds between the studio's keyframes.
    #[arg(long, default_value_t = 3.0)]
    pub keyframe_interval: f64,

    /// The studio sends no audio.
    #[arg(long)]
    pub no_audio: bool,

    /// The studio publishes its video as three simulcast layers, lowest first: rid q
    /// 150 kbit/s 320x180, h 600 kbit/s 640x360, f at --video-kbps 1280x720 (as a browser
    /// would with sendEncodings), so the hub picks a layer per site.
    #[arg(long)]
    pub simulcast: bool,

    #[arg(long = "link", value_name = "NAME=SHARE%[,KEY=VALUE...]", help = link::LinkClass::HELP)]
    pub links: Vec<link::LinkClass>,

    /// Each site's video bitrate in kbit/s (wall).
    #[arg(long, default_value_t = 150)]
    pub site_video_kbps: u64,

    /// Each site's frames per second (wall).
    #[arg(long, default_value_t = 15)]
    pub site_fps: u32,

    /// Sites also send audio (wall).
    #[arg(long)]
    pub site_audio: bool,

    /// Drop this percentage of the studio's outgoing RTP datagrams (after str0m, so the hub
    /// sees real loss and str0m's NACK/RTX may repair video).
    #[arg(long, default_value_t = 0.0)]
    pub drop_percent: f64,

    /// Drop this percentage of the RTP datagrams each site receives from the hub, before the
    /// site counts them (loss between the hub and the sites; NACK/RTX may repair video).
    #[arg(long, default_value_t = 0.0)]
    pub drop_down_percent: f64,

    /// How the sites count what they receive (`headers` cannot be combined with `--link`,
    /// whose per-class figures read every packet's stamp).
    #[arg(long, value_enum, default_value_t = ReceiveMode::Full)]
    pub receive: ReceiveMode,

    /// In header-only reception, when a datagram arrived at a site: when the engine's thread
    /// got to it (`handled`), or when the kernel stamped it (`kernel`, as a browser's network
    /// thread, reading at once, would see it).
    #[arg(long, value_enum, default_value_t = ArrivalTime::Handled)]
    pub arrival: ArrivalTime,

    /// Run the fan-out against Janus's VideoRoom at this WebSocket URL (ws://HOST:PORT, the
    /// configuration of benches/janus) instead of a diemcau hub; give Janus's pid with
    /// --hub-pid for its CPU and memory. One layer only (no --simulcast).
    #[arg(long)]
    pub janus: Option<String>,

    /// The last K sites join with a code the hub must refuse.
    #[arg(long, default_value_t = 0)]
    pub bad_joins: usize,

    /// CPU seconds per floor variant (0: skip the floor).
    #[arg(long, default_value_t = 1.0)]
    pub floor_seconds: f64,

    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Address the simulated peers bind to.
    #[arg(long, default_value = "127.0.0.1")]
    pub local_ip: IpAddr,

    #[arg(long, value_enum, default_value_t = JoinModeOption::Auto)]
    pub join_mode: JoinModeOption,

    /// A national tree (needs --spawn-hub): the spawned hub is the root, with this many
    /// provincial hubs linked to it (same --hub-cpus and --hub-workers); the sites are their
    /// communes, spread evenly, and join their own province's hub while the studio publishes
    /// at the root (docs/cascade.md). The hub figures are the root's; each province's CPU is
    /// reported beside them.
    #[arg(long, default_value_t = 0)]
    pub provinces: usize,
}
