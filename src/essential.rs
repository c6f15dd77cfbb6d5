//! The hub's essential threads: the media workers, the media TCP listener, the attendance
//! recorder, the recording thread and the listener for other hubs' signals.
//!
//! The hub cannot do its work without any one of them: a media worker that stops leaves
//! every site on it without sound or picture while their pages still show them connected,
//! and a recorder that stops loses every attendance event after it. So a fault in one (a
//! panic, or a media worker that cannot watch its socket) stops the whole process at once with
//! [`FAULT_EXIT_STATUS`], as a crash would: its supervisor (systemd's `Restart=on-failure`,
//! `packaging/diemcau.service`) starts it again, the start closes the sessions the fault
//! left open at the last moment the hub knew them alive (`hub_crash`), and the sites' pages
//! join again as they do after any loss of the hub. A panic that a site's media provokes in
//! the media library is not such a fault: the worker contains it to that site's connection
//! (`diemcau_sfu::Peer::contain`) and goes on.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::thread::JoinHandle;

/// The exit status of a hub stopped by the fault of an essential thread (`EX_SOFTWARE`: an
/// internal software error).
pub const FAULT_EXIT_STATUS: i32 = 70;

/// Starts the essential thread `name` running `body`. A panic in `body` ends the process
/// ([`fail`]); `body` returning ends the thread, as the hub asked.
pub fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    let thread = name.to_owned();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(body)) {
                fail(&thread, &panic_message(panic.as_ref()));
            }
        })
}

/// Ends the process at once with [`FAULT_EXIT_STATUS`], after saying in the log which
/// essential thread failed and why.
pub fn fail(thread: &str, why: &str) -> ! {
    tracing::error!(
        thread,
        "an essential thread failed ({why}): the hub stops now, as after a crash, for its \
         supervisor to start it again (exit status {FAULT_EXIT_STATUS})"
    );
    std::process::exit(FAULT_EXIT_STATUS)
}

/// What a panic said ([`diemcau_sfu::panic_message`]), or that it was one.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    diemcau_sfu::panic_message(panic).unwrap_or_else(|| "a panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn a_panic_says_its_message() {
        let literal = std::panic::catch_unwind(|| panic!("a literal")).expect_err("panics");
        assert_eq!(panic_message(literal.as_ref()), "a literal");
        let formatted = std::panic::catch_unwind(|| panic!("worker {}", 3)).expect_err("panics");
        assert_eq!(panic_message(formatted.as_ref()), "worker 3");
        let other = std::panic::catch_unwind(|| std::panic::panic_any(7_u8)).expect_err("panics");
        assert_eq!(panic_message(other.as_ref()), "a panic");
    }
}
