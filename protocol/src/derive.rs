//! Derived fields the issuer signs so that minimized views still verify (DESIGN §4): the subject
//! pseudonym, amount bands and the city-level region.
//!
//! The pseudonym is HMAC-SHA256 of the normalised USCC under a key derived with HKDF-SHA256 from
//! the consortium's pseudonym secret, per purpose and epoch. A plain hash would not do: USCCs are
//! public, so anyone could hash all of them and reverse it. Members without the secret (the
//! risk-warning member, auditors) can link records by pseudonym but cannot compute one.

use zeroize::Zeroizing;

use crate::domain::{Date, Uscc};
use crate::ids::Timestamp;
use crate::limits::PSEUDONYM_SECRET_BYTES_MIN;
use crate::schema::{FieldSpec, FieldValue, RecordKind};
use crate::validate::RecordBody;

/// HKDF salt: versions the derivation so a future scheme cannot collide with this one.
const PSEUDONYM_HKDF_SALT: &[u8] = b"tfx/pseudonym/v1";
/// Pseudonyms are HMAC-SHA256 truncated to 128 bits (RFC 2104 §5 allows ≥ half the output):
/// collision-free at any plausible number of enterprises, and half the bytes in every record.
const PSEUDONYM_HEX_LEN: usize = 32;

/// The purpose the risk-warning system's pseudonyms are derived for.
pub const PURPOSE_RISK_WARNING: &str = "risk-warning";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PseudonymError {
    #[error("pseudonym secret too short: {0} bytes (min {PSEUDONYM_SECRET_BYTES_MIN})")]
    SecretTooShort(usize),
    #[error("pseudonym purpose must be 1 to 64 characters from a-z, 0-9 and '-'")]
    Purpose,
}

/// A per-purpose, per-epoch pseudonym key. Key bytes are zeroized on drop and never printed.
pub struct PseudonymKey {
    key: Zeroizing<[u8; 32]>,
    epoch: u32,
}

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PseudonymKey(epoch {}, <redacted>)", self.epoch)
    }
}

impl PseudonymKey {
    pub fn derive(secret: &[u8], purpose: &str, epoch: u32) -> Result<Self, PseudonymError> {
        if secret.len() < PSEUDONYM_SECRET_BYTES_MIN {
            return Err(PseudonymError::SecretTooShort(secret.len()));
        }
        let purpose_ok = (1..=64).contains(&purpose.len())
            && purpose
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !purpose_ok {
            return Err(PseudonymError::Purpose);
        }
        let prk =
            ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, PSEUDONYM_HKDF_SALT).extract(secret);
        let epoch_bytes = epoch.to_be_bytes();
        let info = [purpose.as_bytes(), &[0u8], &epoch_bytes];
        let mut key = Zeroizing::new([0u8; 32]);
        // HKDF-Expand fails only for outputs over 255 hash lengths; 32 bytes is one.
        let okm = prk
            .expand(&info, ring::hkdf::HKDF_SHA256)
            .map_err(|_| PseudonymError::Purpose)?;
        okm.fill(&mut key[..])
            .map_err(|_| PseudonymError::Purpose)?;
        Ok(PseudonymKey { key, epoch })
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// `ps1.<epoch>.<first 16 bytes of HMAC-SHA256(key, USCC) in hex>`.
    pub fn pseudonym(&self, subject: &Uscc) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.key[..]);
        let tag = ring::hmac::sign(&key, subject.as_str().as_bytes());
        format!(
            "ps1.{}.{}",
            self.epoch,
            hex::encode(&tag.as_ref()[..PSEUDONYM_HEX_LEN / 2])
        )
    }
}

/// The consortium pseudonym secret as an issuer holds it: the key for each record comes from the
/// epoch of its issue time, so pseudonyms rotate at the turn of the epoch (the UTC calendar
/// year) without a new secret or a restart. Secret bytes are zeroized on drop and never printed.
pub struct PseudonymSecret {
    secret: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for PseudonymSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymSecret(<redacted>)")
    }
}

impl PseudonymSecret {
    /// Checks the secret's length once, so deriving from it later cannot fail on it.
    pub fn new(secret: &[u8]) -> Result<Self, PseudonymError> {
        if secret.len() < PSEUDONYM_SECRET_BYTES_MIN {
            return Err(PseudonymError::SecretTooShort(secret.len()));
        }
        Ok(PseudonymSecret {
            secret: Zeroizing::new(secret.to_vec()),
        })
    }

    /// The epoch of a record issued at `at`: its UTC calendar year (SPEC §4.6).
    pub fn epoch_at(at: Timestamp) -> u32 {
        let year = Date::from_days_since_epoch((at.0 / 86_400_000) as i64).year();
        u32::from(year)
    }

    /// The risk-warning pseudonym key for records issued at `at`.
    pub fn key_at(&self, at: Timestamp) -> Result<PseudonymKey, PseudonymError> {
        PseudonymKey::derive(&self.secret, PURPOSE_RISK_WARNING, Self::epoch_at(at))
    }
}

/// Whether `s` has the pseudonym shape `ps1.<epoch>.<32 lowercase hex>`.
pub fn is_pseudonym(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some("ps1"), Some(epoch), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let epoch_ok = !epoch.is_empty()
        && epoch.len() <= 10
        && epoch.bytes().all(|b| b.is_ascii_digit())
        && (epoch == "0" || !epoch.starts_with('0'))
        && epoch.parse::<u32>().is_ok();
    let tag_ok = tag.len() == PSEUDONYM_HEX_LEN
        && tag
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    epoch_ok && tag_ok
}

/// One amount band: amounts in `[min_fen, next band's min_fen)`.
#[derive(Debug)]
pub struct AmountBand {
    pub label: &'static str,
    pub min_fen: u64,
}

const YUAN: u64 = 100;
const MILLION_YUAN: u64 = 1_000_000 * YUAN;

/// Bands follow the size classes of technology-enterprise lending in the seed policy: under
/// ¥1m (micro credit), ¥1–5m and ¥5–10m (typical 科创贷 / points loans), ¥10–50m, ¥50–100m, and
/// ¥100m and over.
pub const AMOUNT_BANDS: &[AmountBand] = &[
    AmountBand {
        label: "lt-1m-cny",
        min_fen: 0,
    },
    AmountBand {
        label: "1m-5m-cny",
        min_fen: MILLION_YUAN,
    },
    AmountBand {
        label: "5m-10m-cny",
        min_fen: 5 * MILLION_YUAN,
    },
    AmountBand {
        label: "10m-50m-cny",
        min_fen: 10 * MILLION_YUAN,
    },
    AmountBand {
        label: "50m-100m-cny",
        min_fen: 50 * MILLION_YUAN,
    },
    AmountBand {
        label: "ge-100m-cny",
        min_fen: 100 * MILLION_YUAN,
    },
];

pub fn amount_band(fen: u64) -> &'static str {
    AMOUNT_BANDS
        .iter()
        .rev()
        .find(|b| fen >= b.min_fen)
        .map_or("lt-1m-cny", |b| b.label)
}

/// City-level division of a six-digit region code: `510104` (Jinjiang district) → `510100`
/// (Chengdu).
pub fn region_city(code: &str) -> String {
    format!("{}00", &code[..code.len().min(4)])
}

/// The derived fields of `body`, in schema order. The pseudonym is omitted when the issuer holds
/// no pseudonym key (its decoy takes the slot, so the header looks the same).
pub fn derived_fields(
    body: &RecordBody,
    pseudonym: Option<&PseudonymKey>,
) -> Vec<(&'static FieldSpec, FieldValue)> {
    let mut out = Vec::new();
    let mut push = |name: &str, value: FieldValue| {
        if let Some(spec) = body.kind.field(name) {
            out.push((spec, value));
        }
    };
    if body.kind != RecordKind::RiskWarning {
        let uscc = body
            .get("subject_uscc")
            .and_then(FieldValue::as_text)
            .and_then(|s| Uscc::parse(s).ok());
        if let (Some(key), Some(uscc)) = (pseudonym, uscc) {
            push("subject_pseudonym", FieldValue::Text(key.pseudonym(&uscc)));
        }
    }
    let band = |name: &str| {
        body.get(name)
            .and_then(FieldValue::as_int)
            .map(|n| FieldValue::Text(amount_band(n).into()))
    };
    match body.kind {
        RecordKind::Credit => {
            if let Some(b) = band("contract_amount_fen") {
                push("contract_amount_band", b);
            }
            if let Some(b) = band("balance_fen") {
                push("balance_band", b);
            }
            if let Some(code) = body.get("region_code").and_then(FieldValue::as_text) {
                push("region_city", FieldValue::Text(region_city(code)));
            }
        }
        RecordKind::IpValuation => {
            if let Some(b) = band("valuation_fen") {
                push("valuation_band", b);
            }
        }
        RecordKind::Monitoring => {
            if let Some(b) = band("amount_fen") {
                push("amount_band", b);
            }
        }
        RecordKind::RiskWarning => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_rotates_pseudonyms_at_the_turn_of_the_year() -> Result<(), PseudonymError> {
        assert_eq!(
            PseudonymSecret::new(&[1u8; 31]).err(),
            Some(PseudonymError::SecretTooShort(31))
        );
        let secret = PseudonymSecret::new(&[1u8; 32])?;
        // 2027-01-01T00:00:00Z is 1 798 761 600 s after the Unix epoch.
        let new_year = Timestamp(1_798_761_600_000);
        let before = secret.key_at(Timestamp(new_year.0 - 1))?;
        let after = secret.key_at(new_year)?;
        assert_eq!((before.epoch(), after.epoch()), (2026, 2027));
        let uscc = Uscc::parse("91511500MA3M0C777N").unwrap_or_else(|e| panic!("{e}"));
        let (p0, p1) = (before.pseudonym(&uscc), after.pseudonym(&uscc));
        assert!(p0.starts_with("ps1.2026.") && p1.starts_with("ps1.2027."));
        assert_ne!(p0[9..], p1[9..], "a new epoch unlinks the pseudonym");
        // The same derivation as the fixed-epoch key the vectors use.
        let fixed = PseudonymKey::derive(&[1u8; 32], PURPOSE_RISK_WARNING, 2026)?;
        assert_eq!(fixed.pseudonym(&uscc), p0);
        Ok(())
    }

    #[test]
    fn bands_at_edges() {
        assert_eq!(amount_band(0), "lt-1m-cny");
        assert_eq!(amount_band(MILLION_YUAN - 1), "lt-1m-cny");
        assert_eq!(amount_band(MILLION_YUAN), "1m-5m-cny");
        assert_eq!(amount_band(100 * MILLION_YUAN), "ge-100m-cny");
        assert_eq!(region_city("510104"), "510100");
    }

    #[test]
    fn pseudonyms_are_keyed_and_per_epoch() {
        let uscc = Uscc::parse("91511500MA3M0C777N").unwrap_or_else(|e| panic!("{e}"));
        let k =
            |secret: u8, epoch| PseudonymKey::derive(&[secret; 32], PURPOSE_RISK_WARNING, epoch);
        let p = |key: Result<PseudonymKey, _>| key.map(|k| k.pseudonym(&uscc));
        let a = p(k(1, 2026));
        assert_eq!(a, p(k(1, 2026)));
        assert_ne!(a, p(k(2, 2026)));
        assert_ne!(a, p(k(1, 2027)));
        assert!(a.as_deref().is_ok_and(is_pseudonym));
        assert!(!format!("{:?}", k(1, 1)).contains("01010101"));
        assert_eq!(k(1, 1).map(|_| ()).err(), None);
        assert_eq!(
            PseudonymKey::derive(&[1; 31], "risk-warning", 1).err(),
            Some(PseudonymError::SecretTooShort(31))
        );
    }

    #[test]
    fn pseudonym_shape() {
        assert!(is_pseudonym("ps1.0.0123456789abcdef0123456789abcdef"));
        for bad in [
            "ps1.01.0123456789abcdef0123456789abcdef",
            "ps2.1.0123456789abcdef0123456789abcdef",
            "ps1.1.0123456789ABCDEF0123456789abcdef",
            "ps1.1.0123",
            "ps1..0123456789abcdef0123456789abcdef",
            "ps1.1.0123456789abcdef0123456789abcdef.x",
            "ps1.99999999999.0123456789abcdef0123456789abcdef",
        ] {
            assert!(!is_pseudonym(bad), "{bad}");
        }
    }
}
