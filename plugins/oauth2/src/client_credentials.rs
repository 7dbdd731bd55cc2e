//! `oauth2/client-credentials`: client authentication at the token endpoint
//! (RFC 6749 §2.3.1): `client_secret_basic` with the form-urlencoded id and
//! secret, `client_secret_post`, and a JSON body as some IGA connectors send.
//! Repeated failures lock the client id and the client IP out for a while.

use std::collections::HashMap;

use scimgate_abi::sdk::{percent_decode, Authenticator, CreateContext};
use scimgate_abi::{AuthOutcome, PluginError, Principal, Request};
use serde::Deserialize;

use crate::credentials::{basic_credentials, Params};
use crate::duration::Seconds;
use crate::errors::{basic_challenge, config_error, oauth};
use crate::providers;
use crate::secret::{DecoyHash, SecretHash, SecretVerifier};
use crate::throttle::FailureLockout;

pub const METHOD: &str = "oauth2-client-credentials";

/// `[stage.x] use = "oauth2/client-credentials"`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// Failed authentications of one client id (or from one client IP)
    /// within `failure_window` before it is locked out; 0 disables.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long failures count, and how long a lockout lasts at most.
    #[serde(default = "default_failure_window")]
    pub failure_window: Seconds,
    /// Cap on client ids + IPs tracked for lockout (oldest dropped first).
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
    /// How long a successful argon2id verification is remembered.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: Seconds,
}

pub fn default_max_failures() -> u32 {
    10
}
pub fn default_failure_window() -> Seconds {
    Seconds(300)
}
pub fn default_max_tracked() -> usize {
    10_000
}
pub fn default_cache_ttl() -> Seconds {
    Seconds(300)
}

struct Client {
    provider_id: String,
    secret: SecretHash,
    scopes: Vec<String>,
}

pub struct ClientCredentials {
    clients: HashMap<String, Client>,
    decoy: DecoyHash,
    lockout: FailureLockout,
    verifier: SecretVerifier,
}

impl ClientCredentials {
    pub fn build(
        config: ClientCredentialsConfig,
        ctx: &CreateContext,
    ) -> Result<Self, PluginError> {
        let mut problems = Vec::new();
        let mut clients = HashMap::new();
        for p in providers::parse(&ctx.providers) {
            if p.method != METHOD {
                continue;
            }
            let Some(client_id) = p.client_id.clone() else {
                problems.push(format!("provider `{}`: auth.client_id is missing", p.id));
                continue;
            };
            let secret = match p.secret_hash("client_secret_hash") {
                Ok(hash) => hash,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if clients.contains_key(&client_id) {
                problems.push(format!(
                    "provider `{}`: client_id `{client_id}` is used by another provider",
                    p.id
                ));
                continue;
            }
            clients.insert(
                client_id,
                Client {
                    provider_id: p.id,
                    secret,
                    scopes: p.scopes,
                },
            );
        }
        if !problems.is_empty() {
            return Err(config_error(&ctx.stage, &problems));
        }
        Ok(ClientCredentials {
            decoy: DecoyHash::from_hashes(clients.values().map(|c: &Client| &c.secret)),
            clients,
            lockout: FailureLockout::new(
                config.max_failures,
                config.failure_window.as_millis(),
                config.max_tracked,
            ),
            verifier: SecretVerifier::new(config.cache_ttl.as_millis(), config.max_tracked),
        })
    }

    fn credentials(&self, req: &Request) -> Result<Option<Presented>, PluginError> {
        if req.query_pairs().iter().any(|(k, _)| k == "client_secret") {
            return Err(oauth(
                400,
                "invalid_request",
                "client credentials must not be sent in the query string",
            ));
        }
        let basic = match basic_credentials(req) {
            Some(Ok((id, secret))) => {
                Some((percent_decode(&id, true), percent_decode(&secret, true)))
            }
            Some(Err(())) => {
                return Err(oauth(
                    400,
                    "invalid_request",
                    "malformed Basic authorization header",
                ))
            }
            None => None,
        };
        let params = Params::from_body(req)?;
        let body_id = params.get("client_id")?;
        let body_secret = params.get("client_secret")?;
        match (basic, body_id, body_secret) {
            (Some(_), _, Some(_)) => Err(oauth(
                400,
                "invalid_request",
                "more than one client authentication method (Basic header and client_secret in the body)",
            )),
            (Some((id, _)), Some(body_id), None) if body_id != id => Err(oauth(
                400,
                "invalid_request",
                "client_id in the body differs from the Basic header",
            )),
            (Some((client_id, secret)), _, None) => Ok(Some(Presented {
                client_id,
                secret,
                basic: true,
            })),
            (None, Some(id), Some(secret)) => Ok(Some(Presented {
                client_id: id.to_string(),
                secret: secret.to_string(),
                basic: false,
            })),
            (None, Some(_), None) => Err(oauth(401, "invalid_client", "client authentication required: client_secret is missing")),
            (None, None, Some(_)) => Err(oauth(400, "invalid_request", "client_id is missing")),
            (None, None, None) => Ok(None),
        }
    }
}

struct Presented {
    client_id: String,
    secret: String,
    basic: bool,
}

impl Authenticator for ClientCredentials {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        let presented = match self.credentials(req) {
            Ok(Some(p)) => p,
            Ok(None) => return AuthOutcome::NotMine,
            Err(e) => return AuthOutcome::Rejected(e),
        };
        let now = req.received_at_unix_ms;
        let client_key = format!("client:{}", presented.client_id);
        let ip_key = format!("ip:{}", req.client_ip);
        let keys = [client_key.as_str(), ip_key.as_str()];
        if let Some(retry_after) = self.lockout.locked(&keys, now) {
            tracing::warn!(client_id = %presented.client_id, client_ip = %req.client_ip, "client authentication locked out after repeated failures");
            return AuthOutcome::Rejected(
                oauth(
                    429,
                    "temporarily_unavailable",
                    format!("too many failed client authentications; retry in {retry_after} s"),
                )
                .with_header("retry-after", &retry_after.to_string()),
            );
        }
        let verified = self.clients.get(&presented.client_id).filter(|client| {
            self.verifier
                .verify(&client.secret, &presented.client_id, &presented.secret, now)
        });
        let Some(client) = verified else {
            if !self.clients.contains_key(&presented.client_id) {
                self.decoy.spend(&presented.secret);
            }
            self.lockout.record_failure(&keys, now);
            tracing::debug!(client_id = %presented.client_id, client_ip = %req.client_ip, "client authentication failed");
            let err = oauth(401, "invalid_client", "client authentication failed");
            let err = if presented.basic {
                err.with_header("www-authenticate", &basic_challenge())
            } else {
                err
            };
            return AuthOutcome::Rejected(err);
        };
        self.lockout.reset(&client_key);
        let mut principal = Principal::new(&client.provider_id, &presented.client_id, METHOD);
        principal.scopes = client.scopes.iter().map(|s| s.as_str().into()).collect();
        AuthOutcome::Authenticated(principal)
    }

    fn challenge(&self) -> Option<String> {
        Some(basic_challenge())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::tests::{argon2id_ref, sha256_ref};
    use crate::testutil::{basic, ctx, rejected, request, with_ip};
    use serde_json::json;

    fn provider(id: &str, client_id: &str, hash: &str) -> serde_json::Value {
        json!({"id": id, "active": true, "auth": {"method": METHOD, "client_id": client_id,
            "client_secret_hash": hash, "scopes": ["scim:read", "scim:write"]}})
    }

    fn build(config: serde_json::Value) -> ClientCredentials {
        let c = ctx(
            config,
            vec![
                provider("oim", "client:id", &sha256_ref("s3cr&t")),
                provider("slow", "slow", &argon2id_ref("pw")),
                json!({"id": "other", "auth": {"method": "basic", "username": "u"}}),
            ],
        );
        ClientCredentials::build(c.deserialize().unwrap(), &c).unwrap()
    }

    fn form(body: &str) -> Request {
        request(
            "POST",
            &[("content-type", "application/x-www-form-urlencoded")],
            body,
            0,
        )
    }

    fn principal(outcome: AuthOutcome) -> Principal {
        match outcome {
            AuthOutcome::Authenticated(p) => p,
            other => panic!("expected Authenticated, got {other:?}"),
        }
    }

    #[test]
    fn basic_with_url_encoded_id_and_secret() {
        let a = build(json!({}));
        let req = request(
            "POST",
            &[basic("client%3Aid", "s3cr%26t")],
            "grant_type=client_credentials",
            0,
        );
        let p = principal(a.authenticate(&req));
        assert_eq!(p.provider_id.as_str(), "oim");
        assert_eq!(p.client_id.as_str(), "client:id");
        assert_eq!(p.auth_method.as_str(), METHOD);
        assert!(p.has_scope("scim:read") && p.has_scope("scim:write"));
    }

    #[test]
    fn client_secret_post_form_and_json_body() {
        let a = build(json!({}));
        let req =
            form("grant_type=client_credentials&client_id=client%3Aid&client_secret=s3cr%26t");
        assert_eq!(principal(a.authenticate(&req)).provider_id.as_str(), "oim");
        let req = request(
            "POST",
            &[("content-type", "application/json")],
            r#"{"client_id":"client:id","client_secret":"s3cr&t","grant_type":"client_credentials"}"#,
            0,
        );
        assert_eq!(principal(a.authenticate(&req)).provider_id.as_str(), "oim");
    }

    #[test]
    fn argon2id_client_secrets_verify() {
        let a = build(json!({}));
        let req = form("client_id=slow&client_secret=pw");
        assert_eq!(principal(a.authenticate(&req)).provider_id.as_str(), "slow");
        let req = form("client_id=slow&client_secret=bad");
        assert_eq!(rejected(a.authenticate(&req)).status, 401);
    }

    #[test]
    fn basic_and_body_secret_together_is_invalid_request() {
        let a = build(json!({}));
        let req = request(
            "POST",
            &[
                basic("client%3Aid", "s3cr%26t"),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            "client_id=client%3Aid&client_secret=s3cr%26t",
            0,
        );
        let e = rejected(a.authenticate(&req));
        assert_eq!((e.status, e.code()), (400, Some("invalid_request")));
        // A client_id in the body alongside Basic is fine when it agrees.
        let req = request(
            "POST",
            &[basic("client%3Aid", "s3cr%26t")],
            "client_id=client%3Aid",
            0,
        );
        principal(a.authenticate(&req));
        let req = request(
            "POST",
            &[basic("client%3Aid", "s3cr%26t")],
            "client_id=other",
            0,
        );
        assert_eq!(
            rejected(a.authenticate(&req)).code(),
            Some("invalid_request")
        );
    }

    #[test]
    fn wrong_secret_or_unknown_client_is_invalid_client() {
        let a = build(json!({}));
        let req = request("POST", &[basic("client%3Aid", "wrong")], "", 0);
        let e = rejected(a.authenticate(&req));
        assert_eq!((e.status, e.code()), (401, Some("invalid_client")));
        let challenge = e
            .headers
            .iter()
            .find(|h| h.name.as_str() == "www-authenticate")
            .unwrap();
        assert!(challenge.value.starts_with("Basic realm=\"scimgate\""));
        let e = rejected(a.authenticate(&form("client_id=nobody&client_secret=x")));
        assert_eq!((e.status, e.code()), (401, Some("invalid_client")));
        assert!(
            e.headers.is_empty(),
            "no Basic challenge when Basic was not used"
        );
        // Providers of other methods are not clients.
        let e = rejected(a.authenticate(&form("client_id=u&client_secret=x")));
        assert_eq!(e.code(), Some("invalid_client"));
    }

    #[test]
    fn no_credentials_is_not_mine_and_odd_shapes_are_rejected() {
        let a = build(json!({}));
        assert!(matches!(
            a.authenticate(&form("grant_type=client_credentials")),
            AuthOutcome::NotMine
        ));
        let bearer = request("POST", &[("authorization", "Bearer x")], "", 0);
        assert!(matches!(a.authenticate(&bearer), AuthOutcome::NotMine));
        let e = rejected(a.authenticate(&form("client_id=client%3Aid")));
        assert_eq!(e.code(), Some("invalid_client"));
        let e =
            rejected(a.authenticate(&request("POST", &[("authorization", "Basic %%%")], "", 0)));
        assert_eq!(e.code(), Some("invalid_request"));
        let mut q = form("");
        q.query = "client_id=x&client_secret=y".into();
        assert_eq!(rejected(a.authenticate(&q)).code(), Some("invalid_request"));
        let e = rejected(a.authenticate(&form("client_id=a&client_id=b&client_secret=c")));
        assert_eq!(e.code(), Some("invalid_request"));
    }

    #[test]
    fn lockout_after_n_failures_and_recovery_after_the_window() {
        let a = build(json!({"max_failures": 3, "failure_window": "1m"}));
        let at = |ms: i64, secret: &str, ip: &str| {
            let mut r = request("POST", &[basic("client%3Aid", secret)], "", ms);
            with_ip(&mut r, ip);
            a.authenticate(&r)
        };
        for i in 0..3 {
            assert_eq!(rejected(at(i * 1000, "wrong", "10.0.0.1")).status, 401);
        }
        // Locked out now, even with the right secret, from any IP (client key).
        let e = rejected(at(5_000, "s3cr%26t", "10.0.0.2"));
        assert_eq!((e.status, e.code()), (429, Some("temporarily_unavailable")));
        let retry = e
            .headers
            .iter()
            .find(|h| h.name.as_str() == "retry-after")
            .unwrap();
        assert_eq!(retry.value.as_str(), "55");
        // After the window the right secret works again.
        principal(at(60_000, "s3cr%26t", "10.0.0.2"));
    }

    #[test]
    fn lockout_per_ip_spans_client_ids() {
        let a = build(json!({"max_failures": 2, "failure_window": "5m"}));
        let mut r = form("client_id=nobody1&client_secret=x");
        with_ip(&mut r, "192.0.2.9");
        rejected(a.authenticate(&r));
        let mut r = form("client_id=nobody2&client_secret=x");
        with_ip(&mut r, "192.0.2.9");
        rejected(a.authenticate(&r));
        let mut r = form("client_id=client%3Aid&client_secret=s3cr%26t");
        with_ip(&mut r, "192.0.2.9");
        assert_eq!(rejected(a.authenticate(&r)).status, 429);
        let mut r = form("client_id=client%3Aid&client_secret=s3cr%26t");
        with_ip(&mut r, "192.0.2.10");
        principal(a.authenticate(&r));
    }

    #[test]
    fn bad_provider_records_fail_creation_with_every_problem() {
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "a", "auth": {"method": METHOD, "client_id": "a", "client_secret_hash": "md5:x"}}),
                json!({"id": "b", "auth": {"method": METHOD, "client_secret_hash": sha256_ref("x")}}),
            ],
        );
        let e = ClientCredentials::build(c.deserialize().unwrap(), &c)
            .err()
            .unwrap();
        assert!(
            e.message.contains("provider `a`") && e.message.contains("provider `b`"),
            "{}",
            e.message
        );
    }
}
