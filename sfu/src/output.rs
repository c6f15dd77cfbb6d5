//! What a worker hands back to its driver: [`Output`]s (datagrams, relays, events, wake-ups),
//! the [`Event`]s for the hub's meeting logic, and its counters.

use std::sync::Arc;
use std::time::Instant;

use str0m::media::{MediaKind, Mid};
use str0m::net::Transmit;

use crate::ids::{PeerId, ProducerId, RouterId};
use crate::quality::{Quality, Transport};
use crate::router::MediaPacket;

/// A producer as the rest of the hub knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerInfo {
    pub id: ProducerId,
    pub router: RouterId,
    pub peer: PeerId,
    pub kind: MediaKind,
    /// Its simulcast layers (1 without simulcast).
    pub layers: u8,
    /// The m-line it arrives on at its publisher's connection.
    pub mid: Mid,
    /// The stream id its consumers announce (`a=msid`); its publisher's participant id when
    /// `None`. A hub relaying several sites over one connection names each site's tracks.
    pub stream: Option<String>,
}

/// Something that must reach the other workers: each gets it once.
#[derive(Debug, Clone)]
pub enum Relay {
    Media(Arc<MediaPacket>),
    KeyframeRequest {
        router: RouterId,
        producer: ProducerId,
        layer: u8,
    },
}

/// What happened, for the hub's meeting logic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// ICE and DTLS are up.
    PeerConnected(PeerId),
    /// The connection is gone (ICE timeout or DTLS close); the worker has dropped the peer.
    PeerClosed(PeerId),
    /// A peer started publishing a track.
    ProducerAdded(ProducerInfo),
    /// The hub renegotiates with a peer: send this offer to its client and feed back the answer.
    Offer { peer: PeerId, sdp: String },
    /// The peer's media goes over `transport` (first reported once ICE has chosen a path, then
    /// on every change).
    Transport { peer: PeerId, transport: Transport },
    /// Periodic link quality of a connected peer.
    Quality { peer: PeerId, quality: Quality },
    /// The peer's link no longer carries any video it should receive (`audio_only`), or
    /// carries it again. `shed`: it is the worker's load, not the peer's link, that takes
    /// its video ([`crate::Worker::handle_load`]).
    Reception {
        peer: PeerId,
        audio_only: bool,
        shed: bool,
    },
}

/// Output of [`crate::Worker::poll_output`].
#[derive(Debug)]
pub enum Output {
    /// Send this datagram from the worker's socket.
    Transmit(Transmit),
    Relay(Relay),
    /// A packet of a tapped producer ([`crate::Worker::set_tapped`]) as it arrived from its
    /// publisher (repairs included, in arrival order), for a recording.
    Tapped(Arc<MediaPacket>),
    Event(Event),
    /// Nothing more to do until this instant (or until new input).
    Timeout(Instant),
}

/// Buffers for the datagrams a worker writes at once (the packets a consumer's pacer lets go
/// as they are forwarded): str0m protects each into a buffer from here, and a driver gives the
/// buffer back with [`crate::Worker::give_back`] once the datagram is sent, for the next. A
/// forwarded packet then costs no allocation per site.
#[derive(Debug, Default)]
pub(crate) struct DatagramBuffers {
    free: Vec<Vec<u8>>,
}

impl DatagramBuffers {
    /// A new buffer's capacity: a full-size RTP packet (browsers send at most about 1,200
    /// bytes) with its SRTP tag. A longer one grows its buffer, which is then kept as well.
    const CAPACITY: usize = 1280;
    /// At most this many buffers wait for reuse: what a driver's send and the sites' pacers
    /// hold at once is usually fewer (the hub's driver sends every four datagrams a site, 256
    /// to 1,024).
    const KEEP: usize = 1024;

    /// A buffer to write a datagram into (its length and contents are what it last held).
    pub fn take(&mut self) -> Vec<u8> {
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(Self::CAPACITY))
    }

    /// Keeps `buffer` for reuse, unless enough wait or it is too small to be worth it.
    pub fn give_back(&mut self, buffer: Vec<u8>) {
        if self.free.len() < Self::KEEP && buffer.capacity() >= Self::CAPACITY {
            self.free.push(buffer);
        }
    }
}

/// Counters, for the hub's statistics and for benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerStats {
    pub datagrams_received: u64,
    /// Datagrams no peer claimed.
    pub datagrams_unrouted: u64,
    pub packets_received: u64,
    /// RTP packets written to consumers.
    pub packets_forwarded: u64,
    /// Payload bytes of those packets.
    pub bytes_forwarded: u64,
    /// Peers closed before ICE and DTLS came up.
    pub handshake_failures: u64,
    /// Peers closed because their `Rtc` panicked (on something they sent: a fault of the
    /// media library, contained to that peer).
    pub peers_failed: u64,
    /// RTP packets of muted producers, dropped on arrival.
    pub packets_dropped_paused: u64,
    pub keyframe_requests_sent: u64,
    /// How busy the worker's loop was in the last period its driver reported, per mille
    /// (counting, when its own thread ran under half the period, only the share it ran).
    pub busy_permille: u64,
    /// How much video the worker sheds to keep up: 0 none, up to
    /// [`crate::overload::MAX_LEVEL`], sound only for all.
    pub shed_level: u8,
    /// UDP datagrams the worker's driver handed to the kernel (set by the driver: the worker
    /// itself sends nothing).
    pub udp_datagrams_sent: u64,
    /// The messages they left in: a run of datagrams to one site goes as one message with
    /// segmentation offload (GSO), so this is at most `udp_datagrams_sent`.
    pub udp_messages_sent: u64,
}

#[cfg(test)]
mod tests {
    use super::DatagramBuffers;

    #[test]
    fn a_buffer_given_back_serves_the_next_datagram() {
        let mut buffers = DatagramBuffers::default();
        let mut first = buffers.take();
        assert!(first.capacity() >= DatagramBuffers::CAPACITY);
        first.extend_from_slice(&[1; 1100]);
        let at = first.as_ptr();
        buffers.give_back(first);
        let second = buffers.take();
        assert_eq!(second.as_ptr(), at, "the same allocation");
        // A datagram str0m allocated itself, too small to be worth keeping, is dropped.
        buffers.give_back(vec![0; 60]);
        assert!(buffers.free.is_empty());
    }

    #[test]
    fn at_most_keep_buffers_wait() {
        let mut buffers = DatagramBuffers::default();
        for _ in 0..DatagramBuffers::KEEP + 10 {
            buffers.give_back(Vec::with_capacity(DatagramBuffers::CAPACITY));
        }
        assert_eq!(buffers.free.len(), DatagramBuffers::KEEP);
    }
}
