//! `scimgate explain`: why a provider's request would be allowed or refused.
//!
//! Assembles the configuration exactly as `serve` does, picks the route the
//! server would pick for the path (canonical path, longest mount), and runs
//! that route's authenticators and policies for a request as the provider
//! would send it — stopping before the profiles and the endpoint. The
//! provider's credentials are never available in plaintext, so the first
//! authenticator is not run: the provider's record and principal are
//! attached as that authenticator would attach them, and the output says so.
//! Exit status: 0 allowed, 1 refused, 2 configuration or usage error.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use scimgate_abi::run::{PolicyStage, Stage, Stages};
use scimgate_abi::sdk::{self, Authenticator, Policy};
use scimgate_abi::{
    AuthOutcome, Caller, Header, PluginError, PolicyDecision, Principal, ProviderRecord, Request,
};

use crate::config::Config;
use crate::loader::{LibraryCache, PluginPath};
use crate::pipeline::{check_and_assemble, AssembleMode, PreStage, Route, Runtime};
use crate::server::ConfigSource;

/// The request to explain, as the command line gives it.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// The `[[provider]]` id the request comes from.
    #[arg(long)]
    pub provider: String,
    /// The client address the policies see.
    #[arg(long, default_value = "127.0.0.1")]
    pub from: IpAddr,
    /// A Referer (and the matching Origin) the request carries.
    #[arg(long)]
    pub referer: Option<String>,
    /// An extra request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// Judge the request at this time (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
    /// HTTP method, e.g. GET or POST.
    pub method: String,
    /// Request path (with an optional `?query`), e.g. /iso/scim/v2/Users.
    pub path: String,
}

/// What `explain` found: the printable report and whether the request
/// would pass every stage before the profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub text: String,
    pub allowed: bool,
}

/// The command: load, assemble, explain, print. See the module docs for
/// the exit status.
pub fn run(source: &ConfigSource, args: ExplainArgs) -> ExitCode {
    let (config, config_diags) = match source.load() {
        Ok(loaded) => loaded,
        Err(report) => {
            eprintln!("{report}");
            return ExitCode::from(2);
        }
    };
    let dir = PluginPath::or_default(&config.server.plugin_dir, crate::defaults::binary_dir);
    let mut cache = LibraryCache::default();
    let runtime = match check_and_assemble(
        &config,
        config_diags,
        &dir,
        &mut cache,
        AssembleMode::Create,
    ) {
        Ok(Some(runtime)) => runtime,
        Ok(None) => {
            eprintln!("error: the configuration was checked but not assembled");
            return ExitCode::from(2);
        }
        Err(diags) => {
            eprintln!(
                "{}",
                crate::config::render_diagnostics(&config.source, &diags)
            );
            return ExitCode::from(2);
        }
    };
    match explain(&config, &runtime, &args) {
        Ok(explanation) => {
            print!("{}", explanation.text);
            if explanation.allowed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// One stage's line.
struct Row {
    name: String,
    kind: &'static str,
    decision: String,
}

/// Explains `args` against an assembled runtime. `Err` is a usage or
/// configuration problem (unknown provider, malformed header or time), not
/// a refusal.
pub fn explain(
    config: &Config,
    runtime: &Runtime,
    args: &ExplainArgs,
) -> Result<Explanation, String> {
    let record = runtime
        .providers
        .get(&args.provider)
        .cloned()
        .ok_or_else(|| {
            let known: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
            format!(
                "no provider `{}` in {} (it has: {})",
                args.provider,
                config.source.path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
    let headers = request_headers(args)?;
    let at_ms = match &args.at {
        Some(text) => parse_time(text)?,
        None => (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
    };
    let method = args.method.to_ascii_uppercase();
    let (raw_path, query) = args
        .path
        .split_once('?')
        .unwrap_or((args.path.as_str(), ""));

    let mut text = String::new();
    let _ = writeln!(
        text,
        "request {method} {} from {} as provider `{}` at {}",
        args.path,
        args.from,
        record.id,
        format_time(at_ms)
    );
    // The host refuses what has no single meaning before any route is picked.
    let path = match scimgate_abi::path::canonicalize(raw_path) {
        Ok(path) => path,
        Err(error) => {
            let _ = writeln!(
                text,
                "=> refused by the host (400): invalid request path: {error}; no stage runs"
            );
            return Ok(Explanation {
                text,
                allowed: false,
            });
        }
    };
    let Some(route) = runtime.route_for(&path) else {
        let mounts: Vec<&str> = runtime.routes.iter().map(|r| r.mount.as_str()).collect();
        let _ = writeln!(
            text,
            "=> refused by the host (404): no route serves {path} (mounts: {})",
            mounts.join(", ")
        );
        return Ok(Explanation {
            text,
            allowed: false,
        });
    };

    let req = Request {
        method: method.as_str().into(),
        path: path[route.mount.len().min(path.len())..].to_string().into(),
        query: query.into(),
        headers: headers.into(),
        peer_addr: std::net::SocketAddr::new(args.from, 0).to_string().into(),
        client_ip: args.from.to_string().into(),
        request_id: "explain".into(),
        mount: route.mount.as_str().into(),
        base_url: base_url(config, &route.mount).into(),
        received_at_unix_ms: at_ms,
        error_style: route.error_style,
        ..Request::new(&method, "")
    };
    let _ = writeln!(
        text,
        "route {} ({})",
        route.mount,
        match &route.providers {
            Some(ids) => format!("providers: {}", ids.join(", ")),
            None => "providers: every registered provider".to_string(),
        }
    );
    let (rows, refusal) = run_pre_stages(route, runtime, &req, &record);
    let mut rows = rows;
    for profile in &route.profiles {
        rows.push(Row {
            name: profile.name.clone(),
            kind: "profile",
            decision: "not run (explain stops before the profiles)".to_string(),
        });
    }
    rows.push(Row {
        name: route.endpoint.name.clone(),
        kind: "endpoint",
        decision: format!("not run ({})", route.endpoint.uses),
    });
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(10);
    for row in &rows {
        let _ = writeln!(
            text,
            "  {:<width$}  {:<13}  {}",
            row.name, row.kind, row.decision
        );
    }
    let allowed = refusal.is_none();
    match refusal {
        Some((stage, uses, error)) => {
            let _ = writeln!(
                text,
                "=> refused by stage `{stage}` ({uses}) with {}: {error}",
                status_text(&error)
            );
        }
        None => {
            let profiles: Vec<&str> = route.profiles.iter().map(|p| p.name.as_str()).collect();
            let _ = writeln!(
                text,
                "=> allowed: every authenticator and policy lets it through; it would reach {}the endpoint `{}` ({})",
                if profiles.is_empty() {
                    String::new()
                } else {
                    format!("the profiles `{}`, then ", profiles.join("`, `"))
                },
                route.endpoint.name,
                route.endpoint.uses
            );
        }
    }
    Ok(Explanation { text, allowed })
}

/// The stage refusing the request: (name, `library/component`, error).
type Refusal = (String, String, PluginError);

/// What a stage did, as explain saw it.
enum Seen {
    /// An authenticator stand-in attached the provider.
    Attached,
    Allowed,
    Denied(PluginError),
}

type SeenLog = Arc<Mutex<Vec<(usize, Seen)>>>;

/// Stands in for an authenticator: explain has no credentials, so every
/// authenticator of the route "recognises" the provider as its own would.
struct StandIn {
    index: usize,
    principal: Principal,
    seen: SeenLog,
}

impl Authenticator for StandIn {
    fn authenticate(&self, _req: &Request) -> AuthOutcome {
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((self.index, Seen::Attached));
        }
        AuthOutcome::Authenticated(self.principal.clone())
    }
}

/// The route's real policy, with its decision noted.
struct Noting {
    index: usize,
    policy: Arc<PolicyStage>,
    seen: SeenLog,
}

impl Policy for Noting {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        let decision = self.policy.component.check(req, caller);
        let noted = match &decision {
            PolicyDecision::Allow => Seen::Allowed,
            PolicyDecision::Deny(error) => Seen::Denied(error.clone()),
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.push((self.index, noted));
        }
        decision
    }
}

/// Runs the route's authenticators (as stand-ins) and policies for
/// `record` through the one stage sequence (`scimgate_abi::run`), stopping
/// before the profiles, and says what each stage did.
fn run_pre_stages(
    route: &Route,
    runtime: &Runtime,
    req: &Request,
    record: &Arc<ProviderRecord>,
) -> (Vec<Row>, Option<Refusal>) {
    let principal = principal_of(record);
    let seen: SeenLog = Arc::default();
    let pre: Vec<PreStage> = route
        .pre
        .iter()
        .enumerate()
        .map(|(index, stage)| match stage {
            PreStage::Authenticator(s) => PreStage::Authenticator(Arc::new(Stage {
                name: s.name.clone(),
                uses: s.uses.clone(),
                component: sdk::authenticator_box(
                    StandIn {
                        index,
                        principal: principal.clone(),
                        seen: seen.clone(),
                    },
                    &s.name,
                ),
            })),
            PreStage::Policy(s) => PreStage::Policy(Arc::new(Stage {
                name: s.name.clone(),
                uses: s.uses.clone(),
                component: sdk::policy_box(
                    Noting {
                        index,
                        policy: s.clone(),
                        seen: seen.clone(),
                    },
                    &s.name,
                ),
            })),
        })
        .collect();
    let stages = Stages {
        mount: &route.mount,
        pre: &pre,
        last_authenticator: route.last_authenticator,
        profiles: &[],
        endpoint: None,
        error_style: route.error_style,
        challenges: &route.challenges,
        providers: route.providers.as_deref(),
        inline_marked: &[],
    };
    let mut req = req.clone();
    let outcome = stages.run(&mut req, |id| runtime.providers.get(id).map(|r| &**r));
    let stopped = outcome.result.err();

    let seen = seen
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default();
    let anonymous = route.last_authenticator.is_none();
    let mut attached = false;
    let mut rows = Vec::new();
    let mut refusal: Option<Refusal> = None;
    for (index, stage) in route.pre.iter().enumerate() {
        let (name, kind, uses) = match stage {
            PreStage::Authenticator(s) => (&s.name, "authenticator", &s.uses),
            PreStage::Policy(s) => (&s.name, "policy", &s.uses),
        };
        let decision = match seen.iter().find(|(i, _)| *i == index).map(|(_, s)| s) {
            _ if refusal.is_some() => "not reached".to_string(),
            // The sequence refused at the stand-in (a route not bound to
            // the provider): the refusal is the runner's own.
            Some(Seen::Attached) if stopped.as_ref().is_some_and(|s| s.stage == name.as_str()) => {
                let error = stopped.as_ref().map(|s| s.error.clone()).unwrap_or_else(|| PluginError::internal(""));
                let line = deny_text(&error);
                refusal = Some((name.clone(), uses.clone(), error));
                line
            }
            Some(Seen::Attached) => {
                attached = true;
                format!(
                    "skipped: explain attaches provider `{}` directly (its method: {}; client id `{}`; scopes: {})",
                    record.id,
                    record.auth_method,
                    principal.client_id,
                    scopes_text(&principal)
                )
            }
            Some(Seen::Allowed) if attached || anonymous => "allow".to_string(),
            Some(Seen::Allowed) => {
                "allow (no caller yet: it runs before the authenticators)".to_string()
            }
            Some(Seen::Denied(error)) => {
                let line = deny_text(error);
                refusal = Some((name.clone(), uses.clone(), error.clone()));
                line
            }
            None if matches!(stage, PreStage::Authenticator(_)) && attached => {
                "skipped: the caller is already authenticated (the first authenticator that names it wins)"
                    .to_string()
            }
            None => "not reached".to_string(),
        };
        rows.push(Row {
            name: name.clone(),
            kind,
            decision,
        });
    }
    if anonymous {
        rows.insert(
            0,
            Row {
                name: "(route)".to_string(),
                kind: "anonymous",
                decision:
                    "no authenticator: no provider is attached, policies see an anonymous caller"
                        .to_string(),
            },
        );
    }
    (rows, refusal)
}

/// The principal the provider's authenticator would attach: provider id,
/// client id, every scope of the provider, its method.
fn principal_of(record: &ProviderRecord) -> Principal {
    let client_id = if record.client_id.is_empty() {
        record.id.as_str()
    } else {
        record.client_id.as_str()
    };
    let mut principal = Principal::new(record.id.as_str(), client_id, record.auth_method.as_str());
    principal.scopes = record.scopes.clone();
    principal
}

fn deny_text(error: &PluginError) -> String {
    format!("DENY {}: {error}", status_text(error))
}

/// `403`, or `401 invalid_client` when the error has an OAuth code.
fn status_text(error: &PluginError) -> String {
    match error.code() {
        Some(code) => format!("{} {code}", error.status),
        None => error.status.to_string(),
    }
}

fn scopes_text(principal: &Principal) -> String {
    if principal.scopes.is_empty() {
        "none".to_string()
    } else {
        principal
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `--header` values, plus Referer and Origin from `--referer`.
fn request_headers(args: &ExplainArgs) -> Result<Vec<Header>, String> {
    let mut headers = Vec::new();
    for raw in &args.headers {
        let Some((name, value)) = raw.split_once(':') else {
            return Err(format!("--header `{raw}`: expected `Name: value`"));
        };
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("--header `{raw}`: `{name}` is not a header name"));
        }
        headers.push(Header::new(name.to_ascii_lowercase(), value.trim()));
    }
    if let Some(referer) = &args.referer {
        let origin = origin_of(referer)
            .ok_or_else(|| format!("--referer `{referer}`: expected an absolute URL such as https://app.example.com/page"))?;
        headers.push(Header::new("referer", referer.as_str()));
        headers.push(Header::new("origin", origin));
    }
    Ok(headers)
}

/// `scheme://host[:port]` of an absolute URL.
fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

fn parse_time(text: &str) -> Result<i64, String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            format!("--at `{text}`: not an RFC 3339 time ({e}), e.g. 2027-06-01T12:00:00Z")
        })?;
    Ok((at.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn format_time(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// What the endpoint would see as its base URL (public URL or listen address).
fn base_url(config: &Config, mount: &str) -> String {
    let mount = if mount == "/" { "" } else { mount };
    match &config.server.public_url {
        Some(public) => format!("{}{mount}", public.trim_end_matches('/')),
        None => {
            let scheme = if config.server.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{}{mount}", config.server.listen)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(headers: &[&str], referer: Option<&str>) -> ExplainArgs {
        ExplainArgs {
            provider: "p".into(),
            from: "127.0.0.1".parse().unwrap(),
            referer: referer.map(str::to_string),
            headers: headers.iter().map(|h| h.to_string()).collect(),
            at: None,
            method: "GET".into(),
            path: "/".into(),
        }
    }

    #[test]
    fn referer_adds_referer_and_its_origin() {
        let headers = request_headers(&args(
            &["X-Test:  yes "],
            Some("https://user@app.example.com:8443/page?q=1"),
        ))
        .unwrap();
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|h| (h.name.as_str(), h.value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("x-test", "yes"),
                ("referer", "https://user@app.example.com:8443/page?q=1"),
                ("origin", "https://app.example.com:8443"),
            ]
        );
    }

    #[test]
    fn malformed_headers_referers_and_times_are_usage_errors() {
        assert!(request_headers(&args(&["no colon"], None))
            .unwrap_err()
            .contains("Name: value"));
        assert!(request_headers(&args(&[": v"], None)).is_err());
        assert!(request_headers(&args(&[], Some("app.example.com"))).is_err());
        assert!(parse_time("tomorrow").unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(format_time(1000), "1970-01-01T00:00:01Z");
    }
}
