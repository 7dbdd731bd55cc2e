//! Durations in stage configs: `"90s"`, `"15m"`, `"1h30m"`, `"1d"` or an
//! integer number of seconds. One grammar for every plugin: this is
//! `scimgate_abi::units` (whole seconds), re-exported under the names this
//! crate uses; its JSON Schema comes with it.

pub use scimgate_abi::units::Seconds;

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_abi::units::parse_seconds as parse_duration;

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
