//! Sets of raster values given on command lines as lists and ranges: `10`, `10,20-30`, `-5--1`.

use std::fmt;
use std::str::FromStr;

/// A union of closed integer ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueSet {
    ranges: Vec<(i64, i64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value list '{0}': expected integers and ranges separated by commas, e.g. 10,20-30")]
pub struct ValueSetError(pub String);

impl ValueSet {
    /// Whether a raster value (read as a float) is one of the set's integers.
    pub fn contains(&self, v: f64) -> bool {
        v.fract() == 0.0
            && self
                .ranges
                .iter()
                .any(|&(lo, hi)| v >= lo as f64 && v <= hi as f64)
    }

    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.ranges
    }
}

impl FromStr for ValueSet {
    type Err = ValueSetError;
    fn from_str(s: &str) -> Result<ValueSet, ValueSetError> {
        let err = || ValueSetError(s.to_string());
        let mut ranges = Vec::new();
        for item in s.split(',').map(str::trim) {
            if item.is_empty() {
                return Err(err());
            }
            // A range's dash is the first '-' that is not a leading minus sign.
            let split = item[1..].find('-').map(|i| i + 1);
            let (lo, hi) = match split {
                Some(i) => (&item[..i], &item[i + 1..]),
                None => (item, item),
            };
            let lo: i64 = lo.trim().parse().map_err(|_| err())?;
            let hi: i64 = hi.trim().parse().map_err(|_| err())?;
            if lo > hi {
                return Err(err());
            }
            ranges.push((lo, hi));
        }
        Ok(ValueSet { ranges })
    }
}

impl fmt::Display for ValueSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .ranges
            .iter()
            .map(|&(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_ranges_parse() {
        let v: ValueSet = "10, 20-30".parse().unwrap();
        assert_eq!(v.ranges(), &[(10, 10), (20, 30)]);
        assert!(v.contains(10.0) && v.contains(20.0) && v.contains(30.0) && v.contains(25.0));
        assert!(!v.contains(11.0) && !v.contains(31.0) && !v.contains(10.5));
        assert_eq!(v.to_string(), "10,20-30");
        let neg: ValueSet = "-5--1,3".parse().unwrap();
        assert_eq!(neg.ranges(), &[(-5, -1), (3, 3)]);
    }

    #[test]
    fn bad_lists_are_rejected() {
        for bad in ["", "10,", "a", "30-20", "1-2-3", "10;20"] {
            assert_eq!(
                bad.parse::<ValueSet>().unwrap_err(),
                ValueSetError(bad.to_string()),
                "{bad}"
            );
        }
    }
}
