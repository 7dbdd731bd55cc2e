//! The profile component as plugins export it: the generic `profiles/profile`
//! (settings plus `preset = "NAME"`) and the per-client crates
//! (`one-identity/profile`, …), which are a fixed preset over the same engine.

use scimgate_abi::sdk::{Component, CreateContext};
use scimgate_abi::{ConfigIssue, PluginError};
use serde_json::Value;

use super::engine::ProfileEngine;
use super::presets::{preset_names, resolve, resolve_with_preset_key};
use super::settings::Settings;

/// Where a stage's settings come from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// `preset = "NAME"` in the stage table, optional.
    PresetKey,
    /// This preset, always; the stage sets settings keys only.
    Fixed(&'static str),
}

impl Source {
    fn settings(self, config: &Value) -> Result<(String, Settings), Vec<ConfigIssue>> {
        match self {
            Source::Fixed(preset) => Ok((preset.to_string(), resolve(Some(preset), config)?)),
            Source::PresetKey => {
                let name = config
                    .get("preset")
                    .and_then(Value::as_str)
                    .unwrap_or("profile")
                    .to_string();
                Ok((name, resolve_with_preset_key(config)?))
            }
        }
    }

    /// Every problem of a stage table at once: the schema first (unknown
    /// keys, types), then what only the settings' own reading can tell.
    fn check(self, config: &Value) -> Vec<ConfigIssue> {
        let schema: Value = serde_json::from_str(&self.schema()).unwrap_or(Value::Null);
        let issues = scimgate_abi::schema::check(&schema, config);
        if !issues.is_empty() {
            return issues;
        }
        self.settings(config).err().unwrap_or_default()
    }

    fn schema(self) -> String {
        let mut schema = serde_json::to_value(schemars::schema_for!(Settings))
            .unwrap_or_else(|_| Value::Object(Default::default()));
        if let (Source::PresetKey, Some(properties)) = (
            self,
            schema.get_mut("properties").and_then(Value::as_object_mut),
        ) {
            properties.insert(
                "preset".into(),
                serde_json::json!({
                    "description": "An IGA client's settings (core/scim/presets/NAME.toml); keys set in the stage override them.",
                    "enum": preset_names().collect::<Vec<_>>(),
                }),
            );
        }
        schema.to_string()
    }
}

fn component(name: &str, description: &str, source: Source) -> Component {
    Component::profile(name, description, move |ctx: &CreateContext| {
        let (label, settings) = source.settings(&ctx.config).map_err(|issues| {
            let first = &issues[0];
            PluginError::new(500, format!("config {}: {}", first.path, first.message))
        })?;
        ProfileEngine::new(&label, settings)
    })
    .with_validate(move |ctx| source.check(&ctx.config))
    .with_schema(&source.schema())
}

/// The generic profile component: the stage table is [`Settings`] plus an
/// optional `preset = "NAME"`.
pub fn generic_component(name: &str) -> Component {
    component(
        name,
        "IGA client profile: the profile engine's settings, optionally over a preset (entra-id, okta, one-identity, sailpoint)",
        Source::PresetKey,
    )
    .with_example(serde_json::json!({"preset": "sailpoint", "sensitive_attributes": ["password"]}))
}

/// A client's own profile component: `preset`'s settings, with the stage's
/// keys (any [`Settings`] key) overriding them.
pub fn preset_component(name: &str, preset: &'static str, description: &str) -> Component {
    component(name, description, Source::Fixed(preset))
        .with_example(serde_json::json!({"sensitive_attributes": ["password"]}))
}

/// The settings a stage table resolves to (for tests and tools): with
/// `preset` fixed, or read from the table's `preset` key.
pub fn settings_for(
    preset: Option<&'static str>,
    config: &Value,
) -> Result<Settings, Vec<ConfigIssue>> {
    let source = match preset {
        Some(preset) => Source::Fixed(preset),
        None => Source::PresetKey,
    };
    source.settings(config).map(|(_, settings)| settings)
}

/// An engine for a stage table, as the component builds it.
pub fn engine_for(
    preset: Option<&'static str>,
    config: &Value,
) -> Result<ProfileEngine, PluginError> {
    let source = match preset {
        Some(preset) => Source::Fixed(preset),
        None => Source::PresetKey,
    };
    let (label, settings) = source.settings(config).map_err(|issues| {
        let first = &issues[0];
        PluginError::new(500, format!("config {}: {}", first.path, first.message))
    })?;
    ProfileEngine::new(&label, settings)
}
