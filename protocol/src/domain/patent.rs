//! CN patent application numbers (专利申请号). Since 2003: 12 digits — year (4), type (1), serial
//! (7) — then `.` and a check character; before 2003: 8 digits (2-digit year, type, 5-digit
//! serial). The check is `Σ dᵢ·wᵢ mod 11` with weights 2,3,4,5,6,7,8,9 repeating, and 10 written
//! `X`. Type digits: 1 invention, 2 utility model, 3 design, 8 PCT invention, 9 PCT utility model.
//! An optional `ZL`/`CN` prefix is accepted and dropped.

use std::fmt;

/// What the type digit of an application number says the patent is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatentKind {
    Invention,
    UtilityModel,
    Design,
}

/// A validated, normalised application number such as `202699903766.4`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatentNumber {
    normalised: String,
    kind: PatentKind,
}

impl PatentNumber {
    pub fn parse(input: &str) -> Result<PatentNumber, &'static str> {
        let s = input.trim().to_ascii_uppercase();
        let s = s
            .strip_prefix("ZL")
            .or_else(|| s.strip_prefix("CN"))
            .unwrap_or(&s);
        let (digits, check) = s
            .split_once('.')
            .ok_or("a patent application number is 12 (or 8) digits, '.', and a check character")?;
        if !(digits.len() == 12 || digits.len() == 8) || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(
                "a patent application number is 12 (or 8) digits, '.', and a check character",
            );
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        let sum: u32 = d
            .iter()
            .enumerate()
            .map(|(i, v)| v * (2 + (i as u32 % 8)))
            .sum();
        let expected = match sum % 11 {
            10 => "X".to_string(),
            n => n.to_string(),
        };
        if check != expected {
            return Err("check character does not match");
        }
        let (type_digit, year_ok) = if d.len() == 12 {
            let year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3];
            (d[4], (2003..=2099).contains(&year))
        } else {
            (d[2], true)
        };
        if !year_ok {
            return Err("12-digit application numbers start with a year from 2003");
        }
        let kind = match type_digit {
            1 | 8 => PatentKind::Invention,
            2 | 9 => PatentKind::UtilityModel,
            3 => PatentKind::Design,
            _ => return Err("type digit must be 1, 2, 3, 8 or 9"),
        };
        Ok(PatentNumber {
            normalised: format!("{digits}.{check}"),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.normalised
    }

    pub fn kind(&self) -> PatentKind {
        self.kind
    }
}

impl fmt::Display for PatentNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.normalised)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let p = PatentNumber::parse("zl202699903766.4").map(|p| p.normalised);
        assert_eq!(p, Ok("202699903766.4".to_string()));
        assert_eq!(
            PatentNumber::parse("202125850663.X").map(|p| p.kind),
            Ok(PatentKind::UtilityModel)
        );
        assert_eq!(
            PatentNumber::parse("202699903766.0"),
            Err("check character does not match")
        );
        assert!(PatentNumber::parse("2026999037664").is_err());
    }
}
