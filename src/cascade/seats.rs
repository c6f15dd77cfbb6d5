//! The parent's end of its children's relays: each relay a child asks for over its node link
//! becomes a `node` participant of the meeting (docs/protocol.md), a signalling session of the
//! hub like a browser's, whose messages travel inside the link (`relay_up`, `relay_down`)
//! instead of a WebSocket of their own. The link's end ends its relays.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use diemcau_sfu::str0m::media::Mid;
use diemcau_signaling::{
    ClientMessage, CloseReason, ErrorCode, MeetingId, Outbox, ProtocolError, ServerMessage,
    SessionHandler, SiteCode,
};
use tokio::sync::mpsc;

use super::NodeMessage;
use crate::hub::{ClientInfo, Hub, Session};
use crate::meeting::Declaration;
use crate::store::{NodeRecord, Store};

/// A message of the hub to one of the link's relays: (meeting, message, whether it is the
/// last: the hub ended that session).
pub type RelayOutput = (i64, ServerMessage, bool);

/// The relays of one node link.
#[derive(Debug)]
pub struct NodeSeats {
    hub: Arc<Hub>,
    node: NodeRecord,
    address: Option<std::net::SocketAddr>,
    sessions: HashMap<i64, Session>,
    /// The sites of each relayed meeting that the node serves: it speaks for those only.
    parts: HashMap<i64, HashSet<String>>,
    outputs: mpsc::UnboundedSender<RelayOutput>,
}

impl NodeSeats {
    /// The relays of `node`'s link, and where the hub's messages to them arrive.
    pub fn new(
        hub: Arc<Hub>,
        node: NodeRecord,
        address: Option<std::net::SocketAddr>,
    ) -> (NodeSeats, mpsc::UnboundedReceiver<RelayOutput>) {
        let (outputs, rx) = mpsc::unbounded_channel();
        let seats = NodeSeats {
            hub,
            node,
            address,
            sessions: HashMap::new(),
            parts: HashMap::new(),
            outputs,
        };
        (seats, rx)
    }

    /// A message of the child about its relays; the reply to send back, if any.
    pub async fn handle(&mut self, message: NodeMessage) -> Option<NodeMessage> {
        let (meeting, reply) = match message {
            NodeMessage::RelayJoin { meeting } => (meeting, self.join(meeting).await),
            NodeMessage::RelayUp { meeting, message } => {
                if !allowed(&message) {
                    let refused = ProtocolError::new(
                        ErrorCode::Forbidden,
                        "a relay sends offers, answers and leave only",
                    );
                    return Some(down(meeting, refused.to_message()));
                }
                let Some(session) = self.sessions.get_mut(&meeting) else {
                    let refused = ProtocolError::new(
                        ErrorCode::NotJoined,
                        "this relay has not joined the meeting",
                    );
                    return Some(down(meeting, refused.to_message()));
                };
                let reply = match self.hub.handle(session, *message).await {
                    Ok(reply) => reply,
                    Err(e) => Some(e.to_message()),
                };
                (meeting, reply)
            }
            NodeMessage::RelayConsole { meeting, mut sites } => {
                let part = self.parts.get(&meeting)?;
                sites.retain(|row| part.contains(&row.site));
                let session = self.sessions.get(&meeting)?;
                if let Err(e) = self.hub.relay_console(session, sites).await {
                    tracing::debug!(node = %self.node.name, meeting, "the relay's console not taken: {}", e.message);
                }
                (meeting, None)
            }
            NodeMessage::RelayStreams { meeting, streams } => {
                let session = self.sessions.get(&meeting)?;
                let part = self.parts.get(&meeting)?;
                let mut parsed = Vec::with_capacity(streams.len());
                for stream in streams {
                    let site = match SiteCode::try_from(stream.site.as_str()) {
                        Ok(site) if part.contains(&stream.site) => site,
                        Ok(_) => {
                            let refused = ProtocolError::new(
                                ErrorCode::Forbidden,
                                "this site is not one of the node's provinces",
                            );
                            return Some(down(meeting, refused.to_message()));
                        }
                        Err(e) => {
                            let refused =
                                ProtocolError::new(ErrorCode::InvalidField, e.to_string());
                            return Some(down(meeting, refused.to_message()));
                        }
                    };
                    parsed.push((Mid::from(stream.mid.as_str()), site));
                }
                let result = self.hub.relay_streams(session, parsed).await;
                (meeting, result.err().map(|e| e.to_message()))
            }
            NodeMessage::RelayRollCallAnswer {
                meeting,
                roll_call,
                site,
                count,
                confirmed_by,
                position,
            } => {
                let session = self.sessions.get(&meeting)?;
                let part = self.parts.get(&meeting)?;
                let answer = match SiteCode::try_from(site.as_str()) {
                    Ok(_) if !part.contains(&site) => Err(ProtocolError::new(
                        ErrorCode::Forbidden,
                        "this site is not one of the node's provinces",
                    )),
                    Ok(site) => {
                        let declaration = Declaration {
                            count,
                            confirmed_by,
                            position,
                        };
                        self.hub
                            .relay_roll_call_answer(session, roll_call, &site, declaration)
                            .await
                    }
                    Err(e) => Err(ProtocolError::new(ErrorCode::InvalidField, e.to_string())),
                };
                (meeting, answer.err().map(|e| e.to_message()))
            }
            NodeMessage::RelayLeave { meeting } => {
                self.parts.remove(&meeting);
                if let Some(session) = self.sessions.remove(&meeting) {
                    self.hub.close(session, CloseReason::ClientClosed).await;
                }
                (meeting, None)
            }
            _ => return None,
        };
        reply.map(|message| down(meeting, message))
    }

    /// The hub ended a relay's session (the meeting ended, the hub stops).
    pub async fn ended(&mut self, meeting: i64) {
        self.parts.remove(&meeting);
        if let Some(session) = self.sessions.remove(&meeting) {
            self.hub.close(session, CloseReason::HubClosed).await;
        }
    }

    /// The link is gone: every relay leaves.
    pub async fn close_all(&mut self) {
        for (_, session) in self.sessions.drain() {
            self.hub.close(session, CloseReason::ConnectionLost).await;
        }
    }

    async fn join(&mut self, meeting: i64) -> Option<ServerMessage> {
        let part = match self.concerns_node(meeting).await {
            Ok(part) => part,
            Err(e) => return Some(e.to_message()),
        };
        if let Some(old) = self.sessions.remove(&meeting) {
            self.hub.close(old, CloseReason::ClientClosed).await;
        }
        let (outbox, mut rx) = Outbox::channel();
        let mut session = self.hub.open(
            outbox,
            ClientInfo {
                address: self.address,
                user_agent: format!("diemcau node {}", self.node.name),
                ..ClientInfo::default()
            },
        );
        match self
            .hub
            .join_node(&mut session, MeetingId(meeting), &self.node.name)
            .await
        {
            Ok(joined) => {
                let outputs = self.outputs.clone();
                tokio::spawn(async move {
                    while let Some((message, last)) = rx.recv().await {
                        if outputs.send((meeting, message, last)).is_err() || last {
                            break;
                        }
                    }
                });
                self.sessions.insert(meeting, session);
                self.parts.insert(meeting, part);
                tracing::info!(node = %self.node.name, meeting, "node relays the meeting");
                Some(joined)
            }
            Err(e) => {
                self.hub.close(session, CloseReason::ClientClosed).await;
                Some(e.to_message())
            }
        }
    }

    /// A node relays only a meeting in progress that invites sites of its provinces; those
    /// sites.
    async fn concerns_node(&self, meeting: i64) -> Result<HashSet<String>, ProtocolError> {
        let provinces = self.node.provinces.clone();
        let meetings = self
            .hub
            .store()
            .blocking(move |store: &Store| super::mirror::for_node(store, &provinces))
            .await
            .map_err(|e| ProtocolError::new(ErrorCode::Internal, e.to_string()))?;
        match meetings.iter().find(|m| m.id == meeting) {
            Some(m) if m.state == "in_progress" => {
                Ok(m.sites.iter().map(|s| s.code.clone()).collect())
            }
            Some(_) => Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "this meeting is not in progress",
            )),
            None => Err(ProtocolError::new(
                ErrorCode::Forbidden,
                "this meeting invites no site of this node's provinces",
            )),
        }
    }
}

/// A hub message to the relay of `meeting`.
pub fn down(meeting: i64, message: ServerMessage) -> NodeMessage {
    NodeMessage::RelayDown {
        meeting,
        message: Box::new(message),
    }
}

/// Whether a client message may come from a relay (a relay is not a chair nor a site).
pub fn allowed(message: &ClientMessage) -> bool {
    matches!(
        message,
        ClientMessage::Offer { .. } | ClientMessage::Answer { .. } | ClientMessage::Leave
    )
}
