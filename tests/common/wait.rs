//! Waiting for what a test asserts: a condition polled until it holds, under a deadline that
//! fails the test naming what never happened. Tests wait this way for a count of packets, a
//! report row or a state the hub reaches on its own time, never for a fixed delay.
//!
//! Include it with `#[path = "common/wait.rs"] mod wait;`.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at again. Only a polling period: a wait ends as soon as
/// the condition holds.
pub const POLL_PERIOD: Duration = Duration::from_millis(50);

/// Polls `holds` until it is true; panics after `limit` with "timed out waiting for `what`".
pub async fn until(what: &str, limit: Duration, mut holds: impl FnMut() -> bool) {
    until_explained(what, limit, &mut holds, String::new).await;
}

/// Like [`until`], with `explain()` (the state of the clients, say) in the failure message.
pub async fn until_explained(
    what: &str,
    limit: Duration,
    mut holds: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let outcome = poll(limit, || {
        std::future::ready(if holds() { Ok(()) } else { Err(()) })
    })
    .await;
    if outcome.is_err() {
        panic!(
            "timed out after {limit:?} waiting for {what}\n{}",
            explain()
        );
    }
}

/// Polls the async `probe` until it gives `Some`, and returns that; panics after `limit` with
/// "timed out waiting for `what`".
pub async fn until_some<T, F>(what: &str, limit: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Option<T>>,
{
    poll(limit, || {
        let probed = probe();
        async move { probed.await.ok_or(()) }
    })
    .await
    .unwrap_or_else(|()| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Polls the async `probe` until it gives `Ok`, for at most `limit`; on timeout, the last
/// `Err` (what is still missing), for the caller's failure message.
pub async fn poll<T, E, F>(limit: Duration, mut probe: impl FnMut() -> F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(done) => return Ok(done),
            Err(missing) if Instant::now() >= deadline => return Err(missing),
            Err(_) => tokio::time::sleep(POLL_PERIOD).await,
        }
    }
}
