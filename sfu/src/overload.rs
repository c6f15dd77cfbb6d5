//! What a worker does when its core cannot keep up: it gives up video, a step at a time, so
//! that every site keeps the meeting's sound. A saturated loop reads its socket late, the
//! kernel drops whatever arrives meanwhile, audio and video alike, and sites hear gaps; each
//! step here takes away packets to send (a video layer is most of a site's packets), until
//! the loop has time to spare again.
//!
//! The driver measures how much of each period its loop was busy (not waiting for input), and
//! how much its thread ran, and hands both to [`crate::Worker::handle_load`]; [`Overload`]
//! turns that into a shed level, and [`Overload::allowance`] into what each peer may receive.
//! A pure state machine over plain values, tested with a virtual clock.
//!
//! The ladder, from level 0 (everything) up:
//!
//! | level | every peer receives                                        |
//! |-------|------------------------------------------------------------|
//! | 1     | simulcast layers up to the middle one                      |
//! | 2     | the lowest layer only                                      |
//! | 3     | the lowest layer; a quarter of the peers sound only        |
//! | 4     | the lowest layer; half of the peers sound only             |
//! | 5     | the lowest layer; three quarters of the peers sound only   |
//! | 6     | sound only                                                 |
//!
//! Levels 1 and 2 are taken while the loop is 90 % busy or more (over the last second), at
//! most every 1.5 s, and given back after ten seconds under 80 %; the levels above only while
//! it is saturated (98 %), at most every 4 s, and given back after ten seconds under 90 %, or
//! thirty under 95 %: a busy loop that keeps up costs the sites their best pictures, not their
//! pictures. Sound is never shed. A peer receiving a wall of pictures (a chair's console) is
//! among the last to lose its video.

use std::time::{Duration, Instant};

use crate::ids::PeerId;

/// The highest shed level: no video to anyone.
pub const MAX_LEVEL: u8 = 6;
/// Busy at least this share of the time: over capacity, time to lower the layers.
const OVER: f32 = 0.90;
/// Busy at least this share of the time: the loop has a backlog and will soon lose packets,
/// time to take pictures away. Much of a site's cost does not depend on its video (its
/// timers, feedback, sound), so a loop that is busy but keeps up is left its pictures: the
/// steps beyond the lowest layer take them only from a loop that cannot keep up.
const SATURATED: f32 = 0.98;
/// The last level reached at [`OVER`]; the levels above wait for [`SATURATED`].
const LAYERS_ONLY: u8 = 2;
/// Busy less than this share of the time: room, perhaps, for one step back up the layers (a
/// step back that overloads the core again makes the next wait longer). Pictures come back
/// as soon as the loop is under [`OVER`].
const UNDER: f32 = 0.80;
/// Busy less than this share of the time, with pictures taken away: the loop keeps up with
/// room to spare, and may carry a quarter of the pictures back. Much of a site's cost is not
/// its picture, so with enough sites the loop stays over [`OVER`] even on sound alone, and
/// the level a burst of joins left it on would otherwise hold for the whole meeting.
const ROOM: f32 = 0.95;
/// With room but not under [`OVER`], a step back waits this many times longer.
const ROOM_WAIT: u32 = 3;
/// Over (the mean of a second) for this long: one step up.
const STEP_UP_AFTER: Duration = Duration::from_millis(500);
/// Between two steps up, so that the last one shows in the load first (a layer switch waits
/// for the lower layer's keyframe).
const SETTLE: Duration = Duration::from_millis(1500);
/// Between two steps up that take pictures away.
const SETTLE_PICTURES: Duration = Duration::from_secs(4);
/// Under for this long: one step back, at first.
const STEP_DOWN_AFTER: Duration = Duration::from_secs(10);
/// A step back that overloaded the core again within this long doubles the wait before the
/// next one, up to [`LONGEST_WAIT`], so a load that sits between two steps does not flap.
const RELAPSE_WITHIN: Duration = Duration::from_secs(30);
const LONGEST_WAIT: Duration = Duration::from_secs(300);
/// The worker's own work must take at least this share of the period for it to count as
/// over capacity: a loop slowed by other processes on its core (a browser on a test
/// machine, a backup) is not helped by shedding its sites' video.
const OWN_WORK: f32 = 0.5;
/// Peers receiving at least this many pictures are shed last.
const WALL: usize = 4;

/// What the load allows one peer to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Allowance {
    /// Every layer its link carries.
    All,
    /// Simulcast layers up to this one.
    UpTo(u8),
    /// Sound only.
    AudioOnly,
}

/// The shed level and its clocks.
#[derive(Debug, Clone)]
pub(crate) struct Overload {
    level: u8,
    /// The last busy share counted (only the share its thread ran, when that was under
    /// [`OWN_WORK`]), for the worker's figures.
    busy: f32,
    /// The mean of the last two busy shares reported (a second): what the thresholds are
    /// compared with, so that one busy moment sheds nothing and one quieter moment does not
    /// hide an overload.
    mean: f32,
    over_since: Option<Instant>,
    under_since: Option<Instant>,
    /// Since when the loop has had [`ROOM`] at a level that takes pictures away.
    room_since: Option<Instant>,
    changed_at: Option<Instant>,
    /// When the level last went down, to spot a relapse.
    stepped_down_at: Option<Instant>,
    step_down_after: Duration,
}

impl Default for Overload {
    fn default() -> Overload {
        Overload {
            level: 0,
            busy: 0.0,
            mean: 0.0,
            over_since: None,
            under_since: None,
            room_since: None,
            changed_at: None,
            stepped_down_at: None,
            step_down_after: STEP_DOWN_AFTER,
        }
    }
}

impl Overload {
    pub fn level(&self) -> u8 {
        self.level
    }

    pub fn busy(&self) -> f32 {
        self.busy
    }

    /// The loop was busy `busy` (0 to 1) of the period that ended at `now`, its thread
    /// running `cpu` of it. Returns the new level when it changed. The thresholds apply to
    /// the mean of this period and the one before.
    pub fn update(&mut self, now: Instant, busy: f32, cpu: f32) -> Option<u8> {
        let busy = busy.clamp(0.0, 1.0);
        let busy = if cpu < OWN_WORK { busy.min(cpu) } else { busy };
        self.mean = (self.busy + busy) / 2.0;
        self.busy = busy;
        // Pictures go only from a saturated loop, slowly (a burst of joins saturates it for a
        // few seconds), and come back as soon as it keeps up again; layers come back once
        // it has room.
        let (over, settle, under) = if self.level < LAYERS_ONLY {
            (OVER, SETTLE, UNDER)
        } else {
            (SATURATED, SETTLE_PICTURES, OVER)
        };
        let settled = self
            .changed_at
            .is_none_or(|at| now.saturating_duration_since(at) >= settle);
        if self.mean >= over {
            self.under_since = None;
            let since = *self.over_since.get_or_insert(now);
            if self.level < MAX_LEVEL
                && settled
                && now.saturating_duration_since(since) >= STEP_UP_AFTER
            {
                if self
                    .stepped_down_at
                    .is_some_and(|at| now.saturating_duration_since(at) < RELAPSE_WITHIN)
                {
                    self.step_down_after = (self.step_down_after * 2).min(LONGEST_WAIT);
                }
                return Some(self.change(now, self.level + 1));
            }
        } else if self.level > 0 {
            self.over_since = None;
            let quiet_for = lasting(&mut self.under_since, self.mean < under, now);
            let room = self.level > LAYERS_ONLY && self.mean < ROOM;
            let room_for = lasting(&mut self.room_since, room, now);
            let due = quiet_for.is_some_and(|d| d >= self.step_down_after)
                || room_for
                    .is_some_and(|d| d >= (self.step_down_after * ROOM_WAIT).min(LONGEST_WAIT));
            if settled && due {
                self.stepped_down_at = Some(now);
                if self.level == 1 {
                    // Within capacity again: the next overload starts from the first wait.
                    self.step_down_after = STEP_DOWN_AFTER;
                }
                return Some(self.change(now, self.level - 1));
            }
        } else {
            self.over_since = None;
        }
        None
    }

    fn change(&mut self, now: Instant, level: u8) -> u8 {
        self.level = level;
        self.changed_at = Some(now);
        self.over_since = None;
        self.under_since = None;
        self.room_since = None;
        level
    }

    /// What peer `peer`, receiving `pictures` video tracks, may receive at this level.
    pub fn allowance(&self, peer: PeerId, pictures: usize) -> Allowance {
        match self.level {
            0 => Allowance::All,
            1 => Allowance::UpTo(1),
            2 => Allowance::UpTo(0),
            MAX_LEVEL.. => Allowance::AudioOnly,
            level => {
                // Level 3 takes a quarter of the peers to sound only, 4 half, 5 three quarters;
                // a wall's watcher is in the last quarter.
                let quarter = if pictures >= WALL { 3 } else { peer.0 % 4 };
                if quarter < u64::from(level - 2) {
                    Allowance::AudioOnly
                } else {
                    Allowance::UpTo(0)
                }
            }
        }
    }
}

/// How long a condition has held: since `since`, started now where it begins to hold and
/// cleared where it does not.
fn lasting(since: &mut Option<Instant>, holds: bool, now: Instant) -> Option<Duration> {
    if !holds {
        *since = None;
        return None;
    }
    Some(now.saturating_duration_since(*since.get_or_insert(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, s: f64) -> Instant {
        start + Duration::from_secs_f64(s)
    }

    /// Feeds `busy` every half second from `from` to `to` (seconds), returning the levels
    /// reached.
    fn feed(o: &mut Overload, start: Instant, from: f64, to: f64, busy: f32) -> Vec<u8> {
        let mut levels = Vec::new();
        let mut s = from;
        while s <= to {
            if let Some(level) = o.update(at(start, s), busy, busy) {
                levels.push(level);
            }
            s += 0.5;
        }
        levels
    }

    #[test]
    fn climbs_a_step_at_a_time_while_the_core_stays_busy() {
        let start = Instant::now();
        let mut o = Overload::default();
        assert!(
            feed(&mut o, start, 0.0, 0.5, 0.95).is_empty(),
            "not before a second"
        );
        assert_eq!(feed(&mut o, start, 1.0, 1.0, 0.95), vec![1]);
        // The next step waits for the last to settle, then for another second of overload.
        assert!(feed(&mut o, start, 1.5, 2.0, 0.95).is_empty());
        assert_eq!(feed(&mut o, start, 2.5, 3.5, 0.95), vec![2]);
        // Busy but keeping up: the pictures stay, on the lowest layer.
        assert!(feed(&mut o, start, 4.0, 30.0, 0.95).is_empty());
        // Saturated: they go, a quarter of the sites at a time, every four seconds.
        assert_eq!(feed(&mut o, start, 30.5, 31.5, 1.0), vec![3]);
        assert!(feed(&mut o, start, 32.0, 35.0, 1.0).is_empty());
        assert_eq!(feed(&mut o, start, 35.5, 60.0, 1.0), vec![4, 5, 6]);
        assert_eq!(o.level(), MAX_LEVEL);
        // Keeping up again (under 90 %): the pictures come back, a step per ten seconds.
        assert!(feed(&mut o, start, 60.5, 70.5, 0.85).is_empty());
        assert_eq!(feed(&mut o, start, 71.0, 71.0, 0.85), vec![5]);
    }

    #[test]
    fn a_busy_moment_sheds_nothing() {
        let start = Instant::now();
        let mut o = Overload::default();
        for s in 0..20 {
            let busy = if s % 2 == 0 { 0.95 } else { 0.5 };
            assert_eq!(o.update(at(start, f64::from(s) * 0.5), busy, busy), None);
        }
    }

    #[test]
    fn a_loop_slowed_by_others_sheds_nothing() {
        let start = Instant::now();
        let mut o = Overload::default();
        for s in 0..20 {
            // Never waiting, but running a fifth of the time: the core is someone else's.
            assert_eq!(o.update(at(start, f64::from(s) * 0.5), 1.0, 0.2), None);
        }
    }

    #[test]
    fn steps_back_after_ten_quiet_seconds_and_waits_longer_after_a_relapse() {
        let start = Instant::now();
        let mut o = Overload::default();
        assert_eq!(feed(&mut o, start, 0.0, 1.0, 0.95), vec![1]);
        // Between the thresholds: hold.
        assert!(feed(&mut o, start, 1.5, 30.0, 0.87).is_empty());
        assert_eq!(
            feed(&mut o, start, 30.5, 40.0, 0.4),
            vec![],
            "ten seconds not yet over"
        );
        assert_eq!(feed(&mut o, start, 40.5, 40.5, 0.4), vec![0]);
        // Back on the level below, the core is overloaded again at once: a relapse.
        assert_eq!(feed(&mut o, start, 41.0, 42.5, 0.95), vec![1]);
        // Now twenty quiet seconds are needed.
        assert!(feed(&mut o, start, 43.0, 62.5, 0.4).is_empty());
        assert_eq!(feed(&mut o, start, 63.0, 63.0, 0.4), vec![0]);
    }

    #[test]
    fn a_loop_that_keeps_up_on_sound_alone_tries_the_pictures_back() {
        let start = Instant::now();
        let mut o = Overload::default();
        // A burst of joins saturates the loop, and it ends on sound only.
        assert_eq!(feed(&mut o, start, 0.0, 3.5, 0.95), vec![1, 2]);
        assert_eq!(feed(&mut o, start, 4.0, 25.0, 1.0), vec![3, 4, 5, 6]);
        // The joins over, sound alone keeps the loop 92 % busy: over 90 %, but with room.
        assert!(
            feed(&mut o, start, 25.5, 55.5, 0.92).is_empty(),
            "thirty seconds not yet over"
        );
        assert_eq!(feed(&mut o, start, 56.0, 56.0, 0.92), vec![5]);
        // A quarter of the pictures back saturates it again: they go, and the next try
        // waits twice as long.
        assert_eq!(feed(&mut o, start, 56.5, 60.5, 1.0), vec![6]);
        assert!(feed(&mut o, start, 61.0, 121.0, 0.92).is_empty());
        assert_eq!(feed(&mut o, start, 121.5, 121.5, 0.92), vec![5]);
        // Busy with a quarter of the pictures and keeping up, at 96 %: they stay.
        assert!(feed(&mut o, start, 122.0, 400.0, 0.96).is_empty());
        assert_eq!(o.level(), 5);
        // The lowest layers are not retried this way: at level 2, 92 % holds.
        let mut o = Overload::default();
        assert_eq!(feed(&mut o, start, 0.0, 3.5, 0.95), vec![1, 2]);
        assert!(feed(&mut o, start, 4.0, 400.0, 0.92).is_empty());
    }

    #[test]
    fn sheds_video_by_quarters_and_the_wall_last() {
        let mut o = Overload::default();
        let peers: Vec<PeerId> = (0..8).map(PeerId).collect();
        let audio_only = |o: &Overload| {
            peers
                .iter()
                .filter(|p| o.allowance(**p, 1) == Allowance::AudioOnly)
                .count()
        };
        assert_eq!(o.allowance(PeerId(1), 1), Allowance::All);
        o.level = 1;
        assert_eq!(o.allowance(PeerId(1), 1), Allowance::UpTo(1));
        o.level = 2;
        assert_eq!(o.allowance(PeerId(1), 1), Allowance::UpTo(0));
        let shed: Vec<usize> = (3..=MAX_LEVEL)
            .map(|level| {
                o.level = level;
                audio_only(&o)
            })
            .collect();
        assert_eq!(shed, vec![2, 4, 6, 8]);
        // The chair's wall (peer 0 would go first) keeps its pictures until the last step.
        o.level = 5;
        assert_eq!(o.allowance(PeerId(0), 60), Allowance::UpTo(0));
        o.level = MAX_LEVEL;
        assert_eq!(o.allowance(PeerId(0), 60), Allowance::AudioOnly);
    }
}
