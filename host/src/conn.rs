//! The accept loop and each connection's clock: HTTP/1.1, or with
//! `[server.tls]` a TLS handshake first and then HTTP/2 (when ALPN chose
//! `h2`) or HTTP/1.1.
//!
//! * At most `server.max_connections` connections are served at once; the
//!   next one waits in the kernel's accept queue until one closes.
//! * A connection has `server.header_read_timeout` to send a request's head,
//!   counted from its start or from the first byte of the next request: a
//!   client dribbling header bytes is cut off. With TLS the handshake counts
//!   too (a failed or slow handshake closes the connection, logged at debug;
//!   plaintext HTTP on a TLS listener fails the handshake and gets no HTTP
//!   answer). On HTTP/2 the first request must start within it; later
//!   frames between requests do not restart it (the idle timeout applies).
//! * Between requests a kept-alive connection may stay idle for
//!   `server.keep_alive_timeout`, then it is closed.
//! * While a request is being served (its body read, its pipeline run) the
//!   request timeout of the handler applies instead.
//! * On shutdown no new connection is accepted, idle ones close, and busy
//!   ones finish their request first.
//! * The connections open are counted in a gauge (`scimgate_connections_open`
//!   for the main listener).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::metrics::Gauge;
use crate::tls::{PeerTls, Tls};

/// What a listener serves: its router, and optionally the handler every
/// path the router does not name goes to directly.
#[derive(Clone)]
pub struct Routes {
    pub router: Router,
    pub fallback: Option<Direct>,
}

/// A handler called without the router for every path but the router's
/// own (`paths`): no route lookup, no `ConnectInfo` extension (the peer is
/// passed along), no boxed service per request. The router must send the
/// same requests to the same handler (its fallback), so that the two ways
/// answer alike.
#[derive(Clone)]
pub struct Direct {
    /// The paths the router answers itself, exactly as it matches them.
    pub paths: Arc<[&'static str]>,
    pub handler: Arc<DirectHandler>,
}

/// The direct handler: the peer's address and the request, to the response.
pub type DirectHandler = dyn Fn(
        SocketAddr,
        axum::extract::Request,
    ) -> Pin<Box<dyn Future<Output = axum::response::Response> + Send>>
    + Send
    + Sync;

impl Routes {
    /// `router` alone.
    pub fn router(router: Router) -> Routes {
        Routes {
            router,
            fallback: None,
        }
    }
}

/// Per-connection timeouts, read when the connection is accepted (so a
/// reload applies to new connections).
#[derive(Clone, Copy, Debug)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
}

/// Accepts connections until `shutdown` resolves, then waits for the open
/// ones to finish. `limits` is asked for the current timeouts at each accept;
/// `tls`, when set, for the current TLS configuration (so that a reload's
/// certificate applies to new connections); `open` counts the connections
/// open.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    max_connections: usize,
    limits: impl Fn() -> ConnLimits,
    tls: Option<Arc<Tls>>,
    open: Arc<Gauge>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let max_connections = max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut at_limit = false;
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !at_limit {
                    at_limit = true;
                    tracing::warn!(
                        max_connections,
                        "connection limit reached: new connections wait until one closes (server.max_connections)"
                    );
                }
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    _ = &mut shutdown => break,
                }
            }
        };
        if at_limit && slots.available_permits() > 0 {
            at_limit = false;
            tracing::info!(max_connections, "below the connection limit again");
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    if !is_per_connection_error(&error) {
                        // Out of file descriptors and the like: do not spin.
                        tracing::error!("accepting a connection failed: {error}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let connection = Connection {
            stream,
            peer,
            routes: routes.clone(),
            limits: limits(),
            tls: tls.as_ref().map(|tls| tls.config()),
            stop: stop_rx.clone(),
        };
        let counted = Counted::new(open.clone());
        tokio::spawn(async move {
            connection.run().await;
            drop(counted);
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds one permit until it is closed.
    let _all_closed = slots.acquire_many(max_connections as u32).await;
    Ok(())
}

/// One open connection in its gauge, until dropped (also if its task is
/// cancelled).
struct Counted(Arc<Gauge>);

impl Counted {
    fn new(gauge: Arc<Gauge>) -> Counted {
        gauge.inc();
        Counted(gauge)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn is_per_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    )
}

struct Connection {
    stream: TcpStream,
    peer: SocketAddr,
    routes: Routes,
    limits: ConnLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
}

impl Connection {
    async fn run(self) {
        let Connection {
            stream,
            peer,
            routes,
            limits,
            tls,
            mut stop,
        } = self;
        let _ = stream.set_nodelay(true);
        // Started before any handshake: the handshake and the first request
        // head share `header_read_timeout`.
        let clock = Arc::new(Clock::new());
        let mut service = ConnService {
            inner: TowerToHyperService::new(routes.router),
            fallback: routes.fallback,
            peer,
            clock: clock.clone(),
            tls: None,
        };
        let Some(config) = tls else {
            let io = TokioIo::new(Watched {
                inner: stream,
                clock: clock.clone(),
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), &clock, limits, stop, peer).await;
            return;
        };
        let deadline = clock
            .deadline(limits)
            .map_or_else(|| Instant::now() + limits.header_read_timeout, |d| d.0);
        let handshake = tokio_rustls::TlsAcceptor::from(config).accept(stream);
        let stream = tokio::select! {
            done = tokio::time::timeout_at(deadline, handshake) => match done {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(peer = %peer, "TLS handshake failed: {error}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake did not complete within server.header_read_timeout");
                    return;
                }
            },
            _ = stop.changed() => return,
        };
        let facts = PeerTls::of(stream.get_ref().1);
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        service.tls = Some(Arc::new(facts));
        let io = TokioIo::new(Watched {
            inner: stream,
            clock: clock.clone(),
        });
        if h2 {
            clock.multiplexed();
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), &clock, limits, stop, peer).await;
        } else {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(io, service);
            drive(conn, |c| c.graceful_shutdown(), &clock, limits, stop, peer).await;
        }
    }
}

/// Runs a hyper connection (HTTP/1.1 or HTTP/2) under the clock's
/// deadlines until it ends; on shutdown asks it to finish gracefully.
///
/// The clock's deadline moves with every request, so its timer is not
/// moved with it (a timer wheel update, twice per request): it is armed no
/// later than any deadline the clock can set from now on, and when it
/// fires the deadline is read afresh, and the connection closed or the
/// timer armed again. A deadline is at least the shorter timeout away from
/// the change that sets it, so arming at most that far ahead never fires
/// late; during steady traffic the timer fires once per shorter timeout.
async fn drive<C>(
    conn: C,
    graceful_shutdown: impl Fn(Pin<&mut C>),
    clock: &Clock,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let shorter = limits.header_read_timeout.min(limits.keep_alive_timeout);
    // Armed at or before the deadline the clock has now.
    let soon = Instant::now() + shorter;
    let first = clock.deadline(limits).map_or(soon, |(at, _)| at.min(soon));
    let timer = tokio::time::sleep_until(first);
    tokio::pin!(timer);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(peer = %peer, "connection ended: {error}");
                }
                return;
            }
            () = timer.as_mut() => {
                let now = Instant::now();
                let next = match clock.deadline(limits) {
                    Some((at, why)) if at <= now => {
                        tracing::debug!(peer = %peer, "connection closed: {why}");
                        return;
                    }
                    Some((at, _)) => at.min(now + shorter),
                    // Busy: the handler's request timeout applies.
                    None => now + shorter,
                };
                timer.as_mut().reset(next);
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                graceful_shutdown(conn.as_mut());
            }
        }
    }
}

/// Where a connection is in its request cycle.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Serving requests.
    Busy(usize),
    /// Between requests, nothing received yet.
    Idle,
}

struct Clock {
    state: Mutex<(Phase, Instant)>,
    /// HTTP/2: bytes between requests (pings, window updates, settings)
    /// are not the start of a request head.
    multiplexed: std::sync::atomic::AtomicBool,
}

impl Clock {
    fn new() -> Self {
        Clock {
            state: Mutex::new((Phase::Head, Instant::now())),
            multiplexed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn multiplexed(&self) {
        self.multiplexed
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn update(&self, f: impl FnOnce(&mut (Phase, Instant))) {
        match self.state.lock() {
            Ok(mut state) => f(&mut state),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Bytes arrived: after an idle spell, a new request head has begun
    /// (HTTP/1.1 only).
    fn on_read(&self) {
        if self.multiplexed.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        self.update(|state| {
            if state.0 == Phase::Idle {
                *state = (Phase::Head, Instant::now());
            }
        });
    }

    fn enter(&self) {
        self.update(|state| {
            state.0 = match state.0 {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            };
        });
    }

    fn leave(&self) {
        self.update(|state| {
            *state = match state.0 {
                Phase::Busy(n) if n > 1 => (Phase::Busy(n - 1), state.1),
                _ => (Phase::Idle, Instant::now()),
            };
        });
    }

    /// When the connection is to be closed unless something happens first.
    fn deadline(&self, limits: ConnLimits) -> Option<(Instant, &'static str)> {
        let (phase, since) = match self.state.lock() {
            Ok(state) => *state,
            Err(poisoned) => *poisoned.into_inner(),
        };
        match phase {
            Phase::Head => Some((
                since + limits.header_read_timeout,
                "the request head did not arrive within server.header_read_timeout",
            )),
            Phase::Idle => Some((
                since + limits.keep_alive_timeout,
                "idle for server.keep_alive_timeout",
            )),
            Phase::Busy(_) => None,
        }
    }
}

/// The stream (TCP, or TLS over TCP), telling the clock when bytes arrive.
struct Watched<S> {
    inner: S,
    clock: Arc<Clock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router, with the peer address for `ConnectInfo` (and the TLS facts
/// as an `Arc<PeerTls>` extension), or the direct handler for the paths the
/// router does not name; the clock told when a request starts and ends.
struct ConnService {
    inner: TowerToHyperService<Router>,
    fallback: Option<Direct>,
    peer: SocketAddr,
    clock: Arc<Clock>,
    tls: Option<Arc<PeerTls>>,
}

/// Marks the connection busy while it lives.
struct Busy(Arc<Clock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.leave();
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for ConnService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Self::Future {
        if let Some(tls) = &self.tls {
            req.extensions_mut().insert(tls.clone());
        }
        self.clock.enter();
        let busy = Busy(self.clock.clone());
        if let Some(direct) = &self.fallback {
            if !direct.paths.contains(&req.uri().path()) {
                let future = (direct.handler)(self.peer, req.map(axum::body::Body::new));
                return Box::pin(async move {
                    let response = future.await;
                    drop(busy);
                    Ok(response)
                });
            }
        }
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let future = self.inner.call(req);
        Box::pin(async move {
            let response = future.await;
            drop(busy);
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_follows_the_request_cycle() {
        let limits = ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
        };
        let why = |clock: &Clock| clock.deadline(limits).map(|d| d.1);
        let before = Instant::now();
        let clock = Clock::new();
        let (head_deadline, reason) = clock.deadline(limits).unwrap();
        assert!(reason.contains("header_read_timeout"));
        assert!(head_deadline >= before + limits.header_read_timeout);
        assert!(head_deadline <= Instant::now() + limits.header_read_timeout);
        clock.on_read();
        assert_eq!(
            clock.deadline(limits).map(|d| d.0),
            Some(head_deadline),
            "more header bytes do not extend the deadline"
        );
        clock.enter();
        clock.enter();
        assert_eq!(why(&clock), None);
        clock.leave();
        assert_eq!(why(&clock), None, "one request still running");
        clock.leave();
        assert!(why(&clock).is_some_and(|w| w.contains("keep_alive_timeout")));
        clock.on_read();
        assert!(why(&clock).is_some_and(|w| w.contains("header_read_timeout")));
    }

    /// The connection's timer is not moved per request: a deadline the
    /// clock moves earlier (an idle connection whose next head starts) is
    /// still kept, and a busy connection is not closed.
    #[test]
    fn connections_close_at_their_deadlines() {
        let ms = Duration::from_millis;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let limits = ConnLimits {
                header_read_timeout: ms(300),
                keep_alive_timeout: ms(1500),
            };
            let (_stop_sender, stop) = watch::channel(false);
            let open_until_closed = |clock: Arc<Clock>| {
                let stop = stop.clone();
                async move {
                    let started = Instant::now();
                    let never_ends = std::future::pending::<Result<(), hyper::Error>>();
                    let peer = "127.0.0.1:1".parse().unwrap();
                    drive(never_ends, |_| {}, &clock, limits, stop, peer).await;
                    started.elapsed()
                }
            };
            // A head that never completes.
            let head = open_until_closed(Arc::new(Clock::new())).await;
            assert!(head >= ms(300) && head < ms(1000), "{head:?}");
            // Busy past the head timeout, idle, then a head that stalls:
            // closed at that head's deadline (1.8 s), before the idle one
            // (2.7 s).
            let clock = Arc::new(Clock::new());
            let requests = {
                let clock = clock.clone();
                async move {
                    clock.enter();
                    tokio::time::sleep(ms(1200)).await;
                    clock.leave();
                    tokio::time::sleep(ms(300)).await;
                    clock.on_read();
                }
            };
            let (open, ()) = tokio::join!(open_until_closed(clock), requests);
            assert!(open >= ms(1800) && open < ms(2600), "{open:?}");
        });
    }

    /// The router answers its own paths; every other path reaches the
    /// direct handler, with the peer's address, without the router.
    #[test]
    fn the_routers_paths_go_to_it_and_the_rest_directly() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let router = Router::new()
                .route("/own", axum::routing::get(|| async { "router" }))
                .fallback(|| async { "router's fallback" });
            let direct = Direct {
                paths: vec!["/own"].into(),
                handler: Arc::new(|peer: SocketAddr, request: axum::extract::Request| {
                    let text = format!("direct {} {}", peer.ip(), request.uri());
                    Box::pin(async move { axum::response::IntoResponse::into_response(text) })
                }),
            };
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let address = listener.local_addr().unwrap();
            let routes = Routes {
                router,
                fallback: Some(direct),
            };
            let limits = || ConnLimits {
                header_read_timeout: Duration::from_secs(5),
                keep_alive_timeout: Duration::from_secs(5),
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(
                listener,
                routes,
                4,
                limits,
                None,
                Arc::new(Gauge::default()),
                async move {
                    let _ = stopped.await;
                },
            ));
            let body_of = |path: &'static str| async move {
                let mut stream = TcpStream::connect(address).await.unwrap();
                let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                stream.write_all(head.as_bytes()).await.unwrap();
                let mut reply = String::new();
                stream.read_to_string(&mut reply).await.unwrap();
                reply
                    .split("\r\n\r\n")
                    .nth(1)
                    .unwrap_or_default()
                    .to_string()
            };
            assert_eq!(body_of("/own").await, "router");
            assert_eq!(body_of("/other?x=1").await, "direct 127.0.0.1 /other?x=1");
            assert_eq!(body_of("/own/").await, "direct 127.0.0.1 /own/");
            let _ = stop.send(());
            server.await.unwrap().unwrap();
        });
    }

    #[test]
    fn on_http2_frames_between_requests_do_not_start_a_head() {
        let limits = ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(60),
        };
        let why = |clock: &Clock| clock.deadline(limits).map(|d| d.1);
        let clock = Clock::new();
        clock.multiplexed();
        assert!(why(&clock).is_some_and(|w| w.contains("header_read_timeout")));
        clock.enter();
        clock.enter();
        clock.leave();
        assert_eq!(why(&clock), None, "one stream still running");
        clock.leave();
        let idle = clock.deadline(limits).unwrap();
        assert!(idle.1.contains("keep_alive_timeout"));
        // A PING or WINDOW_UPDATE: still idle, same deadline.
        clock.on_read();
        assert_eq!(clock.deadline(limits), Some(idle));
    }
}
