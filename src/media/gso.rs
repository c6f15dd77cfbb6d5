//! One UDP GSO send of datagrams that stay in their own buffers.
//!
//! A site's run of datagrams leaves as one `sendmsg` with `UDP_SEGMENT`: the kernel cuts the
//! message into datagrams of the segment size (the last may be shorter). quinn-udp takes the
//! message as one slice, so each datagram had to be copied after the others first; here each
//! buffer is one entry of the message's `iovec` array and the kernel reads them where they are,
//! so a forwarded packet is written once (protected, by str0m) and copied only by the kernel.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

/// Most datagrams in one send: what quinn-udp reports for Linux, and the `iovec` array's size.
pub(super) const MAX_SEGMENTS: usize = 64;

/// How a GSO send failed.
pub(super) enum SendError {
    /// The socket's buffer is full.
    WouldBlock,
    /// The kernel or the device refuses segmentation offload (`EIO`, `EINVAL`): send these
    /// datagrams, and all later ones, one by one.
    Unsupported(io::Error),
    /// Anything else (an ICMP error from a vanished client, a datagram too large).
    Other(io::Error),
}

/// Sends `datagrams` to `destination` as one GSO send of `segment_size`-byte segments: every
/// datagram but the last must be that long, the last at most that, and there must be at most
/// [`MAX_SEGMENTS`] of them; otherwise nothing is sent and the error says the input is
/// invalid.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(super) fn send<'a>(
    socket: &impl AsRawFd,
    destination: SocketAddr,
    datagrams: impl Iterator<Item = &'a [u8]>,
    segment_size: usize,
) -> Result<(), SendError> {
    let invalid = || SendError::Other(io::Error::from(io::ErrorKind::InvalidInput));
    let segment_size = u16::try_from(segment_size).map_err(|_| invalid())?;
    let mut iovecs = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; MAX_SEGMENTS];
    let mut count = 0;
    let mut ended = false;
    for datagram in datagrams {
        // The kernel cuts the message every `segment_size` bytes: a datagram after a shorter
        // one, or a longer one, would come out cut elsewhere.
        let (Some(slot), false) = (iovecs.get_mut(count), ended) else {
            return Err(invalid());
        };
        if datagram.len() > usize::from(segment_size) {
            return Err(invalid());
        }
        ended = datagram.len() < usize::from(segment_size);
        // The kernel only reads through `iov_base` for a send.
        slot.iov_base = datagram.as_ptr().cast_mut().cast();
        slot.iov_len = datagram.len();
        count += 1;
    }
    let address = socket2::SockAddr::from(destination);
    // Room for one `cmsghdr` carrying a `u16`, aligned as a `cmsghdr` must be.
    let mut control = [0u64; 4];
    // SAFETY: `CMSG_SPACE` only computes a size.
    let control_len = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as usize;
    debug_assert!(control_len <= size_of_val(&control));

    // SAFETY: an all-zero `msghdr` is valid (null pointers, zero lengths); every pointer set
    // below points into a local that outlives the `sendmsg` call, the `iovec`s into the
    // borrowed datagrams, and the lengths are those of what they point to. The control buffer
    // is zeroed, aligned for `cmsghdr` and `control_len` bytes long, so `CMSG_FIRSTHDR` returns
    // a header inside it and `CMSG_DATA` room for the `u16` `CMSG_SPACE` made space for.
    unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_name = address.as_ptr().cast_mut().cast();
        message.msg_namelen = address.len();
        message.msg_iov = iovecs.as_mut_ptr();
        message.msg_iovlen = count;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = control_len as _;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_UDP;
        (*header).cmsg_type = libc::UDP_SEGMENT;
        (*header).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<u16>(), segment_size);
        loop {
            if libc::sendmsg(socket.as_raw_fd(), &message, 0) >= 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            return Err(match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => SendError::WouldBlock,
                Some(libc::EIO | libc::EINVAL) => SendError::Unsupported(error),
                _ => SendError::Other(error),
            });
        }
    }
}

/// No segmentation offload outside Linux: the caller sends one by one.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(super) fn send<'a>(
    _socket: &impl AsRawFd,
    _destination: SocketAddr,
    _datagrams: impl Iterator<Item = &'a [u8]>,
    _segment_size: usize,
) -> Result<(), SendError> {
    Err(SendError::Unsupported(io::Error::from(
        io::ErrorKind::Unsupported,
    )))
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Datagrams in separate buffers arrive as the same separate datagrams, in order, the last
    /// one shorter.
    #[test]
    fn separate_buffers_arrive_as_their_own_datagrams() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagrams: Vec<Vec<u8>> = (0..5u8)
            .map(|i| vec![i; if i == 4 { 300 } else { 1200 }])
            .collect();
        let sent = send(
            &sender,
            receiver.local_addr().unwrap(),
            datagrams.iter().map(Vec::as_slice),
            1200,
        );
        match sent {
            Ok(()) => {}
            // A kernel without UDP GSO: nothing to check here.
            Err(SendError::Unsupported(_)) => return,
            Err(SendError::WouldBlock) => panic!("a fresh socket's buffer is full"),
            Err(SendError::Other(e)) => panic!("GSO send failed: {e}"),
        }
        let mut buf = [0u8; 2048];
        for expected in &datagrams {
            let (n, from) = receiver.recv_from(&mut buf).unwrap();
            assert_eq!(from, sender.local_addr().unwrap());
            assert_eq!(&buf[..n], expected.as_slice());
        }
    }

    /// A run the kernel would cut elsewhere is refused whole: a datagram after a shorter one,
    /// a longer one, or more than [`MAX_SEGMENTS`].
    #[test]
    fn a_run_the_kernel_would_cut_elsewhere_is_refused() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = receiver.local_addr().unwrap();
        let (full, short, long) = (vec![1u8; 1200], vec![2u8; 300], vec![3u8; 1300]);
        let many = vec![full.as_slice(); MAX_SEGMENTS + 1];
        for run in [
            vec![full.as_slice(), short.as_slice(), full.as_slice()],
            vec![full.as_slice(), long.as_slice()],
            many,
        ] {
            let sent = send(&sender, to, run.into_iter(), 1200);
            assert!(
                matches!(sent, Err(SendError::Other(ref e)) if e.kind() == io::ErrorKind::InvalidInput),
                "a bad run was sent"
            );
        }
        receiver.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 2048];
        assert!(receiver.recv_from(&mut buf).is_err(), "nothing was sent");
    }
}
