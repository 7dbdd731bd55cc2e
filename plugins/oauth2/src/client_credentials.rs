//! `oauth2/client-credentials`: client authentication at the token endpoint
//! (RFC 6749 §2.3.1): `client_secret_basic` with the form-urlencoded id and
//! secret, `client_secret_post`, and a JSON body as some IGA connectors send.
//! A client id presented from an address its provider's `allowed_ips` does
//! not hold is refused before its secret is checked or counted. Repeated
//! failures lock the (client id, client network) pair out for a while, with
//! client-wide and network-wide ceilings (see `throttle`).

use std::collections::HashMap;

use scimgate_abi::sdk::{percent_decode, Authenticator, CreateContext};
use scimgate_abi::{AuthOutcome, PluginError, Principal, Request};
use serde::Deserialize;

use crate::credentials::{basic_credentials, Params};
use crate::duration::Seconds;
use crate::errors::{basic_challenge, config_error, oauth, shown};
use crate::providers::{self, Allowed};
use crate::secret::{DecoyHash, SecretHash, SecretVerifier};
use crate::throttle::{FailureLockout, Keys};

pub const METHOD: &str = "oauth2-client-credentials";

/// `[stage.x] use = "oauth2/client-credentials"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsConfig {
    /// Failed authentications of one client id from one client network
    /// (IPv4 address, IPv6 /64) within `failure_window` before that pair is
    /// locked out; 0 disables. A client id is locked for every network
    /// after 10 × this many failures from all networks together, and a
    /// network for every client id after 10 × this many from it.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    /// How long failures count, and how long a lockout lasts at most.
    #[serde(default = "default_failure_window")]
    pub failure_window: Seconds,
    /// Cap on failure counters tracked for lockout (oldest dropped first).
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
    allowed: Allowed,
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
                    allowed: p.allowed,
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

/// A failed client authentication: 401 `invalid_client`, with the Basic
/// challenge when the credentials came by Basic.
fn failed(presented: &Presented, message: &str) -> PluginError {
    let err = oauth(401, "invalid_client", message);
    if presented.basic {
        err.with_header("www-authenticate", &basic_challenge())
    } else {
        err
    }
}

/// What a request's client credentials come to before a secret is hashed:
/// the one path `authenticate`, `blocks_on` and `authenticate_inline`
/// take, so that what is said to block is exactly what then hashes.
enum Checked<'c> {
    NotMine,
    Malformed(PluginError),
    /// From an address the client's provider does not allow.
    Refused {
        presented: Presented,
        reason: String,
    },
    /// Locked out after repeated failures.
    Locked {
        presented: Presented,
        retry_after: u64,
    },
    /// To verify: the secret against `client`'s hash, or against the
    /// decoy hash when no client has that id.
    Verify {
        presented: Presented,
        client: Option<&'c Client>,
        keys: Keys,
    },
}

impl ClientCredentials {
    fn check(&self, req: &Request) -> Checked<'_> {
        let presented = match self.credentials(req) {
            Ok(Some(p)) => p,
            Ok(None) => return Checked::NotMine,
            Err(e) => return Checked::Malformed(e),
        };
        let client = self.clients.get(&presented.client_id);
        if let Some(reason) = client.and_then(|c| c.allowed.refusal(&c.provider_id, &req.client_ip))
        {
            return Checked::Refused { presented, reason };
        }
        let keys = Keys::new("client", &presented.client_id, &req.client_ip);
        if let Some(retry_after) = self.lockout.locked(&keys, req.received_at_unix_ms) {
            return Checked::Locked {
                presented,
                retry_after,
            };
        }
        Checked::Verify {
            presented,
            client,
            keys,
        }
    }
}

impl ClientCredentials {
    /// Whether answering `checked` hashes: a secret not remembered as
    /// verified, or the decoy hash spent for an unknown client or a
    /// refused address.
    fn hashes(&self, checked: &Checked<'_>, req: &Request) -> bool {
        match checked {
            Checked::NotMine | Checked::Malformed(_) | Checked::Locked { .. } => false,
            Checked::Refused { .. } | Checked::Verify { client: None, .. } => self.decoy.is_armed(),
            Checked::Verify {
                presented,
                client: Some(client),
                ..
            } => self.verifier.would_hash(
                &client.secret,
                &presented.client_id,
                &presented.secret,
                req.received_at_unix_ms,
            ),
        }
    }

    /// The outcome of `checked`, verifying the secret where it says so.
    fn answer(&self, checked: Checked<'_>, req: &Request) -> AuthOutcome {
        let (presented, client, keys) = match checked {
            Checked::NotMine => return AuthOutcome::NotMine,
            Checked::Malformed(e) => return AuthOutcome::Rejected(e),
            // An address the provider does not allow gets the answer a
            // wrong secret gets, after the same work, and nothing is
            // counted: it can neither guess the secret nor lock the client
            // out.
            Checked::Refused { presented, reason } => {
                self.decoy.spend(&presented.secret);
                tracing::info!(client_id = %shown(&presented.client_id), client_ip = %shown(&req.client_ip), %reason, "client authentication refused");
                return AuthOutcome::Rejected(
                    failed(&presented, "client authentication failed").with_context(reason),
                );
            }
            Checked::Locked {
                presented,
                retry_after,
            } => {
                tracing::warn!(client_id = %shown(&presented.client_id), client_ip = %shown(&req.client_ip), "client authentication locked out after repeated failures");
                return AuthOutcome::Rejected(
                    oauth(
                        429,
                        "temporarily_unavailable",
                        format!("too many failed client authentications; retry in {retry_after} s"),
                    )
                    .with_header("retry-after", &retry_after.to_string()),
                );
            }
            Checked::Verify {
                presented,
                client,
                keys,
            } => (presented, client, keys),
        };
        let now = req.received_at_unix_ms;
        let verified = client.filter(|client| {
            self.verifier
                .verify(&client.secret, &presented.client_id, &presented.secret, now)
        });
        let Some(client) = verified else {
            if client.is_none() {
                self.decoy.spend(&presented.secret);
            }
            self.lockout.record_failure(&keys, now);
            tracing::debug!(client_id = %shown(&presented.client_id), client_ip = %shown(&req.client_ip), "client authentication failed");
            return AuthOutcome::Rejected(failed(&presented, "client authentication failed"));
        };
        self.lockout.reset(&keys);
        let mut principal = Principal::new(&client.provider_id, &presented.client_id, METHOD);
        principal.scopes = client.scopes.iter().map(|s| s.as_str().into()).collect();
        AuthOutcome::Authenticated(principal)
    }
}

impl Authenticator for ClientCredentials {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        self.answer(self.check(req), req)
    }

    /// Only argon2 blocks ([`ClientCredentials::hashes`]).
    fn blocks_on(&self, req: &Request) -> bool {
        self.hashes(&self.check(req), req)
    }

    /// The credentials are read and looked up once: what was found not to
    /// hash is what is answered.
    fn authenticate_inline(&self, req: &Request) -> Option<AuthOutcome> {
        let checked = self.check(req);
        (!self.hashes(&checked, req)).then(|| self.answer(checked, req))
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
    fn only_an_argon2_hash_not_yet_verified_would_block() {
        use scimgate_abi::sdk::Authenticator as _;
        let a = build(json!({}));
        // sha256 secrets and requests without credentials never block.
        assert!(!a.blocks_on(&form("client_id=client%3Aid&client_secret=s3cr%26t")));
        assert!(!a.blocks_on(&form("grant_type=client_credentials")));
        // argon2id: until verified once, then from the cache.
        let slow = form("client_id=slow&client_secret=pw");
        assert!(a.blocks_on(&slow));
        assert_eq!(
            principal(a.authenticate(&slow)).provider_id.as_str(),
            "slow"
        );
        assert!(!a.blocks_on(&slow));
        // Another secret is not in the cache; an unknown client spends the
        // decoy hash (argon2 too).
        assert!(a.blocks_on(&form("client_id=slow&client_secret=other")));
        assert!(a.blocks_on(&form("client_id=nobody&client_secret=pw")));
    }

    #[test]
    fn an_inline_call_is_answered_from_one_reading_unless_it_would_hash() {
        use scimgate_abi::sdk::Authenticator as _;
        let a = build(json!({}));
        // sha256: answered inline, both ways.
        let good = form("client_id=client%3Aid&client_secret=s3cr%26t");
        let answered = a.authenticate_inline(&good).expect("answered inline");
        assert_eq!(principal(answered).client_id.as_str(), "client:id");
        let wrong = form("client_id=client%3Aid&client_secret=nope");
        let answered = a.authenticate_inline(&wrong).expect("answered inline");
        assert_eq!(rejected(answered).status, 401);
        // argon2id not yet verified: left to the blocking pool, unrun (the
        // later verification still succeeds: no failure was counted).
        let slow = form("client_id=slow&client_secret=pw");
        assert!(a.authenticate_inline(&slow).is_none());
        assert_eq!(
            principal(a.authenticate(&slow)).provider_id.as_str(),
            "slow"
        );
        let answered = a.authenticate_inline(&slow).expect("remembered: inline");
        assert_eq!(principal(answered).provider_id.as_str(), "slow");
        // An unknown client would spend the decoy hash: not inline.
        assert!(a
            .authenticate_inline(&form("client_id=nobody&client_secret=pw"))
            .is_none());
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
    fn config_defaults() {
        let c = ctx(json!({}), vec![]);
        let config: ClientCredentialsConfig = c.deserialize().unwrap();
        assert_eq!(config.max_failures, 10);
        assert_eq!(config.failure_window.0, 300);
        assert_eq!(config.max_tracked, 10_000);
        assert_eq!(config.cache_ttl.0, 300);
        let a = build(json!({}));
        assert_eq!(
            a.challenge().as_deref(),
            Some("Basic realm=\"scimgate\", charset=\"UTF-8\"")
        );
        assert_eq!(a.clients.len(), 2);
    }

    #[test]
    fn only_client_secret_in_the_query_string_is_refused() {
        let a = build(json!({}));
        let mut q = form("client_id=client%3Aid&client_secret=s3cr%26t");
        q.query = "client_id=client%3Aid&x=1".into();
        assert_eq!(principal(a.authenticate(&q)).provider_id.as_str(), "oim");
        q.query = "client_secret=s3cr%26t".into();
        let e = rejected(a.authenticate(&q));
        assert_eq!((e.status, e.code()), (400, Some("invalid_request")));
        assert!(e.message.contains("query string"), "{}", e.message);
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
        // That (client, address) pair is locked now, even with the right secret.
        let e = rejected(at(5_000, "s3cr%26t", "10.0.0.1"));
        assert_eq!((e.status, e.code()), (429, Some("temporarily_unavailable")));
        let retry = e
            .headers
            .iter()
            .find(|h| h.name.as_str() == "retry-after")
            .unwrap();
        assert_eq!(retry.value.as_str(), "55");
        // The same client from its own address is not.
        principal(at(5_000, "s3cr%26t", "10.0.0.2"));
        // After the window the right secret works again from the first one.
        principal(at(60_000, "s3cr%26t", "10.0.0.1"));
    }

    #[test]
    fn one_network_cannot_lock_a_client_out_but_ten_can() {
        let a = build(json!({"max_failures": 2, "failure_window": "5m"}));
        let at = |secret: &str, ip: &str| {
            let mut r = form(&format!("client_id=client%3Aid&client_secret={secret}"));
            with_ip(&mut r, ip);
            a.authenticate(&r)
        };
        for n in 0..9 {
            for _ in 0..5 {
                rejected(at("wrong", &format!("192.0.2.{n}")));
            }
        }
        principal(at("s3cr%26t", "10.0.0.1"));
        rejected(at("wrong", "192.0.2.9"));
        rejected(at("wrong", "192.0.2.9"));
        // 10 networks × 2 failures: the client-wide ceiling (10 × 2).
        assert_eq!(rejected(at("s3cr%26t", "10.0.0.1")).status, 429);
    }

    #[test]
    fn lockout_per_network_spans_client_ids_at_the_ceiling() {
        let a = build(json!({"max_failures": 2, "failure_window": "5m"}));
        let at = |id: &str, secret: &str, ip: &str| {
            let mut r = form(&format!("client_id={id}&client_secret={secret}"));
            with_ip(&mut r, ip);
            a.authenticate(&r)
        };
        for i in 0..20 {
            assert_eq!(
                rejected(at(&format!("nobody{i}"), "x", "192.0.2.9")).status,
                401
            );
        }
        assert_eq!(
            rejected(at("client%3Aid", "s3cr%26t", "192.0.2.9")).status,
            429
        );
        principal(at("client%3Aid", "s3cr%26t", "192.0.2.10"));
    }

    #[test]
    fn a_disallowed_address_is_refused_unverified_and_uncounted() {
        let c = ctx(
            json!({"max_failures": 2}),
            vec![
                json!({"id": "oim", "auth": {"method": METHOD, "client_id": "oim",
                "client_secret_hash": sha256_ref("right"), "allowed_ips": ["10.0.0.0/8"]}}),
            ],
        );
        let a = ClientCredentials::build(c.deserialize().unwrap(), &c).unwrap();
        let from = |ip: &str, secret: &str| {
            let mut r = request("POST", &[basic("oim", secret)], "", 0);
            with_ip(&mut r, ip);
            a.authenticate(&r)
        };
        let wrong = rejected(from("10.0.0.1", "wrong"));
        for _ in 0..50 {
            let e = rejected(from("192.0.2.1", "wrong"));
            // The same answer a wrong secret gets from an allowed address.
            assert_eq!((e.status, e.code()), (401, Some("invalid_client")));
            assert_eq!(e.message, wrong.message);
            assert_eq!(e.headers, wrong.headers);
            // The reason is for the audit log only.
            assert!(e
                .to_string()
                .contains("not in the allowed_ips of provider `oim`"));
        }
        // Not even the right secret works from there, and nothing was counted.
        assert_eq!(rejected(from("192.0.2.1", "right")).status, 401);
        assert_eq!(a.lockout.tracked(), 3, "only the one allowed failure");
        principal(from("10.0.0.1", "right"));
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
