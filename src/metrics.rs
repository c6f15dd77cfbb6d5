//! `/metrics`: the hub's counters and gauges in the Prometheus text format.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::connections::{Refusal, TimeoutStage};
use crate::state::AppState;

/// `GET /metrics`: the hub's counters in the Prometheus text format.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let media = app.hub.media().stats();
    let (participants, sites) = app.hub.counts();
    let cpu = process_cpu_seconds().unwrap_or(0.0);
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        ));
    };
    metric(
        "diemcau_participants",
        "gauge",
        "Participants joined in all meetings.",
        participants.to_string(),
    );
    metric(
        "diemcau_sites_connected",
        "gauge",
        "Sites joined in all meetings.",
        sites.to_string(),
    );
    if let Some(parent) = app.parent_link.status() {
        let up = parent.state == crate::cascade::link::LinkState::Connected;
        metric(
            "diemcau_parent_link_up",
            "gauge",
            "1 while the link to the parent hub is up.",
            u8::from(up).to_string(),
        );
        metric(
            "diemcau_parent_link_rtt_milliseconds",
            "gauge",
            "Round-trip time of the link to the parent hub (last ping).",
            parent.rtt_ms.unwrap_or(0).to_string(),
        );
        metric(
            "diemcau_parent_link_attempts_total",
            "counter",
            "Connection attempts to the parent hub since start.",
            parent.attempts.to_string(),
        );
        metric(
            "diemcau_parent_relays",
            "gauge",
            "National meetings relayed from the parent hub now.",
            parent.relays.len().to_string(),
        );
        metric(
            "diemcau_parent_relay_bitrate_kbps",
            "gauge",
            "The national studio's media coming down the link, all relays, kbit/s (payload).",
            parent
                .relays
                .iter()
                .map(|r| r.bitrate_kbps)
                .sum::<u64>()
                .to_string(),
        );
        metric(
            "diemcau_parent_relay_packets_total",
            "counter",
            "Packets of the national studio received and published here by the running relays.",
            parent
                .relays
                .iter()
                .map(|r| r.packets)
                .sum::<u64>()
                .to_string(),
        );
    }
    metric(
        "diemcau_node_links_connected",
        "gauge",
        "Child hubs linked to this hub now.",
        app.node_links.connected().to_string(),
    );
    metric(
        "diemcau_node_links_refused_total",
        "counter",
        "Child hub links refused (unknown or revoked credential, another protocol).",
        app.node_links.refused().to_string(),
    );
    if let Some(expires_at) = app.certificate_expires_at {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        metric(
            "diemcau_tls_certificate_expiry_timestamp_seconds",
            "gauge",
            "When the hub's TLS certificate stops being valid (Unix time).",
            expires_at.to_string(),
        );
        metric(
            "diemcau_tls_certificate_expires_soon",
            "gauge",
            "1 when the hub's TLS certificate expires within 30 days or has expired.",
            u8::from(crate::tls::expires_soon(expires_at, now)).to_string(),
        );
    }
    metric(
        "diemcau_media_workers",
        "gauge",
        "Media worker threads.",
        app.hub.media().worker_count().to_string(),
    );
    metric(
        "diemcau_media_overloaded",
        "gauge",
        "1 while a media worker is over its capacity and sheds video to keep every site's sound.",
        u8::from(media.shed_level > 0).to_string(),
    );
    metric(
        "diemcau_log_buffered_events",
        "gauge",
        "Attendance events waiting on the hub's disk for an unreachable database.",
        app.hub
            .recorder()
            .buffered()
            .map_or(0, |(events, _)| events)
            .to_string(),
    );
    metric(
        "diemcau_media_tcp_connections",
        "gauge",
        "ICE-TCP media connections open (halls whose UDP does not get through).",
        app.hub.media().tcp_connections().to_string(),
    );
    metric(
        "diemcau_media_tcp_refused_total",
        "counter",
        "ICE-TCP media connections refused for being over a cap.",
        app.hub.media().tcp_refused().to_string(),
    );
    metric(
        "diemcau_packets_received_total",
        "counter",
        "RTP packets received from publishers.",
        media.packets_received.to_string(),
    );
    metric(
        "diemcau_packets_forwarded_total",
        "counter",
        "RTP packets written to receivers.",
        media.packets_forwarded.to_string(),
    );
    metric(
        "diemcau_bytes_forwarded_total",
        "counter",
        "RTP payload bytes written to receivers.",
        media.bytes_forwarded.to_string(),
    );
    metric(
        "diemcau_packets_muted_total",
        "counter",
        "RTP packets of muted sites dropped at the hub.",
        media.packets_dropped_paused.to_string(),
    );
    metric(
        "diemcau_datagrams_received_total",
        "counter",
        "UDP datagrams received.",
        media.datagrams_received.to_string(),
    );
    metric(
        "diemcau_datagrams_sent_total",
        "counter",
        "UDP datagrams the media workers handed to the kernel.",
        media.udp_datagrams_sent.to_string(),
    );
    metric(
        "diemcau_datagram_messages_sent_total",
        "counter",
        "Messages those datagrams left in: a run of datagrams to one site goes as one (segmentation offload).",
        media.udp_messages_sent.to_string(),
    );
    metric(
        "diemcau_datagrams_unrouted_total",
        "counter",
        "UDP datagrams no peer claimed.",
        media.datagrams_unrouted.to_string(),
    );
    let (handed_over, handoffs_dropped) = app.hub.media().handoffs();
    metric(
        "diemcau_datagrams_handed_over_total",
        "counter",
        "UDP datagrams read by one worker and handed to the worker owning their peer (--single-port).",
        handed_over.to_string(),
    );
    metric(
        "diemcau_datagrams_handoff_dropped_total",
        "counter",
        "UDP datagrams dropped because the owning worker's handoff queue was full (--single-port).",
        handoffs_dropped.to_string(),
    );
    let (socket_drops, rtcp_shed) = app.hub.media().socket_losses();
    metric(
        "diemcau_socket_drops_total",
        "counter",
        "UDP datagrams the kernel dropped at the media workers' sockets, mostly a full receive buffer: a worker behind.",
        socket_drops.to_string(),
    );
    metric(
        "diemcau_rtcp_shed_total",
        "counter",
        "RTCP datagrams a media worker read and dropped unhandled while its socket was more than an eighth full.",
        rtcp_shed.to_string(),
    );
    metric(
        "diemcau_keyframe_requests_total",
        "counter",
        "Keyframe requests sent to publishers.",
        media.keyframe_requests_sent.to_string(),
    );
    metric(
        "diemcau_handshake_failures_total",
        "counter",
        "Peers whose ICE or DTLS setup failed before connecting.",
        media.handshake_failures.to_string(),
    );
    metric(
        "diemcau_peers_failed_total",
        "counter",
        "Connections closed by a fault of the media library on what their peer sent; the rest of the worker went on.",
        media.peers_failed.to_string(),
    );
    metric(
        "diemcau_loss_permille",
        "gauge",
        "Worst packet loss of a connected site over the last sample, in tenths of a percent.",
        app.hub.worst_loss_permille().to_string(),
    );
    metric(
        "process_cpu_seconds_total",
        "counter",
        "CPU time of the hub process.",
        format!("{cpu:.3}"),
    );
    let per_packet = if media.packets_forwarded > 0 {
        cpu * 1e6 / media.packets_forwarded as f64
    } else {
        0.0
    };
    metric(
        "diemcau_cpu_microseconds_per_forwarded_packet",
        "gauge",
        "Hub CPU time since start divided by packets forwarded.",
        format!("{per_packet:.2}"),
    );
    metric(
        "diemcau_connections_open",
        "gauge",
        "TCP connections the web server holds, WebSockets included.",
        app.tcp_connections.open().to_string(),
    );
    labelled(
        &mut out,
        "diemcau_connections_refused_total",
        "Connections closed at once after accept: too many from one address, or in all.",
        Refusal::ALL.map(|reason| {
            (
                "reason",
                reason.label(),
                app.connection_stats.refused_count(reason),
            )
        }),
    );
    labelled(
        &mut out,
        "diemcau_connections_timed_out_total",
        "Connections closed by a timeout, by the stage they were at.",
        TimeoutStage::ALL.map(|stage| {
            (
                "stage",
                stage.label(),
                app.connection_stats.timed_out_count(stage),
            )
        }),
    );
    let loads = app.hub.media().loads();
    gauges(
        &mut out,
        "diemcau_media_worker_busy_ratio",
        "Share of the last half second a media worker's loop was busy (not waiting for input); while its own thread ran under half of it, only the share it ran.",
        "worker",
        loads.iter().enumerate().map(|(worker, (busy, _))| {
            (worker.to_string(), format!("{:.3}", *busy as f64 / 1000.0))
        }),
    );
    gauges(
        &mut out,
        "diemcau_media_worker_shed_level",
        "How much video a media worker sheds to keep up: 0 none, 1 layers up to the middle, 2 the lowest layer, 3-5 a quarter to three quarters of the sites sound only, 6 sound only.",
        "worker",
        loads
            .iter()
            .enumerate()
            .map(|(worker, (_, level))| (worker.to_string(), level.to_string())),
    );
    let round_trips = app.node_links.round_trips();
    if !round_trips.is_empty() {
        gauges(
            &mut out,
            "diemcau_node_link_rtt_milliseconds",
            "Round-trip time of each child hub's link.",
            "node",
            round_trips
                .iter()
                .map(|(node, rtt)| (node.clone(), rtt.to_string())),
        );
    }
    let media: Vec<(String, diemcau_sfu::Quality)> = round_trips
        .into_iter()
        .filter_map(|(node, _)| Some((node.clone(), app.hub.node_media(&node)?)))
        .collect();
    if !media.is_empty() {
        gauges(
            &mut out,
            "diemcau_node_link_bitrate_kbps",
            "Media sent down each child hub's link (its relays), kbit/s.",
            "node",
            media
                .iter()
                .map(|(node, q)| (node.clone(), q.bitrate_out_kbps.to_string())),
        );
        gauges(
            &mut out,
            "diemcau_node_link_loss_permille",
            "Loss reported by each child hub's relays, per mille.",
            "node",
            media
                .iter()
                .map(|(node, q)| (node.clone(), q.loss_permille.to_string())),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// A gauge with one label, one line per label value: `(label value, value)`.
fn gauges(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (String, String)>,
) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
    for (key, value) in values {
        out.push_str(&format!("{name}{{{label}=\"{key}\"}} {value}\n"));
    }
}

/// A counter with one label, one line per label value.
fn labelled<const N: usize>(
    out: &mut String,
    name: &str,
    help: &str,
    values: [(&str, &str, u64); N],
) {
    out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
    for (label, value, count) in values {
        out.push_str(&format!("{name}{{{label}=\"{value}\"}} {count}\n"));
    }
}

/// utime + stime of this process, from /proc (Linux).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}
