//! `oauth2/static-bearer`: long-lived bearer tokens stored hashed per
//! provider (`auth.token_hash = "sha256:…"`), as Entra ID's "secret token".
//! The presented token's SHA-256 is looked up in a map built at creation and
//! the final match compared in constant time.

use std::collections::HashMap;

use scimgate_abi::sdk::{Authenticator, CreateContext};
use scimgate_abi::{AuthOutcome, PluginError, Principal, Request};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::credentials::bearer_token;
use crate::errors::{bearer_challenge, config_error, invalid_token};
use crate::providers;
use crate::secret::{sha256, SecretHash};

pub const METHOD: &str = "static-bearer";

/// `[stage.x] use = "oauth2/static-bearer"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticBearerConfig {
    /// Reject Bearer tokens that match no provider (401) instead of passing
    /// them on (NotMine) to the next authenticator, e.g. `oauth2/bearer`.
    #[serde(default)]
    pub reject_unknown: bool,
}

struct Holder {
    digest: [u8; 32],
    provider_id: String,
    client_id: String,
    scopes: Vec<String>,
}

pub struct StaticBearer {
    by_digest: HashMap<[u8; 32], Holder>,
    reject_unknown: bool,
}

impl StaticBearer {
    pub fn build(config: StaticBearerConfig, ctx: &CreateContext) -> Result<Self, PluginError> {
        let mut problems = Vec::new();
        let mut by_digest = HashMap::new();
        for p in providers::parse(&ctx.providers) {
            if p.method != METHOD {
                continue;
            }
            let digest = match p.secret_hash("token_hash") {
                Ok(SecretHash::Sha256(d)) => d,
                Ok(SecretHash::Argon2id(_)) => {
                    problems.push(format!("provider `{}`: auth.token_hash must be `sha256:…` (tokens are looked up by hash)", p.id));
                    continue;
                }
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if by_digest.contains_key(&digest) {
                problems.push(format!(
                    "provider `{}`: the same token is configured for another provider",
                    p.id
                ));
                continue;
            }
            let client_id = p.client_id.clone().unwrap_or_else(|| p.id.clone());
            by_digest.insert(
                digest,
                Holder {
                    digest,
                    provider_id: p.id,
                    client_id,
                    scopes: p.scopes,
                },
            );
        }
        if !problems.is_empty() {
            return Err(config_error(&ctx.stage, &problems));
        }
        Ok(StaticBearer {
            by_digest,
            reject_unknown: config.reject_unknown,
        })
    }
}

impl Authenticator for StaticBearer {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        let Some(token) = bearer_token(req) else {
            return AuthOutcome::NotMine;
        };
        let digest = sha256(token.as_bytes());
        match self.by_digest.get(&digest) {
            Some(holder) if bool::from(holder.digest.ct_eq(&digest)) => {
                let mut principal = Principal::new(&holder.provider_id, &holder.client_id, METHOD);
                principal.scopes = holder.scopes.iter().map(|s| s.as_str().into()).collect();
                AuthOutcome::Authenticated(principal)
            }
            _ if self.reject_unknown => {
                AuthOutcome::Rejected(invalid_token(req, "unknown bearer token"))
            }
            _ => AuthOutcome::NotMine,
        }
    }

    fn challenge(&self) -> Option<String> {
        Some(bearer_challenge())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::tests::sha256_ref;
    use crate::testutil::{ctx, rejected, request};
    use serde_json::{json, Value};

    fn build(config: Value) -> StaticBearer {
        let c = ctx(
            config,
            vec![
                json!({"id": "entra", "auth": {"method": METHOD, "token_hash": sha256_ref("long-lived-secret"), "scopes": ["scim:write"]}}),
                json!({"id": "oim", "auth": {"method": "oauth2-client-credentials", "client_id": "x", "token_hash": sha256_ref("other")}}),
            ],
        );
        StaticBearer::build(c.deserialize().unwrap(), &c).unwrap()
    }

    fn bearer(token: &str) -> Request {
        request(
            "GET",
            &[("authorization", &format!("Bearer {token}"))],
            "",
            0,
        )
    }

    #[test]
    fn a_matching_token_authenticates_its_provider() {
        let s = build(json!({}));
        match s.authenticate(&bearer("long-lived-secret")) {
            AuthOutcome::Authenticated(p) => {
                assert_eq!(p.provider_id.as_str(), "entra");
                assert_eq!(p.client_id.as_str(), "entra");
                assert_eq!(p.auth_method.as_str(), METHOD);
                assert!(p.has_scope("scim:write"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_tokens_pass_on_unless_configured_to_reject() {
        let s = build(json!({}));
        assert!(matches!(
            s.authenticate(&bearer("nope")),
            AuthOutcome::NotMine
        ));
        // Tokens of providers with another method are not static tokens.
        assert!(matches!(
            s.authenticate(&bearer("other")),
            AuthOutcome::NotMine
        ));
        assert!(matches!(
            s.authenticate(&request("GET", &[], "", 0)),
            AuthOutcome::NotMine
        ));
        let s = build(json!({"reject_unknown": true}));
        let e = rejected(s.authenticate(&bearer("nope")));
        assert_eq!(e.status, 401);
        assert!(e.headers.iter().any(|h| h.value.contains("invalid_token")));
    }

    #[test]
    fn only_static_bearer_providers_are_loaded_and_tokens_are_unique() {
        let s = build(json!({}));
        assert_eq!(s.by_digest.len(), 1);
        assert!(!s.reject_unknown);
        assert_eq!(s.challenge().as_deref(), Some("Bearer realm=\"scimgate\""));
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "a", "auth": {"method": METHOD, "token_hash": sha256_ref("same")}}),
                json!({"id": "b", "auth": {"method": METHOD, "token_hash": sha256_ref("same")}}),
            ],
        );
        let e = StaticBearer::build(c.deserialize().unwrap(), &c)
            .err()
            .unwrap();
        assert!(e.message.contains("provider `b`"), "{}", e.message);
        assert!(e.message.contains("another provider"), "{}", e.message);
        // With reject_unknown, a known token still authenticates.
        let s = build(json!({"reject_unknown": true}));
        assert!(matches!(
            s.authenticate(&bearer("long-lived-secret")),
            AuthOutcome::Authenticated(_)
        ));
    }

    #[test]
    fn argon2_token_hashes_are_a_config_error() {
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "e", "auth": {"method": METHOD, "token_hash": crate::secret::tests::argon2id_ref("t")}}),
            ],
        );
        let e = StaticBearer::build(c.deserialize().unwrap(), &c)
            .err()
            .unwrap();
        assert!(e.message.contains("sha256"), "{}", e.message);
    }
}
