//! What a live meeting asks its driver to do: the outputs of [`super::LiveMeeting`], drained
//! with [`super::LiveMeeting::poll_output`] after every input, in the order they were made.

use diemcau_sfu::{ConsumerId, PeerId, ProducerId, ProducerInfo, RouterId};
use diemcau_signaling::ServerMessage;

use crate::attendance::{EventKind, Millis};

/// A standby page: a site's page open (device check...) but not joined, by the key of its
/// signalling session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PageKey(pub u64);

/// Who a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipient {
    Participant(PeerId),
    Page(PageKey),
}

/// One thing for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send a message on a participant's or page's signalling session.
    Send {
        to: Recipient,
        message: ServerMessage,
    },
    /// Send this last message, then close the session.
    Close {
        to: Recipient,
        message: ServerMessage,
    },
    /// Append this fact to the meeting's attendance log (in output order).
    Log { at: Millis, kind: EventKind },
    /// Change what the media plane forwards.
    Route(Route),
    /// Start, follow or stop the meeting's recording.
    Recording(super::RecordingOutput),
    /// The participant is out of the meeting: drop its peer from the media plane, if it has one,
    /// and forget its session. Always the last output about that participant.
    Removed(PeerId),
}

/// A change to the media plane. A consumer is one publisher's track forwarded to one
/// subscriber; its id is chosen here and kept, so later changes name it directly.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// Forward `producer` to `subscriber`, at most at simulcast layer `max_layer`; `pinned`:
    /// that layer only, whatever the subscriber's bandwidth.
    AddConsumer {
        subscriber: PeerId,
        consumer: ConsumerId,
        producer: ProducerInfo,
        max_layer: u8,
        pinned: bool,
    },
    SetMaxLayer {
        subscriber: PeerId,
        consumer: ConsumerId,
        max_layer: u8,
    },
    RemoveConsumer {
        subscriber: PeerId,
        consumer: ConsumerId,
    },
    /// Pause or resume a producer on every worker (the chair's mute).
    PauseProducer {
        router: RouterId,
        producer: ProducerId,
        paused: bool,
    },
    /// A producer is gone: every worker drops it and its consumers.
    RemoveProducer {
        router: RouterId,
        producer: ProducerId,
    },
}
