//! The one check of text that people type and others read: a hall's declaration (who confirmed
//! a head count, their position), a site's name in the directory, a meeting's title. It is
//! stored as the words of a named person or an office, so what is shown must be what was
//! written: no control or format characters (right-to-left overrides, zero-width characters,
//! tag characters), no line or paragraph separators, no non-characters, and not blank. Accepted
//! text is normalised to NFC, so "Nguyễn" typed with combining marks and "Nguyễn" typed with
//! precomposed letters are stored, compared and exported the same.

use unicode_normalization::UnicodeNormalization;

/// Why a text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("must not be empty or blank")]
    Blank,
    #[error("must be at most {max} characters")]
    TooLong { max: usize },
    #[error("must not contain the invisible or control character U+{0:04X}")]
    Forbidden(u32),
}

/// Checks `value` and returns it normalised to NFC, at most `max_chars` characters long.
pub fn human_text(value: &str, max_chars: usize) -> Result<String, TextError> {
    if let Some(c) = value.chars().find(|c| forbidden(*c)) {
        return Err(TextError::Forbidden(u32::from(c)));
    }
    let normalised: String = value.nfc().collect();
    if normalised.trim().is_empty() {
        return Err(TextError::Blank);
    }
    if normalised.chars().count() > max_chars {
        return Err(TextError::TooLong { max: max_chars });
    }
    Ok(normalised)
}

/// Control characters (Cc), format characters (Cf: bidirectional controls, zero-width
/// characters, tags...), line and paragraph separators (Zl, Zp), and non-characters.
fn forbidden(c: char) -> bool {
    let u = u32::from(c);
    c.is_control()
        || matches!(
            u,
            0x00AD
                | 0x0600..=0x0605
                | 0x061C
                | 0x06DD
                | 0x070F
                | 0x0890..=0x0891
                | 0x08E2
                | 0x180E
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x2064
                | 0x2066..=0x206F
                | 0xFDD0..=0xFDEF
                | 0xFEFF
                | 0xFFF9..=0xFFFB
                | 0x110BD
                | 0x110CD
                | 0x13430..=0x1343F
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0001
                | 0xE0020..=0xE007F
        )
        || u & 0xFFFE == 0xFFFE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vietnamese_names_pass_and_are_normalised() {
        assert_eq!(human_text("Nguyễn Văn An", 128), Ok("Nguyễn Văn An".into()));
        // "ễ" as e + circumflex + tilde (combining marks) becomes one precomposed letter.
        let decomposed = "Nguye\u{302}\u{303}n";
        let stored = human_text(decomposed, 128).expect("valid");
        assert_eq!(stored, "Nguyễn");
        assert_eq!(stored.chars().count(), 6);
        assert_eq!(
            human_text("Chủ tịch UBND xã", 10),
            Err(TextError::TooLong { max: 10 })
        );
    }

    #[test]
    fn invisible_and_spoofing_characters_are_refused() {
        for bad in [
            "abc\u{202E}cba",
            "\u{200B}\u{200B}",
            "x\u{200D}y",
            "tag\u{E0041}",
            "line\u{2028}break",
            "para\u{2029}",
            "non\u{FFFF}char",
            "non\u{FDD0}char",
            "bom\u{FEFF}",
            "nul\u{0}",
            "bell\u{7}",
            "new\nline",
            "isolate\u{2067}",
        ] {
            assert!(
                matches!(human_text(bad, 128), Err(TextError::Forbidden(_))),
                "{bad:?} accepted"
            );
        }
        assert_eq!(human_text("   ", 128), Err(TextError::Blank));
        assert_eq!(human_text("", 128), Err(TextError::Blank));
    }
}
