//! Giving the system back memory the hub has freed.
//!
//! glibc's allocator keeps the pages of what is freed resident inside its arenas. An argon2
//! hash (each login, each password set) takes 19 MiB for a moment; once freed, glibc kept
//! them for the rest of the process's life, nearly as much again as the whole hub before its
//! first site. [`trim`] (glibc's `malloc_trim(0)`) hands every arena's free pages back to the
//! system; the hub calls it after each hash, and every [`TRIM_EVERY`] ([`run_trim`]): what
//! the hub holds for a moment (a site's handshake, its offer and answer, signalling
//! messages, packets on their way) is freed between what it keeps, and glibc kept those
//! pages resident too, about a tenth of the hub's memory per site at 50 and 200 sites
//! (BENCHMARKS.md, "Freed pages given back every ten seconds").

use std::time::{Duration, Instant};

/// How often [`run_trim`] hands back what the allocator keeps free.
pub const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Every `every`, hands every arena's free pages back to the system, on a blocking thread:
/// a trim walks each arena under its lock (0.2-1.5 ms in the benchmarks at 200 and 1,000
/// sites), and a thread that allocates in an arena being walked waits for it.
pub async fn run_trim(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let took = tokio::task::spawn_blocking(|| {
            let started = Instant::now();
            trim();
            started.elapsed()
        })
        .await;
        if let Ok(took) = took {
            tracing::debug!(micros = took.as_micros() as u64, "freed memory handed back");
        }
    }
}

/// Hands every arena's free pages back to the system now.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: `malloc_trim` takes no pointer and is safe to call from any thread at any time;
    // it locks each arena while it walks it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Nothing to hand back where the allocator is not glibc's.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
