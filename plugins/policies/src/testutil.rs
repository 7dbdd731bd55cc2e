//! Hand-built requests, principals and provider records for the unit tests.

use scimgate_abi::sdk::CreateContext;
use scimgate_abi::std_types::{ROption, RString, RVec};
use scimgate_abi::{
    Caller, ErrorStyle, Header, PluginError, PolicyDecision, Principal, ProviderRecord, Request,
};

/// 2026-06-01T00:00:00Z, in milliseconds.
pub const NOW_MS: i64 = 1_780_272_000_000;

/// A SCIM request from 127.0.0.1 at [`NOW_MS`].
pub fn scim(method: &str, path: &str) -> Request {
    Request {
        method: method.into(),
        path: path.into(),
        query: RString::new(),
        headers: RVec::new(),
        body: RVec::new(),
        peer_addr: "127.0.0.1:40000".into(),
        client_ip: "127.0.0.1".into(),
        request_id: "req-1".into(),
        mount: "/iso/scim/v2".into(),
        base_url: "https://vault.example.com/iso/scim/v2".into(),
        received_at_unix_ms: NOW_MS,
        error_style: ErrorStyle::Scim,
        attributes: RVec::new(),
    }
}

/// A `POST` to the token route (OAuth error style).
pub fn token_request() -> Request {
    let mut req = scim("POST", "");
    req.mount = "/iso/oauth2/token".into();
    req.error_style = ErrorStyle::OAuth;
    req
}

pub fn with_ip(mut req: Request, ip: &str) -> Request {
    req.client_ip = ip.into();
    req
}

pub fn with_header(mut req: Request, name: &str, value: &str) -> Request {
    req.headers.push(Header::new(name, value));
    req
}

/// An active, read-write provider without restrictions.
pub fn provider(id: &str) -> ProviderRecord {
    ProviderRecord {
        id: id.into(),
        name: id.into(),
        active: true,
        protocol: "scim2".into(),
        description: RString::new(),
        tags: RVec::new(),
        auth_method: "oauth2-client-credentials".into(),
        client_id: id.into(),
        valid_from: ROption::RNone,
        valid_until: ROption::RNone,
        allowed_ips: RVec::new(),
        allowed_referrers: RVec::new(),
        access: "read-write".into(),
        scopes: RVec::new(),
        auth_json: "{}".into(),
    }
}

pub fn strings(items: &[&str]) -> RVec<RString> {
    items.iter().map(|s| RString::from(*s)).collect()
}

pub fn principal(provider_id: &str, scopes: &[&str]) -> Principal {
    let mut p = Principal::new(provider_id, provider_id, "oauth2-client-credentials");
    p.scopes = strings(scopes);
    p
}

pub fn caller<'a>(principal: &'a Principal, provider: &'a ProviderRecord) -> Caller<'a> {
    Caller {
        principal: ROption::RSome(principal),
        provider: ROption::RSome(provider),
    }
}

/// A create context with this stage config and no providers.
pub fn ctx(config: serde_json::Value) -> CreateContext {
    ctx_with_providers(config, Vec::new())
}

pub fn ctx_with_providers(
    config: serde_json::Value,
    providers: Vec<serde_json::Value>,
) -> CreateContext {
    CreateContext {
        stage: "test".into(),
        config,
        providers,
        data_dir: std::env::temp_dir(),
        server: serde_json::Value::Null,
        host: None,
    }
}

#[track_caller]
pub fn assert_allow(decision: PolicyDecision) {
    if let PolicyDecision::Deny(err) = decision {
        panic!(
            "expected Allow, got Deny({} {:?}: {})",
            err.status, err.code, err.message
        );
    }
}

#[track_caller]
pub fn deny(decision: PolicyDecision) -> PluginError {
    match decision {
        PolicyDecision::Deny(err) => err,
        PolicyDecision::Allow => panic!("expected Deny, got Allow"),
    }
}

pub fn header_of<'a>(err: &'a PluginError, name: &str) -> Option<&'a str> {
    err.headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}
