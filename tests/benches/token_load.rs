//! Token endpoint throughput, end to end: the release `scimgate` binary with
//! the real plugins, N client threads sending one request per connection
//! (no keep-alive) over loopback for a few seconds each: client-credentials
//! token requests (Basic), then GETs with a bearer token on the protected
//! route (the SCIM endpoint when `libscim_server.so` is built, else the demo
//! echo endpoint). Prints requests/s and mean/p99 latency; never fails on a
//! slow machine.
//!
//! ```sh
//! cargo build --release --workspace
//! cargo bench -p scimgate-e2e --bench token_load   # runs target/release
//! ```
//! `TOKEN_LOAD_SECS` (default 5) sets the time per run.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine;
use scimgate_e2e::{send_from, target_dir, Server};

const CLIENT_ID: &str = "oim-prod";
const SECRET: &str = "bench-secret-0123456789abcdef0123456789abcdef";

fn config(endpoint: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

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
{endpoint}

[[route]]
path = "/iso/oauth2/token"
pipeline = ["client-auth", "active", "validity", "ips", "referrers", "token"]

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scim"]

[[provider]]
id = "oim-prod"
name = "One Identity Manager"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "{CLIENT_ID}"
client_secret = "${{BENCH_SECRET}}"
allowed_ips = ["127.0.0.0/8"]
scopes = ["scim:read", "scim:write"]
"#
    )
}

struct Figures {
    requests: usize,
    failures: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

/// `threads` clients, each bound to its own 127.0.0.x address, sending
/// `request` back to back for `secs` seconds.
fn run<F>(threads: usize, secs: u64, request: F) -> Figures
where
    F: Fn(IpAddr) -> u16 + Send + Sync + Copy + 'static,
{
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            std::thread::spawn(move || {
                let local: IpAddr = format!("127.0.0.{}", 10 + i).parse().expect("ip");
                let mut lat = Vec::new();
                let mut failures = 0;
                while Instant::now() < until {
                    let t = Instant::now();
                    let status = request(local);
                    lat.push(t.elapsed().as_micros() as u64);
                    if status != 200 {
                        failures += 1;
                    }
                }
                (lat, failures)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    let mut failures = 0;
    for h in handles {
        let (lat, f) = h.join().expect("client thread");
        latencies_us.extend(lat);
        failures += f;
    }
    Figures {
        requests: latencies_us.len(),
        failures,
        elapsed: started.elapsed(),
        latencies_us,
    }
}

fn report(name: &str, threads: usize, mut f: Figures) {
    f.latencies_us.sort_unstable();
    let n = f.latencies_us.len().max(1);
    let mean = f.latencies_us.iter().sum::<u64>() as f64 / n as f64;
    let p99 = f.latencies_us[((n * 99) / 100).min(n - 1)];
    println!(
        "{name:<28} threads={threads}  {:>8.0} req/s  mean {:>7.0} µs  p99 {:>7} µs  ({} requests, {} not 200)",
        f.requests as f64 / f.elapsed.as_secs_f64(),
        mean,
        p99,
        f.requests,
        f.failures
    );
}

fn main() {
    let secs: u64 = std::env::var("TOKEN_LOAD_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let scim = target_dir().join("libscim_server.so").is_file();
    let endpoint = if scim {
        "[stage.scim]\nuse = \"scim-server/scim\"\nstore = \"sqlite:scim.db\"\n"
    } else {
        "[stage.scim]\nuse = \"demo/echo\"\n"
    };
    let server = Server::start_with_env(
        &config(endpoint),
        &[("BENCH_SECRET", SECRET), ("SCIMGATE_LOG", "warn")],
    );
    println!(
        "scimgate {} (plugins in {}), protected endpoint: {}, {secs} s per run, one connection per request",
        server.base,
        target_dir().display(),
        if scim { "scim-server/scim (GET /Users)" } else { "demo/echo" }
    );
    let token_url: &'static str = Box::leak(server.url("/iso/oauth2/token").into_boxed_str());
    let users_url: &'static str = Box::leak(server.url("/iso/scim/v2/Users").into_boxed_str());
    let basic: &'static str = Box::leak(
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{SECRET}"))
        )
        .into_boxed_str(),
    );
    let token_request = move |local: IpAddr| {
        send_from(
            Some(local),
            "POST",
            token_url,
            &[
                ("authorization", basic),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            Some("grant_type=client_credentials"),
        )
        .status
    };
    let first = send_from(
        None,
        "POST",
        token_url,
        &[
            ("authorization", basic),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let token: &'static str = Box::leak(
        format!(
            "Bearer {}",
            first.json()["access_token"].as_str().expect("token")
        )
        .into_boxed_str(),
    );
    let scim_get = move |local: IpAddr| {
        send_from(
            Some(local),
            "GET",
            users_url,
            &[("authorization", token)],
            None,
        )
        .status
    };
    for threads in [2, 4] {
        report(
            "POST /iso/oauth2/token",
            threads,
            run(threads, secs, token_request),
        );
        report(
            "GET /iso/scim/v2/Users",
            threads,
            run(threads, secs, scim_get),
        );
    }
}
