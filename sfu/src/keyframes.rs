//! Keyframe requests toward a publisher: merged and throttled, so that many joiners and
//! layer switches cost its encoder one keyframe per interval.

use std::time::{Duration, Instant};

/// Merges and throttles keyframe requests toward one producer: at most one request per
/// interval reaches the publisher's encoder, and requests inside the interval are merged into
/// one sent when it ends.
#[derive(Debug, Default)]
pub(crate) struct KeyframeThrottle {
    last_sent: Option<Instant>,
    deferred: bool,
}

/// What to do with a keyframe request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KeyframeDecision {
    SendNow,
    /// Send at this instant (merged with any other request until then).
    SendAt(Instant),
    /// Already scheduled; nothing more to do.
    Merged,
}

impl KeyframeThrottle {
    pub fn request(&mut self, now: Instant, interval: Duration) -> KeyframeDecision {
        match self.last_sent {
            Some(last) if now < last + interval => {
                if self.deferred {
                    KeyframeDecision::Merged
                } else {
                    self.deferred = true;
                    KeyframeDecision::SendAt(last + interval)
                }
            }
            _ => {
                self.last_sent = Some(now);
                self.deferred = false;
                KeyframeDecision::SendNow
            }
        }
    }

    /// The deferred request is due: whether to send it now.
    pub fn fire_deferred(&mut self, now: Instant) -> bool {
        if !self.deferred {
            return false;
        }
        self.deferred = false;
        self.last_sent = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_merges_requests_inside_interval() {
        let start = Instant::now();
        let interval = Duration::from_millis(500);
        let mut t = KeyframeThrottle::default();
        assert_eq!(t.request(start, interval), KeyframeDecision::SendNow);
        let at = start + interval;
        assert_eq!(
            t.request(start + Duration::from_millis(10), interval),
            KeyframeDecision::SendAt(at)
        );
        assert_eq!(
            t.request(start + Duration::from_millis(20), interval),
            KeyframeDecision::Merged
        );
        assert!(t.fire_deferred(at));
        assert!(!t.fire_deferred(at));
        assert_eq!(
            t.request(at + interval, interval),
            KeyframeDecision::SendNow
        );
    }
}
