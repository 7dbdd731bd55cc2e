//! `profiles/profile`: the generic IGA client profile. Its stage table is the
//! profile engine's settings (`scimgate_scim::profile::Settings`) plus an
//! optional `preset = "NAME"` naming an IGA client's settings
//! (core/scim/presets/NAME.toml); keys set in the stage override the preset's.
//! A new IGA client is a preset file, not a crate (docs/profiles.md).

use scimgate_abi::sdk::Component;
use scimgate_abi::PluginError;
use scimgate_scim::profile::{self, ProfileEngine};
use serde_json::Value;

fn components() -> Vec<Component> {
    vec![profile::generic_component("profile")]
}

scimgate_abi::export_plugin!("profiles", components);

/// The profile a stage table builds.
pub fn profile(config: &Value) -> Result<ProfileEngine, PluginError> {
    profile::engine_for(None, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_preset_with_inline_overrides() {
        let settings = profile::settings_for(
            None,
            &json!({"preset": "entra-id", "group_patch_status": 200}),
        )
        .unwrap();
        assert_eq!(settings.group_patch_status, 200);
        assert!(settings.patch_manager);
        let plain = profile::settings_for(None, &json!({})).unwrap();
        assert_eq!(plain, profile::Settings::default());
    }

    #[test]
    fn an_unknown_preset_names_the_known_ones() {
        let issues = profile::settings_for(None, &json!({"preset": "sailpoint-iiq"})).unwrap_err();
        assert_eq!(issues[0].path.as_str(), "preset");
        assert!(issues[0]
            .message
            .contains("entra-id, okta, one-identity, sailpoint"));
        assert!(profile(&json!({"preset": 3})).is_err());
    }

    #[test]
    fn the_schema_lists_the_settings_and_the_presets() {
        let component = profile::generic_component("profile");
        let schema: Value = serde_json::from_str(&component.config_schema).unwrap();
        let properties = &schema["properties"];
        for key in ["normalize_patch", "group_members", "mapping", "preset"] {
            assert!(properties.get(key).is_some(), "{key}: {schema}");
        }
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            properties["preset"]["enum"],
            json!(["entra-id", "okta", "one-identity", "sailpoint"])
        );
    }
}
