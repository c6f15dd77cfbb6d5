//! Any bytes as the body of `POST /api/meetings`, read as the API reads it and, when it is a
//! plan, created in a real store (SQLite in a temporary directory, with a small directory of
//! sites), as the API does.
//!
//! Nothing panics; a plan the API reads is either refused by the store with its reason or
//! created, and a created meeting reads back with the title normalised by the one text check,
//! its roster only of directory sites, and a join code for each.

#![no_main]

use std::sync::OnceLock;

use diemcau::api::new_meeting_from_json;
use diemcau::directory::parse_csv;
use diemcau::store::Store;
use diemcau_signaling::text::human_text;
use libfuzzer_sys::fuzz_target;

const DIRECTORY: &[u8] = b"admin_code,name,level,parent_code,parent_name,delegates\n\
2269,X\xc3\xa3 Th\xc6\xb0\xe1\xbb\xa3ng L\xc3\xa2m,x\xc3\xa3,8,Tuy\xc3\xaan Quang,40\n\
2266,X\xc3\xa3 L\xc3\xa2m B\xc3\xacnh,x\xc3\xa3,8,Tuy\xc3\xaan Quang,35\n\
8,Tuy\xc3\xaan Quang,t\xe1\xbb\x89nh,,,0\n";

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("diemcau-fuzz-api-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).expect("a store in a temporary directory");
        let sites = parse_csv(DIRECTORY).expect("the fixed directory");
        store.import_sites(&sites).expect("imported");
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(plan) = new_meeting_from_json(data) else {
        return;
    };
    let Ok(view) = store().create_meeting(&plan) else {
        return;
    };
    let title = human_text(plan.title.trim(), 200).expect("a created meeting's title passed");
    assert_eq!(view.plan.title, title);
    assert!(!view.plan.roster.is_empty());
    for site in &view.plan.roster {
        assert!(
            ["2269", "2266", "8"].contains(&site.code.as_str()),
            "{site:?}"
        );
    }
    assert_eq!(view.site_codes.len(), view.plan.roster.len());
});
