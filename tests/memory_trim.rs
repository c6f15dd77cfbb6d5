//! The hub's trim (`diemcau::memory::trim`, run after each password hash and every 10 s)
//! hands the pages of freed memory back to the system: glibc keeps them resident otherwise
//! where what is freed lies between what is kept. A test binary of its own, so that no other
//! test allocates while the process's resident memory is read.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

#[path = "common/proc_status.rs"]
mod proc_status;

/// The process's private resident memory, in KiB.
fn resident_anonymous_kib() -> u64 {
    proc_status::kib("self", "RssAnon")
}

#[test]
fn freed_memory_between_kept_memory_is_given_back() {
    // 64 MiB in blocks below glibc's threshold for a mapping of their own, so they come from
    // an arena; one block in 16 is kept, so the freed ones lie between kept ones and glibc
    // cannot give them back by shrinking the arena's top.
    const BLOCK: usize = 32 * 1024;
    const BLOCKS: usize = 2048;
    let mut blocks: Vec<Vec<u8>> = (0..BLOCKS)
        .map(|i| vec![(i % 251) as u8 + 1; BLOCK])
        .collect();
    let kept: Vec<Vec<u8>> = blocks.iter_mut().step_by(16).map(std::mem::take).collect();
    drop(blocks);

    let freed_and_resident = resident_anonymous_kib();
    diemcau::memory::trim();
    let trimmed = resident_anonymous_kib();

    let given_back = freed_and_resident.saturating_sub(trimmed);
    assert!(
        given_back >= 32 * 1024,
        "{given_back} KiB given back of the 60 MiB freed ({freed_and_resident} KiB resident \
         before the trim, {trimmed} after)"
    );
    // What was kept is still there.
    assert!(kept.iter().all(|b| b.len() == BLOCK && b[0] != 0));
}
