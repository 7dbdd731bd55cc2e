//! `oauth2/bearer`: verifies the access tokens `oauth2/token` issued
//! (RFC 6750 header, RFC 9068 JWT, Ed25519 only). A verified token is
//! cached by the SHA-256 of its text, so the signature is checked once per
//! token; expiry is still checked on every request against the request's
//! clock.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use ed25519_dalek::{Signature, VerifyingKey};
use scimgate_abi::sdk::{Authenticator, CreateContext};
use scimgate_abi::{AuthOutcome, Header, PluginError, Principal, Request};
use serde::Deserialize;

use crate::cache::BoundedCache;
use crate::credentials::bearer_token;
use crate::duration::Seconds;
use crate::errors::{bearer_challenge, config_error, invalid_token};
use crate::jwt::{audience_contains, is_access_token_type, Compact};
use crate::keys::{self, KeySources};
use crate::providers;
use crate::secret::sha256;
use crate::token::{default_name, AccessClaims};

/// `[stage.x] use = "oauth2/bearer"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {
    /// Expected `iss` (the token stage's `issuer`).
    #[serde(default = "default_name")]
    pub issuer: String,
    /// Expected `aud` (the token stage's `audience`).
    #[serde(default = "default_name")]
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Seconds,
    /// Same as the token stage's: the key tokens are signed with.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Older public keys still accepted (rotation).
    #[serde(default)]
    pub verification_keys: Vec<PathBuf>,
    /// Verified tokens remembered (oldest dropped first).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_leeway() -> Seconds {
    Seconds(30)
}
fn default_cache_size() -> usize {
    10_000
}

struct Verified {
    principal: Principal,
    exp_ms: i64,
    nbf_ms: i64,
}

pub struct Bearer {
    keys: HashMap<String, VerifyingKey>,
    issuer: String,
    audience: String,
    leeway_ms: i64,
    /// provider id → its client id, when it has one.
    providers: HashMap<String, Option<String>>,
    cache: Mutex<BoundedCache<[u8; 32], Verified>>,
}

impl Bearer {
    pub fn build(config: BearerConfig, ctx: &CreateContext) -> Result<Self, PluginError> {
        let sources = KeySources {
            signing_key: config.signing_key,
            verification_keys: config.verification_keys,
        };
        let keys =
            keys::load(&ctx.data_dir, &sources).map_err(|e| config_error(&ctx.stage, &[e]))?;
        let providers = providers::parse(&ctx.providers)
            .into_iter()
            .map(|p| (p.id, p.client_id))
            .collect();
        Ok(Bearer {
            keys: keys.verifying,
            issuer: config.issuer,
            audience: config.audience,
            leeway_ms: config.leeway.as_millis(),
            providers,
            cache: Mutex::new(BoundedCache::new(config.cache_size)),
        })
    }

    /// Time checks, done on every request (cached or not).
    fn check_times(&self, exp_ms: i64, nbf_ms: i64, now_ms: i64) -> Result<(), &'static str> {
        if now_ms >= exp_ms.saturating_add(self.leeway_ms) {
            return Err("the access token expired");
        }
        if now_ms < nbf_ms.saturating_sub(self.leeway_ms) {
            return Err("the access token is not valid yet");
        }
        Ok(())
    }

    fn verify(&self, token: &str, now_ms: i64) -> Result<Verified, &'static str> {
        let jws = Compact::parse(token).ok_or("the access token is not a JWT")?;
        if jws.header.alg != "EdDSA" {
            return Err("the access token's algorithm is not accepted");
        }
        if !is_access_token_type(jws.header.typ.as_deref()) {
            return Err("the token is not an access token (typ must be at+jwt)");
        }
        if jws.header.crit.is_some() {
            return Err("the access token has critical header extensions");
        }
        let kid = jws
            .header
            .kid
            .as_deref()
            .ok_or("the access token has no kid")?;
        let key = self
            .keys
            .get(kid)
            .ok_or("the access token's signing key is unknown")?;
        let signature = Signature::from_slice(&jws.signature).map_err(|_| "malformed signature")?;
        key.verify_strict(jws.signing_input.as_bytes(), &signature)
            .map_err(|_| "the access token's signature is invalid")?;
        let claims: AccessClaims = jws
            .claims()
            .ok_or("the access token's claims are malformed")?;
        if claims.iss != self.issuer {
            return Err("the access token has another issuer");
        }
        if !audience_contains(&claims.aud, &self.audience) {
            return Err("the access token is for another audience");
        }
        let exp_ms = claims.exp.saturating_mul(1000);
        let nbf_ms = claims.nbf.saturating_mul(1000);
        self.check_times(exp_ms, nbf_ms, now_ms)?;
        match self.providers.get(&claims.provider) {
            None => return Err("the access token's provider is not registered"),
            Some(Some(client_id)) if *client_id != claims.client_id => {
                return Err("the access token's client is no longer the provider's client")
            }
            Some(_) => {}
        }
        let mut principal = Principal::new(&claims.provider, &claims.client_id, "bearer");
        principal.subject = claims.sub.as_str().into();
        principal.scopes = claims
            .scope
            .as_deref()
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(Into::into)
            .collect();
        principal
            .attributes
            .push(Header::new("jti", claims.jti.as_str()));
        Ok(Verified {
            principal,
            exp_ms,
            nbf_ms,
        })
    }
}

impl Authenticator for Bearer {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        let Some(token) = bearer_token(req) else {
            return AuthOutcome::NotMine;
        };
        let now = req.received_at_unix_ms;
        let digest = sha256(token.as_bytes());
        if let Ok(mut cache) = self.cache.lock() {
            if let Some(hit) = cache.get(&digest, now) {
                return match self.check_times(hit.exp_ms, hit.nbf_ms, now) {
                    Ok(()) => AuthOutcome::Authenticated(hit.principal.clone()),
                    Err(reason) => AuthOutcome::Rejected(invalid_token(req, reason)),
                };
            }
        }
        match self.verify(token, now) {
            Ok(verified) => {
                let principal = verified.principal.clone();
                let until = verified.exp_ms.saturating_add(self.leeway_ms);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(digest, verified, until);
                }
                AuthOutcome::Authenticated(principal)
            }
            Err(reason) => {
                tracing::debug!(reason, client_ip = %crate::errors::shown(&req.client_ip), "bearer token rejected");
                AuthOutcome::Rejected(invalid_token(req, reason))
            }
        }
    }

    fn challenge(&self) -> Option<String> {
        Some(bearer_challenge())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::jwt::b64url;
    use crate::keys::DEFAULT_KEY_FILE;
    use crate::testutil::{ctx_in, rejected, request, temp_dir};
    use crate::token::{TokenConfig, TokenEndpoint};
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use ed25519_dalek::{Signer, SigningKey};
    use scimgate_abi::sdk::Endpoint;
    use scimgate_abi::std_types::ROption;
    use scimgate_abi::{Caller, ErrorStyle};
    use serde_json::{json, Value};
    use std::path::Path;

    const NOW: i64 = 1_700_000_000_000;

    fn providers() -> Vec<Value> {
        vec![
            json!({"id": "oim", "auth": {"method": "oauth2-client-credentials", "client_id": "oim-client"}}),
        ]
    }

    pub fn bearer_in(dir: &Path, config: Value) -> Bearer {
        let c = ctx_in(config, providers(), dir.to_path_buf());
        Bearer::build(c.deserialize().unwrap(), &c).unwrap()
    }

    pub fn mint_in(dir: &Path, config: Value, now_ms: i64) -> String {
        let c = ctx_in(config, providers(), dir.to_path_buf());
        let t = TokenEndpoint::build(c.deserialize::<TokenConfig>().unwrap(), &c).unwrap();
        let mut p = Principal::new("oim", "oim-client", "oauth2-client-credentials");
        p.scopes = vec!["scim:read".into()].into();
        let caller = Caller {
            principal: ROption::RSome(&p),
            provider: ROption::RNone,
        };
        let req = request("POST", &[], "grant_type=client_credentials", now_ms);
        let r = t.handle(&req, caller).unwrap();
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        body["access_token"].as_str().unwrap().to_string()
    }

    fn with_token(token: &str, now_ms: i64) -> Request {
        request(
            "GET",
            &[("authorization", &format!("Bearer {token}"))],
            "",
            now_ms,
        )
    }

    fn claims(now_s: i64) -> Value {
        json!({"iss": "scimgate", "sub": "oim-client", "aud": "scimgate", "client_id": "oim-client",
            "exp": now_s + 600, "iat": now_s, "nbf": now_s, "jti": "j1", "scope": "scim:read", "provider": "oim"})
    }

    fn default_key(dir: &Path) -> (SigningKey, String) {
        let pem = std::fs::read_to_string(dir.join(DEFAULT_KEY_FILE)).unwrap();
        let key =
            <SigningKey as ed25519_dalek::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&pem).unwrap();
        let kid = keys::kid_of(&key.verifying_key());
        (key, kid)
    }

    fn reason(outcome: AuthOutcome) -> String {
        let e = rejected(outcome);
        assert_eq!(e.status, 401);
        let challenge = e
            .headers
            .iter()
            .find(|h| h.name.as_str() == "www-authenticate")
            .unwrap();
        assert!(
            challenge
                .value
                .starts_with("Bearer realm=\"scimgate\", error=\"invalid_token\""),
            "{}",
            challenge.value
        );
        e.message.to_string()
    }

    fn forge(header: Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(claims).unwrap())
        );
        let sig = sign(input.as_bytes());
        format!("{input}.{}", b64url(&sig))
    }

    #[test]
    fn a_token_from_the_token_stage_authenticates() {
        let dir = temp_dir("bearer-ok");
        let token = mint_in(&dir, json!({}), NOW);
        let b = bearer_in(&dir, json!({}));
        let p = match b.authenticate(&with_token(&token, NOW + 1000)) {
            AuthOutcome::Authenticated(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.provider_id.as_str(), "oim");
        assert_eq!(p.client_id.as_str(), "oim-client");
        assert_eq!(p.auth_method.as_str(), "bearer");
        assert!(p.has_scope("scim:read"));
        assert_eq!(b.challenge().as_deref(), Some("Bearer realm=\"scimgate\""));
        // Lower-case scheme works too; other schemes are not ours.
        let req = request(
            "GET",
            &[("authorization", &format!("bearer {token}"))],
            "",
            NOW,
        );
        assert!(matches!(
            b.authenticate(&req),
            AuthOutcome::Authenticated(_)
        ));
        let req = request("GET", &[("authorization", "Basic Zm9vOmJhcg==")], "", NOW);
        assert!(matches!(b.authenticate(&req), AuthOutcome::NotMine));
        assert!(matches!(
            b.authenticate(&request("GET", &[], "", NOW)),
            AuthOutcome::NotMine
        ));
    }

    #[test]
    fn the_cache_serves_repeat_tokens_and_still_checks_expiry() {
        let dir = temp_dir("bearer-cache");
        let token = mint_in(&dir, json!({"ttl": "10m"}), NOW);
        let b = bearer_in(&dir, json!({"leeway": "0s"}));
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW)),
            AuthOutcome::Authenticated(_)
        ));
        assert_eq!(b.cache.lock().unwrap().len(), 1);
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW + 1)),
            AuthOutcome::Authenticated(_)
        ));
        assert_eq!(b.cache.lock().unwrap().len(), 1);
        assert!(reason(b.authenticate(&with_token(&token, NOW + 600_000))).contains("expired"));
        // A token whose payload differs only after signing never hits the cache.
        let mut parts: Vec<&str> = token.split('.').collect();
        let tampered_payload = b64url(&serde_json::to_vec(&json!({"provider": "x"})).unwrap());
        parts[1] = &tampered_payload;
        let tampered = parts.join(".");
        assert!(reason(b.authenticate(&with_token(&tampered, NOW))).contains("signature"));
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let dir = temp_dir("bearer-sig");
        let token = mint_in(&dir, json!({}), NOW);
        let b = bearer_in(&dir, json!({}));
        let mut bytes = token.into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let token = String::from_utf8(bytes).unwrap();
        assert!(reason(b.authenticate(&with_token(&token, NOW))).contains("signature"));
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_rejected_with_leeway() {
        let dir = temp_dir("bearer-time");
        let token = mint_in(&dir, json!({"ttl": "10m"}), NOW);
        let b = bearer_in(&dir, json!({"leeway": "30s"}));
        // Within the leeway either side.
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW + 600_000 + 29_000)),
            AuthOutcome::Authenticated(_)
        ));
        let b = bearer_in(&dir, json!({"leeway": "30s"}));
        assert!(
            reason(b.authenticate(&with_token(&token, NOW + 600_000 + 30_000))).contains("expired")
        );
        let b = bearer_in(&dir, json!({"leeway": "30s"}));
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW - 29_000)),
            AuthOutcome::Authenticated(_)
        ));
        let b = bearer_in(&dir, json!({"leeway": "30s"}));
        assert!(reason(b.authenticate(&with_token(&token, NOW - 31_000))).contains("not valid yet"));
    }

    #[test]
    fn alg_none_and_hs256_with_the_public_key_are_refused() {
        let dir = temp_dir("bearer-alg");
        let b = bearer_in(&dir, json!({}));
        let (key, kid) = default_key(&dir);
        let c = claims(NOW / 1000);
        let none = forge(
            json!({"alg": "none", "typ": "at+jwt", "kid": kid}),
            &c,
            |_| Vec::new(),
        );
        assert!(reason(b.authenticate(&with_token(&none, NOW))).contains("algorithm"));
        // HS256 keyed with the public key bytes (the classic confusion attack).
        let public = key.verifying_key().to_bytes();
        let hs = forge(
            json!({"alg": "HS256", "typ": "at+jwt", "kid": kid}),
            &c,
            |input| {
                ring::hmac::sign(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public),
                    input,
                )
                .as_ref()
                .to_vec()
            },
        );
        assert!(reason(b.authenticate(&with_token(&hs, NOW))).contains("algorithm"));
        let rs = forge(
            json!({"alg": "RS256", "typ": "at+jwt", "kid": kid}),
            &c,
            |i| key.sign(i).to_bytes().to_vec(),
        );
        assert!(reason(b.authenticate(&with_token(&rs, NOW))).contains("algorithm"));
        // A correctly signed token with the wrong typ is not an access token.
        let id_token = forge(json!({"alg": "EdDSA", "typ": "JWT", "kid": kid}), &c, |i| {
            key.sign(i).to_bytes().to_vec()
        });
        assert!(reason(b.authenticate(&with_token(&id_token, NOW))).contains("typ"));
        let good = forge(
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
            &c,
            |i| key.sign(i).to_bytes().to_vec(),
        );
        assert!(matches!(
            b.authenticate(&with_token(&good, NOW)),
            AuthOutcome::Authenticated(_)
        ));
        assert!(reason(b.authenticate(&with_token("opaque-token", NOW))).contains("not a JWT"));
    }

    #[test]
    fn other_issuer_audience_kid_or_provider_are_rejected() {
        let dir = temp_dir("bearer-claims");
        let b = bearer_in(&dir, json!({}));
        let (key, kid) = default_key(&dir);
        let sign = |header: Value, c: &Value| forge(header, c, |i| key.sign(i).to_bytes().to_vec());
        let h = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let mut c = claims(NOW / 1000);
        c["iss"] = "https://evil".into();
        assert!(reason(b.authenticate(&with_token(&sign(h.clone(), &c), NOW))).contains("issuer"));
        let mut c = claims(NOW / 1000);
        c["aud"] = json!(["other"]);
        assert!(
            reason(b.authenticate(&with_token(&sign(h.clone(), &c), NOW))).contains("audience")
        );
        let mut c = claims(NOW / 1000);
        c["provider"] = "ghost".into();
        assert!(
            reason(b.authenticate(&with_token(&sign(h.clone(), &c), NOW))).contains("provider")
        );
        let mut c = claims(NOW / 1000);
        c["client_id"] = "someone-else".into();
        assert!(reason(b.authenticate(&with_token(&sign(h.clone(), &c), NOW))).contains("client"));
        let other = SigningKey::from_bytes(&[9u8; 32]);
        let unknown = forge(
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": keys::kid_of(&other.verifying_key())}),
            &claims(NOW / 1000),
            |i| other.sign(i).to_bytes().to_vec(),
        );
        assert!(reason(b.authenticate(&with_token(&unknown, NOW))).contains("unknown"));
        // An audience list containing ours is fine.
        let mut c = claims(NOW / 1000);
        c["aud"] = json!(["other", "scimgate"]);
        assert!(matches!(
            b.authenticate(&with_token(&sign(h, &c), NOW)),
            AuthOutcome::Authenticated(_)
        ));
    }

    #[test]
    fn scim_routes_get_no_oauth_code() {
        let dir = temp_dir("bearer-style");
        let b = bearer_in(&dir, json!({}));
        let mut req = with_token("x.y.z", NOW);
        req.error_style = ErrorStyle::Scim;
        assert_eq!(rejected(b.authenticate(&req)).code(), None);
        req.error_style = ErrorStyle::OAuth;
        assert_eq!(rejected(b.authenticate(&req)).code(), Some("invalid_token"));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_through_verification_keys() {
        let dir = temp_dir("bearer-rotation");
        let old_dir = dir.join("old");
        let old_token = mint_in(&old_dir, json!({}), NOW);
        let (old_key, _) = default_key(&old_dir);
        let old_pub = dir.join("old.pub.pem");
        std::fs::write(
            &old_pub,
            old_key
                .verifying_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        )
        .unwrap();
        let new_key = SigningKey::from_bytes(&[3u8; 32]);
        let new_pem = dir.join("new.pem");
        std::fs::write(
            &new_pem,
            new_key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes(),
        )
        .unwrap();
        let cfg = json!({"signing_key": new_pem, "verification_keys": [old_pub]});
        let new_token = mint_in(&dir, cfg.clone(), NOW);
        let b = bearer_in(&dir, cfg);
        assert!(matches!(
            b.authenticate(&with_token(&old_token, NOW)),
            AuthOutcome::Authenticated(_)
        ));
        assert!(matches!(
            b.authenticate(&with_token(&new_token, NOW)),
            AuthOutcome::Authenticated(_)
        ));
        // Without the old key listed, old tokens are refused.
        let b = bearer_in(&dir, json!({"signing_key": new_pem}));
        assert!(reason(b.authenticate(&with_token(&old_token, NOW))).contains("unknown"));
    }

    #[test]
    fn time_checks_are_exact_at_both_leeway_edges() {
        let dir = temp_dir("bearer-edges");
        let (exp, nbf) = (1_000_000, 400_000);
        let b = bearer_in(&dir, json!({"leeway": "30s"}));
        assert_eq!(b.check_times(exp, nbf, exp + 29_999), Ok(()));
        assert_eq!(
            b.check_times(exp, nbf, exp + 30_000),
            Err("the access token expired")
        );
        assert_eq!(b.check_times(exp, nbf, nbf - 30_000), Ok(()));
        assert_eq!(
            b.check_times(exp, nbf, nbf - 30_001),
            Err("the access token is not valid yet")
        );
        let b = bearer_in(&dir, json!({"leeway": "0s"}));
        assert_eq!(b.check_times(exp, nbf, exp - 1), Ok(()));
        assert_eq!(
            b.check_times(exp, nbf, exp),
            Err("the access token expired")
        );
        assert_eq!(b.check_times(exp, nbf, nbf), Ok(()));
        assert_eq!(
            b.check_times(exp, nbf, nbf - 1),
            Err("the access token is not valid yet")
        );
        // Through authenticate: a token is good from nbf - leeway on.
        let token = mint_in(&dir, json!({"ttl": "10m"}), NOW);
        let b = bearer_in(&dir, json!({"leeway": "30s"}));
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW - 30_000)),
            AuthOutcome::Authenticated(_)
        ));
    }

    #[test]
    fn the_default_leeway_is_30_seconds_and_the_cache_holds_many_tokens() {
        let dir = temp_dir("bearer-defaults");
        let token = mint_in(&dir, json!({"ttl": "10m"}), NOW);
        let b = bearer_in(&dir, json!({}));
        assert_eq!(b.leeway_ms, 30_000);
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW + 600_000 + 29_000)),
            AuthOutcome::Authenticated(_)
        ));
        let b = bearer_in(&dir, json!({}));
        for i in 0..3 {
            let t = mint_in(&dir, json!({}), NOW + i);
            assert!(matches!(
                b.authenticate(&with_token(&t, NOW + 10)),
                AuthOutcome::Authenticated(_)
            ));
        }
        assert_eq!(b.cache.lock().unwrap().len(), 3);
    }

    #[test]
    fn scopes_are_split_on_single_spaces_and_empty_ones_dropped() {
        let dir = temp_dir("bearer-scopes");
        let b = bearer_in(&dir, json!({}));
        let (key, kid) = default_key(&dir);
        let mut c = claims(NOW / 1000);
        c["scope"] = " scim:read  scim:write ".into();
        let token = forge(
            json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}),
            &c,
            |i| key.sign(i).to_bytes().to_vec(),
        );
        let AuthOutcome::Authenticated(p) = b.authenticate(&with_token(&token, NOW)) else {
            panic!("a well-signed token must authenticate");
        };
        let scopes: Vec<&str> = p.scopes.iter().map(|s| s.as_str()).collect();
        assert_eq!(scopes, ["scim:read", "scim:write"]);
        assert_eq!(p.subject.as_str(), "oim-client");
    }

    #[test]
    fn two_instances_sharing_a_data_dir_verify_each_others_tokens() {
        let dir = temp_dir("bearer-shared");
        // The bearer stage created first makes the key; the token stage reuses it.
        let b = bearer_in(&dir, json!({}));
        let token = mint_in(&dir, json!({}), NOW);
        assert!(matches!(
            b.authenticate(&with_token(&token, NOW)),
            AuthOutcome::Authenticated(_)
        ));
    }
}
