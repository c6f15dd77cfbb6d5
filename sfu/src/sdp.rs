//! The hub's edits to SDP text, on the way in (a client's offer) and on the way out (every
//! offer and answer of the hub), for what str0m's SDP API cannot express:
//!
//! - a client's `sendrecv` m-line is taken as `sendonly`, and its `recvonly` m-line as
//!   `inactive`: the hub sends only on m-lines it offers itself, so it answers a client's own
//!   m-line with nothing to send and no stream (`docs/protocol.md`);
//! - an m-line the hub reuses for another track announces that track's stream and track ids:
//!   str0m keeps the ids an m-line was created with;
//! - an m-line the hub does not send on carries no `a=msid` and no `a=ssrc`;
//! - no `a=ice-options:trickle`: the hub's candidates are all in its SDP and it never trickles.

use str0m::media::Mid;

/// A client's offer as the hub's str0m session accepts it. `is_hub_mid`: whether an m-line is
/// one the hub offered earlier (a client offers those back `recvonly`, and they stay the hub's).
pub(crate) fn client_offer(offer: &str, is_hub_mid: impl Fn(Mid) -> bool) -> String {
    let mut out = String::with_capacity(offer.len());
    for section in sections(offer) {
        let hub_line = section_mid(&section).is_some_and(&is_hub_mid);
        for line in section {
            let line = match line {
                "a=sendrecv" => "a=sendonly",
                "a=recvonly" if !hub_line => "a=inactive",
                _ => line,
            };
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out
}

/// An offer or answer of the hub as the client gets it. `msid_of`: the stream and track ids a
/// hub m-line announces now.
pub(crate) fn hub_sdp<'a>(
    sdp: &str,
    msid_of: impl Fn(Mid) -> Option<&'a (String, String)>,
) -> String {
    let sections = sections(sdp);
    let mut streams: Vec<String> = Vec::new();
    let mut media = Vec::with_capacity(sections.len());
    for section in sections.iter().skip(1) {
        let sending = section
            .iter()
            .any(|l| matches!(*l, "a=sendonly" | "a=sendrecv"));
        let msid = sending
            .then(|| section_mid(section).and_then(&msid_of))
            .flatten();
        let mut text = String::new();
        for line in section.iter().copied() {
            if line == "a=ice-options:trickle" {
                continue;
            }
            let stream_line = line.starts_with("a=msid:")
                || line.starts_with("a=ssrc:")
                || line.starts_with("a=ssrc-group:");
            if stream_line && !sending {
                continue;
            }
            match (msid, line.strip_prefix("a=msid:")) {
                (Some((stream, track)), Some(_)) => {
                    text.push_str(&format!("a=msid:{stream} {track}\r\n"));
                    continue;
                }
                (None, Some(value)) => {
                    if let Some(stream) = value.split(' ').next() {
                        note_stream(&mut streams, stream);
                    }
                }
                _ => {}
            }
            if let (Some((stream, track)), Some(ssrc)) = (msid, ssrc_msid(line)) {
                text.push_str(&format!("a=ssrc:{ssrc} msid:{stream} {track}\r\n"));
                continue;
            }
            text.push_str(line);
            text.push_str("\r\n");
        }
        if let Some((stream, _)) = msid {
            note_stream(&mut streams, stream);
        }
        media.push(text);
    }
    let mut out = String::with_capacity(sdp.len());
    for line in sections.first().into_iter().flatten().copied() {
        if line == "a=ice-options:trickle" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("a=msid-semantic:") {
            let semantic = rest.split_whitespace().next().unwrap_or("WMS");
            out.push_str(&format!(
                "a=msid-semantic: {semantic} {}",
                streams.join(" ")
            ));
            out.push_str("\r\n");
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    for text in media {
        out.push_str(&text);
    }
    out
}

/// The m-lines an SDP of the hub sends on (`sendonly` or `sendrecv`): mid, kind, and the
/// stream and track ids of its `a=msid`.
pub(crate) fn sending_lines(sdp: &str) -> Vec<(Mid, str0m::media::MediaKind, (String, String))> {
    sections(sdp)
        .iter()
        .skip(1)
        .filter(|s| s.iter().any(|l| matches!(*l, "a=sendonly" | "a=sendrecv")))
        .filter_map(|section| {
            let kind = match section.first()?.strip_prefix("m=")?.split(' ').next()? {
                "audio" => str0m::media::MediaKind::Audio,
                "video" => str0m::media::MediaKind::Video,
                _ => return None,
            };
            let msid = section
                .iter()
                .find_map(|l| l.strip_prefix("a=msid:"))
                .and_then(|v| v.split_once(' '))
                .map(|(s, t)| (s.to_owned(), t.to_owned()))
                .unwrap_or_default();
            Some((section_mid(section)?, kind, msid))
        })
        .collect()
}

/// The session part, then each m-section, as lines (without their line ends).
fn sections(sdp: &str) -> Vec<Vec<&str>> {
    let mut sections = vec![Vec::new()];
    for line in sdp.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            sections.push(Vec::new());
        }
        if let Some(section) = sections.last_mut() {
            section.push(line);
        }
    }
    sections
}

fn section_mid(section: &[&str]) -> Option<Mid> {
    section
        .iter()
        .find_map(|l| l.strip_prefix("a=mid:"))
        .map(Mid::from)
}

/// The SSRC of an `a=ssrc:<ssrc> msid:...` line.
fn ssrc_msid(line: &str) -> Option<&str> {
    let (ssrc, attribute) = line.strip_prefix("a=ssrc:")?.split_once(' ')?;
    attribute.starts_with("msid:").then_some(ssrc)
}

fn note_stream(streams: &mut Vec<String>, stream: &str) {
    if !streams.iter().any(|s| s == stream) {
        streams.push(stream.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_recvonly_line_becomes_inactive_unless_the_hub_offered_it() {
        let offer = "v=0\r\n\
                     m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                     a=mid:0\r\n\
                     a=recvonly\r\n\
                     m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                     a=mid:1\r\n\
                     a=sendrecv\r\n\
                     m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                     a=mid:hub\r\n\
                     a=recvonly\r\n";
        let text = client_offer(offer, |mid| mid == Mid::from("hub"));
        assert_eq!(
            text,
            "v=0\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=inactive\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:hub\r\na=recvonly\r\n"
        );
    }

    #[test]
    fn a_reused_line_announces_its_new_track_and_an_idle_one_none() {
        let sdp = "v=0\r\n\
                   a=msid-semantic: WMS p1 p2\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=mid:a\r\n\
                   a=ice-options:trickle\r\n\
                   a=sendonly\r\n\
                   a=msid:p1 producer1\r\n\
                   a=ssrc:11 cname:producer1\r\n\
                   a=ssrc:11 msid:p1 producer1\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=mid:b\r\n\
                   a=inactive\r\n\
                   a=msid:p2 producer2\r\n\
                   a=ssrc:12 cname:producer2\r\n\
                   a=ssrc:12 msid:p2 producer2\r\n\
                   a=ssrc-group:FID 12 13\r\n";
        let reused = ("p7".to_owned(), "producer9".to_owned());
        let text = hub_sdp(sdp, |mid| (mid == Mid::from("a")).then_some(&reused));
        assert_eq!(
            text,
            "v=0\r\n\
             a=msid-semantic: WMS p7\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
             a=mid:a\r\n\
             a=sendonly\r\n\
             a=msid:p7 producer9\r\n\
             a=ssrc:11 cname:producer1\r\n\
             a=ssrc:11 msid:p7 producer9\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
             a=mid:b\r\n\
             a=inactive\r\n"
        );
    }
}
