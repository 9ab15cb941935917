//! Sizes as written in environment files: `500MiB`, `2GiB`, `1048576B`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written with a binary unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("`{0}` is not a size (a number and a unit: `500MiB`, `2GiB`)")]
    Syntax(String),
    #[error("`{0}` is too large a size")]
    Overflow(String),
}

const UNITS: [(&str, u64); 5] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl Size {
    pub const fn from_bytes(bytes: u64) -> Size {
        Size(bytes)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || SizeError::Syntax(text.to_owned());
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(syntax)?;
        if digits == 0 {
            return Err(syntax());
        }
        let factor = UNITS
            .iter()
            .find(|(unit, _)| *unit == &text[digits..])
            .map(|(_, factor)| *factor)
            .ok_or_else(syntax)?;
        let number: u64 = text[..digits]
            .parse()
            .map_err(|_| SizeError::Overflow(text.to_owned()))?;
        number
            .checked_mul(factor)
            .map(Size)
            .ok_or_else(|| SizeError::Overflow(text.to_owned()))
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, factor) = UNITS
            .iter()
            .find(|(_, factor)| self.0 >= *factor && self.0.is_multiple_of(*factor))
            .unwrap_or(&("B", 1));
        write!(f, "{}{unit}", self.0 / factor)
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prints_and_refuses() {
        for (text, bytes, shown) in [
            ("2GiB", 2 << 30, "2GiB"),
            ("500MiB", 500 << 20, "500MiB"),
            ("1536KiB", 1536 << 10, "1536KiB"),
            ("1048576B", 1 << 20, "1MiB"),
            ("0B", 0, "0B"),
        ] {
            let size: Size = text.parse().unwrap();
            assert_eq!(size.bytes(), bytes, "{text}");
            assert_eq!(size.to_string(), shown);
        }
        for text in ["", "1", "GiB", "1 GiB", "1gib", "1.5GiB", "-1B", "1GB"] {
            assert!(
                matches!(text.parse::<Size>(), Err(SizeError::Syntax(_))),
                "{text}"
            );
        }
        for text in ["99999999999999999999B", "16777216TiB"] {
            assert!(
                matches!(text.parse::<Size>(), Err(SizeError::Overflow(_))),
                "{text}"
            );
        }
    }
}
