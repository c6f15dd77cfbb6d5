//! The pages speak Vietnamese and English: every string key in `web-client/js/i18n.js` has a
//! text in both languages, so switching language never shows a key or falls back to the other
//! language.

use std::collections::BTreeSet;

const SOURCE: &str = include_str!("../web-client/js/i18n.js");

/// The keys of one language's block (`  vi: {` ... `  },`).
fn keys(language: &str) -> BTreeSet<String> {
    let block = SOURCE
        .split_once(&format!("\n  {language}: {{"))
        .and_then(|(_, rest)| rest.split_once("\n  },"))
        .map(|(block, _)| block)
        .unwrap_or_else(|| panic!("i18n.js has a `{language}` block"));
    block
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix('\'')
                .and_then(|rest| rest.split_once("':"))
                .map(|(key, _)| key.to_owned())
        })
        .collect()
}

#[test]
fn vietnamese_and_english_have_the_same_keys() {
    let vi = keys("vi");
    let en = keys("en");
    assert!(vi.len() > 100, "read {} Vietnamese keys", vi.len());
    let only_vi: Vec<_> = vi.difference(&en).collect();
    let only_en: Vec<_> = en.difference(&vi).collect();
    assert!(
        only_vi.is_empty() && only_en.is_empty(),
        "without English: {only_vi:?}; without Vietnamese: {only_en:?}"
    );
    for key in ["report.xlsx", "report.xlsxTitle"] {
        assert!(vi.contains(key), "{key}");
    }
}
