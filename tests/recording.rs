//! The meeting's recording, checked with a real demuxer and decoder (`ffprobe`, `ffmpeg`):
//! a meeting with a change of speaker gives one WebM file that decodes from start to end, as
//! long as the meeting, with its sound throughout; staff download it in ranges. An encoder's
//! H.264 going on air starts a Matroska part that keeps it as it arrived. A hub killed
//! with SIGKILL leaves a file that plays up to then, and the report shows the gap; a full
//! disk stops the recording with an event and leaves the meeting running.

#![allow(clippy::indexing_slicing)] // JSON lookups in assertions

#[path = "common/http.rs"]
mod http;
#[path = "common/hub_binary.rs"]
mod hub_binary;
#[path = "common/postgres.rs"]
mod postgres;
#[path = "common/signaling.rs"]
mod signaling;
#[path = "common/wait.rs"]
mod wait;
#[path = "common/webrtc_client/mod.rs"]
mod webrtc_client;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use webrtc_client::{ClientOptions, WebrtcClient};

const SITE: (&str, &str) = ("2269", "Xã Thượng Lâm");

/// A participant of meeting `m` joined, connected and sending decodable VP8 and Opus.
async fn publishing(addr: SocketAddr, m: &http::TestMeeting, role: &'static str) -> WebrtcClient {
    let (name, code) = match role {
        "studio" => ("Trường quay tỉnh".to_owned(), m.studio_code.clone()),
        _ => (SITE.1.to_owned(), m.code(SITE.0)),
    };
    let mut client = WebrtcClient::connect(
        addr,
        ClientOptions {
            role,
            name,
            meeting: m.id,
            code,
            publish: true,
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the {role} joins: {e}"));
    client
        .wait_connected(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the {role} connects: {e}"));
    client.send_decodable_video();
    client.start_media().await.expect("media flows");
    client
}

/// The chair gives the floor to the site for `held`, then takes it back.
async fn floor_to_the_site_for(chair: &WebrtcClient, held: Duration) {
    chair
        .send(&json!({"type": "give_floor", "site": SITE.0}))
        .expect("the chair gives the floor");
    tokio::time::sleep(held).await;
    chair
        .send(&json!({"type": "take_floor"}))
        .expect("the chair takes the floor back");
}

/// The meeting's report (JSON) from the hub at `addr`.
async fn report(addr: SocketAddr, meeting: i64) -> Value {
    let reply = http::get(addr, &format!("/api/meetings/{meeting}/report")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The meeting's recording parts once `count` of them have ended.
async fn ended_parts(addr: SocketAddr, meeting: i64, count: usize) -> Vec<Value> {
    wait::until_some(
        "the recording's parts to end",
        Duration::from_secs(20),
        || async move {
            let parts = report(addr, meeting).await["recordings"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let ended = parts.iter().filter(|p| !p["stopped_at"].is_null()).count();
            (ended >= count).then_some(parts)
        },
    )
    .await
}

/// What `ffprobe` says of the file's streams and format.
fn probe(file: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(file)
        .output()
        .expect("ffprobe runs (scripts/test installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe's JSON")
}

/// The duration (s) `ffprobe` gives a file.
fn duration_of(probed: &Value) -> f64 {
    probed["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .expect("a duration")
}

/// Decodes every stream of `file` with `ffmpeg`; returns its error output (empty when the
/// file decodes without error).
fn decode_errors(file: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(file)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg runs");
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        errors
    } else {
        format!("exit {}: {errors}", out.status)
    }
}

/// The first and last time (s) of the packets of `file`'s stream `stream` (`v:0`, `a:0`...).
fn packet_span(file: &Path, stream: &str) -> (f64, f64, usize) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            stream,
            "-show_entries",
            "packet=pts_time",
        ])
        .args(["-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe runs");
    let times: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let first = times.iter().copied().fold(f64::INFINITY, f64::min);
    let last = times.iter().copied().fold(0.0, f64::max);
    (first, last, times.len())
}

/// Stream `stream` of `file` (`duration` s long) runs from its first 3 s to its last 1.5 s,
/// with more than `per_second` packets a second.
fn assert_throughout(file: &Path, stream: &str, duration: f64, per_second: f64) {
    let (first, last, packets) = packet_span(file, stream);
    assert!(
        first < 3.0 && last > duration - 1.5,
        "stream {stream} from {first} to {last} s of {duration}"
    );
    assert!(
        packets as f64 > duration * per_second,
        "{packets} packets of stream {stream} in {duration} s"
    );
}

fn file_of(data_dir: &Path, part: &Value) -> PathBuf {
    data_dir
        .join("recordings")
        .join(part["file"].as_str().expect("a file name"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meeting_with_a_change_of_speaker_is_recorded_in_one_file_that_decodes() {
    let mut config = diemcau::Config::for_tests();
    config.recording = diemcau::meeting::RecordingMode::Auto;
    let data_dir = config.data_dir.clone();
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp có ghi hình", &[SITE], true).await;

    let chair = publishing(addr, &m, "studio").await;
    let site = publishing(addr, &m, "site").await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    floor_to_the_site_for(&chair, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let told = chair.received("recording");
    assert!(
        told.iter()
            .any(|r| r["recording"] == true && r["part"] == 1),
        "the chair is told the recording runs: {told:?}"
    );
    let ended = http::post(addr, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());

    let parts = ended_parts(addr, m.id, 1).await;
    assert_eq!(parts.len(), 1, "{parts:?}");
    let part = &parts[0];
    assert_eq!(part["reason"], "meeting_ended");
    let file = file_of(&data_dir, part);
    assert_eq!(
        part["bytes"].as_u64(),
        std::fs::metadata(&file).ok().map(|m| m.len())
    );
    let recorded_ms =
        part["stopped_at"].as_i64().unwrap_or(0) - part["started_at"].as_i64().unwrap_or(0);

    let probed = probe(&file);
    let duration = duration_of(&probed);
    assert!(
        (duration - recorded_ms as f64 / 1000.0).abs() < 1.0,
        "the file lasts {duration} s, the recording {recorded_ms} ms"
    );
    let streams = probed["streams"].as_array().cloned().unwrap_or_default();
    let codecs: Vec<&str> = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert_eq!(codecs, ["vp8", "opus", "opus"], "{probed}");
    assert_eq!(decode_errors(&file), "", "the file decodes without error");
    // The picture runs from the first seconds to the end, through both changes of speaker, and
    // the studio's sound throughout; the floor holder's while it held the floor (~10 s).
    assert_throughout(&file, "v:0", duration, 20.0);
    assert_throughout(&file, "a:0", duration, 40.0);
    let (_, _, floor) = packet_span(&file, "a:1");
    assert!(
        (350..=600).contains(&floor),
        "{floor} packets of the floor holder's sound"
    );

    // Staff download it, in ranges as a player seeks.
    let staff = http::staff(addr).await;
    let path = format!("/api/meetings/{}/recordings/1", m.id);
    let whole = http::send(addr, "GET", &path, b"", Some(&staff), &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body.len() as u64, part["bytes"].as_u64().unwrap_or(0));
    assert_eq!(whole.header("content-type"), Some("video/webm"));
    let disposition = whole.header("content-disposition").unwrap_or_default();
    assert!(
        disposition.starts_with(&format!(
            "attachment; filename=\"ghi-hinh-hop-{}-phan-1-hop-co-ghi-hinh.mkv\"; filename*=UTF-8''Ghi%20h",
            m.id
        )),
        "saved under the meeting's title: {disposition}"
    );
    let ranged = http::send(
        addr,
        "GET",
        &path,
        b"",
        Some(&staff),
        &[("Range", "bytes=100-1099")],
    )
    .await;
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.body, whole.body[100..1100]);
    let size = whole.body.len();
    assert_eq!(
        ranged.header("content-range"),
        Some(format!("bytes 100-1099/{size}").as_str())
    );
    let past = http::send(
        addr,
        "GET",
        &path,
        b"",
        Some(&staff),
        &[("Range", &format!("bytes={size}-"))],
    )
    .await;
    assert_eq!(past.status, 416);
    let anonymous = http::send(addr, "GET", &path, b"", None, &[]).await;
    assert_eq!(anonymous.status, 401, "staff only");
    let missing = http::get(addr, &format!("/api/meetings/{}/recordings/2", m.id)).await;
    assert_eq!(missing.status, 404);

    site.close().await;
    chair.close().await;
    hub.shutdown().await;
}

/// The codec of each stream of `file`, in order.
fn codecs(file: &Path) -> Vec<String> {
    probe(file)["streams"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoders_h264_programme_is_recorded_as_it_arrives_with_the_floor_holders_vp8() {
    let mut config = diemcau::Config::for_tests();
    config.recording = diemcau::meeting::RecordingMode::Auto;
    let data_dir = config.data_dir.clone();
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let m = http::meeting(addr, "Họp có bộ mã hoá ghi hình", &[SITE], true).await;
    let encoder_token = http::issue_stream_token(addr, m.id, "encoder").await;

    // The chair's camera (VP8) is the programme first: the first part is WebM.
    let chair = publishing(addr, &m, "studio").await;
    let site = publishing(addr, &m, "site").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // The encoder goes on air with H.264: that part ends, the next is Matroska with H.264.
    let encoder = WebrtcClient::encoder_on_air(addr, m.id, &encoder_token).await;
    let first = ended_parts(addr, m.id, 1).await;
    assert_eq!(first[0]["reason"], "picture_changed", "{first:?}");
    tokio::time::sleep(Duration::from_secs(6)).await;
    floor_to_the_site_for(&chair, Duration::from_secs(6)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ended = http::post(addr, &format!("/api/meetings/{}/end", m.id), b"").await;
    assert_eq!(ended.status, 200, "{}", ended.text());

    let parts = ended_parts(addr, m.id, 2).await;
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[1]["reason"], "meeting_ended", "{parts:?}");
    assert!(
        parts[1]["gap_before_ms"].as_i64().unwrap_or(i64::MAX) < 1_000,
        "the next part follows at once: {parts:?}"
    );
    let webm = file_of(&data_dir, &parts[0]);
    assert_eq!(codecs(&webm), ["vp8", "opus", "opus"]);
    assert_eq!(
        decode_errors(&webm),
        "",
        "the first part decodes without error"
    );

    let mkv = file_of(&data_dir, &parts[1]);
    assert_eq!(codecs(&mkv), ["h264", "vp8", "opus", "opus"]);
    let probed = probe(&mkv);
    assert_eq!(probed["format"]["format_name"], "matroska,webm", "{probed}");
    assert_eq!(
        probed["streams"][0]["width"], 320,
        "the encoder's picture size"
    );
    assert_eq!(
        decode_errors(&mkv),
        "",
        "the H.264 part decodes without error"
    );
    let recorded_ms =
        parts[1]["stopped_at"].as_i64().unwrap_or(0) - parts[1]["started_at"].as_i64().unwrap_or(0);
    let duration = duration_of(&probed);
    assert!(
        (duration - recorded_ms as f64 / 1000.0).abs() < 1.0,
        "the file lasts {duration} s, the part {recorded_ms} ms"
    );
    // The encoder's picture before and after the floor, the site's (~6 s) while it held it;
    // the encoder's sound throughout.
    // (15 frames a second for ~11 s.)
    let (first_h264, last_h264, h264_frames) = packet_span(&mkv, "v:0");
    assert!(
        first_h264 < 3.0 && last_h264 > duration - 1.5 && h264_frames > 130,
        "H.264 from {first_h264} to {last_h264} s of {duration}: {h264_frames} frames"
    );
    let (_, _, vp8_frames) = packet_span(&mkv, "v:1");
    assert!(
        (100..=250).contains(&vp8_frames),
        "{vp8_frames} frames of the floor holder's picture"
    );
    assert_throughout(&mkv, "a:0", duration, 40.0);

    // Staff download it as Matroska.
    let staff = http::staff(addr).await;
    let path = format!("/api/meetings/{}/recordings/2", m.id);
    let whole = http::send(addr, "GET", &path, b"", Some(&staff), &[]).await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-type"), Some("video/x-matroska"));
    assert_eq!(
        whole.body.len() as u64,
        std::fs::metadata(&mkv).map_or(0, |m| m.len())
    );

    encoder.close().await;
    site.close().await;
    chair.close().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_meeting_says_when_it_is_recorded_within_what_the_hub_allows() {
    let mut config = diemcau::Config::for_tests();
    config.recording = diemcau::meeting::RecordingMode::Auto;
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let parts = |meeting: i64| async move {
        report(addr, meeting).await["recordings"]
            .as_array()
            .map_or(0, Vec::len)
    };

    // On a hub that records every meeting from its opening, this one waits for the chair.
    let manual = http::meeting_with(
        addr,
        "Họp ghi khi bấm",
        &[SITE],
        true,
        json!({"recording": "manual"}),
    )
    .await;
    let shown = http::get(addr, &format!("/api/meetings/{}", manual.id)).await;
    assert_eq!(shown.json()["recording"], "manual");
    let chair = publishing(addr, &manual, "studio").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        parts(manual.id).await,
        0,
        "not recorded before the chair asks"
    );
    chair
        .send(&json!({"type": "record", "on": true}))
        .expect("the chair presses record");
    wait::until_some("the chair's part", Duration::from_secs(10), || async {
        (parts(manual.id).await == 1).then_some(())
    })
    .await;
    chair.close().await;

    // This one is never recorded: the chair's record is refused.
    let off = http::meeting_with(
        addr,
        "Họp không ghi",
        &[SITE],
        true,
        json!({"recording": "off"}),
    )
    .await;
    let chair = publishing(addr, &off, "studio").await;
    chair
        .send(&json!({"type": "record", "on": true}))
        .expect("the chair presses record");
    let refused = wait::until_some("the refusal", Duration::from_secs(5), || async {
        chair.received("error").last().cloned()
    })
    .await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(parts(off.id).await, 0);
    chair.close().await;

    // A meeting made without a setting takes the hub's of the day; a word the hub does not
    // know is refused.
    let plain = http::meeting(addr, "Họp thường", &[SITE], false).await;
    let shown = http::get(addr, &format!("/api/meetings/{}", plain.id)).await;
    assert_eq!(shown.json()["recording"], "auto");
    let now = 1_796_086_800_000_i64;
    let body = json!({
        "title": "Họp", "studio_name": "Studio", "scheduled_start": now,
        "scheduled_end": now + 3_600_000, "sites": [{"code": SITE.0}], "recording": "always",
    });
    let bad = http::post(addr, "/api/meetings", body.to_string().as_bytes()).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    hub.shutdown().await;

    // A hub that records nothing refuses a meeting that wants to be.
    let mut config = diemcau::Config::for_tests();
    config.recording = diemcau::meeting::RecordingMode::Off;
    let hub = diemcau::start(config).await.expect("hub starts");
    let addr = hub.http_addr();
    let imported = http::post(
        addr,
        "/api/sites/import",
        format!(
            "admin_code,name,level,parent_code,parent_name,delegates\n{},{},xã,8,Tuyên Quang,40\n",
            SITE.0, SITE.1
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let refused = http::post(
        addr,
        "/api/meetings",
        body.to_string().replace("always", "auto").as_bytes(),
    )
    .await;
    assert_eq!(refused.status, 400, "{}", refused.text());
    assert!(
        refused.text().contains("--recording off"),
        "{}",
        refused.text()
    );
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_by_sigkill_plays_up_to_then_and_the_report_shows_the_gap() {
    let data = std::env::temp_dir().join(format!("diemcau-recording-kill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let records = ["--recording", "auto", "--recording-min-free-mb", "0"].map(str::to_owned);
    let (hub, addr) = hub_binary::spawn_with(&data, &records);
    let mut hub = hub_binary::KillOnDrop(hub);
    let m = http::meeting(addr, "Họp bị ngắt", &[SITE], true).await;
    let chair = publishing(addr, &m, "studio").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    hub.0.kill().expect("SIGKILL");
    let _ = hub.0.wait();
    chair.close().await;

    let cut = data
        .join("recordings")
        .join(format!("meeting-{}-1.mkv", m.id));
    assert_eq!(decode_errors(&cut), "", "the cut file decodes");
    let (_, last, _) = packet_span(&cut, "v:0");
    assert!(
        last > 5.0,
        "the cut file holds the picture up to its last seconds: {last} s"
    );

    let (hub, addr) = hub_binary::spawn_with(&data, &records);
    let _hub = hub_binary::KillOnDrop(hub);
    let parts = ended_parts(addr, m.id, 1).await;
    assert_eq!(parts[0]["reason"], "hub_stopped", "{parts:?}");
    assert_eq!(
        parts[0]["bytes"].as_u64(),
        std::fs::metadata(&cut).ok().map(|m| m.len())
    );
    // The meeting goes on: the studio back, a second part starts after the gap.
    let chair = publishing(addr, &m, "studio").await;
    let parts = wait::until_some("a second part", Duration::from_secs(10), || async {
        let parts = report(addr, m.id).await["recordings"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (parts.len() == 2).then_some(parts)
    })
    .await;
    assert!(
        parts[1]["gap_before_ms"].as_i64().unwrap_or(0) > 0,
        "{parts:?}"
    );
    chair.close().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_recording_and_the_meeting_goes_on() {
    // The log in PostgreSQL, the recording alone on a disk (a file size limit) that fills.
    let database = postgres::fresh_database("recording_full").await;
    let data = std::env::temp_dir().join(format!("diemcau-recording-full-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let (hub, addr) = hub_binary::spawn_with_file_limit(
        &data,
        Some(&database),
        &["--recording", "auto", "--recording-min-free-mb", "0"].map(str::to_owned),
        300,
    );
    let _hub = hub_binary::KillOnDrop(hub);
    let m = http::meeting(addr, "Họp đầy đĩa", &[SITE], true).await;
    let chair = publishing(addr, &m, "studio").await;
    let site = publishing(addr, &m, "site").await;

    let parts = ended_parts(addr, m.id, 1).await;
    assert_eq!(parts[0]["reason"], "disk_full", "{parts:?}");
    let told = chair.received("recording");
    assert!(
        told.iter()
            .any(|r| r["recording"] == false && r["trouble"] == "disk_full"),
        "the chair is warned: {told:?}"
    );
    let file = file_of(&data, &parts[0]);
    assert_eq!(decode_errors(&file), "", "what was written decodes");

    // The meeting runs on: the site still receives the studio, the log still takes events.
    let before = site
        .remote_tracks()
        .iter()
        .map(|t| t.packets())
        .sum::<u64>();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = site
        .remote_tracks()
        .iter()
        .map(|t| t.packets())
        .sum::<u64>();
    assert!(
        after > before + 50,
        "the site still receives: {before} → {after}"
    );
    site.send(&json!({"type": "request_floor"}))
        .expect("a request");
    wait::until_some(
        "the floor request in the log",
        Duration::from_secs(10),
        || async {
            let events = report(addr, m.id).await["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            events
                .iter()
                .any(|e| e["kind"] == "floor_requested")
                .then_some(())
        },
    )
    .await;
    site.close().await;
    chair.close().await;
    let _ = std::fs::remove_dir_all(&data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_other_hub_of_a_standby_pair_sends_a_download_to_the_hub_holding_the_file() {
    let database = postgres::fresh_database("recording_pair").await;
    let data = std::env::temp_dir().join(format!("diemcau-recording-pair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let args = |name: &str| {
        [
            "--hub-name",
            name,
            "--recording",
            "auto",
            "--recording-min-free-mb",
            "0",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    let (first, a) = hub_binary::spawn_on(&data.join("a"), Some(&database), &args("a"));
    let _first = hub_binary::KillOnDrop(first);
    let (second, b) = hub_binary::spawn_on(&data.join("b"), Some(&database), &args("b"));
    let _second = hub_binary::KillOnDrop(second);

    let m = http::meeting(a, "Họp trên cặp máy chủ", &[SITE], true).await;
    let chair = publishing(a, &m, "studio").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    chair
        .send(&json!({"type": "record", "on": false}))
        .expect("the chair stops the recording");
    let parts = ended_parts(a, m.id, 1).await;
    let bytes = parts[0]["bytes"].as_u64().unwrap_or(0);
    assert!(bytes > 0, "{parts:?}");

    // Asked of the standby, which has no file of it: sent to the hub that wrote it.
    let path = format!("/api/meetings/{}/recordings/1", m.id);
    let at_b = http::send(b, "GET", &path, b"", Some(&http::organizer(b).await), &[]).await;
    assert_eq!(at_b.status, 307, "{}", at_b.text());
    let location = at_b.header("location").unwrap_or_default().to_owned();
    assert!(location.ends_with(&path), "{location}");
    let host: SocketAddr = location
        .trim_start_matches("http://")
        .trim_end_matches(&path)
        .parse()
        .unwrap_or_else(|e| panic!("{location}: {e}"));
    assert_eq!(host.port(), a.port(), "{location}");
    let at_a = http::send(a, "GET", &path, b"", Some(&http::organizer(a).await), &[]).await;
    assert_eq!(at_a.status, 200);
    assert_eq!(at_a.body.len() as u64, bytes);
    // A part nobody wrote is not found on either hub.
    let missing = format!("/api/meetings/{}/recordings/9", m.id);
    assert_eq!(
        http::send(
            b,
            "GET",
            &missing,
            b"",
            Some(&http::organizer(b).await),
            &[]
        )
        .await
        .status,
        404
    );
    chair.close().await;
    let _ = std::fs::remove_dir_all(&data);
}
