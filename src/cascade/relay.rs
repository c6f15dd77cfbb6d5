//! The child's relay of one national meeting in progress: it joins the parent's meeting over
//! the node link (a `node` participant, docs/protocol.md), receives the national studio's
//! audio and video once for all of this hub's communes, and publishes them here as the studio
//! of this hub's part of the meeting, so that each commune receives them from its own
//! provincial hub, with this hub's own layer choice and audio-only fallback. The media path is
//! [`super::bridge`]; this task carries its datagrams and its two signalling sessions.
//!
//! The relay lives while the node link is up and the meeting is in progress; when it ends, the
//! local studio seat is left (the communes see the studio go) and a new relay takes it when
//! the link is back.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use diemcau_signaling::protocol::FloorSite;
use diemcau_signaling::{
    ClientMessage, CloseReason, MeetingId, Outbox, ServerMessage, SessionHandler, SiteCode,
};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::NodeMessage;
use super::bridge::{Bridge, RelayFigures, Side};
use crate::hub::{ClientInfo, Hub, Session};
use crate::meeting::FloorAbove;

/// How often a relay shares its figures with the link's status.
const FIGURES_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A running relay, held by the link; dropping it ends the relay (its task leaves both
/// meetings on its way out).
#[derive(Debug)]
pub struct RelayHandle {
    down: mpsc::UnboundedSender<ServerMessage>,
    figures: Arc<Mutex<RelayFigures>>,
}

impl RelayHandle {
    /// What it received from the parent so far.
    pub fn figures(&self) -> RelayFigures {
        *self.figures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message of the parent hub to this relay.
    pub fn deliver(&self, message: ServerMessage) {
        let _ = self.down.send(message);
    }
}

/// What a relay needs to start.
#[derive(Debug, Clone)]
pub struct RelaySpec {
    /// The meeting's id on the parent.
    pub parent_meeting: i64,
    /// This hub's part of it.
    pub local_meeting: MeetingId,
    /// The name the national studio has (shown to the communes).
    pub studio_name: String,
    /// The parent hub's address as this hub reaches it (for the source address to use).
    pub parent_ip: IpAddr,
}

/// Starts the relay of `spec`; what it says to the parent goes to `up`.
pub fn start(
    hub: Arc<Hub>,
    spec: RelaySpec,
    up: mpsc::UnboundedSender<NodeMessage>,
) -> RelayHandle {
    let (down, down_rx) = mpsc::unbounded_channel();
    let figures = Arc::new(Mutex::new(RelayFigures::default()));
    let shared = figures.clone();
    tokio::spawn(async move {
        let meeting = spec.parent_meeting;
        if let Err(e) = run(&hub, &spec, &up, down_rx, &shared).await {
            tracing::warn!(
                parent_meeting = meeting,
                "the relay of the national meeting stopped: {e}"
            );
        }
        let _ = up.send(NodeMessage::RelayLeave { meeting });
    });
    RelayHandle { down, figures }
}

async fn run(
    hub: &Arc<Hub>,
    spec: &RelaySpec,
    up: &mpsc::UnboundedSender<NodeMessage>,
    mut down: mpsc::UnboundedReceiver<ServerMessage>,
    figures: &Mutex<RelayFigures>,
) -> Result<(), String> {
    let meeting = spec.parent_meeting;
    // This hub's workers, at an address this machine reaches them at whatever they announce.
    let local_reach = hub.media().local_reach();
    let parent_socket = bind_towards(spec.parent_ip).await?;
    let local_socket = bind_on(local_reach).await?;
    let floor_socket = bind_on(local_reach).await?;
    let address = |socket: &UdpSocket| socket.local_addr().map_err(|e| e.to_string());
    let (mut bridge, offers) = Bridge::new(
        Instant::now(),
        address(&parent_socket)?,
        address(&local_socket)?,
        address(&floor_socket)?,
        local_reach,
        &format!("relay-{meeting}"),
    )
    .map_err(|e| e.to_string())?;

    // This hub's side: the studio's seat of the local meeting, and the seat of the floor held
    // elsewhere in the tree.
    let client = || ClientInfo {
        user_agent: format!("diemcau relay of national meeting {meeting}"),
        ..ClientInfo::default()
    };
    let (outbox, mut local_rx) = Outbox::channel();
    let mut session = hub.open(outbox, client());
    let (outbox, mut floor_rx) = Outbox::channel();
    let mut floor_session = hub.open(outbox, client());
    let result = async {
        let joined = hub
            .join_relayed_studio(&mut session, spec.local_meeting, &spec.studio_name)
            .await
            .map_err(|e| format!("the local studio seat: {}", e.message))?;
        // Which site each of this hub's participants is: their tracks go up under it.
        if let ServerMessage::Joined { participants, .. } = &joined {
            for p in participants {
                bridge.set_local_site(&p.id, p.site.as_deref());
            }
        }
        hub.join_floor_seat(&mut floor_session, spec.local_meeting)
            .await
            .map_err(|e| format!("the local floor seat: {}", e.message))?;
        for (seat, side, sdp) in [
            (&mut session, Side::Local, offers.local),
            (&mut floor_session, Side::Floor, offers.floor),
        ] {
            match hub.handle(seat, ClientMessage::Offer { sdp }).await {
                Ok(Some(ServerMessage::Answer { sdp })) => bridge
                    .accept_answer(side, &sdp)
                    .map_err(|e| e.to_string())?,
                Ok(other) => return Err(format!("the local hub answered {other:?}")),
                Err(e) => return Err(format!("the local hub refused the offer: {}", e.message)),
            }
        }
        // The parent's side: join, then offer once joined.
        up.send(NodeMessage::RelayJoin { meeting })
            .map_err(|_| "the link is gone".to_owned())?;
        let mut parent_offer = Some(offers.parent);
        // This relay's participant id at the parent, and where the parent's chair put the
        // floor last: applied here once both are known.
        let mut relay_id: Option<String> = None;
        let mut parent_floor: Option<Option<FloorSite>> = None;
        // The parent's roll call running now: this hub runs one of its own meanwhile, and
        // its communes' answers go up under the parent's number.
        let mut parent_roll_call: Option<u32> = None;
        let mut buf = vec![0u8; 2048];
        let mut local_buf = vec![0u8; 2048];
        let mut floor_buf = vec![0u8; 2048];
        let mut wake = Instant::now();
        // The figures are shared at most this often, not on every packet: they are read
        // every few seconds.
        let mut shared_at = Instant::now();
        loop {
            let sleep = tokio::time::sleep_until(wake.into());
            tokio::select! {
                message = down.recv() => {
                    let Some(message) = message else { return Ok(()) };
                    match message {
                        ServerMessage::Joined { participant, participants, .. } => {
                            if let Some(sdp) = parent_offer.take() {
                                send_up(up, meeting, ClientMessage::Offer { sdp })?;
                            }
                            for source in &participants {
                                bridge.set_programme_stream(source.role, &source.id);
                            }
                            relay_id = Some(participant.id);
                            follow_floor(hub, &session, &mut bridge, relay_id.as_deref(), parent_floor.as_ref()).await;
                        }
                        ServerMessage::ParticipantJoined { participant } => {
                            bridge.set_programme_stream(participant.role, &participant.id);
                        }
                        ServerMessage::Floor { holder, .. } => {
                            parent_floor = Some(holder);
                            follow_floor(hub, &session, &mut bridge, relay_id.as_deref(), parent_floor.as_ref()).await;
                        }
                        ServerMessage::Answer { sdp } => {
                            bridge.accept_answer(Side::Parent, &sdp).map_err(|e| e.to_string())?;
                        }
                        ServerMessage::Offer { sdp } => {
                            let sdp = bridge.accept_offer(Instant::now(), Side::Parent, &sdp).map_err(|e| e.to_string())?;
                            send_up(up, meeting, ClientMessage::Answer { sdp })?;
                        }
                        ServerMessage::RollCall { roll_call, active, .. } => {
                            let local = if active {
                                parent_roll_call = Some(roll_call);
                                Some(ClientMessage::StartRollCall)
                            } else {
                                parent_roll_call.take().map(|_| ClientMessage::EndRollCall)
                            };
                            if let Some(action) = local
                                && let Err(e) = hub.handle(&mut session, action).await
                            {
                                tracing::warn!(parent_meeting = meeting, "the national roll call not run here: {}", e.message);
                            }
                        }
                        // The national chair acted on this hub's communes: done here as its chair.
                        ServerMessage::RelayChair { action } => {
                            let allowed = matches!(
                                *action,
                                ClientMessage::Mute { .. } | ClientMessage::MuteAll { .. } | ClientMessage::CallSite { .. } | ClientMessage::Tiles { .. }
                            );
                            if allowed && let Err(e) = hub.handle(&mut session, *action).await {
                                tracing::info!(parent_meeting = meeting, "the national chair's action not done here: {}", e.message);
                            }
                        }
                        ServerMessage::Error { code, message, .. } => {
                            return Err(format!("the parent refused the relay: {message} ({code:?})"));
                        }
                        _ => {}
                    }
                }
                message = local_rx.recv() => {
                    let Some((message, last)) = message else { return Ok(()) };
                    match message {
                        ServerMessage::Offer { sdp } => {
                            let sdp = bridge.accept_offer(Instant::now(), Side::Local, &sdp).map_err(|e| e.to_string())?;
                            if let Err(e) = hub.handle(&mut session, ClientMessage::Answer { sdp }).await {
                                tracing::warn!(parent_meeting = meeting, "the local hub refused the relay's answer: {}", e.message);
                            }
                        }
                        ServerMessage::ParticipantJoined { participant } => {
                            bridge.set_local_site(&participant.id, participant.site.as_deref());
                        }
                        ServerMessage::ParticipantLeft { participant } => {
                            bridge.set_local_site(&participant, None);
                        }
                        // What this hub's console shows of its communes goes up to the chair.
                        ServerMessage::Console { sites, .. } => {
                            let _ = up.send(NodeMessage::RelayConsole { meeting, sites });
                        }
                        ServerMessage::RollCallAnswer { site, count, confirmed_by, position, .. } => {
                            if let Some(roll_call) = parent_roll_call {
                                let _ = up.send(NodeMessage::RelayRollCallAnswer {
                                    meeting,
                                    roll_call,
                                    site,
                                    count,
                                    confirmed_by,
                                    position,
                                });
                            }
                        }
                        _ => {}
                    }
                    if last {
                        return Ok(());
                    }
                }
                message = floor_rx.recv() => {
                    let Some((message, last)) = message else { return Ok(()) };
                    if let ServerMessage::Offer { sdp } = message {
                        let sdp = bridge.accept_offer(Instant::now(), Side::Floor, &sdp).map_err(|e| e.to_string())?;
                        if let Err(e) = hub.handle(&mut floor_session, ClientMessage::Answer { sdp }).await {
                            tracing::warn!(parent_meeting = meeting, "the local hub refused the floor seat's answer: {}", e.message);
                        }
                    }
                    if last {
                        return Ok(());
                    }
                }
                received = floor_socket.recv_from(&mut floor_buf) => {
                    if let Ok((n, source)) = received {
                        bridge.receive(Instant::now(), Side::Floor, source, floor_buf.get(..n).unwrap_or_default());
                    }
                }
                received = parent_socket.recv_from(&mut buf) => {
                    if let Ok((n, source)) = received {
                        bridge.receive(Instant::now(), Side::Parent, source, buf.get(..n).unwrap_or_default());
                    }
                }
                received = local_socket.recv_from(&mut local_buf) => {
                    if let Ok((n, source)) = received {
                        bridge.receive(Instant::now(), Side::Local, source, local_buf.get(..n).unwrap_or_default());
                    }
                }
                () = sleep => {}
            }
            let now = Instant::now();
            wake = bridge.drive(now).map_err(|e| e.to_string())?;
            if now.duration_since(shared_at) >= FIGURES_EVERY {
                shared_at = now;
                *figures.lock().unwrap_or_else(|e| e.into_inner()) = bridge.figures;
            }
            // The parent hears which site each upward track carries once it is joined.
            if relay_id.is_some()
                && let Some(streams) = bridge.take_upward()
            {
                let _ = up.send(NodeMessage::RelayStreams { meeting, streams });
            }
            let sent_at = Instant::now();
            let mut sent = false;
            while let Some(datagram) = bridge.poll_datagram() {
                let socket = match datagram.side {
                    Side::Parent => &parent_socket,
                    Side::Local => &local_socket,
                    Side::Floor => &floor_socket,
                };
                let _ = socket.try_send_to(&datagram.contents, datagram.destination);
                sent = true;
            }
            if sent {
                bridge.datagrams_sent(sent_at);
            }
        }
    }
    .await;
    bridge.close();
    hub.close(floor_session, CloseReason::ClientClosed).await;
    hub.close(session, CloseReason::ClientClosed).await;
    result
}

/// Puts the local floor where the parent's chair put it (`floor`, the holder of the parent's
/// latest `floor` message): on this hub's own site when the parent names this relay as its
/// holder (that site then goes up first, [`Bridge::set_floor_site`]), on the floor seat for a
/// site elsewhere in the tree, nowhere when nobody holds it.
async fn follow_floor(
    hub: &Hub,
    session: &Session,
    bridge: &mut Bridge,
    relay_id: Option<&str>,
    floor: Option<&Option<FloorSite>>,
) {
    let (Some(relay_id), Some(floor)) = (relay_id, floor) else {
        return;
    };
    let above = match floor {
        None => None,
        Some(holder) => {
            let Ok(site) = SiteCode::try_from(holder.site.as_str()) else {
                return;
            };
            // This relay's tracks of one of its sites: `<relay>-<site>` (docs/protocol.md).
            let ours = holder.participant == relay_id
                || holder
                    .participant
                    .strip_prefix(relay_id)
                    .is_some_and(|rest| rest.starts_with('-'));
            Some(if ours {
                FloorAbove::Here(site)
            } else {
                FloorAbove::Elsewhere {
                    site,
                    name: holder.name.clone(),
                }
            })
        }
    };
    // The commune of this hub holding the floor goes up whatever else does.
    let here = match &above {
        Some(FloorAbove::Here(site)) => Some(site.as_str()),
        _ => None,
    };
    bridge.set_floor_site(here);
    if let Err(e) = hub.relay_floor(session, above).await {
        tracing::warn!("the national floor not followed here: {}", e.message);
    }
}

fn send_up(
    up: &mpsc::UnboundedSender<NodeMessage>,
    meeting: i64,
    message: ClientMessage,
) -> Result<(), String> {
    up.send(NodeMessage::RelayUp {
        meeting,
        message: Box::new(message),
    })
    .map_err(|_| "the link is gone".to_owned())
}

/// A UDP socket on the address this machine uses to reach `target`.
async fn bind_towards(target: IpAddr) -> Result<UdpSocket, String> {
    let any: IpAddr = if target.is_ipv4() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    };
    let probe = UdpSocket::bind(SocketAddr::new(any, 0))
        .await
        .map_err(|e| format!("a UDP socket: {e}"))?;
    probe
        .connect(SocketAddr::new(target, 9))
        .await
        .map_err(|e| format!("no route to {target}: {e}"))?;
    let source = probe.local_addr().map_err(|e| e.to_string())?.ip();
    bind_on(source).await
}

/// A UDP socket on `ip`, any port.
async fn bind_on(ip: IpAddr) -> Result<UdpSocket, String> {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0))
        .await
        .map_err(|e| format!("a UDP socket on {ip}: {e}"))?;
    crate::media::size_buffers(&socket, false);
    Ok(socket)
}
