//! `oauth2/token`: the token endpoint for the client-credentials grant
//! (RFC 6749 §4.4, §5), issuing RFC 9068 JWT access tokens signed with
//! Ed25519. The client was authenticated by an earlier stage
//! (`oauth2/client-credentials`); this stage reads `caller.principal()`.

use std::path::PathBuf;

use scimgate_abi::sdk::{CreateContext, Endpoint};
use scimgate_abi::{Caller, PluginError, Request, Response};
use serde::{Deserialize, Serialize};

use crate::client_credentials::METHOD as CLIENT_CREDENTIALS;
use crate::credentials::Params;
use crate::duration::Seconds;
use crate::errors::{config_error, oauth};
use crate::jwt::{b64url, sign_eddsa};
use crate::keys::{self, KeySet, KeySources};

/// Longest allowed access-token lifetime.
pub const MAX_TTL: Seconds = Seconds(86_400);

/// `[stage.x] use = "oauth2/token"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Access-token lifetime (`"1h"`, `"15m"`; at most 24 h).
    #[serde(default = "default_ttl")]
    pub ttl: Seconds,
    /// `iss` of issued tokens.
    #[serde(default = "default_name")]
    pub issuer: String,
    /// `aud` of issued tokens.
    #[serde(default = "default_name")]
    pub audience: String,
    /// PKCS#8 PEM Ed25519 private key; default `<data_dir>/oauth2-signing-key.pem`
    /// (generated once).
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Older public keys (PEM) still accepted during a key rotation; only
    /// checked for readability here (the bearer stage uses them).
    #[serde(default)]
    pub verification_keys: Vec<PathBuf>,
    /// `auth_method`s of principals that may obtain tokens.
    #[serde(default = "default_client_auth_methods")]
    pub client_auth_methods: Vec<String>,
}

fn default_ttl() -> Seconds {
    Seconds(3600)
}
pub fn default_name() -> String {
    "scimgate".into()
}
fn default_client_auth_methods() -> Vec<String> {
    vec![CLIENT_CREDENTIALS.into()]
}

/// RFC 9068 §2.2 access-token claims, plus `provider`.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: serde_json::Value,
    pub client_id: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    pub provider: String,
}

pub struct TokenEndpoint {
    keys: KeySet,
    ttl_secs: i64,
    issuer: String,
    audience: String,
    client_auth_methods: Vec<String>,
}

impl TokenEndpoint {
    pub fn build(config: TokenConfig, ctx: &CreateContext) -> Result<Self, PluginError> {
        let mut problems = Vec::new();
        if config.ttl.0 == 0 || config.ttl > MAX_TTL {
            problems.push(format!(
                "ttl must be between 1s and 24h (got {}s)",
                config.ttl.0
            ));
        }
        let sources = KeySources {
            signing_key: config.signing_key,
            verification_keys: config.verification_keys,
        };
        let keys = keys::load(&ctx.data_dir, &sources).map_err(|e| {
            problems.push(e);
            config_error(&ctx.stage, &problems)
        })?;
        if !problems.is_empty() {
            return Err(config_error(&ctx.stage, &problems));
        }
        Ok(TokenEndpoint {
            keys,
            ttl_secs: i64::try_from(config.ttl.0).unwrap_or(3600),
            issuer: config.issuer,
            audience: config.audience,
            client_auth_methods: config.client_auth_methods,
        })
    }

    fn issue(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        if req.method.as_str() != "POST" {
            return Err(oauth(
                405,
                "invalid_request",
                "the token endpoint accepts POST only",
            )
            .with_header("allow", "POST"));
        }
        let Some(principal) = caller.principal() else {
            return Err(oauth(
                401,
                "invalid_client",
                "client authentication required",
            ));
        };
        if !self
            .client_auth_methods
            .iter()
            .any(|m| m == principal.auth_method.as_str())
        {
            return Err(oauth(
                401,
                "invalid_client",
                format!(
                    "clients authenticated by `{}` cannot obtain tokens here",
                    principal.auth_method
                ),
            ));
        }
        let params = Params::from_body(req)?;
        match params.get("grant_type")? {
            None => return Err(oauth(400, "invalid_request", "grant_type is missing")),
            Some("client_credentials") => {}
            Some(other) => {
                return Err(oauth(
                    400,
                    "unsupported_grant_type",
                    format!("grant_type `{other}` is not supported; use client_credentials"),
                ))
            }
        }
        // The provider's current scopes win over what the principal carried.
        let allowed: Vec<&str> = match caller.provider() {
            Some(p) => p.scopes.iter().map(|s| s.as_str()).collect(),
            None => principal.scopes.iter().map(|s| s.as_str()).collect(),
        };
        let granted = narrow_scopes(params.get("scope")?, &allowed)?;
        let now = req.received_at_unix_ms.div_euclid(1000);
        let mut exp = now.saturating_add(self.ttl_secs);
        // A token never outlives its provider's validity, which runs through
        // the last millisecond of `valid_until`'s second: the token expires
        // at the first instant the provider is no longer valid (a JWT is
        // refused from `exp` on), also when minted within that last second.
        if let Some(until) = caller.provider().and_then(|p| p.valid_until.into_option()) {
            exp = exp.min(until.saturating_add(1));
            // Over already: the `validity` policy refuses this too, but a
            // token route without it must not mint for an expired provider.
            if exp <= now {
                return Err(oauth(
                    401,
                    "invalid_client",
                    "the client's provider is no longer valid (valid_until)",
                ));
            }
        }
        let mut jti = [0u8; 16];
        getrandom::getrandom(&mut jti)
            .map_err(|e| PluginError::internal(format!("no system randomness: {e}")))?;
        let scope = (!granted.is_empty()).then(|| granted.join(" "));
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            sub: principal.client_id.to_string(),
            aud: serde_json::Value::String(self.audience.clone()),
            client_id: principal.client_id.to_string(),
            exp,
            iat: now,
            nbf: now,
            jti: b64url(&jti),
            scope: scope.clone(),
            provider: principal.provider_id.to_string(),
        };
        let token = sign_eddsa(&claims, &self.keys.signing_kid, &self.keys.signing)
            .map_err(PluginError::internal)?;
        let mut body = serde_json::json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": exp - now,
        });
        if let Some(scope) = scope {
            body["scope"] = scope.into();
        }
        tracing::debug!(client_id = %crate::errors::shown(&principal.client_id), provider = %crate::errors::shown(&principal.provider_id), jti = %claims.jti, "issued an access token");
        Ok(Response::json(200, "application/json", &body)
            .with_header("cache-control", "no-store")
            .with_header("pragma", "no-cache"))
    }
}

impl Endpoint for TokenEndpoint {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        self.issue(req, caller).map_err(|e| {
            e.with_header("cache-control", "no-store")
                .with_header("pragma", "no-cache")
        })
    }

    /// Minting is an Ed25519 signature in memory: never blocks.
    fn blocks_on(&self, _req: &Request) -> bool {
        false
    }
}

/// RFC 6749 §3.3: the requested scopes, each of which must be allowed;
/// absent or empty means every allowed scope. Order follows `allowed`.
fn narrow_scopes(requested: Option<&str>, allowed: &[&str]) -> Result<Vec<String>, PluginError> {
    let requested: Vec<&str> = requested
        .map(|s| s.split(' ').filter(|t| !t.is_empty()).collect())
        .unwrap_or_default();
    if requested.is_empty() {
        let mut all: Vec<String> = Vec::new();
        for s in allowed {
            if !all.iter().any(|a| a == s) {
                all.push((*s).to_string());
            }
        }
        return Ok(all);
    }
    for token in &requested {
        let valid = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(oauth(400, "invalid_scope", "malformed scope"));
        }
        if !allowed.contains(token) {
            return Err(oauth(
                400,
                "invalid_scope",
                format!("scope `{token}` is not granted to this client"),
            ));
        }
    }
    Ok(allowed.iter().filter(|a| requested.contains(a)).fold(
        Vec::new(),
        |mut acc: Vec<String>, s| {
            if !acc.iter().any(|a| a == s) {
                acc.push((*s).to_string());
            }
            acc
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Compact;
    use crate::testutil::{ctx_in, provider_record, request, temp_dir};
    use scimgate_abi::std_types::ROption;
    use scimgate_abi::Principal;
    use serde_json::{json, Value};

    fn endpoint(config: Value) -> TokenEndpoint {
        let c = ctx_in(config, vec![], temp_dir("token"));
        TokenEndpoint::build(c.deserialize().unwrap(), &c).unwrap()
    }

    fn client() -> Principal {
        let mut p = Principal::new("oim", "oim-client", CLIENT_CREDENTIALS);
        p.scopes = vec!["scim:read".into()].into();
        p
    }

    fn call(t: &TokenEndpoint, body: &str, now_ms: i64) -> Result<Response, PluginError> {
        let principal = client();
        let provider = provider_record("oim", &["scim:read", "scim:write"]);
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RSome(&provider),
        };
        let req = request(
            "POST",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
            now_ms,
        );
        t.handle(&req, caller)
    }

    fn json_body(r: &Response) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn issues_an_rfc9068_token_with_no_store_headers() {
        let t = endpoint(json!({"ttl": "15m", "issuer": "https://gw", "audience": "scim"}));
        let r = call(&t, "grant_type=client_credentials", 1_700_000_000_123).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.header("pragma"), Some("no-cache"));
        let body = json_body(&r);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 900);
        assert_eq!(body["scope"], "scim:read scim:write");
        let token = body["access_token"].as_str().unwrap();
        let c = Compact::parse(token).unwrap();
        assert_eq!(c.header.alg, "EdDSA");
        assert_eq!(c.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(c.header.kid.as_deref(), Some(t.keys.signing_kid.as_str()));
        let claims: AccessClaims = c.claims().unwrap();
        assert_eq!(claims.iss, "https://gw");
        assert_eq!(claims.aud, json!("scim"));
        assert_eq!(claims.sub, "oim-client");
        assert_eq!(claims.client_id, "oim-client");
        assert_eq!(claims.provider, "oim");
        assert_eq!(claims.iat, 1_700_000_000);
        assert_eq!(claims.nbf, 1_700_000_000);
        assert_eq!(claims.exp, 1_700_000_900);
        assert_eq!(claims.jti.len(), 22);
        let again: AccessClaims = Compact::parse(
            json_body(&call(&t, "grant_type=client_credentials", 0).unwrap())["access_token"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
        .claims()
        .unwrap();
        assert_ne!(again.jti, claims.jti);
        // The signature verifies with the published key.
        let key = t.keys.verifying.get(&t.keys.signing_kid).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&c.signature).unwrap();
        key.verify_strict(c.signing_input.as_bytes(), &sig).unwrap();
    }

    #[test]
    fn grant_type_rules() {
        let t = endpoint(json!({}));
        let e = call(&t, "", 0).unwrap_err();
        assert_eq!((e.status, e.code()), (400, Some("invalid_request")));
        let e = call(&t, "grant_type=password", 0).unwrap_err();
        assert_eq!((e.status, e.code()), (400, Some("unsupported_grant_type")));
        assert!(e.headers.iter().any(|h| h.name.as_str() == "cache-control"));
        let e = call(
            &t,
            "grant_type=client_credentials&grant_type=client_credentials",
            0,
        )
        .unwrap_err();
        assert_eq!(e.code(), Some("invalid_request"));
    }

    #[test]
    fn only_post_and_only_client_credentials_principals() {
        let t = endpoint(json!({}));
        let principal = client();
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RNone,
        };
        let req = request("GET", &[], "", 0);
        let e = t.handle(&req, caller).unwrap_err();
        assert_eq!((e.status, e.code()), (405, Some("invalid_request")));
        let req = request("POST", &[], "grant_type=client_credentials", 0);
        let e = t.handle(&req, Caller::ANONYMOUS).unwrap_err();
        assert_eq!((e.status, e.code()), (401, Some("invalid_client")));
        let bearer = Principal::new("oim", "oim-client", "bearer");
        let caller = Caller {
            principal: ROption::RSome(&bearer),
            provider: ROption::RNone,
        };
        let e = t.handle(&req, caller).unwrap_err();
        assert_eq!(e.code(), Some("invalid_client"));
        // Without a provider record the principal's scopes apply; JSON bodies work.
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RNone,
        };
        let req = request(
            "POST",
            &[("content-type", "application/json")],
            r#"{"grant_type":"client_credentials"}"#,
            0,
        );
        assert_eq!(
            json_body(&t.handle(&req, caller).unwrap())["scope"],
            "scim:read"
        );
    }

    #[test]
    fn scope_narrowing_and_invalid_scope() {
        let t = endpoint(json!({}));
        let r = call(&t, "grant_type=client_credentials&scope=scim%3Awrite", 0).unwrap();
        assert_eq!(json_body(&r)["scope"], "scim:write");
        let r = call(
            &t,
            "grant_type=client_credentials&scope=scim:write+scim:read+scim:read",
            0,
        )
        .unwrap();
        assert_eq!(json_body(&r)["scope"], "scim:read scim:write");
        let e = call(&t, "grant_type=client_credentials&scope=scim:read+admin", 0).unwrap_err();
        assert_eq!((e.status, e.code()), (400, Some("invalid_scope")));
        let e = call(&t, "grant_type=client_credentials&scope=a%22b", 0).unwrap_err();
        assert_eq!(e.code(), Some("invalid_scope"));
    }

    #[test]
    fn ttl_is_capped_by_config_and_provider_validity() {
        let c = ctx_in(json!({"ttl": "25h"}), vec![], temp_dir("token-ttl"));
        let err = TokenEndpoint::build(c.deserialize().unwrap(), &c)
            .err()
            .unwrap();
        assert!(err.message.contains("ttl"), "{}", err.message);
        let t = endpoint(json!({"ttl": "1h"}));
        let principal = client();
        let mut provider = provider_record("oim", &["scim:read"]);
        provider.valid_until = ROption::RSome(1_000 + 59);
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RSome(&provider),
        };
        let req = request("POST", &[], "grant_type=client_credentials", 1_000_000);
        assert_eq!(
            json_body(&t.handle(&req, caller).unwrap())["expires_in"],
            60
        );
    }

    #[test]
    fn ttl_bounds_are_one_second_and_24_hours() {
        for (ttl, ok) in [
            ("0s", false),
            ("1s", true),
            ("24h", true),
            ("86401s", false),
        ] {
            let c = ctx_in(json!({"ttl": ttl}), vec![], temp_dir("token-ttl-bounds"));
            let built = TokenEndpoint::build(c.deserialize().unwrap(), &c);
            assert_eq!(built.is_ok(), ok, "{ttl}");
            if let Err(err) = built {
                assert!(
                    err.message.contains("ttl must be between"),
                    "{}",
                    err.message
                );
            }
        }
        let t = endpoint(json!({}));
        assert_eq!(t.ttl_secs, 3600);
        assert_eq!(t.issuer, "scimgate");
        assert_eq!(t.audience, "scimgate");
        let r = call(&t, "grant_type=client_credentials", 5_000).unwrap();
        assert_eq!(json_body(&r)["expires_in"], 3600);
    }

    #[test]
    fn provider_validity_shortens_only_a_token_that_would_outlive_it() {
        let t = endpoint(json!({"ttl": "1h"}));
        let principal = client();
        let issue = |valid_until: Option<i64>| {
            let mut provider = provider_record("oim", &["scim:read"]);
            provider.valid_until = valid_until.into();
            let caller = Caller {
                principal: ROption::RSome(&principal),
                provider: ROption::RSome(&provider),
            };
            let req = request("POST", &[], "grant_type=client_credentials", 1_000_000);
            json_body(&t.handle(&req, caller).unwrap())["expires_in"].clone()
        };
        // now = 1000 s; a provider is valid through the last millisecond of
        // `valid_until`'s second, so the token expires one second after it.
        assert_eq!(issue(Some(1_001)), 2);
        assert_eq!(issue(Some(1_000 + 3_598)), 3_599);
        assert_eq!(issue(Some(1_000 + 3_599)), 3_600);
        assert_eq!(issue(Some(1_000 + 7_200)), 3_600);
        assert_eq!(issue(None), 3_600);
        // Minted within the provider's last second: capped all the same.
        assert_eq!(issue(Some(1_000)), 1);
    }

    #[test]
    fn an_expired_provider_gets_no_token_even_without_the_validity_policy() {
        let t = endpoint(json!({"ttl": "1h"}));
        let principal = client();
        let mut provider = provider_record("oim", &["scim:read"]);
        provider.valid_until = ROption::RSome(999);
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RSome(&provider),
        };
        let req = request("POST", &[], "grant_type=client_credentials", 1_000_000);
        let e = t.handle(&req, caller).unwrap_err();
        assert_eq!((e.status, e.code()), (401, Some("invalid_client")));
    }

    #[test]
    fn scope_tokens_use_the_rfc_6749_character_set() {
        let allowed = ["a!b", "x#[", "]~", "scim:read"];
        for ok in ["a!b", "x#[", "]~", "scim:read"] {
            assert_eq!(narrow_scopes(Some(ok), &allowed).unwrap(), [ok]);
        }
        for bad in ["a\"b", "a\\b", "a\u{7f}", "caf\u{e9}", "tab\t"] {
            let e = narrow_scopes(Some(bad), &[bad]).unwrap_err();
            assert_eq!(e.code(), Some("invalid_scope"), "{bad:?}");
            assert_eq!(e.message.as_str(), "malformed scope", "{bad:?}");
        }
    }

    #[test]
    fn narrowing_keeps_the_allowed_order_without_duplicates() {
        let allowed = ["b", "a", "c", "a"];
        assert_eq!(narrow_scopes(None, &allowed).unwrap(), ["b", "a", "c"]);
        assert_eq!(narrow_scopes(Some(""), &allowed).unwrap(), ["b", "a", "c"]);
        assert_eq!(
            narrow_scopes(Some("  "), &allowed).unwrap(),
            ["b", "a", "c"]
        );
        assert_eq!(narrow_scopes(Some("c  a a"), &allowed).unwrap(), ["a", "c"]);
        assert_eq!(narrow_scopes(Some(" c "), &allowed).unwrap(), ["c"]);
        assert!(narrow_scopes(None, &[]).unwrap().is_empty());
        let e = narrow_scopes(Some("a d"), &allowed).unwrap_err();
        assert_eq!(
            e.message.as_str(),
            "scope `d` is not granted to this client"
        );
        // No scope granted: no `scope` member in the response.
        let t = endpoint(json!({}));
        let principal = Principal::new("oim", "oim-client", CLIENT_CREDENTIALS);
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RNone,
        };
        let req = request("POST", &[], "grant_type=client_credentials", 0);
        let body = json_body(&t.handle(&req, caller).unwrap());
        assert!(body.get("scope").is_none(), "{body}");
    }
}
