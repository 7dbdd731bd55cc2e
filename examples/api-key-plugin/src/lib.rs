//! `api-key/api-key`: an authenticator that brings its own provider
//! authentication method, with no change to the host. A provider says
//! `[provider.auth] method = "api-key"` and gives its key as `key` (hashed by
//! the host before this plugin sees it) or `key_hash`; an optional
//! `key_name` names the key in principals and audit events. Requests carry
//! the key in a header (`x-api-key` unless the stage says otherwise). The
//! generic provider rules (validity, addresses, referrers, access, scopes)
//! stay with the policies.

use scimgate_abi::declare::ProviderMethod;
use scimgate_abi::sdk::{Authenticator, Component, CreateContext};
use scimgate_abi::secret::SecretHash;
use scimgate_abi::{AuthOutcome, ConfigIssue, PluginError, Principal, Request};
use serde::Deserialize;
use serde_json::{Map, Value};

pub const METHOD: &str = "api-key";

/// `[stage.NAME] use = "api-key/api-key"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The request header that carries the key.
    #[serde(default = "default_header")]
    pub header: String,
}

fn default_header() -> String {
    "x-api-key".into()
}

/// One provider's key.
struct Key {
    hash: SecretHash,
    provider_id: String,
    key_name: String,
    scopes: Vec<String>,
}

pub struct ApiKey {
    header: String,
    keys: Vec<Key>,
}

impl ApiKey {
    pub fn build(config: ApiKeyConfig, ctx: &CreateContext) -> Result<ApiKey, PluginError> {
        let mut keys = Vec::new();
        for provider in &ctx.providers {
            let auth = &provider["auth"];
            if auth["method"] != METHOD {
                continue;
            }
            let id = provider["id"].as_str().unwrap_or_default().to_string();
            let hash = auth["key_hash"]
                .as_str()
                .ok_or_else(|| PluginError::internal(format!("provider `{id}` has no key_hash")))
                .and_then(|h| SecretHash::parse(h).map_err(PluginError::internal))?;
            keys.push(Key {
                hash,
                key_name: auth["key_name"].as_str().unwrap_or(&id).to_string(),
                scopes: auth["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
                provider_id: id,
            });
        }
        Ok(ApiKey {
            header: config.header.to_ascii_lowercase(),
            keys,
        })
    }
}

impl Authenticator for ApiKey {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        let Some(presented) = req.header(&self.header) else {
            return AuthOutcome::NotMine;
        };
        // Every key is compared (each in constant time), so the time taken
        // does not say which one matched.
        let mut found = None;
        for key in &self.keys {
            if key.hash.verify(presented.as_bytes()) && found.is_none() {
                found = Some(key);
            }
        }
        match found {
            Some(key) => {
                let mut principal = Principal::new(&key.provider_id, &key.key_name, METHOD);
                principal.scopes = key.scopes.iter().map(|s| s.as_str().into()).collect();
                AuthOutcome::Authenticated(principal)
            }
            None => AuthOutcome::Rejected(PluginError::new(401, "unknown API key")),
        }
    }
}

/// The method's values: keys are high-entropy, so `key_hash` is a fast
/// `sha256:` hash (an argon2id hash would be paid on every request), and a
/// `key_name` is a short printable name.
fn check_provider(auth: &Map<String, Value>) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if let Some(hash) = auth.get("key_hash").and_then(Value::as_str) {
        if !hash.starts_with("sha256:") {
            issues.push(ConfigIssue::new(
                "key_hash",
                "an API key is checked on every request: use a `sha256:` hash (`key = \"${VARIABLE}\"` gives one)",
            ));
        }
    }
    match auth.get("key_name") {
        None => {}
        Some(Value::String(name))
            if !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_graphic()) => {}
        Some(_) => issues.push(ConfigIssue::new(
            "key_name",
            "a key name is 1 to 64 printable ASCII characters without spaces",
        )),
    }
    issues
}

fn components() -> Vec<Component> {
    vec![Component::authenticator_with_config(
        "api-key",
        "API keys in a request header, per provider (`[provider.auth] method = \"api-key\"`)",
        ApiKey::build,
    )
    .with_example(serde_json::json!({"header": "x-api-key"}))
    .with_provider_method(
        ProviderMethod::new(METHOD, "a static API key sent in a request header")
            .unique_secret("key_hash", "key")
            .key("key_name"),
        check_provider,
    )]
}

scimgate_abi::export_plugin!("api-key", components);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key_auth() -> ApiKey {
        let ctx = CreateContext {
            stage: "keys".into(),
            config: json!({}),
            providers: vec![
                json!({"id": "vault", "auth": {"method": "api-key", "key_hash": scimgate_abi::secret::sha256_secret("k1"), "key_name": "vault-2026", "scopes": ["scim:read"]}}),
                json!({"id": "other", "auth": {"method": "static-bearer", "token_hash": scimgate_abi::secret::sha256_secret("k1")}}),
            ],
            data_dir: std::env::temp_dir(),
            server: json!({}),
            host: None,
        };
        ApiKey::build(
            ApiKeyConfig {
                header: "X-Api-Key".into(),
            },
            &ctx,
        )
        .unwrap()
    }

    #[test]
    fn a_known_key_names_its_provider_and_others_are_refused_or_passed_on() {
        let auth = key_auth();
        match auth.authenticate(&Request::new("GET", "/").with_header("x-api-key", "k1")) {
            AuthOutcome::Authenticated(p) => {
                assert_eq!(p.provider_id.as_str(), "vault");
                assert_eq!(p.client_id.as_str(), "vault-2026");
                assert_eq!(p.scopes.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            auth.authenticate(&Request::new("GET", "/").with_header("x-api-key", "k2")),
            AuthOutcome::Rejected(e) if e.status == 401
        ));
        assert!(matches!(
            auth.authenticate(&Request::new("GET", "/")),
            AuthOutcome::NotMine
        ));
    }

    #[test]
    fn the_method_values_are_checked() {
        let bad = json!({"key_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA", "key_name": "with space"});
        let issues = check_provider(bad.as_object().unwrap());
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["key_hash", "key_name"]);
        let good = json!({"key_hash": "sha256:00", "key_name": "k"});
        assert!(check_provider(good.as_object().unwrap()).is_empty());
    }
}
