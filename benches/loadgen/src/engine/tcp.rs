//! A peer's way to the hub over TCP, as a hall whose firewall passes only TCP has it: one
//! connection to the hub's passive ICE-TCP candidate, opened when str0m first transmits to
//! it, every datagram framed with its 16-bit length (RFC 4571) both ways.
//!
//! The connection is non-blocking on the thread's poll: what cannot be written yet waits in a
//! bounded queue (a datagram that does not fit is dropped and counted, as a full send buffer
//! drops it on UDP), and what arrives is cut into whole frames before it reaches str0m.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// Most bytes waiting to be written before datagrams are dropped: about 0.25 s of the
/// studio's 2.5 Mbit/s, what a kernel's send buffer holds.
const MAX_QUEUED: usize = 1 << 20;

/// The poll tokens of TCP connections start here, above the peers' UDP slots.
pub const TCP_TOKEN_BASE: usize = usize::MAX / 2;

/// The poll token of `slot`'s TCP connection.
pub fn token(slot: usize) -> Token {
    Token(TCP_TOKEN_BASE + slot)
}

/// The slot of a TCP connection's token, or `None` for another token.
pub fn slot_of(token: Token) -> Option<usize> {
    token.0.checked_sub(TCP_TOKEN_BASE)
}

/// What sending a datagram did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Written, or queued behind earlier bytes.
    Queued,
    /// The queue was full: dropped.
    Dropped,
    /// The connection could not be opened or has failed.
    Failed,
}

/// One peer's TCP connection. States: idle (nothing sent yet) → open (connecting or
/// connected) → failed (an error; it is not reopened, as a browser does not reopen a
/// failed ICE-TCP pair).
#[derive(Debug, Default)]
pub struct TcpPath {
    stream: Option<TcpStream>,
    /// The hub's candidate the connection goes to.
    remote: Option<SocketAddr>,
    /// Framed bytes not yet written.
    out: Vec<u8>,
    /// Bytes read that do not make a whole frame yet.
    partial: Vec<u8>,
    failed: bool,
    /// Frames refused by the hub's framing rules (never on a sound connection).
    pub bad_frames: u64,
}

impl TcpPath {
    /// The address the connection goes to, once opened.
    pub fn remote(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Frames `datagram` for `destination`, opening the connection on first use.
    pub fn send(
        &mut self,
        registry: &Registry,
        slot: usize,
        destination: SocketAddr,
        datagram: &[u8],
    ) -> Sent {
        if self.failed || datagram.len() > usize::from(u16::MAX) {
            return Sent::Failed;
        }
        if self.stream.is_none() {
            if let Err(e) = self.open(registry, slot, destination) {
                tracing::debug!(slot, "TCP to {destination} failed: {e}");
                self.failed = true;
                return Sent::Failed;
            }
        } else if self.remote != Some(destination) {
            // One connection, to the one candidate str0m chose; checks to others are lost,
            // as they would be for a hall that reaches only one address.
            return Sent::Dropped;
        }
        if self.out.len() + 2 + datagram.len() > MAX_QUEUED {
            return Sent::Dropped;
        }
        self.out
            .extend_from_slice(&(datagram.len() as u16).to_be_bytes());
        self.out.extend_from_slice(datagram);
        if self.flush().is_err() {
            self.fail(registry);
            return Sent::Failed;
        }
        Sent::Queued
    }

    fn open(
        &mut self,
        registry: &Registry,
        slot: usize,
        destination: SocketAddr,
    ) -> io::Result<()> {
        let mut stream = TcpStream::connect(destination)?;
        let _ = stream.set_nodelay(true);
        registry.register(
            &mut stream,
            token(slot),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.stream = Some(stream);
        self.remote = Some(destination);
        Ok(())
    }

    /// Writes what is queued, as far as the socket takes it.
    fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = &mut self.stream else {
            return Ok(());
        };
        let mut written = 0;
        while written < self.out.len() {
            match stream.write(self.out.get(written..).unwrap_or_default()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) =>
                {
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        Ok(())
    }

    /// After the poll reported the connection: writes what waits and returns the whole frames
    /// that arrived (each a datagram from [`TcpPath::remote`]).
    pub fn ready(&mut self, registry: &Registry, buf: &mut [u8]) -> Vec<Vec<u8>> {
        if self.flush().is_err() {
            self.fail(registry);
            return Vec::new();
        }
        let mut frames = Vec::new();
        while let Some(stream) = &mut self.stream {
            match stream.read(buf) {
                Ok(0) => {
                    self.fail(registry);
                    break;
                }
                Ok(n) => {
                    self.partial
                        .extend_from_slice(buf.get(..n).unwrap_or_default());
                    self.cut_frames(&mut frames);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::NotConnected
                    ) =>
                {
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.fail(registry);
                    break;
                }
            }
        }
        frames
    }

    fn cut_frames(&mut self, frames: &mut Vec<Vec<u8>>) {
        let mut start = 0;
        while let Some(&[high, low]) = self.partial.get(start..start + 2) {
            let len = usize::from(u16::from_be_bytes([high, low]));
            let Some(frame) = self.partial.get(start + 2..start + 2 + len) else {
                break;
            };
            if len == 0 {
                self.bad_frames += 1;
            } else {
                frames.push(frame.to_vec());
            }
            start += 2 + len;
        }
        self.partial.drain(..start);
    }

    /// Closes the connection; it is not reopened.
    pub fn fail(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.failed = true;
        self.out.clear();
        self.partial.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_whole_across_reads() {
        let mut path = TcpPath::default();
        let mut frames = Vec::new();
        path.partial.extend_from_slice(&[0, 3, b'a', b'b']);
        path.cut_frames(&mut frames);
        assert!(frames.is_empty(), "half a frame waits");
        path.partial.extend_from_slice(&[b'c', 0, 1, b'd', 0]);
        path.cut_frames(&mut frames);
        assert_eq!(frames, vec![b"abc".to_vec(), b"d".to_vec()]);
        assert_eq!(
            path.partial,
            vec![0],
            "the next frame's first header byte stays"
        );
    }

    #[test]
    fn tokens_map_back_to_their_slot() {
        assert_eq!(slot_of(token(7)), Some(7));
        assert_eq!(slot_of(Token(7)), None);
    }
}
