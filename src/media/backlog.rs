//! What a worker reads first when its socket falls behind.
//!
//! A worker that cannot keep up leaves datagrams in its socket's receive buffer, and once the
//! buffer is full the kernel drops whatever arrives next: a studio packet, which every site then
//! misses and asks to be resent, or a joining site's handshake, which times out. Most of what a
//! hub receives is its sites' RTCP (transport-wide feedback up to twenty times a second per
//! site, receiver reports, NACKs), and a site's next report covers one that went missing. So
//! while the socket holds more than half of its buffer, the worker reads RTCP and drops it
//! unhandled (a read costs a fraction of handling it), handles everything else (media, STUN,
//! DTLS) as before, and goes back to handling RTCP once the socket is empty.
//!
//! The socket's fill comes from `SO_MEMINFO` (Linux); elsewhere nothing is shed.

use std::os::fd::AsRawFd;

/// A socket holding more than this share (1/n) of its buffer is behind: an eighth.
const BEHIND_ABOVE: u64 = 8;

/// Whether a datagram is RTCP: an RTP-range first byte (RFC 7983) with an RTCP packet type
/// (RFC 5761, section 4: 192–223 in the second byte).
pub(super) fn is_rtcp(datagram: &[u8]) -> bool {
    matches!(datagram, [128..=191, 192..=223, ..])
}

/// Whether a worker sheds RTCP now, and how much it shed.
#[derive(Debug, Default)]
pub(super) struct Backlog {
    shedding: bool,
    /// RTCP datagrams read and dropped since the worker started.
    shed: u64,
}

impl Backlog {
    /// Looks at the socket's fill, `queued` of `capacity` bytes (as the kernel counts them,
    /// each datagram with its bookkeeping): above an eighth, RTCP is shed until the socket
    /// empties.
    pub(super) fn observe(&mut self, queued: u64, capacity: u64) {
        if !self.shedding && capacity > 0 && queued > capacity / BEHIND_ABOVE {
            self.shedding = true;
            tracing::debug!(queued, capacity, "media socket behind: shedding RTCP");
        }
    }

    /// The socket is empty: RTCP is handled again.
    pub(super) fn drained(&mut self) {
        if self.shedding {
            self.shedding = false;
            tracing::debug!(
                shed = self.shed,
                "media socket drained: handling RTCP again"
            );
        }
    }

    /// Whether this datagram is dropped unhandled (and counted).
    pub(super) fn sheds(&mut self, datagram: &[u8]) -> bool {
        let shed = self.shedding && is_rtcp(datagram);
        self.shed += u64::from(shed);
        shed
    }

    pub(super) fn shedding(&self) -> bool {
        self.shedding
    }

    pub(super) fn shed(&self) -> u64 {
        self.shed
    }
}

/// A socket's receive side, as the kernel accounts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SocketMemory {
    /// Bytes held in the receive queue, each datagram with the kernel's bookkeeping.
    pub queued: u64,
    /// The receive buffer: past it, arriving datagrams are dropped.
    pub capacity: u64,
    /// Datagrams the kernel dropped since the socket opened, a full buffer among the reasons.
    pub drops: u64,
}

/// `SO_MEMINFO` in the kernel's `asm-generic/socket.h`, and where its answer
/// (`linux/sock_diag.h`) holds the three values read: numbers Linux uses on the architectures
/// [`socket_memory`] names.
const SO_MEMINFO: libc::c_int = 55;
const MEMINFO_RMEM_ALLOC: usize = 0;
const MEMINFO_RCVBUF: usize = 1;
const MEMINFO_DROPS: usize = 8;

/// The socket's receive side as the kernel accounts it; `None` where it cannot be read, and
/// on platforms other than Linux on these architectures: nothing is shed there.
#[allow(unsafe_code)]
pub(super) fn socket_memory(socket: &impl AsRawFd) -> Option<SocketMemory> {
    let readable = cfg!(all(
        any(target_os = "linux", target_os = "android"),
        any(
            target_arch = "x86",
            target_arch = "x86_64",
            target_arch = "arm",
            target_arch = "aarch64",
            target_arch = "riscv64",
            target_arch = "loongarch64"
        )
    ));
    if !readable {
        return None;
    }
    // Room for every `SK_MEMINFO_*` value; an older kernel fills fewer.
    let mut values = [0u32; MEMINFO_DROPS + 1];
    let mut len = size_of_val(&values) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `values`, which is that long, and
    // stores in `len` how many it wrote.
    let result = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_MEMINFO,
            values.as_mut_ptr().cast(),
            &mut len,
        )
    };
    let filled = usize::try_from(len).ok()? / size_of::<u32>();
    let value = |index: usize| {
        values
            .get(index)
            .filter(|_| index < filled)
            .map_or(0, |v| u64::from(*v))
    };
    (result == 0).then(|| SocketMemory {
        queued: value(MEMINFO_RMEM_ALLOC),
        capacity: value(MEMINFO_RCVBUF),
        drops: value(MEMINFO_DROPS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RTCP is told from RTP, STUN and DTLS by its first two bytes.
    #[test]
    fn rtcp_is_told_from_the_rest() {
        // A receiver report, a transport-wide feedback (RTPFB), a PLI (PSFB).
        for rtcp in [[0x81, 201], [0x8f, 205], [0x81, 206], [0x80, 200]] {
            assert!(is_rtcp(&rtcp), "{rtcp:?}");
        }
        let rtp_vp8 = [0x90, 96];
        let rtp_marked = [0x90, 96 | 0x80];
        let stun = [0x00, 0x01];
        let dtls = [22, 0xfe];
        for other in [&rtp_vp8[..], &rtp_marked, &stun, &dtls, &[0x81], &[]] {
            assert!(!is_rtcp(other), "{other:?}");
        }
    }

    /// Shedding starts above an eighth of the buffer, stops when the socket empties, and only
    /// ever drops RTCP.
    #[test]
    fn rtcp_is_shed_from_an_eighth_full_until_drained() {
        let (rtcp, rtp, dtls) = ([0x81, 201], [0x90, 96], [22, 0xfe]);
        let mut backlog = Backlog::default();
        backlog.observe(1 << 20, 8 << 20);
        assert!(!backlog.shedding(), "an eighth full is not yet behind");
        assert!(!backlog.sheds(&rtcp));
        backlog.observe((1 << 20) + 1, 8 << 20);
        assert!(backlog.shedding());
        assert!(backlog.sheds(&rtcp));
        assert!(!backlog.sheds(&rtp));
        assert!(!backlog.sheds(&dtls));
        // Less behind, but not drained: still shedding.
        backlog.observe(1 << 10, 8 << 20);
        assert!(backlog.sheds(&rtcp));
        backlog.drained();
        assert!(!backlog.sheds(&rtcp));
        assert_eq!(backlog.shed(), 2);
        // A socket whose size cannot be read is never behind.
        backlog.observe(1 << 20, 0);
        assert!(!backlog.shedding());
    }

    /// The kernel's figures for a socket: its buffer, and what it holds.
    #[test]
    fn a_sockets_queue_is_read_from_the_kernel() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let Some(empty) = socket_memory(&receiver) else {
            return; // not read on this platform
        };
        assert_eq!(empty.queued, 0);
        assert!(empty.capacity > 0);
        for _ in 0..10 {
            sender
                .send_to(&[0x81, 201, 0, 1], receiver.local_addr().unwrap())
                .unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let memory = socket_memory(&receiver).unwrap();
            if memory.queued >= 10 * 4 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{memory:?}");
            std::thread::yield_now();
        }
    }
}
