//! Identifiers and positions as newtypes, so a sequence number is never mistaken for a size and a
//! member id is validated once, where it enters.

use std::fmt;

use crate::limits::MEMBER_ID_BYTES_MAX;

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A consortium member's id: `[a-z0-9][a-z0-9.-]{0,63}`. It appears in certificates
/// (`URI:tfx:member:<id>`), record headers and store keys, so it is kept to a small alphabet.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid member id {id:?}: {rule}")]
pub struct MemberIdError {
    pub id: String,
    pub rule: &'static str,
}

impl MemberId {
    pub fn new(id: &str) -> Result<Self, MemberIdError> {
        let err = |rule| {
            Err(MemberIdError {
                id: id.chars().take(80).collect(),
                rule,
            })
        };
        if id.is_empty() || id.len() > MEMBER_ID_BYTES_MAX {
            return err("must be 1 to 64 bytes");
        }
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if !id.chars().all(ok_char) {
            return err("only a-z, 0-9, '-' and '.' are allowed");
        }
        if !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return err("must start with a letter or digit");
        }
        Ok(MemberId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId({})", self.0)
    }
}

/// A record's id: SHA-256 of its envelope bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(pub Hash);

impl RecordId {
    pub fn of_envelope(envelope: &[u8]) -> Self {
        RecordId(sha256(envelope))
    }

    /// Parses 64 lowercase or uppercase hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(RecordId(out))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", &self.to_hex()[..16])
    }
}

/// A position in an origin's log: the leaf index, equal to the record's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogIndex(pub u64);

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Milliseconds since the Unix epoch, UTC. Time always comes in as an argument: `protocol` never
/// reads a clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (UTC only: records carry no time zones).
    pub fn parse_rfc3339(s: &str) -> Result<Timestamp, &'static str> {
        const FORMAT: &str = "times are written YYYY-MM-DDTHH:MM:SS[.mmm]Z (UTC)";
        let s = s.strip_suffix('Z').ok_or(FORMAT)?;
        let (date, time) = s.split_once('T').ok_or(FORMAT)?;
        let days = crate::domain::Date::parse(date)?.days_since_epoch();
        let (hms, frac) = time.split_once('.').unwrap_or((time, "000"));
        let num = |t: &str, max: u64| t.parse::<u64>().ok().filter(|v| *v <= max && t.len() == 2);
        let parts: Vec<&str> = hms.split(':').collect();
        let [h, m, sec] = parts.as_slice() else {
            return Err(FORMAT);
        };
        let (h, m, sec) = (
            num(h, 23).ok_or(FORMAT)?,
            num(m, 59).ok_or(FORMAT)?,
            num(sec, 59).ok_or(FORMAT)?,
        );
        if frac.len() != 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(FORMAT);
        }
        let ms = frac.parse::<u64>().map_err(|_| FORMAT)?;
        let days = u64::try_from(days).map_err(|_| "times before 1970 are not supported")?;
        Ok(Timestamp(
            ((days * 86_400 + h * 3600 + m * 60 + sec) * 1000) + ms,
        ))
    }

    /// RFC 3339 in UTC with milliseconds, for human output.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0 % 1000;
        let secs = self.0 / 1000;
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let date = crate::domain::Date::from_days_since_epoch(days as i64);
        format!(
            "{date}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids() {
        for ok in ["bank-a", "ip-center", "a", "pbc.chengdu", &"x".repeat(64)] {
            assert!(MemberId::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Bank", "-a", "a b", "银行", &"x".repeat(65)] {
            assert!(MemberId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_785_000_000_123).to_rfc3339(),
            "2026-07-25T17:20:00.123Z"
        );
    }
}
