//! `one-identity/profile`: One Identity Manager's SCIM connector dialect, as
//! the `one-identity` preset (core/scim/presets/one-identity.toml) of the
//! profile engine in `scimgate_scim::profile`: query parameter names matched
//! ignoring case, group reads completed with `members`, `type` and `$ref`, the
//! PATCH dialect rewrites and the attribute `mapping`. The stage takes the
//! engine's settings (docs/profiles.md); `profiles/profile` with
//! `preset = "one-identity"` is the same stage.

use scimgate_abi::sdk::Component;
use scimgate_abi::PluginError;
use scimgate_scim::profile::{self, ProfileEngine};
use serde_json::Value;

/// The preset this crate stands for.
pub const PRESET: &str = "one-identity";

fn components() -> Vec<Component> {
    vec![profile::preset_component(
        "profile",
        PRESET,
        "One Identity Manager SCIM connector dialect: case-insensitive parameters, group members with type/$ref, PATCH normalisation, attribute mapping",
    )]
}

scimgate_abi::export_plugin!("one-identity", components);

/// The profile a stage table builds (the preset under the table's keys).
pub fn profile(config: &Value) -> Result<ProfileEngine, PluginError> {
    profile::engine_for(Some(PRESET), config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(config: Value) -> Vec<String> {
        profile::settings_for(Some(PRESET), &config)
            .err()
            .unwrap_or_default()
            .iter()
            .map(|issue| issue.path.to_string())
            .collect()
    }

    #[test]
    fn the_existing_keys_keep_their_meaning_over_the_preset() {
        let settings = profile::settings_for(Some(PRESET), &json!({})).unwrap();
        assert!(settings.group_members);
        assert!(settings.normalize_patch);
        assert!(settings
            .query_parameters
            .iter()
            .any(|name| name == "startIndex"));
        let settings = profile::settings_for(
            Some(PRESET),
            &json!({"query_parameters": ["filter"], "group_members": false, "normalize_patch": false,
                    "sensitive_attributes": ["title"], "mapping": [{"attribute": "userName", "transform": ["lower-case"]}]}),
        )
        .unwrap();
        assert_eq!(settings.query_parameters, vec!["filter"]);
        assert!(!settings.group_members);
        assert!(!settings.normalize_patch);
        assert_eq!(settings.sensitive_attributes, vec!["title"]);
    }

    #[test]
    fn config_errors_are_located() {
        assert_eq!(
            paths(
                json!({"mapping": [{"drop": "a"}, {"attribute": "userName", "transform": ["shout"]}], "query_parameters": ["a/b"]})
            ),
            vec!["mapping[1].transform[0]", "query_parameters[0]"]
        );
        // The removed `endpoints` setting, and `preset` (fixed here), are unknown keys.
        assert_eq!(paths(json!({"endpoints": ["Users"]})), vec!["endpoints"]);
        assert_eq!(paths(json!({"preset": "okta"})), vec!["preset"]);
        assert!(profile(&json!({"endpoint": []})).is_err());
    }
}
