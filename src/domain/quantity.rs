//! Storage quantities as `spec.storage` accepts them (the CRD's pattern): a decimal number and
//! an optional suffix, binary (`Ki` … `Ei`) or decimal (`k` … `E`). One parser for the spec
//! checks and for storage growth, so that a size either parses everywhere or is refused up
//! front: before this type the spec checks accepted `E`/`Ei` and storage growth did not, and
//! such a size neither grew nor was refused.

use std::cmp::Ordering;
use std::fmt;

/// Every suffix the CRD accepts, with its factor. The CRD's pattern lists the same (a test
/// reads it from `crds/`).
pub const SUFFIXES: [(&str, u128); 12] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

/// A storage size: its bytes (a fraction of a byte rounded up, as Kubernetes does) and the text
/// it was written as.
#[derive(Clone, Debug)]
pub struct Quantity {
    bytes: u128,
    text: String,
}

/// Why a text is not a storage quantity.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a storage quantity such as 1Gi ({why})")]
pub struct QuantityError {
    pub text: String,
    pub why: &'static str,
}

impl Quantity {
    pub fn parse(text: &str) -> Result<Quantity, QuantityError> {
        let refuse = |why| QuantityError {
            text: text.to_owned(),
            why,
        };
        let (number, factor) = SUFFIXES
            .iter()
            .find_map(|(suffix, factor)| Some((text.strip_suffix(suffix)?, *factor)))
            .unwrap_or((text, 1));
        let (whole, fraction) = match number.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (number, ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (number.contains('.') && !digits(fraction)) {
            return Err(refuse(
                "a number, then one of the suffixes Ki Mi Gi Ti Pi Ei k M G T P E",
            ));
        }
        // (whole.fraction) × factor = (whole × 10^f + fraction) × factor / 10^f, in integers.
        let scale = 10u128
            .checked_pow(fraction.len() as u32)
            .ok_or_else(|| refuse("too many digits"))?;
        let scaled = format!("{whole}{fraction}")
            .parse::<u128>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .ok_or_else(|| refuse("too large"))?;
        Ok(Quantity {
            bytes: scaled.div_ceil(scale),
            text: text.to_owned(),
        })
    }

    pub fn bytes(&self) -> u128 {
        self.bytes
    }
}

/// Sizes compare by bytes: `1Gi` and `1024Mi` are equal.
impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

/// As it was written.
impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> u128 {
        Quantity::parse(text).unwrap().bytes()
    }

    #[test]
    fn every_suffix_has_its_factor() {
        let expected: [(&str, u128); 13] = [
            ("3", 3),
            ("3k", 3_000),
            ("3M", 3_000_000),
            ("3G", 3_000_000_000),
            ("3T", 3_000_000_000_000),
            ("3P", 3_000_000_000_000_000),
            ("3E", 3_000_000_000_000_000_000),
            ("3Ki", 3 * 1024),
            ("3Mi", 3 * 1024u128.pow(2)),
            ("3Gi", 3 * 1024u128.pow(3)),
            ("3Ti", 3 * 1024u128.pow(4)),
            ("3Pi", 3 * 1024u128.pow(5)),
            ("3Ei", 3 * 1024u128.pow(6)),
        ];
        for (text, want) in expected {
            assert_eq!(bytes(text), want, "{text}");
        }
        assert_eq!(
            SUFFIXES.len() + 1,
            expected.len(),
            "a suffix without a case"
        );
    }

    #[test]
    fn fractions_are_exact_and_a_partial_byte_rounds_up() {
        assert_eq!(bytes("1.5Gi"), 1536 * 1024 * 1024);
        assert_eq!(bytes("0.5k"), 500);
        assert_eq!(bytes("1.0005k"), 1001, "1000.5 bytes round up");
        assert_eq!(Quantity::parse("1Gi"), Quantity::parse("1024Mi"));
        assert!(Quantity::parse("2Ei").unwrap() > Quantity::parse("2000P").unwrap());
        assert_eq!(Quantity::parse("1.5Gi").unwrap().to_string(), "1.5Gi");
    }

    #[test]
    fn what_is_no_quantity_is_refused() {
        for text in [
            "", "Gi", "1.Gi", ".5Gi", "1 Gi", "1gi", "1Gb", "-1Gi", "1e3", "1.5.5",
        ] {
            assert!(Quantity::parse(text).is_err(), "{text:?} parsed");
        }
        let too_large = format!("{}Ei", "9".repeat(30));
        assert!(Quantity::parse(&too_large).is_err());
    }

    /// The CRD's pattern (as committed in `crds/`) names exactly [`SUFFIXES`]: a suffix the
    /// apiserver admits is one this parser reads.
    #[test]
    fn the_crd_accepts_exactly_these_suffixes() {
        let crd = include_str!("../../crds/distributedvalidator.yaml");
        let mut here: Vec<&str> = SUFFIXES.iter().map(|(s, _)| *s).collect();
        here.sort();
        let patterns: Vec<&str> = crd
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pattern: "))
            .filter(|p| p.contains("(Ki|"))
            .collect();
        assert_eq!(patterns.len(), 2, "charonSize and validatorClientSize");
        for pattern in patterns {
            let (_, rest) = pattern
                .split_once('(')
                .and_then(|(_, r)| r.split_once('('))
                .expect("two groups");
            let (group, _) = rest.split_once(')').expect("the suffix group closes");
            let mut in_crd: Vec<&str> = group.split('|').collect();
            in_crd.sort();
            assert_eq!(in_crd, here, "{pattern}");
        }
    }
}
