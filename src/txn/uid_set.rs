//! `UidSet`: a set of UIDs as sorted, disjoint, non-adjacent inclusive ranges (IMAP's
//! sequence-set without `*`), compact for results like "UIDs 1:1000000 changed".

use std::fmt;

use serde::{Deserialize, Serialize};

/// A set of UIDs. Invariant: ranges are sorted, each `start <= end`, `start >= 1`, and
/// consecutive ranges are separated by at least one missing UID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<(u32, u32)>", into = "Vec<(u32, u32)>")]
pub struct UidSet {
    ranges: Vec<(u32, u32)>,
}

/// Why a list of ranges is not a valid `UidSet`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidSetError {
    #[error("UID 0 is not a valid UID")]
    ZeroUid,
    #[error("UID range {start}:{end} is reversed")]
    Reversed { start: u32, end: u32 },
    #[error("cannot parse UID set {0:?}: expected e.g. \"1:5,9,12:20\"")]
    Syntax(String),
}

impl UidSet {
    pub fn new() -> UidSet {
        UidSet::default()
    }

    /// Builds a set from any ranges; they are sorted and merged.
    pub fn from_ranges(ranges: impl IntoIterator<Item = (u32, u32)>) -> Result<UidSet, UidSetError> {
        let mut ranges: Vec<(u32, u32)> = ranges.into_iter().collect();
        for &(start, end) in &ranges {
            if start == 0 {
                return Err(UidSetError::ZeroUid);
            }
            if start > end {
                return Err(UidSetError::Reversed { start, end });
            }
        }
        ranges.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        let set = UidSet { ranges: merged };
        debug_assert!(set.holds_invariant(), "{set:?}");
        Ok(set)
    }

    /// The type's invariant: sorted ranges, each `1 <= start <= end`, a missing UID between two.
    fn holds_invariant(&self) -> bool {
        self.ranges.iter().all(|&(start, end)| 1 <= start && start <= end)
            && self.ranges.windows(2).all(|w| w[0].1.saturating_add(1) < w[1].0)
    }

    /// Builds a set from UIDs given in increasing order (as the state machine produces them).
    pub fn from_ascending(uids: impl IntoIterator<Item = u32>) -> UidSet {
        let mut set = UidSet::new();
        for uid in uids {
            set.push_ascending(uid);
        }
        set
    }

    /// Adds a UID greater than every UID in the set.
    pub fn push_ascending(&mut self, uid: u32) {
        assert!(uid != 0, "UID 0 is not a UID");
        match self.ranges.last_mut() {
            Some(last) if uid == last.1.wrapping_add(1) => last.1 = uid,
            Some(last) => {
                assert!(uid > last.1, "UIDs not ascending: {uid} after {}", last.1);
                self.ranges.push((uid, uid));
            }
            None => self.ranges.push((uid, uid)),
        }
    }

    /// Parses IMAP sequence-set syntax without `*`: `1:5,9,12:20` (RFC 3501 `sequence-set`).
    /// Each number is an `nz-number`: ASCII digits without a sign, a leading zero or
    /// whitespace, so one set has one spelling (`+1`, ` 1` and `01` are refused). A range may
    /// be given either way round (`5:1` is `1:5`), as RFC 3501 allows.
    pub fn parse(text: &str) -> Result<UidSet, UidSetError> {
        let number = |part: &str| match part {
            "0" => Err(UidSetError::ZeroUid),
            _ => parse_nz_number(part).ok_or_else(|| UidSetError::Syntax(text.to_string())),
        };
        let mut ranges = Vec::new();
        for part in text.split(',') {
            let (a, b) = match part.split_once(':') {
                Some((a, b)) => (a, b),
                None => (part, part),
            };
            let (a, b) = (number(a)?, number(b)?);
            ranges.push((a.min(b), a.max(b)));
        }
        UidSet::from_ranges(ranges)
    }

    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Number of UIDs in the set.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|&(s, e)| u64::from(e - s) + 1).sum()
    }

    pub fn contains(&self, uid: u32) -> bool {
        match self.ranges.binary_search_by(|&(s, _)| s.cmp(&uid)) {
            Ok(_) => true,
            Err(0) => false,
            Err(i) => self.ranges[i - 1].1 >= uid,
        }
    }

    /// Every UID, ascending. Beware of large ranges: prefer `ranges`.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(s, e)| s..=e)
    }
}

/// An RFC 3501 `nz-number` that fits a UID: `digit-nz *DIGIT`, nothing else (no sign, no
/// leading zero, no whitespace). `None` for anything else, 0 and values above 2³²−1 included.
/// `u32::from_str` alone would also take `+1`, and `trim` took ` 1`: two spellings of one UID.
pub fn parse_nz_number(text: &str) -> Option<u32> {
    let bytes = text.as_bytes();
    match bytes.first() {
        Some(b'1'..=b'9') if bytes.iter().all(u8::is_ascii_digit) => text.parse().ok(),
        _ => None,
    }
}

impl TryFrom<Vec<(u32, u32)>> for UidSet {
    type Error = UidSetError;
    fn try_from(ranges: Vec<(u32, u32)>) -> Result<Self, Self::Error> {
        UidSet::from_ranges(ranges)
    }
}

impl From<UidSet> for Vec<(u32, u32)> {
    fn from(set: UidSet) -> Self {
        set.ranges
    }
}

impl fmt::Display for UidSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(s, e)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if s == e {
                write!(f, "{s}")?;
            } else {
                write!(f, "{s}:{e}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_and_parses() {
        let s = UidSet::parse("9,1:3,4,7:8,20").unwrap();
        assert_eq!(s.ranges(), &[(1, 4), (7, 9), (20, 20)]);
        assert_eq!(s.to_string(), "1:4,7:9,20");
        assert_eq!(s.len(), 8);
        assert!(s.contains(8) && !s.contains(5) && !s.contains(21) && !s.contains(0));
        assert_eq!(UidSet::parse("0:3"), Err(UidSetError::ZeroUid));
        assert!(matches!(UidSet::parse("1,,2"), Err(UidSetError::Syntax(_))));
        assert_eq!(UidSet::from_ascending([1, 2, 3, 5]).to_string(), "1:3,5");
    }

    /// RFC 3501 `nz-number`: no sign, no leading zero, no whitespace, no empty part; every
    /// refusal names the input.
    #[test]
    fn numbers_follow_the_rfc_3501_grammar() {
        for good in ["1", "4294967295", "1:4294967295", "7:3", "10,20:30"] {
            assert!(UidSet::parse(good).is_ok(), "{good:?}");
        }
        assert_eq!(UidSet::parse("7:3").unwrap().ranges(), &[(3, 7)]);
        for bad in [
            "+1",
            " 1",
            "1 ",
            "01",
            "1:02",
            "-1",
            "1:+5",
            "1, 2",
            "1 :2",
            "",
            ":",
            "1:",
            ":2",
            "1,",
            "0x1",
            "4294967296",
            "1:4294967296",
            "١",
            "1_000",
            "*",
            "1:*",
        ] {
            match UidSet::parse(bad) {
                Err(UidSetError::Syntax(text)) => assert_eq!(text, bad),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
        assert_eq!(UidSet::parse("0"), Err(UidSetError::ZeroUid));
        assert_eq!(parse_nz_number("42"), Some(42));
        assert_eq!(parse_nz_number("0"), None);
        assert_eq!(parse_nz_number("042"), None);
    }

    #[test]
    fn serde_rejects_invalid_ranges() {
        let bad: Result<UidSet, _> = serde_json::from_str("[[5,1]]");
        assert!(bad.is_err());
        let ok: UidSet = serde_json::from_str("[[4,6],[1,3]]").unwrap();
        assert_eq!(ok.ranges(), &[(1, 6)]);
    }
}
