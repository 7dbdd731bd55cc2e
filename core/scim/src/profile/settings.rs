//! The profile engine's settings: every IGA client quirk scimgate knows is one
//! field of [`Settings`], with a default; a client is a set of values for them
//! (a preset, `core/scim/presets/*.toml`). docs/profiles.md lists them.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use scimgate_abi::ConfigIssue;

use crate::mapping::Mapping;

/// The settings of one profile stage. Unknown keys are refused; every field
/// has a default, so `{}` is a valid (RFC-leaning) profile.
///
/// PATCH rewrites run in the order of the `patch_*` fields below, and only
/// while `normalize_patch` is on.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Query parameter names matched ignoring case and rewritten to this
    /// spelling (`startindex=1` → `startIndex=1`); values keep their bytes.
    /// Default: none.
    #[serde(default)]
    pub query_parameters: Vec<String>,
    /// Query parameters removed before the endpoint sees them (Entra's
    /// `aadOptscim062020` Tenant-URL flag). Default: none.
    #[serde(default)]
    pub removed_query_parameters: Vec<String>,
    /// Master switch of the PATCH dialect rewrites (the `patch_*` settings).
    /// Off, PATCH bodies reach the endpoint as sent (still mapped), and the
    /// endpoint accepts standard RFC 7644 PatchOp only. Default: true.
    #[serde(default = "yes")]
    pub normalize_patch: bool,
    /// `"op": "Replace"` → `"replace"`. The endpoint also accepts any case;
    /// this keeps the body canonical for what follows. Default: true.
    #[serde(default = "yes")]
    pub patch_op_case: bool,
    /// Drop a `schemas` member inside extension objects given as PATCH
    /// values. Default: true.
    #[serde(default = "yes")]
    pub patch_extension_schemas: bool,
    /// Pathless add/replace whose value keys are paths (`name.givenName`,
    /// `urn:…:User:department`) become one operation per path. Default: true.
    #[serde(default = "yes")]
    pub patch_dotted_paths: bool,
    /// Enterprise User `manager` given as `"id"`, `{"value": "id"}` or
    /// `[{"value": "id"}]` becomes `{"value": "id"}`; a `remove` of the
    /// manager loses its value (Entra ID). Users only. Default: false.
    #[serde(default)]
    pub patch_manager: bool,
    /// `remove` of `members` (or any multi-valued attribute) with a `value`
    /// array becomes `members[value eq "a" or value eq "b"]`. Default: true.
    #[serde(default = "yes")]
    pub patch_value_array_removal: bool,
    /// A `remove` with a filtered path loses its `value` (One Identity
    /// repeats the removed member there). Default: true.
    #[serde(default = "yes")]
    pub patch_filtered_removal_value: bool,
    /// `"True"`/`"False"` (any case) become booleans where the schema says
    /// the target is boolean. Default: true.
    #[serde(default = "yes")]
    pub patch_string_booleans: bool,
    /// Drop the read-only `id` from pathless add/replace values (Okta's group
    /// push repeats it); an operation left empty goes, unless it is the only
    /// one. Default: false.
    #[serde(default)]
    pub patch_pathless_id: bool,
    /// Schema URNs dropped from `schemas` (and the objects keyed by them) in
    /// POST/PUT bodies; a trailing `*` matches a prefix. SCIM's own URNs
    /// cannot be listed. Default: none.
    #[serde(default)]
    pub ignored_schemas: Vec<String>,
    /// Complete `members` of groups in read responses: `members: []` when
    /// absent, each member's `type` and `$ref` (One Identity). Members
    /// excluded by `attributes`/`excludedAttributes` stay out. Default: false.
    #[serde(default)]
    pub group_members: bool,
    /// Status of a successful group PATCH: 200 (with the group) or 204 (no
    /// body, what Entra ID expects). Default: 200.
    #[serde(default = "default_group_patch_status")]
    pub group_patch_status: u16,
    /// Attribute mapping rules (docs/mapping.md), applied after the rewrites
    /// above inbound and before them outbound. Default: none.
    #[serde(default)]
    #[schemars(with = "Option<Vec<serde_json::Map<String, Value>>>")]
    pub mapping: Value,
    /// Attribute names whose values never appear in debug logs, besides
    /// `password` and every `returned: never` attribute (always hidden).
    /// Default: none.
    #[serde(default)]
    pub sensitive_attributes: Vec<String>,
}

fn yes() -> bool {
    true
}

fn default_group_patch_status() -> u16 {
    200
}

impl Default for Settings {
    fn default() -> Self {
        serde_json::from_value(Value::Object(Default::default()))
            .expect("every setting has a default")
    }
}

impl Settings {
    /// What serde cannot check: the mapping rules, `group_patch_status`,
    /// `ignored_schemas` and `query_parameters`, each issue at its key path.
    pub fn issues(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(found) = Mapping::parse("mapping", &self.mapping) {
            issues.extend(
                found
                    .into_iter()
                    .map(|issue| ConfigIssue::new(issue.path, issue.message)),
            );
        }
        if !matches!(self.group_patch_status, 200 | 204) {
            issues.push(ConfigIssue::new(
                "group_patch_status",
                format!("{} is not 200 or 204", self.group_patch_status),
            ));
        }
        for (index, text) in self.ignored_schemas.iter().enumerate() {
            let core = text
                .to_ascii_lowercase()
                .starts_with("urn:ietf:params:scim:");
            if text.trim().is_empty() || text == "*" || core {
                issues.push(ConfigIssue::new(
                    format!("ignored_schemas[{index}]"),
                    "expected a non-SCIM schema URN (or a prefix ending in `*`); SCIM's own URNs cannot be ignored",
                ));
            }
        }
        for key in ["query_parameters", "removed_query_parameters"] {
            let names = match key {
                "query_parameters" => &self.query_parameters,
                _ => &self.removed_query_parameters,
            };
            for (index, name) in names.iter().enumerate() {
                if name.trim().is_empty() || name.contains(['/', '&', '=']) {
                    issues.push(ConfigIssue::new(
                        format!("{key}[{index}]"),
                        "expected a single query parameter name such as \"startIndex\"",
                    ));
                }
            }
        }
        issues
    }
}
