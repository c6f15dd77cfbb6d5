//! Identifiers that cross the wire and the hub's layers, each parsed once at the edge: a value
//! of one of these types is valid by construction, so nothing downstream checks it again.
//!
//! On the wire they keep their plain JSON form (a number for a meeting, a string for a code);
//! `serde(try_from)` runs the checks while a message is parsed.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A meeting, as numbered by the hub's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeetingId(pub i64);

impl fmt::Display for MeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for MeetingId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(MeetingId)
    }
}

/// A join code: 1 to 64 ASCII letters and digits (the hub issues 20 lower-case ones).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JoinCode(String);

/// Why a text is not a join code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `code` must be 1 to 64 ASCII letters and digits")]
pub struct InvalidJoinCode;

impl JoinCode {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for JoinCode {
    type Error = InvalidJoinCode;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        if code.is_empty()
            || code.len() > Self::MAX_LEN
            || !code.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(InvalidJoinCode);
        }
        Ok(JoinCode(code))
    }
}

impl TryFrom<&str> for JoinCode {
    type Error = InvalidJoinCode;

    fn try_from(code: &str) -> Result<Self, Self::Error> {
        JoinCode::try_from(code.to_owned())
    }
}

impl From<JoinCode> for String {
    fn from(code: JoinCode) -> String {
        code.0
    }
}

impl fmt::Display for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A site's administrative code: 1 to 12 digits, leading zeros kept (`"00004"` is a commune,
/// `"01"` a province).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SiteCode(String);

/// Why a text is not an administrative code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `site` must be an administrative code (digits)")]
pub struct InvalidSiteCode;

impl SiteCode {
    pub const MAX_LEN: usize = 12;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SiteCode {
    type Error = InvalidSiteCode;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        if code.is_empty()
            || code.len() > Self::MAX_LEN
            || !code.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(InvalidSiteCode);
        }
        Ok(SiteCode(code))
    }
}

impl TryFrom<&str> for SiteCode {
    type Error = InvalidSiteCode;

    fn try_from(code: &str) -> Result<Self, Self::Error> {
        SiteCode::try_from(code.to_owned())
    }
}

impl From<SiteCode> for String {
    fn from(code: SiteCode) -> String {
        code.0
    }
}

impl fmt::Display for SiteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for SiteCode {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// One attendance session of a site: from its join to its leave. Unique across restarts of the
/// hub (the hub's start time, then the participant).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_checked_once_when_parsed() {
        assert!(JoinCode::try_from("abc123").is_ok());
        assert_eq!(JoinCode::try_from(""), Err(InvalidJoinCode));
        assert_eq!(JoinCode::try_from("a b"), Err(InvalidJoinCode));
        assert_eq!(JoinCode::try_from("x".repeat(65)), Err(InvalidJoinCode));
        assert!(SiteCode::try_from("00004").is_ok());
        assert_eq!(SiteCode::try_from("0a"), Err(InvalidSiteCode));
        assert_eq!(SiteCode::try_from("1".repeat(13)), Err(InvalidSiteCode));
        let parsed: SiteCode = serde_json::from_str("\"001\"").expect("a site code");
        assert_eq!(parsed.as_str(), "001");
        assert!(serde_json::from_str::<JoinCode>("\"no-dash\"").is_err());
        assert_eq!(
            serde_json::to_string(&MeetingId(7)).expect("serialise"),
            "7"
        );
    }
}
