//! Just enough STUN parsing to route a binding request to its peer by ICE username fragment.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;

/// Whether `datagram` looks like a STUN message (RFC 7983 demultiplexing plus the cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(0..=3)) && datagram.get(4..8) == Some(&MAGIC_COOKIE[..])
}

/// The local (recipient's) ufrag of a STUN binding request: the part of USERNAME before `:`.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let mut rest = datagram.get(HEADER_LEN..)?;
    while let [k0, k1, l0, l1, body @ ..] = rest {
        let kind = u16::from_be_bytes([*k0, *k1]);
        let len = usize::from(u16::from_be_bytes([*l0, *l1]));
        let value = body.get(..len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        let padded = (len + 3) & !3;
        rest = body.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut m = vec![0x00, 0x01, 0, 0];
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7; 12]);
        // An unrelated attribute first, to exercise the padding walk.
        m.extend_from_slice(&[0x80, 0x2A, 0, 3, 1, 2, 3, 0]);
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn finds_local_ufrag() {
        assert_eq!(
            local_ufrag(&binding_request(b"hubufrag:browser")),
            Some("hubufrag")
        );
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(local_ufrag(b""), None);
        assert_eq!(local_ufrag(&[0x80; 40]), None);
        let mut truncated = binding_request(b"abc:def");
        truncated.truncate(26);
        assert_eq!(local_ufrag(&truncated), None);
    }
}
