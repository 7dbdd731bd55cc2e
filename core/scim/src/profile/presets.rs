//! Presets: an IGA client as data. Each is a TOML file of [`Settings`] keys in
//! `core/scim/presets/`, embedded in the binary; a stage names one with
//! `preset = "NAME"` and any key it sets itself overrides the preset's.

use serde_json::{Map, Value};

use scimgate_abi::ConfigIssue;

use super::settings::Settings;

/// The embedded presets: name and TOML text.
const PRESETS: &[(&str, &str)] = &[
    ("entra-id", include_str!("../../presets/entra-id.toml")),
    ("okta", include_str!("../../presets/okta.toml")),
    (
        "one-identity",
        include_str!("../../presets/one-identity.toml"),
    ),
    ("sailpoint", include_str!("../../presets/sailpoint.toml")),
];

/// The names of the embedded presets, sorted.
pub fn preset_names() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|(name, _)| *name)
}

/// A preset's settings as a JSON object (keys as in the TOML file); `None`
/// for an unknown name.
pub fn preset(name: &str) -> Option<Map<String, Value>> {
    let (_, text) = PRESETS.iter().find(|(known, _)| *known == name)?;
    // The presets are ours and tested (every one parses into `Settings`), so a
    // broken file is a build defect; it still degrades to a located issue.
    let table: toml::Table = toml::from_str(text).ok()?;
    match serde_json::to_value(table).ok()? {
        Value::Object(object) => Some(object),
        _ => None,
    }
}

/// The settings of a stage: `preset`'s keys, then the stage's own `inline`
/// keys over them (a key set inline replaces the preset's value as a whole).
/// `inline` must not contain `preset` (the caller takes it out). Issues are
/// located at the stage's key paths.
pub fn resolve(preset_name: Option<&str>, inline: &Value) -> Result<Settings, Vec<ConfigIssue>> {
    let mut merged = match preset_name {
        None => Map::new(),
        Some(name) => preset(name).ok_or_else(|| {
            vec![ConfigIssue::new(
                "preset",
                format!(
                    "unknown preset {name:?}; known: {}",
                    preset_names().collect::<Vec<_>>().join(", ")
                ),
            )]
        })?,
    };
    match inline {
        Value::Null => {}
        Value::Object(own) => {
            for (key, value) in own {
                merged.insert(key.clone(), value.clone());
            }
        }
        _ => return Err(vec![ConfigIssue::new("", "expected a table of settings")]),
    }
    let settings: Settings = scimgate_abi::sdk::deserialize_config(&Value::Object(merged))
        .map_err(|issue| vec![issue])?;
    let issues = settings.issues();
    if issues.is_empty() {
        Ok(settings)
    } else {
        Err(issues)
    }
}

/// [`resolve`] for a stage table that may name its preset itself
/// (`preset = "okta"`, the generic `profiles/profile` component).
pub fn resolve_with_preset_key(config: &Value) -> Result<Settings, Vec<ConfigIssue>> {
    let mut own = match config {
        Value::Null => Map::new(),
        Value::Object(own) => own.clone(),
        _ => return Err(vec![ConfigIssue::new("", "expected a table of settings")]),
    };
    let name = match own.remove("preset") {
        None => None,
        Some(Value::String(name)) => Some(name),
        Some(_) => {
            return Err(vec![ConfigIssue::new(
                "preset",
                "expected a preset name (a string)",
            )])
        }
    };
    resolve(name.as_deref(), &Value::Object(own))
}
