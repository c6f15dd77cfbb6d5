use std::mem;
use std::time::{Duration, Instant};

use crate::rtp_::TwccSeq;

use super::super::AckedPacket;
use super::super::time::TimeDelta;

const BURST_TIME_INTERVAL: Duration = Duration::from_millis(5);
const SEND_TIME_GROUP_LENGTH: Duration = Duration::from_millis(5);
const MAX_BURST_DURATION: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
pub struct ArrivalGroup {
    /// The first packet's sequence number, send time and receive time. The group's other
    /// times are kept as nanoseconds from these two, so that deciding whether a packet
    /// belongs takes two subtractions of `Instant`s, not one per comparison.
    first: Option<(TwccSeq, Instant, Instant)>,
    last_seq_no: Option<TwccSeq>,
    last_local_send_time: Option<Instant>,
    last_remote_recv_time: Option<Instant>,
    /// `last_local_send_time` and `last_remote_recv_time` in nanoseconds from `first`'s.
    last_send_ns: i64,
    last_recv_ns: i64,
    size: usize,
}

/// A packet's send and receive times in nanoseconds from those of its group's first packet.
#[derive(Debug, Clone, Copy)]
struct Offsets {
    send_ns: i64,
    recv_ns: i64,
}

/// `time - base` in nanoseconds, negative where `time` is before `base`.
fn signed_ns(time: Instant, base: Instant) -> i64 {
    fn ns(d: Duration) -> i64 {
        d.as_secs() as i64 * 1_000_000_000 + i64::from(d.subsec_nanos())
    }
    match time.checked_duration_since(base) {
        Some(after) => ns(after),
        None => -ns(base - time),
    }
}

const fn duration_ns(d: Duration) -> i64 {
    d.as_nanos() as i64
}

/// A difference of nanoseconds as a [`TimeDelta`].
fn time_delta(ns: i64) -> TimeDelta {
    match ns.cmp(&0) {
        std::cmp::Ordering::Less => TimeDelta::Negative(Duration::from_nanos(ns.unsigned_abs())),
        std::cmp::Ordering::Equal => TimeDelta::ZERO,
        std::cmp::Ordering::Greater => TimeDelta::Positive(Duration::from_nanos(ns as u64)),
    }
}

impl ArrivalGroup {
    /// Maybe add a packet to the group.
    ///
    /// Returns [`true`] if a new group needs to be created and [`false`] otherwise.
    fn add_packet(&mut self, packet: &AckedPacket) -> bool {
        let offsets = match self.belongs(packet) {
            (Belongs::NewGroup, _) => return true,
            (Belongs::Skipped, _) => return false,
            (Belongs::Yes, offsets) => offsets,
        };

        if self.first.is_none() {
            self.first = Some((
                packet.seq_no,
                packet.local_send_time,
                packet.remote_recv_time,
            ));
            self.last_local_send_time = Some(packet.local_send_time);
            self.last_remote_recv_time = Some(packet.remote_recv_time);
            self.last_send_ns = 0;
            self.last_recv_ns = 0;
        } else {
            if offsets.recv_ns > self.last_recv_ns {
                self.last_recv_ns = offsets.recv_ns;
                self.last_remote_recv_time = Some(packet.remote_recv_time);
            }
            if offsets.send_ns > self.last_send_ns {
                self.last_send_ns = offsets.send_ns;
                self.last_local_send_time = Some(packet.local_send_time);
            }
        }
        self.size += 1;
        self.last_seq_no = self.last_seq_no.max(Some(packet.seq_no));

        false
    }

    #[cfg(test)]
    fn belongs_to_group(&self, packet: &AckedPacket) -> Belongs {
        self.belongs(packet).0
    }

    /// Whether the packet belongs to the group, and its times from the group's first packet
    /// (zero for the packet that starts the group).
    fn belongs(&self, packet: &AckedPacket) -> (Belongs, Offsets) {
        let Some((_, first_local_send_time, first_remote_recv_time)) = self.first else {
            // Start of the group
            let offsets = Offsets {
                send_ns: 0,
                recv_ns: 0,
            };
            return (Belongs::Yes, offsets);
        };
        let offsets = Offsets {
            send_ns: signed_ns(packet.local_send_time, first_local_send_time),
            recv_ns: signed_ns(packet.remote_recv_time, first_remote_recv_time),
        };

        // Sent before the group's first packet: out of order.
        let first_send_delta = offsets.send_ns;
        if first_send_delta < 0 {
            return (Belongs::Skipped, offsets);
        }

        let send_time_delta = offsets.send_ns - self.last_send_ns;
        if send_time_delta == 0 {
            return (Belongs::Yes, offsets);
        }
        let arrival_time_delta = offsets.recv_ns - self.last_recv_ns;

        let propagation_delta = arrival_time_delta - send_time_delta;
        // A receive time before the first packet's counts as no time after it.
        let belongs = if propagation_delta < 0
            && arrival_time_delta <= duration_ns(BURST_TIME_INTERVAL)
            && offsets.recv_ns < duration_ns(MAX_BURST_DURATION)
        {
            Belongs::Yes
        } else if first_send_delta > duration_ns(SEND_TIME_GROUP_LENGTH) {
            Belongs::NewGroup
        } else {
            Belongs::Yes
        };
        (belongs, offsets)
    }

    /// Calculate the send time delta between self and a subsequent group.
    fn departure_delta(&self, other: &Self) -> TimeDelta {
        time_delta(signed_ns(other.local_send_time(), self.local_send_time()))
    }

    /// Calculate the remote receive time delta between self and a subsequent group.
    fn arrival_delta(&self, other: &Self) -> TimeDelta {
        time_delta(signed_ns(other.remote_recv_time(), self.remote_recv_time()))
    }

    /// The local send time i.e. departure time, for the group.
    ///
    /// Panics if the group doesn't have at least one packet.
    fn local_send_time(&self) -> Instant {
        self.last_local_send_time
            .expect("local_send_time to only be called on non-empty groups")
    }

    /// The remote receive time i.e. arrival time, for the group.
    ///
    /// Panics if the group doesn't have at least one packet.
    fn remote_recv_time(&self) -> Instant {
        self.last_remote_recv_time
            .expect("remote_recv_time to only be called on non-empty groups")
    }
}

/// Whether a given packet is belongs to a group or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Belongs {
    /// The packet is belongs to the group.
    Yes,
    /// The packet is does not belong to the group, a new group should be created.
    NewGroup,
    /// The packet was skipped and a decision wasn't made.
    Skipped,
}

impl Belongs {
    #[cfg(test)]
    fn new_group(&self) -> bool {
        matches!(self, Self::NewGroup)
    }
}

#[derive(Debug, Default)]
pub struct ArrivalGroupAccumulator {
    send_time_origin: Option<Instant>,
    previous_group: Option<ArrivalGroup>,
    current_group: ArrivalGroup,
}

impl ArrivalGroupAccumulator {
    ///
    /// Accumulate a packet.
    ///
    /// If adding this packet produced a new delay delta it is returned.
    pub fn accumulate_packet(&mut self, packet: &AckedPacket) -> Option<InterGroupDelayDelta> {
        // Channel outages can queue packets and release them in a compressed burst. Tiny
        // send-time differences can split that burst into extra delay observations and
        // contribute to false overuse detections. Millisecond send times let the zero-delta
        // rule in belongs_to_group keep packets sent together in the same group.
        // GCC's motivation for burst grouping:
        // https://datatracker.ietf.org/doc/html/draft-ietf-rmcat-gcc-02#section-5.2
        //
        // Match libwebrtc's nearest-millisecond precision, including rounding half up:
        // Clock::TimeInMilliseconds -> Timestamp::ms -> UnitBase::ToFraction uses
        // DivideRoundToNearest. See rtc_base/units/unit_base.h:152 in this pinned revision:
        // https://webrtc.googlesource.com/src/+/bef233bc69712a4976442f980b1355b990c1107b
        // Use one origin across groups so rounding boundaries stay fixed. Our origin
        // differs from WebRTC's clock epoch, so individual group boundaries may differ.
        let origin = *self.send_time_origin.get_or_insert(packet.local_send_time);
        let elapsed = packet.local_send_time.checked_duration_since(origin)?;
        // (whole microseconds + 500) / 1000, without 128-bit arithmetic: the whole seconds'
        // microseconds are whole milliseconds.
        let rounded_ms =
            elapsed.as_secs() * 1000 + u64::from((elapsed.subsec_micros() + 500) / 1000);
        let packet = AckedPacket {
            local_send_time: origin + Duration::from_millis(rounded_ms),
            ..*packet
        };

        let need_new_group = self.current_group.add_packet(&packet);

        if !need_new_group {
            return None;
        }

        // Variation between previous group and current.
        let arrival_delta = self.arrival_delta();
        let send_delta = self.send_delta();
        let last_remote_recv_time = self.current_group.remote_recv_time();

        let current_group = mem::take(&mut self.current_group);
        self.previous_group = Some(current_group);

        self.current_group.add_packet(&packet);

        Some(InterGroupDelayDelta {
            send_delta: send_delta?,
            arrival_delta: arrival_delta?,
            last_remote_recv_time,
        })
    }

    fn arrival_delta(&self) -> Option<TimeDelta> {
        self.previous_group
            .as_ref()
            .map(|prev| prev.arrival_delta(&self.current_group))
    }

    fn send_delta(&self) -> Option<TimeDelta> {
        self.previous_group
            .as_ref()
            .map(|prev| prev.departure_delta(&self.current_group))
    }
}

/// The calculate delay delta between two groups of packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterGroupDelayDelta {
    /// The delta between the send times of the two groups i.e. delta between the last packet sent
    /// in each group.
    pub send_delta: TimeDelta,
    /// The delta between the remote arrival times of the two groups.
    pub arrival_delta: TimeDelta,
    /// The reported receive time for the last packet in the first arrival group.
    pub last_remote_recv_time: Instant,
}

#[cfg(test)]
mod test {
    use std::time::{Duration, Instant};

    use crate::rtp_::DataSize;

    use super::{AckedPacket, ArrivalGroup, ArrivalGroupAccumulator, Belongs, TimeDelta};

    #[test]
    fn send_timestamps_round_to_nearest_millisecond() {
        let now = Instant::now();
        let mut groups = ArrivalGroupAccumulator::default();
        for (seq, send_us, rounded_ms) in [
            (0, 0, 0),
            (1, 499, 0),
            (2, 500, 1),
            (3, 1499, 1),
            (4, 1500, 2),
        ] {
            groups.accumulate_packet(&AckedPacket {
                seq_no: seq.into(),
                size: DataSize::ZERO,
                local_send_time: now + Duration::from_micros(send_us),
                remote_recv_time: now + Duration::from_micros(send_us),
                local_recv_time: now + Duration::from_millis(100),
            });
            assert_eq!(
                groups.current_group.local_send_time(),
                now + Duration::from_millis(rounded_ms)
            );
        }
    }

    #[test]
    fn compressed_burst_ignores_submillisecond_send_gaps() {
        let now = Instant::now();
        let mut groups = ArrivalGroupAccumulator::default();
        let packet = |seq: u64, send_us, receive_us| AckedPacket {
            seq_no: seq.into(),
            size: DataSize::ZERO,
            local_send_time: now + Duration::from_micros(send_us),
            remote_recv_time: now + Duration::from_micros(receive_us),
            local_recv_time: now + Duration::from_millis(100),
        };

        // The 29 us send gap becomes zero at millisecond precision. The 250 us
        // receive gap must not split the compressed burst into another observation.
        for (seq, send_us, receive_us) in [(0, 0, 0), (1, 6684, 1000), (2, 6713, 1250)] {
            assert!(
                groups
                    .accumulate_packet(&packet(seq, send_us, receive_us))
                    .is_none()
            );
        }
        assert_eq!(groups.current_group.size, 3);

        assert!(
            groups
                .accumulate_packet(&packet(3, 20_000, 20_000))
                .is_none()
        );
        let delta = groups
            .accumulate_packet(&packet(4, 30_000, 30_000))
            .unwrap();
        assert_eq!(delta.send_delta, TimeDelta::from_millis(13));
        assert_eq!(delta.arrival_delta, Duration::from_micros(18_750));
    }

    /// The grouping as it was written with [`super::super::super::time::Timestamp`]
    /// arithmetic on every comparison, kept to check the one on nanosecond offsets against.
    mod reference {
        use std::time::{Duration, Instant};

        use super::super::super::super::time::{TimeDelta, Timestamp};
        use super::super::{
            AckedPacket, BURST_TIME_INTERVAL, MAX_BURST_DURATION, SEND_TIME_GROUP_LENGTH,
        };

        #[derive(Default)]
        pub struct Group {
            first: Option<(Instant, Instant)>,
            last_local_send_time: Option<Instant>,
            last_remote_recv_time: Option<Instant>,
            pub size: usize,
        }

        impl Group {
            /// `None`: the packet starts a new group; `Some(added)` otherwise.
            pub fn add_packet(&mut self, packet: &AckedPacket) -> Option<bool> {
                if let Some((first_send, first_recv)) = self.first {
                    let Some(first_send_delta) =
                        packet.local_send_time.checked_duration_since(first_send)
                    else {
                        return Some(false);
                    };
                    let send_time_delta = Timestamp::from(packet.local_send_time)
                        - self.last_local_send_time.unwrap();
                    if send_time_delta != TimeDelta::ZERO {
                        let arrival_time_delta = Timestamp::from(packet.remote_recv_time)
                            - self.last_remote_recv_time.unwrap();
                        let propagation_delta = arrival_time_delta - send_time_delta;
                        let burst = propagation_delta < TimeDelta::ZERO
                            && arrival_time_delta <= BURST_TIME_INTERVAL
                            && packet.remote_recv_time - first_recv < MAX_BURST_DURATION;
                        if !burst && first_send_delta > SEND_TIME_GROUP_LENGTH {
                            return None;
                        }
                    }
                } else {
                    self.first = Some((packet.local_send_time, packet.remote_recv_time));
                }
                self.last_remote_recv_time = self
                    .last_remote_recv_time
                    .max(Some(packet.remote_recv_time));
                self.last_local_send_time =
                    self.last_local_send_time.max(Some(packet.local_send_time));
                self.size += 1;
                Some(true)
            }

            pub fn times(&self) -> (Instant, Instant) {
                (
                    self.last_local_send_time.unwrap(),
                    self.last_remote_recv_time.unwrap(),
                )
            }
        }

        /// The accumulator's delay deltas, as `(send delta, arrival delta, last receive time)`.
        #[derive(Default)]
        pub struct Accumulator {
            origin: Option<Instant>,
            previous: Option<Group>,
            pub current: Group,
        }

        impl Accumulator {
            pub fn accumulate(
                &mut self,
                packet: &AckedPacket,
            ) -> Option<(TimeDelta, TimeDelta, Instant)> {
                let origin = *self.origin.get_or_insert(packet.local_send_time);
                let elapsed = packet.local_send_time.checked_duration_since(origin)?;
                let rounded_ms = (elapsed.as_micros() + 500) / 1000;
                let packet = AckedPacket {
                    local_send_time: origin + Duration::from_millis(rounded_ms as u64),
                    ..*packet
                };
                if self.current.add_packet(&packet).is_some() {
                    return None;
                }
                let (send, recv) = self.current.times();
                let deltas = self.previous.as_ref().map(|previous| {
                    let (previous_send, previous_recv) = previous.times();
                    (
                        Timestamp::from(send) - previous_send,
                        Timestamp::from(recv) - previous_recv,
                    )
                });
                self.previous = Some(std::mem::take(&mut self.current));
                self.current.add_packet(&packet);
                deltas.map(|(send_delta, arrival_delta)| (send_delta, arrival_delta, recv))
            }
        }
    }

    #[test]
    fn offsets_group_packets_as_timestamp_arithmetic_did() {
        let start = Instant::now() + Duration::from_secs(1);
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut random = move |below: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % below
        };
        let mut accumulator = ArrivalGroupAccumulator::default();
        let mut reference = reference::Accumulator::default();
        let mut send_us = 0_u64;
        let mut deltas = 0;
        for seq in 0..50_000_u64 {
            // Mostly sent in order, in bursts and gaps from microseconds to tens of
            // milliseconds; one in twenty sent before the one before.
            send_us = match random(20) {
                0 => send_us.saturating_sub(random(8_000)),
                1..=9 => send_us + random(600),
                _ => send_us + random(12_000),
            };
            // Received after a delay that wanders, some of them before packets sent earlier;
            // half of them on whole milliseconds after whole milliseconds of sending, where
            // the deltas meet the bounds exactly (a propagation of zero, an arrival 5 ms on).
            let (delay_us, jitter_ns) = if random(2) == 0 {
                send_us = send_us / 1_000 * 1_000;
                (20_000 + random(8) * 1_000, 0)
            } else {
                let wander = (seq / 500 % 7) * 3_000;
                (20_000 + random(15_000) + wander, random(1_000))
            };
            let packet = AckedPacket {
                seq_no: seq.into(),
                size: DataSize::bytes(1_200),
                local_send_time: start + Duration::from_micros(send_us),
                remote_recv_time: start + Duration::from_micros(send_us + delay_us)
                    - Duration::from_nanos(jitter_ns),
                local_recv_time: start + Duration::from_micros(send_us + 60_000),
            };
            let ours = accumulator.accumulate_packet(&packet);
            let theirs = reference.accumulate(&packet);
            assert_eq!(
                ours.map(|d| (d.send_delta, d.arrival_delta, d.last_remote_recv_time)),
                theirs,
                "packet {seq}"
            );
            assert_eq!(accumulator.current_group.size, reference.current.size);
            deltas += usize::from(ours.is_some());
        }
        assert!(deltas > 5_000, "only {deltas} delay deltas");
    }

    #[test]
    fn millisecond_send_origin_is_shared_between_groups() {
        let now = Instant::now();
        let mut groups = ArrivalGroupAccumulator::default();
        let mut delta = None;

        for (seq, send_us, receive_us) in [
            (0, 0, 0),
            (1, 20_490, 12_000),
            (2, 26_499, 13_000),
            (3, 26_501, 14_250),
        ] {
            delta = groups.accumulate_packet(&AckedPacket {
                seq_no: seq.into(),
                size: DataSize::ZERO,
                local_send_time: now + Duration::from_micros(send_us),
                remote_recv_time: now + Duration::from_micros(receive_us),
                local_recv_time: now + Duration::from_millis(100),
            });
        }

        let delta = delta.unwrap();
        assert_eq!(delta.send_delta, TimeDelta::from_millis(26));
        assert_eq!(delta.arrival_delta, TimeDelta::from_millis(13));
    }

    #[test]
    fn test_arrival_group_all_packets_belong_to_empty_group() {
        let now = Instant::now();
        let group = ArrivalGroup::default();

        assert_eq!(
            group.belongs_to_group(&AckedPacket {
                seq_no: 1.into(),
                size: DataSize::ZERO,
                local_send_time: now,
                remote_recv_time: now + duration_us(10),
                local_recv_time: now + duration_us(12),
            }),
            Belongs::Yes,
            "Any packet should belong to an empty arrival group"
        );
    }

    #[test]
    fn test_arrival_group_all_packets_sent_within_burst_interval_belong() {
        let now = Instant::now();
        #[allow(clippy::vec_init_then_push)]
        let packets = {
            let mut packets = vec![];

            packets.push(AckedPacket {
                seq_no: 0.into(),
                size: DataSize::ZERO,
                local_send_time: now,
                remote_recv_time: now + duration_us(150),
                local_recv_time: now + duration_us(200),
            });

            packets.push(AckedPacket {
                seq_no: 1.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(50),
                remote_recv_time: now + duration_us(225),
                local_recv_time: now + duration_us(275),
            });

            packets.push(AckedPacket {
                seq_no: 2.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(1005),
                remote_recv_time: now + duration_us(1140),
                local_recv_time: now + duration_us(1190),
            });

            packets.push(AckedPacket {
                seq_no: 3.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(4995),
                remote_recv_time: now + duration_us(5001),
                local_recv_time: now + duration_us(5051),
            });

            // Should not belong
            packets.push(AckedPacket {
                seq_no: 4.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(5700),
                remote_recv_time: now + duration_us(6000),
                local_recv_time: now + duration_us(5750),
            });

            packets
        };

        let mut group = ArrivalGroup::default();

        for p in packets {
            let need_new_group = group.belongs_to_group(&p).new_group();
            if !need_new_group {
                group.add_packet(&p);
            }
        }

        assert_eq!(group.size, 4, "Expected group to contain 4 packets");
    }

    #[test]
    fn test_arrival_group_out_order_arrival_ignored() {
        let now = Instant::now();
        #[allow(clippy::vec_init_then_push)]
        let packets = {
            let mut packets = vec![];

            packets.push(AckedPacket {
                seq_no: 0.into(),
                size: DataSize::ZERO,
                local_send_time: now,
                remote_recv_time: now + duration_us(150),
                local_recv_time: now + duration_us(200),
            });

            packets.push(AckedPacket {
                seq_no: 1.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(50),
                remote_recv_time: now + duration_us(225),
                local_recv_time: now + duration_us(275),
            });

            packets.push(AckedPacket {
                seq_no: 2.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(1005),
                remote_recv_time: now + duration_us(1140),
                local_recv_time: now + duration_us(1190),
            });

            packets.push(AckedPacket {
                seq_no: 3.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(4995),
                remote_recv_time: now + duration_us(5001),
                local_recv_time: now + duration_us(5051),
            });

            // Should be skipped
            packets.push(AckedPacket {
                seq_no: 4.into(),
                size: DataSize::ZERO,
                local_send_time: now - duration_us(100),
                remote_recv_time: now + duration_us(5000),
                local_recv_time: now + duration_us(5050),
            });

            // Should not belong
            packets.push(AckedPacket {
                seq_no: 5.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(5700),
                remote_recv_time: now + duration_us(6000),
                local_recv_time: now + duration_us(6050),
            });

            packets
        };

        let mut group = ArrivalGroup::default();

        for p in packets {
            let need_new_group = group.belongs_to_group(&p).new_group();
            if !need_new_group {
                group.add_packet(&p);
            }
        }

        assert_eq!(group.size, 4, "Expected group to contain 4 packets");
    }

    #[test]
    fn test_arrival_group_arrival_membership() {
        let now = Instant::now();
        #[allow(clippy::vec_init_then_push)]
        let packets = {
            let mut packets = vec![];

            packets.push(AckedPacket {
                seq_no: 0.into(),
                size: DataSize::ZERO,
                local_send_time: now,
                remote_recv_time: now + duration_us(150),
                local_recv_time: now + duration_us(200),
            });

            packets.push(AckedPacket {
                seq_no: 1.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(50),
                remote_recv_time: now + duration_us(225),
                local_recv_time: now + duration_us(275),
            });

            packets.push(AckedPacket {
                seq_no: 2.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(5152),
                // Just less than 5ms inter arrival delta
                remote_recv_time: now + duration_us(5224),
                local_recv_time: now + duration_us(5274),
            });

            // Should not belong
            packets.push(AckedPacket {
                seq_no: 3.into(),
                size: DataSize::ZERO,
                local_send_time: now + duration_us(5700),
                remote_recv_time: now + duration_us(6000),
                local_recv_time: now + duration_us(6050),
            });

            packets
        };

        let mut group = ArrivalGroup::default();

        for p in packets {
            let need_new_group = group.belongs_to_group(&p).new_group();
            if !need_new_group {
                group.add_packet(&p);
            }
        }

        assert_eq!(group.size, 3, "Expected group to contain 4 packets");
    }

    #[test]
    fn group_reorder() {
        let data = vec![
            ((Duration::from_millis(0), Duration::from_millis(0)), None),
            ((Duration::from_millis(60), Duration::from_millis(5)), None),
            ((Duration::from_millis(40), Duration::from_millis(10)), None),
            (
                (Duration::from_millis(70), Duration::from_millis(20)),
                Some((TimeDelta::from_millis(-20), TimeDelta::from_millis(5))),
            ),
        ];

        let now = Instant::now();
        let mut aga = ArrivalGroupAccumulator::default();

        for ((local_send_time, remote_recv_time), deltas) in data {
            let group_delta = aga.accumulate_packet(&AckedPacket {
                seq_no: Default::default(),
                size: Default::default(),
                local_send_time: now + local_send_time,
                remote_recv_time: now + remote_recv_time,
                local_recv_time: Instant::now(), // does not matter
            });

            assert_eq!(group_delta.map(|d| (d.send_delta, d.arrival_delta)), deltas);
        }
    }

    fn duration_us(us: u64) -> Duration {
        Duration::from_micros(us)
    }
}
