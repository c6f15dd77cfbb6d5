//! A turn's datagrams, sent in as few system calls as the kernel allows.
//!
//! The media loop sends what one turn produced together, in the order the worker wrote it
//! (each producer's packets of the turn to one site after the other). [`plan`] cuts them
//! into runs: a run of equal-size datagrams to one site (the last may be shorter) becomes
//! one message with `UDP_SEGMENT`, which the kernel cuts back into datagrams (GSO). [`send`]
//! hands the messages to every site to the kernel together, [`MESSAGES_PER_CALL`] to a
//! `sendmmsg` call: at a thousand sites a turn is mostly single datagrams to different sites
//! (sound, the lowest layer), one `sendto` each before (BENCHMARKS.md, "Every site's
//! datagrams in one call": 7 % of the core at a thousand sites on sound alone, 9 % of the
//! CPU per packet at 50 sites).
//!
//! Each datagram stays in its own buffer: a message's `iovec` entries point at them, so a
//! forwarded packet is written once (protected, by str0m) and copied only by the kernel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Most datagrams in one GSO message: what quinn-udp reports for Linux.
pub(super) const MAX_SEGMENTS: usize = 64;
/// Most messages in one `sendmmsg` call.
const MESSAGES_PER_CALL: usize = 64;
/// Most datagrams, all messages together, in one `sendmmsg` call: the `iovec` array's size.
const DATAGRAMS_PER_CALL: usize = 512;

/// A datagram to send: where to, and its bytes.
pub(super) trait Datagram {
    fn destination(&self) -> SocketAddr;
    fn contents(&self) -> &[u8];
}

/// Datagrams `start..start + count` of a turn, to one destination, sent as one message:
/// every one `segment_size` bytes long but the last, which may be shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub start: usize,
    pub count: usize,
    pub segment_size: usize,
}

/// How the kernel refused a message.
#[derive(Debug)]
pub(super) enum SendError {
    /// The socket's buffer is full.
    WouldBlock,
    /// The kernel or the device refuses segmentation offload (`EIO`, `EINVAL`): send this
    /// run's datagrams, and all later ones, one by one.
    Unsupported(io::Error),
    /// Anything else (an ICMP error from a vanished client, a datagram too large).
    Other(io::Error),
}

/// Cuts `datagrams`, in the order they are to leave, into runs of at most `max_segments`
/// consecutive datagrams and `max_bytes` bytes to one destination: each as long as the run's
/// first but the last, which may be shorter. `runs` is cleared first.
pub(super) fn plan<D: Datagram>(
    datagrams: &[D],
    max_segments: usize,
    max_bytes: usize,
    runs: &mut Vec<Run>,
) {
    runs.clear();
    let mut start = 0;
    while let Some(first) = datagrams.get(start) {
        let size = first.contents().len();
        let (mut count, mut bytes) = (1, size);
        while count < max_segments.min(MAX_SEGMENTS) {
            let Some(next) = datagrams.get(start + count) else {
                break;
            };
            let len = next.contents().len();
            // The kernel cuts the message every `size` bytes: a datagram after a shorter one,
            // or a longer one, would come out cut elsewhere.
            if next.destination() != first.destination() || len > size || bytes + len > max_bytes {
                break;
            }
            count += 1;
            bytes += len;
            if len < size {
                break;
            }
        }
        runs.push(Run {
            start,
            count,
            segment_size: size,
        });
        start += count;
    }
}

/// Sends every run of `datagrams` as one message (with `UDP_SEGMENT` when it holds more than
/// one datagram), the messages [`MESSAGES_PER_CALL`] to a `sendmmsg` call. `refused` hears of
/// each run the kernel did not take, and why; the others were sent. A run must be as
/// [`plan`] makes them; one that is not is refused with an invalid-input error, unsent.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) fn send<D: Datagram>(
    socket: &impl AsRawFd,
    datagrams: &[D],
    runs: &[Run],
    mut refused: impl FnMut(Run, SendError),
) {
    let mut rest = runs;
    while !rest.is_empty() {
        let taken = send_call(socket.as_raw_fd(), datagrams, rest, &mut refused);
        rest = rest.get(taken..).unwrap_or_default();
    }
}

/// The destination and datagrams of `run`, if the kernel would cut its message back into
/// exactly them: one destination, at most [`MAX_SEGMENTS`], each `segment_size` bytes long but
/// the last, which may be shorter.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn datagrams_of<'a, D: Datagram>(datagrams: &'a [D], run: &Run) -> Option<(SocketAddr, &'a [D])> {
    let of_run = datagrams.get(run.start..run.start.checked_add(run.count)?)?;
    let first = of_run.first()?;
    let fits = |(i, d): (usize, &D)| {
        let len = d.contents().len();
        d.destination() == first.destination()
            && (len == run.segment_size || (i + 1 == run.count && len <= run.segment_size))
    };
    let cut_right = run.count == 1
        || (run.count <= MAX_SEGMENTS
            && u16::try_from(run.segment_size).is_ok()
            && of_run.iter().enumerate().all(fits));
    cut_right.then_some((first.destination(), of_run))
}

/// Sends as many of `runs` as one call's arrays hold; returns how many it took (at least one).
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
fn send_call<D: Datagram>(
    fd: std::os::fd::RawFd,
    datagrams: &[D],
    runs: &[Run],
    refused: &mut impl FnMut(Run, SendError),
) -> usize {
    use std::mem::MaybeUninit;

    let invalid = || SendError::Other(io::Error::from(io::ErrorKind::InvalidInput));
    // SAFETY: an all-zero `mmsghdr` is valid (null pointers, zero lengths).
    let mut messages: [libc::mmsghdr; MESSAGES_PER_CALL] = unsafe { std::mem::zeroed() };
    let mut iovecs = [const { MaybeUninit::<libc::iovec>::uninit() }; DATAGRAMS_PER_CALL];
    let mut addresses = [const { MaybeUninit::<socket2::SockAddr>::uninit() }; MESSAGES_PER_CALL];
    // Room for one `cmsghdr` carrying a `u16` per message, aligned as a `cmsghdr` must be.
    let mut controls = [[0u64; 4]; MESSAGES_PER_CALL];
    // SAFETY: `CMSG_SPACE` only computes a size.
    let control_len = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    debug_assert!(control_len <= size_of::<[u64; 4]>());
    // Which of `runs` each message carries: a run the kernel would cut wrong is left out.
    let mut carried = [0usize; MESSAGES_PER_CALL];

    // Each message's slots, and the `iovec`s still free, are handed out once each, so the
    // pointers the messages keep into them stay valid until the call.
    let mut slots = messages
        .iter_mut()
        .zip(addresses.iter_mut())
        .zip(controls.iter_mut())
        .zip(carried.iter_mut());
    let mut free: &mut [MaybeUninit<libc::iovec>] = &mut iovecs;
    let (mut count, mut taken) = (0, 0);
    for (index, run) in runs.iter().enumerate() {
        // The first run is always taken (one too long for the arrays is refused), so that
        // each call makes progress.
        if index > 0 && (count == MESSAGES_PER_CALL || run.count > free.len()) {
            break;
        }
        taken = index + 1;
        let Some((destination, of_run)) = datagrams_of(datagrams, run) else {
            refused(*run, invalid());
            continue;
        };
        let Some((((message, address), control), carrier)) = slots.next() else {
            refused(*run, invalid());
            continue;
        };
        let Some((entries, rest)) = std::mem::take(&mut free).split_at_mut_checked(run.count)
        else {
            refused(*run, invalid());
            continue;
        };
        free = rest;
        for (entry, datagram) in entries.iter_mut().zip(of_run) {
            // The kernel only reads through `iov_base` for a send.
            entry.write(libc::iovec {
                iov_base: datagram.contents().as_ptr().cast_mut().cast(),
                iov_len: datagram.contents().len(),
            });
        }
        let address = address.write(socket2::SockAddr::from(destination));
        let header = &mut message.msg_hdr;
        header.msg_name = address.as_ptr().cast_mut().cast();
        header.msg_namelen = address.len();
        header.msg_iov = entries.as_mut_ptr().cast();
        header.msg_iovlen = run.count as _;
        if run.count > 1 {
            header.msg_control = control.as_mut_ptr().cast();
            header.msg_controllen = control_len as _;
            // SAFETY: the control buffer is zeroed, aligned for `cmsghdr` and `control_len`
            // bytes long, so `CMSG_FIRSTHDR` returns a header inside it and `CMSG_DATA` room
            // for the `u16` `CMSG_SPACE` made space for ([`datagrams_of`] checked that the
            // segment size fits one).
            unsafe {
                let cmsg = libc::CMSG_FIRSTHDR(header);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(
                    libc::CMSG_DATA(cmsg).cast::<u16>(),
                    run.segment_size as u16,
                );
            }
        }
        *carrier = index;
        count += 1;
    }

    let mut sent = 0;
    while let Some(unsent) = messages.get_mut(sent..count) {
        if unsent.is_empty() {
            break;
        }
        // SAFETY: messages `sent..count` are filled in above; every pointer in them points
        // into a local array that outlives the call (addresses, `iovec`s, control buffers),
        // each handed out to one message only, or into the borrowed datagrams, with the
        // lengths of what it points to, and the kernel only reads them (and writes each
        // message's `msg_len`).
        let n = unsafe { libc::sendmmsg(fd, unsent.as_mut_ptr(), unsent.len() as _, 0) };
        if n > 0 {
            sent += n as usize;
            continue;
        }
        // The call failed on its first message, `sent`: report it and go on after it.
        let error = io::Error::last_os_error();
        let reason = match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => SendError::WouldBlock,
            Some(libc::EIO | libc::EINVAL) => SendError::Unsupported(error),
            _ => SendError::Other(error),
        };
        if let Some(run) = carried.get(sent).and_then(|&index| runs.get(index)) {
            refused(*run, reason);
        }
        sent += 1;
    }
    taken
}

/// No `sendmmsg` or segmentation offload outside Linux: one `sendto` per datagram.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn send<D: Datagram>(
    socket: &impl std::os::fd::AsFd,
    datagrams: &[D],
    runs: &[Run],
    mut refused: impl FnMut(Run, SendError),
) {
    let socket = socket2::SockRef::from(socket);
    for run in runs {
        for datagram in datagrams
            .get(run.start..run.start + run.count)
            .unwrap_or_default()
        {
            let address = socket2::SockAddr::from(datagram.destination());
            if let Err(e) = socket.send_to(datagram.contents(), &address) {
                let reason = match e.kind() {
                    io::ErrorKind::WouldBlock => SendError::WouldBlock,
                    _ => SendError::Other(e),
                };
                refused(*run, reason);
                break;
            }
        }
    }
}

#[cfg(test)]
impl Datagram for (SocketAddr, Vec<u8>) {
    fn destination(&self) -> SocketAddr {
        self.0
    }

    fn contents(&self) -> &[u8] {
        &self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    fn receiver() -> UdpSocket {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        receiver
    }

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Runs end at a new destination, a longer datagram, after a shorter one, at the most
    /// segments and at the most bytes.
    #[test]
    fn runs_are_cut_where_the_kernel_would_cut_otherwise() {
        let (a, b) = (address(1), address(2));
        let datagrams: Vec<(SocketAddr, Vec<u8>)> = [
            (a, 1200),
            (a, 1200),
            (a, 300),
            (a, 1200),
            (a, 1300),
            (b, 1300),
            (b, 1300),
            (b, 1300),
        ]
        .into_iter()
        .map(|(to, len)| (to, vec![0; len]))
        .collect();
        let mut runs = Vec::new();
        plan(&datagrams, 64, 65_000, &mut runs);
        let cut: Vec<(usize, usize, usize)> = runs
            .iter()
            .map(|r| (r.start, r.count, r.segment_size))
            .collect();
        assert_eq!(
            cut,
            [(0, 3, 1200), (3, 1, 1200), (4, 1, 1300), (5, 3, 1300)]
        );
        plan(&datagrams, 2, 65_000, &mut runs);
        assert_eq!(
            runs.iter().map(|r| r.count).collect::<Vec<_>>(),
            [2, 1, 1, 1, 2, 1]
        );
        plan(&datagrams, 64, 2_600, &mut runs);
        assert_eq!(
            runs.iter().map(|r| r.count).collect::<Vec<_>>(),
            [2, 1, 1, 1, 2, 1]
        );
        plan(&datagrams, 1, 65_000, &mut runs);
        assert_eq!(runs.len(), datagrams.len());
    }

    /// Runs to many sites, single datagrams and GSO runs, over several `sendmmsg` calls:
    /// every site gets its own datagrams, whole and in order, each from the one socket.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn every_site_gets_its_datagrams_whole_and_in_order() {
        let receivers: Vec<UdpSocket> = (0..150).map(|_| receiver()).collect();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut datagrams = Vec::new();
        for (i, r) in receivers.iter().enumerate() {
            let to = r.local_addr().unwrap();
            // Every third site gets a run of four (the last shorter), the others one.
            let count = if i % 3 == 0 { 4 } else { 1 };
            for k in 0..count {
                let len = if k == 3 { 300 } else { 1200 };
                datagrams.push((to, vec![(i * 4 + k) as u8; len]));
            }
        }
        let mut runs = Vec::new();
        plan(&datagrams, MAX_SEGMENTS, 65_000, &mut runs);
        assert_eq!(runs.len(), receivers.len());
        let mut refusals = Vec::new();
        send(&sender, &datagrams, &runs, |run, e| refusals.push((run, e)));
        // A kernel without UDP GSO refuses the runs of four: they are not checked then.
        let unsupported: Vec<Run> = refusals
            .iter()
            .filter(|(_, e)| matches!(e, SendError::Unsupported(_)))
            .map(|(run, _)| *run)
            .collect();
        assert_eq!(refusals.len(), unsupported.len(), "{refusals:?}");
        let mut buf = [0u8; 2048];
        for run in &runs {
            if unsupported.contains(run) {
                continue;
            }
            let first = &datagrams[run.start];
            let receiver = receivers
                .iter()
                .find(|r| r.local_addr().unwrap() == first.0)
                .unwrap();
            for (to, expected) in &datagrams[run.start..run.start + run.count] {
                let (n, from) = receiver.recv_from(&mut buf).unwrap();
                assert_eq!(receiver.local_addr().unwrap(), *to);
                assert_eq!(from, sender.local_addr().unwrap());
                assert_eq!(&buf[..n], expected.as_slice());
            }
        }
        for receiver in &receivers {
            receiver.set_nonblocking(true).unwrap();
            assert!(
                receiver.recv_from(&mut buf).is_err(),
                "one datagram too many"
            );
        }
    }

    /// A message the kernel refuses in the middle of a call (here a datagram to port 0) is
    /// reported alone, and the messages after it in the same call are sent.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_message_the_kernel_refuses_does_not_stop_the_rest_of_the_call() {
        let (first, last) = (receiver(), receiver());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagrams = vec![
            (first.local_addr().unwrap(), vec![1u8; 200]),
            (address(0), vec![2u8; 200]),
            (last.local_addr().unwrap(), vec![3u8; 200]),
        ];
        let mut runs = Vec::new();
        plan(&datagrams, MAX_SEGMENTS, 65_000, &mut runs);
        assert_eq!(runs.len(), 3);
        let mut refused = Vec::new();
        send(&sender, &datagrams, &runs, |run, e| {
            assert!(!matches!(e, SendError::WouldBlock), "{e:?}");
            refused.push(run);
        });
        assert_eq!(refused, [runs[1]]);
        let mut buf = [0u8; 2048];
        let (n, _) = first.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[1u8; 200]);
        let (n, _) = last.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[3u8; 200]);
    }

    /// A run the kernel would cut elsewhere is refused whole and unsent: a datagram after a
    /// shorter one, a longer one, more than [`MAX_SEGMENTS`], another destination inside it,
    /// or datagrams past the turn's end. The runs around it are sent.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn a_run_the_kernel_would_cut_elsewhere_is_refused_alone() {
        let (receiver, other) = (receiver(), receiver());
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (to, elsewhere) = (receiver.local_addr().unwrap(), other.local_addr().unwrap());
        let mut datagrams = vec![(to, vec![9u8; 100])];
        let mut bad = Vec::new();
        let add = |lens: &[(SocketAddr, usize)], datagrams: &mut Vec<(SocketAddr, Vec<u8>)>| {
            let start = datagrams.len();
            datagrams.extend(lens.iter().map(|&(to, len)| (to, vec![1u8; len])));
            Run {
                start,
                count: lens.len(),
                segment_size: lens[0].1,
            }
        };
        bad.push(add(&[(to, 1200), (to, 300), (to, 1200)], &mut datagrams));
        bad.push(add(&[(to, 1200), (to, 1300)], &mut datagrams));
        bad.push(add(&vec![(to, 1200); MAX_SEGMENTS + 1], &mut datagrams));
        bad.push(add(&[(to, 1200), (elsewhere, 1200)], &mut datagrams));
        bad.push(Run {
            start: datagrams.len(),
            count: 2,
            segment_size: 1200,
        });
        let good = Run {
            start: 0,
            count: 1,
            segment_size: 100,
        };
        let mut runs = vec![good];
        runs.extend(&bad);
        runs.push(good);
        let mut refused = Vec::new();
        send(&sender, &datagrams, &runs, |run, e| {
            assert!(
                matches!(e, SendError::Other(ref e) if e.kind() == io::ErrorKind::InvalidInput),
                "{e:?}"
            );
            refused.push(run);
        });
        assert_eq!(refused, bad);
        let mut buf = [0u8; 2048];
        for _ in 0..2 {
            let (n, _) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], &[9u8; 100]);
        }
        receiver.set_nonblocking(true).unwrap();
        other.set_nonblocking(true).unwrap();
        assert!(receiver.recv_from(&mut buf).is_err(), "a bad run was sent");
        assert!(other.recv_from(&mut buf).is_err(), "a bad run was sent");
    }
}
