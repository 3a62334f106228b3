//! The unified social credit code (统一社会信用代码, GB 32100-2015): 18 characters from
//! `0-9A-HJ-NPQRTUWXY` (31 symbols, no I O S V Z); characters 3–8 are the six-digit
//! registration-authority region code; the 18th is a check character,
//! `(31 − Σ v(i)·3^(i−1) mod 31) mod 31` over the first 17, with weights reduced mod 31.

use std::fmt;

const ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";

/// A validated, normalised (upper-case, trimmed) USCC.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uscc(String);

fn value_of(c: u8) -> Option<u32> {
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u32)
}

impl Uscc {
    /// Trims, upper-cases and validates. The error is the rule that failed.
    pub fn parse(input: &str) -> Result<Uscc, &'static str> {
        let s = input.trim().to_ascii_uppercase();
        let b = s.as_bytes();
        if b.len() != 18 {
            return Err("a USCC has 18 characters");
        }
        let mut sum = 0u32;
        let mut weight = 1u32;
        for &c in &b[..17] {
            let v = value_of(c).ok_or("character outside the USCC alphabet 0-9A-HJ-NPQRTUWXY")?;
            sum += v * weight;
            weight = weight * 3 % 31;
        }
        let check =
            value_of(b[17]).ok_or("character outside the USCC alphabet 0-9A-HJ-NPQRTUWXY")?;
        if !b[2..8].iter().all(u8::is_ascii_digit) {
            return Err("characters 3-8 (the region code) must be six digits");
        }
        if check != (31 - sum % 31) % 31 {
            return Err("check character does not match (GB 32100-2015)");
        }
        Ok(Uscc(s))
    }

    /// Completes 17 characters with their check character (for synthetic test and demo data).
    pub fn with_check_character(first17: &str) -> Result<Uscc, &'static str> {
        let b = first17.trim().to_ascii_uppercase();
        if b.len() != 17 {
            return Err("need the first 17 characters of a USCC");
        }
        let mut sum = 0u32;
        let mut weight = 1u32;
        for c in b.bytes() {
            sum += value_of(c).ok_or("character outside the USCC alphabet 0-9A-HJ-NPQRTUWXY")?
                * weight;
            weight = weight * 3 % 31;
        }
        let check = ALPHABET[((31 - sum % 31) % 31) as usize] as char;
        Uscc::parse(&format!("{b}{check}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The six-digit registration-authority region code (characters 3–8).
    pub fn region_code(&self) -> &str {
        &self.0[2..8]
    }
}

impl fmt::Display for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Never prints the code itself: USCCs identify enterprises and must not reach logs by accident.
impl fmt::Debug for Uscc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Uscc(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        assert_eq!(
            Uscc::parse("91511500MA3M0C777N").map(|u| u.region_code().to_string()),
            Ok("511500".into())
        );
        assert_eq!(
            Uscc::parse(" 91511500ma3m0c777n ").map(|u| u.0),
            Ok("91511500MA3M0C777N".into())
        );
        assert_eq!(
            Uscc::parse("91511500MA3M0C777P"),
            Err("check character does not match (GB 32100-2015)")
        );
        assert!(format!("{:?}", Uscc::parse("91511500MA3M0C777N")).contains("redacted"));
        assert_eq!(
            Uscc::with_check_character("91511500MA3M0C777").map(|u| u.0),
            Ok("91511500MA3M0C777N".into())
        );
    }
}
