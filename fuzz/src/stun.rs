//! STUN messages built byte by byte (RFC 8489), so that a fuzz input can choose every field and
//! still carry a MESSAGE-INTEGRITY the hub accepts: without it, nothing the fuzzer sends from a
//! new address gets past the ICE agent's credential check.

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_PRIORITY: u16 = 0x0024;
pub const ATTR_USE_CANDIDATE: u16 = 0x0025;
pub const ATTR_ICE_CONTROLLED: u16 = 0x8029;
pub const ATTR_ICE_CONTROLLING: u16 = 0x802A;
const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
const ATTR_FINGERPRINT: u16 = 0x8028;
const FINGERPRINT_XOR: u32 = 0x5354_554e;

/// RFC 5769 §2.1: a sample binding request (USERNAME "evtj:h6vY", SOFTWARE, PRIORITY,
/// ICE-CONTROLLED, MESSAGE-INTEGRITY with password "VOkJxbRl1RmTxUk/WvJxBt", FINGERPRINT).
pub const RFC5769_REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

/// How a built message is authenticated.
#[derive(Debug, Clone, Copy)]
pub enum Integrity<'a> {
    None,
    /// HMAC-SHA1 with this key (the receiver's ICE password, for a binding request).
    Key(&'a [u8]),
}

/// A STUN message: `message_type` (method and class), transaction id, attributes in order,
/// `raw_attributes` as they are (padded to four bytes), then MESSAGE-INTEGRITY and FINGERPRINT
/// as asked.
#[derive(Debug, Clone, Copy)]
pub struct StunMessage<'a> {
    pub message_type: u16,
    pub transaction: [u8; 12],
    pub attributes: &'a [(u16, &'a [u8])],
    pub raw_attributes: &'a [u8],
    pub integrity: Integrity<'a>,
    pub fingerprint: bool,
}

impl StunMessage<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(128);
        m.extend_from_slice(&self.message_type.to_be_bytes());
        m.extend_from_slice(&[0, 0]);
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&self.transaction);
        for (kind, value) in self.attributes {
            push_attribute(&mut m, *kind, value);
        }
        m.extend_from_slice(self.raw_attributes);
        pad(&mut m);
        match self.integrity {
            Integrity::None => {}
            Integrity::Key(key) => {
                // The length field counts up to and including MESSAGE-INTEGRITY.
                set_length(&mut m, 24);
                let hmac = diemcau_sfu::str0m::crypto::from_feature_flags()
                    .sha1_hmac_provider
                    .sha1_hmac(key, &[&m]);
                push_attribute(&mut m, ATTR_MESSAGE_INTEGRITY, &hmac);
            }
        }
        if self.fingerprint {
            set_length(&mut m, 8);
            let crc = crc32(&m) ^ FINGERPRINT_XOR;
            push_attribute(&mut m, ATTR_FINGERPRINT, &crc.to_be_bytes());
        }
        set_length(&mut m, 0);
        m
    }
}

/// Appends a type-length-value attribute padded to four bytes (a value longer than the length
/// field can say is cut).
fn push_attribute(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&(value.len() as u16).to_be_bytes());
    m.extend_from_slice(value);
    pad(m);
}

fn pad(m: &mut Vec<u8>) {
    while !m.len().is_multiple_of(4) {
        m.push(0);
    }
}

/// Writes the header's length field: the attributes so far plus `more` bytes.
fn set_length(m: &mut [u8], more: usize) {
    let length = (m.len() - 20 + more) as u16;
    m[2..4].copy_from_slice(&length.to_be_bytes());
}

/// CRC-32 (ISO-HDLC), as FINGERPRINT uses.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in data {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn rfc5769_sample_request_verifies() {
        let parsed =
            diemcau_sfu::str0m::ice::StunMessage::parse(&RFC5769_REQUEST).expect("str0m parses it");
        assert_eq!(parsed.username(), Some("evtj:h6vY"));
        let provider = diemcau_sfu::str0m::crypto::from_feature_flags().sha1_hmac_provider;
        assert!(parsed.verify(b"VOkJxbRl1RmTxUk/WvJxBt", |k, p| provider.sha1_hmac(k, p)));
        assert_eq!(
            crc32(&RFC5769_REQUEST[..100]) ^ FINGERPRINT_XOR,
            0xe57a_3bcf
        );
    }

    #[test]
    fn str0m_accepts_a_built_binding_request() {
        let username = b"hub:client";
        let message = StunMessage {
            message_type: 0x0001,
            transaction: [7; 12],
            attributes: &[(ATTR_USERNAME, username), (ATTR_PRIORITY, &[0, 0, 0, 9])],
            raw_attributes: &[],
            integrity: Integrity::Key(b"secret"),
            fingerprint: true,
        }
        .to_bytes();
        let parsed =
            diemcau_sfu::str0m::ice::StunMessage::parse(&message).expect("str0m parses it");
        assert!(parsed.is_binding_request());
        assert_eq!(parsed.username(), Some("hub:client"));
        let provider = diemcau_sfu::str0m::crypto::from_feature_flags().sha1_hmac_provider;
        assert!(parsed.verify(b"secret", |k, p| provider.sha1_hmac(k, p)));
        assert!(!parsed.verify(b"other", |k, p| provider.sha1_hmac(k, p)));
    }
}
