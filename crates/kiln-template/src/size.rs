//! Sizes such as `10G`, `512M`, `16GiB` or `10TB`.
//!
//! A one-letter unit is binary like qemu-img's (`10G` = 10 GiB), `XiB` is
//! binary, `XB` is decimal (SI). Bytes are kept in a `u128` because Oz accepts
//! disk sizes up to yottabytes, and an import must not lose them.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Size(u128);

const PREFIXES: [char; 8] = ['K', 'M', 'G', 'T', 'P', 'E', 'Z', 'Y'];

impl Size {
    pub const fn from_bytes(bytes: u128) -> Self {
        Size(bytes)
    }

    pub const fn from_mib(mib: u128) -> Self {
        Size(mib << 20)
    }

    pub const fn bytes(self) -> u128 {
        self.0
    }

    /// Bytes per unit for a suffix (any case), or `None` when it is no unit.
    pub fn unit(suffix: &str) -> Option<u128> {
        let upper = suffix.to_ascii_uppercase();
        if upper == "B" {
            return Some(1);
        }
        let mut chars = upper.chars();
        let prefix = chars.next()?;
        let power = PREFIXES.iter().position(|&p| p == prefix)? as u32 + 1;
        match chars.as_str() {
            "" | "IB" => Some(1024u128.pow(power)),
            "B" => Some(1000u128.pow(power)),
            _ => None,
        }
    }
}

impl FromStr for Size {
    /// The hint that tells how to write a size.
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, suffix) = text.split_at(digits_end);
        let suffix = suffix.trim_start();
        if number.is_empty() {
            return Err("write a whole number and a unit, e.g. `10G`, `512M` or `16GiB`".into());
        }
        if suffix.is_empty() {
            return Err(format!("add a unit, e.g. `{number}G` or `{number}M`"));
        }
        let unit = Size::unit(suffix).ok_or_else(|| {
            format!("`{suffix}` is no unit; use B, K, M, G, T (binary), KiB…YiB or KB…YB")
        })?;
        let number: u128 = number
            .parse()
            .map_err(|_| "the number is too large".to_string())?;
        number
            .checked_mul(unit)
            .map(Size)
            .ok_or_else(|| "the size is too large".to_string())
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides the size exactly, binary or decimal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exact = |base: u128, suffix: &'static str| {
            (1..=PREFIXES.len() as u32).rev().find_map(|power| {
                let unit = base.pow(power);
                (self.0 != 0 && self.0.is_multiple_of(unit))
                    .then(|| (self.0 / unit, PREFIXES[power as usize - 1], suffix))
            })
        };
        // The shorter spelling: 10ZB rather than 9536743164062500M.
        match [exact(1024, ""), exact(1000, "B")]
            .into_iter()
            .flatten()
            .min_by_key(|(n, _, _)| *n)
        {
            Some((n, prefix, suffix)) => write!(f, "{n}{prefix}{suffix}"),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(text: &str) -> u128 {
        text.parse::<Size>().unwrap().bytes()
    }

    #[test]
    fn units_are_binary_except_the_si_ones() {
        assert_eq!(size("10G"), 10 << 30);
        assert_eq!(size("512M"), 512 << 20);
        assert_eq!(size("16GiB"), 16 << 30);
        assert_eq!(size("10TB"), 10 * 10u128.pow(12));
        assert_eq!(size("10000000 B"), 10_000_000);
        assert_eq!(size("10ZB"), 10 * 10u128.pow(21));
    }

    #[test]
    fn bad_sizes_say_how_to_write_one() {
        assert!("10".parse::<Size>().unwrap_err().contains("10G"));
        assert!("T10".parse::<Size>().is_err());
        assert!(
            "10E".parse::<Size>().is_ok(),
            "E is exbibytes in kiln's own format"
        );
        assert!("10Q".parse::<Size>().unwrap_err().contains("no unit"));
    }

    #[test]
    fn display_round_trips_with_the_largest_exact_unit() {
        for text in ["10G", "512M", "10ZB", "1536K", "10000000B", "0B", "3E"] {
            let parsed: Size = text.parse().unwrap();
            assert_eq!(
                parsed.to_string().parse::<Size>().unwrap(),
                parsed,
                "{text}"
            );
        }
        assert_eq!(Size::from_bytes(1536 << 10).to_string(), "1536K");
        assert_eq!(Size::from_bytes(10 * 10u128.pow(21)).to_string(), "10ZB");
    }
}
