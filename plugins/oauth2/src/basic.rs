//! `oauth2/basic`: provider credentials over HTTP Basic (RFC 7617) for IGA
//! tools that speak nothing else. Passwords are stored as `$argon2id$…` (or
//! `sha256:…` for generated secrets). Argon2 is deliberately slow and runs
//! inline on the host's worker, so a successful verification is remembered
//! for `cache_ttl` (keyed by SHA-256 of username, password and stored hash).
//! A username presented from an address its provider's `allowed_ips` does
//! not hold is refused before its password is checked or counted; repeated
//! failures lock the (username, client network) pair out (see `throttle`).

use std::collections::HashMap;

use scimgate_abi::sdk::{Authenticator, CreateContext};
use scimgate_abi::{AuthOutcome, PluginError, Principal, Request};
use serde::Deserialize;

use crate::client_credentials::{
    default_cache_ttl, default_failure_window, default_max_failures, default_max_tracked,
};
use crate::credentials::basic_credentials;
use crate::duration::Seconds;
use crate::errors::{basic_challenge, config_error, shown, unauthenticated};
use crate::providers::{self, Allowed};
use crate::secret::{DecoyHash, SecretHash, SecretVerifier};
use crate::throttle::{FailureLockout, Keys};

pub const METHOD: &str = "basic";

/// `[stage.x] use = "oauth2/basic"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {
    /// How long a successful password verification is remembered.
    #[serde(default = "default_cache_ttl")]
    pub cache_ttl: Seconds,
    /// Remembered verifications (oldest dropped first).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Failed logins of one username from one client network (IPv4
    /// address, IPv6 /64) within `failure_window` before that pair is
    /// locked out; 0 disables. Ceilings of 10 × this many lock a username
    /// for every network, and a network for every username.
    #[serde(default = "default_max_failures")]
    pub max_failures: u32,
    #[serde(default = "default_failure_window")]
    pub failure_window: Seconds,
    #[serde(default = "default_max_tracked")]
    pub max_tracked: usize,
    /// Reject unknown usernames (401) instead of passing them on (NotMine).
    #[serde(default = "default_true")]
    pub reject_unknown: bool,
}

fn default_cache_size() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}

struct Account {
    provider_id: String,
    client_id: String,
    password: SecretHash,
    scopes: Vec<String>,
    allowed: Allowed,
}

pub struct Basic {
    accounts: HashMap<String, Account>,
    decoy: DecoyHash,
    verifier: SecretVerifier,
    lockout: FailureLockout,
    reject_unknown: bool,
}

impl Basic {
    pub fn build(config: BasicConfig, ctx: &CreateContext) -> Result<Self, PluginError> {
        let mut problems = Vec::new();
        let mut accounts = HashMap::new();
        for p in providers::parse(&ctx.providers) {
            if p.method != METHOD {
                continue;
            }
            let Some(username) = p.auth_str("username").map(str::to_string) else {
                problems.push(format!("provider `{}`: auth.username is missing", p.id));
                continue;
            };
            let password = match p.secret_hash("password_hash") {
                Ok(hash) => hash,
                Err(problem) => {
                    problems.push(problem);
                    continue;
                }
            };
            if accounts.contains_key(&username) {
                problems.push(format!(
                    "provider `{}`: username `{username}` is used by another provider",
                    p.id
                ));
                continue;
            }
            let client_id = p.client_id.clone().unwrap_or_else(|| username.clone());
            accounts.insert(
                username,
                Account {
                    provider_id: p.id,
                    client_id,
                    password,
                    scopes: p.scopes,
                    allowed: p.allowed,
                },
            );
        }
        if !problems.is_empty() {
            return Err(config_error(&ctx.stage, &problems));
        }
        Ok(Basic {
            decoy: DecoyHash::from_hashes(accounts.values().map(|a: &Account| &a.password)),
            accounts,
            verifier: SecretVerifier::new(config.cache_ttl.as_millis(), config.cache_size),
            lockout: FailureLockout::new(
                config.max_failures,
                config.failure_window.as_millis(),
                config.max_tracked,
            ),
            reject_unknown: config.reject_unknown,
        })
    }

    fn reject(&self, req: &Request, message: &str) -> AuthOutcome {
        AuthOutcome::Rejected(failed(req, message))
    }
}

fn failed(req: &Request, message: &str) -> PluginError {
    unauthenticated(req, "invalid_client", message)
        .with_header("www-authenticate", &basic_challenge())
}

impl Authenticator for Basic {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        let (username, password) = match basic_credentials(req) {
            None => return AuthOutcome::NotMine,
            Some(Err(())) => return self.reject(req, "malformed Basic authorization header"),
            Some(Ok(pair)) => pair,
        };
        let account = self.accounts.get(&username);
        if account.is_none() && !self.reject_unknown {
            return AuthOutcome::NotMine;
        }
        let now = req.received_at_unix_ms;
        // An address the provider does not allow gets the answer a wrong
        // password gets, after the same work, and nothing is counted.
        if let Some(reason) =
            account.and_then(|a| a.allowed.refusal(&a.provider_id, &req.client_ip))
        {
            self.decoy.spend(&password);
            tracing::info!(username = %shown(&username), client_ip = %shown(&req.client_ip), %reason, "login refused");
            return AuthOutcome::Rejected(
                failed(req, "invalid username or password").with_context(reason),
            );
        }
        let keys = Keys::new("user", &username, &req.client_ip);
        if let Some(retry_after) = self.lockout.locked(&keys, now) {
            tracing::warn!(username = %shown(&username), client_ip = %shown(&req.client_ip), "login locked out after repeated failures");
            return AuthOutcome::Rejected(
                PluginError::new(
                    429,
                    format!("too many failed logins; retry in {retry_after} s"),
                )
                .with_header("retry-after", &retry_after.to_string()),
            );
        }
        let verified =
            account.filter(|a| self.verifier.verify(&a.password, &username, &password, now));
        let Some(account) = verified else {
            if account.is_none() {
                self.decoy.spend(&password);
            }
            self.lockout.record_failure(&keys, now);
            tracing::debug!(username = %shown(&username), client_ip = %shown(&req.client_ip), "login failed");
            return self.reject(req, "invalid username or password");
        };
        self.lockout.reset(&keys);
        let mut principal = Principal::new(&account.provider_id, &account.client_id, METHOD);
        principal.subject = username.as_str().into();
        principal.scopes = account.scopes.iter().map(|s| s.as_str().into()).collect();
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
    use crate::testutil::{basic, ctx, rejected, request};
    use serde_json::{json, Value};

    fn build(config: Value) -> Basic {
        let c = ctx(
            config,
            vec![
                json!({"id": "iga-a", "auth": {"method": METHOD, "username": "alice", "password_hash": argon2id_ref("correct horse"), "scopes": ["scim:read"]}}),
                json!({"id": "iga-b", "auth": {"method": METHOD, "username": "bob", "password_hash": sha256_ref("generated-secret")}}),
            ],
        );
        Basic::build(c.deserialize().unwrap(), &c).unwrap()
    }

    fn login(b: &Basic, user: &str, password: &str, now: i64) -> AuthOutcome {
        b.authenticate(&request("GET", &[basic(user, password)], "", now))
    }

    #[test]
    fn argon2id_and_sha256_passwords() {
        let b = build(json!({}));
        match login(&b, "alice", "correct horse", 0) {
            AuthOutcome::Authenticated(p) => {
                assert_eq!(p.provider_id.as_str(), "iga-a");
                assert_eq!(p.subject.as_str(), "alice");
                assert_eq!(p.auth_method.as_str(), METHOD);
                assert!(p.has_scope("scim:read"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.verifier.cached(), 1);
        assert!(matches!(
            login(&b, "alice", "correct horse", 1000),
            AuthOutcome::Authenticated(_)
        ));
        assert!(matches!(
            login(&b, "bob", "generated-secret", 0),
            AuthOutcome::Authenticated(_)
        ));
        let e = rejected(login(&b, "alice", "wrong", 0));
        assert_eq!(e.status, 401);
        assert!(e
            .headers
            .iter()
            .any(|h| h.value.starts_with("Basic realm=\"scimgate\"")));
        assert_eq!(rejected(login(&b, "mallory", "x", 0)).status, 401);
        // Basic passwords are not form-encoded (RFC 7617), unlike client secrets.
        assert!(matches!(
            login(&b, "alice", "correct+horse", 0),
            AuthOutcome::Rejected(_)
        ));
        assert!(matches!(
            b.authenticate(&request("GET", &[("authorization", "Bearer x")], "", 0)),
            AuthOutcome::NotMine
        ));
    }

    #[test]
    fn unknown_users_cost_as_much_as_wrong_passwords() {
        let b = build(json!({"max_failures": 0}));
        assert!(b.decoy.is_armed(), "an argon2id account arms the decoy");
        // A wrong password runs the account's own argon2id verification...
        assert_eq!(rejected(login(&b, "alice", "wrong", 0)).status, 401);
        assert_eq!(b.decoy.spent(), 0, "a known user needs no decoy");
        // ...and an unknown user runs one against the decoy: the same cost
        // (without it the refusal would take microseconds).
        assert_eq!(rejected(login(&b, "mallory", "wrong", 0)).status, 401);
        assert_eq!(b.decoy.spent(), 1, "an unknown user spends the decoy once");
    }

    #[test]
    fn unknown_users_pass_on_when_configured() {
        let b = build(json!({"reject_unknown": false}));
        assert!(matches!(login(&b, "mallory", "x", 0), AuthOutcome::NotMine));
        assert!(matches!(
            login(&b, "alice", "x", 0),
            AuthOutcome::Rejected(_)
        ));
    }

    #[test]
    fn config_defaults() {
        let c = ctx(json!({}), vec![]);
        let config: BasicConfig = c.deserialize().unwrap();
        assert_eq!(config.cache_ttl.0, 300);
        assert_eq!(config.cache_size, 10_000);
        assert_eq!(config.max_failures, 10);
        assert_eq!(config.failure_window.0, 300);
        assert_eq!(config.max_tracked, 10_000);
        assert!(config.reject_unknown);
        assert_eq!(
            build(json!({})).challenge().as_deref(),
            Some("Basic realm=\"scimgate\", charset=\"UTF-8\"")
        );
    }

    #[test]
    fn repeated_failures_lock_the_user_out() {
        let b = build(json!({"max_failures": 2, "failure_window": "1m"}));
        rejected(login(&b, "bob", "x", 0));
        rejected(login(&b, "bob", "y", 0));
        let e = rejected(login(&b, "bob", "generated-secret", 1000));
        assert_eq!(e.status, 429);
        assert!(matches!(
            login(&b, "bob", "generated-secret", 61_000),
            AuthOutcome::Authenticated(_)
        ));
    }

    #[test]
    fn a_disallowed_address_is_refused_unverified_and_uncounted() {
        let c = ctx(
            json!({"max_failures": 2}),
            vec![
                json!({"id": "iga", "auth": {"method": METHOD, "username": "sync",
                "password_hash": sha256_ref("pw"), "allowed_ips": ["2001:db8:1::/48"]}}),
            ],
        );
        let b = Basic::build(c.deserialize().unwrap(), &c).unwrap();
        let from = |ip: &str, password: &str| {
            let mut r = request("GET", &[basic("sync", password)], "", 0);
            r.client_ip = ip.into();
            b.authenticate(&r)
        };
        let wrong = rejected(from("2001:db8:1::5", "bad"));
        for _ in 0..30 {
            let e = rejected(from("192.0.2.1", "bad"));
            assert_eq!((e.status, &e.message), (401, &wrong.message));
            assert_eq!(e.headers, wrong.headers);
            assert!(
                e.to_string().contains("allowed_ips of provider `iga`"),
                "{e}"
            );
        }
        assert_eq!(rejected(from("192.0.2.1", "pw")).status, 401);
        assert_eq!(b.lockout.tracked(), 3, "only the allowed address's failure");
        assert!(matches!(
            from("2001:db8:1::5", "pw"),
            AuthOutcome::Authenticated(_)
        ));
    }

    #[test]
    fn a_locked_pair_leaves_the_same_user_elsewhere_alone() {
        let b = build(json!({"max_failures": 2, "failure_window": "1m"}));
        let from = |ip: &str, password: &str| {
            let mut r = request("GET", &[basic("bob", password)], "", 0);
            r.client_ip = ip.into();
            b.authenticate(&r)
        };
        rejected(from("2001:db8:1:2::1", "x"));
        rejected(from("2001:db8:1:2::2", "y"));
        // Another address of the same /64 is the same pair.
        assert_eq!(
            rejected(from("2001:db8:1:2::3", "generated-secret")).status,
            429
        );
        assert!(matches!(
            from("2001:db8:1:3::1", "generated-secret"),
            AuthOutcome::Authenticated(_)
        ));
    }
}
