//! Media events of a live meeting, and the routes they change: every route is the difference
//! between what [`LiveMeeting::route`] decides and the consumers that exist.

use diemcau_sfu::str0m::media::MediaKind;
use diemcau_sfu::{ConsumerId, PeerId, ProducerInfo, Quality};
use diemcau_signaling::ServerMessage;
use diemcau_signaling::protocol::MediaState;

use super::{Consumer, LiveMeeting, Output, Route};
use crate::attendance::{EventKind, Millis, Reception};

impl LiveMeeting {
    /// The participant's media connection now lives on a worker: it receives what it should.
    pub fn attached(&mut self, id: PeerId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        p.attached = true;
        self.reconcile_subscriber(id);
    }

    /// A participant publishes a track.
    pub fn producer_added(&mut self, producer: ProducerInfo) {
        let Some(p) = self.participants.get_mut(&producer.peer) else {
            // Left meanwhile: its worker drops the producer with the peer.
            return;
        };
        p.producers.push(producer.clone());
        if producer.kind == MediaKind::Audio && self.muted.contains(&producer.peer) {
            self.outputs.push_back(Output::Route(Route::PauseProducer {
                router: producer.router,
                producer: producer.id,
                paused: true,
            }));
        }
        let subscribers: Vec<PeerId> = self.participants.keys().copied().collect();
        for subscriber in subscribers {
            self.reconcile(subscriber, &producer);
        }
        if self.encoder == Some(producer.peer) {
            self.encoder_changed();
        }
    }

    /// The encoder started or stopped publishing, or the chair switched the programme: the
    /// sites receive the encoder or the chair's camera, and the chair is told.
    pub(super) fn encoder_changed(&mut self) {
        if let Some(studio) = self.studio {
            self.reconcile_publisher(studio);
            self.send(studio, self.programme_message());
        }
        if let Some(encoder) = self.encoder {
            self.reconcile_publisher(encoder);
        }
        self.reconcile_viewers();
    }

    /// A participant's media connection is up.
    pub fn peer_connected(&mut self, now: Millis, id: PeerId) {
        if !self.participants.contains_key(&id) {
            return;
        }
        self.send(
            id,
            ServerMessage::MediaState {
                state: MediaState::Connected,
            },
        );
        self.log_reception(now, id, Reception::Video);
        if let Some(status) = self.status_of(id) {
            status.connected = true;
        }
    }

    /// A participant's media connection closed (its worker dropped the peer, its tracks and
    /// what it received); it stays in the meeting and may offer again.
    pub fn peer_closed(&mut self, now: Millis, id: PeerId) {
        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        p.attached = false;
        let producers = std::mem::take(&mut p.producers);
        self.consumers
            .retain(|(subscriber, _, _), _| *subscriber != id);
        self.send(
            id,
            ServerMessage::MediaState {
                state: MediaState::Disconnected,
            },
        );
        self.log_reception(now, id, Reception::Nothing);
        if let Some(status) = self.status_of(id) {
            status.connected = false;
        }
        self.drop_producers(&producers);
        if self.encoder == Some(id) {
            self.encoder_changed();
        }
    }

    /// What a participant's link carries changed (video, or audio only on a weak link or,
    /// `shed`, while the hub is over its capacity). The participant is told each change; the
    /// attendance log records what it receives, not why, so a change of cause alone (a weak
    /// link's audio only becoming the hub's) is not logged again.
    pub fn reception_changed(&mut self, now: Millis, id: PeerId, audio_only: bool, shed: bool) {
        if !self.participants.contains_key(&id) {
            return;
        }
        let changed = self
            .status_of(id)
            .is_none_or(|status| status.audio_only != audio_only);
        self.send(
            id,
            ServerMessage::Reception {
                audio_only,
                hub_load: shed,
            },
        );
        if !changed {
            return;
        }
        let reception = if audio_only {
            Reception::AudioOnly
        } else {
            Reception::Video
        };
        self.log_reception(now, id, reception);
        if let Some(status) = self.status_of(id) {
            status.audio_only = audio_only;
        }
    }

    /// A periodic sample of a participant's link; a site's goes to the log and the console.
    pub fn quality_sampled(&mut self, now: Millis, id: PeerId, quality: Quality) {
        if let Some(p) = self.participants.get(&id)
            && p.info.role == diemcau_signaling::Role::Node
        {
            self.node_quality.insert(p.info.name.clone(), quality);
            return;
        }
        let Some((site, session)) = self.site_session(id) else {
            return;
        };
        self.log(
            now,
            EventKind::QualitySample {
                site: site.to_string(),
                session: session.0,
                bitrate_in_kbps: quality.bitrate_in_kbps,
                bitrate_out_kbps: quality.bitrate_out_kbps,
                loss_permille: quality.loss_permille,
                rtt_ms: quality.rtt_ms,
                transport: quality.transport.map(super::console::media_transport),
            },
        );
        if let Some(status) = self.status_of(id) {
            status.quality = quality;
        }
    }

    /// A participant's media found its path (UDP, or TCP where its network allows only that):
    /// shown on the console at once; the log has it with each quality sample.
    pub fn transport_chosen(&mut self, id: PeerId, transport: diemcau_sfu::Transport) {
        if let Some(status) = self.status_of(id) {
            status.quality.transport = Some(transport);
        }
    }

    /// Brings what `subscriber` receives in line with the rules: the consumers it no longer
    /// wants go first, so that a viewer's one picture is free for the one it now wants.
    pub(super) fn reconcile_subscriber(&mut self, subscriber: PeerId) {
        let mut producers: Vec<ProducerInfo> = self
            .participants
            .values()
            .flat_map(|p| p.producers.iter().cloned())
            .collect();
        producers.sort_by_key(|p| self.route_track(subscriber, p).is_some());
        for producer in &producers {
            self.reconcile(subscriber, producer);
        }
    }

    /// The floor moved: each viewer's one picture and sound follow it.
    pub(super) fn reconcile_viewers(&mut self) {
        let viewers: Vec<PeerId> = self
            .participants
            .iter()
            .filter(|(_, p)| p.info.role == diemcau_signaling::Role::Viewer)
            .map(|(id, _)| *id)
            .collect();
        for viewer in viewers {
            self.reconcile_subscriber(viewer);
        }
    }

    /// Brings who receives `publisher`'s tracks in line with the rules.
    pub(super) fn reconcile_publisher(&mut self, publisher: PeerId) {
        let Some(p) = self.participants.get(&publisher) else {
            return;
        };
        let producers = p.producers.clone();
        let subscribers: Vec<PeerId> = self.participants.keys().copied().collect();
        for producer in &producers {
            for subscriber in &subscribers {
                self.reconcile(*subscriber, producer);
            }
        }
    }

    /// Every consumer of `producer` goes (its tracks are to be announced under another name).
    pub(super) fn drop_consumers_of(&mut self, producer: &ProducerInfo) {
        let gone: Vec<(PeerId, ConsumerId)> = self
            .consumers
            .iter()
            .filter(|((_, p, _), _)| *p == producer.id)
            .map(|((subscriber, _, _), consumer)| (*subscriber, consumer.id))
            .collect();
        self.consumers.retain(|(_, p, _), _| *p != producer.id);
        for (subscriber, consumer) in gone {
            self.outputs.push_back(Output::Route(Route::RemoveConsumer {
                subscriber,
                consumer,
            }));
        }
    }

    /// Adds, caps or removes the consumers of `producer` at `subscriber` so that they match
    /// [`LiveMeeting::wanted_consumers`]. A subscriber without a media connection has no
    /// consumers: it gets them when it is attached.
    pub(super) fn reconcile(&mut self, subscriber: PeerId, producer: &ProducerInfo) {
        let attached = self
            .participants
            .get(&subscriber)
            .is_some_and(|p| p.attached);
        let wanted = if attached {
            self.wanted_consumers(subscriber, producer)
        } else {
            Vec::new()
        };
        let existing: Vec<Option<u8>> = self
            .consumers
            .keys()
            .filter(|(s, p, _)| *s == subscriber && *p == producer.id)
            .map(|(_, _, pinned)| *pinned)
            .collect();
        for pinned in existing {
            if !wanted.iter().any(|(w, _)| *w == pinned)
                && let Some(gone) = self.consumers.remove(&(subscriber, producer.id, pinned))
            {
                self.outputs.push_back(Output::Route(Route::RemoveConsumer {
                    subscriber,
                    consumer: gone.id,
                }));
            }
        }
        for (pinned, max_layer) in wanted {
            let key = (subscriber, producer.id, pinned);
            let route = match self.consumers.get(&key).copied() {
                None => {
                    let consumer = ConsumerId(self.ids.next());
                    self.consumers.insert(
                        key,
                        Consumer {
                            id: consumer,
                            max_layer,
                        },
                    );
                    Route::AddConsumer {
                        subscriber,
                        consumer,
                        producer: self.labelled(producer),
                        max_layer,
                        pinned: pinned.is_some(),
                    }
                }
                Some(existing) if existing.max_layer != max_layer => {
                    self.consumers.insert(
                        key,
                        Consumer {
                            id: existing.id,
                            max_layer,
                        },
                    );
                    Route::SetMaxLayer {
                        subscriber,
                        consumer: existing.id,
                        max_layer,
                    }
                }
                Some(_) => continue,
            };
            self.outputs.push_back(Output::Route(route));
        }
    }

    fn log_reception(&mut self, now: Millis, id: PeerId, media: Reception) {
        let Some((site, session)) = self.site_session(id) else {
            return;
        };
        self.log(
            now,
            EventKind::MediaChanged {
                site: site.to_string(),
                session: session.0,
                media,
            },
        );
    }

    /// The site a participant is and its session, for a site.
    fn site_session(
        &self,
        id: PeerId,
    ) -> Option<(diemcau_signaling::SiteCode, diemcau_signaling::SessionId)> {
        let p = self.participants.get(&id)?;
        Some((p.site.clone()?, p.session.clone()))
    }

    fn status_of(&mut self, id: PeerId) -> Option<&mut super::SiteStatus> {
        let site = self.site_of(id)?.clone();
        self.sites.get_mut(&site)
    }
}
