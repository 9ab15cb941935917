//! Durations as written in environment files: `30s`, `1h`, `1h30m`, `2d`, `500ms`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration with millisecond precision, written like Go and Flux write them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(std::time::Duration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("`{0}` is not a duration (a number and a unit: `30s`, `5m`, `1h30m`)")]
    Syntax(String),
    #[error("`{0}` is too long a duration")]
    Overflow(String),
}

impl Duration {
    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn from_secs(secs: u64) -> Self {
        Duration(std::time::Duration::from_secs(secs))
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let syntax = || DurationError::Syntax(text.to_owned());
        let overflow = || DurationError::Overflow(text.to_owned());
        if text.is_empty() {
            return Err(syntax());
        }
        let mut total_ms: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(syntax)?;
            if digits == 0 {
                return Err(syntax());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| overflow())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let factor = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(syntax()),
            };
            rest = &rest[unit_len..];
            let ms = number.checked_mul(factor).ok_or_else(overflow)?;
            total_ms = total_ms.checked_add(ms).ok_or_else(overflow)?;
        }
        // Keep durations within what time arithmetic handles everywhere (about 292 years).
        if total_ms > i64::MAX as u64 / 1_000_000 {
            return Err(overflow());
        }
        Ok(Duration(std::time::Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, secs, shown) in [
            ("30s", 30, "30s"),
            ("1h", 3600, "1h"),
            ("1h30m", 5400, "1h30m"),
            ("90m", 5400, "1h30m"),
            ("2d", 172_800, "2d"),
            ("0s", 0, "0s"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.as_std().as_secs(), secs, "{text}");
            assert_eq!(d.to_string(), shown);
        }
        assert_eq!("1500ms".parse::<Duration>().unwrap().to_string(), "1s500ms");
    }

    #[test]
    fn refuses_garbage_and_overflow() {
        for text in ["", "1", "s", "1x", "1h 30m", "-1s", "1.5h"] {
            assert!(
                matches!(text.parse::<Duration>(), Err(DurationError::Syntax(_))),
                "{text}"
            );
        }
        for text in ["99999999999999999999d", "9999999999999d"] {
            assert!(
                matches!(text.parse::<Duration>(), Err(DurationError::Overflow(_))),
                "{text}"
            );
        }
    }
}
