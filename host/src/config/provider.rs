//! `[[provider]]` and `[provider.auth]`: the generic provider record — who
//! may call in and under which rules (validity, addresses, referrers,
//! access, scopes). How a provider proves who it is belongs to the
//! authenticator that declares its `method`: the method's own keys are kept
//! here with their places and checked by [`super::methods`] once the
//! plugins are loaded.

use std::collections::HashMap;
use std::ops::Range;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::check::{did_you_mean, span_or_empty, Checker};
use super::diagnostic::Diagnostic;
use super::tree::{Kind, Table, Val};
use super::{Access, MethodKey, ProviderAuth, ProviderConfig};
use scimgate_abi::declare::GENERIC_AUTH_KEYS;

const PROVIDER_KEYS: &[&str] = &[
    "id",
    "name",
    "active",
    "protocol",
    "description",
    "tags",
    "auth",
];
/// A provider and the places the cross-provider checks point at.
pub(crate) struct Parsed {
    pub config: ProviderConfig,
    pub client_id_span: Option<Range<usize>>,
}

/// One `[[provider]]`; `None` when its id or auth method is unusable (already reported).
pub(crate) fn provider(ck: &mut Checker, table: &Table) -> Option<Parsed> {
    ck.unknown_keys(table, "provider", PROVIDER_KEYS);
    let id = ck.req_str(table, "id", "provider");
    if let Some((text, val)) = id {
        if text.is_empty()
            || !text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            ck.push(
                Diagnostic::error(
                    format!("invalid provider id {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("use letters, digits, `.`, `_` and `-`"),
            );
        }
    }
    let name = ck
        .opt_str(table, "name", "provider")
        .map(|(s, _)| s.to_string());
    let active = match table.get("active") {
        Some(e) => ck.bool(&e.val, "provider.active").unwrap_or(true),
        None => true,
    };
    let protocol = match ck.opt_str(table, "protocol", "provider") {
        Some((text, val)) => {
            if text.is_empty()
                || !text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
            {
                ck.push(
                    Diagnostic::error(
                        format!("invalid protocol {}", val.shown()),
                        val.span.clone(),
                    )
                    .with_label("e.g. \"scim2\""),
                );
            }
            text.to_string()
        }
        None => "scim2".to_string(),
    };
    let description = ck
        .opt_str(table, "description", "provider")
        .map_or_else(String::new, |(s, _)| s.to_string());
    let tags = match table.get("tags") {
        Some(e) => ck
            .str_array(&e.val, "provider.tags")
            .into_iter()
            .map(|(s, _)| s.to_string())
            .collect(),
        None => Vec::new(),
    };
    let auth = ck
        .required(table, "auth", "provider")
        .and_then(|e| ck.table(&e.val, "provider.auth"))
        .and_then(|t| auth(ck, t));
    let (id, id_val) = id?;
    let (auth, client_id_span) = auth?;
    Some(Parsed {
        config: ProviderConfig {
            id: id.to_string(),
            name: name.unwrap_or_else(|| id.to_string()),
            active,
            protocol,
            description,
            tags,
            auth,
            span: span_or_empty(&id_val.span),
        },
        client_id_span,
    })
}

/// Duplicate provider ids, client ids and static tokens.
pub(crate) fn check_providers(ck: &mut Checker, providers: &[Parsed]) {
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut client_ids: HashMap<&str, usize> = HashMap::new();
    for p in providers {
        let c = &p.config;
        if let Some(first) = ids.get(c.id.as_str()) {
            ck.push(
                Diagnostic::error(
                    format!("duplicate provider id `{}`", c.id),
                    Some(c.span.clone()),
                )
                .with_label("used again here")
                .with_help(format!("first used on line {}", ck.line_of(*first))),
            );
        } else {
            ids.insert(&c.id, c.span.start);
        }
        if let (Some(client_id), Some(span)) = (&c.auth.client_id, &p.client_id_span) {
            if let Some(first) = client_ids.get(client_id.as_str()) {
                ck.push(
                    Diagnostic::error(
                        format!("duplicate client_id `{client_id}` (provider `{}`)", c.id),
                        Some(span.clone()),
                    )
                    .with_label("another provider already uses this client_id")
                    .with_help(format!(
                        "first used on line {}; each provider needs its own client_id",
                        ck.line_of(*first)
                    )),
                );
            } else {
                client_ids.insert(client_id, span.start);
            }
        }
    }
}

/// `[provider.auth]`, with the span of `client_id` for the duplicate check.
fn auth(ck: &mut Checker, table: &Table) -> Option<(ProviderAuth, Option<Range<usize>>)> {
    const PATH: &str = "provider.auth";
    let method = match ck.req_str(table, "method", PATH) {
        Some((text, val)) => {
            // The authenticator that declares the method decides the rest;
            // here only its form.
            let well_formed = !text.is_empty()
                && text.len() <= 64
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !well_formed {
                ck.push(
                    Diagnostic::error(
                        format!("invalid authentication method {}", val.shown()),
                        val.span.clone(),
                    )
                    .with_label("a method name is lower-case letters, digits and `-`")
                    .with_help("e.g. \"oauth2-client-credentials\", \"static-bearer\", \"basic\", \"jwks\""),
                );
                None
            } else {
                Some((text.to_string(), val.span.clone()))
            }
        }
        None => None,
    };

    // Keys of the method: kept as written (after `${VAR}` expansion), with
    // their places, for the method's authenticator to check.
    let mut method_keys = Vec::new();
    for entry in &table.entries {
        if GENERIC_AUTH_KEYS.contains(&entry.key.as_str()) {
            continue;
        }
        let value = entry.val.to_json(&mut ck.diags);
        method_keys.push(MethodKey {
            key: entry.key.clone(),
            key_span: entry.key_span.clone(),
            value,
            value_span: entry.val.span.clone(),
        });
    }

    let valid_from = opt_datetime(ck, table, "valid_from");
    let valid_until = opt_datetime(ck, table, "valid_until");
    if let (Some((from, from_val)), Some((until, until_val))) = (&valid_from, &valid_until) {
        if until <= from {
            ck.push(
                Diagnostic::error(
                    "`valid_until` is not after `valid_from`",
                    until_val.span.clone(),
                )
                .with_label("the validity window is empty")
                .with_help(format!(
                    "valid_from is on line {}; valid_until must be later",
                    ck.line_of(from_val.span.as_ref().map_or(0, |s| s.start))
                )),
            );
        }
    }

    let mut allowed_ips = Vec::new();
    if let Some(e) = table.get("allowed_ips") {
        for (text, val) in ck.str_array(&e.val, "provider.auth.allowed_ips") {
            // The grammar the allowed-ips policy and the authenticators
            // decide with, not a second one.
            if scimgate_abi::net::parse_entry(text).is_ok() {
                allowed_ips.push(text.to_string());
            } else {
                ck.push(
                    Diagnostic::error(
                        format!("invalid IP address or CIDR {}", val.shown()),
                        val.span.clone(),
                    )
                    .with_label(
                        "expected e.g. \"10.20.0.0/16\", \"192.0.2.7\", \"2001:db8::/32\" or \"*\"",
                    ),
                );
            }
        }
    }
    let mut allowed_referrers = Vec::new();
    if let Some(e) = table.get("allowed_referrers") {
        for (text, val) in ck.str_array(&e.val, "provider.auth.allowed_referrers") {
            // The grammar the allowed-referrers policy matches with.
            match scimgate_abi::referrer::parse_pattern(text) {
                Ok(_) => allowed_referrers.push(text.to_string()),
                Err(why) => ck.push(
                    Diagnostic::error(format!("invalid allowed referrer {}", val.shown()), val.span.clone())
                        .with_label(why)
                        .with_help("write \"*\", an origin like \"https://iga.example.com\" or \"https://*.example.com:8443\", or a host like \"*.example.com\""),
                ),
            }
        }
    }
    let access = match ck.opt_str(table, "access", PATH) {
        Some(("read-only", _)) => Access::ReadOnly,
        Some(("read-write", _)) | None => Access::ReadWrite,
        Some((text, val)) => {
            let mut help = "access is \"read-only\" or \"read-write\"".to_string();
            if let Some(close) = did_you_mean(text, ["read-only", "read-write"]) {
                help = format!("did you mean `{close}`? {help}");
            }
            ck.push(
                Diagnostic::error(
                    format!("unknown access mode {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("unknown access mode")
                .with_help(help),
            );
            Access::ReadWrite
        }
    };
    let mut scopes = Vec::new();
    if let Some(e) = table.get("scopes") {
        for (text, val) in ck.str_array(&e.val, "provider.auth.scopes") {
            // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E, at least one.
            if !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
            {
                scopes.push(text.to_string());
            } else {
                ck.push(
                    Diagnostic::error(format!("invalid scope {}", val.shown()), val.span.clone())
                        .with_label("a scope is one word of printable ASCII, no `\"` or `\\`"),
                );
            }
        }
    }

    let (method, method_span) = method?;
    let mut client_id = None;
    let mut client_id_span = None;
    // Optional for every method (the method's declaration may require it):
    // it names the client in principals and audit events.
    if table.get("client_id").is_some() {
        if let Some((text, val)) = ck.req_str(table, "client_id", PATH) {
            if text.is_empty() || text.chars().any(|c| c.is_control()) {
                ck.push(
                    Diagnostic::error("empty or invalid `client_id`", val.span.clone())
                        .with_label("expected a client id"),
                );
            }
            client_id = Some(text.to_string());
            client_id_span = val.span.clone();
        }
    }

    let auth = ProviderAuth {
        method,
        method_span,
        client_id,
        valid_from: valid_from.map(|(t, _)| t),
        valid_until: valid_until.map(|(t, _)| t),
        allowed_ips,
        allowed_referrers,
        access,
        scopes,
        method_keys,
        header_span: table.header_span.clone(),
        table: serde_json::Value::Object(serde_json::Map::new()),
    };
    Some((auth, client_id_span))
}

/// A TOML offset datetime or an RFC 3339 string.
fn opt_datetime<'t>(
    ck: &mut Checker,
    table: &'t Table,
    key: &str,
) -> Option<(OffsetDateTime, &'t Val)> {
    let val = &table.get(key)?.val;
    let parsed = match &val.kind {
        Kind::Datetime(d) if d.date.is_some() && d.time.is_some() && d.offset.is_some() => {
            OffsetDateTime::parse(&d.to_string(), &Rfc3339).ok()
        }
        Kind::Datetime(_) => {
            ck.push(
                Diagnostic::error(
                    format!("`{key}` needs a date, a time and an offset"),
                    val.span.clone(),
                )
                .with_label("missing offset")
                .with_help("e.g. 2026-01-01T00:00:00Z or 2026-01-01T00:00:00+01:00"),
            );
            return None;
        }
        Kind::Str(s) => OffsetDateTime::parse(s, &Rfc3339).ok(),
        _ => {
            ck.wrong_type(val, &format!("provider.auth.{key}"), "a datetime");
            return None;
        }
    };
    if parsed.is_none() {
        ck.push(
            Diagnostic::error(format!("invalid `{key}` {}", val.shown()), val.span.clone())
                .with_label("expected an RFC 3339 datetime")
                .with_help("e.g. 2026-01-01T00:00:00Z"),
        );
    }
    parsed.map(|t| (t, val))
}
