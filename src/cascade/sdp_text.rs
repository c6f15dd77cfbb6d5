//! What a relay reads in the SDP text of the hubs it talks to: the stream and track ids of the
//! parent's m-lines (which track is the programme, which layer it carries), and the UDP host
//! candidates of its own hub's workers. Plain text, as the hub writes it (docs/protocol.md,
//! "SDP the hub writes").

use std::net::{IpAddr, SocketAddr};

/// The UDP host candidates of `sdp` (`a=candidate:... 1 udp <priority> <ip> <port> typ
/// host`), once each.
pub fn udp_candidates(sdp: &str) -> Vec<SocketAddr> {
    let mut found = Vec::new();
    for line in sdp.lines() {
        let Some(candidate) = line.trim_end().strip_prefix("a=candidate:") else {
            continue;
        };
        let fields: Vec<&str> = candidate.split_whitespace().collect();
        let (Some(protocol), Some(ip), Some(port), Some(kind)) =
            (fields.get(2), fields.get(4), fields.get(5), fields.get(7))
        else {
            continue;
        };
        if !protocol.eq_ignore_ascii_case("udp") || *kind != "host" {
            continue;
        }
        if let (Ok(ip), Ok(port)) = (ip.parse::<IpAddr>(), port.parse::<u16>()) {
            let address = SocketAddr::new(ip, port);
            if !found.contains(&address) {
                found.push(address);
            }
        }
    }
    found
}

/// The simulcast layer a track of the parent carries: `<producer>-l<layer>` for the tracks of
/// one layer each, the lowest for a track without simulcast.
pub fn layer_of(track: &str) -> u8 {
    track
        .rsplit_once("-l")
        .and_then(|(_, layer)| layer.parse().ok())
        .unwrap_or(0)
}

/// The stream and track ids of each m-line of `sdp` that names them (`a=msid:<stream>
/// <track>`): (mid, stream, track).
pub fn stream_ids(sdp: &str) -> Vec<(String, String, String)> {
    let mut found = Vec::new();
    for section in sdp.split("\nm=").skip(1) {
        let line = |prefix: &str| {
            section
                .lines()
                .find_map(|l| l.trim_end().strip_prefix(prefix).map(str::to_owned))
        };
        let mid = line("a=mid:");
        let msid = line("a=msid:");
        let mut ids = msid.iter().flat_map(|m| m.split_whitespace());
        let (stream, track) = (ids.next(), ids.next());
        if let (Some(mid), Some(stream)) = (mid, stream) {
            found.push((mid, stream.to_owned(), track.unwrap_or_default().to_owned()));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_m_line_is_known_by_its_stream_id() {
        let sdp = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=inactive\r\n\
                   m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:1\r\na=msid:p3 a1\r\na=sendonly\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=sendonly\r\na=msid:p9 v9\r\n";
        let owned = |m: &str, s: &str, t: &str| (m.to_owned(), s.to_owned(), t.to_owned());
        assert_eq!(
            stream_ids(sdp),
            vec![owned("1", "p3", "a1"), owned("2", "p9", "v9")]
        );
    }

    #[test]
    fn the_udp_host_candidates_of_a_hubs_sdp() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=candidate:fffeff7e 1 udp 2130706175 203.0.113.10 40000 typ host\r\n\
                   a=candidate:fffeff7f 1 udp 2130706175 127.0.0.1 40000 typ host\r\n\
                   a=candidate:fffcff5a 1 tcp 1526725887 203.0.113.10 40443 typ host tcptype passive\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                   a=candidate:fffeff7e 1 udp 2130706175 203.0.113.10 40000 typ host\r\n";
        let expected: Vec<SocketAddr> = ["203.0.113.10:40000", "127.0.0.1:40000"]
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        assert_eq!(udp_candidates(sdp), expected);
    }

    #[test]
    fn a_track_of_one_layer_is_known_by_its_id() {
        assert_eq!(layer_of("17-l2"), 2);
        assert_eq!(layer_of("17-l0"), 0);
        assert_eq!(layer_of("17"), 0, "no simulcast: the lowest");
    }
}
