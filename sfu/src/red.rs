//! Just enough of RFC 2198 redundant audio (RED) to forward it: check a publisher's RED packet,
//! re-label its blocks with a receiver's Opus payload type, take out the primary block for a
//! receiver that did not negotiate RED, or wrap plain Opus with the previous frame.
//!
//! A RED payload is a list of block headers, then the blocks' data in the same order. Every
//! header but the last is 4 bytes (F=1, block payload type, 14-bit timestamp offset, 10-bit
//! length); the last, the primary's, is 1 byte (F=0, payload type) and its block runs to the
//! end of the payload.

use std::ops::Range;
use std::sync::Arc;

/// Where the blocks of a RED payload lie.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// How many redundant blocks precede the primary.
    redundant: usize,
    primary: Range<usize>,
}

impl Layout {
    /// Offset of each block header's payload-type byte, the primary's last: the redundant
    /// headers are 4 bytes each, so they sit every 4 bytes from the start.
    fn type_bytes(&self) -> impl Iterator<Item = usize> {
        (0..=self.redundant).map(|block| block * 4)
    }
}

/// Whether `payload` is a well-formed RED payload whose every block (redundant and primary) is
/// of payload type `inner`, with a non-empty primary. Only such packets are forwarded as RED:
/// a receiver's decoder would misread a block of another codec.
pub fn carries_only(payload: &[u8], inner: u8) -> bool {
    layout(payload).is_some_and(|l| {
        !l.primary.is_empty()
            && l.type_bytes()
                .all(|at| payload.get(at).is_some_and(|b| b & 0x7f == inner))
    })
}

/// The payload with every block's payload type set to `inner` (the receiver's Opus payload
/// type). The same allocation when nothing changes, as between two browsers; `None` for a
/// malformed payload.
pub fn with_inner_type(payload: &Arc<[u8]>, inner: u8) -> Option<Arc<[u8]>> {
    let layout = layout(payload)?;
    let same = layout
        .type_bytes()
        .all(|at| payload.get(at).is_some_and(|b| b & 0x7f == inner));
    if same {
        return Some(payload.clone());
    }
    let mut copy = payload.to_vec();
    for at in layout.type_bytes() {
        let byte = copy.get_mut(at)?;
        *byte = (*byte & 0x80) | (inner & 0x7f);
    }
    Some(copy.into())
}

/// The primary block alone: what a receiver without RED decodes. `None` for a malformed payload
/// or an empty primary.
pub fn primary(payload: &[u8]) -> Option<Arc<[u8]>> {
    let range = layout(payload)?.primary;
    if range.is_empty() {
        return None;
    }
    payload.get(range).map(Arc::from)
}

/// A RED payload of `primary` with `previous` (its timestamp offset and payload) as the one
/// redundant block, when it fits a block header (offset under 2^14, length under 1,024);
/// without it otherwise.
pub fn wrap(inner: u8, previous: Option<(u32, &[u8])>, primary: &[u8]) -> Arc<[u8]> {
    let previous = previous.filter(|(offset, payload)| {
        (1..1 << 14).contains(offset) && !payload.is_empty() && payload.len() < 1 << 10
    });
    let mut out = Vec::with_capacity(5 + primary.len() + previous.map_or(0, |(_, p)| p.len()));
    if let Some((offset, payload)) = previous {
        let len = payload.len() as u32;
        out.extend_from_slice(&[
            0x80 | (inner & 0x7f),
            (offset >> 6) as u8,
            (((offset & 0x3f) << 2) | (len >> 8)) as u8,
            (len & 0xff) as u8,
        ]);
    }
    out.push(inner & 0x7f);
    if let Some((_, payload)) = previous {
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(primary);
    out.into()
}

fn layout(payload: &[u8]) -> Option<Layout> {
    let mut redundant = 0;
    let mut at = 0;
    let mut redundant_len = 0usize;
    loop {
        let first = *payload.get(at)?;
        if first & 0x80 == 0 {
            at += 1;
            break;
        }
        let header = payload.get(at..at + 4)?;
        let (Some(high), Some(low)) = (header.get(2), header.get(3)) else {
            return None;
        };
        redundant_len += (usize::from(*high & 0x03) << 8) | usize::from(*low);
        redundant += 1;
        at += 4;
    }
    let start = at.checked_add(redundant_len)?;
    if start > payload.len() {
        return None;
    }
    Some(Layout {
        redundant,
        primary: start..payload.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One redundant block `[1, 2, 3]` (offset 960) and the primary `[9, 9]`, both of type 111.
    fn packet(redundant_type: u8) -> Vec<u8> {
        let offset: u16 = 960;
        vec![
            0x80 | redundant_type,
            (offset >> 6) as u8,
            ((offset & 0x3f) << 2) as u8,
            3,
            111,
            1,
            2,
            3,
            9,
            9,
        ]
    }

    #[test]
    fn the_primary_block_is_what_follows_the_redundant_ones() {
        assert_eq!(primary(&packet(111)).as_deref(), Some(&[9u8, 9][..]));
        // A packet with no redundancy (the first of a talk spurt): one header byte.
        assert_eq!(primary(&[111, 7, 7, 7]).as_deref(), Some(&[7u8, 7, 7][..]));
    }

    #[test]
    fn blocks_are_relabelled_for_the_receiver_only_when_needed() {
        let same: Arc<[u8]> = packet(111).into();
        let kept = with_inner_type(&same, 111).expect("well formed");
        assert!(
            Arc::ptr_eq(&same, &kept),
            "no copy between equal payload types"
        );
        let moved = with_inner_type(&same, 109).expect("well formed");
        assert_eq!(moved.first(), Some(&(0x80 | 109)));
        assert_eq!(moved.get(4), Some(&109));
        assert_eq!(moved.get(5..), same.get(5..), "block data untouched");
    }

    #[test]
    fn a_wrapped_frame_carries_the_previous_one() {
        assert_eq!(
            &wrap(111, Some((960, &[1, 2, 3])), &[9, 9])[..],
            &packet(111)[..]
        );
        assert_eq!(&wrap(111, None, &[9, 9])[..], &[111, 9, 9][..]);
        // An offset or a frame a block header cannot hold: the primary alone.
        assert_eq!(&wrap(111, Some((1 << 14, &[1])), &[9])[..], &[111, 9][..]);
        assert_eq!(&wrap(111, Some((960, &[0; 1024])), &[9])[..], &[111, 9][..]);
    }

    #[test]
    fn only_red_of_the_expected_codec_is_forwarded_as_red() {
        assert!(carries_only(&packet(111), 111));
        assert!(!carries_only(&packet(0), 111), "a PCMU block inside");
        assert!(!carries_only(&[111], 111), "empty primary");
    }

    #[test]
    fn malformed_payloads_are_refused_without_panicking() {
        for bad in [
            &[][..],
            &[0x80 | 111][..],
            &[0x80 | 111, 0, 0][..],
            &[0x80 | 111, 0, 0, 200, 111, 1][..], // block longer than the packet
            &[0x80 | 111, 0, 0, 0][..],           // no primary header
        ] {
            assert_eq!(primary(bad), None, "{bad:?}");
            assert!(!carries_only(bad, 111), "{bad:?}");
            assert!(with_inner_type(&Arc::from(bad), 111).is_none(), "{bad:?}");
        }
    }
}
