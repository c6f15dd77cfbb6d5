//! A process's memory as Linux reports it in `/proc/PID/status`.
//!
//! Include it with `#[path = "common/proc_status.rs"] mod proc_status;`.

#![allow(dead_code)]

/// The `field` line of `/proc/{pid}/status` (`pid` a number, or `self`) in KiB: `VmRSS` the
/// resident memory, `RssAnon` its private part.
pub fn kib(pid: &str, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("a {field} line in {path}"))
}
