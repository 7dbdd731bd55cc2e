//! The `scim-server/scim` stage configuration (`[stage.NAME]` table): typed,
//! `deny_unknown_fields`, every key documented and defaulted, and the
//! checks that need more than types (schema files, resource types, limits)
//! reported as located [`ConfigIssue`]s.

use std::path::{Path, PathBuf};

use scimgate_abi::ConfigIssue;
use scimgate_scim::discovery::AuthenticationScheme;
use scimgate_scim::{core_schemas, urn, Registry, ResourceType, Schema};
use scimgate_scim_service::{BulkSettings, Settings};
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::Value;

pub use crate::store::postgres::{PgSettings, Secret};
pub use scimgate_scim_service::{PasswordStorage, PatchResponse};

/// The stage table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// Where resources live: `sqlite:PATH` (relative paths are resolved
    /// against `[server] data_dir`) or `postgres://user@host:port/db` (several
    /// nodes may share it). Default `sqlite:scim.db`.
    #[serde(default = "default_store")]
    pub store: String,
    /// The PostgreSQL password, usually `"${SCIMGATE_PG_PASSWORD}"`; wins over
    /// a password inside the URL. Never logged.
    #[serde(default)]
    pub store_password: Option<Secret>,
    /// Most connections one PostgreSQL store keeps open (per node).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// The most resources one list/search response returns (`count` above
    /// it is clamped); advertised as `filter.maxResults` and `maxPageSize`.
    #[serde(default = "default_max_results")]
    pub max_results: u64,
    /// Page size when the client sends no `count`.
    #[serde(default = "default_page_size")]
    pub default_page_size: u64,
    #[serde(default)]
    pub bulk: BulkConfig,
    /// What a successful PATCH answers: `resource` (200 with the resource)
    /// or `no-content` (204).
    #[serde(default)]
    pub patch_response: PatchResponse,
    /// Group `displayName`s are unique (case-insensitive), 409 otherwise.
    #[serde(default = "yes")]
    pub unique_group_names: bool,
    /// Serve `/Me` as the User whose `userName` is the caller's subject.
    #[serde(default)]
    pub me: bool,
    /// How long an RFC 9865 cursor stays valid (`30s`, `10m`, `1h`, or seconds).
    #[serde(default = "default_cursor_timeout")]
    pub cursor_timeout: Seconds,
    /// Serve the core User resource type at `/Users`.
    #[serde(default = "yes")]
    pub users: bool,
    /// Serve the core Group resource type at `/Groups`.
    #[serde(default = "yes")]
    pub groups: bool,
    /// Offer the Enterprise User extension on Users.
    #[serde(default = "yes")]
    pub enterprise_user: bool,
    /// Extra schemas in the RFC 7643 §7 format: JSON file paths (relative to
    /// `data_dir`) or inline tables.
    #[serde(default)]
    pub schemas: Vec<JsonSource>,
    /// Extra resource types: JSON files in the RFC 7643 §6 format or inline
    /// tables `{ name, endpoint, schema, description, extensions }`.
    #[serde(default)]
    pub resource_types: Vec<JsonSource>,
    /// Advertised in `authenticationSchemes` (default: one `oauthbearertoken`).
    #[serde(default)]
    pub authentication_schemes: Option<Vec<AuthSchemeConfig>>,
    /// `documentationUri` of the ServiceProviderConfig.
    #[serde(default)]
    pub documentation_uri: Option<String>,
    /// What a write does with a `password`: `hash` (store an argon2id PHC
    /// string; one that already is one is kept), `drop` (store nothing) or
    /// `refuse` (400 `invalidValue`). Never stored in clear.
    #[serde(default)]
    pub password_storage: PasswordStorage,
    /// The most rows one list or search reads when the filter or sort must
    /// be evaluated in memory (not answerable by the store's indexes);
    /// beyond it the request is refused with 400 `tooMany`.
    #[serde(default = "default_max_scan")]
    pub max_scan: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkConfig {
    /// Serve `/Bulk`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Most operations in one Bulk request (413 above).
    #[serde(default = "default_bulk_ops")]
    pub max_operations: u64,
    /// Largest Bulk request body in bytes: an integer or `"1MiB"`, `"512KiB"`.
    #[serde(default = "default_bulk_size")]
    pub max_payload_size: ByteSize,
}

impl Default for BulkConfig {
    fn default() -> Self {
        BulkConfig {
            enabled: true,
            max_operations: default_bulk_ops(),
            max_payload_size: default_bulk_size(),
        }
    }
}

/// A JSON document given as a file path or inline.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum JsonSource {
    File(String),
    Inline(serde_json::Map<String, Value>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSchemeConfig {
    /// `oauthbearertoken`, `httpbasic`, …
    #[serde(rename = "type")]
    pub scheme_type: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub spec_uri: Option<String>,
    #[serde(default)]
    pub documentation_uri: Option<String>,
    #[serde(default)]
    pub primary: bool,
}

/// A byte count: an integer or a string with a unit (`B`, `KB`, `KiB`, `MB`, `MiB`, `GB`, `GiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Number(n) => n
                .as_u64()
                .map(ByteSize)
                .ok_or_else(|| de::Error::custom("a size must be a non-negative integer")),
            Value::String(s) => parse_size(&s).map(ByteSize).map_err(de::Error::custom),
            _ => Err(de::Error::custom(
                "expected a byte count such as 1048576 or \"1MiB\"",
            )),
        }
    }
}

/// A duration in seconds: an integer or `"30s"`, `"10m"`, `"1h"`, `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds(pub u64);

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::Number(n) => n
                .as_u64()
                .map(Seconds)
                .ok_or_else(|| de::Error::custom("a duration must be a non-negative integer")),
            Value::String(s) => parse_duration(&s).map(Seconds).map_err(de::Error::custom),
            _ => Err(de::Error::custom("expected a duration such as \"10m\"")),
        }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a size such as \"1MiB\""))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1024,
        "mb" => 1_000_000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1024 * 1024 * 1024,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is not a duration such as \"10m\""))?;
    let factor = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        other => return Err(format!("unknown duration unit '{other}' (use s, m, h, d)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("'{text}' is too large"))
}

fn yes() -> bool {
    true
}
fn default_store() -> String {
    "sqlite:scim.db".into()
}
fn default_pool_size() -> usize {
    8
}
fn default_max_results() -> u64 {
    200
}
fn default_page_size() -> u64 {
    100
}
fn default_bulk_ops() -> u64 {
    1000
}
fn default_bulk_size() -> ByteSize {
    ByteSize(1024 * 1024)
}
fn default_cursor_timeout() -> Seconds {
    Seconds(600)
}
fn default_max_scan() -> u64 {
    scimgate_scim_service::DEFAULT_MAX_SCAN
}

/// Where the store lives, parsed from `store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(PgSettings),
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Most connections `pool_size` accepts.
const MAX_POOL_SIZE: usize = 1000;

impl ScimConfig {
    /// Every problem beyond types, each with its key path.
    pub fn check(&self, data_dir: &Path) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(issue) = self.store_location(data_dir) {
            issues.push(issue);
        }
        if self.password_storage == PasswordStorage::Backend {
            issues.push(ConfigIssue::new(
                "password_storage",
                "the SQL stores keep no passwords of their own: use \"hash\" (default), \"drop\" or \"refuse\"",
            ));
        }
        if self.pool_size == 0 || self.pool_size > MAX_POOL_SIZE {
            issues.push(ConfigIssue::new(
                "pool_size",
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        if self.store_password.is_some() && !self.store.starts_with("postgres") {
            issues.push(ConfigIssue::new(
                "store_password",
                "only a PostgreSQL store (store = \"postgres://…\") takes a password",
            ));
        }
        for (key, message) in self.settings().check() {
            issues.push(ConfigIssue::new(key, message));
        }
        if let Err(mut more) = self.registry(data_dir) {
            issues.append(&mut more);
        }
        issues
    }

    pub fn store_location(&self, data_dir: &Path) -> Result<StoreLocation, ConfigIssue> {
        match self.store.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => {
                let path = Path::new(path);
                Ok(StoreLocation::Sqlite(if path.is_absolute() {
                    path.to_path_buf()
                } else {
                    data_dir.join(path)
                }))
            }
            Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => {
                let settings = PgSettings {
                    url: Secret(self.store.clone()),
                    password: self.store_password.clone(),
                    pool_size: self.pool_size,
                };
                match settings.config() {
                    Ok(_) => Ok(StoreLocation::Postgres(settings)),
                    Err(message) => Err(ConfigIssue::new(
                        "store",
                        format!("{}: {message}", settings.label()),
                    )),
                }
            }
            _ => Err(ConfigIssue::new(
                "store",
                format!(
                    "'{}' is not a store; expected \"sqlite:PATH\" or \"postgres://user@host:port/db\"",
                    crate::store::postgres::redact_url(&self.store)
                ),
            )),
        }
    }

    /// The schemas and resource types this endpoint serves.
    pub fn registry(&self, data_dir: &Path) -> Result<Registry, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let mut registry = Registry::new();
        let add = |registry: &mut Registry, schema: Schema, issues: &mut Vec<ConfigIssue>| {
            if let Err(e) = registry.add_schema(schema) {
                issues.push(ConfigIssue::new("schemas", e.detail));
            }
        };
        if self.users {
            add(&mut registry, core_schemas::user_schema(), &mut issues);
            if self.enterprise_user {
                add(
                    &mut registry,
                    core_schemas::enterprise_user_schema(),
                    &mut issues,
                );
            }
        }
        if self.groups {
            add(&mut registry, core_schemas::group_schema(), &mut issues);
        }
        for (i, source) in self.schemas.iter().enumerate() {
            let key = format!("schemas[{i}]");
            match load(source, data_dir).and_then(|v| Schema::from_json(&v).map_err(|e| e.detail)) {
                Ok(schema) => {
                    if let Err(e) = registry.add_schema(schema) {
                        issues.push(ConfigIssue::new(key, e.detail));
                    }
                }
                Err(message) => issues.push(ConfigIssue::new(key, message)),
            }
        }
        if self.users {
            let mut user = ResourceType::new("User", "/Users", urn::USER).describe("User Account");
            if self.enterprise_user {
                user = user.with_extension(urn::ENTERPRISE_USER, false);
            }
            if let Err(e) = registry.add_resource_type(user) {
                issues.push(ConfigIssue::new("users", e.detail));
            }
        }
        if self.groups {
            let group = ResourceType::new("Group", "/Groups", urn::GROUP).describe("Group");
            if let Err(e) = registry.add_resource_type(group) {
                issues.push(ConfigIssue::new("groups", e.detail));
            }
        }
        for (i, source) in self.resource_types.iter().enumerate() {
            let key = format!("resource_types[{i}]");
            let parsed = load(source, data_dir).and_then(|v| resource_type_from(&v));
            match parsed {
                Ok(rt) => {
                    if !rt.endpoint.starts_with('/') || rt.endpoint[1..].contains('/') {
                        issues.push(ConfigIssue::new(
                            format!("{key}.endpoint"),
                            format!(
                                "'{}' must be one path segment such as \"/Devices\"",
                                rt.endpoint
                            ),
                        ));
                        continue;
                    }
                    let reserved = [
                        "/ServiceProviderConfig",
                        "/ResourceTypes",
                        "/Schemas",
                        "/Bulk",
                        "/Me",
                        "/.search",
                    ];
                    if reserved
                        .iter()
                        .any(|r| r.eq_ignore_ascii_case(&rt.endpoint))
                    {
                        issues.push(ConfigIssue::new(
                            format!("{key}.endpoint"),
                            format!("'{}' is a reserved SCIM endpoint", rt.endpoint),
                        ));
                        continue;
                    }
                    if let Err(e) = registry.add_resource_type(rt) {
                        issues.push(ConfigIssue::new(key, e.detail));
                    }
                }
                Err(message) => issues.push(ConfigIssue::new(key, message)),
            }
        }
        if registry.resource_types().is_empty() {
            issues.push(ConfigIssue::new(
                "",
                "no resource type is served (users = false, groups = false and no resource_types)",
            ));
        }
        if issues.is_empty() {
            Ok(registry)
        } else {
            Err(issues)
        }
    }

    /// The engine settings this stage table describes.
    pub fn settings(&self) -> Settings {
        Settings {
            max_results: self.max_results,
            default_page_size: self.default_page_size,
            bulk: BulkSettings {
                enabled: self.bulk.enabled,
                max_operations: self.bulk.max_operations,
                max_payload_size: self.bulk.max_payload_size.0,
            },
            patch_response: self.patch_response,
            unique_group_names: self.unique_group_names,
            me: self.me,
            cursor_timeout_secs: self.cursor_timeout.0,
            password_storage: self.password_storage,
            max_scan: self.max_scan,
            authentication_schemes: self
                .authentication_schemes
                .as_ref()
                .map(|schemes| schemes.iter().map(AuthSchemeConfig::scheme).collect()),
            documentation_uri: self.documentation_uri.clone(),
        }
    }

    /// The ServiceProviderConfig body (without `meta.location`), including
    /// the RFC 9865 `pagination` object.
    pub fn service_provider_config(&self) -> Value {
        self.settings().service_provider_config()
    }
}

impl AuthSchemeConfig {
    /// The advertised scheme: the known types with their RFC texts, any
    /// other as named; `name`, `description` and URIs override.
    fn scheme(&self) -> AuthenticationScheme {
        let known = match self.scheme_type.to_ascii_lowercase().as_str() {
            "oauthbearertoken" => Some(AuthenticationScheme::oauth_bearer_token(self.primary)),
            "httpbasic" => Some(AuthenticationScheme::http_basic(self.primary)),
            _ => None,
        };
        let mut scheme = known.unwrap_or(AuthenticationScheme {
            scheme_type: self.scheme_type.clone(),
            name: self.scheme_type.clone(),
            description: String::new(),
            spec_uri: None,
            documentation_uri: None,
            primary: self.primary,
        });
        if let Some(name) = &self.name {
            scheme.name = name.clone();
        }
        if let Some(d) = &self.description {
            scheme.description = d.clone();
        }
        if self.spec_uri.is_some() {
            scheme.spec_uri = self.spec_uri.clone();
        }
        if self.documentation_uri.is_some() {
            scheme.documentation_uri = self.documentation_uri.clone();
        }
        scheme
    }
}

fn load(source: &JsonSource, data_dir: &Path) -> Result<Value, String> {
    match source {
        JsonSource::Inline(map) => Ok(Value::Object(map.clone())),
        JsonSource::File(path) => {
            let path = Path::new(path);
            let full = if path.is_absolute() {
                path.to_path_buf()
            } else {
                data_dir.join(path)
            };
            let text = std::fs::read_to_string(&full)
                .map_err(|e| format!("cannot read {}: {e}", full.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", full.display()))
        }
    }
}

/// An RFC 7643 §6 resource type, or the inline form with `extensions`.
fn resource_type_from(value: &Value) -> Result<ResourceType, String> {
    let object = value.as_object().ok_or("a resource type must be a table")?;
    if object.contains_key("schemaExtensions") || object.contains_key("schemas") {
        return ResourceType::from_json(value).map_err(|e| e.detail);
    }
    let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_string);
    for key in object.keys() {
        if !["name", "endpoint", "schema", "description", "extensions"].contains(&key.as_str()) {
            return Err(format!(
                "unknown key '{key}' (expected name, endpoint, schema, description, extensions)"
            ));
        }
    }
    let name = text("name").ok_or("'name' is required")?;
    let endpoint = text("endpoint").ok_or("'endpoint' is required")?;
    let schema = text("schema").ok_or("'schema' is required")?;
    let mut rt = ResourceType::new(&name, &endpoint, &schema);
    if let Some(d) = text("description") {
        rt = rt.describe(&d);
    }
    for extension in object
        .get("extensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match extension {
            Value::String(urn) => rt = rt.with_extension(urn, false),
            Value::Object(e) => {
                let urn = e
                    .get("schema")
                    .and_then(Value::as_str)
                    .ok_or("an extension needs 'schema'")?;
                let required = e.get("required").and_then(Value::as_bool).unwrap_or(false);
                rt = rt.with_extension(urn, required);
            }
            _ => {
                return Err("'extensions' holds schema URNs or { schema, required } tables".into())
            }
        }
    }
    Ok(rt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_abi::sdk::deserialize_config;
    use serde_json::json;

    #[test]
    fn backend_password_storage_is_refused_by_the_sql_stores() {
        let config: ScimConfig =
            deserialize_config(&json!({"password_storage": "backend"})).expect("parses");
        let issues = config.check(Path::new("/tmp"));
        assert!(
            issues
                .iter()
                .any(|i| i.path.as_str() == "password_storage" && i.message.contains("hash")),
            "{issues:?}"
        );
    }

    #[test]
    fn defaults_are_documented_values() {
        let config: ScimConfig = deserialize_config(&json!({})).expect("defaults");
        assert_eq!(config.store, "sqlite:scim.db");
        assert_eq!(config.max_results, 200);
        assert_eq!(config.default_page_size, 100);
        assert_eq!(config.bulk.max_operations, 1000);
        assert_eq!(config.bulk.max_payload_size, ByteSize(1 << 20));
        assert_eq!(config.cursor_timeout, Seconds(600));
        assert_eq!(config.max_scan, 100_000);
        assert_eq!(
            config.settings(),
            scimgate_scim_service::Settings::default()
        );
        assert_eq!(config.patch_response, PatchResponse::Resource);
        assert!(config.unique_group_names && !config.me && config.users && config.groups);
        assert_eq!(
            config.store_location(Path::new("/data")),
            Ok(StoreLocation::Sqlite(PathBuf::from("/data/scim.db")))
        );
        let spc = config.service_provider_config();
        assert_eq!(spc["bulk"]["maxPayloadSize"], 1048576);
        assert_eq!(spc["pagination"]["cursorTimeout"], 600);
        assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
        assert_eq!(spc["changePassword"]["supported"], false);
    }

    #[test]
    fn sizes_durations_and_errors_are_located() {
        let config: ScimConfig = deserialize_config(&json!({
            "bulk": {"max_payload_size": "512KiB"}, "cursor_timeout": "2h", "patch_response": "no-content"
        }))
        .expect("parse");
        assert_eq!(config.bulk.max_payload_size, ByteSize(512 * 1024));
        assert_eq!(config.cursor_timeout, Seconds(7200));
        assert_eq!(config.patch_response, PatchResponse::NoContent);
        let issue =
            deserialize_config::<ScimConfig>(&json!({"bulk": {"max_payload_size": "1 furlong"}}))
                .expect_err("bad size");
        assert_eq!(issue.path.as_str(), "bulk.max_payload_size");
        let issue = deserialize_config::<ScimConfig>(&json!({"nope": 1})).expect_err("unknown key");
        assert!(issue.message.contains("unknown field"), "{}", issue.message);
        let config: ScimConfig =
            deserialize_config(&json!({"store": "mysql:x", "default_page_size": 500}))
                .expect("parse");
        let issues = config.check(Path::new("/tmp"));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, vec!["store", "default_page_size"]);
    }

    #[test]
    fn postgres_urls_pool_size_and_password_are_checked() {
        let config: ScimConfig = deserialize_config(&json!({
            "store": "postgres://scim@db.example:5432/scim",
            "store_password": "hunter2",
            "pool_size": 16
        }))
        .expect("parse");
        assert!(config.check(Path::new("/tmp")).is_empty());
        match config.store_location(Path::new("/tmp")) {
            Ok(StoreLocation::Postgres(settings)) => {
                assert_eq!(settings.pool_size, 16);
                assert_eq!(settings.password, Some(Secret("hunter2".into())));
                assert_eq!(settings.label(), "postgres://scim@db.example:5432/scim");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !format!("{config:?}").contains("hunter2"),
            "secrets print redacted"
        );
        let defaults: ScimConfig =
            deserialize_config(&json!({"store": "postgresql://db/scim"})).expect("parse");
        assert_eq!(defaults.pool_size, 8);
        let bad: ScimConfig = deserialize_config(&json!({
            "store": "postgres://u:hunter2@db/scim?sslmode=require",
            "pool_size": 0
        }))
        .expect("parse");
        let issues = bad.check(Path::new("/tmp"));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, vec!["store", "pool_size"]);
        assert!(
            !issues[0].message.contains("hunter2"),
            "{}",
            issues[0].message
        );
        let stray: ScimConfig = deserialize_config(&json!({"store_password": "x"})).expect("parse");
        let issues = stray.check(Path::new("/tmp"));
        assert_eq!(issues[0].path.as_str(), "store_password");
    }

    #[test]
    fn custom_schemas_and_resource_types_load_inline() {
        let config: ScimConfig = deserialize_config(&json!({
            "schemas": [{
                "id": "urn:example:Device", "name": "Device",
                "attributes": [{"name": "serial", "type": "string", "multiValued": false,
                    "required": true, "caseExact": false, "mutability": "readWrite",
                    "returned": "default", "uniqueness": "none"}]
            }],
            "resource_types": [{"name": "Device", "endpoint": "/Devices", "schema": "urn:example:Device"}]
        }))
        .expect("parse");
        let registry = config.registry(Path::new("/tmp")).expect("registry");
        assert!(registry.resource_type_by_endpoint("/Devices").is_some());
        let bad: ScimConfig = deserialize_config(&json!({
            "resource_types": [{"name": "X", "endpoint": "/Xs", "schema": "urn:example:Nope"}]
        }))
        .expect("parse");
        let issues = bad.check(Path::new("/tmp"));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].path.as_str(), "resource_types[0]");
    }
}
