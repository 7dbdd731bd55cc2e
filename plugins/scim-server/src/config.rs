//! The `scim-server/scim` stage configuration (`[stage.NAME]` table): typed,
//! `deny_unknown_fields`, every key documented and defaulted, and the
//! checks that need more than types (schema files, resource types, limits)
//! reported as located [`ConfigIssue`]s. The SCIM engine's own keys
//! (`max_results`, `bulk`, `cursor_timeout`, …) are
//! [`scimgate_scim_service::settings::EngineSettings`], flattened in; the
//! JSON Schema of the whole table is derived from these types.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use std::time::Duration;

use scimgate_abi::units::{HumanDuration, Seconds};
use scimgate_abi::ConfigIssue;
use scimgate_changes::backoff::Backoff;
use scimgate_changes::{SignatureKind, Subscriber};
use scimgate_scim::{core_schemas, urn, Registry, ResourceType, Schema};
use scimgate_scim_service::settings::EngineSettings;
use scimgate_scim_service::{ChangeSettings, Settings};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

pub use crate::store::postgres::{PgSettings, Secret};
pub use scimgate_scim_service::settings::{AuthSchemeConfig, BulkConfig};
pub use scimgate_scim_service::{PasswordStorage, PatchResponse};

/// The stage table.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScimConfig {
    /// Where resources live: `sqlite:PATH` (relative paths are resolved
    /// against `[server] data_dir`) or `postgres://user@host:port/db` (several
    /// nodes may share it; `?sslmode=disable|require|verify-ca|verify-full`,
    /// `&sslrootcert=/path/ca.pem`; a host off this machine needs an explicit
    /// `sslmode`). Default `sqlite:scim.db`.
    #[serde(default = "default_store")]
    pub store: String,
    /// The PostgreSQL password, usually `"${SCIMGATE_PG_PASSWORD}"`; wins over
    /// a password inside the URL. Never logged.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub store_password: Option<Secret>,
    /// Most connections one PostgreSQL store keeps open (per node), 1..=1000.
    #[serde(default = "default_pool_size")]
    #[schemars(range(min = 1, max = 1000))]
    pub pool_size: usize,
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
    /// Keep the change log (every write recorded in the same transaction)
    /// and serve the pull feed `GET …/Changes`; `false`: nothing is
    /// recorded and `/Changes` answers 501.
    #[serde(default = "yes")]
    pub change_log: bool,
    /// Change-log entries older than this are pruned (`"7d"`, `"12h"`, or
    /// seconds); a client whose position was pruned gets 410 and resyncs.
    #[serde(default = "default_change_retention")]
    pub change_retention: Seconds,
    /// Longest long poll of `/Changes` (`wait` above it is clamped), at most
    /// `"60s"`.
    #[serde(default = "default_change_max_wait")]
    pub change_max_wait: Seconds,
    /// Most `/Changes` long polls waiting at once (each holds one of the
    /// host's pipeline slots); beyond it a request answers at once.
    #[serde(default = "default_change_max_waiters")]
    pub change_max_waiters: usize,
    /// The Ed25519 key (PKCS#8 PEM) that signs the pushed change events
    /// (relative paths against `data_dir`). Default: the instance's signing
    /// key `<data_dir>/oauth2-signing-key.pem`, generated (mode 0600) when
    /// missing. Its public key is served by `scim-server/change-keys`.
    #[serde(default)]
    pub change_signing_key: Option<String>,
    /// `iss` of the pushed change events: this endpoint's SCIM base URL
    /// (`https://scim.example.com/scim/v2`), the base of each event's
    /// `sub_id.uri`. Default `urn:scimgate:stage:<stage name>`.
    #[serde(default)]
    pub change_issuer: Option<String>,
    /// Webhook subscribers (`[[stage.NAME.subscriber]]`): every change is
    /// POSTed to each as a signed Security Event Token, in order, at least
    /// once. Needs `change_log = true`.
    #[serde(default)]
    pub subscriber: Vec<SubscriberConfig>,
    /// The SCIM engine's settings (paging, Bulk, PATCH, `/Me`, cursors,
    /// passwords, scans, discovery), keys of this table.
    #[serde(flatten)]
    pub engine: EngineSettings,
}

/// One webhook subscriber (`[[stage.NAME.subscriber]]`).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriberConfig {
    /// Unique name: the key of its stored position and of the operations
    /// (`/Changes/Subscribers/NAME`).
    pub name: String,
    /// Where events are POSTed: `https://…`, or `http://` to a loopback
    /// host (anywhere with `allow_http`). Redirects are never followed.
    pub url: String,
    /// `aud` of its events. Default: the `url`.
    #[serde(default)]
    pub audience: Option<String>,
    /// `eddsa` (default: the signing key, public keys at the
    /// `change-keys` route) or `hmac` (HS256 with `secret`).
    #[serde(default)]
    pub signature: SignatureConfig,
    /// The HS256 shared secret (`signature = "hmac"` only; at least 32
    /// bytes; usually `"${file:/run/secrets/hr-webhook}"`). Never logged.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub secret: Option<Secret>,
    /// Failed attempts at one event before the subscriber is dead-lettered.
    #[serde(default = "default_max_attempts")]
    #[schemars(range(min = 1))]
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt (full jitter) up to `backoff_cap`.
    #[serde(default = "default_backoff_base")]
    pub backoff_base: HumanDuration,
    /// Longest retry delay.
    #[serde(default = "default_backoff_cap")]
    pub backoff_cap: HumanDuration,
    /// Whole-request timeout of one POST.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Events read (and delivered) per step.
    #[serde(default = "default_batch_size")]
    #[schemars(range(min = 1))]
    pub batch_size: usize,
    /// Allow plain `http://` to a non-loopback host.
    #[serde(default)]
    pub allow_http: bool,
}

/// How a subscriber's events are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SignatureConfig {
    #[default]
    Eddsa,
    Hmac,
}

fn default_max_attempts() -> u32 {
    10
}
fn default_backoff_base() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_backoff_cap() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_batch_size() -> usize {
    100
}

impl SubscriberConfig {
    /// The engine's subscriber (unchecked; see [`Subscriber::validate`]).
    pub fn subscriber(&self) -> Subscriber {
        let mut sub = Subscriber::new(
            &self.name,
            &self.url,
            self.audience.as_deref().unwrap_or(&self.url),
        );
        if self.signature == SignatureConfig::Hmac {
            sub.signature = SignatureKind::Hmac {
                secret: self
                    .secret
                    .as_ref()
                    .map(|s| s.0.as_bytes().to_vec())
                    .unwrap_or_default(),
            };
        }
        sub.max_attempts = self.max_attempts;
        sub.backoff = Backoff {
            base: self.backoff_base.0,
            cap: self.backoff_cap.0,
        };
        sub.request_timeout = self.timeout.0;
        sub.batch_size = self.batch_size;
        sub.allow_http = self.allow_http;
        sub
    }

    /// The located mistakes of subscriber `index`.
    fn check(&self, index: usize, issues: &mut Vec<ConfigIssue>) {
        let at = |key: &str| format!("subscriber[{index}].{key}");
        match (self.signature, &self.secret) {
            (SignatureConfig::Hmac, None) => issues.push(ConfigIssue::new(
                at("signature"),
                "signature = \"hmac\" needs `secret` (at least 32 bytes)",
            )),
            (SignatureConfig::Eddsa, Some(_)) => issues.push(ConfigIssue::new(
                at("secret"),
                "`secret` is for signature = \"hmac\" only; EdDSA events are signed with change_signing_key",
            )),
            _ => {}
        }
        let mut sub = self.subscriber();
        if self.secret.is_none() {
            // Reported above; check the rest.
            sub.signature = SignatureKind::EdDsa;
        }
        if let Err(message) = sub.validate() {
            // The engine's message names the setting it is about.
            let key = [
                ("max_attempts", "max_attempts"),
                ("batch_size", "batch_size"),
                ("request_timeout", "timeout"),
                ("backoff", "backoff_base"),
                ("secret", "secret"),
                ("url", "url"),
            ]
            .into_iter()
            .find(|(word, _)| message.contains(word))
            .map_or("name", |(_, key)| key);
            issues.push(ConfigIssue::new(at(key), message));
        }
    }
}

/// A JSON document given as a file path or inline.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum JsonSource {
    File(String),
    Inline(serde_json::Map<String, Value>),
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
fn default_change_retention() -> Seconds {
    Seconds(ChangeSettings::default().retention_secs)
}
fn default_change_max_wait() -> Seconds {
    Seconds(ChangeSettings::default().max_wait_secs)
}
fn default_change_max_waiters() -> usize {
    ChangeSettings::default().max_waiters
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
        if self.engine.password_storage == PasswordStorage::Backend {
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
        let mut names = std::collections::HashSet::new();
        for (i, sub) in self.subscriber.iter().enumerate() {
            if !names.insert(sub.name.as_str()) {
                issues.push(ConfigIssue::new(
                    format!("subscriber[{i}].name"),
                    format!(
                        "another subscriber is named {:?}; names must be unique",
                        sub.name
                    ),
                ));
            }
            sub.check(i, &mut issues);
        }
        if !self.subscriber.is_empty() && !self.change_log {
            issues.push(ConfigIssue::new(
                "subscriber",
                "subscribers push the change log: set change_log = true (or remove them)",
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

    /// Where the change signing key is (relative to `data_dir`).
    pub fn change_signing_key_path(&self, data_dir: &Path) -> PathBuf {
        match &self.change_signing_key {
            Some(path) if Path::new(path).is_absolute() => PathBuf::from(path),
            Some(path) => data_dir.join(path),
            None => data_dir.join(crate::push::DEFAULT_KEY_FILE),
        }
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
        let mut settings = self.engine.settings();
        settings.changes = ChangeSettings {
            enabled: self.change_log,
            retention_secs: self.change_retention.0,
            max_wait_secs: self.change_max_wait.0,
            max_waiters: self.change_max_waiters,
        };
        settings
    }

    /// The ServiceProviderConfig body (without `meta.location`), including
    /// the RFC 9865 `pagination` object.
    pub fn service_provider_config(&self) -> Value {
        self.settings().service_provider_config()
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
    use scimgate_abi::units::{Seconds, Size};
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
        assert_eq!(config.engine.max_results, 200);
        assert_eq!(config.engine.default_page_size, 100);
        assert_eq!(config.engine.bulk.max_operations, 1000);
        assert_eq!(config.engine.bulk.max_payload_size, Size(1 << 20));
        assert_eq!(config.engine.cursor_timeout, Seconds(600));
        assert_eq!(config.engine.max_scan, 100_000);
        assert_eq!(
            config.settings(),
            scimgate_scim_service::Settings::default()
        );
        assert_eq!(config.engine.patch_response, PatchResponse::Resource);
        assert!(
            config.engine.unique_group_names && !config.engine.me && config.users && config.groups
        );
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
        assert_eq!(config.engine.bulk.max_payload_size, Size(512 * 1024));
        assert_eq!(config.engine.cursor_timeout, Seconds(7200));
        assert_eq!(config.engine.patch_response, PatchResponse::NoContent);
        let checked = |value| {
            scimgate_abi::schema::check_config::<ScimConfig>(
                &scimgate_abi::schema::schema_of::<ScimConfig>(),
                &value,
            )
        };
        let issues =
            checked(json!({"bulk": {"max_payload_size": "1 furlong"}})).expect_err("bad size");
        assert_eq!(issues[0].path.as_str(), "bulk.max_payload_size");
        // serde alone (flattened engine keys) still refuses unknown keys.
        let issue = deserialize_config::<ScimConfig>(&json!({"nope": 1})).expect_err("unknown key");
        assert!(issue.message.contains("unknown field"), "{}", issue.message);
        let issues = checked(json!({"nope": 1})).expect_err("unknown key");
        assert_eq!(issues[0].path.as_str(), "nope");
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
            "store": "postgres://scim@db.example:5432/scim?sslmode=require",
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
            "store": "postgres://u:hunter2@db/scim?sslmode=prefer",
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
        assert!(
            issues[0].message.contains("sslmode=prefer is refused"),
            "{}",
            issues[0].message
        );
        let plain: ScimConfig =
            deserialize_config(&json!({"store": "postgres://u@db.example/scim"})).expect("parse");
        let issues = plain.check(Path::new("/tmp"));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(
            issues[0].message.contains("no sslmode")
                && issues[0].message.contains("sslmode=disable"),
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

    fn validate(config: serde_json::Value) -> Vec<(String, String)> {
        scimgate_abi::testing::issues(&crate::components().remove(0), config)
    }

    #[test]
    fn the_published_schema_is_the_derived_one_and_its_example_validates() {
        // The engine's keys are flattened into the stage table, unknown keys refused.
        let published = scimgate_abi::testing::assert_schema_is_derived::<ScimConfig>(
            &crate::components().remove(0),
        );
        for key in [
            "store",
            "max_results",
            "bulk",
            "cursor_timeout",
            "password_storage",
        ] {
            assert!(published["properties"].get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn every_mistake_is_reported_at_once_with_its_path() {
        let issues = validate(json!({
            "max_resluts": 10,
            "bulk": {"max_operations": "many", "max_payload_size": "1m"},
            "cursor_timeout": "10",
            "patch_response": "nothing"
        }));
        let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "bulk.max_operations",
                "bulk.max_payload_size",
                "cursor_timeout",
                "max_resluts",
                "patch_response"
            ],
            "{issues:?}"
        );
        // The old grammar's `"1m"` (1 MiB) says what to write now.
        assert!(issues[1].1.contains("\"1MiB\""), "{issues:?}");
        assert!(issues[2].1.contains("\"10s\""), "{issues:?}");
        assert!(
            issues[3].1.contains("did you mean `max_results`?"),
            "{issues:?}"
        );
    }

    #[test]
    fn subscribers_have_defaults_and_located_mistakes() {
        let config: ScimConfig = deserialize_config(&json!({
            "subscriber": [{"name": "hr", "url": "https://hr.example/events"}]
        }))
        .expect("parse");
        assert!(config.check(Path::new("/tmp")).is_empty());
        let sub = config.subscriber[0].subscriber();
        assert_eq!(
            sub.audience, "https://hr.example/events",
            "audience defaults to the url"
        );
        assert_eq!(sub.signature, SignatureKind::EdDsa);
        assert_eq!((sub.max_attempts, sub.batch_size), (10, 100));
        assert_eq!(sub.backoff.base, Duration::from_secs(1));
        assert_eq!(sub.backoff.cap, Duration::from_secs(300));
        assert_eq!(sub.request_timeout, Duration::from_secs(10));
        assert!(!sub.allow_http);
        assert_eq!(
            config.change_signing_key_path(Path::new("/data")),
            PathBuf::from("/data/oauth2-signing-key.pem")
        );

        let bad: ScimConfig = deserialize_config(&json!({
            "change_log": false,
            "subscriber": [
                {"name": "a", "url": "http://a.example/x"},
                {"name": "a", "url": "https://b.example/x", "signature": "hmac"},
                {"name": "c", "url": "https://c.example/x", "secret": "0123456789abcdef0123456789abcdef"},
                {"name": "d", "url": "https://d.example/x", "signature": "hmac", "secret": "short-TOPSECRET"},
                {"name": "e", "url": "https://e.example/x", "max_attempts": 0}
            ]
        }))
        .expect("parse");
        let issues = bad.check(Path::new("/tmp"));
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "subscriber[0].url",
                "subscriber[1].name",
                "subscriber[1].signature",
                "subscriber[2].secret",
                "subscriber[3].secret",
                "subscriber[4].max_attempts",
                "subscriber",
            ],
            "{issues:?}"
        );
        assert!(issues[0].message.contains("loopback"), "{issues:?}");
        assert!(
            issues.iter().all(|i| !i.message.contains("TOPSECRET")),
            "{issues:?}"
        );
        assert!(!format!("{bad:?}").contains("TOPSECRET"));
        // Unknown keys of a subscriber are refused with their path.
        let issues =
            validate(json!({"subscriber": [{"name": "x", "url": "https://x/", "retries": 3}]}));
        assert_eq!(issues[0].0, "subscriber[0].retries", "{issues:?}");
    }

    #[test]
    fn a_value_out_of_range_is_reported_once() {
        let issues = validate(json!({"pool_size": 0}));
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert_eq!(issues[0].0, "pool_size");
    }
}
