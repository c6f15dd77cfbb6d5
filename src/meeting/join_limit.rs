//! How often one site's join code may be used: a leaked link passed around, or a script
//! joining and leaving in a loop, must not push the real site out again and again nor fill the
//! log. A site joined with its code is replaced at most once every few seconds, and a code
//! tried more than a few dozen times a minute is refused until the flood stops; the chair's
//! console then shows the code as suspected leaked, so it can be reissued.

use std::collections::VecDeque;

use crate::attendance::Millis;

/// The window over which join attempts are counted.
const WINDOW: Millis = 60_000;
/// Join attempts of one code within [`WINDOW`] above which it is flooded.
const MAX_ATTEMPTS: usize = 20;
/// A joined site is replaced by a new session at most this often.
const REPLACE_AFTER: Millis = 5_000;

/// Join attempts of one site's code. States: quiet → flooded (every attempt refused; the leak
/// is suspected) → quiet again once the window empties; the suspicion stays until the code is
/// reissued ([`JoinLimit::reset`]).
#[derive(Debug, Default, Clone)]
pub(super) struct JoinLimit {
    attempts: VecDeque<Millis>,
    last_join: Option<Millis>,
    leak_suspected: bool,
}

/// Why a join attempt of a site's code is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Too many attempts of this code within the window.
    Flooded,
    /// The site joined moments ago; it is not replaced again yet.
    TooSoon,
}

impl JoinLimit {
    /// Counts a join attempt at `now`; `replaces` when a session of the site is joined now.
    pub(super) fn attempt(&mut self, now: Millis, replaces: bool) -> Result<(), Refusal> {
        while self.attempts.front().is_some_and(|at| now - at >= WINDOW) {
            self.attempts.pop_front();
        }
        self.attempts.push_back(now);
        if self.attempts.len() > MAX_ATTEMPTS {
            self.leak_suspected = true;
            return Err(Refusal::Flooded);
        }
        if replaces && self.last_join.is_some_and(|at| now - at < REPLACE_AFTER) {
            return Err(Refusal::TooSoon);
        }
        Ok(())
    }

    /// An attempt was let in.
    pub(super) fn joined(&mut self, now: Millis) {
        self.last_join = Some(now);
    }

    pub(super) fn leak_suspected(&self) -> bool {
        self.leak_suspected
    }

    /// The code was reissued: a new code, a clean slate.
    pub(super) fn reset(&mut self) {
        *self = JoinLimit::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_joined_site_is_replaced_at_most_every_few_seconds() {
        let mut limit = JoinLimit::default();
        assert_eq!(limit.attempt(0, false), Ok(()));
        limit.joined(0);
        assert_eq!(limit.attempt(1_000, true), Err(Refusal::TooSoon));
        assert_eq!(
            limit.attempt(1_000, false),
            Ok(()),
            "rejoining after a leave is fine"
        );
        assert_eq!(limit.attempt(REPLACE_AFTER, true), Ok(()));
    }

    #[test]
    fn a_flood_is_refused_until_it_stops_and_the_leak_stays_suspected() {
        let mut limit = JoinLimit::default();
        for i in 0..MAX_ATTEMPTS as Millis {
            assert_eq!(limit.attempt(i * 100, false), Ok(()));
        }
        assert_eq!(limit.attempt(2_500, false), Err(Refusal::Flooded));
        assert!(limit.leak_suspected());
        assert_eq!(
            limit.attempt(2_000 + WINDOW, false),
            Ok(()),
            "the window emptied"
        );
        assert!(limit.leak_suspected(), "until the code is reissued");
        limit.reset();
        assert!(!limit.leak_suspected());
    }
}
