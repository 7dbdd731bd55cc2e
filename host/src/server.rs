//! The HTTP side: axum routes every request to the pipeline whose mount is
//! the longest prefix of its path, reads the body under the configured
//! limit, resolves the client address and base URL, runs the pipeline (the
//! endpoint and outbound profiles on the blocking pool), and writes one audit
//! event per request. Also `/healthz`, `/readyz`, reload on SIGHUP and
//! graceful shutdown on SIGTERM/SIGINT. Connections (limits, header and
//! keep-alive timeouts) are [`crate::conn`]'s.
//!
//! `server.request_timeout` covers reading the body and running the
//! pipeline. Pipelines run on the blocking pool and cannot be cancelled, so
//! at most twice `server.blocking_threads` of them may be in flight (running
//! or queued, timed out or not); past that a request is answered 503 with
//! `Retry-After` at once.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
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
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{self, Config, ForwardedHeader};
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
    /// Pipelines in flight (see the module doc).
    pipelines: Arc<Semaphore>,
    pipeline_capacity: usize,
    /// One readiness probe at a time; the others answer the last result.
    probe: Arc<tokio::sync::Mutex<()>>,
    last_ready: AtomicBool,
    /// Why the server was last not ready (empty when ready), to log changes only.
    last_reasons: Mutex<Option<String>>,
}

/// Pipelines that may be in flight for a pool of `blocking_threads`: as many
/// running as the pool has threads, as many again queued.
pub fn pipeline_capacity(blocking_threads: usize) -> usize {
    blocking_threads.max(1).saturating_mul(2)
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
        let pipeline_capacity = pipeline_capacity(config.server.blocking_threads);
        Ok(Arc::new(App {
            runtime: RwLock::new(Arc::new(runtime)),
            source,
            plugin_dir,
            cache: Mutex::new(cache),
            pipelines: Arc::new(Semaphore::new(pipeline_capacity)),
            pipeline_capacity,
            probe: Arc::new(tokio::sync::Mutex::new(())),
            last_ready: AtomicBool::new(true),
            last_reasons: Mutex::new(None),
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
        for (key, changed) in [
            (
                "max_connections",
                current.server.max_connections != runtime.server.max_connections,
            ),
            (
                "blocking_threads",
                current.server.blocking_threads != runtime.server.blocking_threads,
            ),
        ] {
            if changed {
                tracing::warn!("server.{key} changed; a restart is needed for that");
            }
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
        Ok(Some(runtime)) => {
            for warning in crate::pipeline::route_warnings(config, plugin_dir, cache) {
                tracing::warn!(
                    "{}: {} ({})",
                    warning.location(&config.source),
                    warning.message,
                    warning.help.as_deref().unwrap_or_default()
                );
            }
            Ok(runtime)
        }
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
    let max_connections = app.runtime().server.max_connections;
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(handle)
        .with_state(app.clone());
    let limits = move || {
        let server = &app.runtime().server;
        crate::conn::ConnLimits {
            header_read_timeout: server.header_read_timeout,
            keep_alive_timeout: server.keep_alive_timeout,
        }
    };
    crate::conn::serve(listener, router, max_connections, limits, shutdown).await
}

async fn healthz() -> axum::response::Response {
    json_response(200, r#"{"status":"ok"}"#)
}

/// `{"status":"ready"}` (200) or `{"status":"not ready"}` (503), nothing
/// more: the reasons (store errors, hosts, paths) go to the log, once per
/// change.
async fn readyz(State(app): State<Arc<App>>) -> axum::response::Response {
    let ready = match app.probe.clone().try_lock_owned() {
        Ok(guard) => app.probe_readiness(guard).await,
        // A probe is running (perhaps stuck on a store): answer its last result.
        Err(_) => app.last_ready.load(Ordering::Relaxed),
    };
    if ready {
        json_response(200, r#"{"status":"ready"}"#)
    } else {
        json_response(503, r#"{"status":"not ready"}"#)
    }
}

impl App {
    async fn probe_readiness(&self, guard: tokio::sync::OwnedMutexGuard<()>) -> bool {
        let runtime = self.runtime();
        let timeout = runtime.server.request_timeout;
        let task = tokio::task::spawn_blocking(move || {
            let _one_probe_at_a_time = guard;
            runtime
                .endpoints()
                .into_iter()
                .filter_map(|(name, stage)| match &stage.instance {
                    ComponentInstance::Endpoint(e) => match e.ready() {
                        RResult::ROk(()) => None,
                        RResult::RErr(reason) => Some(format!("stage `{name}`: {reason}")),
                    },
                    _ => None,
                })
                .collect::<Vec<_>>()
        });
        let failures = match tokio::time::timeout(timeout, task).await {
            Ok(Ok(failures)) => failures,
            Ok(Err(error)) => vec![format!("the readiness check failed: {error}")],
            Err(_) => vec![format!(
                "the readiness check did not finish within {timeout:?}"
            )],
        };
        let ready = failures.is_empty();
        self.last_ready.store(ready, Ordering::Relaxed);
        let reasons = failures.join("; ");
        let mut last = match self.last_reasons.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.as_deref() != Some(reasons.as_str()) {
            if ready {
                if last.is_some() {
                    tracing::info!(target: "scimgate::readiness", "ready again");
                }
            } else {
                tracing::warn!(target: "scimgate::readiness", reasons = %reasons, "not ready");
            }
            *last = Some(reasons);
        }
        ready
    }
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
    // The one canonical path every stage sees; what has no single meaning
    // is refused before any stage runs.
    let (path, bad_path) = match scimgate_abi::path::canonicalize(parts.uri.path()) {
        Ok(path) => (path, None),
        Err(error) => (parts.uri.path().to_string(), Some(error)),
    };
    let client_ip = resolve_client_ip(
        peer.ip(),
        &parts.headers,
        &runtime.server.trusted_proxies,
        runtime.server.forwarded_header,
    );
    let mut audit = Audit {
        route: String::new(),
        provider: String::new(),
        client_id: String::new(),
        decision: "allow",
        stage: String::new(),
        reason: String::new(),
    };

    let route = match bad_path {
        Some(_) => None,
        None => runtime.route_for(&path).cloned(),
    };
    let response = match (bad_path, route) {
        (Some(bad_path), _) => {
            let reason = format!("invalid request path: {bad_path}");
            audit.decision = "deny";
            audit.reason = reason.clone();
            error_response(
                ErrorStyle::Scim,
                &PluginError::new(400, reason),
                &request_id,
            )
        }
        (None, None) => {
            audit.decision = "deny";
            audit.reason = "no route".into();
            let error = PluginError::new(404, format!("no route serves {path}"));
            error_response(ErrorStyle::Scim, &error, &request_id)
        }
        (None, Some(route)) => {
            audit.route = route.mount.clone();
            // The timeout covers reading the body too: a client trickling
            // its body holds a connection, not a pipeline, and not forever.
            let timeout = runtime.server.request_timeout;
            let work = serve_route(
                &app,
                route.clone(),
                runtime.clone(),
                RouteInput {
                    parts: &parts,
                    body,
                    path: &path,
                    peer,
                    client_ip,
                    request_id: &request_id,
                },
                &mut audit,
            );
            match tokio::time::timeout(timeout, work).await {
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

/// What [`serve_route`] needs of the HTTP request.
struct RouteInput<'a> {
    parts: &'a axum::http::request::Parts,
    body: Body,
    path: &'a str,
    peer: SocketAddr,
    client_ip: IpAddr,
    request_id: &'a str,
}

/// Reads the body and runs the route's pipeline (under the caller's timeout).
async fn serve_route(
    app: &App,
    route: Arc<Route>,
    runtime: Arc<Runtime>,
    input: RouteInput<'_>,
    audit: &mut Audit,
) -> Response {
    let RouteInput {
        parts,
        body,
        path,
        peer,
        client_ip,
        request_id,
    } = input;
    let limit = runtime.server.max_body_size;
    let bytes = match read_body(body, &parts.headers, limit).await {
        Ok(bytes) => bytes,
        Err(error) => {
            audit.decision = "deny";
            audit.reason = error.message.to_string();
            return error_response(route.error_style, &error, request_id);
        }
    };
    // A pipeline cannot be cancelled once on the blocking pool: bound how
    // many may be in flight, timed out or not.
    let Ok(slot) = app.pipelines.clone().try_acquire_owned() else {
        audit.decision = "error";
        audit.reason = format!(
            "busy: {} pipelines in flight (twice server.blocking_threads)",
            app.pipeline_capacity
        );
        let error = PluginError::new(503, "the server is busy; retry later")
            .with_header("retry-after", "1");
        return error_response(route.error_style, &error, request_id);
    };
    let req = Request {
        method: parts.method.as_str().into(),
        path: path[route.mount.len().min(path.len())..].to_string().into(),
        query: parts.uri.query().unwrap_or("").into(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| Header::new(n.as_str(), String::from_utf8_lossy(v.as_bytes()).as_ref()))
            .collect(),
        body: RVec::from(bytes.to_vec()),
        peer_addr: peer.to_string().into(),
        client_ip: client_ip.to_string().into(),
        request_id: request_id.into(),
        mount: route.mount.as_str().into(),
        base_url: base_url(&runtime, &parts.headers, peer.ip(), &route.mount).into(),
        received_at_unix_ms: now_unix_ms(),
        error_style: route.error_style,
        attributes: RVec::new(),
    };
    run_pipeline(route, runtime, req, slot, audit).await
}

async fn run_pipeline(
    route: Arc<Route>,
    runtime: Arc<Runtime>,
    mut req: Request,
    slot: OwnedSemaphorePermit,
    audit: &mut Audit,
) -> Response {
    let request_id = req.request_id.to_string();
    let style = route.error_style;
    if route.blocking {
        // A stage may block (argon2, a JWKS fetch): keep it off the async workers.
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
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
        let _slot = slot;
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

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy;
/// then the right-most untrusted hop of the one configured header
/// (`X-Forwarded-For` or `Forwarded`, `server.forwarded_header`). The other
/// header is ignored: a proxy that sets one of them passes the other through
/// from the client untouched.
pub fn resolve_client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let values = headers
        .get_all(header.as_str())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let hops: Vec<Option<IpAddr>> = match header {
        ForwardedHeader::XForwardedFor => values.map(parse_hop).collect(),
        ForwardedHeader::Forwarded => values
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                })
            })
            .collect(),
    };
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match *hop {
            Some(ip) if is_trusted(ip, trusted) => nearest = ip,
            Some(ip) => return ip,
            // An unreadable hop: nothing to its left can be trusted.
            None => return nearest,
        }
    }
    nearest
}

/// One hop of a forwarding header, in the address grammar every client
/// address is read with (`scimgate_abi::net`): `ip`, `ip:port`, `[v6]`,
/// `[v6]:port`, quoted or not; IPv4-mapped addresses unwrapped.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    scimgate_abi::net::parse_client_ip(raw.trim().trim_matches('"'))
}

/// The absolute URL of the mount point, for `Location` and `meta.location`.
fn base_url(runtime: &Runtime, headers: &HeaderMap, peer: IpAddr, mount: &str) -> String {
    let mount = if mount == "/" { "" } else { mount };
    if let Some(public) = &runtime.server.public_url {
        return format!("{}{mount}", public.trim_end_matches('/'));
    }
    let trusted = is_trusted(peer.to_canonical(), &runtime.server.trusted_proxies);
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
                Ok(Err(report)) => {
                    // One event per line: log lines never carry line breaks.
                    tracing::error!("reload failed; the previous configuration stays in force:");
                    for line in report.lines().filter(|l| !l.trim().is_empty()) {
                        tracing::error!("reload failed: {line}");
                    }
                }
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

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    #[test]
    fn only_the_configured_forwarding_header_is_read() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // The proxy sets Forwarded; the client's own X-Forwarded-For came through.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=203.0.113.7"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            resolve_client_ip(peer, &h, &trusted, FWD),
            ip("203.0.113.7")
        );
        assert_eq!(resolve_client_ip(peer, &h, &trusted, XFF), ip("6.6.6.6"));
        let only_forwarded = headers(&[("forwarded", "for=203.0.113.7")]);
        assert_eq!(
            resolve_client_ip(peer, &only_forwarded, &trusted, XFF),
            peer
        );
        let only_xff = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(resolve_client_ip(peer, &only_xff, &trusted, FWD), peer);
    }

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
            resolve_client_ip("127.0.0.9".parse().unwrap(), &h, &trusted, XFF),
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
            resolve_client_ip("10.0.0.1".parse().unwrap(), &h, &trusted, XFF),
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
            resolve_client_ip("::ffff:127.0.0.1".parse().unwrap(), &h, &trusted, FWD),
            "198.51.100.17".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn garbage_hop_stops_the_walk_at_the_proxy() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(
            resolve_client_ip("127.0.0.1".parse().unwrap(), &h, &trusted, XFF),
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
