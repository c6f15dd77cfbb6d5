//! Configuration: command-line flags, each with an environment variable, all with defaults
//! that run the hub on one machine with nothing else installed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

use clap::Parser;

use crate::media::MediaConfig;

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
    /// Open these ports in the firewall.
    #[arg(long, env = "DIEMCAU_MEDIA_PORT", default_value_t = 40000)]
    pub media_port: u16,

    /// IP address(es) announced to clients in ICE candidates, comma separated. Default: the
    /// bind address, or when it is 0.0.0.0 the machine's main address and 127.0.0.1.
    #[arg(long, env = "DIEMCAU_ANNOUNCE_IP", value_delimiter = ',')]
    pub announce_ip: Vec<IpAddr>,

    /// Number of media workers (threads, one UDP socket each). Default: one per CPU core.
    #[arg(long, env = "DIEMCAU_WORKERS")]
    pub workers: Option<usize>,

    /// Most participants in one meeting (studio and sites).
    #[arg(long, env = "DIEMCAU_MAX_PARTICIPANTS", default_value_t = 1500)]
    pub max_participants: usize,
}

impl Config {
    /// Everything on loopback with free ports and two workers: for tests.
    pub fn for_tests() -> Config {
        Config {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            media_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            media_port: 0,
            announce_ip: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
            workers: Some(2),
            max_participants: 1500,
        }
    }

    pub fn media(&self) -> MediaConfig {
        let workers = self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        MediaConfig {
            workers,
            bind_ip: self.media_bind,
            port: self.media_port,
            announce: self.announce_addresses(),
        }
    }

    fn announce_addresses(&self) -> Vec<IpAddr> {
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
