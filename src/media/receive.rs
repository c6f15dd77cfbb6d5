//! A worker's socket read a batch at a time: `recvmmsg` through quinn-udp, each message split
//! at its GRO stride.
//!
//! The socket has `UDP_GRO` on (quinn-udp turns it on with the GSO it offers for sending): a
//! run of equal-size datagrams from one sender, sent with GSO or coalesced by the receiving
//! network card's GRO, is delivered as one message with its segment size.
//! Each message therefore gets room for the largest such run, 64 KiB; a smaller buffer would
//! cut the run short and lose the datagrams after the first. The room is one allocation that
//! the kernel maps as it is written, so the pages a datagram never reaches cost nothing.
//!
//! A datagram reaches its session with the time the worker handles it, as before: the delay
//! of a worker that falls behind its socket then shows in the arrival times the hub reports
//! to the senders, and their estimates come down with it (BENCHMARKS.md, "Datagrams read a
//! batch at a time": with the kernel's receive stamps instead, the 300-site wall's sites kept
//! sending into a saturated core).

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use mio::net::UdpSocket;
use quinn_udp::{RecvMeta, UdpSockRef, UdpSocketState};

/// Messages read in one call at most.
pub(super) const MESSAGES: usize = 16;
/// Room for one message: the most a GRO run holds (a 64 KiB IP datagram).
const MESSAGE_ROOM: usize = 64 * 1024;

pub(super) struct Reception {
    /// `None` where the platform's socket options could not be set: one datagram per
    /// `recv_from` then, without GRO.
    state: Option<UdpSocketState>,
    room: Vec<u8>,
    meta: [RecvMeta; MESSAGES],
    read: usize,
}

impl Reception {
    /// A reader of the socket whose options quinn-udp set as `state`; `None` where they
    /// could not be set.
    pub(super) fn new(state: Option<UdpSocketState>) -> Self {
        Self {
            state,
            room: vec![0; MESSAGES * MESSAGE_ROOM],
            meta: [RecvMeta::default(); MESSAGES],
            read: 0,
        }
    }

    /// Reads what the socket holds, up to [`MESSAGES`] messages, for
    /// [`Reception::datagrams`] to hand out. `WouldBlock` when the socket is empty.
    pub(super) fn read(&mut self, socket: &UdpSocket) -> io::Result<()> {
        self.read = 0;
        let count = match &self.state {
            Some(state) => {
                let mut slices: [IoSliceMut; MESSAGES] = {
                    let mut rooms = self.room.chunks_mut(MESSAGE_ROOM).map(IoSliceMut::new);
                    std::array::from_fn(|_| {
                        rooms.next().unwrap_or_else(|| IoSliceMut::new(&mut []))
                    })
                };
                state.recv(UdpSockRef::from(socket), &mut slices, &mut self.meta)?
            }
            None => {
                let room = self.room.get_mut(..MESSAGE_ROOM).unwrap_or_default();
                let (len, addr) = socket.recv_from(room)?;
                let mut meta = RecvMeta::default();
                (meta.addr, meta.len, meta.stride) = (addr, len, len);
                self.meta[0] = meta;
                1
            }
        };
        self.read = count;
        Ok(())
    }

    /// The datagrams of the last [`Reception::read`], in the order they arrived, each with
    /// its sender.
    pub(super) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.room
            .chunks(MESSAGE_ROOM)
            .zip(&self.meta)
            .take(self.read)
            .flat_map(|(room, meta)| {
                room.get(..meta.len)
                    .unwrap_or_default()
                    .chunks(meta.stride.max(1))
                    .map(move |datagram| (meta.addr, datagram))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn pair() -> (UdpSocket, std::net::UdpSocket) {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver.set_nonblocking(true).unwrap();
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.connect(receiver.local_addr().unwrap()).unwrap();
        (UdpSocket::from_std(receiver), sender)
    }

    /// Reads until `want` datagrams came or a second passed.
    fn read_all(reception: &mut Reception, socket: &UdpSocket, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        while got.len() < want && Instant::now() < deadline {
            match reception.read(socket) {
                Ok(()) => got.extend(reception.datagrams().map(|(_, d)| d.to_vec())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
        got
    }

    /// A run of datagrams sent with GSO arrives whole, one datagram each, however the kernel
    /// delivers it (with `UDP_GRO` on, as one message: a 2 KiB buffer kept only its first
    /// 2,048 bytes).
    #[test]
    fn a_gso_run_arrives_datagram_by_datagram() {
        let (socket, sender) = pair();
        let mut reception = Reception::new(UdpSocketState::new(UdpSockRef::from(&socket)).ok());
        let sending = UdpSocketState::new(UdpSockRef::from(&sender)).unwrap();
        if sending.max_gso_segments() < 2 {
            eprintln!("no GSO on this kernel: the run is sent datagram by datagram");
        }
        let contents: Vec<u8> = (0..3)
            .flat_map(|i| std::iter::repeat_n(b'a' + i, 1_000))
            .chain(std::iter::repeat_n(b'z', 500))
            .collect();
        let segments = sending.max_gso_segments().min(4);
        let destination = socket.local_addr().unwrap();
        for run in contents.chunks(1_000 * segments) {
            let transmit = quinn_udp::Transmit {
                destination,
                ecn: None,
                contents: run,
                segment_size: (segments > 1).then_some(1_000),
                src_ip: None,
            };
            sending
                .try_send(UdpSockRef::from(&sender), &transmit)
                .unwrap();
        }
        let got = read_all(&mut reception, &socket, 4);
        let lengths: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(lengths, [1_000, 1_000, 1_000, 500]);
        for (datagram, byte) in got.iter().zip([b'a', b'b', b'c', b'z']) {
            assert!(
                datagram.iter().all(|b| *b == byte),
                "a datagram mixed with another"
            );
        }
    }
}
