//! `oauth2/jwks`: access tokens from an external issuer (Entra ID, Okta, …),
//! verified against the issuer's JWKS (a file, an `https://` URL, or an
//! `http://` URL whose host is a loopback address, for sidecars). Keys
//! are cached and refreshed lazily inside `authenticate` every `refresh`,
//! or sooner when a token names an unknown `kid` (at most once per
//! `unknown_kid_cooldown`). Allowed algorithms: RS256/384/512,
//! PS256/384/512, ES256, ES384, EdDSA (verified with `ring`); `none` and
//! HMAC are never accepted.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scimgate_abi::sdk::{Authenticator, CreateContext};
use scimgate_abi::{AuthOutcome, ConfigIssue, Header, PluginError, Principal, Request};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cache::BoundedCache;
use crate::credentials::bearer_token;
use crate::duration::Seconds;
use crate::errors::{bearer_challenge, config_error, invalid_token};
use crate::jwt::{audience_contains, Compact};
use crate::providers;
use crate::secret::sha256;

pub const METHOD: &str = "jwks";

/// Largest JWKS document read.
const MAX_JWKS_BYTES: u64 = 1 << 20;

/// `[stage.x] use = "oauth2/jwks"`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// How often a JWKS is re-read (file) or re-fetched (URL).
    #[serde(default = "default_refresh")]
    pub refresh: Seconds,
    /// Least time between two fetches forced by an unknown `kid` (or
    /// retried after a failed fetch).
    #[serde(default = "default_cooldown")]
    pub unknown_kid_cooldown: Seconds,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway: Seconds,
    /// Timeout of one URL fetch.
    #[serde(default = "default_timeout")]
    pub fetch_timeout: Seconds,
    /// Verified tokens remembered (oldest dropped first).
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_refresh() -> Seconds {
    Seconds(600)
}
fn default_cooldown() -> Seconds {
    Seconds(60)
}
fn default_leeway() -> Seconds {
    Seconds(30)
}
fn default_timeout() -> Seconds {
    Seconds(5)
}
fn default_cache_size() -> usize {
    10_000
}

/// The JWS algorithms this stage can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    fn verify(self, key: &PublicKey, message: &[u8], signature: &[u8]) -> bool {
        use ring::signature as sig;
        let rsa = |params: &'static sig::RsaParameters| match key {
            PublicKey::Rsa { n, e } => sig::RsaPublicKeyComponents { n, e }
                .verify(params, message, signature)
                .is_ok(),
            _ => false,
        };
        match self {
            Alg::Rs256 => rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
            Alg::Rs384 => rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
            Alg::Rs512 => rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
            Alg::Ps256 => rsa(&sig::RSA_PSS_2048_8192_SHA256),
            Alg::Ps384 => rsa(&sig::RSA_PSS_2048_8192_SHA384),
            Alg::Ps512 => rsa(&sig::RSA_PSS_2048_8192_SHA512),
            Alg::Es256 => match key {
                PublicKey::P256(point) => {
                    sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, signature)
                        .is_ok()
                }
                _ => false,
            },
            Alg::Es384 => match key {
                PublicKey::P384(point) => {
                    sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point)
                        .verify(message, signature)
                        .is_ok()
                }
                _ => false,
            },
            Alg::EdDsa => match key {
                PublicKey::Ed25519(x) => sig::UnparsedPublicKey::new(&sig::ED25519, x)
                    .verify(message, signature)
                    .is_ok(),
                _ => false,
            },
        }
    }

    fn fits(self, key: &PublicKey) -> bool {
        matches!(
            (self, key),
            (
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512,
                PublicKey::Rsa { .. }
            ) | (Alg::Es256, PublicKey::P256(_))
                | (Alg::Es384, PublicKey::P384(_))
                | (Alg::EdDsa, PublicKey::Ed25519(_))
        )
    }
}

#[derive(Debug)]
enum PublicKey {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point `04 || x || y`.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Debug)]
pub(crate) struct Jwk {
    kid: Option<String>,
    alg: Option<String>,
    key: PublicKey,
}

/// Parses a JWKS document, keeping the signature keys we can use and
/// skipping the others (encryption keys, unknown key types).
pub(crate) fn parse_jwks(bytes: &[u8]) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no `keys` array")?;
    Ok(keys
        .iter()
        .filter_map(|k| k.as_object())
        .filter_map(parse_jwk)
        .collect())
}

fn parse_jwk(k: &Map<String, Value>) -> Option<Jwk> {
    let s = |name: &str| k.get(name).and_then(Value::as_str);
    let b = |name: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s(name)?.trim_end_matches('='))
            .ok()
    };
    if s("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match (s("kty")?, s("crv")) {
        ("RSA", _) => PublicKey::Rsa {
            n: b("n")?,
            e: b("e")?,
        },
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let (x, y) = (b("x")?, b("y")?);
            let len = if crv == "P-256" { 32 } else { 48 };
            if x.len() != len || y.len() != len {
                return None;
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if crv == "P-256" {
                PublicKey::P256(point)
            } else {
                PublicKey::P384(point)
            }
        }
        ("OKP", Some("Ed25519")) => {
            let x = b("x")?;
            if x.len() != 32 {
                return None;
            }
            PublicKey::Ed25519(x)
        }
        _ => return None,
    };
    Some(Jwk {
        kid: s("kid").map(str::to_string),
        alg: s("alg").map(str::to_string),
        key,
    })
}

enum Location {
    File(PathBuf),
    Https(String),
    /// `http://` to `localhost`, 127.0.0.0/8 or `[::1]`: fetched without
    /// TLS and without following redirects (a redirect could leave the host).
    LoopbackHttp(String),
}

/// Whether `url` is `http://` with a loopback host: `localhost`, an address
/// in 127.0.0.0/8 or `[::1]` (dotted-quad and bracketed forms only; anything
/// unusual is treated as not loopback).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.get(..7).filter(|s| s.eq_ignore_ascii_case("http://")) else {
        return false;
    };
    let rest = &url[rest.len()..];
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') || authority.contains('%') {
        return false;
    }
    if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return false;
        };
        return valid_port(after)
            && addr
                .parse::<std::net::Ipv6Addr>()
                .is_ok_and(|a| a.is_loopback());
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port {
        if !valid_port(&format!(":{p}")) {
            return false;
        }
    }
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

/// Empty, or `:` followed by a port number.
fn valid_port(after_host: &str) -> bool {
    match after_host.strip_prefix(':') {
        None => after_host.is_empty(),
        Some(p) => !p.is_empty() && p.parse::<u16>().is_ok(),
    }
}

#[derive(Default)]
struct SourceState {
    keys: Arc<Vec<Jwk>>,
    loaded: bool,
    fetched_at_ms: i64,
    last_attempt_ms: Option<i64>,
    refreshing: bool,
}

/// One JWKS document (shared by the providers that name it).
struct Source {
    location: Location,
    state: Mutex<SourceState>,
}

struct JwksProvider {
    id: String,
    client_id: Option<String>,
    issuer: String,
    audience: String,
    source: usize,
    subject_claim: String,
    subject: Option<String>,
    algorithms: Vec<Alg>,
    scopes: Vec<String>,
}

struct Verified {
    principal: Principal,
    exp_ms: i64,
    nbf_ms: i64,
}

pub struct Jwks {
    providers: Vec<JwksProvider>,
    sources: Vec<Source>,
    refresh_ms: i64,
    cooldown_ms: i64,
    leeway_ms: i64,
    agent: ureq::Agent,
    /// For `http://` loopback URLs: plain HTTP, no redirects.
    loopback_agent: ureq::Agent,
    cache: Mutex<BoundedCache<[u8; 32], Verified>>,
}

impl Jwks {
    pub fn build(config: JwksConfig, ctx: &CreateContext) -> Result<Self, PluginError> {
        Self::assemble(config, ctx).map_err(|problems| config_error(&ctx.stage, &problems))
    }

    /// The providers' `jwks` settings checked the way `build` checks them
    /// (URL forms, algorithms, readable key files), so that `scimgate
    /// validate` reports what `serve` would refuse.
    pub fn validate(ctx: &CreateContext) -> Vec<ConfigIssue> {
        match ctx.deserialize::<JwksConfig>() {
            Ok(config) => match Self::assemble(config, ctx) {
                Ok(_) => Vec::new(),
                Err(problems) => problems
                    .into_iter()
                    .map(|p| ConfigIssue::new("", p))
                    .collect(),
            },
            // The schema check reports stage settings.
            Err(_) => Vec::new(),
        }
    }

    fn assemble(config: JwksConfig, ctx: &CreateContext) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        let mut providers = Vec::new();
        let mut sources: Vec<Source> = Vec::new();
        let mut source_index: HashMap<String, usize> = HashMap::new();
        for p in providers::parse(&ctx.providers) {
            if p.method != METHOD {
                continue;
            }
            let mut missing = |key: &str| {
                let v = p.auth_str(key).map(str::to_string);
                if v.is_none() {
                    problems.push(format!("provider `{}`: auth.{key} is required", p.id));
                }
                v
            };
            let (Some(issuer), Some(audience), Some(jwks)) =
                (missing("issuer"), missing("audience"), missing("jwks"))
            else {
                continue;
            };
            let location = if jwks.starts_with("https://") {
                Location::Https(jwks.clone())
            } else if is_loopback_http(&jwks) {
                Location::LoopbackHttp(jwks.clone())
            } else if jwks.contains("://") {
                problems.push(format!(
                    "provider `{}`: auth.jwks must be an https:// URL, an http:// URL to a loopback address (localhost, 127.0.0.0/8, [::1]) or a file path",
                    p.id
                ));
                continue;
            } else {
                Location::File(PathBuf::from(jwks.strip_prefix("file://").unwrap_or(&jwks)))
            };
            let names = p
                .auth_list("algorithms")
                .unwrap_or_else(|| vec!["RS256".into(), "ES256".into(), "EdDSA".into()]);
            let mut algorithms = Vec::new();
            for name in &names {
                match Alg::parse(name) {
                    Some(a) => algorithms.push(a),
                    None => problems.push(format!(
                        "provider `{}`: auth.algorithms: `{name}` is not supported (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)",
                        p.id
                    )),
                }
            }
            let source = *source_index.entry(jwks).or_insert_with(|| {
                sources.push(Source {
                    location,
                    state: Mutex::new(SourceState::default()),
                });
                sources.len() - 1
            });
            providers.push(JwksProvider {
                id: p.id.clone(),
                client_id: p.client_id.clone(),
                issuer,
                audience,
                source,
                subject_claim: p.auth_str("subject_claim").unwrap_or("sub").to_string(),
                subject: p.auth_str("subject").map(str::to_string),
                algorithms,
                scopes: p.scopes.clone(),
            });
        }
        // Files are read now, so a wrong path is a configuration error.
        for source in &sources {
            if let Location::File(path) = &source.location {
                if let Err(e) = fetch(&source.location, None).and_then(|b| parse_jwks(&b)) {
                    problems.push(format!("jwks file {}: {e}", path.display()));
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(config.fetch_timeout.0.max(1)))
            .https_only(true)
            .build();
        let loopback_agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(config.fetch_timeout.0.max(1)))
            .redirects(0)
            .build();
        Ok(Jwks {
            providers,
            sources,
            refresh_ms: config.refresh.as_millis(),
            cooldown_ms: config.unknown_kid_cooldown.as_millis(),
            leeway_ms: config.leeway.as_millis(),
            agent,
            loopback_agent,
            cache: Mutex::new(BoundedCache::new(config.cache_size)),
        })
    }

    /// The keys of `source`, (re)loaded when stale or when `force`d by an
    /// unknown `kid`, but never more often than the cooldown allows.
    fn keys(&self, source: &Source, now: i64, force: bool) -> Result<Arc<Vec<Jwk>>, String> {
        {
            let mut st = source.state.lock().map_err(|_| "jwks state poisoned")?;
            let stale = !st.loaded || now >= st.fetched_at_ms.saturating_add(self.refresh_ms);
            let cooled = match st.last_attempt_ms {
                None => true,
                Some(t) => now >= t.saturating_add(self.cooldown_ms),
            };
            let go = !st.refreshing && cooled && (stale || force);
            if go {
                st.refreshing = true;
                st.last_attempt_ms = Some(now);
            } else if st.loaded {
                return Ok(st.keys.clone());
            } else if st.refreshing {
                return Err("the issuer's keys are being fetched; retry".into());
            } else {
                return Err("the issuer's keys are unavailable".into());
            }
        }
        let agent = match source.location {
            Location::LoopbackHttp(_) => &self.loopback_agent,
            _ => &self.agent,
        };
        let result = fetch(&source.location, Some(agent)).and_then(|b| parse_jwks(&b));
        let mut st = source.state.lock().map_err(|_| "jwks state poisoned")?;
        st.refreshing = false;
        match result {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "jwks loaded");
                st.keys = Arc::new(keys);
                st.loaded = true;
                st.fetched_at_ms = now;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot load jwks; keeping the previous keys");
                if !st.loaded {
                    return Err(format!("the issuer's keys are unavailable: {e}"));
                }
            }
        }
        Ok(st.keys.clone())
    }

    /// Verifies the signature against `source`'s keys.
    fn signature_ok(
        &self,
        source: &Source,
        jws: &Compact<'_>,
        alg: Alg,
        now: i64,
    ) -> Result<(), String> {
        let kid = jws.header.kid.as_deref();
        let mut forced = false;
        loop {
            let keys = self.keys(source, now, forced)?;
            let candidates: Vec<&Jwk> = keys
                .iter()
                .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                .filter(|k| alg.fits(&k.key))
                .filter(|k| match k.alg.as_deref() {
                    None => true,
                    Some(a) => Alg::parse(a) == Some(alg),
                })
                .collect();
            if candidates.is_empty() {
                if !forced && kid.is_some() {
                    forced = true;
                    continue;
                }
                return Err("the token's signing key (kid) is unknown".into());
            }
            let message = jws.signing_input.as_bytes();
            return if candidates
                .iter()
                .any(|k| alg.verify(&k.key, message, &jws.signature))
            {
                Ok(())
            } else {
                Err("the token's signature is invalid".into())
            };
        }
    }

    fn verify(&self, token: &str, now: i64) -> Result<Option<Verified>, String> {
        let Some(jws) = Compact::parse(token) else {
            return Ok(None);
        };
        let Some(claims) = jws.claims::<Map<String, Value>>() else {
            return Ok(None);
        };
        let Some(iss) = claims.get("iss").and_then(Value::as_str) else {
            return Ok(None);
        };
        let by_issuer: Vec<&JwksProvider> =
            self.providers.iter().filter(|p| p.issuer == iss).collect();
        if by_issuer.is_empty() {
            return Ok(None);
        }
        if jws.header.crit.is_some() {
            return Err("the token has critical header extensions".into());
        }
        let alg = Alg::parse(&jws.header.alg).ok_or("the token's algorithm is not accepted")?;
        let allowed: Vec<&JwksProvider> = by_issuer
            .into_iter()
            .filter(|p| p.algorithms.contains(&alg))
            .collect();
        if allowed.is_empty() {
            return Err("the token's algorithm is not accepted".into());
        }
        let exp = claims
            .get("exp")
            .and_then(Value::as_i64)
            .ok_or("the token has no exp")?;
        let nbf = claims
            .get("nbf")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MIN / 1000);
        let (exp_ms, nbf_ms) = (exp.saturating_mul(1000), nbf.saturating_mul(1000));
        self.check_times(exp_ms, nbf_ms, now)?;
        let aud = claims.get("aud").ok_or("the token has no aud")?;
        let mut last_error = String::from("no provider matches the token's audience and subject");
        let mut verified_sources: Vec<usize> = Vec::new();
        for p in allowed {
            if !audience_contains(aud, &p.audience) {
                continue;
            }
            let subject = claims.get(&p.subject_claim).and_then(Value::as_str);
            let Some(subject) = subject else {
                continue;
            };
            if p.subject.as_deref().is_some_and(|want| want != subject) {
                continue;
            }
            if !verified_sources.contains(&p.source) {
                match self.signature_ok(&self.sources[p.source], &jws, alg, now) {
                    Ok(()) => verified_sources.push(p.source),
                    Err(e) => {
                        last_error = e;
                        continue;
                    }
                }
            }
            let client_id = p
                .client_id
                .clone()
                .or_else(|| {
                    ["client_id", "azp", "appid"]
                        .iter()
                        .find_map(|c| claims.get(*c).and_then(Value::as_str).map(str::to_string))
                })
                .unwrap_or_else(|| subject.to_string());
            let mut principal = Principal::new(&p.id, &client_id, METHOD);
            principal.subject = subject.into();
            principal.scopes = p.scopes.iter().map(|s| s.as_str().into()).collect();
            principal.attributes.push(Header::new("iss", iss));
            return Ok(Some(Verified {
                principal,
                exp_ms,
                nbf_ms,
            }));
        }
        Err(last_error)
    }

    fn check_times(&self, exp_ms: i64, nbf_ms: i64, now_ms: i64) -> Result<(), String> {
        if now_ms >= exp_ms.saturating_add(self.leeway_ms) {
            return Err("the token expired".into());
        }
        if now_ms < nbf_ms.saturating_sub(self.leeway_ms) {
            return Err("the token is not valid yet".into());
        }
        Ok(())
    }
}

/// Reads a JWKS: a file directly, a URL with a blocking fetch.
fn fetch(location: &Location, agent: Option<&ureq::Agent>) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    match location {
        Location::File(path) => {
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_JWKS_BYTES).read_to_end(&mut bytes))
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        }
        Location::Https(url) | Location::LoopbackHttp(url) => {
            let agent = agent.ok_or("no http agent")?;
            let response = agent
                .get(url)
                .call()
                .map_err(|e| format!("GET {url}: {e}"))?;
            if response.status() != 200 {
                // A redirect (not followed for loopback http) or another non-error status.
                return Err(format!("GET {url}: status {}", response.status()));
            }
            response
                .into_reader()
                .take(MAX_JWKS_BYTES)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("GET {url}: {e}"))?;
        }
    }
    Ok(bytes)
}

impl Authenticator for Jwks {
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
                    Err(reason) => AuthOutcome::Rejected(invalid_token(req, &reason)),
                };
            }
        }
        match self.verify(token, now) {
            Ok(None) => AuthOutcome::NotMine,
            Ok(Some(verified)) => {
                let principal = verified.principal.clone();
                let until = verified.exp_ms.saturating_add(self.leeway_ms);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(digest, verified, until);
                }
                AuthOutcome::Authenticated(principal)
            }
            Err(reason) => {
                tracing::debug!(reason = %crate::errors::shown(&reason), client_ip = %crate::errors::shown(&req.client_ip), "external token rejected");
                AuthOutcome::Rejected(invalid_token(req, &reason))
            }
        }
    }

    fn challenge(&self) -> Option<String> {
        Some(bearer_challenge())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::b64url;
    use crate::testutil::{ctx, rejected, request, temp_dir};
    use base64::Engine;
    use ed25519_dalek::{Signer, SigningKey};
    use ring::rand::SystemRandom;
    use ring::signature::{
        EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    };
    use serde_json::json;
    use std::path::Path;

    /// A throwaway RSA key made with `openssl genpkey` for these tests only.
    const RSA_PEM: &str = include_str!("../testdata/rsa2048-test-only.pem");
    const NOW: i64 = 1_700_000_000_000;
    const ISS: &str = "https://login.example.com/tenant/v2.0";

    fn rsa_key() -> RsaKeyPair {
        let b64: String = RSA_PEM
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        RsaKeyPair::from_pkcs8(&der).unwrap()
    }

    fn ed_key() -> SigningKey {
        SigningKey::from_bytes(&[5u8; 32])
    }

    fn rsa_jwk(kid: &str) -> Value {
        let key = rsa_key();
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(&public.n), "e": b64url(&public.e)})
    }

    fn ed_jwk(kid: &str) -> Value {
        json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64url(ed_key().verifying_key().as_bytes())})
    }

    fn write_jwks(path: &Path, keys: Vec<Value>) {
        std::fs::write(path, serde_json::to_vec(&json!({"keys": keys})).unwrap()).unwrap();
    }

    fn claims(sub: &str) -> Value {
        json!({"iss": ISS, "aud": "api://scimgate", "sub": sub, "appid": "app-123",
            "exp": NOW / 1000 + 3600, "nbf": NOW / 1000 - 10, "iat": NOW / 1000 - 10})
    }

    fn token(alg: &str, kid: &str, claims: &Value) -> String {
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(claims).unwrap())
        );
        let sig = match alg {
            "RS256" => {
                let key = rsa_key();
                let mut sig = vec![0; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .unwrap();
                sig
            }
            "EdDSA" => ed_key().sign(input.as_bytes()).to_bytes().to_vec(),
            "ES256" => es_key()
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            _ => b"junk".to_vec(),
        };
        format!("{input}.{}", b64url(&sig))
    }

    fn es_key() -> EcdsaKeyPair {
        let rng = SystemRandom::new();
        // Deterministic per test run is not needed: one key per process.
        static PKCS8: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let der = PKCS8.get_or_init(|| {
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).unwrap()
    }

    fn es_jwk(kid: &str) -> Value {
        let point = es_key().public_key().as_ref().to_vec();
        json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
    }

    fn jwks_with(file: &Path, config: Value, subject: Option<&str>) -> Jwks {
        let mut auth = json!({"method": METHOD, "issuer": ISS, "audience": "api://scimgate",
            "jwks": file, "subject_claim": "sub", "scopes": ["scim:read"]});
        if let Some(s) = subject {
            auth["subject"] = s.into();
        }
        let c = ctx(
            config,
            vec![
                json!({"id": "entra", "auth": auth}),
                json!({"id": "oim", "auth": {"method": "oauth2-client-credentials", "client_id": "x"}}),
            ],
        );
        Jwks::build(c.deserialize().unwrap(), &c).unwrap()
    }

    fn bearer(token: &str, now: i64) -> Request {
        request(
            "GET",
            &[("authorization", &format!("Bearer {token}"))],
            "",
            now,
        )
    }

    fn principal(outcome: AuthOutcome) -> Principal {
        match outcome {
            AuthOutcome::Authenticated(p) => p,
            other => panic!("expected Authenticated, got {other:?}"),
        }
    }

    #[test]
    fn okp_rsa_and_ec_keys_from_a_file() {
        let dir = temp_dir("jwks-file");
        let file = dir.join("jwks.json");
        write_jwks(
            &file,
            vec![
                ed_jwk("ed1"),
                rsa_jwk("rsa1"),
                es_jwk("ec1"),
                json!({"kty": "RSA", "use": "enc", "kid": "x", "n": "AQAB", "e": "AQAB"}),
            ],
        );
        let j = jwks_with(&file, json!({}), None);
        for (alg, kid) in [("EdDSA", "ed1"), ("RS256", "rsa1"), ("ES256", "ec1")] {
            let p = principal(j.authenticate(&bearer(&token(alg, kid, &claims("svc-1")), NOW)));
            assert_eq!(p.provider_id.as_str(), "entra");
            assert_eq!(p.subject.as_str(), "svc-1");
            assert_eq!(p.client_id.as_str(), "app-123");
            assert_eq!(p.auth_method.as_str(), METHOD);
            assert!(p.has_scope("scim:read"));
        }
        // A key must fit the algorithm: an RS256 header naming the Ed25519 key fails.
        let e = rejected(j.authenticate(&bearer(&token("RS256", "ed1", &claims("svc-1")), NOW)));
        assert!(e.message.contains("unknown"), "{}", e.message);
        // Tampered payload.
        let t = token("EdDSA", "ed1", &claims("svc-1"));
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = b64url(&serde_json::to_vec(&claims("svc-2")).unwrap());
        let e = rejected(j.authenticate(&bearer(&parts.join("."), NOW)));
        assert!(e.message.contains("signature"), "{}", e.message);
    }

    #[test]
    fn foreign_issuers_and_non_jwts_are_not_mine() {
        let dir = temp_dir("jwks-iss");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1")]);
        let j = jwks_with(&file, json!({}), None);
        let mut c = claims("svc-1");
        c["iss"] = "scimgate".into();
        assert!(matches!(
            j.authenticate(&bearer(&token("EdDSA", "ed1", &c), NOW)),
            AuthOutcome::NotMine
        ));
        assert!(matches!(
            j.authenticate(&bearer("opaque", NOW)),
            AuthOutcome::NotMine
        ));
        assert!(matches!(
            j.authenticate(&request("GET", &[], "", NOW)),
            AuthOutcome::NotMine
        ));
    }

    #[test]
    fn algorithms_audience_subject_and_time_are_checked() {
        let dir = temp_dir("jwks-claims");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1"), rsa_jwk("rsa1")]);
        let j = jwks_with(&file, json!({}), Some("svc-1"));
        let msg = |t: String| {
            rejected(j.authenticate(&bearer(&t, NOW)))
                .message
                .to_string()
        };
        assert!(msg(token("none", "ed1", &claims("svc-1"))).contains("algorithm"));
        assert!(msg(token("HS256", "ed1", &claims("svc-1"))).contains("algorithm"));
        assert!(msg(token("EdDSA", "ed1", &claims("svc-2"))).contains("no provider"));
        let mut c = claims("svc-1");
        c["aud"] = "api://other".into();
        assert!(msg(token("EdDSA", "ed1", &c)).contains("no provider"));
        let mut c = claims("svc-1");
        c["exp"] = (NOW / 1000 - 60).into();
        assert!(msg(token("EdDSA", "ed1", &c)).contains("expired"));
        let mut c = claims("svc-1");
        c.as_object_mut().unwrap().remove("exp");
        assert!(msg(token("EdDSA", "ed1", &c)).contains("exp"));
        principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("svc-1")), NOW)));
        // An allowlist without RS256 refuses RSA tokens.
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "okta", "auth": {"method": METHOD, "issuer": ISS, "audience": "api://scimgate", "jwks": file, "algorithms": ["EdDSA"]}}),
            ],
        );
        let only_ed = Jwks::build(c.deserialize().unwrap(), &c).unwrap();
        let e =
            rejected(only_ed.authenticate(&bearer(&token("RS256", "rsa1", &claims("svc-1")), NOW)));
        assert!(e.message.contains("algorithm"), "{}", e.message);
    }

    #[test]
    fn unknown_kid_refetches_at_most_once_per_cooldown() {
        let dir = temp_dir("jwks-kid");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1")]);
        let j = jwks_with(
            &file,
            json!({"unknown_kid_cooldown": "60s", "refresh": "1h"}),
            None,
        );
        let rotated = token("RS256", "rsa-new", &claims("svc-1"));
        let e = rejected(j.authenticate(&bearer(&rotated, NOW)));
        assert!(e.message.contains("unknown"), "{}", e.message);
        // The issuer publishes the new key; within the cooldown we do not re-read.
        write_jwks(&file, vec![ed_jwk("ed1"), rsa_jwk("rsa-new")]);
        assert!(matches!(
            j.authenticate(&bearer(&rotated, NOW + 10_000)),
            AuthOutcome::Rejected(_)
        ));
        // After the cooldown the unknown kid triggers a re-read.
        principal(j.authenticate(&bearer(&rotated, NOW + 61_000)));
        // Keys dropped from the file stay usable until the next refresh...
        write_jwks(&file, vec![rsa_jwk("rsa-new")]);
        let ed = token("EdDSA", "ed1", &claims("svc-9"));
        principal(j.authenticate(&bearer(&ed, NOW + 62_000)));
        // ...and are gone after it (a new token, not served from the cache).
        let ed2 = token("EdDSA", "ed1", &claims("svc-10"));
        assert!(matches!(
            j.authenticate(&bearer(&ed2, NOW + 62_000 + 3_600_000)),
            AuthOutcome::Rejected(_)
        ));
    }

    #[test]
    fn http_urls_are_loopback_only() {
        for ok in [
            "http://127.0.0.1/keys",
            "http://127.0.0.1:8081/keys",
            "http://127.9.8.7:1/.well-known/jwks.json",
            "http://localhost:9000/keys",
            "HTTP://LOCALHOST/keys",
            "http://[::1]:9000/keys",
            "http://[::1]",
            "http://127.0.0.1?x=1",
        ] {
            assert!(is_loopback_http(ok), "{ok}");
        }
        for refused in [
            "http://example.com/keys",
            "http://10.0.0.1/keys",
            "http://128.0.0.1/keys",
            "http://localhost.example.com/keys",
            "http://127.0.0.1.example.com/keys",
            "http://127.0.0.1@evil.example/keys",
            "http://evil.example#@127.0.0.1/",
            "http://[::2]/keys",
            "http://[::ffff:10.0.0.1]/keys",
            "http://127.0.0.1:99999/keys",
            "http://127.0.0.1:/keys",
            "http://127.1/keys",
            "http://%31%32%37.0.0.1/keys",
            "https://127.0.0.1/keys",
            "ftp://127.0.0.1/keys",
        ] {
            assert!(!is_loopback_http(refused), "{refused}");
        }
        let build = |jwks: &str| {
            let c = ctx(
                json!({}),
                vec![
                    json!({"id": "side", "auth": {"method": METHOD, "issuer": ISS, "audience": "x", "jwks": jwks}}),
                ],
            );
            Jwks::build(c.deserialize().unwrap(), &c).map(|_| ())
        };
        assert!(build("http://127.0.0.1:1/keys").is_ok());
        assert!(build("http://localhost:1/keys").is_ok());
        assert!(build("http://[::1]:1/keys").is_ok());
        let e = build("http://keys.example.com/keys").err().unwrap();
        assert!(e.message.contains("loopback"), "{}", e.message);
        // `scimgate validate` sees the same problem.
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "side", "auth": {"method": METHOD, "issuer": ISS, "audience": "x", "jwks": "http://keys.example.com/keys"}}),
            ],
        );
        let issues = Jwks::validate(&c);
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(issues[0].message.contains("loopback"));
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "side", "auth": {"method": METHOD, "issuer": ISS, "audience": "x", "jwks": "http://127.0.0.1:1/keys"}}),
            ],
        );
        assert!(Jwks::validate(&c).is_empty());
    }

    /// Serves `body` to every GET on a loopback port; the URL of `/keys`.
    fn serve_once_per_request(body: String, status: &'static str) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(&stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let _ = (&stream).write_all(
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nLocation: http://example.com/keys\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                );
            }
        });
        format!("http://{addr}/keys")
    }

    #[test]
    fn loopback_http_jwks_is_fetched_and_redirects_are_not_followed() {
        let body = serde_json::to_string(&json!({"keys": [ed_jwk("ed1")]})).unwrap();
        let url = serve_once_per_request(body.clone(), "200 OK");
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "side", "auth": {"method": METHOD, "issuer": ISS, "audience": "api://scimgate", "jwks": url}}),
            ],
        );
        let j = Jwks::build(c.deserialize().unwrap(), &c).unwrap();
        let p = principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("svc-1")), NOW)));
        assert_eq!(p.provider_id.as_str(), "side");
        // A redirecting sidecar: the redirect is not followed, the keys stay unavailable.
        let url = serve_once_per_request(body, "302 Found");
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "side", "auth": {"method": METHOD, "issuer": ISS, "audience": "api://scimgate", "jwks": url}}),
            ],
        );
        let j = Jwks::build(c.deserialize().unwrap(), &c).unwrap();
        let e = rejected(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("svc-1")), NOW)));
        assert!(e.message.contains("unavailable"), "{}", e.message);
    }

    const ALL_ALGS: [&str; 9] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
    ];

    fn es384_pkcs8() -> &'static [u8] {
        static PKCS8: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        PKCS8.get_or_init(|| {
            EcdsaKeyPair::generate_pkcs8(
                &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .unwrap()
            .as_ref()
            .to_vec()
        })
    }

    fn es384_key() -> EcdsaKeyPair {
        EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            es384_pkcs8(),
            &SystemRandom::new(),
        )
        .unwrap()
    }

    fn es384_jwk(kid: &str) -> Value {
        let point = es384_key().public_key().as_ref().to_vec();
        json!({"kty": "EC", "crv": "P-384", "kid": kid, "x": b64url(&point[1..49]), "y": b64url(&point[49..97])})
    }

    /// A token signed with `alg` (any of [`ALL_ALGS`]), with or without a kid.
    fn signed(alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = kid.into();
        }
        let input = format!(
            "{}.{}",
            b64url(&serde_json::to_vec(&header).unwrap()),
            b64url(&serde_json::to_vec(claims).unwrap())
        );
        let rng = SystemRandom::new();
        let rsa = |padding: &'static dyn ring::signature::RsaEncoding| {
            let key = rsa_key();
            let mut sig = vec![0; key.public().modulus_len()];
            key.sign(padding, &rng, input.as_bytes(), &mut sig).unwrap();
            sig
        };
        use ring::signature as sig;
        let signature = match alg {
            "RS256" => rsa(&sig::RSA_PKCS1_SHA256),
            "RS384" => rsa(&sig::RSA_PKCS1_SHA384),
            "RS512" => rsa(&sig::RSA_PKCS1_SHA512),
            "PS256" => rsa(&sig::RSA_PSS_SHA256),
            "PS384" => rsa(&sig::RSA_PSS_SHA384),
            "PS512" => rsa(&sig::RSA_PSS_SHA512),
            "ES256" => es_key()
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "ES384" => es384_key()
                .sign(&rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            "EdDSA" => ed_key().sign(input.as_bytes()).to_bytes().to_vec(),
            other => panic!("no signer for {other}"),
        };
        format!("{input}.{}", b64url(&signature))
    }

    /// A stage whose one provider accepts `algorithms` from the keys in `file`.
    fn jwks_algs(file: &Path, config: Value, algorithms: &[&str]) -> Jwks {
        let c = ctx(
            config,
            vec![
                json!({"id": "entra", "auth": {"method": METHOD, "issuer": ISS,
                "audience": "api://scimgate", "jwks": file, "algorithms": algorithms}}),
            ],
        );
        Jwks::build(c.deserialize().unwrap(), &c).unwrap()
    }

    #[test]
    fn every_supported_algorithm_verifies_with_its_key_type() {
        let dir = temp_dir("jwks-algs");
        let file = dir.join("jwks.json");
        // No `alg` on the keys: only the key type decides what fits.
        let mut rsa = rsa_jwk("rsa");
        rsa.as_object_mut().unwrap().remove("alg");
        write_jwks(
            &file,
            vec![rsa, es_jwk("p256"), es384_jwk("p384"), ed_jwk("ed")],
        );
        let j = jwks_algs(&file, json!({}), &ALL_ALGS);
        let kid_of = |alg: &str| match alg {
            "ES256" => "p256",
            "ES384" => "p384",
            "EdDSA" => "ed",
            _ => "rsa",
        };
        for alg in ALL_ALGS {
            let t = signed(alg, Some(kid_of(alg)), &claims(&format!("svc-{alg}")));
            let p = principal(j.authenticate(&bearer(&t, NOW)));
            assert_eq!(p.subject.as_str(), format!("svc-{alg}"), "{alg}");
            // Without a kid every key is tried; only the fitting one verifies.
            let t = signed(alg, None, &claims(&format!("nokid-{alg}")));
            principal(j.authenticate(&bearer(&t, NOW)));
            // The same signature under a neighbouring algorithm name fails.
            let forged = {
                let good = signed(alg, Some(kid_of(alg)), &claims(&format!("x-{alg}")));
                let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
                let other = match alg {
                    "RS256" => "PS256",
                    "PS256" => "RS256",
                    "RS384" => "RS512",
                    "RS512" => "RS384",
                    "PS384" => "PS512",
                    "PS512" => "PS384",
                    "ES256" => "ES384",
                    "ES384" => "ES256",
                    _ => "ES256",
                };
                parts[0] = b64url(
                    &serde_json::to_vec(&json!({"alg": other, "typ": "JWT", "kid": kid_of(alg)}))
                        .unwrap(),
                );
                parts.join(".")
            };
            assert!(
                matches!(
                    j.authenticate(&bearer(&forged, NOW)),
                    AuthOutcome::Rejected(_)
                ),
                "{alg}"
            );
        }
        // Each algorithm can be allowed on its own, and only then.
        for alg in ALL_ALGS {
            let only = jwks_algs(&file, json!({}), &[alg]);
            principal(only.authenticate(&bearer(
                &signed(alg, Some(kid_of(alg)), &claims("solo")),
                NOW,
            )));
            let other = if alg == "EdDSA" { "RS256" } else { "EdDSA" };
            let e = rejected(only.authenticate(&bearer(
                &signed(other, Some(kid_of(other)), &claims("solo")),
                NOW,
            )));
            assert!(e.message.contains("algorithm"), "{alg}: {}", e.message);
        }
    }

    #[test]
    fn a_key_must_fit_the_algorithm_and_its_own_alg() {
        let dir = temp_dir("jwks-fit");
        let file = dir.join("jwks.json");
        // Every key under one kid: the algorithm picks the one that fits.
        let mut keys = vec![es_jwk("k"), es384_jwk("k"), ed_jwk("k"), rsa_jwk("k")];
        for k in &mut keys {
            k.as_object_mut().unwrap().remove("alg");
        }
        write_jwks(&file, keys);
        let j = jwks_algs(&file, json!({}), &ALL_ALGS);
        for alg in ALL_ALGS {
            principal(j.authenticate(&bearer(&signed(alg, Some("k"), &claims(alg)), NOW)));
        }
        // A key that names its `alg` serves that algorithm only.
        let mut rs384 = rsa_jwk("r");
        rs384["alg"] = "RS384".into();
        write_jwks(&file, vec![rs384]);
        let j = jwks_algs(&file, json!({}), &ALL_ALGS);
        principal(j.authenticate(&bearer(&signed("RS384", Some("r"), &claims("a")), NOW)));
        let e = rejected(j.authenticate(&bearer(&signed("RS256", Some("r"), &claims("b")), NOW)));
        assert!(e.message.contains("unknown"), "{}", e.message);
        // An Ed25519 key never serves an EC algorithm, and a P-256 key never ES384.
        write_jwks(&file, vec![ed_jwk("e"), es_jwk("p")]);
        let j = jwks_algs(&file, json!({}), &ALL_ALGS);
        let e = rejected(j.authenticate(&bearer(&signed("ES384", Some("p"), &claims("c")), NOW)));
        assert!(e.message.contains("unknown"), "{}", e.message);
        let e = rejected(j.authenticate(&bearer(&signed("ES256", Some("e"), &claims("d")), NOW)));
        assert!(e.message.contains("unknown"), "{}", e.message);
    }

    #[test]
    fn malformed_keys_are_skipped() {
        let dir = temp_dir("jwks-skip");
        let file = dir.join("jwks.json");
        let good = es_jwk("ok");
        let short = |member: &str| {
            let mut k = es_jwk("bad");
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k[member].as_str().unwrap())
                .unwrap();
            k[member] = b64url(&bytes[..31]).into();
            k
        };
        let mut ed_short = ed_jwk("bad-ed");
        ed_short["x"] = b64url(&[1u8; 31]).into();
        let mut p256_as_384 = es_jwk("bad-crv");
        p256_as_384["crv"] = "P-384".into();
        let mut p384_as_256 = es384_jwk("bad-crv2");
        p384_as_256["crv"] = "P-256".into();
        let mut enc = ed_jwk("enc");
        enc["use"] = "enc".into();
        let mut sig = ed_jwk("sig");
        sig["use"] = "sig".into();
        write_jwks(
            &file,
            vec![
                good,
                short("x"),
                short("y"),
                ed_short,
                p256_as_384,
                p384_as_256,
                enc,
                sig,
                json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
                json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
                json!("not an object"),
            ],
        );
        let keys = parse_jwks(&std::fs::read(&file).unwrap()).unwrap();
        let kids: Vec<&str> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["ok", "sig"]);
        assert!(matches!(keys[0].key, PublicKey::P256(ref p) if p.len() == 65 && p[0] == 4));
        assert!(matches!(keys[1].key, PublicKey::Ed25519(ref x) if x.len() == 32));
        let p384 = parse_jwks(&serde_json::to_vec(&json!({"keys": [es384_jwk("p384")]})).unwrap())
            .unwrap();
        assert!(matches!(p384[0].key, PublicKey::P384(ref p) if p.len() == 97 && p[0] == 4));
        let rsa =
            parse_jwks(&serde_json::to_vec(&json!({"keys": [rsa_jwk("r")]})).unwrap()).unwrap();
        assert!(matches!(rsa[0].key, PublicKey::Rsa { .. }));
        assert_eq!(rsa[0].alg.as_deref(), Some("RS256"));
        assert!(parse_jwks(b"{}").unwrap_err().contains("keys"));
        assert!(parse_jwks(b"nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn time_checks_are_exact_at_both_leeway_edges() {
        let dir = temp_dir("jwks-edges");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1")]);
        let (exp, nbf) = (1_000_000, 400_000);
        let j = jwks_with(&file, json!({"leeway": "30s"}), None);
        assert_eq!(j.check_times(exp, nbf, exp + 29_999), Ok(()));
        assert_eq!(
            j.check_times(exp, nbf, exp + 30_000),
            Err("the token expired".to_string())
        );
        assert_eq!(j.check_times(exp, nbf, nbf - 30_000), Ok(()));
        assert_eq!(
            j.check_times(exp, nbf, nbf - 30_001),
            Err("the token is not valid yet".to_string())
        );
        let j = jwks_with(&file, json!({"leeway": "0s"}), None);
        assert!(j.check_times(exp, nbf, exp).is_err());
        assert_eq!(j.check_times(exp, nbf, exp - 1), Ok(()));
        assert_eq!(j.check_times(exp, nbf, nbf), Ok(()));
        assert!(j.check_times(exp, nbf, nbf - 1).is_err());
        // A token without nbf is valid at any time before its exp, even a
        // request clock far in the past.
        let mut c = claims("svc-1");
        c.as_object_mut().unwrap().remove("nbf");
        c["exp"] = 0.into();
        principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &c), -10_000_000)));
    }

    #[test]
    fn defaults() {
        let dir = temp_dir("jwks-defaults");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1")]);
        let j = jwks_with(&file, json!({}), None);
        assert_eq!(j.refresh_ms, 600_000);
        assert_eq!(j.cooldown_ms, 60_000);
        assert_eq!(j.leeway_ms, 30_000);
        let config: JwksConfig = ctx(json!({}), vec![]).deserialize().unwrap();
        assert_eq!(config.fetch_timeout.0, 5);
        assert_eq!(config.cache_size, 10_000);
        assert_eq!(j.challenge().as_deref(), Some("Bearer realm=\"scimgate\""));
        for sub in ["a", "b", "c"] {
            principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims(sub)), NOW)));
        }
        assert_eq!(j.cache.lock().unwrap().len(), 3);
        // Served from the cache, still time-checked: expired is refused.
        let t = token("EdDSA", "ed1", &claims("a"));
        principal(j.authenticate(&bearer(&t, NOW)));
        let e = rejected(j.authenticate(&bearer(&t, NOW + 3_600_000 + 30_000)));
        assert!(e.message.contains("expired"), "{}", e.message);
    }

    #[test]
    fn known_keys_are_reread_only_when_stale() {
        let dir = temp_dir("jwks-stale");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1"), rsa_jwk("rsa1")]);
        let j = jwks_with(
            &file,
            json!({"unknown_kid_cooldown": "60s", "refresh": "10m"}),
            None,
        );
        principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("s0")), NOW)));
        // The file drops ed1; past the cooldown but before the refresh, a
        // known kid does not cause a re-read.
        write_jwks(&file, vec![rsa_jwk("rsa1")]);
        principal(j.authenticate(&bearer(
            &token("EdDSA", "ed1", &claims("s1")),
            NOW + 120_000,
        )));
        principal(j.authenticate(&bearer(
            &token("EdDSA", "ed1", &claims("s2")),
            NOW + 599_999,
        )));
        // At the refresh the file is read again.
        let e = rejected(j.authenticate(&bearer(
            &token("EdDSA", "ed1", &claims("s3")),
            NOW + 600_000,
        )));
        assert!(e.message.contains("unknown"), "{}", e.message);
    }

    #[test]
    fn a_failed_reread_keeps_the_previous_keys() {
        let dir = temp_dir("jwks-keep");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1")]);
        let j = jwks_with(&file, json!({"refresh": "10m"}), None);
        principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("s0")), NOW)));
        std::fs::write(&file, b"{ broken").unwrap();
        principal(j.authenticate(&bearer(
            &token("EdDSA", "ed1", &claims("s1")),
            NOW + 600_000,
        )));
        std::fs::remove_file(&file).unwrap();
        principal(j.authenticate(&bearer(
            &token("EdDSA", "ed1", &claims("s2")),
            NOW + 1_200_000,
        )));
    }

    #[test]
    fn a_first_fetch_that_fails_says_why() {
        let body = serde_json::to_string(&json!({"keys": [ed_jwk("ed1")]})).unwrap();
        let url = serve_once_per_request(body, "503 Service Unavailable");
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "side", "auth": {"method": METHOD, "issuer": ISS,
                "audience": "api://scimgate", "jwks": url}}),
            ],
        );
        let j = Jwks::build(c.deserialize().unwrap(), &c).unwrap();
        let e = rejected(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("s")), NOW)));
        assert!(
            e.message
                .starts_with("the issuer's keys are unavailable: GET "),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_token_without_kid_never_forces_a_reread() {
        let dir = temp_dir("jwks-nokid");
        let file = dir.join("jwks.json");
        write_jwks(&file, vec![ed_jwk("ed1")]);
        let j = jwks_algs(
            &file,
            json!({"unknown_kid_cooldown": "60s", "refresh": "1h"}),
            &ALL_ALGS,
        );
        principal(j.authenticate(&bearer(&token("EdDSA", "ed1", &claims("s0")), NOW)));
        // No kid and no fitting key: refused at once, without a re-read
        // (which would also start a cooldown).
        let e =
            rejected(j.authenticate(&bearer(&signed("ES384", None, &claims("s1")), NOW + 61_000)));
        assert!(e.message.contains("unknown"), "{}", e.message);
        // So a rotated key is fetched on its first use right after.
        write_jwks(&file, vec![ed_jwk("ed1"), es384_jwk("new")]);
        principal(j.authenticate(&bearer(
            &signed("ES384", Some("new"), &claims("s2")),
            NOW + 62_000,
        )));
    }

    #[test]
    fn loopback_hosts_take_no_user_info_or_escapes() {
        for refused in [
            "http://user@localhost/keys",
            "http://localhost%2F@evil/keys",
            "http://[::1]@evil/keys",
            "http://[::1%25lo]/keys",
            "http://[::1]x/keys",
            "http://[::1/keys",
            "http://localhost:x/keys",
        ] {
            assert!(!is_loopback_http(refused), "{refused}");
        }
        assert!(valid_port(""));
        assert!(valid_port(":1"));
        assert!(valid_port(":65535"));
        assert!(!valid_port(":"));
        assert!(!valid_port(":65536"));
        assert!(!valid_port("1"));
    }

    #[test]
    fn provider_config_problems_are_reported_together() {
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "a", "auth": {"method": METHOD, "issuer": ISS}}),
                json!({"id": "b", "auth": {"method": METHOD, "issuer": ISS, "audience": "x", "jwks": "http://insecure/keys"}}),
                json!({"id": "c", "auth": {"method": METHOD, "issuer": ISS, "audience": "x", "jwks": "/nonexistent/jwks.json", "algorithms": ["HS256"]}}),
            ],
        );
        let e = Jwks::build(c.deserialize().unwrap(), &c).err().unwrap();
        for needle in [
            "auth.audience",
            "auth.jwks is required",
            "https://",
            "HS256",
            "/nonexistent/jwks.json",
        ] {
            assert!(e.message.contains(needle), "{needle}: {}", e.message);
        }
    }
}
