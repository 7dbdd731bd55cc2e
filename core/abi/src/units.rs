//! Human-written durations (`"30s"`, `"1h30m"`) and sizes (`"2MiB"`, `"1MB"`),
//! one grammar for the host and every plugin: the host parses `[server]`
//! with these functions and plugins parse their stage settings with them, so
//! `"1h30m"` means the same everywhere. [`HumanDuration`], [`Seconds`] and
//! [`Size`] are the config types: they deserialize either form a config may
//! hold (a string with a unit, or an integer of seconds / bytes) and describe
//! themselves to `schemars` (a string-or-integer schema with a `pattern` for
//! editors and an `x-unit` keyword that [`crate::schema`] checks with this
//! grammar), so every plugin config states and parses units the same way.

use std::time::Duration;

/// Parses a duration such as `"500ms"`, `"30s"`, `"2m"`, `"1h"`, `"1d"` or a
/// sum of them (`"1h30m"`). A unit is required.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. \"30s\", \"500ms\", \"2m\" or \"1h\"".into());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return Err(format!(
                "invalid duration `{text}`: expected a number, e.g. \"30s\""
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration `{text}`: number too large"))?;
        rest = rest[digits..].trim_start();
        let unit_len = rest.len()
            - rest
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let part = match unit {
            "ms" => Some(Duration::from_millis(number)),
            "s" => Some(Duration::from_secs(number)),
            "m" => number.checked_mul(60).map(Duration::from_secs),
            "h" => number.checked_mul(3_600).map(Duration::from_secs),
            "d" => number.checked_mul(86_400).map(Duration::from_secs),
            "" => {
                return Err(format!(
                    "invalid duration `{text}`: missing unit (ms, s, m, h or d), e.g. \"{number}s\""
                ))
            }
            other => {
                return Err(format!(
                    "invalid duration `{text}`: unknown unit `{other}` (use ms, s, m, h or d)"
                ))
            }
        };
        total = part
            .and_then(|p| total.checked_add(p))
            .ok_or_else(|| format!("invalid duration `{text}`: too large"))?;
    }
    Ok(total)
}

/// Parses a size in bytes: an integer, or an integer with a unit: `B`, `KB`,
/// `MB`, `GB` (powers of 1000) or `KiB`, `MiB`, `GiB` (powers of 1024).
/// Units are case-insensitive; a space before the unit is allowed.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let text = s.trim();
    let digits = text.len() - text.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 {
        return Err(format!(
            "invalid size `{text}`: expected a number of bytes or e.g. \"2MiB\", \"512KiB\", \"1MB\""
        ));
    }
    let number: usize = text[..digits]
        .parse()
        .map_err(|_| format!("invalid size `{text}`: number too large"))?;
    let unit = text[digits..].trim_start();
    let factor: usize = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        // Single letters were sizes in older configs (`"1m"` = 1 MiB): say
        // what to write now rather than guessing which power was meant.
        short @ ("k" | "m" | "g") => {
            let upper = short.to_ascii_uppercase();
            let (binary, decimal): (usize, usize) = match short {
                "k" => (1 << 10, 1_000),
                "m" => (1 << 20, 1_000_000),
                _ => (1 << 30, 1_000_000_000),
            };
            return Err(format!(
                "invalid size `{text}`: `{unit}` is ambiguous; write \"{number}{upper}iB\" ({} bytes) or \"{number}{upper}B\" ({} bytes)",
                number.saturating_mul(binary),
                number.saturating_mul(decimal)
            ));
        }
        _ => {
            return Err(format!(
                "invalid size `{text}`: unknown unit `{unit}` (use B, KB, MB, GB, KiB, MiB or GiB)"
            ))
        }
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("invalid size `{text}`: too large"))
}

/// A duration in a stage config: a string with a unit (`"15m"`, `"500ms"`,
/// `"1h30m"`) or an integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl serde::de::Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"30s\", \"15m\", \"1h30m\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(v)))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HumanDuration, E> {
                u64::try_from(v)
                    .map(|s| HumanDuration(Duration::from_secs(s)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HumanDuration, E> {
                parse_duration(v).map(HumanDuration).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// The JSON Schema keyword naming the grammar of a unit value (`duration`,
/// `seconds` or `size`); [`crate::schema::check`] parses such values with
/// this module, editors ignore it and use the `pattern`.
pub const UNIT_KEYWORD: &str = "x-unit";

/// What an editor may match a duration string against.
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(ms|s|m|h|d)\s*)+$";
/// What an editor may match a size string against.
pub const SIZE_PATTERN: &str = r"^\s*[0-9]+\s*([bB]|[kKmMgG][iI]?[bB])?\s*$";

/// Checks `value` against the grammar named by an `x-unit` keyword; `None`
/// when it is fine (or not a string: the schema's types check the rest).
pub fn check_unit(unit: &str, value: &serde_json::Value) -> Option<String> {
    let text = value.as_str()?;
    match unit {
        "duration" => parse_duration(text).err(),
        "seconds" => parse_seconds(text).err(),
        "size" => parse_size(text).err(),
        _ => None,
    }
}

fn unit_schema(unit: &str, description: &str, pattern: &str) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["string", "integer"],
        "minimum": 0,
        "pattern": pattern,
        "description": description,
        UNIT_KEYWORD: unit,
    })
}

/// Writes a duration the way the grammar reads it (`"1h30m"`, `"250ms"`).
pub fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if millis >= size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

/// Writes a byte count the way the grammar reads it (`"1MiB"`, `"1MB"`, or
/// the bare number).
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// Parses a duration in whole seconds (the grammar of [`parse_duration`];
/// a sub-second rest is refused).
pub fn parse_seconds(s: &str) -> Result<u64, String> {
    let duration = parse_duration(s)?;
    if duration.subsec_nanos() != 0 {
        return Err(format!(
            "invalid duration `{}`: use whole seconds here, e.g. \"{}s\"",
            s.trim(),
            duration.as_secs().max(1)
        ));
    }
    Ok(duration.as_secs())
}

impl serde::Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(self.0))
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        unit_schema(
            "duration",
            "a duration: \"500ms\", \"30s\", \"15m\", \"1h30m\", \"1d\", or a number of seconds",
            DURATION_PATTERN,
        )
    }
}

/// A duration in whole seconds in a stage config: `"15m"`, `"1h30m"`, `"30s"`
/// or an integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Seconds(pub u64);

impl Seconds {
    pub fn as_millis(self) -> i64 {
        i64::try_from(self.0.saturating_mul(1000)).unwrap_or(i64::MAX)
    }
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Seconds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecondsVisitor;
        impl serde::de::Visitor<'_> for SecondsVisitor {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration such as \"15m\", \"1h\", \"30s\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(Seconds)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_seconds(v).map(Seconds).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SecondsVisitor)
    }
}

impl serde::Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(Duration::from_secs(self.0)))
    }
}

impl schemars::JsonSchema for Seconds {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Seconds".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        unit_schema(
            "seconds",
            "a duration in whole seconds: \"30s\", \"15m\", \"1h30m\", \"1d\", or a number of seconds",
            DURATION_PATTERN,
        )
    }
}

/// A byte count in a stage config: an integer, or a string with a unit
/// (`"512KiB"`, `"1MiB"`, `"1MB"`; see [`parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Size(pub u64);

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl serde::de::Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size such as \"1MiB\", \"512KiB\", \"1MB\" or a number of bytes")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse_size(v).map(|n| Size(n as u64)).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl serde::Serialize for Size {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_size(self.0))
    }
}

impl schemars::JsonSchema for Size {
    fn inline_schema() -> bool {
        true
    }
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Size".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        unit_schema(
            "size",
            "a size: a number of bytes, or \"512KiB\", \"1MiB\", \"1GiB\" (powers of 1024) or \"1KB\", \"1MB\", \"1GB\" (powers of 1000)",
            SIZE_PATTERN,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration(" 10 s "), Ok(Duration::from_secs(10)));
        assert!(parse_duration("30").unwrap_err().contains("missing unit"));
        assert!(parse_duration("3w")
            .unwrap_err()
            .contains("unknown unit `w`"));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert!(parse_duration("999999999999999999d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2MiB"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("1 kb"), Ok(1_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10B"), Ok(10));
        assert!(parse_size("2TB").unwrap_err().contains("unknown unit"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("1.5MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }

    #[test]
    fn config_durations_take_strings_and_seconds() {
        let d: HumanDuration = serde_json::from_value(serde_json::json!("5m")).unwrap();
        assert_eq!(d.0, Duration::from_secs(300));
        let d: HumanDuration = serde_json::from_value(serde_json::json!(42)).unwrap();
        assert_eq!(d.0, Duration::from_secs(42));
        assert!(serde_json::from_value::<HumanDuration>(serde_json::json!(-1)).is_err());
        assert!(serde_json::from_value::<HumanDuration>(serde_json::json!("10")).is_err());
    }

    #[test]
    fn old_single_letter_sizes_say_what_to_write() {
        let message = parse_size("1m").unwrap_err();
        assert!(message.contains("\"1MiB\" (1048576 bytes)"), "{message}");
        assert!(message.contains("\"1MB\" (1000000 bytes)"), "{message}");
        assert!(parse_size("512k").unwrap_err().contains("\"512KiB\""));
        let message = parse_duration("600").unwrap_err();
        assert!(message.contains("\"600s\""), "{message}");
    }

    #[test]
    fn unit_types_round_trip_through_their_written_form() {
        for text in ["1h30m", "250ms", "1d", "45s"] {
            let d: HumanDuration = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(serde_json::to_value(d).unwrap(), serde_json::json!(text));
        }
        let s: Size = serde_json::from_value(serde_json::json!("1MiB")).unwrap();
        assert_eq!(s, Size(1 << 20));
        assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!("1MiB"));
        assert_eq!(format_size(1_000_000), "1MB");
        assert_eq!(format_size(1000 + 1), "1001");
        let secs: Seconds = serde_json::from_value(serde_json::json!("10m")).unwrap();
        assert_eq!(secs, Seconds(600));
        assert!(serde_json::from_value::<Seconds>(serde_json::json!("1500ms")).is_err());
        assert!(serde_json::from_value::<Size>(serde_json::json!(-5)).is_err());
    }

    #[test]
    fn unit_schemas_name_their_grammar() {
        let schema = schemars::schema_for!(Size);
        assert_eq!(schema.get(UNIT_KEYWORD), Some(&serde_json::json!("size")));
        assert!(check_unit("size", &serde_json::json!("2 furlongs")).is_some());
        assert_eq!(check_unit("duration", &serde_json::json!("2h")), None);
        assert_eq!(check_unit("duration", &serde_json::json!(5)), None);
    }
}
