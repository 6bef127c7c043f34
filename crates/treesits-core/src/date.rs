//! Calendar dates (proleptic Gregorian, no time zone), as they appear in FORCE file names.

use std::fmt;
use std::str::FromStr;

/// A calendar date. Ordered chronologically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid date '{input}': {reason}")]
pub struct DateError {
    input: String,
    reason: &'static str,
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        _ => 28,
    }
}

impl Date {
    /// A checked date.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    pub fn year(self) -> i32 {
        self.year
    }
    pub fn month(self) -> u8 {
        self.month
    }
    pub fn day(self) -> u8 {
        self.day
    }

    /// Day of year, 1-based (1 January = 1).
    pub fn day_of_year(self) -> u16 {
        let mut doy = u16::from(self.day);
        for m in 1..self.month {
            doy += u16::from(days_in_month(self.year, m));
        }
        doy
    }

    /// Days since 1970-01-01 (negative before), the Arrow `Date32` value.
    pub fn days_since_epoch(self) -> i32 {
        // Howard Hinnant's days_from_civil.
        let y = if self.month <= 2 { self.year - 1 } else { self.year };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let m = i32::from(self.month);
        let mp = if m > 2 { m - 3 } else { m + 9 };
        let doy = (153 * mp + 2) / 5 + i32::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// The inverse of [`Date::days_since_epoch`].
    pub fn from_days_since_epoch(days: i32) -> Date {
        let z = days + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = yoe + era * 400 + i32::from(month <= 2);
        Date { year, month, day }
    }

    /// The date `days` later (earlier when negative).
    pub fn add_days(self, days: i32) -> Date {
        Date::from_days_since_epoch(self.days_since_epoch() + days)
    }

    /// The same day `months` calendar months earlier, clamped to the end of a shorter month
    /// (2024-03-31 minus one month is 2024-02-29).
    pub fn sub_months(self, months: u32) -> Date {
        let total = self.year * 12 + i32::from(self.month) - 1 - months as i32;
        let (year, month) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u8);
        let day = self.day.min(days_in_month(year, month));
        Date { year, month, day }
    }

    /// Parses the compact `YYYYMMDD` form used in FORCE file names.
    pub fn parse_compact(s: &str) -> Result<Date, DateError> {
        let err = |reason| DateError {
            input: s.to_string(),
            reason,
        };
        if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err("expected 8 digits YYYYMMDD"));
        }
        let year = s[0..4].parse().map_err(|_| err("bad year"))?;
        let month = s[4..6].parse().map_err(|_| err("bad month"))?;
        let day = s[6..8].parse().map_err(|_| err("bad day"))?;
        Date::new(year, month, day).ok_or_else(|| err("no such day in the calendar"))
    }

    /// The compact `YYYYMMDD` form.
    pub fn compact(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = DateError;

    /// Parses ISO `YYYY-MM-DD` (and, for convenience, `YYYYMMDD`).
    fn from_str(s: &str) -> Result<Date, DateError> {
        if s.len() == 8 {
            return Date::parse_compact(s);
        }
        let err = |reason| DateError {
            input: s.to_string(),
            reason,
        };
        let b = s.as_bytes();
        if s.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return Err(err("expected YYYY-MM-DD"));
        }
        Date::parse_compact(&format!("{}{}{}", &s[0..4], &s[5..7], &s[8..10])).map_err(|e| DateError {
            input: s.to_string(),
            reason: e.reason,
        })
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl serde::Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_back_clamp_to_the_month_end() {
        let d = |y, m, dd| Date::new(y, m, dd).unwrap();
        assert_eq!(d(2026, 5, 31).sub_months(12), d(2025, 5, 31));
        assert_eq!(d(2024, 3, 31).sub_months(1), d(2024, 2, 29));
        assert_eq!(d(2023, 3, 31).sub_months(1), d(2023, 2, 28));
        assert_eq!(d(2026, 1, 15).sub_months(1), d(2025, 12, 15));
        assert_eq!(d(2026, 1, 15).sub_months(25), d(2023, 12, 15));
        assert_eq!(d(2026, 1, 15).sub_months(0), d(2026, 1, 15));
    }

    #[test]
    fn epoch_days_round_trip_known_values() {
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_since_epoch(), 0);
        assert_eq!(Date::new(2000, 3, 1).unwrap().days_since_epoch(), 11_017);
        assert_eq!(Date::new(1969, 12, 31).unwrap().days_since_epoch(), -1);
        for d in [-800_000, -1, 0, 59, 60, 11_016, 19_000, 30_000] {
            assert_eq!(Date::from_days_since_epoch(d).days_since_epoch(), d);
        }
    }

    #[test]
    fn day_of_year_handles_leap_years() {
        assert_eq!(Date::new(2021, 3, 1).unwrap().day_of_year(), 60);
        assert_eq!(Date::new(2020, 3, 1).unwrap().day_of_year(), 61);
        assert_eq!(Date::new(2020, 12, 31).unwrap().day_of_year(), 366);
    }

    #[test]
    fn parses_both_forms_and_rejects_impossible_days() {
        let d: Date = "2021-06-15".parse().unwrap();
        assert_eq!(d, Date::new(2021, 6, 15).unwrap());
        assert_eq!(Date::parse_compact("20210615").unwrap(), d);
        assert_eq!(d.compact(), "20210615");
        assert_eq!(d.to_string(), "2021-06-15");
        assert!("2021-02-29".parse::<Date>().is_err());
        assert!("2020-02-29".parse::<Date>().is_ok());
        assert!("2021-13-01".parse::<Date>().is_err());
        assert!("2021/06/15".parse::<Date>().is_err());
        let e = Date::parse_compact("2021061").unwrap_err().to_string();
        assert_eq!(e, "invalid date '2021061': expected 8 digits YYYYMMDD");
    }

    #[test]
    fn add_days_crosses_year_end() {
        assert_eq!(
            Date::new(2020, 12, 31).unwrap().add_days(1),
            Date::new(2021, 1, 1).unwrap()
        );
        assert_eq!(
            Date::new(2021, 3, 1).unwrap().add_days(-1),
            Date::new(2021, 2, 28).unwrap()
        );
    }
}
