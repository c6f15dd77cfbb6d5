//! Writes the checked-in seed corpus, `fuzz/corpus/<target>/<name>`: run it from `fuzz/` with
//! `cargo run --release --example make_seeds`. Each seed is a meaningful input: protocol
//! messages from `docs/protocol.md`, the STUN binding request of RFC 5769, a real DTLS
//! ClientHello, in-order media, and the hostile cases around them.

use std::fs;
use std::path::Path;

use diemcau_fuzz::datagram::{self, DatagramOp};
use diemcau_fuzz::relay::{self, RelayOp};
use diemcau_fuzz::stun::RFC5769_REQUEST;
use diemcau_fuzz::{Meeting, MeetingConfig, STUDIO};
use diemcau_sfu::str0m::media::MediaKind;

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    signaling_seeds(&corpus.join("signaling_message"));
    datagram_seeds(&corpus.join("router_datagram"));
    relay_seeds(&corpus.join("router_relay"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("corpus folder");
    fs::write(dir.join(name), bytes).expect("seed written");
}

fn signaling_seeds(dir: &Path) {
    let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1\r\na=msid-semantic: WMS\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:Fe5M\r\na=ice-pwd:VOkJxbRl1RmTxUk/WvJxBt3f\r\n\
        a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
        a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=msid:- a1\r\na=rtcp-mux\r\n\
        a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:1001 cname:x\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n\
        a=ice-ufrag:Fe5M\r\na=ice-pwd:VOkJxbRl1RmTxUk/WvJxBt3f\r\n\
        a=fingerprint:sha-256 7B:8B:F0:65:5F:78:E2:51:3B:AC:6F:F3:3F:46:1B:35:DC:B8:5F:64:1A:24:C2:43:F0:A1:58:D0:A1:2C:19:08\r\n\
        a=setup:actpass\r\na=mid:1\r\na=sendonly\r\na=msid:- v1\r\na=rtcp-mux\r\n\
        a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\n\
        a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=ssrc-group:FID 2001 2002\r\n";
    let offer = serde_json::json!({"type": "offer", "sdp": sdp}).to_string();
    let answer =
        serde_json::json!({"type": "answer", "sdp": sdp.replace("actpass", "active")}).to_string();
    let seeds: [(&str, &str); 14] = [
        (
            "join.json",
            r#"{"type": "join", "code": "k3mq7x2bpw9rtd4hse6n", "meeting": 12}"#,
        ),
        (
            "join_without_meeting.json",
            r#"{"type":"join","code":"abc23"}"#,
        ),
        (
            "head_count.json",
            r#"{"type": "head_count", "count": 45, "confirmed_by": "Nguyễn Văn An", "position": "Chủ tịch UBND xã"}"#,
        ),
        ("offer.json", &offer),
        ("answer.json", &answer),
        ("leave.json", r#"{"type": "leave"}"#),
        ("ping.json", r#"{"type":"ping"}"#),
        ("unknown_type.json", r#"{"type":"dance","sdp":"x"}"#),
        (
            "head_count_too_many.json",
            r#"{"type":"head_count","count":10001,"confirmed_by":"A","position":"B"}"#,
        ),
        (
            "join_bad_fields.json",
            r#"{"type":"join","code":"a b","meeting":"12","role":"studio"}"#,
        ),
        ("not_an_object.json", r#"[{"type":"ping"}, 1, null]"#),
        (
            "escapes.json",
            r#"{"type":"head_count","count":1,"confirmed_by":"\u004e\u0067\u01b0\u1edd\u0069 \ud83d\ude00","position":"x\/y"}"#,
        ),
        ("duplicate_keys.json", r#"{"type":"ping","type":"leave"}"#),
        (
            "numbers.json",
            r#"{"type":"join","code":"a1","meeting":-9223372036854775808}"#,
        ),
    ];
    for (name, text) in seeds {
        write(dir, name, text.as_bytes());
    }
}

fn encode_datagram_ops(ops: &[DatagramOp]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for op in ops {
        op.encode(&mut bytes);
    }
    bytes
}

fn raw(source: u8, bytes: &[u8]) -> DatagramOp {
    DatagramOp::Raw(
        datagram::Raw {
            source,
            len: bytes.len() as u16,
        },
        bytes.to_vec(),
    )
}

fn advance(ticks: u8) -> DatagramOp {
    DatagramOp::Advance(datagram::Advance { ticks })
}

/// A binding request with the meeting's real credentials (`integrity` 0) or not.
fn binding(source: u8, client: u8, integrity: u8, role: u8, use_candidate: bool) -> DatagramOp {
    DatagramOp::Stun(
        datagram::Stun {
            source,
            client,
            message_type: 0,
            raw_type: 0,
            transaction: *b"diemcau-seed",
            username: 0,
            username_len: 0,
            priority: Some(0x6e00_01ff),
            use_candidate,
            role,
            tie_breaker: 0x932f_f9b1_5126_3b36,
            integrity,
            fingerprint: true,
            len: 0,
        },
        Vec::new(),
    )
}

fn media(client: u8, video: bool, sequence: u8, value: u64, marker: bool) -> DatagramOp {
    DatagramOp::Media(studio_media(client, video, 0, sequence, value, marker))
}

/// RTP from a client: VP8 (a keyframe start: descriptor 0x10, key bit clear) or Opus.
fn studio_media(
    client: u8,
    video: bool,
    layer: u8,
    sequence: u8,
    value: u64,
    marker: bool,
) -> datagram::Media {
    datagram::Media {
        client,
        video,
        layer,
        payload_type: if video { 1 } else { 0 },
        sequence,
        value,
        timestamp_step: if video { 3000 } else { 960 },
        marker,
        length: if video { 1100 } else { 120 },
        head: [0x10, 0x9c, 0x01, 0x2a, 0, 0, 0, 0],
    }
}

fn datagram_seeds(dir: &Path) {
    // A real DTLS ClientHello and the first STUN check, from a client of a meeting.
    let meeting = Meeting::new(MeetingConfig {
        sites: 1,
        remote_producers: false,
        simulcast: true,
    });
    let first = &meeting.net.clients[0].first_datagrams_sent;
    let client_hello = first
        .iter()
        .find(|d| matches!(d.first(), Some(20..=63)))
        .expect("a DTLS datagram");
    let stun_check = first
        .iter()
        .find(|d| matches!(d.first(), Some(0..=3)))
        .expect("a STUN datagram");

    let seeds: Vec<(&str, Vec<DatagramOp>)> = vec![
        (
            "stun_rfc5769_from_client",
            vec![raw(0, &RFC5769_REQUEST), advance(4)],
        ),
        (
            "stun_rfc5769_from_stranger",
            vec![raw(2, &RFC5769_REQUEST), advance(4)],
        ),
        (
            "stun_old_check_from_stranger",
            vec![raw(4, stun_check), advance(4)],
        ),
        (
            "stun_valid_binding_from_new_address",
            vec![
                binding(2, 1, 0, 1, true),
                advance(20),
                binding(2, 1, 0, 1, false),
            ],
        ),
        (
            "stun_wrong_password",
            vec![
                binding(2, 1, 2, 1, true),
                binding(1, 1, 2, 1, true),
                advance(10),
            ],
        ),
        (
            "stun_no_integrity",
            vec![
                binding(3, 0, 1, 1, true),
                binding(0, 0, 1, 0, false),
                advance(10),
            ],
        ),
        (
            "stun_role_conflict",
            vec![binding(1, 1, 0, 2, false), advance(10)],
        ),
        (
            "stun_odd_username",
            vec![DatagramOp::Stun(
                datagram::Stun {
                    source: 5,
                    client: 0,
                    message_type: 0,
                    raw_type: 0,
                    transaction: [1; 12],
                    username: 4,
                    username_len: 5,
                    priority: Some(1),
                    use_candidate: false,
                    role: 0,
                    tie_breaker: 0,
                    integrity: 1,
                    fingerprint: false,
                    // Username tail, then an ERROR-CODE and an unknown attribute.
                    len: 25,
                },
                b"x:y:z\x00\x09\x00\x08\x00\x00\x04\x87Role\x7f\xff\x00\x03abc\x00".to_vec(),
            )],
        ),
        (
            "dtls_client_hello_from_client",
            vec![raw(0, client_hello), advance(10)],
        ),
        (
            "dtls_client_hello_from_stranger",
            vec![raw(6, client_hello), advance(10)],
        ),
        (
            "replays",
            vec![
                media(0, true, 0, 0, true),
                DatagramOp::Replay(datagram::Replay {
                    client: 0,
                    back: 0,
                    source: 0,
                    cut_to: None,
                    flips: [(0, 0); 4],
                }),
                DatagramOp::Replay(datagram::Replay {
                    client: 0,
                    back: 1,
                    source: 2,
                    cut_to: None,
                    flips: [(0, 0); 4],
                }),
                DatagramOp::Replay(datagram::Replay {
                    client: 1,
                    back: 130,
                    source: 1,
                    cut_to: None,
                    flips: [(13, 0x40), (0, 0), (0, 0), (0, 0)],
                }),
                DatagramOp::Replay(datagram::Replay {
                    client: 0,
                    back: 2,
                    source: 0,
                    cut_to: Some(12),
                    flips: [(0, 0); 4],
                }),
                advance(10),
            ],
        ),
        (
            "media_in_order_then_jumps",
            std::iter::repeat_with(|| media(0, true, 0, 0, true))
                .take(10)
                .chain([
                    media(0, true, 1, 1 << 32, true),
                    media(0, true, 2, 5, true),
                    media(0, true, 3, u64::MAX, true),
                    media(0, true, 0, 0, true),
                    media(1, false, 0, 0, false),
                    media(1, false, 1, 40_000, false),
                    advance(40),
                ])
                .collect(),
        ),
        (
            "media_other_payload_types",
            vec![
                DatagramOp::Media(datagram::Media {
                    client: 1,
                    video: true,
                    layer: 0,
                    payload_type: 0,
                    sequence: 0,
                    value: 0,
                    timestamp_step: 1,
                    marker: false,
                    length: 0,
                    head: [0; 8],
                }),
                DatagramOp::Media(datagram::Media {
                    client: 1,
                    video: false,
                    layer: 0,
                    payload_type: 1,
                    sequence: 0,
                    value: 0,
                    timestamp_step: 1,
                    marker: true,
                    length: 1500,
                    head: [0xff; 8],
                }),
                advance(20),
            ],
        ),
        (
            "keyframes",
            vec![
                DatagramOp::Keyframe(datagram::Keyframe {
                    client: 1,
                    mid: 1,
                    full: false,
                }),
                DatagramOp::Keyframe(datagram::Keyframe {
                    client: 0,
                    mid: 1,
                    full: true,
                }),
                DatagramOp::Keyframe(datagram::Keyframe {
                    client: 1,
                    mid: 1,
                    full: false,
                }),
                advance(63),
                advance(63),
            ],
        ),
        (
            "srtcp_from_a_site",
            std::iter::repeat_with(|| media(0, true, 0, 0, true))
                .take(10)
                .chain([
                    advance(10),
                    srtcp(1, &transport_feedback(&[0b0010_0000, 0, 0b0100_0000, 3], 3)),
                    srtcp(1, &transport_feedback(&[0b0100_0000, 3], 3)),
                    srtcp(1, &transport_feedback(&[0b1100_0000, 0b0010_0110], 7)),
                    srtcp(1, &RECEIVER_REPORT),
                    srtcp(1, &NACK_WITHOUT_ITS_FCI),
                    advance(10),
                ])
                .collect(),
        ),
    ];
    for (name, ops) in seeds {
        write(dir, name, &encode_datagram_ops(&ops));
    }
}

fn srtcp(client: u8, bytes: &[u8]) -> DatagramOp {
    DatagramOp::Srtcp(
        datagram::Srtcp {
            client,
            len: bytes.len() as u16,
        },
        bytes.to_vec(),
    )
}

/// A transport-wide feedback (RTPFB, FMT 15) from base sequence number 0 with these packet
/// chunks and `statuses` statuses, each delta 1 ms (a large delta where a chunk calls for one
/// is read from the same bytes), padded to whole words.
fn transport_feedback(chunks: &[u8], statuses: u16) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 1, 0, 0, 0, 2, 0, 0];
    body.extend_from_slice(&statuses.to_be_bytes());
    body.extend_from_slice(&[0, 0, 0, 0]);
    body.extend_from_slice(chunks);
    body.extend(std::iter::repeat_n(4, usize::from(statuses) * 2));
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let words = (body.len() / 4) as u16;
    let mut packet = vec![0x80 | 15, 205];
    packet.extend_from_slice(&words.to_be_bytes());
    packet.extend_from_slice(&body);
    packet
}

/// A receiver report of one source.
const RECEIVER_REPORT: [u8; 32] = [
    0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0,
];

/// A generic NACK whose length leaves no room for the SSRCs, let alone a lost packet.
const NACK_WITHOUT_ITS_FCI: [u8; 4] = [0x81, 205, 0, 0];

fn relay_media(producer: u8, codec: u8, sequence: u8, value: u64, marker: bool) -> relay::Media {
    relay::Media {
        router: None,
        producer,
        producer_raw: 0,
        video: codec == 1,
        codec,
        layer: 0,
        sequence,
        value,
        timestamp: None,
        marker,
        audio_level: None,
        voice_activity: None,
        orientation: None,
        length: if codec == 1 { 1100 } else { 120 },
        head: [0x10, 0, 0, 0],
        received_offset_ms: 0,
    }
}

fn relay_advance(ticks: u8) -> RelayOp {
    RelayOp::Advance(datagram::Advance { ticks })
}

fn relay_seeds(dir: &Path) {
    let meeting = Meeting::new(MeetingConfig {
        sites: 2,
        remote_producers: true,
        simulcast: true,
    });
    let studio: Vec<_> = meeting
        .net
        .producers
        .iter()
        .filter(|p| p.peer == STUDIO)
        .collect();
    assert_eq!(
        studio[1].kind,
        MediaKind::Video,
        "the studio's video comes second"
    );
    assert_eq!(meeting.remote_producers[1].kind, MediaKind::Video);
    // Producer choices: `% 3 == 0` local (index `/ 3`), 1 remote, 2 raw. The studio's audio
    // and the other worker's audio come first, then the videos.
    const LOCAL_VIDEO: u8 = 3;
    const REMOTE_AUDIO: u8 = 1;
    const REMOTE_VIDEO: u8 = 4;
    const VP8: u8 = 1;
    const OPUS: u8 = 0;

    let mut video_in_order = Vec::new();
    for frame in 0..10 {
        for packet in 0..3 {
            let mut m = relay_media(REMOTE_VIDEO, VP8, 0, 0, packet == 2);
            m.head = [if packet == 0 { 0x10 } else { 0 }, 0, 0, 0];
            m.timestamp = Some(3000 * frame);
            video_in_order.push(RelayOp::Media(m));
        }
        video_in_order.push(relay_advance(6));
    }

    let mut audio = Vec::new();
    for i in 0..20u8 {
        let mut m = relay_media(REMOTE_AUDIO, OPUS, 0, 0, i == 0);
        m.audio_level = Some(-(i as i8) * 3);
        m.voice_activity = Some(i % 2 == 0);
        audio.push(RelayOp::Media(m));
        audio.push(relay_advance(3));
    }

    let local: Vec<RelayOp> = (0..10)
        .map(|i| RelayOp::Media(relay_media(LOCAL_VIDEO, VP8, 0, 0, i % 2 == 1)))
        .chain([relay_advance(20)])
        .collect();

    let jumps: Vec<RelayOp> = [
        (0, 0),
        (0, 0),
        (0, 0),
        (1, 30_000),
        (1, 40_000),
        (2, 65_000),
        (3, u64::MAX),
        (0, 0),
        (3, 1 << 63),
        (2, 1),
        (3, 0),
        (3, 1 << 48),
        (2, 2000),
    ]
    .into_iter()
    .flat_map(|(sequence, value)| {
        [
            RelayOp::Media(relay_media(REMOTE_VIDEO, VP8, sequence, value, true)),
            relay_advance(2),
        ]
    })
    .collect();

    let codecs: Vec<RelayOp> = (0..relay::CODECS.len() as u8)
        .map(|codec| {
            let mut m = relay_media(
                if codec % 2 == 0 {
                    REMOTE_VIDEO
                } else {
                    REMOTE_AUDIO
                },
                codec,
                0,
                0,
                true,
            );
            m.video = codec % 3 == 0;
            RelayOp::Media(m)
        })
        .chain([relay_advance(10)])
        .collect();

    let clock_skew: Vec<RelayOp> = [i16::MIN, -20, 0, 20, i16::MAX]
        .into_iter()
        .map(|offset| {
            let mut m = relay_media(REMOTE_VIDEO, VP8, 0, 0, true);
            m.received_offset_ms = offset;
            m.timestamp = Some(offset as u32);
            RelayOp::Media(m)
        })
        .chain([relay_advance(63)])
        .collect();

    let sizes: Vec<RelayOp> = [0u16, 1, 1200, 1500]
        .into_iter()
        .map(|length| {
            let mut m = relay_media(REMOTE_VIDEO, VP8, 0, 0, true);
            m.length = length;
            m.orientation = Some(length as u8);
            RelayOp::Media(m)
        })
        .chain([relay_advance(10)])
        .collect();

    let keyframe = |router: Option<u64>, producer: u8, producer_raw: u64| {
        RelayOp::KeyframeRequest(relay::KeyframeRequest {
            router,
            producer,
            producer_raw,
            layer: 2,
        })
    };
    let client_keyframe = |client: u8, mid: u8, full: bool| {
        RelayOp::ClientKeyframe(datagram::Keyframe { client, mid, full })
    };
    let keyframes = vec![
        keyframe(None, LOCAL_VIDEO, 0),
        keyframe(None, LOCAL_VIDEO, 0),
        keyframe(None, REMOTE_VIDEO, 0),
        keyframe(Some(99), LOCAL_VIDEO, 0),
        keyframe(None, 2, u64::MAX),
        client_keyframe(1, 3, false),
        client_keyframe(2, 1, true),
        client_keyframe(0, 1, false),
        relay_advance(63),
        keyframe(None, LOCAL_VIDEO, 0),
        relay_advance(63),
    ];

    let mut strangers = relay_media(2, VP8, 3, 77, true);
    strangers.producer_raw = 12_345;
    let mut other_router = relay_media(REMOTE_VIDEO, VP8, 0, 0, true);
    other_router.router = Some(2);
    let unknown = vec![
        RelayOp::Media(strangers),
        RelayOp::Media(other_router),
        relay_advance(5),
    ];

    // The studio's simulcast video (VP8 with an extended descriptor: picture id, TL0PICIDX),
    // then the relayed copies handed back as another producer and layer.
    let mut studio = Vec::new();
    for frame in 0..6u8 {
        for layer in 0..3 {
            let mut m = studio_media(0, true, layer, 0, 0, true);
            let key = if frame == 0 { 0x9c } else { 0x9d };
            m.head = [0x90, 0xc0, 0x80, frame, frame, key, 0x01, 0x2a];
            studio.push(RelayOp::StudioMedia(m));
        }
        studio.push(relay_advance(6));
    }
    let mut republished = studio.clone();
    for (back, layer) in [(0, Some(1)), (1, None), (5, Some(0)), (2, Some(7))] {
        republished.push(RelayOp::Republish(relay::Republish {
            back,
            producer: Some(REMOTE_VIDEO),
            producer_raw: 0,
            layer,
            sequence_shift: if back == 5 { -70_000 } else { 1 },
            marker: None,
        }));
    }
    republished.push(relay_advance(10));

    let control = |action: u8, client: u8, producer: u8, value: u8| {
        RelayOp::Control(relay::Control {
            action,
            client,
            producer,
            producer_raw: 0,
            value,
        })
    };
    let mut meeting_logic = vec![control(0, 1, LOCAL_VIDEO, 0), control(1, 0, LOCAL_VIDEO, 1)];
    meeting_logic.extend(studio.iter().take(4).cloned());
    meeting_logic.extend([
        control(1, 0, LOCAL_VIDEO, 0),
        control(2, 2, REMOTE_VIDEO, 0),
        RelayOp::Media(relay_media(REMOTE_VIDEO, VP8, 0, 0, true)),
        control(3, 2, REMOTE_VIDEO, 2),
        relay_advance(20),
        control(4, 0, LOCAL_VIDEO, 0),
        relay_advance(20),
    ]);

    let seeds: Vec<(&str, Vec<RelayOp>)> = vec![
        ("studio_simulcast", studio),
        ("republished", republished),
        ("meeting_logic", meeting_logic),
        ("video_in_order", video_in_order),
        ("audio_with_extensions", audio),
        ("local_producer_video", local),
        ("sequence_jumps_and_rollbacks", jumps),
        ("every_codec", codecs),
        ("clock_skew", clock_skew),
        ("payload_sizes", sizes),
        ("keyframe_requests", keyframes),
        ("unknown_producer_and_router", unknown),
    ];
    for (name, ops) in seeds {
        let mut bytes = Vec::new();
        for op in &ops {
            op.encode(&mut bytes);
        }
        write(dir, name, &bytes);
    }
}
