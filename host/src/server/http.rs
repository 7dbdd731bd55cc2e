//! HTTP handling: every request goes to the route whose mount is the longest
//! prefix of its canonical path; the body is read under the configured
//! limit, the route's pipeline ([`crate::pipeline::Route::run`]) runs on the
//! blocking pool, and one audit event is written and the metrics are
//! counted per request from the pipeline's [`AuditRecord`]. Also `/healthz`,
//! `/readyz` and `/metrics` (on the main listener, or on
//! `server.metrics_listen` alone).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use abi_stable::std_types::{RResult, RVec};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::routing::{get, MethodRouter};
use axum::Router;
use scimgate_abi::{ErrorStyle, Header, PluginError, Request, Response};
use tokio::net::TcpListener;

use super::forwarding::{base_url, ip_text, request_id, resolve_client_ip, socket_text};
use super::App;
use crate::pipeline::{AuditRecord, Decision, Route, Runtime};
use crate::render::error_response;

/// Connections the metrics listener serves at once.
const METRICS_CONNECTIONS: usize = 16;

/// Serves until `shutdown` resolves; in-flight requests finish first. With
/// `server.metrics_listen`, `/metrics` is served on that address alone,
/// until the same shutdown.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    #[cfg(debug_assertions)]
    test_clock::announce();
    let server = app.runtime().server.clone();
    let max_connections = server.max_connections;
    let limits = {
        let app = app.clone();
        move || {
            let server = &app.runtime().server;
            crate::conn::ConnLimits {
                header_read_timeout: server.header_read_timeout,
                keep_alive_timeout: server.keep_alive_timeout,
            }
        }
    };
    let metrics_listener = match app.metrics_listener.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    };
    // The router's own paths; every other one goes to `handle`, directly
    // (`crate::conn::Direct`) or as the router's fallback.
    let mut own: Vec<(&'static str, MethodRouter<Arc<App>>)> =
        vec![("/healthz", get(healthz)), ("/readyz", get(readyz))];
    if server.metrics && server.metrics_listen.is_none() {
        own.push(("/metrics", get(metrics)));
        let at = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let scheme = if app.tls.is_some() { "https" } else { "http" };
        tracing::info!("metrics: {scheme}://{at}/metrics");
    }
    let paths: Vec<&'static str> = own.iter().map(|(path, _)| *path).collect();
    let router = own
        .into_iter()
        .fold(Router::new(), |router, (path, method)| {
            router.route(path, method)
        })
        .fallback(handle)
        .with_state(app.clone());
    let routes = crate::conn::Routes {
        router,
        fallback: Some(crate::conn::Direct {
            paths: paths.into(),
            handler: {
                let app = app.clone();
                Arc::new(move |peer, request| {
                    Box::pin(handle(State(app.clone()), ConnectInfo(peer), request))
                })
            },
        }),
    };

    let (stopped, stop) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stopped.send(true);
    };
    let metrics_server = match metrics_listener {
        Some(std_listener) => {
            let listener = TcpListener::from_std(std_listener)?;
            let at = listener.local_addr()?;
            tracing::info!("metrics: http://{at}/metrics (server.metrics_listen)");
            let router = Router::new()
                .route("/metrics", get(metrics))
                .with_state(app.clone());
            let mut stop = stop;
            let until = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            let gauge = Arc::new(crate::metrics::Gauge::default());
            let limits = limits.clone();
            Some(tokio::spawn(async move {
                crate::conn::serve(
                    listener,
                    crate::conn::Routes::router(router),
                    METRICS_CONNECTIONS,
                    limits,
                    None,
                    gauge,
                    until,
                )
                .await
            }))
        }
        None => None,
    };
    let open = app.metrics.connections_open.clone();
    let tls = app.tls.clone();
    let served = crate::conn::serve(
        listener,
        routes,
        max_connections,
        limits,
        tls,
        open,
        shutdown,
    )
    .await;
    if let Some(task) = metrics_server {
        match task.await {
            Ok(Err(error)) => tracing::error!("the metrics listener failed: {error}"),
            Err(error) => tracing::error!("the metrics listener failed: {error}"),
            Ok(Ok(())) => {}
        }
    }
    served
}

/// `GET /metrics`: the Prometheus text exposition (docs/deployment.md,
/// "Metrics").
async fn metrics(State(app): State<Arc<App>>) -> axum::response::Response {
    let mut resp = axum::response::Response::new(Body::from(app.render_metrics()));
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
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
                .filter_map(|(name, stage)| match stage.component.ready() {
                    RResult::ROk(()) => None,
                    RResult::RErr(reason) => Some(format!("stage `{name}`: {reason}")),
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

async fn handle(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> axum::response::Response {
    let started = Instant::now();
    let runtime = app.runtime();
    let (parts, body) = request.into_parts();
    let request_id = request_id(&parts.headers);
    // The one canonical path every stage sees; what has no single meaning
    // is refused before any stage runs.
    let (path, bad_path) = match scimgate_abi::path::canonicalize(parts.uri.path()) {
        Ok(path) => (path, None),
        Err(error) => (parts.uri.path().to_string(), Some(error)),
    };
    let client_ip = ip_text(resolve_client_ip(
        peer.ip(),
        &parts.headers,
        &runtime.server.trusted_proxies,
        runtime.server.forwarded_header,
    ));

    let route = match bad_path {
        Some(_) => None,
        None => runtime.route_for(&path).cloned(),
    };
    let (response, mut audit) = match (bad_path, route) {
        (Some(bad_path), _) => {
            let reason = format!("invalid request path: {bad_path}");
            let error = PluginError::new(400, reason.as_str());
            let mut audit = AuditRecord::new("");
            audit.refuse(Decision::Deny, reason);
            (error_response(ErrorStyle::Scim, &error, &request_id), audit)
        }
        (None, None) => {
            let mut audit = AuditRecord::new("");
            audit.refuse(Decision::Deny, "no route");
            let error = PluginError::new(404, format!("no route serves {path}"));
            (error_response(ErrorStyle::Scim, &error, &request_id), audit)
        }
        (None, Some(route)) => {
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
                    client_ip: &client_ip,
                    request_id: &request_id,
                },
            );
            match tokio::time::timeout(timeout, work).await {
                Ok(done) => done,
                Err(_) => {
                    let mut audit = AuditRecord::new(&route.mount);
                    audit.refuse(
                        Decision::Error,
                        format!("request timed out after {timeout:?}"),
                    );
                    let error = PluginError::new(
                        503,
                        format!("the request did not complete within {timeout:?}"),
                    )
                    .with_header("retry-after", "1");
                    (
                        error_response(route.error_style, &error, &request_id),
                        audit,
                    )
                }
            }
        }
    };

    audit.status = response.status;
    let status = audit.status;
    let decision = audit.decision.as_str();
    let elapsed = started.elapsed();
    let mints_tokens = !audit.route.is_empty() && runtime.mints_tokens(&audit.route);
    app.metrics.observe(&audit, elapsed, mints_tokens);
    crate::logging::write_audit(&crate::logging::AuditLine {
        request_id: &request_id,
        route: &audit.route,
        method: parts.method.as_str(),
        path: &path,
        status,
        provider: &audit.provider,
        client_id: &audit.client_id,
        client_ip: &client_ip,
        decision,
        stage: &audit.stage,
        reason: &audit.reason,
        latency_us: elapsed.as_micros() as u64,
    });
    into_http(response, &request_id)
}

/// What [`serve_route`] needs of the HTTP request.
struct RouteInput<'a> {
    parts: &'a axum::http::request::Parts,
    body: Body,
    path: &'a str,
    peer: SocketAddr,
    /// As text (the address's `Display`).
    client_ip: &'a str,
    request_id: &'a str,
}

/// Reads the body and runs the route's pipeline, holding one of the bounded
/// pipeline slots (none free: 503 busy, before any stage): inline on this
/// worker where the route allows, else, or from the stage that suspended
/// it, on the blocking pool (under the caller's timeout).
async fn serve_route(
    app: &App,
    route: Arc<Route>,
    runtime: Arc<Runtime>,
    input: RouteInput<'_>,
) -> (Response, AuditRecord) {
    let RouteInput {
        parts,
        body,
        path,
        peer,
        client_ip,
        request_id,
    } = input;
    let refused = |decision: Decision, reason: String, error: &PluginError| {
        let mut audit = AuditRecord::new(&route.mount);
        audit.refuse(decision, reason);
        (error_response(route.error_style, error, request_id), audit)
    };
    let limit = runtime.server.max_body_size;
    let bytes = match read_body(body, &parts.headers, limit).await {
        Ok(bytes) => bytes,
        Err(error) => return refused(Decision::Deny, error.message.to_string(), &error),
    };
    let req = Request {
        method: parts.method.as_str().into(),
        path: path[route.mount.len().min(path.len())..].to_string().into(),
        query: parts.uri.query().unwrap_or("").into(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| match std::str::from_utf8(v.as_bytes()) {
                Ok(text) => Header::new(n.as_str(), text),
                Err(_) => Header::new(n.as_str(), String::from_utf8_lossy(v.as_bytes()).as_ref()),
            })
            .collect(),
        body: RVec::from(bytes.to_vec()),
        peer_addr: socket_text(peer).into(),
        client_ip: client_ip.into(),
        request_id: request_id.into(),
        mount: route.mount.as_str().into(),
        base_url: base_url(&runtime.server, parts, peer.ip(), &route.mount).into(),
        received_at_unix_ms: now_unix_ms(),
        error_style: route.error_style,
        // The connection's TLS facts (`tls.*`, see `Request::attributes`).
        attributes: parts
            .extensions
            .get::<Arc<crate::tls::PeerTls>>()
            .map(|tls| {
                tls.attributes
                    .iter()
                    .map(|(name, value)| Header::new(*name, value.as_str()))
                    .collect()
            })
            .unwrap_or_default(),
    };
    // Every pipeline holds one of the bounded slots while it runs, inline
    // ones too: a request the server has no room for is refused before
    // any stage runs (no policy has counted it, no authenticator has
    // seen it), and one suspended inline always has a slot to resume in.
    let Ok(slot) = app.pipelines.clone().try_acquire_owned() else {
        let error = PluginError::new(503, "the server is busy; retry later")
            .with_header("retry-after", "1");
        let reason = format!(
            "busy: {} pipelines in flight (twice server.blocking_threads)",
            app.pipeline_capacity
        );
        return refused(Decision::Error, reason, &error);
    };
    // A route whose stages do not block, or know inline calls, runs here on
    // the async worker, with no hand-off; a stage that would block
    // suspends the request, which goes on from that stage on the blocking
    // pool.
    let (req, suspended) = if route.inline.is_some() {
        // Plugins' log lines on this thread carry the request's id.
        let _request = crate::host_services::RequestScope::enter(req.request_id.as_str());
        match route.run_inline(req, &runtime.providers) {
            Ok(done) => return done,
            Err((req, suspended)) => (req, Some(suspended)),
        }
    } else {
        (req, None)
    };
    // Otherwise the pipeline runs, or goes on, on the blocking pool,
    // holding its slot until it returns: it cannot be cancelled there, so
    // the slots bound how many may be in flight, timed out or not.
    let task = {
        let route = route.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let _request = crate::host_services::RequestScope::enter(req.request_id.as_str());
            match suspended {
                Some(suspended) => route.resume(req, suspended, &runtime.providers),
                None => route.run(req, &runtime.providers),
            }
        })
    };
    match task.await {
        Ok(done) => done,
        Err(join_error) => refused(
            Decision::Error,
            format!("pipeline task failed: {join_error}"),
            &PluginError::internal("pipeline task failed"),
        ),
    }
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
    // A request without a body (a GET) has nothing to collect.
    if axum::body::HttpBody::is_end_stream(&body) {
        return Ok(Bytes::new());
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
    let mut headers = HeaderMap::with_capacity(resp.headers.len() + 1);
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
        headers.insert(X_REQUEST_ID, value);
    }
    let body = Body::from(Bytes::from_owner(RVecBytes(resp.body)));
    let mut out = axum::response::Response::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

/// Named once: a `&str` name is parsed again at every use.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Lets `Bytes` own a plugin's `RVec<u8>` without copying it.
struct RVecBytes(RVec<u8>);

impl AsRef<[u8]> for RVecBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

/// A request's `received_at_unix_ms`, the "now" every stage judges by: the
/// wall clock, or in debug builds only the test clock ([`test_clock`]) when
/// one is set.
fn now_unix_ms() -> i64 {
    #[cfg(debug_assertions)]
    if let Some(ms) = test_clock::now_ms() {
        return ms;
    }
    wall_clock_ms()
}

fn wall_clock_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The test clock, a hook for the end-to-end tests that exists in debug
/// builds only (`#[cfg(debug_assertions)]`: a release build contains neither
/// this code nor the variable's name). When `SCIMGATE_TEST_CLOCK_FILE` names
/// a file, each request's "now" is the integer in it (unix milliseconds),
/// read afresh for every request, so a test moves time by rewriting the file
/// instead of sleeping. An unreadable file falls back to the wall clock with
/// an error in the log.
#[cfg(debug_assertions)]
pub(crate) mod test_clock {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;

    pub(crate) const VAR: &str = "SCIMGATE_TEST_CLOCK_FILE";

    fn path() -> Option<&'static Path> {
        static PATH: OnceLock<Option<PathBuf>> = OnceLock::new();
        PATH.get_or_init(|| {
            let path = PathBuf::from(std::env::var_os(VAR).filter(|v| !v.is_empty())?);
            tracing::warn!(
                "test clock: request times come from {} ({VAR}; debug builds only)",
                path.display()
            );
            Some(path)
        })
        .as_deref()
    }

    /// Logs that the test clock is on, if it is (once, at startup).
    pub(crate) fn announce() {
        path();
    }

    /// The test clock's time, when one is set and readable.
    pub(crate) fn now_ms() -> Option<i64> {
        let path = path()?;
        match read(path) {
            Ok(ms) => Some(ms),
            Err(e) => {
                tracing::error!("test clock: {e}; using the wall clock");
                None
            }
        }
    }

    pub(crate) fn read(path: &Path) -> Result<i64, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        text.trim().parse().map_err(|_| {
            format!(
                "{} holds no unix time in ms: `{}`",
                path.display(),
                text.trim()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(debug_assertions)]
    #[test]
    fn the_test_clock_reads_unix_ms_from_its_file() {
        let file = std::env::temp_dir().join(format!("scimgate-clock-{}", std::process::id()));
        std::fs::write(&file, "1700000000123\n").unwrap();
        assert_eq!(test_clock::read(&file), Ok(1_700_000_000_123));
        std::fs::write(&file, "soon").unwrap();
        assert!(test_clock::read(&file).unwrap_err().contains("`soon`"));
        std::fs::remove_file(&file).unwrap();
        assert!(test_clock::read(&file).unwrap_err().contains("cannot read"));
    }

    /// Run with `cargo test -p scimgate --release --lib`: a release build
    /// has no test clock, whatever the environment says.
    #[cfg(not(debug_assertions))]
    #[test]
    fn release_builds_ignore_the_test_clock() {
        let file = std::env::temp_dir().join(format!("scimgate-clock-{}", std::process::id()));
        std::fs::write(&file, "0").unwrap();
        std::env::set_var("SCIMGATE_TEST_CLOCK_FILE", &file);
        // 2020-01-01: the wall clock, not the file's 1970.
        assert!(now_unix_ms() > 1_577_836_800_000);
        std::fs::remove_file(&file).unwrap();
    }
}
