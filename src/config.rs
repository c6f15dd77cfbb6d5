//! Configuration: command-line flags, each with an environment variable, all with defaults
//! that run the hub on one machine with nothing else installed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use time::UtcOffset;

use crate::media::{MediaConfig, TcpConfig};
use crate::meeting::RecordingMode;
use crate::server::ServerLimits;
use crate::store::{Database, PostgresTarget, Role};

/// The command line: with no subcommand the hub runs with [`Config`]'s flags.
#[derive(Debug, Parser)]
#[command(
    name = "diemcau",
    version,
    about = "diemcau: video conference hub for province-to-commune online meetings.",
    args_conflicts_with_subcommands = true
)]
pub struct CommandLine {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub hub: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Accounts that log in to the organizer's pages, the reports and the studio.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Copies the database to FILE, consistent as of one moment, while the hub runs (SQLite's
    /// online backup); the copy is checked before it takes FILE's name.
    Backup {
        file: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
    /// The hubs below this one in a national tree (provincial hubs) and their credentials.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Puts the database copy FILE in place; the hub must be stopped. The database it replaces
    /// is kept beside it, named `diemcau.sqlite3.before-restore-<time>`.
    Restore {
        file: PathBuf,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `diemcau node ...`: on a parent hub, the child hubs that may link to it.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Adds a child hub and prints its credential, once (the hub keeps only a hash).
    Add {
        /// A short name: lower-case letters, digits and dashes (e.g. tuyen-quang).
        name: String,
        /// A province it serves (official code, e.g. 08); repeat for several.
        #[arg(long)]
        province: Vec<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Lists the child hubs.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revokes a child hub's credential: its link is refused, and a live one dropped.
    Revoke {
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// `diemcau account ...`. Roles: `organizer` may do everything; `staff` reads meetings
/// (without join codes), attendance reports and the sites directory.
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Adds an account; the password is asked twice on the terminal.
    Add {
        username: String,
        #[arg(long, value_enum)]
        role: Role,
        /// Read the password from standard input instead (for scripts).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Sets a new password; the account's login sessions end.
    Passwd {
        username: String,
        /// Read the password from standard input instead (for scripts).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Lists the accounts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Disables an account: it can no longer log in, and its login sessions end.
    Disable {
        username: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Enables a disabled account again, with its password unchanged.
    Enable {
        username: String,
        #[command(flatten)]
        data: DataDir,
    },
}

/// The hub's data directory and database, for the account and node commands.
#[derive(Debug, Clone, Args)]
pub struct DataDir {
    /// Directory of the hub's data (as the hub's `--data-dir`).
    #[arg(long, env = "DIEMCAU_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub database: DatabaseArgs,
}

impl DataDir {
    /// The store these commands work on.
    pub fn open_store(&self) -> Result<crate::store::Store, String> {
        let database = self.database.database(&self.data_dir)?;
        crate::store::Store::connect(&database)
            .map_err(|e| format!("cannot open the data in {}: {e}", describe(&database)))
    }
}

/// Where the data is, in words for a message.
pub fn describe(database: &Database) -> String {
    match database {
        Database::Sqlite(dir) => dir.display().to_string(),
        Database::Postgres(target) => target.to_string(),
    }
}

/// Which database the hub keeps its data in: SQLite in the data directory unless a PostgreSQL
/// database is given.
#[derive(Debug, Clone, Default, Args)]
pub struct DatabaseArgs {
    /// A PostgreSQL database to keep the data in instead of SQLite in the data directory, as
    /// `postgres://USER@HOST:PORT/DATABASE` (add `?sslmode=require` to insist on TLS). Hubs
    /// that share one serve the same directory, accounts, meetings and reports. No password
    /// in it: see --database-password-file.
    #[arg(long = "database", env = "DIEMCAU_DATABASE", value_name = "URL")]
    pub url: Option<String>,
    /// A file whose first line is the database user's password (readable by the hub's user
    /// only).
    #[arg(long, env = "DIEMCAU_DATABASE_PASSWORD_FILE", value_name = "FILE")]
    pub database_password_file: Option<PathBuf>,
    /// Certificate authorities (PEM) to check the database server's TLS certificate with,
    /// besides the system's.
    #[arg(long, env = "DIEMCAU_DATABASE_CA_FILE", value_name = "FILE")]
    pub database_ca_file: Option<PathBuf>,
}

impl DatabaseArgs {
    /// The database, PostgreSQL if a URL is given, else SQLite in `data_dir`.
    pub fn database(&self, data_dir: &std::path::Path) -> Result<Database, String> {
        match &self.url {
            None => Ok(Database::Sqlite(data_dir.to_owned())),
            Some(url) => PostgresTarget::new(
                url,
                self.database_password_file.as_deref(),
                self.database_ca_file.as_deref(),
            )
            .map(|target| Database::Postgres(Box::new(target))),
        }
    }
}

/// diemcau: video conference hub for province-to-commune online meetings.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address of the web server (pages, WebSocket signalling, API).
    #[arg(long, env = "DIEMCAU_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// IP address the media UDP sockets bind to.
    #[arg(long, env = "DIEMCAU_MEDIA_BIND", default_value = "0.0.0.0")]
    pub media_bind: IpAddr,

    /// First media UDP port; worker N uses this port + N (0: any free ports).
    /// Open these ports in the firewall (only this one with `--single-port`).
    #[arg(long, env = "DIEMCAU_MEDIA_PORT", default_value_t = 40000)]
    pub media_port: u16,

    /// Every media worker receives on the same UDP port, `--media-port` (SO_REUSEPORT), so
    /// the firewall needs one UDP port whatever the number of workers.
    #[arg(long, env = "DIEMCAU_SINGLE_PORT")]
    pub single_port: bool,

    /// IP address(es) announced to clients in ICE candidates, comma separated. Default: the
    /// bind address, or when it is 0.0.0.0 the machine's main address and 127.0.0.1.
    #[arg(long, env = "DIEMCAU_ANNOUNCE_IP", value_delimiter = ',')]
    pub announce_ip: Vec<IpAddr>,

    /// TCP port for media of halls whose network passes only TCP (ICE-TCP, RFC 6544), shared
    /// by all workers: `off` to serve UDP only, 0 for any free port. Open it in the firewall;
    /// 443 works through most firewalls when the hub has an address of its own for media.
    #[arg(
        long,
        env = "DIEMCAU_MEDIA_TCP_PORT",
        default_value = "40443",
        value_parser = parse_tcp_port
    )]
    pub media_tcp_port: MediaTcpPort,

    /// Port announced in the TCP candidates when a redirect in front of the hub changes it
    /// (443 on an address of its own, redirected to `--media-tcp-port`). Default: that port.
    #[arg(long, env = "DIEMCAU_MEDIA_TCP_ANNOUNCE_PORT")]
    pub media_tcp_announce_port: Option<u16>,

    /// TCP media connections open at once, in all (a browser also opens one when UDP works).
    #[arg(
        long,
        env = "DIEMCAU_MEDIA_TCP_MAX_CONNECTIONS",
        default_value_t = 2048
    )]
    pub media_tcp_max_connections: usize,

    /// TCP media connections open at once from one IP address (halls behind one NAT share it).
    #[arg(long, env = "DIEMCAU_MEDIA_TCP_MAX_PER_ADDRESS", default_value_t = 128)]
    pub media_tcp_max_per_address: usize,

    /// A TCP media connection that carries no valid ICE request this long after it opened is
    /// closed.
    #[arg(
        long,
        env = "DIEMCAU_MEDIA_TCP_ICE_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub media_tcp_ice_timeout_seconds: u64,

    /// Number of media workers (threads, one UDP socket each). Default: one per CPU core.
    #[arg(long, env = "DIEMCAU_WORKERS")]
    pub workers: Option<usize>,

    /// Most participants in one meeting (studio and sites).
    #[arg(long, env = "DIEMCAU_MAX_PARTICIPANTS", default_value_t = 1500)]
    pub max_participants: usize,

    /// Most players watching one meeting's programme over its watch link (WHEP) at once; they
    /// are not counted in `--max-participants`.
    #[arg(long, env = "DIEMCAU_MAX_VIEWERS", default_value_t = 50)]
    pub max_viewers: usize,

    /// When meetings are recorded (the programme, in `<data-dir>/recordings`): `auto` from the
    /// meeting's first participant on, `manual` when the chair presses record, `off` never.
    #[arg(long, env = "DIEMCAU_RECORDING", value_enum, default_value_t = RecordingMode::Auto)]
    pub recording: RecordingMode,

    /// A recording is refused to start while the disk of `<data-dir>/recordings` has fewer
    /// free megabytes than this (the chair is told; a recording running when the disk fills
    /// stops cleanly).
    #[arg(long, env = "DIEMCAU_RECORDING_MIN_FREE_MB", default_value_t = 2048)]
    pub recording_min_free_mb: u64,

    /// Directory of the hub's data: the SQLite database (directory, meetings, attendance log)
    /// unless --database names a PostgreSQL one, the TLS certificate it made, the first
    /// passwords.
    #[arg(long, env = "DIEMCAU_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    #[command(flatten)]
    pub database: DatabaseArgs,

    /// Time zone of reports as an offset from UTC (Việt Nam: +07:00).
    #[arg(long, env = "DIEMCAU_UTC_OFFSET", default_value = "+07:00", value_parser = parse_offset)]
    pub utc_offset: UtcOffset,

    /// A site back within this many seconds after a drop continues its attendance row.
    #[arg(long, env = "DIEMCAU_GRACE_SECONDS", default_value_t = 120)]
    pub grace_seconds: u32,

    /// TLS certificate chain (PEM) for HTTPS; with `--tls-key`. Without both, the hub makes a
    /// self-signed certificate on first start and keeps it in the data directory.
    #[arg(long, env = "DIEMCAU_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) for HTTPS.
    #[arg(long, env = "DIEMCAU_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Serve plain HTTP instead of HTTPS (browsers then allow cameras only on localhost).
    #[arg(long, env = "DIEMCAU_PLAIN_HTTP")]
    pub plain_http: bool,

    /// Signalling messages per second one connection may send (bursts of three times that).
    #[arg(long, env = "DIEMCAU_MAX_MESSAGES_PER_SECOND", default_value_t = 20)]
    pub max_messages_per_second: u32,

    /// WebSocket connections from one IP address at once (a hall behind NAT has a few).
    #[arg(
        long,
        env = "DIEMCAU_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 50
    )]
    pub max_connections_per_address: usize,

    /// TCP connections (pages, API, WebSockets) from one IP address at once; connections over
    /// it are closed at once. Never below `--max-connections-per-address`. A commune hall behind
    /// one NAT opens a WebSocket and a few HTTP connections per page.
    #[arg(
        long,
        env = "DIEMCAU_MAX_HTTP_CONNECTIONS_PER_ADDRESS",
        default_value_t = 256
    )]
    pub max_http_connections_per_address: usize,

    /// TCP connections the web server holds in all; kept below the open-file limit (less 256
    /// descriptors for the database, media sockets and logs) whatever is set here.
    #[arg(long, env = "DIEMCAU_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// A TLS handshake not finished this long after the connection opened is cut.
    #[arg(
        long,
        env = "DIEMCAU_TLS_HANDSHAKE_TIMEOUT_SECONDS",
        default_value_t = 10
    )]
    pub tls_handshake_timeout_seconds: u64,

    /// A request head (request line and headers) not complete this long after its first byte
    /// is cut.
    #[arg(
        long,
        env = "DIEMCAU_REQUEST_HEADER_TIMEOUT_SECONDS",
        default_value_t = 15
    )]
    pub request_header_timeout_seconds: u64,

    /// A request whose body has not arrived, or that is not answered, this long after its head
    /// is answered 408 and its connection closed.
    #[arg(long, env = "DIEMCAU_REQUEST_TIMEOUT_SECONDS", default_value_t = 60)]
    pub request_timeout_seconds: u64,

    /// An HTTP connection with no request this long is closed (browsers open a new one).
    #[arg(long, env = "DIEMCAU_HTTP_IDLE_TIMEOUT_SECONDS", default_value_t = 30)]
    pub http_idle_timeout_seconds: u64,

    /// Reverse proxies (IP addresses) whose `X-Forwarded-For` names the real client, for the
    /// per-address limits and the attendance log. Their pages are served over HTTPS by the
    /// proxy, so login cookies are marked `Secure` even with `--plain-http`.
    #[arg(long, env = "DIEMCAU_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxy: Vec<std::net::IpAddr>,

    /// A signalling connection silent this long is closed (pages ping every 20 s).
    #[arg(long, env = "DIEMCAU_IDLE_TIMEOUT_SECONDS", default_value_t = 90)]
    pub idle_timeout_seconds: u64,

    /// How often, in milliseconds, the hub notes which site sessions are alive: after a crash,
    /// their sessions are closed at the last such note, so this is the precision of crash
    /// recovery (one small write per interval).
    #[arg(long, env = "DIEMCAU_LIVENESS_INTERVAL_MS", default_value_t = 5000)]
    pub liveness_interval_ms: u64,

    /// How often, in milliseconds, the chair's console is refreshed.
    #[arg(long, env = "DIEMCAU_CONSOLE_INTERVAL_MS", default_value_t = 2000)]
    pub console_interval_ms: u64,

    /// How often, in milliseconds, the logins of the chairing sessions are checked, so that a
    /// password changed or an account disabled with `diemcau account` ends them.
    #[arg(long, env = "DIEMCAU_LOGIN_CHECK_INTERVAL_MS", default_value_t = 5000)]
    pub login_check_interval_ms: u64,

    /// On first start (empty directory), load the communes of Tuyên Quang as example sites.
    #[arg(long, env = "DIEMCAU_SEED_SITES", default_value_t = true, action = clap::ArgAction::Set)]
    pub seed_sites: bool,

    /// The parent hub in a national tree, for a provincial hub: `https://HOST:PORT` (or
    /// `http://` for a parent run with `--plain-http` on a closed network). The hub keeps a link
    /// to it, with this hub's node credential (`--node-token-file`, or the environment
    /// variable DIEMCAU_NODE_TOKEN; never on the command line).
    #[arg(long, env = "DIEMCAU_PARENT")]
    pub parent: Option<String>,

    /// File holding this hub's node credential, as the parent's `diemcau node add` printed it.
    #[arg(long, env = "DIEMCAU_NODE_TOKEN_FILE")]
    pub node_token_file: Option<PathBuf>,

    /// SHA-256 fingerprint of the parent's certificate, for a parent with a self-signed one
    /// (`openssl x509 -noout -fingerprint -sha256 -in cert.pem`); without it the system's
    /// certificate authorities must vouch for the parent.
    #[arg(long, env = "DIEMCAU_PARENT_CERT_SHA256")]
    pub parent_cert_sha256: Option<String>,

    /// This hub's name among hubs sharing one PostgreSQL database (a standby pair): the owner
    /// of the meetings it runs. Default: the machine's host name.
    #[arg(long, env = "DIEMCAU_HUB_NAME")]
    pub hub_name: Option<String>,

    /// The address pages reach this hub at, `https://HOST:PORT`, told to the pages of the
    /// other hubs sharing its database so they can come here. Default: the scheme, the first
    /// announced IP address and the web server's port.
    #[arg(long, env = "DIEMCAU_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// The other hubs sharing this hub's PostgreSQL database, by their public URLs
    /// (comma-separated): pages whose hub stops answering go to one of them, and this hub
    /// asks them whether they reach the database before handing its meetings over.
    #[arg(long, env = "DIEMCAU_PEER_HUBS", value_delimiter = ',')]
    pub peer_hubs: Vec<String>,

    /// The domain whose hosts share the login cookie, for a standby pair reached under two
    /// host names of it (`tinh.gov.vn` for hub1.tinh.gov.vn and hub2.tinh.gov.vn): a login on
    /// one hub is valid on the other, so the chair's page follows a takeover without logging
    /// in again. Without it the cookie belongs to the hub's host alone.
    #[arg(long, env = "DIEMCAU_COOKIE_DOMAIN", value_parser = parse_cookie_domain)]
    pub cookie_domain: Option<String>,

    /// Accounts (username, password, role) made at start when missing; when there are any, no
    /// first-start `admin` is made. Not a flag: tests set it.
    #[arg(skip)]
    pub bootstrap_accounts: Vec<(String, String, Role)>,
}

impl Config {
    /// Everything on loopback with free ports and two workers, the hub's intervals shortened to
    /// [`TEST_INTERVAL_MS`], and the accounts [`TEST_ORGANIZER`] and [`TEST_STAFF`]: for tests.
    pub fn for_tests() -> Config {
        Config::for_tests_in(std::env::temp_dir().join(format!(
            "diemcau-test-{}-{}",
            std::process::id(),
            TEST_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )))
    }

    /// Like [`Config::for_tests`], with its data in `data_dir`.
    pub fn for_tests_in(data_dir: PathBuf) -> Config {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            media_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            media_port: 0,
            single_port: false,
            media_tcp_port: MediaTcpPort(Some(0)),
            media_tcp_announce_port: None,
            media_tcp_max_connections: 2048,
            media_tcp_max_per_address: 128,
            media_tcp_ice_timeout_seconds: 10,
            announce_ip: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            workers: Some(2),
            max_participants: 1500,
            max_viewers: 50,
            // Tests record only where they say so.
            recording: RecordingMode::Manual,
            recording_min_free_mb: 0,
            data_dir,
            database: DatabaseArgs::default(),
            utc_offset: VIETNAM,
            grace_seconds: 120,
            tls_cert: None,
            tls_key: None,
            plain_http: true,
            max_messages_per_second: 20,
            max_connections_per_address: 50,
            max_http_connections_per_address: 256,
            max_connections: 10_000,
            tls_handshake_timeout_seconds: 10,
            request_header_timeout_seconds: 15,
            request_timeout_seconds: 60,
            http_idle_timeout_seconds: 30,
            trusted_proxy: Vec::new(),
            idle_timeout_seconds: 90,
            liveness_interval_ms: TEST_INTERVAL_MS,
            console_interval_ms: TEST_INTERVAL_MS,
            login_check_interval_ms: TEST_INTERVAL_MS,
            seed_sites: false,
            parent: None,
            node_token_file: None,
            parent_cert_sha256: None,
            hub_name: None,
            public_url: None,
            peer_hubs: Vec::new(),
            cookie_domain: None,
            bootstrap_accounts: vec![
                (
                    TEST_ORGANIZER.0.to_owned(),
                    TEST_ORGANIZER.1.to_owned(),
                    Role::Organizer,
                ),
                (
                    TEST_STAFF.0.to_owned(),
                    TEST_STAFF.1.to_owned(),
                    Role::Staff,
                ),
            ],
        }
    }

    /// Limits of each signalling session.
    pub fn session_limits(&self) -> diemcau_signaling::Limits {
        diemcau_signaling::Limits {
            messages_per_second: self.max_messages_per_second.max(1),
            burst: self.max_messages_per_second.max(1) * 3,
            first_message_timeout: std::time::Duration::from_secs(30),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_seconds.max(1)),
        }
    }

    /// How often the hub notes which sessions are alive.
    pub fn liveness_interval(&self) -> Duration {
        interval(self.liveness_interval_ms)
    }

    /// How often the chair's console is refreshed.
    pub fn console_interval(&self) -> Duration {
        interval(self.console_interval_ms)
    }

    /// How often the logins of the chairing sessions are checked.
    pub fn login_check_interval(&self) -> Duration {
        interval(self.login_check_interval_ms)
    }

    /// Timeouts of the web server's connections.
    pub fn server_limits(&self) -> ServerLimits {
        let seconds = |s: u64| std::time::Duration::from_secs(s.max(1));
        ServerLimits {
            tls_handshake_timeout: seconds(self.tls_handshake_timeout_seconds),
            request_header_timeout: seconds(self.request_header_timeout_seconds),
            request_timeout: seconds(self.request_timeout_seconds),
            idle_timeout: seconds(self.http_idle_timeout_seconds),
            trusted_proxies: self.trusted_proxy.clone(),
        }
    }

    /// TCP connections one address may hold: a cap below the WebSocket cap would override it.
    pub fn tcp_connections_per_address(&self) -> usize {
        self.max_http_connections_per_address
            .max(self.max_connections_per_address)
            .max(1)
    }

    pub fn media(&self) -> MediaConfig {
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        MediaConfig {
            workers,
            bind_ip: self.media_bind,
            port: self.media_port,
            single_port: self.single_port,
            announce: self.announce_addresses(),
            tcp: self.media_tcp_port.0.map(|port| TcpConfig {
                port,
                announce_port: self.media_tcp_announce_port,
                max_connections: self.media_tcp_max_connections,
                max_per_address: self.media_tcp_max_per_address,
                ice_timeout: Duration::from_secs(self.media_tcp_ice_timeout_seconds.max(1)),
                ..TcpConfig::default()
            }),
        }
    }

    /// The addresses clients reach the hub at (for the self-signed certificate's names).
    pub fn announce_addresses(&self) -> Vec<IpAddr> {
        if !self.announce_ip.is_empty() {
            return self.announce_ip.clone();
        }
        if !self.media_bind.is_unspecified() {
            return vec![self.media_bind];
        }
        let mut addresses = Vec::new();
        if let Some(ip) = primary_address() {
            addresses.push(ip);
        }
        addresses.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
        addresses
    }
}

/// The address the machine would use to reach the outside: a connected UDP socket learns it
/// from the routing table without sending anything.
fn primary_address() -> Option<IpAddr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The organizer account of [`Config::for_tests`] (username, password). Tests only.
pub const TEST_ORGANIZER: (&str, &str) = ("organizer", "organizer-password-for-tests");

/// The staff account of [`Config::for_tests`] (username, password). Tests only.
pub const TEST_STAFF: (&str, &str) = ("staff", "staff-password-for-tests");

/// The liveness, console and login-check intervals of [`Config::for_tests`], in milliseconds:
/// short, so that tests wait for what these timers do in a fraction of a second. Tests of the
/// binary pass it as `--liveness-interval-ms` and the like.
pub const TEST_INTERVAL_MS: u64 = 100;

/// Asia/Ho_Chi_Minh: UTC+7 all year.
pub const VIETNAM: UtcOffset = time::macros::offset!(+7);

static TEST_DIRS: AtomicU64 = AtomicU64::new(0);

/// A timer's period from a flag; 0 would make a timer spin, so it means 1 ms.
fn interval(milliseconds: u64) -> Duration {
    Duration::from_millis(milliseconds.max(1))
}

/// The `--media-tcp-port` setting: a port, or `None` for `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaTcpPort(pub Option<u16>);

fn parse_tcp_port(text: &str) -> Result<MediaTcpPort, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(MediaTcpPort(None));
    }
    text.parse::<u16>()
        .map(|port| MediaTcpPort(Some(port)))
        .map_err(|_| format!("expected a port (0 to 65535) or `off`, not `{text}`"))
}

fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let format = time::macros::format_description!("[offset_hour]:[offset_minute]");
    UtcOffset::parse(text, format).map_err(|e| format!("expected an offset like +07:00: {e}"))
}

/// A domain for `--cookie-domain`: a host name with at least one dot, no scheme, no port.
fn parse_cookie_domain(text: &str) -> Result<String, String> {
    let domain = text.trim().trim_start_matches('.').to_ascii_lowercase();
    let valid = domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if valid {
        Ok(domain)
    } else {
        Err(format!(
            "`{text}` is not a domain: give the part the hubs' host names share, for example \
             tinh.gov.vn"
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn single_port_is_off_unless_asked() {
        let config = Config::try_parse_from(["diemcau", "--media-port", "41000"]).expect("parse");
        assert!(!config.media().single_port);
        let config = Config::try_parse_from(["diemcau", "--single-port", "--media-port", "41000"])
            .expect("parse");
        let media = config.media();
        assert!(media.single_port);
        assert_eq!(media.port, 41000);
    }

    #[test]
    fn a_cookie_domain_is_a_host_name_with_a_dot() {
        assert_eq!(
            super::parse_cookie_domain(".Tinh.gov.vn").as_deref(),
            Ok("tinh.gov.vn")
        );
        for wrong in ["vn", "https://tinh.gov.vn", "tinh.gov.vn:8443", "a..vn", ""] {
            assert!(super::parse_cookie_domain(wrong).is_err(), "{wrong}");
        }
    }
}
