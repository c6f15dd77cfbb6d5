//! Arrival times from the kernel's receive timestamps (`--arrival kernel`).
//!
//! A datagram's arrival time feeds the transport-wide congestion control feedback a site
//! sends in header-only reception (the hub's delay-based estimate of its link is built from
//! it) and the site's delay figures. Stamped when the engine's thread, which plays hundreds
//! of sites, gets to the datagram, it carries that thread's own queue: a burst of work delays
//! every datagram behind it, and the hub reads the delay as a congested link, where a
//! browser, whose network thread reads its socket at once, would not. The kernel stamps each
//! datagram as it arrives (`SO_TIMESTAMPNS`, which quinn-udp turns on and hands back as a
//! Unix-epoch `Duration`); [`ArrivalClock`] turns that stamp into the [`Instant`] the
//! sessions run on.
//!
//! Sans-IO: the caller reads both clocks once per batch of datagrams and hands them in.

use std::time::{Duration, Instant};

/// A stamp further back than this is not believed: the wall clock was stepped (an NTP
/// correction, an operator) between the kernel's stamp and the caller's reading, and the
/// datagram counts as arriving when it is read.
const MAX_AGE: Duration = Duration::from_secs(2);

/// Turns the kernel's receive stamps of one socket into arrival [`Instant`]s: never later than
/// the reading it is converted with and never earlier than the arrival before it, so that a
/// session's receive times do not go backwards.
#[derive(Debug, Default, Clone)]
pub struct ArrivalClock {
    last: Option<Instant>,
}

impl ArrivalClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// The arrival of a datagram the kernel stamped `stamp` (since the Unix epoch), read with
    /// the monotonic clock at `now` and the wall clock at `unix_now` (both read together, after
    /// the datagram was). Without a stamp, or with one that cannot be believed, the datagram
    /// arrived at `now`.
    pub fn arrival(
        &mut self,
        now: Instant,
        unix_now: Duration,
        stamp: Option<Duration>,
    ) -> Instant {
        let age = stamp
            .map(|stamp| unix_now.saturating_sub(stamp))
            .filter(|age| *age <= MAX_AGE)
            .unwrap_or_default();
        let mut arrival = now.checked_sub(age).unwrap_or(now);
        if let Some(last) = self.last
            && arrival < last
        {
            arrival = last.min(now);
        }
        self.last = Some(arrival);
        arrival
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_stamp_is_moved_onto_the_monotonic_clock() {
        let (now, unix_now) = (Instant::now(), Duration::from_secs(1_800_000_000));
        let mut clock = ArrivalClock::new();
        assert_eq!(
            clock.arrival(now, unix_now, Some(unix_now - 7 * MS)),
            now - 7 * MS
        );
        assert_eq!(
            clock.arrival(now, unix_now, Some(unix_now - 3 * MS)),
            now - 3 * MS
        );
        // Read later: the same kind of age from a later reading.
        let later = now + 10 * MS;
        assert_eq!(
            clock.arrival(later, unix_now + 10 * MS, Some(unix_now + 9 * MS)),
            later - MS
        );
    }

    #[test]
    fn no_stamp_or_an_unbelievable_one_arrives_when_read() {
        let (now, unix_now) = (Instant::now(), Duration::from_secs(1_800_000_000));
        let mut clock = ArrivalClock::new();
        assert_eq!(clock.arrival(now, unix_now, None), now);
        let later = now + MS;
        // The wall clock was stepped back after the stamp: the stamp is in the future.
        assert_eq!(
            clock.arrival(later, unix_now, Some(unix_now + Duration::from_secs(30))),
            later
        );
        // Or forward: the stamp looks minutes old.
        let later = later + MS;
        assert_eq!(
            clock.arrival(later, unix_now, Some(unix_now - Duration::from_secs(300))),
            later
        );
    }

    #[test]
    fn arrivals_never_go_backwards() {
        let (now, unix_now) = (Instant::now(), Duration::from_secs(1_800_000_000));
        let mut clock = ArrivalClock::new();
        let first = clock.arrival(now, unix_now, Some(unix_now - 2 * MS));
        // A stamp older than the one before (the clocks read a little apart) arrives with it.
        let second = clock.arrival(now + MS, unix_now + 4 * MS, Some(unix_now - MS));
        assert_eq!(first, now - 2 * MS);
        assert_eq!(second, first);
    }
}
