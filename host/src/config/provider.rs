//! `[[provider]]` and `[provider.auth]`: who may call in, how they prove it,
//! and under which rules. Plaintext secrets are hashed here and dropped.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::check::{did_you_mean, span_or_empty, unknown_key, Checker};
use super::diagnostic::Diagnostic;
use super::tree::{Kind, Table, Val};
use super::{Access, AuthMethod, ProviderAuth, ProviderConfig};

/// `sha256:<lowercase hex>` of a secret, the form stored in `*_hash` keys.
pub fn sha256_secret(secret: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(secret.as_bytes())))
}

const PROVIDER_KEYS: &[&str] = &[
    "id",
    "name",
    "active",
    "protocol",
    "description",
    "tags",
    "auth",
];
const COMMON_AUTH_KEYS: &[&str] = &[
    "method",
    "client_id",
    "valid_from",
    "valid_until",
    "allowed_ips",
    "allowed_referrers",
    "access",
    "scopes",
];
const JWS_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn method_keys(method: AuthMethod) -> &'static [&'static str] {
    match method {
        AuthMethod::OAuth2ClientCredentials => &["client_secret_hash", "client_secret"],
        AuthMethod::StaticBearer => &["token_hash", "token"],
        AuthMethod::Basic => &["username", "password_hash", "password"],
        AuthMethod::Jwks => &[
            "issuer",
            "audience",
            "jwks",
            "subject_claim",
            "subject",
            "algorithms",
        ],
    }
}

/// A provider and the places the cross-provider checks point at.
pub(crate) struct Parsed {
    pub config: ProviderConfig,
    pub client_id_span: Option<Range<usize>>,
}

/// One `[[provider]]`; `None` when its id or auth method is unusable (already reported).
pub(crate) fn provider(ck: &mut Checker, table: &Table, base: Option<&Path>) -> Option<Parsed> {
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
        .and_then(|t| auth(ck, t, base));
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
    let mut tokens: HashMap<&str, usize> = HashMap::new();
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
        if c.auth.method == AuthMethod::StaticBearer {
            if let Some(hash) = c.auth.table.get("token_hash").and_then(|h| h.as_str()) {
                if tokens.contains_key(hash) {
                    ck.push(
                        Diagnostic::error(
                            format!("provider `{}` has the same token as another provider", c.id),
                            Some(c.span.clone()),
                        )
                        .with_label("tokens must tell providers apart"),
                    );
                } else {
                    tokens.insert(hash, c.span.start);
                }
            }
        }
    }
}

/// `[provider.auth]`, with the span of `client_id` for the duplicate check.
fn auth(
    ck: &mut Checker,
    table: &Table,
    base: Option<&Path>,
) -> Option<(ProviderAuth, Option<Range<usize>>)> {
    const PATH: &str = "provider.auth";
    let method = match ck.req_str(table, "method", PATH) {
        Some((text, val)) => {
            let method = AuthMethod::from_name(text);
            if method.is_none() {
                let names: Vec<&str> = AuthMethod::ALL.iter().map(|m| m.as_str()).collect();
                let mut help = format!("methods: {}", names.join(", "));
                if let Some(close) = did_you_mean(text, names.iter().copied()) {
                    help = format!("did you mean `{close}`? {help}");
                }
                ck.push(
                    Diagnostic::error(
                        format!("unknown authentication method {}", val.shown()),
                        val.span.clone(),
                    )
                    .with_label("unknown method")
                    .with_help(help),
                );
            }
            method
        }
        None => None,
    };
    check_auth_keys(ck, table, method);

    let mut json = match Val::to_json(
        &Val {
            kind: Kind::Table(table.clone()),
            span: None,
            expanded: false,
        },
        &mut ck.diags,
    ) {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };

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
    for (key, value) in [("valid_from", &valid_from), ("valid_until", &valid_until)] {
        if let Some(text) = value.as_ref().and_then(|(t, _)| t.format(&Rfc3339).ok()) {
            json.insert(key.into(), text.into());
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
            match check_referrer(text) {
                Ok(()) => allowed_referrers.push(text.to_string()),
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

    let method = method?;
    let mut client_id = None;
    let mut client_id_span = None;
    // Required for client credentials; optional for the other methods, where
    // it names the client in principals and audit events.
    let client_id_entry =
        if method == AuthMethod::OAuth2ClientCredentials || table.get("client_id").is_some() {
            ck.req_str(table, "client_id", PATH)
        } else {
            None
        };
    if let Some((text, val)) = client_id_entry {
        if text.is_empty() || text.chars().any(|c| c.is_control()) {
            ck.push(
                Diagnostic::error("empty or invalid `client_id`", val.span.clone())
                    .with_label("expected a client id"),
            );
        }
        client_id = Some(text.to_string());
        client_id_span = val.span.clone();
    }
    match method {
        AuthMethod::OAuth2ClientCredentials => {
            secret(ck, table, "client_secret_hash", "client_secret", &mut json);
        }
        AuthMethod::StaticBearer => secret(ck, table, "token_hash", "token", &mut json),
        AuthMethod::Basic => {
            if let Some((text, val)) = ck.req_str(table, "username", PATH) {
                if text.is_empty() || text.contains(':') || text.chars().any(|c| c.is_control()) {
                    ck.push(
                        Diagnostic::error("invalid `username`", val.span.clone())
                            .with_label("must be non-empty, without `:` (RFC 7617)"),
                    );
                }
            }
            secret(ck, table, "password_hash", "password", &mut json);
        }
        AuthMethod::Jwks => jwks(ck, table, base, &mut json),
    }

    let auth = ProviderAuth {
        method,
        client_id,
        valid_from: valid_from.map(|(t, _)| t),
        valid_until: valid_until.map(|(t, _)| t),
        allowed_ips,
        allowed_referrers,
        access,
        scopes,
        table: serde_json::Value::Object(json),
    };
    Some((auth, client_id_span))
}

/// Unknown keys, and keys that belong to another method than the chosen one.
fn check_auth_keys(ck: &mut Checker, table: &Table, method: Option<AuthMethod>) {
    let mut allowed: Vec<&str> = COMMON_AUTH_KEYS.to_vec();
    match method {
        Some(m) => allowed.extend_from_slice(method_keys(m)),
        None => AuthMethod::ALL
            .iter()
            .for_each(|m| allowed.extend_from_slice(method_keys(*m))),
    }
    for entry in &table.entries {
        if allowed.contains(&entry.key.as_str()) {
            continue;
        }
        let owner = AuthMethod::ALL
            .into_iter()
            .find(|m| method_keys(*m).contains(&entry.key.as_str()));
        match (owner, method) {
            (Some(owner), Some(method)) => ck.push(
                Diagnostic::error(
                    format!("`{}` belongs to method {}", entry.key, owner.as_str()),
                    entry.key_span.clone(),
                )
                .with_label(format!("not a key of method {}", method.as_str()))
                .with_help(format!(
                    "method {} takes: {}",
                    method.as_str(),
                    method_keys(method).join(", ")
                )),
            ),
            _ => ck.push(unknown_key(entry, "provider.auth", &allowed)),
        }
    }
}

/// Exactly one of `hash_key` / `plain_key`; plaintext is replaced by its hash in `json`.
fn secret(
    ck: &mut Checker,
    table: &Table,
    hash_key: &str,
    plain_key: &str,
    json: &mut serde_json::Map<String, serde_json::Value>,
) {
    // Whatever happens below, plaintext never stays in the table.
    json.remove(plain_key);
    let hash = table.get(hash_key);
    let plain = table.get(plain_key);
    match (hash, plain) {
        (Some(_), Some(plain)) => ck.push(
            Diagnostic::error(
                format!("give either `{hash_key}` or `{plain_key}`, not both"),
                plain.key_span.clone(),
            )
            .with_label(format!("`{hash_key}` is set too")),
        ),
        (None, None) => ck.push(
            Diagnostic::error(
                format!("missing `{hash_key}` (or `{plain_key}`) in [provider.auth]"),
                table.header_span.clone(),
            )
            .with_label("no secret given")
            .with_help(format!(
                "`scimgate provider new` prints a `{hash_key}`; or write {plain_key} = \"${{VARIABLE}}\""
            )),
        ),
        (Some(hash), None) => {
            let path = format!("provider.auth.{hash_key}");
            if let Some(text) = ck.str(&hash.val, &path) {
                if !is_secret_hash(text) {
                    ck.push(
                        Diagnostic::error(format!("invalid `{hash_key}`"), hash.val.span.clone())
                            .with_label("expected \"sha256:<64 hex digits>\" or \"$argon2id$…\""),
                    );
                }
            }
        }
        (None, Some(plain)) => {
            let path = format!("provider.auth.{plain_key}");
            if let Some(text) = ck.str(&plain.val, &path) {
                if text.is_empty() {
                    ck.push(
                        Diagnostic::error(format!("`{plain_key}` is empty"), plain.val.span.clone())
                            .with_label("an empty secret would let anyone in"),
                    );
                } else {
                    json.insert(hash_key.to_string(), sha256_secret(text).into());
                }
            }
        }
    }
}

/// `sha256:` + 64 hex digits, or an argon2id PHC string.
fn is_secret_hash(text: &str) -> bool {
    match text.strip_prefix("sha256:") {
        Some(hex) => hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => text.starts_with("$argon2id$") && text.len() > "$argon2id$".len(),
    }
}

/// The `jwks` method: issuer, audience, key set location, subject rules.
fn jwks(
    ck: &mut Checker,
    table: &Table,
    base: Option<&Path>,
    json: &mut serde_json::Map<String, serde_json::Value>,
) {
    const PATH: &str = "provider.auth";
    ck.req_str(table, "issuer", PATH);
    if let Some(e) = ck.required(table, "audience", PATH) {
        match &e.val.kind {
            Kind::Str(_) | Kind::Poisoned => {}
            Kind::Array(_) => {
                ck.str_array(&e.val, "provider.auth.audience");
            }
            _ => ck.wrong_type(
                &e.val,
                "provider.auth.audience",
                "a string or an array of strings",
            ),
        }
    }
    if let Some((text, val)) = ck.req_str(table, "jwks", PATH) {
        if text.starts_with("https://") || text.starts_with("http://") {
            // A URL: used as written.
        } else if text.is_empty() || text.contains("://") {
            ck.push(
                Diagnostic::error(format!("invalid `jwks` {}", val.shown()), val.span.clone())
                    .with_label("expected an http(s) URL or a file path"),
            );
        } else if let Some(base) = base.filter(|_| Path::new(text).is_relative()) {
            json.insert("jwks".into(), base.join(text).display().to_string().into());
        }
    }
    match ck.opt_str(table, "subject_claim", PATH) {
        Some(("", val)) => ck.push(
            Diagnostic::error("`subject_claim` is empty", val.span.clone())
                .with_label("e.g. \"sub\" or \"appid\""),
        ),
        Some(_) => {}
        None => {
            json.insert("subject_claim".into(), "sub".into());
        }
    }
    ck.opt_str(table, "subject", PATH);
    if let Some(e) = table.get("algorithms") {
        for (text, val) in ck.str_array(&e.val, "provider.auth.algorithms") {
            if !JWS_ALGORITHMS.contains(&text) {
                ck.push(
                    Diagnostic::error(
                        format!("unsupported JWS algorithm {}", val.shown()),
                        val.span.clone(),
                    )
                    .with_label("not an asymmetric JWS algorithm")
                    .with_help(format!("supported: {}", JWS_ALGORITHMS.join(", "))),
                );
            }
        }
    }
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

/// `*`, `scheme://host[:port]` or a bare host, with an optional leading `*.`.
fn check_referrer(text: &str) -> Result<(), &'static str> {
    if text == "*" {
        return Ok(());
    }
    let rest = match text.split_once("://") {
        Some((scheme, rest)) => {
            let mut chars = scheme.chars();
            let ok = matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
                && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c));
            if !ok {
                return Err("invalid scheme");
            }
            rest
        }
        None => text,
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err("an origin has no path, query or user");
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed `[`")?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("invalid IPv6 address");
        }
        (None, after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(rest), None),
        }
    };
    if let Some(port) = port {
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err("invalid port");
        }
    }
    if let Some(host) = host {
        let host = host.strip_prefix("*.").unwrap_or(host);
        let labels_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !labels_ok {
            return Err("invalid host");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes() {
        assert_eq!(
            sha256_secret("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_secret_hash(&sha256_secret("x")));
        assert!(is_secret_hash(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"
        ));
        assert!(!is_secret_hash("sha256:abc"));
        assert!(!is_secret_hash("hunter2"));
        assert!(!is_secret_hash("$argon2id$"));
    }

    #[test]
    fn referrers() {
        for ok in [
            "*",
            "https://iga.example.com",
            "https://*.example.com:8443",
            "example.com",
            "*.example.com",
            "http://[::1]:8080",
            "10.0.0.1",
        ] {
            assert_eq!(check_referrer(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://example.com/path",
            "https://",
            "ex ample.com",
            "https://a.com:0",
            "https://a.com:99999",
            "HTTP://a.com",
            "*",
            "a.*.com",
            "user@a.com",
        ]
        .into_iter()
        .filter(|b| *b != "*")
        {
            assert!(check_referrer(bad).is_err(), "{bad}");
        }
    }
}
