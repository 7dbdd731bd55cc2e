//! `entra-id/profile`: the Microsoft Entra ID provisioning service's SCIM
//! dialect, as the `entra-id` preset (core/scim/presets/entra-id.toml) of the
//! profile engine in `scimgate_scim::profile`: the `aadOptscim062020` flag
//! removed from the query, PATCH normalised in both of Entra's behaviours
//! (with the Enterprise User `manager` shapes), Microsoft schema URNs dropped
//! from POST/PUT bodies, 204 to a group PATCH, the attribute `mapping`. The
//! stage takes the engine's settings (docs/profiles.md).

use scimgate_abi::sdk::Component;
use scimgate_abi::PluginError;
use scimgate_scim::profile::{self, ProfileEngine};
use serde_json::Value;

/// The preset this crate stands for.
pub const PRESET: &str = "entra-id";

fn components() -> Vec<Component> {
    vec![profile::preset_component(
        "profile",
        PRESET,
        "Microsoft Entra ID provisioning dialect: PATCH normalisation (with and without aadOptscim062020), manager shapes, extra schema URNs, group PATCH 204, attribute mapping",
    )]
}

scimgate_abi::export_plugin!("entra-id", components);

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
        assert_eq!(settings.group_patch_status, 204);
        assert!(settings.patch_manager);
        assert_eq!(settings.removed_query_parameters, vec!["aadOptscim062020"]);
        assert_eq!(settings.ignored_schemas.len(), 2);
        let settings = profile::settings_for(
            Some(PRESET),
            &json!({"group_patch_status": 200, "ignored_schemas": ["urn:example:legacy"], "sensitive_attributes": ["title"], "mapping": []}),
        )
        .unwrap();
        assert_eq!(settings.group_patch_status, 200);
        assert_eq!(settings.ignored_schemas, vec!["urn:example:legacy"]);
    }

    #[test]
    fn config_errors_are_located() {
        let issues = profile::settings_for(
            Some(PRESET),
            &json!({"group_patch_status": 201, "ignored_schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "mapping": [{"drop": "a", "to": "b"}]}),
        )
        .unwrap_err();
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["mapping[0].to", "group_patch_status", "ignored_schemas[0]"]
        );
        assert!(profile(&json!({"group_patch": 204})).is_err());
    }
}
