//! The whole pipeline against a bare HTTP server, side by side in one run:
//! the release `scimgate` with the real plugins (the One Identity reference
//! route: bearer, five policies, the OIM profile, the SCIM endpoint on
//! SQLite) and a bare axum server returning the same user as a fixed body,
//! both loaded by the same keep-alive load generator over loopback.
//!
//! ```sh
//! cargo build --release --workspace
//! cargo bench -p scimgate-e2e --bench pipeline_http
//! ```
//! Prints requests/s, mean/p50/p99 latency, non-2xx/connection errors and the
//! server's CPU time per request (robust to a busy machine) for
//! each round, and each scimgate round's ratio to the bare server's (the
//! mean of its rounds before and after). Never fails on a slow machine;
//! fails on a wrong answer (an error status, a broken connection).
//!
//! `PIPELINE_BENCH_SECS` (default 6) sets the time per round,
//! `PIPELINE_BENCH_USERS` (default 2000) the population. With
//! `PIPELINE_BENCH_HOLD=1` it prints both servers' addresses and a token and
//! keeps them up until stdin closes (for `perf`, `wrk`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use scimgate_e2e::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "oim-prod";
const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";
/// Set in the bare server's child process: the file with its fixed body.
const BARE_BODY_VAR: &str = "PIPELINE_BENCH_BARE_BODY";

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
ttl = "1h"
audience = "scimgate:/iso/scim/v2"
[stage.bearer]
use = "oauth2/bearer"
audience = "scimgate:/iso/scim/v2"
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
store = "sqlite:scim.db"

[[route]]
path = "/iso/oauth2/token"
pipeline = ["client-auth", "active", "validity", "ips", "referrers", "token"]
[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "oim", "scim"]
# The SCIM endpoint alone, for the cost of the stages in front of it.
[[route]]
path = "/anon/scim/v2"
pipeline = ["scim"]
anonymous = true

[[provider]]
id = "oim-prod"
name = "One Identity Manager"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim-prod"
client_secret = "${BENCH_SECRET}"
valid_from = 2026-01-01T00:00:00Z
valid_until = 2099-12-31T23:59:59Z
allowed_ips = ["127.0.0.0/8"]
access = "read-write"
scopes = ["scim:read", "scim:write"]
"#;

fn main() {
    if let Ok(body_file) = std::env::var(BARE_BODY_VAR) {
        return serve_bare(&body_file);
    }
    let secs: f64 = env_or("PIPELINE_BENCH_SECS", 6.0);
    let users: usize = env_or("PIPELINE_BENCH_USERS", 2000);
    let server = Server::start_with_env(
        CONFIG,
        // Production logging: info, flushed every 50 ms (the harness
        // writes every line at once for the tests).
        &[
            ("SCIMGATE_LOG", "info"),
            ("SCIMGATE_LOG_FLUSH", "50ms"),
            ("BENCH_SECRET", SECRET),
        ],
    );
    let addr: SocketAddr = server
        .base
        .trim_start_matches("http://")
        .parse()
        .expect("server address");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"));
    let token_body = "grant_type=client_credentials&scope=scim%3Aread%20scim%3Awrite";
    let minted = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[
            ("authorization", &format!("Basic {basic}")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some(token_body),
    );
    assert_eq!(minted.status, 200, "token: {}", minted.body);
    let token = minted.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    let bearer = format!("Bearer {token}");

    let mut client = KeepAliveClient::connect(&server.base, &bearer);
    let fill = bulk_fill_users(
        &mut client,
        "/iso/scim/v2",
        users,
        Instant::now() + Duration::from_secs(600),
    );
    assert_eq!(fill.ids.len(), users, "bulk fill");
    let (status, fixed_user) =
        client.request("GET", &format!("/iso/scim/v2/Users/{}", fill.ids[0]), None);
    assert_eq!(status, 200, "{fixed_user}");

    let bare = BareServer::start(&fixed_user);
    println!(
        "pipeline benchmark: {users} users on SQLite, {secs} s rounds after 1 s warm-up, \
         release binary {}; bare server body {} bytes",
        target_dir().display(),
        fixed_user.len()
    );
    println!(
        "{:<44} {:>9} {:>8} {:>8} {:>8} {:>7} {:>6} {:>8}",
        "round", "req/s", "mean µs", "p50 µs", "p99 µs", "errors", "ratio", "CPU µs"
    );

    if std::env::var_os("PIPELINE_BENCH_HOLD").is_some() {
        // For profiling: keep both servers up until stdin closes.
        println!(
            "scimgate {} (GET {}/iso/scim/v2/Users/{})",
            server.base, server.base, fill.ids[0]
        );
        println!(
            "bare     http://{}/scim/v2/Users/{}",
            bare.host, fill.ids[0]
        );
        println!("authorization: {bearer}");
        std::io::stdin().lines().for_each(drop);
        return;
    }
    let host = addr.to_string();
    let get_by_id: Vec<Vec<u8>> = fill
        .ids
        .iter()
        .map(|id| get_request(&host, &format!("/iso/scim/v2/Users/{id}"), Some(&bearer)))
        .collect();
    let anon_by_id: Vec<Vec<u8>> = fill
        .ids
        .iter()
        .map(|id| get_request(&host, &format!("/anon/scim/v2/Users/{id}"), None))
        .collect();
    let by_filter: Vec<Vec<u8>> = (0..users)
        .map(|i| {
            let filter = percent_encode(&format!("userName eq \"user{i:06}\""));
            get_request(
                &host,
                &format!("/iso/scim/v2/Users?filter={filter}"),
                Some(&bearer),
            )
        })
        .collect();
    let token_requests = vec![post_request(
        &host,
        "/iso/oauth2/token",
        &format!("Basic {basic}"),
        "application/x-www-form-urlencoded",
        token_body,
    )];
    let bare_requests: Vec<Vec<u8>> = fill
        .ids
        .iter()
        .map(|id| get_request(&bare.host, &format!("/scim/v2/Users/{id}"), Some(&bearer)))
        .collect();

    let scimgate_pid = server.pid();
    let round = |name: &str, target: SocketAddr, requests: &[Vec<u8>], conns: usize| {
        let pid = if target == bare.addr {
            bare.child.id()
        } else {
            scimgate_pid
        };
        let cpu_before = cpu_ticks(pid);
        let mut figures = load(target, requests, conns, Duration::from_secs_f64(secs));
        let ticks = cpu_ticks(pid).saturating_sub(cpu_before);
        // Ticks of 1/100 s (USER_HZ) over every request sent, warm-up included.
        figures.cpu_us_per_request = ticks as f64 * 10_000.0 / figures.sent.max(1) as f64;
        assert_eq!(
            figures.errors, 0,
            "{name}: {} errors: {}",
            figures.errors, figures.first_error
        );
        figures
    };
    let bare_before = round("bare", bare.addr, &bare_requests, 16);
    let full = round("full", addr, &get_by_id, 16);
    let anon = round("anon", addr, &anon_by_id, 16);
    let filter = round("filter", addr, &by_filter, 16);
    let tokens = round("token", addr, &token_requests, 16);
    let wide = round("wide", addr, &get_by_id, 64);
    let bare_after = round("bare", bare.addr, &bare_requests, 16);
    let baseline = (bare_before.rate() + bare_after.rate()) / 2.0;
    print_row("bare axum, fixed user (c=16)", &bare_before, None);
    print_row(
        "scimgate GET by id, One Identity pipeline",
        &full,
        Some(baseline),
    );
    print_row(
        "scimgate GET by id, SCIM endpoint alone",
        &anon,
        Some(baseline),
    );
    print_row(
        "scimgate userName eq filter, pipeline",
        &filter,
        Some(baseline),
    );
    print_row(
        "scimgate token endpoint, keep-alive",
        &tokens,
        Some(baseline),
    );
    print_row("scimgate GET by id, pipeline, c=64", &wide, Some(baseline));
    print_row("bare axum, fixed user (again)", &bare_after, None);
    println!(
        "goals: GET by id ≥ 0.50 → {:.2}; filter ≥ 0.40 → {:.2}; token ≥ 0.30 → {:.2}; c=64 p99 {} µs, {} errors",
        full.rate() / baseline,
        filter.rate() / baseline,
        tokens.rate() / baseline,
        wide.p99(),
        wide.errors
    );
    println!(
        "host RSS after the run: {} MiB",
        rss_kib(server.pid()) / 1024
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// User plus system CPU time of a process so far, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn print_row(name: &str, f: &Figures, baseline: Option<f64>) {
    let ratio = baseline.map_or(String::new(), |b| format!("{:.2}", f.rate() / b));
    println!(
        "{name:<44} {:>9.0} {:>8.0} {:>8} {:>8} {:>7} {:>6} {:>8.1}",
        f.rate(),
        f.mean(),
        f.percentile(0.5),
        f.p99(),
        f.errors,
        ratio,
        f.cpu_us_per_request
    );
}

fn get_request(host: &str, path: &str, authorization: Option<&str>) -> Vec<u8> {
    let mut head =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: application/scim+json\r\n");
    if let Some(auth) = authorization {
        head.push_str(&format!("Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn post_request(
    host: &str,
    path: &str,
    authorization: &str,
    content_type: &str,
    body: &str,
) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {authorization}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One round's outcome.
struct Figures {
    elapsed: Duration,
    /// Latency of every successful request, µs.
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: String,
    /// Requests sent, warm-up included.
    sent: u64,
    /// The server's CPU time (user + system) per request sent, µs.
    cpu_us_per_request: f64,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.latencies_us.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn mean(&self) -> f64 {
        let n = self.latencies_us.len().max(1) as f64;
        self.latencies_us.iter().map(|&l| l as f64).sum::<f64>() / n
    }
    fn percentile(&self, p: f64) -> u32 {
        if self.latencies_us.is_empty() {
            return 0;
        }
        self.latencies_us[((self.latencies_us.len() - 1) as f64 * p).round() as usize]
    }
    fn p99(&self) -> u32 {
        self.percentile(0.99)
    }
}

/// `conns` keep-alive connections on one thread (like `wrk -t1`), each
/// sending `requests` in turn (starting at its own offset) for one second
/// of warm-up and then `duration`; a response must be 2xx.
fn load(target: SocketAddr, requests: &[Vec<u8>], conns: usize, duration: Duration) -> Figures {
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(requests.to_vec());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let warm_until = Instant::now() + Duration::from_secs(1);
        let tasks: Vec<_> = (0..conns)
            .map(|c| {
                let requests = requests.clone();
                tokio::spawn(connection(target, requests, c, warm_until, duration))
            })
            .collect();
        let mut figures = Figures {
            elapsed: duration,
            latencies_us: Vec::new(),
            errors: 0,
            first_error: String::new(),
            sent: 0,
            cpu_us_per_request: 0.0,
        };
        for task in tasks {
            let (latencies, errors, first_error, sent) = task.await.expect("load task");
            figures.sent += sent;
            figures.latencies_us.extend(latencies);
            if figures.first_error.is_empty() {
                figures.first_error = first_error;
            }
            figures.errors += errors;
        }
        figures.latencies_us.sort_unstable();
        figures
    })
}

/// One connection's requests: (latencies µs, errors, first error, sent).
async fn connection(
    target: SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    offset: usize,
    warm_until: Instant,
    duration: Duration,
) -> (Vec<u32>, u64, String, u64) {
    let mut sent = 0u64;
    let mut latencies = Vec::with_capacity(200_000);
    let mut errors = 0u64;
    let mut first_error = String::new();
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut next = offset * 7919;
    let mut stream: Option<tokio::net::TcpStream> = None;
    let mut until = None::<Instant>;
    loop {
        let now = Instant::now();
        let end = *until.get_or_insert_with(|| warm_until + duration);
        if now >= end {
            break;
        }
        let counted = now >= warm_until;
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match tokio::net::TcpStream::connect(target).await {
                Ok(s) => {
                    s.set_nodelay(true).ok();
                    stream.insert(s)
                }
                Err(e) => {
                    errors += 1;
                    if first_error.is_empty() {
                        first_error = format!("connect: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let request = &requests[next % requests.len()];
        next += 1;
        let started = Instant::now();
        sent += 1;
        let outcome = exchange(s, request, &mut buf).await;
        match outcome {
            Ok(status) if (200..300).contains(&status) => {
                if counted {
                    latencies.push(started.elapsed().as_micros() as u32);
                }
            }
            Ok(status) => {
                errors += 1;
                if first_error.is_empty() {
                    first_error = format!("status {status}: {}", String::from_utf8_lossy(&buf));
                }
            }
            Err(e) => {
                errors += 1;
                if first_error.is_empty() {
                    first_error = e;
                }
                stream = None;
            }
        }
    }
    (latencies, errors, first_error, sent)
}

/// Writes one request and reads its whole response into `buf` (the body
/// only, once read): the status.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<u16, String> {
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buf.clear();
    let mut chunk = [0u8; 16 * 1024];
    // The head.
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "head not UTF-8".to_string())?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") {
                return Err(format!("unexpected transfer-encoding: {v}"));
            } else if k.eq_ignore_ascii_case("connection") && v.trim().eq_ignore_ascii_case("close")
            {
                return Err("the server closed the connection".into());
            }
        }
    }
    let length = length.ok_or("no content-length")?;
    while buf.len() < head_end + length {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed in the body".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    if buf.len() > head_end + length {
        return Err("more bytes than one response".into());
    }
    buf.drain(..head_end);
    Ok(status)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The bare baseline: this bench binary again, as a child process serving
/// `GET /scim/v2/Users/{id}` with a fixed body from plain axum.
struct BareServer {
    child: Child,
    addr: SocketAddr,
    host: String,
    _dir: TempDir,
}

impl BareServer {
    fn start(body: &str) -> BareServer {
        let dir = TempDir::new("bare");
        let body_file = dir.path().join("user.json");
        std::fs::write(&body_file, body).expect("write body");
        let mut child = Command::new(std::env::current_exe().expect("bench binary"))
            .env(BARE_BODY_VAR, &body_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the bare server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("bare server address");
        let addr: SocketAddr = line.trim().parse().expect("bare server address");
        BareServer {
            child,
            addr,
            host: addr.to_string(),
            _dir: dir,
        }
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// The child process: axum on tokio's default multi-threaded runtime (as
/// the host), one route, a fixed `application/scim+json` body.
fn serve_bare(body_file: &str) {
    use axum::http::header::CONTENT_TYPE;
    let body: &'static str = std::fs::read_to_string(body_file)
        .expect("body file")
        .leak();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let app = axum::Router::new().route(
            "/scim/v2/Users/{id}",
            axum::routing::get(
                move || async move { ([(CONTENT_TYPE, "application/scim+json")], body) },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut out = std::io::stdout();
        writeln!(out, "{}", listener.local_addr().expect("address")).expect("stdout");
        out.flush().expect("stdout");
        axum::serve(listener, app).await.expect("serve");
    });
}
