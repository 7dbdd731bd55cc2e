//! The provider authentication methods this library owns — what
//! `[provider.auth] method = "…"` may say and which keys each method takes.
//! The host checks the keys and hashes plaintext secrets from these
//! declarations; the value checks that only a method's authenticator knows
//! are here, reported against the provider's own lines.

use scimgate_abi::declare::ProviderMethod;
use scimgate_abi::ConfigIssue;
use serde_json::{Map, Value};

/// Asymmetric JWS algorithms the `jwks` method verifies.
pub const JWS_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub fn client_credentials() -> ProviderMethod {
    ProviderMethod::new(
        crate::client_credentials::METHOD,
        "OAuth2 client credentials (RFC 6749 §4.4): a client_id and a secret, exchanged for tokens at the token endpoint",
    )
    .secret("client_secret_hash", "client_secret")
    .requires_client_id()
}

pub fn static_bearer() -> ProviderMethod {
    ProviderMethod::new(
        "static-bearer",
        "a long-lived bearer token, stored as its hash; it alone names the provider",
    )
    .unique_secret("token_hash", "token")
}

pub fn basic() -> ProviderMethod {
    ProviderMethod::new(
        "basic",
        "HTTP Basic (RFC 7617): a username and a password, stored as an argon2id or sha256 hash",
    )
    .key("username")
    .secret("password_hash", "password")
}

pub fn jwks() -> ProviderMethod {
    ProviderMethod::new(
        crate::jwks::METHOD,
        "JWTs of an external issuer, verified against its JSON Web Key Set (a file, an https URL, or http on loopback)",
    )
    .key("issuer")
    .key("audience")
    .path_key("jwks")
    .key("subject_claim")
    .key("subject")
    .key("algorithms")
}

fn string<'a>(
    auth: &'a Map<String, Value>,
    key: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<&'a str> {
    match auth.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            issues.push(ConfigIssue::new(key, "expected a string"));
            None
        }
    }
}

fn required<'a>(
    auth: &'a Map<String, Value>,
    key: &str,
    method: &str,
    issues: &mut Vec<ConfigIssue>,
) -> Option<&'a str> {
    if auth.get(key).is_none() {
        issues.push(ConfigIssue::new(
            "",
            format!("method {method} needs `{key}`"),
        ));
        return None;
    }
    string(auth, key, issues)
}

/// `token_hash`: a `sha256:` hash — tokens are looked up by their hash, and
/// an argon2id hash would be paid on every request.
pub fn check_static_bearer(auth: &Map<String, Value>) -> Vec<ConfigIssue> {
    match auth.get("token_hash").and_then(Value::as_str) {
        Some(hash) if !hash.starts_with("sha256:") => vec![ConfigIssue::new(
            "token_hash",
            "tokens are looked up by hash: use a `sha256:` hash (`token = \"${VARIABLE}\"` gives one)",
        )],
        _ => Vec::new(),
    }
}

/// `username`: required, without `:` (RFC 7617) or control characters.
pub fn check_basic(auth: &Map<String, Value>) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    if let Some(name) = required(auth, "username", "basic", &mut issues) {
        if name.is_empty() || name.contains(':') || name.chars().any(char::is_control) {
            issues.push(ConfigIssue::new(
                "username",
                "invalid username: must be non-empty, without `:` (RFC 7617) or control characters",
            ));
        }
    }
    issues
}

/// Issuer, audience, key set location, subject rules, algorithms.
pub fn check_jwks(auth: &Map<String, Value>) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    required(auth, "issuer", "jwks", &mut issues);
    match auth.get("audience") {
        None => issues.push(ConfigIssue::new("", "method jwks needs `audience`")),
        Some(Value::String(_)) => {}
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {}
        Some(_) => issues.push(ConfigIssue::new(
            "audience",
            "expected a string or an array of strings",
        )),
    }
    if let Some(location) = required(auth, "jwks", "jwks", &mut issues) {
        let url = location.starts_with("https://") || location.starts_with("http://");
        if !url && (location.is_empty() || location.contains("://")) {
            issues.push(ConfigIssue::new(
                "jwks",
                "invalid `jwks`: expected an http(s) URL or a file path",
            ));
        }
    }
    if string(auth, "subject_claim", &mut issues) == Some("") {
        issues.push(ConfigIssue::new(
            "subject_claim",
            "`subject_claim` is empty (e.g. \"sub\" or \"appid\")",
        ));
    }
    string(auth, "subject", &mut issues);
    match auth.get("algorithms") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str() {
                    Some(alg) if JWS_ALGORITHMS.contains(&alg) => {}
                    _ => issues.push(ConfigIssue::new(
                        "algorithms",
                        format!(
                            "unsupported JWS algorithm {item} (supported: {})",
                            JWS_ALGORITHMS.join(", ")
                        ),
                    )),
                }
            }
        }
        Some(_) => issues.push(ConfigIssue::new(
            "algorithms",
            "expected an array of strings",
        )),
    }
    issues
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn jwks_values_are_checked_each_at_its_key() {
        let issues = check_jwks(&map(json!({
            "audience": 3, "jwks": "ftp://x", "subject_claim": "", "algorithms": ["RS256", "none"]
        })));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["", "audience", "jwks", "subject_claim", "algorithms"]
        );
        assert!(issues[0].message.contains("needs `issuer`"));
        assert!(issues[4].message.contains("\"none\""));
        let fine = map(
            json!({"issuer": "i", "audience": ["a", "b"], "jwks": "keys.json", "algorithms": ["EdDSA"]}),
        );
        assert!(check_jwks(&fine).is_empty());
    }

    #[test]
    fn static_bearer_tokens_are_sha256() {
        assert!(check_static_bearer(&map(json!({"token_hash": "sha256:00"}))).is_empty());
        let slow = check_static_bearer(&map(json!({"token_hash": "$argon2id$v=19$x"})));
        assert_eq!(slow[0].path.as_str(), "token_hash");
    }

    #[test]
    fn basic_usernames_follow_rfc_7617() {
        assert!(check_basic(&map(json!({"username": "alice"}))).is_empty());
        for bad in [
            json!({"username": "a:b"}),
            json!({"username": ""}),
            json!({"username": 3}),
        ] {
            assert_eq!(check_basic(&map(bad)).len(), 1);
        }
        assert_eq!(
            check_basic(&map(json!({})))[0].message,
            "method basic needs `username`"
        );
    }
}
