//! Durations in stage configs: `"90s"`, `"15m"`, `"1h30m"`, `"1d"` (the
//! grammar of `scimgate_abi::units`) or an integer number of seconds.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A whole number of seconds, written in config as `"15m"` or `900`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
}

/// Parses `"1h30m"`, `"45s"`, `"2d"` into whole seconds (the grammar of
/// `scimgate_abi::units`; a unit is required, sub-second parts are refused).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let duration = scimgate_abi::units::parse_duration(text)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "invalid duration `{}`: use whole seconds here",
            text.trim()
        ));
    }
    Ok(duration.as_secs())
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"15m\", \"1h\", \"30s\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_duration(v).map(Seconds).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SecondsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("30s"), Ok(30));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert!(parse_duration("120").unwrap_err().contains("missing unit"));
        assert!(parse_duration("1500ms")
            .unwrap_err()
            .contains("whole seconds"));
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("10m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn deserializes_strings_and_numbers() {
        let s: Seconds = serde_json::from_value(serde_json::json!("5m")).unwrap();
        assert_eq!(s, Seconds(300));
        let s: Seconds = serde_json::from_value(serde_json::json!(42)).unwrap();
        assert_eq!(s, Seconds(42));
        assert!(serde_json::from_value::<Seconds>(serde_json::json!(-1)).is_err());
    }
}
