//! Calendar dates (`YYYY-MM-DD`, proleptic Gregorian) and reporting periods (`2026Q3`), parsed
//! strictly: one spelling per value, so the signed text is the canonical one.

use std::fmt;

/// A calendar date. Ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 31,
    }
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl Date {
    /// Parses `YYYY-MM-DD` with years 1900–2199 (anything else in credit data is a typo).
    pub fn parse(s: &str) -> Result<Date, &'static str> {
        const FORMAT: &str = "dates are written YYYY-MM-DD";
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(FORMAT);
        }
        let year = digits(&s[0..4]).ok_or(FORMAT)? as u16;
        let month = digits(&s[5..7]).ok_or(FORMAT)? as u8;
        let day = digits(&s[8..10]).ok_or(FORMAT)? as u8;
        if !(1900..=2199).contains(&year) {
            return Err("year must be between 1900 and 2199");
        }
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return Err("no such calendar day");
        }
        Ok(Date { year, month, day })
    }

    /// Days from 1970-01-01 to this date (Howard Hinnant's `days_from_civil`).
    pub fn days_since_epoch(self) -> i64 {
        let (m, d) = (i64::from(self.month), i64::from(self.day));
        let y = i64::from(self.year) - i64::from(m <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// The civil date `days` after 1970-01-01 (Howard Hinnant's algorithm).
    pub fn from_days_since_epoch(days: i64) -> Date {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as u16;
        Date { year, month, day }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A quarterly reporting period such as `2026Q3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Period {
    year: u16,
    quarter: u8,
}

impl Period {
    /// The quarter a date falls in.
    pub fn of(date: Date) -> Period {
        Period {
            year: date.year,
            quarter: (date.month - 1) / 3 + 1,
        }
    }

    pub fn parse(s: &str) -> Result<Period, &'static str> {
        const FORMAT: &str = "periods are written YYYYQn with n from 1 to 4, e.g. 2026Q3";
        let b = s.as_bytes();
        if b.len() != 6 || b[4] != b'Q' {
            return Err(FORMAT);
        }
        let year = digits(&s[0..4]).ok_or(FORMAT)? as u16;
        let quarter = digits(&s[5..6]).ok_or(FORMAT)? as u8;
        if !(1..=4).contains(&quarter) || !(1900..=2199).contains(&year) {
            return Err(FORMAT);
        }
        Ok(Period { year, quarter })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}Q{}", self.year, self.quarter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert!(Date::parse("2024-02-29").is_ok());
        assert!(Date::parse("2023-02-29").is_err());
        assert!(Date::parse("1900-02-29").is_err());
        assert!(Date::parse("2000-02-29").is_ok());
        assert!(Date::parse("2026-1-05").is_err());
        assert!(Date::parse("2026-13-01").is_err());
        assert!(Date::parse("2026-+1-01").is_err());
        assert!(Date::parse("2026-01-01").ok() < Date::parse("2026-01-02").ok());
        assert_eq!(Date::from_days_since_epoch(0).to_string(), "1970-01-01");
        assert_eq!(
            Date::from_days_since_epoch(20_665).to_string(),
            "2026-07-31"
        );
    }

    #[test]
    fn periods() {
        assert_eq!(
            Period::parse("2026Q3").map(|p| p.to_string()),
            Ok("2026Q3".into())
        );
        for bad in ["2026Q0", "2026Q5", "2026q3", "26Q3", "2026Q+"] {
            assert!(Period::parse(bad).is_err(), "{bad}");
        }
    }
}
