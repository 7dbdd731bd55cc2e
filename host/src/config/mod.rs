//! The scimgate configuration file: TOML in, a checked [`Config`] out.
//!
//! Every problem is collected and reported at once, each located as
//! `file:line:col` (see [`render_diagnostics`]). `${VAR}` references in string
//! values are expanded after parsing; plaintext secrets are replaced by hashes.

mod check;
mod diagnostic;
pub mod methods;
mod pipeline;
mod provider;
pub mod schema;
mod server;
mod tree;
mod units;

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diagnostic::{render_diagnostics, render_warnings, Diagnostic, SourceFile};
pub use scimgate_abi::secret::sha256_secret;
pub use units::{parse_duration, parse_size};

use check::Checker;
use tree::Kind;

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from (kept for locating plugin-reported issues).
    pub source: SourceFile,
    pub server: ServerConfig,
    /// Stages in file order.
    pub stages: Vec<StageConfig>,
    pub routes: Vec<RouteConfig>,
    pub providers: Vec<ProviderConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `listen`, default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `plugin_dir`: one folder or a list searched in order, each resolved
    /// against the config file's folder; empty for the binary's folder.
    pub plugin_dir: Vec<PathBuf>,
    /// `data_dir`, default `scimgate-data`, resolved against the config file's folder.
    pub data_dir: PathBuf,
    /// `trusted_proxies`: CIDRs or single addresses whose `X-Forwarded-For` is honoured.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `max_body_size`: `"2MiB"`, `"512KiB"`, `"1MB"` or bytes; default 2 MiB.
    pub max_body_size: usize,
    /// `request_timeout`: `"30s"`, `"500ms"`, `"2m"`, `"1h"`; default 30 s.
    pub request_timeout: Duration,
    /// `blocking_threads`: size of the endpoint pool, 1..=1024, default 64.
    pub blocking_threads: usize,
    /// `public_url`: the external http(s) base URL, without trailing slash.
    pub public_url: Option<String>,
    /// `log_format`: `"human"` (default) or `"json"`.
    pub log_format: LogFormat,
    /// `log_level`: a level or filter directives (`SCIMGATE_LOG`'s grammar);
    /// `--log-level` and `SCIMGATE_LOG` win over it. Default `info`.
    pub log_level: Option<String>,
    /// `header_read_timeout`: how long a client may take to send a request's
    /// head (from its first byte, or from the connection's start); default 10 s.
    pub header_read_timeout: Duration,
    /// `keep_alive_timeout`: how long an idle kept-alive connection is kept
    /// open waiting for its next request; default 60 s.
    pub keep_alive_timeout: Duration,
    /// `max_connections`: connections served at once (more wait in the
    /// kernel's accept queue); 1..=1048576, default 1024.
    pub max_connections: usize,
    /// `forwarded_header`: the one header a trusted proxy's client address
    /// is read from; default `x-forwarded-for`.
    pub forwarded_header: ForwardedHeader,
    /// `metrics`: serve the Prometheus metrics; default `true`.
    pub metrics: bool,
    /// `metrics_listen`: serve the metrics on this IP:port only (not on
    /// `listen`); default none (on `listen`, at `/metrics`).
    pub metrics_listen: Option<SocketAddr>,
    /// `[server.tls]`: serve HTTPS on `listen` (default: plain HTTP).
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: the main listener speaks TLS (see [`crate::tls`]). The
/// files are read (and checked) when the configuration is loaded and again
/// on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    /// `cert_file`: PEM certificate chain, leaf first; required.
    pub cert_file: PathBuf,
    /// `key_file`: PEM private key (PKCS#8, RSA or SEC1); required.
    pub key_file: PathBuf,
    /// `client_ca_file`: PEM CA bundle; when set, clients are asked for a
    /// certificate and a presented one must chain to these CAs.
    pub client_ca_file: Option<PathBuf>,
    /// `client_auth`: `"optional"` (default) or `"required"`; only with
    /// `client_ca_file`.
    pub client_auth: ClientAuth,
    /// `min_version`: `"1.2"` (default) or `"1.3"`.
    pub min_version: TlsMinVersion,
    /// `http2`: offer `h2` before `http/1.1` in ALPN; default `true`.
    pub http2: bool,
}

/// `[server.tls] client_auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A client may present a certificate (verified if it does) or none.
    #[default]
    Optional,
    /// The handshake fails without a verified client certificate.
    Required,
}

/// `[server.tls] min_version`: the oldest TLS version accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            plugin_dir: Vec::new(),
            data_dir: PathBuf::from("scimgate-data"),
            trusted_proxies: Vec::new(),
            max_body_size: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            blocking_threads: 64,
            public_url: None,
            log_format: LogFormat::Human,
            log_level: None,
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
            max_connections: 1024,
            forwarded_header: ForwardedHeader::XForwardedFor,
            metrics: true,
            metrics_listen: None,
            tls: None,
        }
    }
}

/// Which header carries the client's address when the peer is a trusted
/// proxy. Only that header is read; the other is ignored, so a client cannot
/// slip its own address past a proxy that sets only one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, …`
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case (also the value in the file).
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }
}

/// How the host writes its logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// `[stage.NAME]`: one plugin component and its free-form configuration.
#[derive(Clone, PartialEq)]
pub struct StageConfig {
    pub name: String,
    /// `library` of `use = "library/component"`.
    pub library: String,
    /// `component` of `use = "library/component"`.
    pub component: String,
    /// The table minus `use`, as JSON (datetimes as RFC 3339 strings).
    pub config: serde_json::Value,
    /// The `use` value.
    pub span: Range<usize>,
    /// The `[stage.NAME]` header, or the key when written inline.
    pub header_span: Range<usize>,
}

/// `[[route]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteConfig {
    /// Mount path: starts with `/`, no trailing `/` (unless `/`), no `?`/`#`.
    pub path: String,
    /// Stage names in order, each with the span of its string.
    pub pipeline: Vec<(String, Range<usize>)>,
    /// `anonymous = true` allows a pipeline without authenticator.
    pub anonymous: bool,
    /// `providers = ["id", …]`: the only providers this route serves, each
    /// with the span of its string; `None` when the key is absent (every
    /// registered provider).
    pub providers: Option<Vec<(String, Range<usize>)>>,
    /// The `path` value.
    pub span: Range<usize>,
}

/// `[[provider]]`: an IGA system allowed to call in.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub id: String,
    /// Display name; defaults to `id`.
    pub name: String,
    /// Default true.
    pub active: bool,
    /// Default `"scim2"`.
    pub protocol: String,
    pub description: String,
    pub tags: Vec<String>,
    pub auth: ProviderAuth,
    /// The `id` value.
    pub span: Range<usize>,
}

/// `[provider.auth]`: the generic provider record's rules, and the keys of
/// the authentication method as written, for the authenticator that declares
/// the method ([`methods`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderAuth {
    /// `method`, as written; declared by an authenticator component.
    pub method: String,
    pub method_span: Option<Range<usize>>,
    /// Optional unless the method requires it; names the client in
    /// principals and audit events.
    pub client_id: Option<String>,
    pub valid_from: Option<time::OffsetDateTime>,
    pub valid_until: Option<time::OffsetDateTime>,
    /// As written; each a CIDR, a single address or `*`.
    pub allowed_ips: Vec<String>,
    /// As written; each `*`, an origin `scheme://host[:port]` or a host, `*.` allowed.
    pub allowed_referrers: Vec<String>,
    pub access: Access,
    pub scopes: Vec<String>,
    /// Every other key of the table, as written after `${VAR}` expansion
    /// (plaintext secrets included until [`methods::resolve`] hashes them).
    pub method_keys: Vec<MethodKey>,
    /// `[provider.auth]`, for issues about the table as a whole.
    pub header_span: Option<Range<usize>>,
    /// The method's keys as plugins see them, filled by
    /// [`methods::resolve`]: declared keys only, secrets only as hashes,
    /// relative paths resolved.
    pub table: serde_json::Value,
}

/// One method-specific key of `[provider.auth]` and where it is written.
#[derive(Clone, PartialEq)]
pub struct MethodKey {
    pub key: String,
    pub key_span: Option<Range<usize>>,
    pub value: serde_json::Value,
    pub value_span: Option<Range<usize>>,
}

/// The value may be a plaintext secret: never printed.
impl std::fmt::Debug for MethodKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodKey")
            .field("key", &self.key)
            .field("value", &"**REDACTED**")
            .finish()
    }
}

/// `auth.access`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    ReadOnly,
    #[default]
    ReadWrite,
}

impl Access {
    /// The name used in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
    }
}

impl ProviderConfig {
    /// The provider record handed to plugins.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::{json, Value};
        let rfc3339 = |t: &Option<time::OffsetDateTime>| -> Value {
            t.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .map_or(Value::Null, Value::String)
        };
        let mut auth = match &self.auth.table {
            Value::Object(map) => map.clone(),
            _ => serde_json::Map::new(),
        };
        auth.insert("method".into(), json!(self.auth.method));
        auth.insert("client_id".into(), json!(self.auth.client_id));
        auth.insert("valid_from".into(), rfc3339(&self.auth.valid_from));
        auth.insert("valid_until".into(), rfc3339(&self.auth.valid_until));
        auth.insert("allowed_ips".into(), json!(self.auth.allowed_ips));
        auth.insert(
            "allowed_referrers".into(),
            json!(self.auth.allowed_referrers),
        );
        auth.insert("access".into(), json!(self.auth.access.as_str()));
        auth.insert("scopes".into(), json!(self.auth.scopes));
        json!({
            "id": self.id,
            "name": self.name,
            "active": self.active,
            "protocol": self.protocol,
            "description": self.description,
            "tags": self.tags,
            "auth": Value::Object(auth),
        })
    }
}

/// Stage tables may carry secrets from the environment (store URLs, keys):
/// `Debug` masks string values under secret-looking keys and URL passwords.
impl std::fmt::Debug for StageConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageConfig")
            .field("name", &self.name)
            .field("library", &self.library)
            .field("component", &self.component)
            .field("config", &redacted(&self.config, false))
            .field("span", &self.span)
            .field("header_span", &self.header_span)
            .finish()
    }
}

fn redacted(value: &serde_json::Value, secret_key: bool) -> serde_json::Value {
    use serde_json::Value;
    const SECRET_WORDS: [&str; 6] = ["secret", "password", "passwd", "token", "key", "credential"];
    match value {
        Value::String(_) if secret_key => Value::String("**REDACTED**".into()),
        Value::String(s) => Value::String(mask_url_password(s)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| redacted(v, secret_key)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let secret = secret_key || SECRET_WORDS.iter().any(|w| lower.contains(w));
                    (k.clone(), redacted(v, secret))
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `scheme://user:pass@host` → `scheme://user:**REDACTED**@host`.
fn mask_url_password(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = s[authority_start..]
        .find('/')
        .map_or(s.len(), |i| authority_start + i);
    let authority = &s[authority_start..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].split_once(':') {
            Some((user, _)) => format!(
                "{}{user}:**REDACTED**{}",
                &s[..authority_start],
                &s[authority_start + at..]
            ),
            None => s.to_string(),
        },
        None => s.to_string(),
    }
}

/// Reads `path` and checks it; an unreadable file is one diagnostic without span.
pub fn load(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, (SourceFile, Vec<Diagnostic>)> {
    let (config, diags) = load_partial(path, env)?;
    if diags.is_empty() {
        Ok(config)
    } else {
        Err((config.source, diags))
    }
}

/// Like [`load`], but a file that parses as TOML always yields a (possibly
/// partial) `Config` next to its diagnostics, so that later checks (the
/// plugins' own validation) can add theirs and every problem is reported at
/// once. `Err` only when the file cannot be read or is not TOML.
pub fn load_partial(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Diagnostic>), (SourceFile, Vec<Diagnostic>)> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_partial(SourceFile::new(path, text), env),
        Err(err) => Err((
            SourceFile::new(path, String::new()),
            vec![Diagnostic::error(
                format!("cannot read configuration file `{}`: {err}", path.display()),
                None,
            )],
        )),
    }
}

/// Parses and checks a configuration; all problems are returned together,
/// sorted by position.
pub fn parse_str(
    source: SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, (SourceFile, Vec<Diagnostic>)> {
    let (config, diags) = parse_partial(source, env)?;
    if diags.is_empty() {
        Ok(config)
    } else {
        Err((config.source, diags))
    }
}

/// Like [`parse_str`], returning the (possibly partial) `Config` with its
/// diagnostics; see [`load_partial`].
pub fn parse_partial(
    source: SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Config, Vec<Diagnostic>), (SourceFile, Vec<Diagnostic>)> {
    let doc = match toml_edit::ImDocument::parse(source.text.as_str()) {
        Ok(doc) => doc,
        Err(err) => {
            let message = err.message();
            let (head, rest) = message.split_once('\n').unwrap_or((message, ""));
            let diag = Diagnostic::error(format!("TOML syntax error: {head}"), err.span())
                .with_label(rest.replace('\n', "; "));
            return Err((source, vec![diag]));
        }
    };
    let mut ck = Checker {
        diags: Vec::new(),
        text: &source.text,
    };
    let root = tree::build(&doc, &source.text, env, &mut ck.diags);
    let base = source
        .path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf);

    ck.unknown_keys(
        &root,
        "top level",
        &["server", "stage", "route", "provider"],
    );
    let server = match root.get("server") {
        Some(entry) => match ck.table(&entry.val, "server") {
            Some(table) => server::server(&mut ck, table, base.as_deref()),
            None => ServerConfig::default(),
        },
        None => server::server(&mut ck, &tree::Table::default(), base.as_deref()),
    };
    let stages = match root.get("stage") {
        Some(entry) => match ck.table(&entry.val, "stage") {
            Some(table) => pipeline::stages(&mut ck, table),
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let routes = match root.get("route") {
        Some(entry) => tables_of(&mut ck, &entry.val, "route")
            .into_iter()
            .filter_map(|t| pipeline::route(&mut ck, t))
            .collect(),
        None => Vec::new(),
    };
    // Names of every declared stage, valid or not, so a broken stage does not
    // also make each route using it fail.
    let declared: Vec<&str> = match root.get("stage").map(|e| &e.val.kind) {
        Some(Kind::Table(t)) => t.entries.iter().map(|e| e.key.as_str()).collect(),
        _ => Vec::new(),
    };
    pipeline::check_routes(&mut ck, &routes, &declared);
    let providers = match root.get("provider") {
        Some(entry) => tables_of(&mut ck, &entry.val, "provider")
            .into_iter()
            .filter_map(|t| provider::provider(&mut ck, t))
            .collect(),
        None => Vec::new(),
    };
    provider::check_providers(&mut ck, &providers);
    let providers: Vec<ProviderConfig> = providers.into_iter().map(|p| p.config).collect();
    pipeline::check_route_providers(&mut ck, &routes, &providers);

    let mut diags = ck.diags;
    sort_diagnostics(&mut diags);
    Ok((
        Config {
            source,
            server,
            stages,
            routes,
            providers,
        },
        diags,
    ))
}

/// Orders diagnostics as they are reported: unlocated first, then by position.
pub fn sort_diagnostics(diags: &mut [Diagnostic]) {
    diags.sort_by_key(|d| d.span.as_ref().map_or((0, 0), |s| (1, s.start)));
}

/// The tables of an array of tables (`[[route]]`); anything else is reported.
fn tables_of<'v>(ck: &mut Checker, val: &'v tree::Val, path: &str) -> Vec<&'v tree::Table> {
    if let Kind::Table(table) = &val.kind {
        ck.push(
            Diagnostic::error(
                format!("`{path}` must be an array of tables"),
                table.header_span.clone(),
            )
            .with_label(format!("write [[{path}]]"))
            .with_help(format!("each [[{path}]] header starts one more entry")),
        );
        return Vec::new();
    }
    let Some(items) = ck.array(val, path) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match &item.kind {
            Kind::Table(t) => Some(t),
            _ => {
                ck.wrong_type(item, path, &format!("a table ([[{path}]])"));
                None
            }
        })
        .collect()
}

impl Config {
    /// The stage named `name`.
    pub fn stage(&self, name: &str) -> Option<&StageConfig> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The provider with id `id`.
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// The span of a key's value inside `[stage.NAME]`, for a path such as
    /// `bulk.max_operations`, `items[2].name`, `items.2` or `/items/2/name`.
    /// Best effort: the deepest existing prefix; an empty path gives the header.
    pub fn span_of_stage_key(&self, stage: &str, dotted_path: &str) -> Option<Range<usize>> {
        let header = self.stage(stage)?.header_span.clone();
        let doc = toml_edit::ImDocument::parse(self.source.text.as_str()).ok()?;
        // Values are irrelevant here, only places: expand nothing.
        let mut ignored = Vec::new();
        let root = tree::build(
            &doc,
            &self.source.text,
            &|_| Some(String::new()),
            &mut ignored,
        );
        let Some(mut val) = root
            .get("stage")
            .and_then(|s| match &s.val.kind {
                Kind::Table(t) => t.get(stage),
                _ => None,
            })
            .map(|e| &e.val)
        else {
            return Some(header);
        };
        let mut best = header;
        for segment in path_segments(dotted_path) {
            let next = match &val.kind {
                Kind::Table(t) => t.get(&segment).map(|e| &e.val),
                Kind::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            let Some(next) = next else { break };
            val = next;
            // A `[table]` is pointed at by its header, anything else by its value.
            let span = val
                .span
                .as_ref()
                .and_then(|s| tree::header_of(&self.source.text, s.start))
                .or_else(|| val.span.clone());
            if let Some(span) = span {
                best = span;
            }
        }
        Some(best)
    }
}

/// `a.b[2].c`, `a.b.2.c` and `/a/b/2/c` all give `["a", "b", "2", "c"]`.
fn path_segments(path: &str) -> Vec<String> {
    let path = path.trim();
    let parts: Vec<&str> = if let Some(pointer) = path.strip_prefix('/') {
        pointer.split('/').collect()
    } else {
        path.split('.').collect()
    };
    parts
        .into_iter()
        .flat_map(|part| {
            let part = part.replace("~1", "/").replace("~0", "~");
            let mut out = Vec::new();
            let (head, mut rest) = part
                .split_once('[')
                .map_or((part.as_str(), ""), |(h, r)| (h, r));
            if !head.is_empty() {
                out.push(head.to_string());
            }
            while let Some((index, tail)) = rest.split_once(']') {
                out.push(index.trim().to_string());
                rest = tail.strip_prefix('[').unwrap_or(tail);
            }
            out
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t-from-env-0123456789";

    fn env(name: &str) -> Option<String> {
        match name {
            "OIM_SECRET" => Some(SECRET.to_string()),
            "LISTEN" => Some(SECRET.to_string()),
            "PORT" => Some("9090".to_string()),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Config, String> {
        parse_str(SourceFile::new("x.toml", text), &env)
            .map_err(|(source, diags)| render_diagnostics(&source, &diags))
    }

    fn errors(text: &str) -> (Vec<Diagnostic>, String) {
        match parse_str(SourceFile::new("x.toml", text), &env) {
            Ok(_) => panic!("expected errors"),
            Err((source, diags)) => {
                let rendered = render_diagnostics(&source, &diags);
                (diags, rendered)
            }
        }
    }

    const FULL: &str = r#"[server]
listen = "127.0.0.1:${PORT:-8080}"
plugin_dir = "target/release"
data_dir = "scimgate-data"
trusted_proxies = ["10.0.0.1", "192.168.0.0/16"]
max_body_size = "512KiB"
request_timeout = "2m"
blocking_threads = 8
public_url = "https://vault.example.com/"
log_format = "json"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
ttl = "1h"
[stage.bearer]
use = "oauth2/bearer"
[stage.active]
use = "policies/provider-active"
[stage.validity]
use = "policies/validity"
[stage.ips]
use = "policies/allowed-ips"
[stage.referrers]
use = "policies/allowed-referrers"
[stage.access]
use = "policies/access-mode"
[stage.oim]
use = "one-identity/profile"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scimgate-data/scim.db"
bulk = { max_operations = 1000, max_payload = "1MiB" }
[[stage.scim.schemas]]
file = "a.json"
[[stage.scim.schemas]]
file = "b.json"
since = 2026-01-01T00:00:00Z

[[route]]
path = "/iso/oauth2/token"
pipeline = ["client-auth", "active", "validity", "ips", "referrers", "token"]

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "oim", "scim"]

[[route]]
path = "/healthz"
pipeline = ["scim"]
anonymous = true

[[provider]]
id = "oim-prod"
name = "One Identity Manager"
active = true
protocol = "scim2"
description = "Production OIM synchronization server"
tags = ["iga", "prod"]
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim-prod"
client_secret = "${OIM_SECRET}"
valid_from = 2026-01-01T00:00:00Z
valid_until = "2027-12-31T23:59:59+01:00"
allowed_ips = ["10.20.0.0/16", "192.0.2.7", "2001:db8::/32"]
allowed_referrers = ["https://iga.example.com", "*.example.org"]
access = "read-only"
scopes = ["scim:read"]

[[provider]]
id = "entra"
auth = { method = "static-bearer", token_hash = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" }

[[provider]]
id = "okta"
active = false
[provider.auth]
method = "jwks"
issuer = "https://okta.example.com"
audience = ["api://scimgate"]
jwks = "keys/okta.json"
algorithms = ["RS256"]

[[provider]]
id = "human"
[provider.auth]
method = "basic"
username = "ops"
password = "$${literal}"
"#;

    #[test]
    fn full_valid_config() {
        let config = parse_str(SourceFile::new("conf/x.toml", FULL), &env)
            .unwrap_or_else(|(s, d)| panic!("{}", render_diagnostics(&s, &d)));
        let server = &config.server;
        assert_eq!(server.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(server.plugin_dir, [PathBuf::from("conf/target/release")]);
        assert_eq!(server.data_dir, PathBuf::from("conf/scimgate-data"));
        assert_eq!(server.trusted_proxies.len(), 2);
        assert_eq!(server.trusted_proxies[0].to_string(), "10.0.0.1/32");
        assert_eq!(server.max_body_size, 512 * 1024);
        assert_eq!(server.request_timeout, Duration::from_secs(120));
        assert_eq!(server.blocking_threads, 8);
        assert_eq!(
            server.public_url.as_deref(),
            Some("https://vault.example.com")
        );
        assert_eq!(server.log_format, LogFormat::Json);

        let names: Vec<&str> = config.stages.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "client-auth",
                "token",
                "bearer",
                "active",
                "validity",
                "ips",
                "referrers",
                "access",
                "oim",
                "scim"
            ]
        );
        let scim = config.stage("scim").unwrap();
        assert_eq!(
            (scim.library.as_str(), scim.component.as_str()),
            ("scim-server", "scim")
        );
        assert_eq!(
            scim.config,
            serde_json::json!({
                "store": "sqlite:scimgate-data/scim.db",
                "bulk": {"max_operations": 1000, "max_payload": "1MiB"},
                "schemas": [{"file": "a.json"}, {"file": "b.json", "since": "2026-01-01T00:00:00Z"}],
            })
        );
        assert_eq!(&FULL[scim.span.clone()], "\"scim-server/scim\"");
        assert_eq!(&FULL[scim.header_span.clone()], "[stage.scim]");
        assert_eq!(
            config.stage("token").unwrap().config,
            serde_json::json!({"ttl": "1h"})
        );

        assert_eq!(config.routes.len(), 3);
        let r = &config.routes[1];
        assert_eq!(r.path, "/iso/scim/v2");
        assert_eq!(r.pipeline.len(), 8);
        assert_eq!(&FULL[r.pipeline[6].1.clone()], "\"oim\"");
        assert_eq!(&FULL[r.span.clone()], "\"/iso/scim/v2\"");
        assert!(!r.anonymous && config.routes[2].anonymous);

        assert_eq!(config.providers.len(), 4);
        let oim = config.provider("oim-prod").unwrap();
        assert_eq!(&FULL[oim.span.clone()], "\"oim-prod\"");
        assert_eq!(oim.auth.method, "oauth2-client-credentials");
        assert_eq!(oim.auth.client_id.as_deref(), Some("oim-prod"));
        assert_eq!(oim.auth.access, Access::ReadOnly);
        assert_eq!(
            oim.auth.valid_from,
            Some(time::macros::datetime!(2026-01-01 00:00:00 UTC))
        );
        assert_eq!(
            oim.auth.valid_until,
            Some(time::macros::datetime!(2027-12-31 23:59:59 +01:00))
        );
        assert_eq!(oim.auth.allowed_ips.len(), 3);
        // The method's keys wait, as written, for the authenticator that
        // declares the method (config::methods); nothing of them is in the
        // record yet.
        let method_key = |p: &ProviderConfig, key: &str| {
            p.auth
                .method_keys
                .iter()
                .find(|k| k.key == key)
                .map(|k| k.value.clone())
        };
        assert_eq!(
            method_key(oim, "client_secret"),
            Some(serde_json::json!(SECRET))
        );
        assert!(oim.to_json()["auth"].get("client_secret").is_none());
        let json = oim.to_json();
        assert_eq!(json["auth"]["access"], "read-only");
        assert_eq!(json["auth"]["valid_from"], "2026-01-01T00:00:00Z");
        assert_eq!(json["auth"]["valid_until"], "2027-12-31T23:59:59+01:00");
        assert_eq!(json["tags"], serde_json::json!(["iga", "prod"]));

        let entra = config.provider("entra").unwrap();
        assert_eq!(
            (entra.name.as_str(), entra.active, entra.protocol.as_str()),
            ("entra", true, "scim2")
        );
        assert_eq!(entra.auth.access, Access::ReadWrite);
        assert_eq!(
            entra.to_json()["auth"]["client_id"],
            serde_json::Value::Null
        );
        let okta = config.provider("okta").unwrap();
        assert!(!okta.active);
        assert_eq!(
            method_key(okta, "jwks"),
            Some(serde_json::json!("keys/okta.json"))
        );
        let human = config.provider("human").unwrap();
        assert_eq!(
            method_key(human, "password"),
            Some(serde_json::json!("${literal}"))
        );

        for text in [
            format!("{config:?}"),
            format!(
                "{:#}",
                serde_json::json!(config
                    .providers
                    .iter()
                    .map(ProviderConfig::to_json)
                    .collect::<Vec<_>>())
            ),
        ] {
            assert!(!text.contains(SECRET), "plaintext secret leaked");
            assert!(!text.contains("${literal}"), "plaintext password leaked");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let config = parse("").unwrap();
        assert_eq!(config.server, ServerConfig::default());
        assert!(
            config.stages.is_empty() && config.routes.is_empty() && config.providers.is_empty()
        );
    }

    #[test]
    fn broken_file_reports_every_mistake_located() {
        let text = r#"[server]
listen = "localhost"
blocking_threads = 0

[stage.bearer]
use = "oauth2/bearer"
[stage.scim]
use = "scim-server"

[[route]]
path = "/scim/"
pipeline = ["bearr", "scim"]

[[provider]]
id = "p1"
active = "yes"
[provider.auth]
method = "static-bearer"
token = "abc"
allowed_ips = ["10.0.0.0/33"]
access = "read-mostly"
"#;
        let (diags, out) = errors(text);
        assert_eq!(diags.len(), 8, "{out}");
        for needle in [
            "error: invalid listen address `localhost`\n --> x.toml:2:10\n  |\n2 | listen = \"localhost\"\n  |          ^^^^^^^^^^^ expected IP:port\n",
            "error: `server.blocking_threads` must be between 1 and 1024, found 0\n --> x.toml:3:20\n",
            "error: invalid `use` `scim-server` in [stage.scim]\n --> x.toml:8:7\n",
            "error: invalid route path `/scim/`\n  --> x.toml:11:8\n",
            "error: unknown stage `bearr` in pipeline\n  --> x.toml:12:13\n   |\n12 | pipeline = [\"bearr\", \"scim\"]\n   |             ^^^^^^^ no [stage.bearr] table\n   = help: did you mean `bearer`? defined stages: bearer, scim\n",
            "error: expected a boolean for `provider.active`, found a string\n  --> x.toml:16:10\n",
            "error: invalid IP address or CIDR `10.0.0.0/33`\n  --> x.toml:20:16\n",
            "error: unknown access mode `read-mostly`\n  --> x.toml:21:10\n",
            "error: could not load `x.toml` due to 8 previous errors\n",
        ] {
            assert!(out.contains(needle), "missing:\n{needle}\nin:\n{out}");
        }
    }

    #[test]
    fn unknown_key_in_server() {
        let (diags, out) = errors("[server]\nlisten = \"127.0.0.1:1\"\nlisen = \"x\"\n");
        assert_eq!(diags.len(), 1);
        assert!(
            out.contains("error: unknown key `lisen` in [server]\n --> x.toml:3:1\n"),
            "{out}"
        );
        assert!(
            out.contains("did you mean `listen`? allowed keys in [server]: listen, plugin_dir"),
            "{out}"
        );
    }

    #[test]
    fn unknown_keys_elsewhere() {
        let (diags, out) = errors(
            "colour = 1\n[[route]]\npath = \"/\"\npipeline = [\"a\"]\nverb = \"GET\"\n[stage.a]\nuse = \"x/y\"\n\
             [[provider]]\nid = \"p\"\nnmae = \"x\"\n[provider.auth]\nmethod = \"static-bearer\"\ntoken_hash = \"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\nclient_secret = \"c\"\nfoo = 1\n",
        );
        assert_eq!(diags.len(), 3, "{out}");
        assert!(out.contains("unknown key `colour` in [top level]"), "{out}");
        assert!(
            out.contains("unknown key `verb` in [route]\n --> x.toml:5:1"),
            "{out}"
        );
        assert!(
            out.contains("unknown key `nmae` in [provider]\n  --> x.toml:10:1"),
            "{out}"
        );
        // Method keys (`client_secret`, `foo`) are the method's
        // authenticator's to judge, once plugins are loaded (config::methods).
        assert!(!out.contains("foo"), "{out}");
    }

    #[test]
    fn missing_env_var_is_located_and_values_never_echoed() {
        let (diags, out) =
            errors("[server]\ndata_dir = \"${DATA_HOME}/x\"\nlisten = \"${LISTEN}\"\n");
        assert_eq!(diags.len(), 2, "{out}");
        assert!(
            out.contains("error: environment variable `DATA_HOME` is not set\n --> x.toml:2:12\n"),
            "{out}"
        );
        assert!(
            out.contains("error: invalid listen address the expanded value\n --> x.toml:3:10"),
            "{out}"
        );
        assert!(!out.contains(SECRET), "{out}");
    }

    #[test]
    fn env_default_and_escape() {
        let config = parse(
            "[server]\ndata_dir = \"${NOPE:-/var/lib/scimgate}\"\nplugin_dir = \"/opt/$${x}\"\n",
        )
        .unwrap();
        assert_eq!(config.server.data_dir, PathBuf::from("/var/lib/scimgate"));
        assert_eq!(config.server.plugin_dir, [PathBuf::from("/opt/${x}")]);
    }

    const AUTH_HEAD: &str = "[[provider]]\nid = \"p\"\n[provider.auth]\nmethod = \"oauth2-client-credentials\"\nclient_id = \"c\"\nclient_secret = \"${OIM_SECRET}\"\n";

    #[test]
    fn valid_until_before_valid_from() {
        let text = format!(
            "{AUTH_HEAD}valid_from = 2026-01-01T00:00:00Z\nvalid_until = 2025-12-31T23:59:59Z\n"
        );
        let (diags, out) = errors(&text);
        assert_eq!(diags.len(), 1, "{out}");
        assert!(
            out.contains("error: `valid_until` is not after `valid_from`\n --> x.toml:8:15\n"),
            "{out}"
        );
        assert!(out.contains("valid_from is on line 7"), "{out}");
        let equal = format!("{AUTH_HEAD}valid_from = 2026-01-01T00:00:00Z\nvalid_until = \"2026-01-01T01:00:00+01:00\"\n");
        assert_eq!(errors(&equal).0.len(), 1);
        let local = format!("{AUTH_HEAD}valid_from = 2026-01-01T00:00:00\n");
        assert!(errors(&local)
            .1
            .contains("`valid_from` needs a date, a time and an offset"));
    }

    #[test]
    fn bad_cidrs_and_referrers() {
        let text = format!("{AUTH_HEAD}allowed_ips = [\"10.20.0.0/16\", \"10.20.0.0/40\", \"nope\", \"*\"]\nallowed_referrers = [\"https://x.com/path\"]\n");
        let (diags, out) = errors(&text);
        assert_eq!(diags.len(), 3, "{out}");
        assert!(
            out.contains("invalid IP address or CIDR `10.20.0.0/40`\n --> x.toml:7:32"),
            "{out}"
        );
        assert!(
            out.contains("invalid IP address or CIDR `nope`\n --> x.toml:7:48"),
            "{out}"
        );
        assert!(
            out.contains("invalid allowed referrer `https://x.com/path`"),
            "{out}"
        );
        let proxies = errors("[server]\ntrusted_proxies = [\"10.0.0.0/8\", \"300.1.1.1\"]\n").1;
        assert!(
            proxies.contains("invalid trusted proxy `300.1.1.1`\n --> x.toml:2:34"),
            "{proxies}"
        );
    }

    #[test]
    fn duplicate_route() {
        let text = "[stage.s]\nuse = \"a/b\"\n[[route]]\npath = \"/a\"\npipeline = [\"s\"]\n[[route]]\npath = \"/a\"\npipeline = [\"s\"]\n";
        let (diags, out) = errors(text);
        assert_eq!(diags.len(), 1, "{out}");
        assert!(
            out.contains("error: duplicate route path `/a`\n --> x.toml:7:8\n"),
            "{out}"
        );
        assert!(out.contains("first defined on line 4"), "{out}");
    }

    #[test]
    fn unknown_stage_with_did_you_mean_and_empty_pipeline() {
        let text = "[stage.bearer]\nuse = \"oauth2/bearer\"\n[stage.scim]\nuse = \"scim-server/scim\"\n[[route]]\npath = \"/a\"\npipeline = [\"bearr\", \"nothing-like-it\"]\n[[route]]\npath = \"/b\"\npipeline = []\n";
        let (diags, out) = errors(text);
        assert_eq!(diags.len(), 3, "{out}");
        assert!(
            out.contains("help: did you mean `bearer`? defined stages: bearer, scim"),
            "{out}"
        );
        assert!(
            out.contains("unknown stage `nothing-like-it` in pipeline\n --> x.toml:7:22\n"),
            "{out}"
        );
        assert!(
            out.contains("   = help: defined stages: bearer, scim\n")
                || out.contains("  = help: defined stages: bearer, scim\n"),
            "{out}"
        );
        assert!(
            out.contains("error: empty pipeline\n  --> x.toml:10:12"),
            "{out}"
        );
    }

    #[test]
    fn syntax_error_located() {
        let (diags, out) = errors("[server]\nlisten = \"127.0.0.1:8080\n");
        assert_eq!(diags.len(), 1, "{out}");
        assert!(out.starts_with("error: TOML syntax error: "), "{out}");
        assert!(out.contains(" --> x.toml:2:"), "{out}");
        assert!(out.contains("2 | listen = \"127.0.0.1:8080"), "{out}");
        let dup = errors("[server]\nlisten = \"a\"\nlisten = \"b\"\n").1;
        assert!(
            dup.contains("duplicate key") && dup.contains("x.toml:3:"),
            "{dup}"
        );
    }

    #[test]
    fn auth_method_rules() {
        // Which methods exist is for the loaded plugins to say
        // (config::methods); the file only fixes the form of the name.
        let base = "[[provider]]\nid = \"p\"\n[provider.auth]\n";
        let bad = errors(&format!("{base}method = \"OAuth 2\"\n")).1;
        assert!(
            bad.contains("invalid authentication method `OAuth 2`\n --> x.toml:4:10"),
            "{bad}"
        );
        let missing = errors(base).1;
        assert!(
            missing.contains("missing required key `method` in [provider.auth]"),
            "{missing}"
        );
        let no_auth = errors("[[provider]]\nid = \"p\"\n").1;
        assert!(
            no_auth.contains("missing required key `auth` in [provider]\n --> x.toml:1:1"),
            "{no_auth}"
        );
    }

    #[test]
    fn duplicate_provider_ids_and_client_ids() {
        let p = |id: &str| {
            format!("[[provider]]\nid = \"{id}\"\n[provider.auth]\nmethod = \"oauth2-client-credentials\"\nclient_id = \"same\"\nclient_secret_hash = \"$argon2id$v=19$x\"\n")
        };
        let text = format!("{}{}{}", p("a"), p("b"), p("a"));
        let (diags, out) = errors(&text);
        assert_eq!(diags.len(), 3, "{out}");
        assert!(
            out.contains("duplicate provider id `a`\n  --> x.toml:14:6"),
            "{out}"
        );
        assert!(
            out.contains("duplicate client_id `same` (provider `b`)\n  --> x.toml:11:13"),
            "{out}"
        );
    }

    #[test]
    fn span_of_stage_key_nested() {
        let text = "[stage.scim]\nuse = \"scim-server/scim\"\nbulk = { max_operations = 10 }\nitems = [{ name = \"a\" }, { name = \"b\" }]\n[stage.scim.paging]\nsize = 5\n[[stage.scim.schemas]]\nfile = \"a\"\n[[stage.scim.schemas]]\nfile = \"b\"\n";
        let config = parse(text).unwrap();
        let at = |path: &str| config.span_of_stage_key("scim", path).map(|s| &text[s]);
        assert_eq!(at(""), Some("[stage.scim]"));
        assert_eq!(at("bulk.max_operations"), Some("10"));
        assert_eq!(at("bulk"), Some("{ max_operations = 10 }"));
        assert_eq!(at("bulk.nope"), Some("{ max_operations = 10 }"));
        assert_eq!(at("items[1].name"), Some("\"b\""));
        assert_eq!(at("items.0"), Some("{ name = \"a\" }"));
        assert_eq!(at("/items/1/name"), Some("\"b\""));
        assert_eq!(at("paging.size"), Some("5"));
        assert_eq!(at("paging"), Some("[stage.scim.paging]"));
        assert_eq!(at("schemas[1]"), Some("[[stage.scim.schemas]]"));
        assert_eq!(at("schemas[1].file"), Some("\"b\""));
        assert_eq!(at("missing.deep"), Some("[stage.scim]"));
        assert_eq!(config.span_of_stage_key("nope", ""), None);
    }

    #[test]
    fn stage_rules_and_inline_stages() {
        let config = parse("[stage]\na.use = \"x/y\"\nb = { use = \"x/z\", k = 1 }\n").unwrap();
        let text = &config.source.text;
        assert_eq!(&text[config.stage("a").unwrap().header_span.clone()], "a");
        assert_eq!(&text[config.stage("b").unwrap().header_span.clone()], "b");
        assert_eq!(
            config.stage("b").unwrap().config,
            serde_json::json!({"k": 1})
        );
        let out = errors("[stage.a]\nx = 1\n[stage.b]\nuse = \"Bad/Name\"\n[stage]\nc = 3\n").1;
        assert!(
            out.contains("missing required key `use` in [stage.a]\n --> x.toml:1:1"),
            "{out}"
        );
        assert!(out.contains("invalid `use` `Bad/Name`"), "{out}");
        assert!(
            out.contains("expected a table for `stage.c`, found an integer"),
            "{out}"
        );
        let nan = errors("[stage.a]\nuse = \"x/y\"\nf = nan\n").1;
        assert!(
            nan.contains("this float cannot be represented in JSON\n --> x.toml:3:5"),
            "{nan}"
        );
    }

    #[test]
    fn server_values() {
        let out = errors("[server]\nmax_body_size = \"2TB\"\nrequest_timeout = \"30\"\npublic_url = \"ftp://x\"\nlog_format = \"xml\"\ntrusted_proxies = \"10.0.0.1\"\nblocking_threads = \"8\"\n").1;
        for needle in [
            "invalid `server.max_body_size`\n --> x.toml:2:17",
            "invalid `server.request_timeout`\n --> x.toml:3:19",
            "invalid `server.public_url` `ftp://x`\n --> x.toml:4:14",
            "unknown log format `xml`\n --> x.toml:5:14",
            "expected an array for `server.trusted_proxies`, found a string\n --> x.toml:6:19",
            "expected an integer for `server.blocking_threads`, found a string\n --> x.toml:7:20",
        ] {
            assert!(out.contains(needle), "missing {needle}\n{out}");
        }
        let config = parse("[server]\nmax_body_size = 1024\nlisten = \"[::]:8443\"\n").unwrap();
        assert_eq!(config.server.max_body_size, 1024);
        assert_eq!(config.server.listen.port(), 8443);
    }

    #[test]
    fn connection_limits_and_forwarded_header() {
        let config = parse("[server]\nheader_read_timeout = \"2s\"\nkeep_alive_timeout = \"5m\"\nmax_connections = 16\nforwarded_header = \"forwarded\"\n").unwrap();
        assert_eq!(config.server.header_read_timeout, Duration::from_secs(2));
        assert_eq!(config.server.keep_alive_timeout, Duration::from_secs(300));
        assert_eq!(config.server.max_connections, 16);
        assert_eq!(config.server.forwarded_header, ForwardedHeader::Forwarded);
        let defaults = ServerConfig::default();
        assert_eq!(defaults.header_read_timeout, Duration::from_secs(10));
        assert_eq!(defaults.keep_alive_timeout, Duration::from_secs(60));
        assert_eq!(defaults.max_connections, 1024);
        assert_eq!(defaults.forwarded_header, ForwardedHeader::XForwardedFor);
        let (diags, out) = errors("[server]\nheader_read_timeout = \"0s\"\nkeep_alive_timeout = \"soon\"\nmax_connections = 0\nforwarded_header = \"x-real-ip\"\n");
        assert_eq!(diags.len(), 4, "{out}");
        for needle in [
            "error: `server.header_read_timeout` must be greater than zero\n --> x.toml:2:23",
            "error: invalid `server.keep_alive_timeout`\n --> x.toml:3:22",
            "error: `server.max_connections` must be between 1 and 1048576, found 0\n --> x.toml:4:19",
            "error: unknown forwarded header `x-real-ip`\n --> x.toml:5:20",
        ] {
            assert!(out.contains(needle), "missing {needle}\n{out}");
        }
    }

    #[test]
    fn metrics_settings() {
        let defaults = ServerConfig::default();
        assert!(defaults.metrics);
        assert_eq!(defaults.metrics_listen, None);
        let config =
            parse("[server]\nmetrics = false\nmetrics_listen = \"127.0.0.1:9100\"\n").unwrap();
        assert!(!config.server.metrics);
        assert_eq!(
            config.server.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9100)))
        );
        let (diags, out) = errors("[server]\nmetrics = \"yes\"\nmetrics_listen = \"localhost\"\n");
        assert_eq!(diags.len(), 2, "{out}");
        for needle in [
            "error: expected a boolean for `server.metrics`, found a string\n --> x.toml:2:11",
            "error: invalid `server.metrics_listen` address `localhost`\n --> x.toml:3:18",
        ] {
            assert!(out.contains(needle), "missing {needle}\n{out}");
        }
        let out =
            errors("[server]\nlisten = \"127.0.0.1:8080\"\nmetrics_listen = \"127.0.0.1:8080\"\n")
                .1;
        assert!(
            out.contains("error: `server.metrics_listen` is the same address as `server.listen` (127.0.0.1:8080)\n --> x.toml:3:18"),
            "{out}"
        );
    }

    const BOUND: &str = "[stage.s]\nuse = \"a/b\"\n[[provider]]\nid = \"oim\"\nauth = { method = \"static-bearer\", token_hash = \"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" }\n[[provider]]\nid = \"okta\"\nauth = { method = \"static-bearer\", token_hash = \"sha256:ca7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\" }\n[[route]]\npath = \"/a\"\npipeline = [\"s\"]\n";

    #[test]
    fn route_providers_are_checked_and_located() {
        let config = parse(&format!("{BOUND}providers = [\"oim\"]\n")).unwrap();
        let ids: Vec<&str> = config.routes[0]
            .providers
            .iter()
            .flatten()
            .map(|(id, _)| id.as_str())
            .collect();
        assert_eq!(ids, ["oim"]);
        assert!(parse(BOUND).unwrap().routes[0].providers.is_none());
        let (diags, out) = errors(&format!(
            "{BOUND}providers = [\"oim\", \"oktaa\", \"oim\"]\n"
        ));
        assert_eq!(diags.len(), 2, "{out}");
        assert!(
            out.contains("error: unknown provider `oktaa` in route `/a`\n  --> x.toml:12:21\n"),
            "{out}"
        );
        assert!(
            out.contains("did you mean `okta`? registered providers: oim, okta"),
            "{out}"
        );
        assert!(
            out.contains("provider `oim` is listed twice in route `/a`"),
            "{out}"
        );
        let empty = errors(&format!("{BOUND}providers = []\n")).1;
        assert!(
            empty.contains("error: empty `providers` list\n  --> x.toml:12:13"),
            "{empty}"
        );
        let anonymous = errors(&format!("{BOUND}anonymous = true\nproviders = [\"oim\"]\n")).1;
        assert!(
            anonymous.contains("`providers` on a route with `anonymous = true`"),
            "{anonymous}"
        );
    }

    #[test]
    fn route_paths_must_be_canonical() {
        let text = "[stage.s]\nuse = \"a/b\"\n[[route]]\npath = \"/scim/../admin\"\npipeline = [\"s\"]\n[[route]]\npath = \"/sc%69m\"\npipeline = [\"s\"]\n";
        let (diags, out) = errors(text);
        assert_eq!(diags.len(), 2, "{out}");
        assert!(
            out.contains("invalid route path `/scim/../admin`\n --> x.toml:4:8"),
            "{out}"
        );
        assert!(
            out.contains("invalid route path `/sc%69m`\n --> x.toml:7:8"),
            "{out}"
        );
        assert!(out.contains("must be in canonical form"), "{out}");
    }

    #[test]
    fn single_bracket_route_is_explained() {
        let out = errors("[route]\npath = \"/\"\n").1;
        assert!(
            out.contains("error: `route` must be an array of tables\n --> x.toml:1:1"),
            "{out}"
        );
        assert!(out.contains("^^^^^^^ write [[route]]"), "{out}");
    }

    #[test]
    fn load_reports_unreadable_file() {
        let Err((source, diags)) = load(Path::new("/nonexistent/scimgate.toml"), &env) else {
            panic!("expected an error");
        };
        let out = render_diagnostics(&source, &diags);
        assert!(
            out.starts_with("error: cannot read configuration file `/nonexistent/scimgate.toml`"),
            "{out}"
        );
        assert!(out.contains(" --> /nonexistent/scimgate.toml\n"), "{out}");
    }

    #[test]
    fn stage_debug_masks_secrets() {
        let config = parse(&format!(
            "[stage.db]\nuse = \"x/y\"\nstore = \"postgres://app:{SECRET}@db/scim\"\nsigning_key = \"{SECRET}\"\nnested = {{ api_token = [\"{SECRET}\"] }}\n"
        ))
        .unwrap();
        let debug = format!("{:?}", config.stages);
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            debug.contains("postgres://app:**REDACTED**@db/scim"),
            "{debug}"
        );
    }
}
