//! The HTTP side: axum routes every request to the pipeline whose mount is
//! the longest prefix of its path, reads the body under the configured
//! limit, resolves the client address and base URL, runs the pipeline (the
//! endpoint and outbound profiles on the blocking pool), and writes one audit
//! event per request. Also `/healthz`, `/readyz`, reload on SIGHUP and
//! graceful shutdown on SIGTERM/SIGINT.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use abi_stable::std_types::{RResult, RVec};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use ipnet::IpNet;
use scimgate_abi::ffi::ComponentInstance;
use scimgate_abi::{ErrorStyle, Header, PluginError, Request, Response};
use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::loader::LibraryCache;
use crate::pipeline::{check_and_assemble, AssembleMode, Rejection, Route, Runtime};
use crate::render::error_response;

/// Where the configuration comes from, so that a reload reads it again.
#[derive(Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// A configuration compiled into the binary, with variables of its own
    /// (looked up before the environment).
    Embedded {
        name: String,
        text: String,
        vars: std::collections::HashMap<String, String>,
    },
}

impl ConfigSource {
    /// Reads and checks the configuration (no plugins yet). A file that is
    /// TOML yields a possibly partial config next to its diagnostics; see
    /// [`config::load_partial`]. `Err` is a printable report.
    pub fn load(&self) -> Result<(Config, Vec<config::Diagnostic>), String> {
        let result = match self {
            ConfigSource::File(path) => {
                config::load_partial(path, &|name: &str| std::env::var(name).ok())
            }
            ConfigSource::Embedded { name, text, vars } => config::parse_partial(
                config::SourceFile {
                    path: PathBuf::from(name),
                    text: text.clone(),
                },
                &|name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok()),
            ),
        };
        result.map_err(|(source, diags)| config::render_diagnostics(&source, &diags))
    }
}

/// The running server's state.
pub struct App {
    runtime: RwLock<Arc<Runtime>>,
    source: ConfigSource,
    plugin_dir: PathBuf,
    cache: Mutex<LibraryCache>,
}

impl App {
    /// Loads plugins and creates every stage; the error is printable as is.
    pub fn start(
        source: ConfigSource,
        config: &Config,
        config_diags: Vec<config::Diagnostic>,
        plugin_dir: PathBuf,
    ) -> Result<Arc<App>, String> {
        let mut cache = LibraryCache::default();
        let runtime = build_runtime(config, config_diags, &plugin_dir, &mut cache)?;
        Ok(Arc::new(App {
            runtime: RwLock::new(Arc::new(runtime)),
            source,
            plugin_dir,
            cache: Mutex::new(cache),
        }))
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the configuration again and swaps in new stages. On any error
    /// the running configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let (config, config_diags) = self.source.load()?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "plugin cache lock poisoned".to_string())?;
        let runtime = build_runtime(&config, config_diags, &self.plugin_dir, &mut cache)?;
        let current = self.runtime();
        if current.server.listen != runtime.server.listen {
            tracing::warn!(
                "server.listen changed to {}; a restart is needed for that, the server keeps listening on {}",
                runtime.server.listen,
                current.server.listen
            );
        }
        match self.runtime.write() {
            Ok(mut guard) => *guard = Arc::new(runtime),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(runtime),
        }
        Ok(())
    }
}

fn build_runtime(
    config: &Config,
    config_diags: Vec<config::Diagnostic>,
    plugin_dir: &std::path::Path,
    cache: &mut LibraryCache,
) -> Result<Runtime, String> {
    match check_and_assemble(
        config,
        config_diags,
        plugin_dir,
        cache,
        AssembleMode::Create,
    ) {
        Ok(Some(runtime)) => Ok(runtime),
        Ok(None) => Err("internal: assembly created nothing".to_string()),
        Err(diags) => Err(config::render_diagnostics(&config.source, &diags)),
    }
}

/// Serves until `shutdown` resolves; in-flight requests finish first.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(handle)
        .with_state(app);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

async fn healthz() -> axum::response::Response {
    json_response(200, r#"{"status":"ok"}"#)
}

async fn readyz(State(app): State<Arc<App>>) -> axum::response::Response {
    let runtime = app.runtime();
    let checks = tokio::task::spawn_blocking(move || {
        runtime
            .endpoints()
            .into_iter()
            .map(|(name, stage)| {
                let state = match &stage.instance {
                    ComponentInstance::Endpoint(e) => match e.ready() {
                        RResult::ROk(()) => Ok(()),
                        RResult::RErr(reason) => Err(reason.to_string()),
                    },
                    _ => Ok(()),
                };
                (name, state)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let ready = checks.iter().all(|(_, s)| s.is_ok());
    let map: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, s)| {
            (
                name,
                serde_json::Value::String(s.err().unwrap_or_else(|| "ok".into())),
            )
        })
        .collect();
    let body =
        serde_json::json!({"status": if ready { "ready" } else { "not ready" }, "checks": map});
    json_response(if ready { 200 } else { 503 }, &body.to_string())
}

fn json_response(status: u16, body: &str) -> axum::response::Response {
    let mut resp = axum::response::Response::new(Body::from(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    resp
}

/// What the audit event says about a request.
struct Audit {
    route: String,
    provider: String,
    client_id: String,
    decision: &'static str,
    stage: String,
    reason: String,
}

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let started = Instant::now();
    let runtime = app.runtime();
    let (parts, body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let client_ip = resolve_client_ip(peer.ip(), &parts.headers, &runtime.server.trusted_proxies);
    let mut audit = Audit {
        route: String::new(),
        provider: String::new(),
        client_id: String::new(),
        decision: "allow",
        stage: String::new(),
        reason: String::new(),
    };

    let response = match runtime.route_for(&path).cloned() {
        None => {
            audit.decision = "deny";
            audit.reason = "no route".into();
            let error = PluginError::new(404, format!("no route serves {path}"));
            error_response(ErrorStyle::Scim, &error, &request_id)
        }
        Some(route) => {
            audit.route = route.mount.clone();
            let limit = runtime.server.max_body_size;
            match read_body(body, &parts.headers, limit).await {
                Err(error) => {
                    audit.decision = "deny";
                    audit.reason = error.message.to_string();
                    error_response(route.error_style, &error, &request_id)
                }
                Ok(bytes) => {
                    let req = Request {
                        method: method.as_str().into(),
                        path: path[route.mount.len().min(path.len())..].to_string().into(),
                        query: parts.uri.query().unwrap_or("").into(),
                        headers: parts
                            .headers
                            .iter()
                            .map(|(n, v)| {
                                Header::new(
                                    n.as_str(),
                                    String::from_utf8_lossy(v.as_bytes()).as_ref(),
                                )
                            })
                            .collect(),
                        body: RVec::from(bytes.to_vec()),
                        peer_addr: peer.to_string().into(),
                        client_ip: client_ip.to_string().into(),
                        request_id: request_id.as_str().into(),
                        mount: route.mount.as_str().into(),
                        base_url: base_url(&runtime, &parts.headers, peer.ip(), &route.mount)
                            .into(),
                        received_at_unix_ms: now_unix_ms(),
                        error_style: route.error_style,
                        attributes: RVec::new(),
                    };
                    let timeout = runtime.server.request_timeout;
                    let run = run_pipeline(route.clone(), runtime.clone(), req, &mut audit);
                    match tokio::time::timeout(timeout, run).await {
                        Ok(resp) => resp,
                        Err(_) => {
                            audit.decision = "error";
                            audit.reason = format!("request timed out after {timeout:?}");
                            let error = PluginError::new(
                                503,
                                format!("the request did not complete within {timeout:?}"),
                            )
                            .with_header("retry-after", "1");
                            error_response(route.error_style, &error, &request_id)
                        }
                    }
                }
            }
        }
    };

    let status = response.status;
    let latency_us = started.elapsed().as_micros() as u64;
    if status >= 500 {
        tracing::error!(target: "scimgate::audit", request_id = %request_id, route = %audit.route, method = %method, path = %path,
            status, provider = %audit.provider, client_id = %audit.client_id, client_ip = %client_ip,
            decision = audit.decision, stage = %audit.stage, reason = %audit.reason, latency_us, "request failed");
    } else {
        tracing::info!(target: "scimgate::audit", request_id = %request_id, route = %audit.route, method = %method, path = %path,
            status, provider = %audit.provider, client_id = %audit.client_id, client_ip = %client_ip,
            decision = audit.decision, stage = %audit.stage, reason = %audit.reason, latency_us, "request");
    }
    into_http(response, &request_id)
}

async fn run_pipeline(
    route: Arc<Route>,
    runtime: Arc<Runtime>,
    mut req: Request,
    audit: &mut Audit,
) -> Response {
    let request_id = req.request_id.to_string();
    let style = route.error_style;
    if route.blocking {
        // A stage may block (argon2, a JWKS fetch): keep it off the async workers.
        let task = tokio::task::spawn_blocking(move || {
            let authn = route.authorize(&req, &runtime.providers)?;
            let caller = authn
                .principal
                .as_ref()
                .map(|p| (p.provider_id.to_string(), p.client_id.to_string()));
            route.inbound(&mut req, &authn)?;
            let mut resp = route.call_endpoint(&req, &authn)?;
            route.outbound(&req, &authn, &mut resp)?;
            Ok::<_, Rejection>((resp, caller))
        });
        return match task.await {
            Ok(Ok((resp, caller))) => {
                if let Some((provider, client_id)) = caller {
                    audit.provider = provider;
                    audit.client_id = client_id;
                }
                resp
            }
            Ok(Err(rejection)) => rejected(style, rejection, audit, &request_id),
            Err(join_error) => {
                audit.decision = "error";
                audit.reason = format!("pipeline task failed: {join_error}");
                error_response(
                    style,
                    &PluginError::internal("pipeline task failed"),
                    &request_id,
                )
            }
        };
    }
    let authn = match route.authorize(&req, &runtime.providers) {
        Ok(authn) => authn,
        Err(rejection) => return rejected(style, rejection, audit, &request_id),
    };
    if let Some(p) = &authn.principal {
        audit.provider = p.provider_id.to_string();
        audit.client_id = p.client_id.to_string();
    }
    if let Err(rejection) = route.inbound(&mut req, &authn) {
        return rejected(style, rejection, audit, &request_id);
    }
    let blocking = tokio::task::spawn_blocking(move || {
        let mut resp = route.call_endpoint(&req, &authn)?;
        route.outbound(&req, &authn, &mut resp)?;
        Ok::<Response, Rejection>(resp)
    });
    match blocking.await {
        Ok(Ok(resp)) => {
            audit.stage = String::new();
            resp
        }
        Ok(Err(rejection)) => rejected(style, rejection, audit, &request_id),
        Err(join_error) => {
            audit.decision = "error";
            audit.reason = format!("endpoint task failed: {join_error}");
            error_response(
                style,
                &PluginError::internal("endpoint task failed"),
                &request_id,
            )
        }
    }
}

fn rejected(
    style: ErrorStyle,
    rejection: Rejection,
    audit: &mut Audit,
    request_id: &str,
) -> Response {
    use scimgate_abi::ComponentKind;
    audit.decision = match rejection.kind {
        _ if rejection.error.status >= 500 => "error",
        ComponentKind::Authenticator | ComponentKind::Policy => "deny",
        _ => "allow",
    };
    audit.stage = rejection.stage.clone();
    audit.reason = rejection.error.to_string();
    if let Some((provider, client_id)) = &rejection.caller {
        audit.provider = provider.clone();
        audit.client_id = client_id.clone();
    }
    error_response(style, &rejection.error, request_id)
}

/// Reads the body, refusing more than `limit` bytes with 413.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, PluginError> {
    let too_large = || {
        PluginError::new(
            413,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            return Err(too_large());
        }
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(err) => {
            let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
            while let Some(e) = source {
                if e.is::<http_body_util::LengthLimitError>() {
                    return Err(too_large());
                }
                source = e.source();
            }
            Err(PluginError::new(
                400,
                format!("the request body could not be read: {err}"),
            ))
        }
    }
}

fn into_http(resp: Response, request_id: &str) -> axum::response::Response {
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    for h in resp.headers.iter() {
        match (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_str(h.value.as_str()),
        ) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => {
                tracing::warn!(header = %h.name, "a stage produced an invalid response header; dropped")
            }
        }
    }
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", value);
    }
    let body = Body::from(Bytes::from_owner(RVecBytes(resp.body)));
    let mut out = axum::response::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Lets `Bytes` own a plugin's `RVec<u8>` without copying it.
struct RVecBytes(RVec<u8>);

impl AsRef<[u8]> for RVecBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// `X-Request-Id` if it is sane (≤ 128 visible ASCII characters), else a new
/// UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn now_unix_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// IPv4-mapped IPv6 addresses become plain IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy;
/// then the right-most untrusted hop of `X-Forwarded-For` (or `Forwarded`).
pub fn resolve_client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical_ip(peer);
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let mut hops: Vec<Option<IpAddr>> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(parse_hop)
        .collect();
    if hops.is_empty() {
        hops = headers
            .get_all("forwarded")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                })
            })
            .collect();
    }
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match hop.map(canonical_ip) {
            Some(ip) if is_trusted(ip, trusted) => nearest = ip,
            Some(ip) => return ip,
            // An unreadable hop: nothing to its left can be trusted.
            None => return nearest,
        }
    }
    nearest
}

fn parse_hop(raw: &str) -> Option<IpAddr> {
    let s = raw.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = s.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let inner = s.strip_prefix('[')?.split(']').next()?;
    inner.parse().ok()
}

/// The absolute URL of the mount point, for `Location` and `meta.location`.
fn base_url(runtime: &Runtime, headers: &HeaderMap, peer: IpAddr, mount: &str) -> String {
    let mount = if mount == "/" { "" } else { mount };
    if let Some(public) = &runtime.server.public_url {
        return format!("{}{mount}", public.trim_end_matches('/'));
    }
    let trusted = is_trusted(canonical_ip(peer), &runtime.server.trusted_proxies);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let scheme = match header("x-forwarded-proto") {
        Some(p) if trusted && (p == "https" || p == "http") => p,
        _ => "http",
    };
    let sane = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    let host = trusted
        .then(|| header("x-forwarded-host"))
        .flatten()
        .filter(sane)
        .or_else(|| header("host").filter(sane))
        .map(str::to_string)
        .unwrap_or_else(|| runtime.server.listen.to_string());
    format!("{scheme}://{host}{mount}")
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Reloads the configuration on every SIGHUP.
pub async fn reload_on_sighup(app: Arc<App>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            let app = app.clone();
            let result = tokio::task::spawn_blocking(move || app.reload()).await;
            match result {
                Ok(Ok(())) => tracing::info!("configuration reloaded"),
                Ok(Err(report)) => tracing::error!(
                    "reload failed; the previous configuration stays in force:\n{report}"
                ),
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = app;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
        let trusted: Vec<IpNet> = vec!["10.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolve_client_ip("127.0.0.9".parse().unwrap(), &h, &trusted),
            "127.0.0.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn trusted_proxy_yields_rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "10.0.0.5"),
        ]);
        assert_eq!(
            resolve_client_ip("10.0.0.1".parse().unwrap(), &h, &trusted),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_header_and_mapped_addresses() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[::ffff:198.51.100.17]:4711\"",
        )]);
        assert_eq!(
            resolve_client_ip("::ffff:127.0.0.1".parse().unwrap(), &h, &trusted),
            "198.51.100.17".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn garbage_hop_stops_the_walk_at_the_proxy() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(
            resolve_client_ip("127.0.0.1".parse().unwrap(), &h, &trusted),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn request_ids_are_honoured_only_when_sane() {
        assert_eq!(
            request_id(&headers(&[("x-request-id", "abc-123")])),
            "abc-123"
        );
        let generated = request_id(&headers(&[("x-request-id", "has space")]));
        assert_ne!(generated, "has space");
        assert_eq!(generated.len(), 36);
    }
}
