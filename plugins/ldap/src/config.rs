//! The `ldap/directory` stage configuration: where the directory is, how to
//! bind and secure the connection, where Users and Groups live, how SCIM
//! attributes map onto LDAP attributes, and the SCIM engine's own settings.
//! Every setting has a default (docs/ldap.md lists them).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use scimgate_abi::ConfigIssue;
use scimgate_scim_service::settings::{EngineSettings, Settings};
use serde::Deserialize;

/// A duration given as seconds (`5`) or with a unit (`"500ms"`, `"5s"`,
/// `"2m"`): the grammar of `scimgate_abi::units`.
pub use scimgate_abi::units::HumanDuration as Span;

/// The stage table of `ldap/directory`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS (required then).
    pub starttls: bool,
    /// PEM file of the CA(s) that sign the server certificate; the system
    /// roots when unset.
    pub ca_file: Option<String>,
    pub bind_dn: String,
    pub bind_password: String,
    pub pool_size: usize,
    pub connect_timeout: Span,
    pub operation_timeout: Span,
    /// Entries per LDAP page (simple paged results, RFC 2696).
    pub page_size: u32,
    pub users_base: String,
    pub groups_base: String,
    /// Object classes written on a new User entry; the last one selects
    /// User entries in searches.
    pub user_object_classes: Vec<String>,
    pub group_object_classes: Vec<String>,
    /// RDN attribute of User entries (holds `userName`).
    pub user_rdn: String,
    /// RDN attribute of Group entries (holds `displayName`).
    pub group_rdn: String,
    /// The attribute holding the SCIM `id` (`entryUUID`: set on create with
    /// the Relax Rules control, stable across renames).
    pub id_attribute: String,
    /// SCIM path → LDAP attribute for Users, over the defaults; `""` unmaps.
    pub user_attributes: BTreeMap<String, String>,
    /// SCIM path → LDAP attribute for Groups, over the defaults.
    pub group_attributes: BTreeMap<String, String>,
    /// The member DN an otherwise empty `groupOfNames` holds (hidden from
    /// SCIM); the bind DN when unset.
    pub empty_group_member: Option<String>,
    /// `sn` is mandatory in `inetOrgPerson`: what it holds when the client
    /// sends no `name.familyName` (hidden from SCIM).
    pub missing_surname: String,
    /// The SCIM engine's settings (paging, Bulk, PATCH, `/Me`, cursors,
    /// passwords, scans, discovery), keys of this table.
    #[serde(flatten)]
    pub engine: EngineSettings,
}

impl Default for LdapConfig {
    fn default() -> Self {
        LdapConfig {
            url: String::new(),
            starttls: false,
            ca_file: None,
            bind_dn: String::new(),
            bind_password: String::new(),
            pool_size: 4,
            connect_timeout: Span(Duration::from_secs(5)),
            operation_timeout: Span(Duration::from_secs(30)),
            page_size: 500,
            users_base: String::new(),
            groups_base: String::new(),
            user_object_classes: ["top", "person", "organizationalPerson", "inetOrgPerson"]
                .map(String::from)
                .to_vec(),
            group_object_classes: ["top", "groupOfNames"].map(String::from).to_vec(),
            user_rdn: "uid".into(),
            group_rdn: "cn".into(),
            id_attribute: "entryUUID".into(),
            user_attributes: BTreeMap::new(),
            group_attributes: BTreeMap::new(),
            empty_group_member: None,
            missing_surname: "-".into(),
            engine: EngineSettings::default(),
        }
    }
}

/// Default User mapping (SCIM path → LDAP attribute).
pub const DEFAULT_USER_ATTRIBUTES: &[(&str, &str)] = &[
    ("userName", "uid"),
    ("name.givenName", "givenName"),
    ("name.familyName", "sn"),
    ("displayName", "displayName"),
    ("emails", "mail"),
    ("phoneNumbers", "telephoneNumber"),
    ("title", "title"),
    ("userType", "employeeType"),
    ("preferredLanguage", "preferredLanguage"),
    ("profileUrl", "labeledURI"),
    ("externalId", "employeeNumber"),
    (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
        "departmentNumber",
    ),
    (
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:organization",
        "o",
    ),
];

/// Default Group mapping.
pub const DEFAULT_GROUP_ATTRIBUTES: &[(&str, &str)] =
    &[("displayName", "cn"), ("externalId", "businessCategory")];

impl LdapConfig {
    /// The effective mapping: defaults, overridden by the configured table.
    pub fn attributes(&self, group: bool) -> Vec<(String, String)> {
        let (defaults, overrides) = if group {
            (DEFAULT_GROUP_ATTRIBUTES, &self.group_attributes)
        } else {
            (DEFAULT_USER_ATTRIBUTES, &self.user_attributes)
        };
        let mut out: BTreeMap<String, String> = defaults
            .iter()
            .map(|(scim, ldap)| (scim.to_string(), ldap.to_string()))
            .collect();
        for (scim, ldap) in overrides {
            // Overrides name paths as the client would; match ignoring case.
            out.retain(|known, _| !known.eq_ignore_ascii_case(scim));
            if !ldap.trim().is_empty() {
                out.insert(scim.clone(), ldap.trim().to_string());
            }
        }
        out.into_iter().collect()
    }

    pub fn empty_group_member(&self) -> String {
        self.empty_group_member
            .clone()
            .filter(|dn| !dn.trim().is_empty())
            .unwrap_or_else(|| self.bind_dn.clone())
    }

    /// The engine's settings.
    pub fn settings(&self) -> Settings {
        self.engine.settings()
    }

    /// Problems with the values, located by key.
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        let lower = self.url.to_ascii_lowercase();
        if self.url.trim().is_empty() {
            issues.push(ConfigIssue::new(
                "url",
                "is required (ldap://… or ldaps://…)",
            ));
        } else if !(lower.starts_with("ldap://") || lower.starts_with("ldaps://")) {
            issues.push(ConfigIssue::new(
                "url",
                format!("'{}' must start with ldap:// or ldaps://", self.url),
            ));
        } else if self.starttls && lower.starts_with("ldaps://") {
            issues.push(ConfigIssue::new(
                "starttls",
                "StartTLS is for ldap:// URLs; ldaps:// is already TLS",
            ));
        }
        if self.bind_dn.trim().is_empty() {
            issues.push(ConfigIssue::new("bind_dn", "is required"));
        }
        for (key, value) in [
            ("users_base", &self.users_base),
            ("groups_base", &self.groups_base),
        ] {
            if value.trim().is_empty() {
                issues.push(ConfigIssue::new(key, "is required (a base DN)"));
            }
        }
        if self.pool_size == 0 || self.pool_size > 256 {
            issues.push(ConfigIssue::new("pool_size", "must be between 1 and 256"));
        }
        if self.page_size == 0 {
            issues.push(ConfigIssue::new("page_size", "must be at least 1"));
        }
        if self.user_object_classes.is_empty() {
            issues.push(ConfigIssue::new("user_object_classes", "must not be empty"));
        }
        if self.group_object_classes.is_empty() {
            issues.push(ConfigIssue::new(
                "group_object_classes",
                "must not be empty",
            ));
        }
        if self.missing_surname.trim().is_empty() {
            issues.push(ConfigIssue::new("missing_surname", "must not be empty"));
        }
        if let Some(path) = &self.ca_file {
            if std::fs::metadata(path).is_err() {
                issues.push(ConfigIssue::new("ca_file", format!("cannot read '{path}'")));
            }
        }
        for (key, group) in [("user_attributes", false), ("group_attributes", true)] {
            if let Err(message) = crate::mapping::TypeMap::build(self, group) {
                issues.push(ConfigIssue::new(key, message));
            }
        }
        for (key, message) in self.settings().check() {
            issues.push(ConfigIssue::new(key, message));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_take_seconds_or_units() {
        let span = |v| serde_json::from_value::<Span>(v).map(|s| s.0);
        assert_eq!(
            span(serde_json::json!(5)).ok(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            span(serde_json::json!("250ms")).ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            span(serde_json::json!("2h")).ok(),
            Some(Duration::from_secs(7200))
        );
        // The old grammar's unit-less string now says what to write.
        let message = span(serde_json::json!("5")).unwrap_err().to_string();
        assert!(message.contains("\"5s\""), "{message}");
    }

    fn validate(config: serde_json::Value) -> Vec<(String, String)> {
        scimgate_abi::testing::issues(&crate::components().remove(0), config)
    }

    #[test]
    fn the_published_schema_is_the_derived_one_and_its_example_validates() {
        let published = scimgate_abi::testing::assert_schema_is_derived::<LdapConfig>(
            &crate::components().remove(0),
        );
        for key in [
            "url",
            "bind_dn",
            "connect_timeout",
            "max_results",
            "bulk",
            "authentication_schemes",
        ] {
            assert!(published["properties"].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_path() {
        let issues = validate(serde_json::json!({
            "url": "ldap://localhost", "bind_dn": "cn=admin", "users_base": "ou=u", "groups_base": "ou=g",
            "starttsl": true,
            "connect_timeout": "5 fortnights",
            "bulk": {"max_payload_size": -1},
        }));
        let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["bulk.max_payload_size", "connect_timeout", "starttsl"],
            "{issues:?}"
        );
        assert!(
            issues[2].1.contains("did you mean `starttls`?"),
            "{issues:?}"
        );
    }

    #[test]
    fn overrides_replace_and_unmap_defaults() {
        let mut config = LdapConfig::default();
        config
            .user_attributes
            .insert("externalid".into(), "x500UniqueIdentifier".into());
        config.user_attributes.insert("title".into(), "".into());
        let map = config.attributes(false);
        assert!(map.contains(&("externalid".into(), "x500UniqueIdentifier".into())));
        assert!(!map
            .iter()
            .any(|(scim, _)| scim == "title" || scim == "externalId"));
    }

    #[test]
    fn missing_url_and_bases_are_reported() {
        let issues = LdapConfig::default().check();
        let keys: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        for key in ["url", "bind_dn", "users_base", "groups_base"] {
            assert!(keys.contains(&key), "{keys:?}");
        }
    }
}
