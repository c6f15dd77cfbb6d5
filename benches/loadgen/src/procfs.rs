//! Readings from Linux's /proc: a process's CPU time and resident memory (the hub's cost,
//! apart from the generator's), a thread's own CPU time, the kernel's UDP counters (to
//! tell a loss in the hub from a socket buffer that overflowed), and the datagrams dropped
//! at one process's own UDP sockets.

use std::collections::HashSet;
use std::io;
use std::sync::OnceLock;

use serde::Serialize;

/// A process's CPU time and memory at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// utime + stime of every thread, alive or gone, in nanoseconds (clock-tick resolution).
    pub cpu_ns: u64,
    /// VmRSS.
    pub rss_bytes: u64,
    /// RssAnon: the heap, stacks and other private memory (None on kernels before 4.5).
    pub rss_anon_bytes: Option<u64>,
    /// RssFile: pages of mapped files, mostly the binary's code as it is first run.
    pub rss_file_bytes: Option<u64>,
    pub threads: u64,
}

/// Reads `/proc/PID/stat` (utime, stime) and `/proc/PID/status` (VmRSS, RssAnon, RssFile).
pub fn sample(pid: u32) -> io::Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let (ticks, threads) = parse_stat(&stat).ok_or_else(|| bad("stat"))?;
    let rss_kib = parse_status_kib(&status, "VmRSS:").ok_or_else(|| bad("status"))?;
    Ok(ProcessSample {
        cpu_ns: ticks * (1_000_000_000 / clock_ticks_per_second()),
        rss_bytes: rss_kib * 1024,
        rss_anon_bytes: parse_status_kib(&status, "RssAnon:").map(|k| k * 1024),
        rss_file_bytes: parse_status_kib(&status, "RssFile:").map(|k| k * 1024),
        threads,
    })
}

/// CPU time of the calling thread in nanoseconds: the scheduler's exact figure
/// (`/proc/thread-self/schedstat`), else utime + stime.
pub fn thread_cpu_ns() -> Option<u64> {
    if let Ok(schedstat) = std::fs::read_to_string("/proc/thread-self/schedstat")
        && let Some(ns) = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        && ns > 0
    {
        return Some(ns);
    }
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let (ticks, _) = parse_stat(&stat)?;
    Some(ticks * (1_000_000_000 / clock_ticks_per_second()))
}

/// The kernel's UDP counters (`/proc/net/snmp`), all sockets of the network namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UdpCounters {
    pub in_datagrams: u64,
    pub in_errors: u64,
    pub out_datagrams: u64,
    /// Datagrams dropped because a receiving socket's buffer was full.
    pub rcvbuf_errors: u64,
    pub sndbuf_errors: u64,
}

impl UdpCounters {
    pub fn read() -> Option<UdpCounters> {
        let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
        let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
        let names: Vec<&str> = lines.next()?.split_whitespace().collect();
        let values: Vec<&str> = lines.next()?.split_whitespace().collect();
        let field = |name: &str| -> u64 {
            names
                .iter()
                .position(|n| *n == name)
                .and_then(|i| values.get(i))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Some(UdpCounters {
            in_datagrams: field("InDatagrams"),
            in_errors: field("InErrors"),
            out_datagrams: field("OutDatagrams"),
            rcvbuf_errors: field("RcvbufErrors"),
            sndbuf_errors: field("SndbufErrors"),
        })
    }

    pub fn since(&self, earlier: &UdpCounters) -> UdpCounters {
        UdpCounters {
            in_datagrams: self.in_datagrams.saturating_sub(earlier.in_datagrams),
            in_errors: self.in_errors.saturating_sub(earlier.in_errors),
            out_datagrams: self.out_datagrams.saturating_sub(earlier.out_datagrams),
            rcvbuf_errors: self.rcvbuf_errors.saturating_sub(earlier.rcvbuf_errors),
            sndbuf_errors: self.sndbuf_errors.saturating_sub(earlier.sndbuf_errors),
        }
    }
}

/// Datagrams the kernel dropped at the UDP sockets process `pid` holds, since each opened
/// (a full receive buffer, mostly): the `drops` column of `/proc/PID/net/udp` and `udp6`
/// for the sockets among its open files. `None` where its files cannot be read.
pub fn socket_drops(pid: u32) -> Option<u64> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let Ok(target) = entry.and_then(|e| std::fs::read_link(e.path())) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
            .and_then(|t| t.parse::<u64>().ok())
        {
            inodes.insert(inode);
        }
    }
    let mut drops = 0;
    for table in ["udp", "udp6"] {
        if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) {
            drops += udp_table_drops(&text, &inodes);
        }
    }
    Some(drops)
}

/// The sum of the `drops` column of a `/proc/net/udp` table over the sockets in `inodes`.
fn udp_table_drops(table: &str, inodes: &HashSet<u64>) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(9)?.parse().ok()?;
            let drops: u64 = fields.get(12)?.parse().ok()?;
            inodes.contains(&inode).then_some(drops)
        })
        .sum()
}

/// The whole machine's CPU time (`/proc/stat`), in nanoseconds: busy and total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MachineCpu {
    pub busy_ns: u64,
    pub total_ns: u64,
}

impl MachineCpu {
    pub fn read() -> Option<MachineCpu> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        let ns = 1_000_000_000 / clock_ticks_per_second();
        Some(MachineCpu {
            busy_ns: (total - idle.min(total)) * ns,
            total_ns: total * ns,
        })
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `CLK_TCK`, asked once of `getconf` (100 on every Linux we know of).
pub fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// utime + stime (clock ticks) and the thread count from a `stat` line.
fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]: utime is field 14, stime 15, num_threads 20.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let threads: u64 = fields.get(17)?.parse().ok()?;
    Some((utime + stime, threads))
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn bad(file: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unreadable /proc {file}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_name() {
        let stat = "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 7 0 \
                    123 456 789";
        assert_eq!(parse_stat(stat), Some((325, 7)));
    }

    #[test]
    fn sums_the_drops_of_the_given_sockets() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1108: 0100007F:A1B2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17
 1109: 0100007F:A1B3 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4343 2 0000000000000000 5
 1110: 0100007F:A1B4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4444 2 0000000000000000 100
";
        let inodes = HashSet::from([4242, 4444, 9999]);
        assert_eq!(udp_table_drops(table, &inodes), 117);
        assert_eq!(udp_table_drops(table, &HashSet::new()), 0);
    }

    #[test]
    fn counts_what_overflowed_an_own_socket() {
        use std::net::UdpSocket;
        let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sender = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let before = socket_drops(std::process::id()).expect("own sockets");
        // Nobody reads: 8 MiB is beyond any receive buffer the kernel gives by default.
        let datagram = [0u8; 1200];
        for _ in 0..7000 {
            sender
                .send_to(&datagram, receiver.local_addr().expect("address"))
                .expect("send");
        }
        let after = socket_drops(std::process::id()).expect("own sockets");
        assert!(
            after > before,
            "{after} datagrams dropped after the flood, {before} before"
        );
    }

    #[test]
    fn reads_own_process() {
        let s = sample(std::process::id()).expect("own /proc");
        assert!(s.rss_bytes > 0);
        assert!(s.threads >= 1);
        assert!(thread_cpu_ns().is_some());
    }
}
