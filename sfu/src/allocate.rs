//! The bandwidth allocator: which simulcast layer each video consumer of one peer gets from
//! that peer's bandwidth estimate, and the bitrate str0m should probe toward so the estimate
//! can grow. A pure function over plain values (the estimate, each layer's bitrate, each
//! consumer's state, `now`), so its hysteresis is tested without a connection.

use std::time::{Duration, Instant};

use crate::overload::Allowance;
use crate::router::Sending;

/// A video consumer's layer choice and its hysteresis clocks. States: on a layer (`target`
/// is `Some`, possibly waiting to go up or down) → audio only (`target` is `None`) → on a
/// layer again once the link carries the lowest one with a margin, or on trial once it has
/// waited [`LayerState::trial_wait`] and the estimate is close enough to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LayerState {
    /// The layer the link carries; `None`: audio only.
    pub target: Option<u8>,
    /// Since when the target has not fitted the budget.
    pub over_since: Option<Instant>,
    /// Since when the next layer up (or, audio only, the lowest) has fitted with its margin.
    pub under_since: Option<Instant>,
    /// When the consumer opened: no fall to audio only while the estimate is still young.
    pub opened_at: Option<Instant>,
    /// When it last fell to audio only; `None` while it has not, or when the worker's load
    /// took its video.
    pub audio_only_since: Option<Instant>,
    /// When it last came back from audio only.
    pub returned_at: Option<Instant>,
    /// How long it waits on audio only before trying the lowest layer on a link whose
    /// estimate stays short of the way back: [`TRIAL_FIRST`], doubled after each return
    /// that did not hold, up to [`TRIAL_MAX`].
    pub trial_wait: Duration,
}

impl Default for LayerState {
    /// A new consumer starts on the lowest layer.
    fn default() -> LayerState {
        LayerState {
            target: Some(0),
            over_since: None,
            under_since: None,
            opened_at: None,
            audio_only_since: None,
            returned_at: None,
            trial_wait: TRIAL_FIRST,
        }
    }
}

impl LayerState {
    /// The state once `target` is chosen at `now`: its clocks start again, and a fall to
    /// audio only sets the wait before the next trial.
    fn moved_to(self, now: Instant, target: Option<u8>) -> LayerState {
        let mut next = LayerState {
            target,
            over_since: None,
            under_since: None,
            ..self
        };
        match (self.target, target) {
            (Some(_), None) => {
                let held = self
                    .returned_at
                    .is_none_or(|at| now.saturating_duration_since(at) >= TRIAL_HOLD);
                next.trial_wait = if held {
                    TRIAL_FIRST
                } else {
                    (self.trial_wait * 2).min(TRIAL_MAX)
                };
                next.audio_only_since = Some(now);
            }
            (None, Some(_)) => next.returned_at = Some(now),
            _ => {}
        }
        next
    }

    /// Whether a consumer on audio only has waited long enough to try the lowest layer.
    fn may_try(&self, now: Instant) -> bool {
        self.audio_only_since
            .is_some_and(|since| now.saturating_duration_since(since) >= self.trial_wait)
    }
}

/// One open video consumer, as the allocator sees it.
#[derive(Debug, Clone)]
pub(crate) struct VideoConsumer {
    /// Highest layer it may take.
    pub max_layer: u8,
    /// Measured bitrate (bits per second) of its producer's layers, lowest first; a missing
    /// or zero entry is a layer that sends nothing.
    pub rates: Vec<u64>,
    pub state: LayerState,
}

/// The peer's link, as the allocator sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Link {
    /// The bandwidth estimate toward the peer, bits per second.
    pub estimate: u64,
    /// When its connection came up; `None` while it has not.
    pub connected_at: Option<Instant>,
    /// What is set aside first for the audio tracks it receives, bits per second: each track's
    /// [`audio_set_aside`].
    pub audio_bps: u64,
    /// Video it receives whatever its bandwidth (a relaying hub's tracks of one layer each),
    /// bits per second: set aside like audio, and part of what the probe asks for.
    pub pinned_bps: u64,
    /// What the worker's load lets the peer receive ([`crate::overload`]).
    pub allowance: Allowance,
    /// The estimate is still climbing ([`EstimateTrend::rising`]): a shortfall is its ramp,
    /// not the link's, so no consumer falls to audio only for it.
    pub rising: bool,
}

impl Link {
    /// What is set aside before any layer is chosen: its audio and its pinned video.
    fn set_aside(&self) -> u64 {
        self.audio_bps + self.pinned_bps
    }
}

/// What the allocator decided for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Allocation {
    /// The new state of each consumer, in the order given.
    pub states: Vec<LayerState>,
    /// The link carries none of the video the peer should receive.
    pub audio_only: bool,
    /// It is the worker's load, not the link, that leaves the peer without video.
    pub shed: bool,
    /// The bitrates to hand str0m's estimator, `None` when it must not probe yet.
    pub probe: Option<Probe>,
}

/// Bitrates for str0m's estimator (`Bwe::set_bitrate`), bits per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Probe {
    /// The rate the pacer sustains with padding where media sends less. Zero: no padding at
    /// all, not even str0m's automatic 50 kbit/s (the worker's load, not the link, holds the
    /// peer at what it receives; see [`Probe::pads`]).
    pub current: u64,
    pub desired: u64,
}

impl Probe {
    /// Whether str0m may pad this peer's link up to its automatic target: not where the
    /// allocation asks for no padding at all. A site shed to its sound by the load would
    /// otherwise be padded to 50 kbit/s, and its pacer woken for it, on the very core whose
    /// time is short.
    pub fn pads(&self) -> bool {
        self.current > 0
    }
}

/// Bandwidth set aside per audio track when choosing video layers, at most: a speaking
/// site's Opus with its headers (about 59 kbit/s at 32 kbit/s of payload) fits.
pub(crate) const AUDIO_BUDGET_BPS: u64 = 64_000;
/// Bandwidth set aside for an audio track that sends nothing (muted by the chair, or not
/// started): room for its first words until the next allocation sees them.
pub(crate) const SILENT_AUDIO_BPS: u64 = 8_000;

/// What to set aside for one audio track, from what its producer sends: what it measures on
/// the wire with a quarter to spare, between [`SILENT_AUDIO_BPS`] and [`AUDIO_BUDGET_BPS`];
/// the most while a track that speaks again is not measured yet. A chair watching 190 sites,
/// most of them muted, so keeps for their pictures what a fixed budget per track set aside
/// for sound that does not come (12 Mbit/s at 64 kbit/s a track).
pub(crate) fn audio_set_aside(sending: Sending) -> u64 {
    match sending {
        Sending::Nothing => SILENT_AUDIO_BPS,
        Sending::Unmeasured => AUDIO_BUDGET_BPS,
        Sending::Bps(bps) => (bps * 5 / 4).clamp(SILENT_AUDIO_BPS, AUDIO_BUDGET_BPS),
    }
}

/// Which way a peer's bandwidth estimate has been going: when it last grew and when it
/// last fell, from the estimates str0m reports (it averages them over 3 s and reports a new
/// one when that moves by 5 %).
///
/// A chair watching 100 sites needs about 21 Mbit/s, and its estimate climbs from the 3 Mbit/s
/// it starts at in steps of 5 % every few hundred milliseconds, faster once a probe proves
/// the link. When the climb took longer than the [`STARTUP_GRACE`] and the
/// [`AUDIO_ONLY_AFTER`] after it, a quarter of the chair's pictures went dark a few hundred
/// milliseconds before the estimate passed what they need, and came back seconds later. A
/// link that is short falls, or stops growing; one that is still ramping up does neither.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EstimateTrend {
    rose_at: Option<Instant>,
    fell_at: Option<Instant>,
}

impl EstimateTrend {
    /// Notes a new estimate at `now`, `previous` the one before it.
    pub fn record(&mut self, now: Instant, previous: Option<u64>, estimate: u64) {
        match previous {
            Some(p) if estimate > p => self.rose_at = Some(now),
            Some(p) if estimate < p => self.fell_at = Some(now),
            _ => {}
        }
    }

    /// Whether the estimate is still climbing at `now`: it grew within the last
    /// [`RISING_WITHIN`] and has not fallen for [`AUDIO_ONLY_AFTER`].
    pub fn rising(&self, now: Instant) -> bool {
        let within = |at: Instant, window| now.saturating_duration_since(at) < window;
        self.rose_at.is_some_and(|at| within(at, RISING_WITHIN))
            && self.fell_at.is_none_or(|at| !within(at, AUDIO_ONLY_AFTER))
    }
}

/// An estimate that grew this recently is still climbing, when it has not fallen either
/// ([`EstimateTrend::rising`]): str0m reports a new one on each 5 % change, so a climb of
/// 2.5 % a second or more counts.
const RISING_WITHIN: Duration = Duration::from_secs(2);
const DOWNGRADE_AFTER: Duration = Duration::from_secs(1);
/// Below the lowest layer for this long, the consumer falls to audio only.
const AUDIO_ONLY_AFTER: Duration = Duration::from_secs(3);
/// A new consumer's estimate, or that of one just back from audio only, is still ramping up
/// with its video: no audio-only fall before this.
const STARTUP_GRACE: Duration = Duration::from_secs(8);
const UPGRADE_AFTER: Duration = Duration::from_secs(3);
/// Back from audio only once the estimate carries the lowest layer with this margin
/// (numerator, denominator): above the 1× that keeps a layer, so the state does not flap.
const COME_BACK_MARGIN: (u64, u64) = (11, 10);
/// A site on audio only receives its sound and the hub's padding, and str0m's estimate of
/// such a link settles about 15 % under what the same link gave with video flowing (on a
/// 235 kbit/s link: 196–206 kbit/s on audio only, 228–292 with the lowest layer). A link that
/// carries the lowest layer may then never show the margin above. So a consumer that has
/// waited its trial wait on audio only, and whose estimate is at least 5/6 of what the lowest
/// layer and the sound need ([`TRIAL_SHORTFALL`]), gets the lowest layer on trial: video is
/// the best probe of a link. A return that falls again within [`TRIAL_HOLD`] doubles the wait.
const TRIAL_FIRST: Duration = Duration::from_secs(10);
const TRIAL_MAX: Duration = Duration::from_secs(120);
const TRIAL_HOLD: Duration = Duration::from_secs(30);
/// A trial needs the lowest layer to fit within the estimate and a 1/this share of it more.
const TRIAL_SHORTFALL: u64 = 5;
/// str0m probes as soon as it is first given a desired bitrate. Probes sent in a connection's
/// first few hundred milliseconds, before the site's video has started, measured tens of
/// kbit/s and str0m adopts a probe's result outright: every new site's estimate fell from
/// 3 Mbit/s to about 300 kbit/s and took 3–4 s to climb back, while the pacer held its video
/// back (seconds of delay, and queues that keep their memory). So a connection is given its
/// desired bitrate, and probes, only after this long; until then the estimate comes from its
/// media alone, starting at the configured initial bitrate.
const PROBE_AFTER: Duration = Duration::from_secs(1);

/// Chooses each video consumer's layer: down when the layer has not fitted for a second, up
/// one layer when the next has fitted with a quarter to spare for three seconds, and no video
/// at all (audio only) below the lowest layer for three seconds once the consumer is eight
/// seconds old; back from audio only when the lowest layer has fitted with a margin for three
/// seconds, or on trial (see [`TRIAL_FIRST`]). Consumers are served in the order given, each
/// from what the ones before left.
/// The probe asks for what it would take to receive everything, and at least for what the
/// next step up needs, so the estimate can grow toward it.
///
/// The worker's load ([`Link::allowance`]) lowers each consumer's highest layer at once, or
/// takes all its video at once; video it allows again comes back by the same climb as
/// above. A peer left without video by the load is not probed for it, and a peer the load
/// holds at its layer is not padded up to that layer's nominal rate: under load the CPU,
/// not the link, is short.
pub(crate) fn allocate(now: Instant, link: Link, consumers: &[VideoConsumer]) -> Allocation {
    if link.allowance == Allowance::AudioOnly && !consumers.is_empty() {
        return shed_all(link, consumers);
    }
    let audio = link.set_aside();
    let mut budget = (link.estimate * 9 / 10).saturating_sub(audio);
    // The lowest layer may use the whole estimate: below it there is only audio, and on a
    // weak link the estimate already reads well under the link's capacity. The consumers
    // share this slack, as they share the budget: each lowest layer takes what the budget
    // lacks from it. (Given to each in full, it once kept all 200 pictures of a chair's
    // wall on with an estimate for half of them, the pacer seconds behind.)
    let mut slack = link.estimate / 10;
    // What a trial may lack beyond that (see `TRIAL_SHORTFALL`), shared the same way.
    let mut trial_room = link.estimate / TRIAL_SHORTFALL;
    let (mut allocated, mut desired) = (audio, audio);
    let mut receiving_video = false;
    // The extra rate the next layer up would need: padded toward so the estimate can grow.
    let mut next_step = 0;
    let mut states = Vec::with_capacity(consumers.len());
    for consumer in consumers {
        let rate = |layer: u8| consumer.rates.get(usize::from(layer)).copied().unwrap_or(0);
        let max_layer = match link.allowance {
            Allowance::UpTo(cap) => consumer.max_layer.min(cap),
            _ => consumer.max_layer,
        };
        let top = (0..=max_layer).rev().find(|l| rate(*l) > 0).unwrap_or(0);
        let mut state = consumer.state;
        let target = match state.target {
            Some(t) if t > max_layer => Some(max_layer),
            Some(t) => {
                let limit = if t == 0 { budget + slack } else { budget };
                if rate(t) > limit {
                    state.under_since = None;
                    let over = now.saturating_duration_since(*state.over_since.get_or_insert(now));
                    // A consumer opened without an answer (a fixed peer's) counts from now.
                    let opened = *state.opened_at.get_or_insert(now);
                    let settled = [Some(opened), state.returned_at]
                        .into_iter()
                        .flatten()
                        .all(|at| now.saturating_duration_since(at) >= STARTUP_GRACE);
                    if over >= DOWNGRADE_AFTER && t > 0 {
                        let lower = (0..t).rev().find(|l| rate(*l) <= budget && rate(*l) > 0);
                        Some(lower.unwrap_or(0))
                    } else if over >= AUDIO_ONLY_AFTER && t == 0 && settled && !link.rising {
                        None
                    } else {
                        Some(t)
                    }
                } else {
                    state.over_since = None;
                    let up = t + 1;
                    let fits = up <= max_layer && rate(up) > 0 && rate(up) * 5 / 4 <= budget;
                    climb(now, &mut state, fits, up).or(Some(t))
                }
            }
            None => {
                let fits = rate(0) * COME_BACK_MARGIN.0 / COME_BACK_MARGIN.1 <= budget + slack;
                let close = rate(0) <= budget + slack + trial_room;
                climb(now, &mut state, fits, 0).or((close && state.may_try(now)).then_some(0))
            }
        };
        if target != state.target {
            state = state.moved_to(now, target);
        }
        if let Some(t) = state.target {
            receiving_video = true;
            let taken = rate(t).min(budget);
            budget -= taken;
            if t == 0 {
                let lacking = rate(t) - taken;
                let from_slack = lacking.min(slack);
                slack -= from_slack;
                trial_room = trial_room.saturating_sub(lacking - from_slack);
            }
            allocated += rate(t);
        }
        // What the estimate must grow by to pass the tests above for one more layer.
        match state.target {
            Some(t) if t < top => {
                let need = rate(t + 1) * 5 / 4;
                next_step = next_step.max(need.saturating_sub(rate(t)));
            }
            None => {
                let need = rate(0) * COME_BACK_MARGIN.0 / COME_BACK_MARGIN.1;
                next_step = next_step.max(need);
            }
            Some(_) => {}
        }
        desired += rate(top);
        states.push(state);
    }
    let probing = link
        .connected_at
        .is_some_and(|at| now.saturating_duration_since(at) >= PROBE_AFTER);
    // What the next layer's test needs of the estimate (it is used at 90 %).
    let next = match next_step {
        0 => allocated,
        step => (allocated + step) * 10 / 9,
    };
    let probe = (desired > 0 && probing).then(|| {
        if link.allowance != Allowance::All {
            // The worker's CPU, not the link, is short: no padding, which would take more of
            // it (a quarter of a thousand sites given their pictures back, each padded for
            // seconds toward its lowest layer, saturated the core again). A peer that may
            // take more than it receives (back from sound only, say, its estimate fallen
            // with the sound alone) is probed for it instead: str0m probes when the desired
            // rate rises above its estimate, and periodically while it stays there, and
            // adopts what a probe measured; a peer the load holds at its layer, not at all.
            return Probe {
                current: 0,
                desired: next,
            };
        }
        // Pad up to what the next layer's test needs, so a site whose link recovers,
        // audio-only ones included, can climb back.
        Probe {
            current: next,
            desired: (desired.max(allocated) * 5 / 4).max(next),
        }
    });
    Allocation {
        audio_only: !consumers.is_empty() && !receiving_video,
        shed: false,
        states,
        probe,
    }
}

/// No video for any consumer, at once, and no padding or probe: the worker's CPU is what the
/// load lacks.
fn shed_all(link: Link, consumers: &[VideoConsumer]) -> Allocation {
    let states = consumers
        .iter()
        .map(|c| LayerState {
            target: None,
            opened_at: c.state.opened_at,
            ..LayerState::default()
        })
        .collect();
    let audio = link.set_aside();
    Allocation {
        states,
        audio_only: true,
        shed: true,
        probe: link.connected_at.map(|_| Probe {
            current: 0,
            desired: audio,
        }),
    }
}

/// `to` once the link has carried it (`fits`) for [`UPGRADE_AFTER`]; `None` until then.
fn climb(now: Instant, state: &mut LayerState, fits: bool, to: u8) -> Option<u8> {
    if !fits {
        state.under_since = None;
        return None;
    }
    let since = *state.under_since.get_or_insert(now);
    (now.saturating_duration_since(since) >= UPGRADE_AFTER).then_some(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three simulcast layers of about 150 kbit/s, 500 kbit/s and 1.5 Mbit/s.
    const RATES: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// One video consumer and no audio, on a link connected long before `start`.
    struct One {
        start: Instant,
        consumer: VideoConsumer,
        allowance: Allowance,
        /// The estimates given so far, as the worker keeps them.
        trend: EstimateTrend,
        estimate: Option<u64>,
    }

    impl One {
        fn new(target: Option<u8>, max_layer: u8) -> One {
            let start = Instant::now() + Duration::from_secs(100);
            let state = LayerState {
                target,
                opened_at: Some(start - Duration::from_secs(60)),
                ..LayerState::default()
            };
            One {
                start,
                consumer: VideoConsumer {
                    max_layer,
                    rates: RATES.to_vec(),
                    state,
                },
                allowance: Allowance::All,
                trend: EstimateTrend::default(),
                estimate: None,
            }
        }

        /// Runs the allocator at `start + at` with `estimate`, keeping the new state.
        fn at(&mut self, at: f64, estimate: u64) -> Allocation {
            let now = self.start + secs(at);
            self.trend.record(now, self.estimate, estimate);
            self.estimate = Some(estimate);
            let link = Link {
                estimate,
                connected_at: Some(self.start - Duration::from_secs(60)),
                audio_bps: 0,
                pinned_bps: 0,
                allowance: self.allowance,
                rising: self.trend.rising(now),
            };
            let allocation = allocate(now, link, std::slice::from_ref(&self.consumer));
            self.consumer.state = allocation.states[0];
            allocation
        }

        fn target(&self) -> Option<u8> {
            self.consumer.state.target
        }
    }

    #[test]
    fn climbs_one_layer_after_the_next_has_fitted_for_the_up_delay() {
        let mut one = One::new(Some(0), 2);
        // 5 Mbit/s: every layer fits with room to spare.
        one.at(0.0, 5_000_000);
        one.at(2.9, 5_000_000);
        assert_eq!(one.target(), Some(0), "not before three seconds");
        one.at(3.0, 5_000_000);
        assert_eq!(one.target(), Some(1), "one layer after three seconds");
        // The next climb waits again, from the first look after the switch.
        one.at(3.5, 5_000_000);
        one.at(6.4, 5_000_000);
        assert_eq!(one.target(), Some(1), "the next climb waits again");
        one.at(6.5, 5_000_000);
        assert_eq!(one.target(), Some(2));
    }

    #[test]
    fn the_load_lowers_the_layer_at_once_and_gives_it_back_by_the_climb() {
        let mut one = One::new(Some(2), 2);
        one.at(0.0, 5_000_000);
        one.allowance = Allowance::UpTo(0);
        let allocation = one.at(0.5, 5_000_000);
        assert_eq!(one.target(), Some(0), "at once, whatever the link carries");
        assert!(!allocation.audio_only && !allocation.shed);
        let rate = one.consumer.rates[0];
        assert_eq!(
            allocation.probe,
            Some(Probe {
                current: 0,
                desired: rate
            }),
            "no padding or probe toward the layers the load forbids"
        );
        // Lifted: one layer at a time, each after the up delay.
        one.allowance = Allowance::All;
        one.at(1.0, 5_000_000);
        one.at(3.9, 5_000_000);
        assert_eq!(one.target(), Some(0));
        one.at(4.0, 5_000_000);
        assert_eq!(one.target(), Some(1));
    }

    #[test]
    fn the_load_takes_the_video_at_once_and_stops_the_probe() {
        let mut one = One::new(Some(1), 2);
        one.allowance = Allowance::AudioOnly;
        let allocation = one.at(0.0, 5_000_000);
        assert_eq!(one.target(), None);
        assert!(allocation.audio_only && allocation.shed);
        assert_eq!(
            allocation.probe,
            Some(Probe {
                current: 0,
                desired: 0
            }),
            "no padding toward video the load forbids"
        );
        one.allowance = Allowance::All;
        let allocation = one.at(0.5, 5_000_000);
        assert!(
            allocation.audio_only && !allocation.shed,
            "back by the climb"
        );
        one.at(3.5, 5_000_000);
        assert_eq!(one.target(), Some(0));
    }

    #[test]
    fn under_load_a_site_back_from_sound_only_is_probed_for_its_picture_not_padded() {
        // Shed to its sound by the load, its estimate fallen to what the sound alone showed.
        let mut one = One::new(Some(0), 2);
        one.allowance = Allowance::AudioOnly;
        one.at(0.0, 120_000);
        assert_eq!(one.target(), None);
        // The load gives the lowest layer back, which the estimate is short of.
        one.allowance = Allowance::UpTo(0);
        let allocation = one.at(0.5, 120_000);
        assert!(allocation.audio_only && !allocation.shed);
        let need = RATES[0] * COME_BACK_MARGIN.0 / COME_BACK_MARGIN.1 * 10 / 9;
        assert_eq!(
            allocation.probe,
            Some(Probe {
                current: 0,
                desired: need,
            }),
            "probed up to what the way back needs, and nothing padded on a short core"
        );
        // Without the load the same site is padded toward it, as a weak link's would be.
        one.allowance = Allowance::All;
        let allocation = one.at(1.0, 120_000);
        assert_eq!(allocation.probe.map(|p| p.current), Some(need));
        // A probe that finds the room brings it back by the climb.
        one.allowance = Allowance::UpTo(0);
        one.at(1.5, 400_000);
        one.at(4.4, 400_000);
        assert_eq!(one.target(), None);
        one.at(4.5, 400_000);
        assert_eq!(one.target(), Some(0));
    }

    #[test]
    fn a_site_shed_to_sound_only_is_not_padded_up_to_its_sound_budget() {
        let start = Instant::now();
        let consumer = VideoConsumer {
            max_layer: 2,
            rates: RATES.to_vec(),
            state: LayerState::default(),
        };
        let link = Link {
            estimate: 5_000_000,
            connected_at: Some(start),
            audio_bps: AUDIO_BUDGET_BPS,
            pinned_bps: 0,
            allowance: Allowance::AudioOnly,
            rising: false,
        };
        let allocation = allocate(start + secs(5.0), link, &[consumer]);
        assert!(allocation.shed);
        assert_eq!(
            allocation.probe,
            Some(Probe {
                current: 0,
                desired: AUDIO_BUDGET_BPS
            }),
            "the sound is what it sends: no padding up to what is set aside for it"
        );
    }

    #[test]
    fn a_sound_is_set_aside_what_it_sends() {
        assert_eq!(audio_set_aside(Sending::Nothing), SILENT_AUDIO_BPS, "muted");
        assert_eq!(audio_set_aside(Sending::Unmeasured), AUDIO_BUDGET_BPS);
        assert_eq!(
            audio_set_aside(Sending::Bps(75_000)),
            AUDIO_BUDGET_BPS,
            "speaking"
        );
        // Silence frames: a few bytes of payload, 50 packets a second.
        assert_eq!(audio_set_aside(Sending::Bps(28_000)), 35_000);
        assert_eq!(
            audio_set_aside(Sending::Bps(2_000)),
            SILENT_AUDIO_BPS,
            "DTX"
        );
    }

    /// One allocation for a wall of `states.len()` single-layer pictures of 150 kbit/s at
    /// `now`: their new states, and how many are on.
    fn wall_turn(now: Instant, link: Link, states: &mut Vec<LayerState>) -> usize {
        let consumers: Vec<VideoConsumer> = states
            .iter()
            .map(|state| VideoConsumer {
                max_layer: 0,
                rates: vec![150_000],
                state: *state,
            })
            .collect();
        *states = allocate(now, link, &consumers).states;
        states.iter().filter(|s| s.target.is_some()).count()
    }

    #[test]
    fn muted_sounds_leave_their_budget_to_the_pictures() {
        let start = Instant::now();
        // Ten sites' pictures of 150 kbit/s and their sounds, on a 2 Mbit/s estimate.
        let pictures = |audio_bps| {
            let link = Link {
                estimate: 2_000_000,
                connected_at: Some(start),
                audio_bps,
                pinned_bps: 0,
                allowance: Allowance::All,
                rising: false,
            };
            let on = LayerState {
                target: Some(0),
                opened_at: Some(start),
                ..LayerState::default()
            };
            let mut states = vec![on; 10];
            // Long enough for a picture that does not fit to be taken off (after the start-up
            // grace), not for its trial return.
            let mut count = 0;
            for s in 0..15 {
                count = wall_turn(start + secs(f64::from(s)), link, &mut states);
            }
            count
        };
        let speaking = pictures(10 * audio_set_aside(Sending::Bps(75_000)));
        let muted = pictures(10 * audio_set_aside(Sending::Nothing));
        assert_eq!(muted, 10, "1.8 Mbit/s of budget carries every picture");
        assert!(
            speaking < 10,
            "640 kbit/s for sound leaves {speaking} pictures"
        );
    }

    #[test]
    fn a_dip_restarts_the_up_delay() {
        let mut one = One::new(Some(0), 2);
        one.at(0.0, 5_000_000);
        // 600 kbit/s: 540 kbit/s of budget carries layer 0 but not 1.25 × layer 1.
        one.at(2.0, 600_000);
        one.at(4.0, 5_000_000);
        one.at(6.9, 5_000_000);
        assert_eq!(one.target(), Some(0));
        one.at(7.0, 5_000_000);
        assert_eq!(one.target(), Some(1));
    }

    #[test]
    fn goes_down_after_the_down_delay_to_the_best_layer_that_fits() {
        let mut one = One::new(Some(2), 2);
        // 1 Mbit/s: 900 kbit/s of budget, under layer 2, over layer 1.
        one.at(0.0, 1_000_000);
        one.at(0.9, 1_000_000);
        assert_eq!(one.target(), Some(2), "not before a second");
        let allocation = one.at(1.0, 1_000_000);
        assert_eq!(one.target(), Some(1));
        assert!(!allocation.audio_only);
        // 300 kbit/s: straight to the lowest layer, skipping none that would fit.
        one.at(2.0, 300_000);
        one.at(3.0, 300_000);
        assert_eq!(one.target(), Some(0));
    }

    #[test]
    fn falls_to_audio_only_after_its_delay_and_comes_back() {
        let mut one = One::new(Some(0), 2);
        // 100 kbit/s: the lowest layer (150 kbit/s) does not fit even with the slack.
        assert!(!one.at(0.0, 100_000).audio_only);
        assert!(!one.at(2.9, 100_000).audio_only, "not before three seconds");
        let allocation = one.at(3.0, 100_000);
        assert_eq!(one.target(), None);
        assert!(allocation.audio_only);
        // 160 kbit/s carries the lowest layer (1×) but not its margin (1.1×): stays off.
        one.at(4.0, 160_000);
        assert!(one.at(8.0, 160_000).audio_only);
        // 200 kbit/s carries 165 kbit/s: back to video after the up delay.
        one.at(9.0, 200_000);
        assert!(one.at(11.9, 200_000).audio_only);
        let allocation = one.at(12.0, 200_000);
        assert_eq!(one.target(), Some(0));
        assert!(!allocation.audio_only);
    }

    /// A consumer on the lowest layer that falls to audio only at 3 s (100 kbit/s).
    fn fallen() -> One {
        let mut one = One::new(Some(0), 2);
        one.at(0.0, 100_000);
        one.at(3.0, 100_000);
        assert_eq!(one.target(), None);
        one
    }

    #[test]
    fn an_estimate_short_of_the_way_back_tries_the_lowest_layer_after_its_wait() {
        let mut one = fallen();
        // 130 kbit/s: short of the lowest layer (150) but within a sixth of it.
        one.at(4.0, 130_000);
        one.at(12.9, 130_000);
        assert_eq!(one.target(), None, "not before the first wait (10 s)");
        let allocation = one.at(13.0, 130_000);
        assert_eq!(one.target(), Some(0), "on trial");
        assert!(!allocation.audio_only);
        // The estimate stays short: the trial has the grace of a new consumer, then fails.
        one.at(13.5, 130_000);
        one.at(20.9, 130_000);
        assert_eq!(
            one.target(),
            Some(0),
            "8 s to let the estimate grow with the video"
        );
        one.at(21.0, 130_000);
        assert_eq!(one.target(), None, "the trial failed");
        // The next trial waits twice as long.
        one.at(40.9, 130_000);
        assert_eq!(one.target(), None, "not before 20 s");
        one.at(41.0, 130_000);
        assert_eq!(one.target(), Some(0), "the second trial");
    }

    #[test]
    fn a_trial_that_holds_resets_the_wait() {
        let mut one = fallen();
        one.at(13.0, 130_000);
        assert_eq!(one.target(), Some(0), "on trial");
        // The video lifts the estimate: the layer fits and the trial holds.
        for at in 14..50 {
            one.at(f64::from(at), 160_000);
        }
        assert_eq!(one.target(), Some(0));
        // A later collapse starts from the first wait again.
        one.at(50.0, 100_000);
        one.at(53.0, 100_000);
        assert_eq!(one.target(), None);
        one.at(62.9, 130_000);
        assert_eq!(one.target(), None);
        one.at(63.0, 130_000);
        assert_eq!(one.target(), Some(0), "10 s after the fall");
    }

    #[test]
    fn a_link_far_below_the_lowest_layer_is_not_tried() {
        let mut one = fallen();
        // 120 kbit/s: short of the lowest layer by more than a sixth of it.
        for at in 4..200 {
            assert!(one.at(f64::from(at), 120_000).audio_only, "at {at} s");
        }
    }

    #[test]
    fn a_young_consumer_does_not_fall_to_audio_only() {
        let mut one = One::new(Some(0), 2);
        one.consumer.state.opened_at = Some(one.start);
        one.at(0.0, 100_000);
        one.at(7.9, 100_000);
        assert_eq!(one.target(), Some(0), "estimate still ramping up");
        one.at(8.0, 100_000);
        assert_eq!(one.target(), None);
    }

    #[test]
    fn an_estimate_still_climbing_keeps_the_lowest_layer() {
        // As a chair's wall: the estimate climbs 5 % every 300 ms from 60 kbit/s, short of
        // the lowest layer (150 kbit/s, with the slack) for 5.7 s after the consumer's grace.
        let mut one = One::new(Some(0), 2);
        let mut estimate = 60_000.0;
        for step in 0..=25 {
            let at = f64::from(step) * 0.3;
            one.at(at, estimate as u64);
            assert_eq!(one.target(), Some(0), "climbing at {at} s");
            estimate *= 1.05;
        }
        // A climb that stops short: the consumer falls once it has not grown for 2 s.
        let mut one = One::new(Some(0), 2);
        one.at(0.0, 100_000);
        one.at(1.5, 110_000);
        one.at(3.0, 110_000);
        assert_eq!(one.target(), Some(0), "it grew 1.5 s ago");
        one.at(3.4, 110_000);
        assert_eq!(one.target(), Some(0));
        one.at(3.5, 110_000);
        assert_eq!(one.target(), None, "2 s without growing");
    }

    #[test]
    fn an_estimate_that_fell_is_not_climbing() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + secs(s);
        let mut trend = EstimateTrend::default();
        assert!(!trend.rising(t0), "nothing reported yet");
        trend.record(at(0.0), None, 3_000_000);
        assert!(!trend.rising(at(0.0)), "a first estimate is no trend");
        trend.record(at(1.0), Some(3_000_000), 3_150_000);
        assert!(trend.rising(at(1.0)));
        assert!(trend.rising(at(2.9)));
        assert!(!trend.rising(at(3.0)), "2 s without growing");
        // A fall, then growth again: not climbing until 3 s after the fall.
        trend.record(at(4.0), Some(3_150_000), 2_000_000);
        trend.record(at(4.5), Some(2_000_000), 2_100_000);
        assert!(!trend.rising(at(4.5)));
        trend.record(at(6.5), Some(2_100_000), 2_200_000);
        assert!(!trend.rising(at(6.9)));
        assert!(trend.rising(at(7.0)), "3 s after the fall, grown since");
        // An equal estimate is neither.
        trend.record(at(7.5), Some(2_200_000), 2_200_000);
        assert!(trend.rising(at(7.5)));
    }

    #[test]
    fn respects_the_consumers_max_layer() {
        let mut one = One::new(Some(0), 1);
        for at in 0..20 {
            one.at(f64::from(at), 50_000_000);
        }
        assert_eq!(one.target(), Some(1), "never above max_layer");
        // A lower cap takes effect at once.
        one.consumer.max_layer = 0;
        one.at(20.0, 50_000_000);
        assert_eq!(one.target(), Some(0));
    }

    #[test]
    fn consumers_share_the_budget_in_order() {
        let start = Instant::now();
        let consumer = VideoConsumer {
            max_layer: 2,
            rates: RATES.to_vec(),
            state: LayerState {
                target: Some(1),
                ..LayerState::default()
            },
        };
        let link = Link {
            // 1.2 Mbit/s less two audio tracks: 952 kbit/s, one layer 1 and one layer 0.
            estimate: 1_200_000,
            connected_at: Some(start),
            audio_bps: 2 * AUDIO_BUDGET_BPS,
            pinned_bps: 0,
            allowance: Allowance::All,
            rising: false,
        };
        let mut states = vec![consumer.state; 2];
        for at in [0.0, 1.0] {
            let consumers: Vec<VideoConsumer> = states
                .iter()
                .map(|state| VideoConsumer {
                    state: *state,
                    ..consumer.clone()
                })
                .collect();
            states = allocate(start + secs(at), link, &consumers).states;
        }
        assert_eq!(states[0].target, Some(1));
        assert_eq!(states[1].target, Some(0));
    }

    #[test]
    fn many_consumers_share_the_lowest_layers_slack() {
        // A chair's wall: 40 pictures of 150 kbit/s on a 3 Mbit/s estimate. The budget (2.7)
        // carries 18, the slack (0.3) two more; the others fall to sound only.
        let start = Instant::now() + Duration::from_secs(100);
        let state = LayerState {
            opened_at: Some(start - Duration::from_secs(60)),
            ..LayerState::default()
        };
        let link = Link {
            estimate: 3_000_000,
            connected_at: Some(start - Duration::from_secs(60)),
            audio_bps: 0,
            pinned_bps: 0,
            allowance: Allowance::All,
            rising: false,
        };
        let mut states = vec![state; 40];
        let run = |states: &mut Vec<LayerState>, at: f64| wall_turn(start + secs(at), link, states);
        assert_eq!(run(&mut states, 0.0), 40, "not before the fall delay");
        assert_eq!(run(&mut states, 3.0), 20, "what the estimate carries");
        // Trials take what lacks from one shared room (a fifth of the estimate: four
        // pictures), not each from a room of its own.
        for at in [13.0, 13.5] {
            run(&mut states, at);
        }
        assert_eq!(run(&mut states, 14.0), 24, "four on trial");
    }

    #[test]
    fn no_probe_in_a_connections_first_second() {
        let connected = Instant::now();
        let consumer = VideoConsumer {
            max_layer: 2,
            rates: RATES.to_vec(),
            state: LayerState::default(),
        };
        let link = |connected_at| Link {
            estimate: 3_000_000,
            connected_at,
            audio_bps: AUDIO_BUDGET_BPS,
            pinned_bps: 0,
            allowance: Allowance::All,
            rising: false,
        };
        let at = |s| connected + secs(s);
        let consumers = [consumer];
        assert_eq!(allocate(at(0.5), link(None), &consumers).probe, None);
        assert_eq!(
            allocate(at(0.0), link(Some(connected)), &consumers).probe,
            None
        );
        assert_eq!(
            allocate(at(0.99), link(Some(connected)), &consumers).probe,
            None
        );
        let probe = allocate(at(1.0), link(Some(connected)), &consumers)
            .probe
            .expect("probing after a second");
        // Everything at 1.25×: the audio track and the top layer.
        assert_eq!(probe.desired, (AUDIO_BUDGET_BPS + 1_500_000) * 5 / 4);
        // At least what the next layer's test needs: 1.25 × layer 1 over layer 0, at 90 %.
        let step = 500_000 * 5 / 4 - 150_000;
        assert_eq!(probe.current, (AUDIO_BUDGET_BPS + 150_000 + step) * 10 / 9);
    }
}
