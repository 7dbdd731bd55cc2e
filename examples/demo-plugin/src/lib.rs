//! `demo`: a plugin library written the way a third-party author would, against
//! `scimgate-abi` only. It has one component of each kind for the end-to-end
//! tests (an API-key authenticator, a header-requiring policy, a tagging
//! profile, an echo endpoint that can panic or sleep on demand) and no-op
//! components for measuring the cost of the pipeline itself.
//!
//! Every component kind can be made to panic, so that the host's containment
//! is tested through a real `.so`: the query parameter `panic` names the
//! call (`authenticate` in `api-key`, `check` in `require-header`, `inbound`
//! and `outbound` in `tag`, `1` in `echo`), and `demo/allow` panics in
//! validation (`panic_in_validate = true`) or creation (`panic_in_create = true`).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use scimgate_abi::sdk::{Authenticator, Component, Endpoint, Policy, Profile};
use scimgate_abi::{
    AuthOutcome, Caller, PluginError, PolicyDecision, Principal, Request, Response,
};
use serde::Deserialize;
use serde_json::{json, Value};

fn components() -> Vec<Component> {
    vec![
        Component::authenticator_with_config("api-key", "authenticates `X-Api-Key` (or another header) against a key → provider map; `?panic=authenticate` panics", |c: ApiKeyConfig, _| Ok(ApiKey(c)))
            .with_example(json!({"header": "x-api-key", "keys": {"k-123": "demo-provider"}})),
        Component::policy_with_config("require-header", "denies requests without a given header; `?panic=check` panics", |c: RequireHeaderConfig, _| Ok(RequireHeader(c)))
            .with_example(json!({"header": "x-tenant", "status": 403})),
        Component::profile_with_config("tag", "marks requests and responses so tests can see the profile ran; `?panic=inbound` / `?panic=outbound` panics", |c: TagConfig, _| Ok(Tag(c)))
            .with_example(json!({"tag": "demo"})),
        Component::endpoint_with_config("echo", "answers with what it received; `?panic=1` panics, `?sleep_ms=N` sleeps, `?log=TEXT` logs TEXT as is", |_: NoConfig, _| Ok(Echo))
            .with_example(json!({})),
        Component::authenticator_with_config("anyone", "no-op authenticator: everyone is the configured provider", |c: AnyoneConfig, _| Ok(Anyone(Principal::new(&c.provider, &c.provider, "anyone"))))
            .with_example(json!({"provider": "demo-provider"})),
        // `panic_in_validate = true` makes validation panic: the host must
        // contain it (conformance tests).
        // `panic_in_create = true` makes creation panic (host containment tests).
        Component::policy_with_config("allow", "no-op policy", |c: AllowConfig, _| {
            if c.panic_in_create {
                panic!("creation panic requested by the config");
            }
            Ok(Allow)
        })
            .with_validate(|ctx| {
                if ctx.config.get("panic_in_validate") == Some(&Value::Bool(true)) {
                    panic!("validation panic requested by the config");
                }
                Vec::new()
            })
            .with_example(json!({})),
        Component::profile_with_config("noop", "no-op profile", |_: NoConfig, _| Ok(Noop))
            .with_example(json!({})),
        Component::endpoint_with_config("empty", "no-op endpoint: 204", |_: NoConfig, _| Ok(Empty))
            .with_example(json!({})),
    ]
}

/// The config of components that take none: any key is a mistake.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AllowConfig {
    /// Panic in validation (for the host's containment tests).
    #[serde(default)]
    #[allow(dead_code)]
    panic_in_validate: bool,
    /// Panic in creation (for the host's containment tests).
    #[serde(default)]
    panic_in_create: bool,
}

/// Panics when the request's `panic` query parameter names `call`: the
/// host must turn it into one 500 and keep serving.
fn panic_if_asked(req: &Request, call: &str) {
    if req.query_param("panic").as_deref() == Some(call) {
        panic!("panic in {call} requested by the client");
    }
}

scimgate_abi::export_plugin!("demo", components);

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ApiKeyConfig {
    #[serde(default = "default_key_header")]
    header: String,
    /// key → provider id
    keys: BTreeMap<String, String>,
}

fn default_key_header() -> String {
    "x-api-key".into()
}

struct ApiKey(ApiKeyConfig);

impl Authenticator for ApiKey {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        panic_if_asked(req, "authenticate");
        let Some(key) = req.header(&self.0.header) else {
            return AuthOutcome::NotMine;
        };
        match self.0.keys.get(key) {
            Some(provider) => {
                AuthOutcome::Authenticated(Principal::new(provider, provider, "api-key"))
            }
            None => AuthOutcome::Rejected(PluginError::new(401, "unknown API key")),
        }
    }

    fn challenge(&self) -> Option<String> {
        Some(format!("ApiKey header=\"{}\"", self.0.header))
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RequireHeaderConfig {
    header: String,
    #[serde(default = "default_deny_status")]
    status: u16,
}

fn default_deny_status() -> u16 {
    403
}

struct RequireHeader(RequireHeaderConfig);

impl Policy for RequireHeader {
    fn check(&self, req: &Request, _caller: Caller<'_>) -> PolicyDecision {
        panic_if_asked(req, "check");
        if req.header(&self.0.header).is_some() {
            PolicyDecision::Allow
        } else {
            PolicyDecision::Deny(PluginError::new(
                self.0.status,
                format!("the request lacks the `{}` header", self.0.header),
            ))
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct TagConfig {
    tag: String,
    /// Rewrites the request path (a profile may not: the host refuses the
    /// request, which the end-to-end tests check).
    #[serde(default)]
    rewrite_path: Option<String>,
}

struct Tag(TagConfig);

impl Profile for Tag {
    fn inbound(&self, req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
        panic_if_asked(req, "inbound");
        let seen = req.header("x-demo-profile").map(str::to_string);
        let value = match seen {
            Some(prev) => format!("{prev},{}", self.0.tag),
            None => self.0.tag.clone(),
        };
        req.set_header("x-demo-profile", &value);
        if let Some(path) = &self.0.rewrite_path {
            req.path = path.as_str().into();
        }
        tracing::debug!(tag = %self.0.tag, "demo profile tagged a request");
        Ok(())
    }

    fn outbound(
        &self,
        req: &Request,
        _caller: Caller<'_>,
        resp: &mut Response,
    ) -> Result<(), PluginError> {
        panic_if_asked(req, "outbound");
        let value = match resp.header("x-demo-outbound") {
            Some(prev) => format!("{prev},{}", self.0.tag),
            None => self.0.tag.clone(),
        };
        resp.set_header("x-demo-outbound", &value);
        if let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&resp.body) {
            body.insert("profiled".into(), Value::String(value));
            resp.body = serde_json::to_vec(&body).unwrap_or_default().into();
        }
        Ok(())
    }
}

struct Echo;

impl Endpoint for Echo {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        if req.query_param("panic").as_deref() == Some("1") {
            panic!("panic requested by the client");
        }
        if let Some(ms) = req
            .query_param("sleep_ms")
            .and_then(|v| v.parse::<u64>().ok())
        {
            std::thread::sleep(Duration::from_millis(ms.min(10_000)));
        }
        if let Some(text) = req.query_param("log") {
            // Logs client text as is, as a careless plugin would: the host's
            // formatter must keep it from forging a line.
            tracing::info!("demo echo logged: {text}");
        }
        if let Some(status) = req.query_param("fail").and_then(|v| v.parse::<u16>().ok()) {
            return Err(PluginError::new(status, "failure requested by the client")
                .with_code("invalidValue"));
        }
        let headers: BTreeMap<&str, &str> = req
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        let principal = caller.principal().map(|p| {
            json!({"provider_id": p.provider_id.as_str(), "client_id": p.client_id.as_str(), "auth_method": p.auth_method.as_str()})
        });
        let body = json!({
            "method": req.method.as_str(),
            "path": req.path.as_str(),
            "query": req.query.as_str(),
            "mount": req.mount.as_str(),
            "base_url": req.base_url.as_str(),
            "client_ip": req.client_ip.as_str(),
            "request_id": req.request_id.as_str(),
            "headers": headers,
            "attributes": req
                .attributes
                .iter()
                .map(|a| [a.name.as_str(), a.value.as_str()])
                .collect::<Vec<_>>(),
            "body": String::from_utf8_lossy(&req.body),
            "principal": principal,
            "provider": caller.provider().map(|p| p.id.as_str()),
        });
        Ok(Response::json(200, "application/json", &body))
    }
}

struct Anyone(Principal);

impl Authenticator for Anyone {
    fn authenticate(&self, _req: &Request) -> AuthOutcome {
        AuthOutcome::Authenticated(self.0.clone())
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct AnyoneConfig {
    provider: String,
}

struct Allow;

impl Policy for Allow {
    fn check(&self, _req: &Request, _caller: Caller<'_>) -> PolicyDecision {
        PolicyDecision::Allow
    }
}

struct Noop;

impl Profile for Noop {}

struct Empty;

impl Endpoint for Empty {
    fn handle(&self, _req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
        Ok(Response::new(204))
    }
}
