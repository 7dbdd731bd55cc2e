//! `scimgate check-connection`: what One Identity Manager's "Test" button
//! does, against any SCIM 2.0 service: (1) a client-credentials token
//! (`client_secret_basic`, RFC 6749 §2.3.1), then with it (2) GET
//! ServiceProviderConfig, (3) GET ResourceTypes, (4) GET Schemas and
//! (5) GET Users?count=1 — each step with its HTTP status, its time and, on
//! failure, the cause in words. The client secret is read from a file only
//! and never printed (any echo of it is masked). Exit status: 0 when every
//! step passed, 1 when one failed, 2 on a usage error.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

/// The service to check, as the command line gives it.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckConnectionArgs {
    /// The SCIM base URL, e.g. https://vault.example.com/iso/scim/v2.
    pub url: String,
    /// The OAuth2 client ID.
    #[arg(long)]
    pub client_id: String,
    /// A file holding the client secret (one trailing newline is ignored).
    #[arg(long)]
    pub client_secret_file: PathBuf,
    /// The token endpoint (default: URL with its trailing `/scim/v2`
    /// replaced by `/oauth2/token`).
    #[arg(long)]
    pub token_url: Option<String>,
    /// Space-separated scopes to ask for (default: none, the client's own).
    #[arg(long)]
    pub scope: Option<String>,
    /// Time allowed for each request, e.g. 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = scimgate_abi::units::parse_duration)]
    pub timeout: Duration,
    /// A PEM file of CA certificates to trust for https instead of the
    /// public roots (a private CA, a test certificate).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
}

/// The command: run the steps, print them, exit 0 / 1 / 2.
pub fn run(args: CheckConnectionArgs) -> ExitCode {
    let secret = match read_secret(&args.client_secret_file) {
        Ok(secret) => secret,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let tls = match args.ca_file.as_deref().map(tls_trusting).transpose() {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let base = args.url.trim_end_matches('/').to_string();
    let token_url = match &args.token_url {
        Some(url) => url.clone(),
        None => match derive_token_url(&base) {
            Some(url) => url,
            None => {
                eprintln!(
                    "error: cannot derive the token URL from {base} (it does not end in /scim/v2); pass --token-url"
                );
                return ExitCode::from(2);
            }
        },
    };
    let report = check(&args, tls, &base, &token_url, &secret);
    // Belt and braces: nothing echoed by the service may show the secret.
    print!("{}", mask(&report.text, &secret));
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The printed steps and whether all passed.
struct Report {
    text: String,
    passed: bool,
}

/// The secret from its file: one trailing `\n` (or `\r\n`) trimmed.
fn read_secret(path: &std::path::Path) -> Result<String, String> {
    read_secret_file(path, "client secret")
}

/// A secret (`what`: "client secret", "token") from its file: one trailing
/// `\n` (or `\r\n`) trimmed; an empty one is an error. The messages name
/// the file, never its content.
pub(crate) fn read_secret_file(path: &std::path::Path, what: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    let secret = text
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&text);
    if secret.is_empty() {
        return Err(format!("the {what} file {} is empty", path.display()));
    }
    Ok(secret.to_string())
}

/// A TLS client trusting only the CA certificates of `path` (`--ca-file`).
pub(crate) fn tls_trusting(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert = cert.map_err(|e| format!("the CA file {} is not PEM: {e}", path.display()))?;
        roots.add(cert).map_err(|e| {
            format!(
                "the CA file {} holds an unusable certificate: {e}",
                path.display()
            )
        })?;
    }
    if roots.is_empty() {
        return Err(format!(
            "the CA file {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        ));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS setup: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `…/scim/v2` → `…/oauth2/token`.
pub(crate) fn derive_token_url(base: &str) -> Option<String> {
    let prefix = base.strip_suffix("/scim/v2")?;
    Some(format!("{prefix}/oauth2/token"))
}

/// `application/x-www-form-urlencoded` encoding of one value, as RFC 6749
/// §2.3.1 requires for the client id and secret before Basic encoding.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

pub(crate) fn mask(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "********")
    }
}

/// One HTTP exchange's outcome.
pub(crate) enum Exchange {
    /// A response, whatever its status.
    Answered {
        status: u16,
        content_type: String,
        www_authenticate: Option<String>,
        body: String,
    },
    /// No response: the cause in words.
    Failed(String),
}

/// A step's verdict: `Ok(summary)` or `Err(cause)`.
pub(crate) type Verdict = Result<String, String>;

/// A blocking HTTP client: `timeout` per request, redirects not followed,
/// trusting `tls`'s roots when given (else the public web roots).
pub(crate) fn build_agent(
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
    user_agent: &str,
) -> ureq::Agent {
    let mut agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .user_agent(user_agent);
    if let Some(tls) = tls {
        agent = agent.tls_config(tls);
    }
    agent.build()
}

/// The client-credentials token request (`client_secret_basic`,
/// RFC 6749 §2.3.1), answered or not; judge it with [`judge_token`].
pub(crate) fn request_token(
    agent: &ureq::Agent,
    token_url: &str,
    (client_id, secret): (&str, &str),
    scope: Option<&str>,
    timeout_text: &str,
) -> Exchange {
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        form_encode(client_id),
        form_encode(secret)
    ));
    let mut form = String::from("grant_type=client_credentials");
    if let Some(scope) = scope {
        form.push_str("&scope=");
        form.push_str(&form_encode(scope));
    }
    let sent = agent
        .post(token_url)
        .set("authorization", &format!("Basic {basic}"))
        .set("accept", "application/json")
        .set("content-type", "application/x-www-form-urlencoded")
        .send_string(&form);
    answer(sent, token_url, timeout_text)
}

fn check(
    args: &CheckConnectionArgs,
    tls: Option<Arc<rustls::ClientConfig>>,
    base: &str,
    token_url: &str,
    secret: &str,
) -> Report {
    let agent = build_agent(
        args.timeout,
        tls,
        concat!("scimgate-check-connection/", env!("CARGO_PKG_VERSION")),
    );
    let mut text = String::new();
    let _ = writeln!(
        text,
        "checking {base} as client `{}` (token from {token_url}, timeout {})",
        args.client_id,
        scimgate_abi::units::format_duration(args.timeout)
    );
    let timeout_text = scimgate_abi::units::format_duration(args.timeout);
    // Steps 2-5, and the width of the URL column.
    type Judge = fn(&Value) -> Verdict;
    let steps: [(&str, &str, Judge); 4] = [
        (
            "service config",
            "/ServiceProviderConfig",
            judge_service_provider_config,
        ),
        ("resource types", "/ResourceTypes", judge_resource_types),
        ("schemas", "/Schemas", judge_schemas),
        ("users", "/Users?count=1", judge_users),
    ];
    let width = steps
        .iter()
        .map(|(_, path, _)| base.len() + path.len())
        .chain([token_url.len()])
        .max()
        .unwrap_or(0);

    // 1. The token.
    let started = Instant::now();
    let exchange = request_token(
        &agent,
        token_url,
        (&args.client_id, secret),
        args.scope.as_deref(),
        &timeout_text,
    );
    let elapsed = started.elapsed();
    let (status, verdict, token) = judge_token(&exchange);
    step(
        &mut text,
        1,
        "token",
        ("POST", token_url, width),
        status,
        elapsed,
        &verdict,
    );
    let Some(token) = token else {
        let _ = writeln!(text, "  steps 2-5 skipped: no access token");
        finish(&mut text, 1, "token", &verdict);
        return Report {
            text,
            passed: false,
        };
    };

    // 2-5. The SCIM discovery endpoints and one page of users.
    let mut first_failure: Option<(usize, &str, String)> = None;
    let mut unreachable = false;
    for (index, (name, path, judge)) in steps.iter().enumerate() {
        let number = index + 2;
        let url = format!("{base}{path}");
        if unreachable {
            let _ = writeln!(
                text,
                "  {number}. {name:<15} GET  {url:<width$}  skipped: the service is unreachable"
            );
            continue;
        }
        let started = Instant::now();
        let sent = agent
            .get(&url)
            .set("authorization", &format!("Bearer {token}"))
            .set("accept", "application/scim+json, application/json")
            .call();
        let exchange = answer(sent, &url, &timeout_text);
        let elapsed = started.elapsed();
        let (status, verdict) = judge_scim(&exchange, *judge);
        unreachable = matches!(exchange, Exchange::Failed(_));
        step(
            &mut text,
            number,
            name,
            ("GET", &url, width),
            status,
            elapsed,
            &verdict,
        );
        if let (Err(cause), None) = (&verdict, &first_failure) {
            first_failure = Some((number, name, cause.clone()));
        }
    }
    match first_failure {
        Some((number, name, cause)) => {
            finish(&mut text, number, name, &Err(cause));
            Report {
                text,
                passed: false,
            }
        }
        None => {
            let _ = writeln!(
                text,
                "=> all 5 steps passed: the service answers as a SCIM 2.0 service provider should"
            );
            Report { text, passed: true }
        }
    }
}

fn finish(text: &mut String, number: usize, name: &str, verdict: &Verdict) {
    if let Err(cause) = verdict {
        let _ = writeln!(text, "=> failed at step {number} ({name}): {cause}");
    }
}

/// One step's line; `request` is (method, URL, width of the URL column).
fn step(
    text: &mut String,
    number: usize,
    name: &str,
    (method, url, width): (&str, &str, usize),
    status: Option<u16>,
    elapsed: Duration,
    verdict: &Verdict,
) {
    let status = status.map_or_else(|| "---".to_string(), |s| s.to_string());
    let (mark, detail) = match verdict {
        Ok(summary) => ("ok", summary.as_str()),
        Err(cause) => ("FAILED", cause.as_str()),
    };
    let _ = writeln!(
        text,
        "  {number}. {name:<15} {method:<4} {url:<width$}  {status:>3} {:>5} ms  {mark}: {detail}",
        elapsed.as_millis()
    );
}

/// A ureq result as an [`Exchange`] (ureq reports 4xx/5xx as errors).
pub(crate) fn answer(
    result: Result<ureq::Response, ureq::Error>,
    url: &str,
    timeout: &str,
) -> Exchange {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(ureq::Error::Transport(transport)) => {
            return Exchange::Failed(transport_cause(&transport, url, timeout))
        }
    };
    let status = response.status();
    let content_type = response.content_type().to_string();
    let www_authenticate = response.header("www-authenticate").map(str::to_string);
    match response.into_string() {
        Ok(body) => Exchange::Answered {
            status,
            content_type,
            www_authenticate,
            body,
        },
        Err(e) if is_timeout(&e) => {
            Exchange::Failed(format!("timeout: no complete response within {timeout}"))
        }
        Err(e) => Exchange::Failed(format!("the response body could not be read: {e}")),
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

/// Why no response came, in words.
fn transport_cause(transport: &ureq::Transport, url: &str, timeout: &str) -> String {
    let mut chain = Vec::new();
    let mut io_kind = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(transport);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        chain.push(e.to_string());
        source = e.source();
    }
    let detail = chain.first().cloned().unwrap_or_default();
    let host = host_of(url);
    let message = transport.message().unwrap_or("").to_ascii_lowercase();
    match transport.kind() {
        ureq::ErrorKind::Dns => format!("DNS: cannot resolve `{host}` ({detail})"),
        ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
            format!("invalid URL `{url}`: {transport}")
        }
        _ if message.contains("tls") => {
            let hint = if detail.contains("InvalidContentType")
                || detail.contains("corrupt message")
            {
                " (the server does not speak TLS on this port: http:// instead of https://?)"
            } else if detail.contains("certificate") {
                " (the certificate is not trusted for this name by the public web roots check-connection uses)"
            } else {
                ""
            };
            format!("TLS: the handshake with {host} failed: {detail}{hint}")
        }
        _ if matches!(
            io_kind,
            Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
        ) =>
        {
            format!("timeout: {host} did not answer within {timeout}")
        }
        _ if io_kind == Some(std::io::ErrorKind::ConnectionRefused) => {
            format!("connection refused: nothing listens on {host}")
        }
        _ if io_kind == Some(std::io::ErrorKind::ConnectionReset) => {
            format!("connection reset by {host} (a TLS port spoken to in plain HTTP, or a proxy?)")
        }
        ureq::ErrorKind::BadStatus | ureq::ErrorKind::BadHeader => {
            format!("{host} does not speak HTTP/1.1 here (an https URL sent as http?): {transport}")
        }
        _ => format!("cannot reach {host}: {transport}"),
    }
}

/// `host:port` of a URL, for messages.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}

/// Step 1: `(status, verdict, access token)`.
pub(crate) fn judge_token(exchange: &Exchange) -> (Option<u16>, Verdict, Option<String>) {
    let (status, content_type, body) = match exchange {
        Exchange::Failed(cause) => return (None, Err(cause.clone()), None),
        Exchange::Answered {
            status,
            content_type,
            body,
            ..
        } => (*status, content_type, body),
    };
    let json: Option<Value> = serde_json::from_str(body).ok();
    if status != 200 {
        let cause = match json.as_ref().and_then(|v| v["error"].as_str()) {
            Some(error) => match json.as_ref().and_then(|v| v["error_description"].as_str()) {
                Some(description) => format!("{status} {error}: {description}"),
                None => format!("{status} {error}"),
            },
            None => format!(
                "{status} without an OAuth error body ({})",
                body_excerpt(content_type, body)
            ),
        };
        let hint = match (status, json.as_ref().and_then(|v| v["error"].as_str())) {
            (401, Some("invalid_client")) => {
                " — check the client ID and secret (a scimgate gateway says the same to an address outside allowed_ips or a provider not bound to the route; its audit log names the reason)"
            }
            (404, _) => " — is the token URL right? (--token-url)",
            _ => "",
        };
        return (Some(status), Err(format!("{cause}{hint}")), None);
    }
    let Some(json) = json else {
        return (
            Some(status),
            Err(format!(
                "the token response is not JSON ({})",
                body_excerpt(content_type, body)
            )),
            None,
        );
    };
    let Some(token) = json["access_token"].as_str().filter(|t| !t.is_empty()) else {
        return (
            Some(status),
            Err("the token response has no `access_token`".to_string()),
            None,
        );
    };
    let token_type = json["token_type"].as_str().unwrap_or("");
    if !token_type.eq_ignore_ascii_case("bearer") {
        return (
            Some(status),
            Err(format!(
                "the token response's `token_type` is `{token_type}`, not `Bearer`"
            )),
            None,
        );
    }
    let mut summary = format!("{token_type} token");
    if let Some(expires_in) = json["expires_in"].as_u64() {
        let _ = write!(summary, ", expires in {expires_in} s");
    }
    if let Some(scope) = json["scope"].as_str() {
        let _ = write!(summary, ", scope \"{scope}\"");
    }
    (Some(status), Ok(summary), Some(token.to_string()))
}

/// Steps 2-5: the status, the SCIM error on failure, then the step's own
/// checks of the JSON body.
pub(crate) fn judge_scim(
    exchange: &Exchange,
    judge: fn(&Value) -> Verdict,
) -> (Option<u16>, Verdict) {
    let (status, content_type, www_authenticate, body) = match exchange {
        Exchange::Failed(cause) => return (None, Err(cause.clone())),
        Exchange::Answered {
            status,
            content_type,
            www_authenticate,
            body,
        } => (*status, content_type, www_authenticate, body),
    };
    let json: Option<Value> = serde_json::from_str(body).ok();
    if !(200..300).contains(&status) {
        let detail = json
            .as_ref()
            .and_then(|v| v["detail"].as_str())
            .map(str::to_string);
        let cause = match (status, detail) {
            (401, detail) => format!(
                "401 unauthorized: {}{}",
                detail.unwrap_or_else(|| "the access token was refused".to_string()),
                www_authenticate
                    .as_ref()
                    .map(|c| format!(" (WWW-Authenticate: {c})"))
                    .unwrap_or_default()
            ),
            (403, Some(detail)) => format!("403 forbidden: {detail}"),
            (status, Some(detail)) => format!("{status}: {detail}"),
            (status, None) => format!(
                "{status} without a SCIM error body ({})",
                body_excerpt(content_type, body)
            ),
        };
        return (Some(status), Err(cause));
    }
    match json {
        Some(json) => (Some(status), judge(&json)),
        None => (
            Some(status),
            Err(format!(
                "the body is not JSON ({})",
                body_excerpt(content_type, body)
            )),
        ),
    }
}

/// RFC 7643 §5: the features every service provider must describe.
fn judge_service_provider_config(json: &Value) -> Verdict {
    let features = ["patch", "bulk", "filter", "changePassword", "sort", "etag"];
    let missing: Vec<String> = features
        .iter()
        .filter(|f| !json[**f]["supported"].is_boolean())
        .map(|f| format!("{f}.supported"))
        .chain(
            (!json["authenticationSchemes"].is_array())
                .then(|| "authenticationSchemes".to_string()),
        )
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "required fields missing from ServiceProviderConfig: {}",
            missing.join(", ")
        ));
    }
    let yes = |f: &str| {
        if json[f]["supported"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    };
    let mut summary = format!(
        "patch {}, bulk {}, filter {}",
        yes("patch"),
        yes("bulk"),
        yes("filter")
    );
    if let Some(max) = json["filter"]["maxResults"].as_u64() {
        let _ = write!(summary, " (maxResults {max})");
    }
    let _ = write!(
        summary,
        ", sort {}, etag {}, changePassword {}",
        yes("sort"),
        yes("etag"),
        yes("changePassword")
    );
    Ok(summary)
}

/// The `Resources` of a ListResponse (or a bare array, as some services
/// answer discovery endpoints).
fn resources(json: &Value) -> Option<&Vec<Value>> {
    json["Resources"].as_array().or_else(|| json.as_array())
}

fn judge_resource_types(json: &Value) -> Verdict {
    let list = resources(json)
        .ok_or("the answer is neither a ListResponse with `Resources` nor an array")?;
    let names: Vec<&str> = list.iter().filter_map(|r| r["name"].as_str()).collect();
    let has_users = list.iter().any(|r| {
        r["endpoint"]
            .as_str()
            .is_some_and(|e| e.eq_ignore_ascii_case("/Users"))
    });
    if !has_users {
        return Err(format!(
            "no resource type with endpoint `/Users` (found: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    Ok(names.join(", "))
}

fn judge_schemas(json: &Value) -> Verdict {
    const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
    let list = resources(json)
        .ok_or("the answer is neither a ListResponse with `Resources` nor an array")?;
    if !list.iter().any(|s| s["id"].as_str() == Some(USER)) {
        return Err(format!("the core User schema ({USER}) is not listed"));
    }
    Ok(format!(
        "{} schemas, including the core User schema",
        list.len()
    ))
}

fn judge_users(json: &Value) -> Verdict {
    const LIST: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
    let Some(total) = json["totalResults"].as_u64() else {
        return Err("the ListResponse has no `totalResults`".to_string());
    };
    let listed = json["schemas"]
        .as_array()
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(LIST)));
    if !listed {
        return Err(format!("the answer's `schemas` do not name {LIST}"));
    }
    let page = json["Resources"].as_array().map_or(0, Vec::len);
    Ok(format!("totalResults {total}, {page} on this page"))
}

/// The content type and the start of a body, for messages.
pub(crate) fn body_excerpt(content_type: &str, body: &str) -> String {
    let content_type = if content_type.is_empty() {
        "no content type"
    } else {
        content_type
    };
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return format!("{content_type}, empty body");
    }
    let excerpt: String = trimmed.chars().take(80).collect();
    let excerpt = excerpt.replace(['\n', '\r'], " ");
    if trimmed.chars().count() > 80 {
        format!("{content_type}: `{excerpt}…`")
    } else {
        format!("{content_type}: `{excerpt}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_url_is_derived_from_a_scim_v2_base() {
        assert_eq!(
            derive_token_url("https://vault.example.com/iso/scim/v2").as_deref(),
            Some("https://vault.example.com/iso/oauth2/token")
        );
        assert_eq!(derive_token_url("https://vault.example.com/scim"), None);
    }

    #[test]
    fn client_credentials_are_form_encoded_before_basic() {
        assert_eq!(form_encode("client:id"), "client%3Aid");
        assert_eq!(
            form_encode("s3cret:with spaces&symbols/+=%"),
            "s3cret%3Awith+spaces%26symbols%2F%2B%3D%25"
        );
        assert_eq!(form_encode("a-b.c_d*e"), "a-b.c_d*e");
    }

    #[test]
    fn missing_service_provider_config_fields_are_named() {
        let json = serde_json::json!({
            "patch": {}, "bulk": {"supported": false}, "filter": {"supported": true},
            "changePassword": {"supported": false}, "sort": {"supported": false},
            "etag": {"supported": true}, "authenticationSchemes": []
        });
        let cause = judge_service_provider_config(&json).unwrap_err();
        assert!(cause.contains("patch.supported"), "{cause}");
        assert!(!cause.contains("bulk"), "{cause}");
    }

    #[test]
    fn oauth_errors_are_quoted_and_the_secret_is_masked() {
        let exchange = Exchange::Answered {
            status: 401,
            content_type: "application/json".into(),
            www_authenticate: None,
            body:
                r#"{"error":"invalid_client","error_description":"client authentication failed"}"#
                    .into(),
        };
        let (status, verdict, token) = judge_token(&exchange);
        assert_eq!(status, Some(401));
        assert!(token.is_none());
        assert!(verdict
            .unwrap_err()
            .starts_with("401 invalid_client: client authentication failed"));
        assert_eq!(mask("got hunter2 back", "hunter2"), "got ******** back");
    }
}
