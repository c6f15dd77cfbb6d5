//! Random input sequences to the meeting core (`diemcau::meeting::LiveMeeting`): joins of the
//! studio and of sites (invited or not, replacing each other), leaves for every reason, media
//! attachments and tracks, every chair action and site request from anyone, standby pages,
//! reissued codes, the console's clock and the end of the meeting. After every input the core's
//! invariants must hold (one studio; the floor holder a joined site; every consumer exactly as
//! the routing rule says, and every route the rule wants present; a muted site's audio paused on
//! every worker; a removed participant gone for good; each event dated at its input) and
//! nothing may panic. The byte format is `diemcau::meeting::testkit::run`'s: three bytes an
//! input.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| diemcau::meeting::testkit::run(data));
