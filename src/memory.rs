//! Giving the system back memory the hub has freed.
//!
//! glibc's allocator keeps the pages of what is freed resident inside its arenas. An argon2
//! hash (each login, each password set) takes 19 MiB for a moment; once freed, glibc kept
//! them for the rest of the process's life, nearly as much again as the whole hub before its
//! first site. [`trim`] (glibc's `malloc_trim(0)`) hands every arena's free pages back to the
//! system; the hub calls it after each hash.

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
