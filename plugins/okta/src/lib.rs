//! `okta/profile`: Okta's SCIM 2.0 provisioning dialect, as the `okta` preset
//! (core/scim/presets/okta.toml) of the profile engine in
//! `scimgate_scim::profile`: the PATCH dialect rewrites, the read-only `id`
//! that group push repeats dropped from pathless values, and the attribute
//! `mapping`. The stage takes the engine's settings (docs/profiles.md).

use scimgate_abi::sdk::Component;
use scimgate_abi::PluginError;
use scimgate_scim::profile::{self, ProfileEngine};
use serde_json::Value;

/// The preset this crate stands for.
pub const PRESET: &str = "okta";

fn components() -> Vec<Component> {
    vec![profile::preset_component(
        "profile",
        PRESET,
        "Okta SCIM 2.0 provisioning dialect: PATCH normalisation, group push, attribute mapping",
    )]
}

scimgate_abi::export_plugin!("okta", components);

/// The profile a stage table builds (the preset under the table's keys).
pub fn profile(config: &Value) -> Result<ProfileEngine, PluginError> {
    profile::engine_for(Some(PRESET), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_existing_keys_keep_their_meaning_over_the_preset() {
        let settings = profile::settings_for(Some(PRESET), &json!({})).unwrap();
        assert!(settings.normalize_patch && settings.patch_pathless_id);
        let settings = profile::settings_for(
            Some(PRESET),
            &json!({"normalize_patch": false, "sensitive_attributes": ["title"], "mapping": [{"attribute": "userName", "transform": ["lower-case"]}]}),
        )
        .unwrap();
        assert!(!settings.normalize_patch);
    }

    #[test]
    fn config_errors_are_located() {
        let issues =
            profile::settings_for(Some(PRESET), &json!({"mapping": [{"from": "a"}]})).unwrap_err();
        assert_eq!(issues[0].path.as_str(), "mapping[0].to");
        assert!(profile(&json!({"mappings": []})).is_err());
    }
}
