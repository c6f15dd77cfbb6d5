//! Link classes: groups of sites behind the same kind of link, parsed from `--link`, and
//! spread over the sites' join order.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::profile::LinkProfile;

/// A group of sites behind the same kind of link: a name, a share of the sites, and what each
/// direction does. Parsed from `NAME=SHARE%[,KEY=VALUE...]` (see [`LinkClass::HELP`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkClass {
    pub name: String,
    /// Weight of this class among the sites, in percent (the weights are normalised).
    pub share_percent: f64,
    /// Hub → site.
    pub down: LinkProfile,
    /// Site → hub.
    pub up: LinkProfile,
    /// The sites reach the hub over ICE-TCP only, as behind a firewall that drops UDP.
    pub tcp: bool,
}

impl LinkClass {
    /// The option's syntax, for `--help`.
    pub const HELP: &'static str = "Put a share of the sites behind an emulated link \
(repeatable): NAME=SHARE%[,KEY=VALUE...]. Keys: rate (hub → site, e.g. 300kbit, 1mbit), \
queue (rate-limit queue: 250ms of the rate by default, or e.g. 64kB), delay (one-way, each \
direction, e.g. 40ms), jitter (extra delay from 0 to this, drawn every 20 ms, e.g. 10ms), loss (each direction, e.g. 2%), \
burst (mean loss burst length in packets: Gilbert-Elliott instead of independent losses), \
up-rate (site → hub rate; none by default), transport (udp, or tcp: the sites reach the hub \
over ICE-TCP only). Example, 70 % good, 20 % at 1 Mbit/s, 10 % at \
300 kbit/s with 2 % loss: --link good=70% --link 1mbit=20%,rate=1mbit,delay=30ms \
--link weak=10%,rate=300kbit,delay=80ms,jitter=10ms,loss=2%; a third over TCP: \
--link tcp=33%,transport=tcp. Sites not covered by the shares \
(when they add up to less than 100 %) have no emulated link.";

    /// A class with no emulation: the remainder of the sites when the shares leave some.
    pub fn direct(share_percent: f64) -> LinkClass {
        LinkClass {
            name: "direct".to_owned(),
            share_percent,
            down: LinkProfile::transparent(),
            up: LinkProfile::transparent(),
            tcp: false,
        }
    }

    /// One line in words: "300 kbit/s, 80 ms ± 10 ms, 2 % loss".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let d = &self.down;
        if let Some(rate) = d.rate_bps {
            parts.push(format!(
                "{} (queue {})",
                rate_words(rate),
                bytes_words(d.queue_bytes)
            ));
        }
        if let Some(rate) = self.up.rate_bps {
            parts.push(format!("up {}", rate_words(rate)));
        }
        if !d.delay.is_zero() || !d.jitter.is_zero() {
            let mut delay = format!("{} ms", d.delay.as_millis());
            if !d.jitter.is_zero() {
                delay.push_str(&format!(" + 0–{} ms", d.jitter.as_millis()));
            }
            parts.push(delay);
        }
        if d.loss > 0.0 {
            let mut loss = format!("{} % loss", trim(d.loss * 100.0));
            if let Some(burst) = d.burst {
                loss.push_str(&format!(" in bursts of {} packets", trim(burst)));
            }
            parts.push(loss);
        }
        if self.tcp {
            parts.push("over TCP".to_owned());
        }
        if parts.is_empty() {
            "no emulation".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Why a `--link` value is not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--link {value}: {reason}")]
pub struct LinkParseError {
    pub value: String,
    pub reason: String,
}

impl FromStr for LinkClass {
    type Err = LinkParseError;

    fn from_str(value: &str) -> Result<LinkClass, LinkParseError> {
        let fail = |reason: String| LinkParseError {
            value: value.to_owned(),
            reason,
        };
        let mut parts = value.split(',').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let (name, share) = head
            .split_once('=')
            .ok_or_else(|| fail("expected NAME=SHARE% first, e.g. weak=10%".to_owned()))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_alphanumeric() || "-_.".contains(c))
        {
            return Err(fail(format!(
                "the name `{name}` must be letters, digits, - _ ."
            )));
        }
        let share_percent = percent(share).map_err(fail)?;
        let mut down = LinkProfile::transparent();
        let mut up = LinkProfile::transparent();
        let mut queue = None;
        let mut tcp = false;
        for part in parts.filter(|p| !p.is_empty()) {
            let (key, v) = part
                .split_once('=')
                .ok_or_else(|| fail(format!("`{part}` is not KEY=VALUE")))?;
            match key {
                "rate" => down.rate_bps = Some(rate(v).map_err(fail)?),
                "up-rate" => up.rate_bps = Some(rate(v).map_err(fail)?),
                "queue" => queue = Some(v.to_owned()),
                "delay" => down.delay = duration(v).map_err(fail)?,
                "jitter" => down.jitter = duration(v).map_err(fail)?,
                "loss" => down.loss = percent(v).map_err(fail)? / 100.0,
                "burst" => {
                    let packets: f64 = v
                        .parse()
                        .ok()
                        .filter(|b: &f64| *b >= 1.0)
                        .ok_or_else(|| fail(format!("burst `{v}`: a packet count ≥ 1")))?;
                    down.burst = Some(packets);
                }
                "transport" => {
                    tcp = match v {
                        "udp" => false,
                        "tcp" => true,
                        _ => return Err(fail(format!("transport `{v}`: udp or tcp"))),
                    }
                }
                _ => {
                    return Err(fail(format!(
                        "unknown key `{key}` (rate, up-rate, queue, delay, jitter, loss, burst, \
                         transport)"
                    )));
                }
            }
        }
        if down.loss >= 1.0 {
            return Err(fail("loss must be under 100 %".to_owned()));
        }
        up.delay = down.delay;
        up.jitter = down.jitter;
        up.loss = down.loss;
        up.burst = down.burst;
        for profile in [&mut down, &mut up] {
            let Some(rate) = profile.rate_bps else {
                continue;
            };
            profile.queue_bytes = match &queue {
                Some(q) => queue_bytes(q, rate).map_err(fail)?,
                None => bytes_in(rate, Duration::from_millis(250)).max(3000),
            };
            // Two full datagrams pass back to back: a link's own framing, not a shaper's burst.
            profile.burst_bytes = 2500;
        }
        Ok(LinkClass {
            name: name.to_owned(),
            share_percent,
            down,
            up,
            tcp,
        })
    }
}

impl fmt::Display for LinkClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} %): {}",
            self.name,
            trim(self.share_percent),
            self.describe()
        )
    }
}

/// Which class each of `sites` sites (1..=sites) is in, as indices into `classes`: counts by
/// largest remainder of the shares, spread evenly over the join order (smooth weighted
/// round-robin), so early and late joiners have the same mix. Shares under 100 % leave the
/// rest as `None` (no link).
pub fn assign(classes: &[LinkClass], sites: usize) -> Vec<Option<usize>> {
    let mut weights: Vec<f64> = classes.iter().map(|c| c.share_percent.max(0.0)).collect();
    let total: f64 = weights.iter().sum();
    let rest = (100.0 - total).max(0.0);
    weights.push(rest);
    let total = total + rest;
    if total <= 0.0 || sites == 0 {
        return vec![None; sites];
    }
    // Largest remainder: exact counts that add up to `sites`.
    let ideal: Vec<f64> = weights.iter().map(|w| w / total * sites as f64).collect();
    let mut counts: Vec<usize> = ideal.iter().map(|x| x.floor() as usize).collect();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|a, b| {
        let frac = |i: usize| ideal.get(i).map_or(0.0, |x| x - x.floor());
        frac(*b).total_cmp(&frac(*a)).then(a.cmp(b))
    });
    let mut missing = sites.saturating_sub(counts.iter().sum());
    for i in order {
        if missing == 0 {
            break;
        }
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
            missing -= 1;
        }
    }
    // Smooth weighted round-robin over the counts.
    let mut current = vec![0i64; counts.len()];
    let mut left = counts.clone();
    let mut out = Vec::with_capacity(sites);
    for _ in 0..sites {
        for (c, n) in current.iter_mut().zip(&counts) {
            *c += *n as i64;
        }
        let pick = (0..counts.len())
            .filter(|i| left.get(*i).is_some_and(|l| *l > 0))
            .max_by_key(|i| (current.get(*i).copied().unwrap_or(0), std::cmp::Reverse(*i)))
            .unwrap_or(0);
        if let Some(c) = current.get_mut(pick) {
            *c -= sites as i64;
        }
        if let Some(l) = left.get_mut(pick) {
            *l -= 1;
        }
        out.push((pick < classes.len()).then_some(pick));
    }
    out
}

fn percent(text: &str) -> Result<f64, String> {
    let number = text.trim().trim_end_matches('%');
    number
        .parse::<f64>()
        .ok()
        .filter(|p| p.is_finite() && (0.0..=100.0).contains(p))
        .ok_or_else(|| format!("`{text}` is not a percentage (0-100, e.g. 2%)"))
}

fn rate(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches("/s").trim_end_matches("ps");
    let (number, unit) = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or((lower, ""), |i| lower.split_at(i));
    let scale = match unit {
        "" | "bit" | "b" => 1.0,
        "k" | "kbit" | "kb" => 1e3,
        "m" | "mbit" | "mb" => 1e6,
        "g" | "gbit" | "gb" => 1e9,
        _ => {
            return Err(format!(
                "rate `{text}`: use bit, kbit or mbit, e.g. 300kbit"
            ));
        }
    };
    number
        .parse::<f64>()
        .ok()
        .map(|n| n * scale)
        .filter(|bps| *bps >= 8_000.0 && bps.is_finite())
        .map(|bps| bps as u64)
        .ok_or_else(|| format!("rate `{text}`: a number of at least 8 kbit"))
}

fn duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, scale) = if let Some(ms) = t.strip_suffix("ms") {
        (ms, 1e-3)
    } else if let Some(s) = t.strip_suffix('s') {
        (s, 1.0)
    } else {
        (t, 1e-3)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0 && *n * scale <= 60.0)
        .map(|n| Duration::from_secs_f64(n * scale))
        .ok_or_else(|| format!("duration `{text}`: e.g. 40ms"))
}

fn queue_bytes(text: &str, rate_bps: u64) -> Result<usize, String> {
    let lower = text.trim().to_ascii_lowercase();
    if lower.ends_with("ms") || lower.ends_with('s') && !lower.ends_with("kb") {
        let time = duration(&lower)?;
        return Ok(bytes_in(rate_bps, time).max(1500));
    }
    let (number, scale) = if let Some(k) = lower.strip_suffix("kb") {
        (k, 1000.0)
    } else if let Some(b) = lower.strip_suffix('b') {
        (b, 1.0)
    } else {
        (lower.as_str(), 1.0)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n * scale >= 1500.0)
        .map(|n| (n * scale) as usize)
        .ok_or_else(|| format!("queue `{text}`: e.g. 250ms or 64kB (at least 1500 bytes)"))
}

fn bytes_in(rate_bps: u64, time: Duration) -> usize {
    (rate_bps as f64 / 8.0 * time.as_secs_f64()) as usize
}

fn rate_words(bps: u64) -> String {
    if bps >= 1_000_000 {
        format!("{} Mbit/s", trim(bps as f64 / 1e6))
    } else {
        format!("{} kbit/s", trim(bps as f64 / 1e3))
    }
}

fn bytes_words(bytes: usize) -> String {
    if bytes >= 10_000 {
        format!("{} kB", bytes / 1000)
    } else {
        format!("{bytes} B")
    }
}

/// A number without a needless fraction: 2, 2.5.
fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> LinkClass {
        text.parse().expect("a valid --link")
    }

    #[test]
    fn parses_a_class() {
        let c = class("weak=10%,rate=300kbit,delay=80ms,jitter=10ms,loss=2%,burst=3");
        assert_eq!(c.name, "weak");
        assert_eq!(c.share_percent, 10.0);
        assert_eq!(c.down.rate_bps, Some(300_000));
        assert_eq!(c.down.queue_bytes, 9375, "250 ms of 300 kbit/s");
        assert_eq!(c.down.delay, Duration::from_millis(80));
        assert_eq!(c.up.delay, Duration::from_millis(80), "delay both ways");
        assert_eq!(c.down.loss, 0.02);
        assert_eq!(c.up.loss, 0.02, "loss both ways");
        assert_eq!(c.down.burst, Some(3.0));
        assert_eq!(c.up.rate_bps, None, "no uplink limit unless asked");
        assert_eq!(
            c.describe(),
            "300 kbit/s (queue 9375 B), 80 ms + 0–10 ms, 2 % loss in bursts of 3 packets"
        );
        let good = class("good=70%");
        assert!(good.down.is_transparent() && good.up.is_transparent());
        assert_eq!(class("x=5,rate=1mbit,queue=64kB").down.queue_bytes, 64_000);
        assert_eq!(class("x=5,rate=1mbit,queue=100ms").down.queue_bytes, 12_500);
        assert_eq!(class("x=5,up-rate=128kbit").up.rate_bps, Some(128_000));
        for bad in [
            "weak",
            "=10%",
            "weak=120%",
            "weak=10%,rate=fast",
            "weak=10%,colour=red",
            "weak=10%,loss=100%",
            "weak=10%,burst=0.5",
        ] {
            assert!(bad.parse::<LinkClass>().is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn assigns_shares_spread_over_the_join_order() {
        let classes = [class("good=70%"), class("mid=20%"), class("weak=10%")];
        let sites = assign(&classes, 100);
        let count = |k: usize| sites.iter().filter(|s| **s == Some(k)).count();
        assert_eq!((count(0), count(1), count(2)), (70, 20, 10));
        let first_ten: Vec<_> = sites.iter().take(10).collect();
        assert_eq!(first_ten.iter().filter(|s| ***s == Some(2)).count(), 1);
        let half = assign(&[class("good=50%"), class("weak=50%")], 6);
        assert_eq!(half.iter().filter(|s| **s == Some(1)).count(), 3);
        assert_ne!(half.first(), half.get(1), "alternating");
        let partial = assign(&[class("weak=25%")], 8);
        assert_eq!(partial.iter().filter(|s| s.is_none()).count(), 6);
        assert_eq!(assign(&classes, 0), Vec::<Option<usize>>::new());
    }
}
