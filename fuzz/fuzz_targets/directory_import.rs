//! Any bytes as a sites directory CSV, as an organizer uploads it to `POST /api/sites/import`.
//!
//! `directory::parse_csv` never panics; a file it accepts holds only sites whose codes are 1 to
//! 12 digits and whose names pass the one text check (no control or invisible characters,
//! NFC), and it round-trips: the directory's own export of those sites (`GET /api/sites.csv`,
//! with formula-leading names escaped) reads back as the same sites.

#![no_main]

use diemcau::directory::{parse_csv, write_csv};
use diemcau_signaling::text::human_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(sites) = parse_csv(data) else {
        return;
    };
    for site in &sites {
        assert!(
            !site.code.is_empty()
                && site.code.len() <= 12
                && site.code.bytes().all(|b| b.is_ascii_digit()),
            "code {:?} accepted",
            site.code
        );
        assert_eq!(human_text(&site.name, 200).as_ref(), Ok(&site.name));
        if let Some(parent) = &site.parent_name {
            assert_eq!(human_text(parent, 200).as_ref(), Ok(parent));
        }
    }
    let exported = write_csv(&sites);
    let again = parse_csv(&exported).expect("the hub's own export reads back");
    assert_eq!(again, sites, "export and import round-trip");
});
