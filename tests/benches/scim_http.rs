//! SCIM endpoint benchmark over real HTTP against the release binary and
//! `libscim_server.so` (a benchmark that prints figures, not a timed test).
//!
//! Run: `cargo build --release --workspace && cargo bench -p scimgate-e2e --bench scim_http`
//! Prints: (c) Bulk create throughput for the first 10k users, then fills to
//! 100k; (a) GET /Users/{id} and `userName eq` latency at 100k users;
//! (b) a full `startIndex` sync in pages of 100 (last page / first page);
//! (d) the host's RSS. `SCIM_BENCH_USERS` changes the population (default 100000).

use std::time::{Duration, Instant};

use scimgate_e2e::*;

const AUTH: &str = "Bearer bench-token";
/// The whole run stops (with what it has) after this long.
const BUDGET: Duration = Duration::from_secs(300);

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.key]
use = "demo/api-key"
header = "authorization"
keys = { "Bearer bench-token" = "p1" }

[stage.scim]
use = "scim-server/scim"

[[route]]
path = "/scim/v2"
pipeline = ["key", "scim"]

[[provider]]
id = "p1"
name = "Bench"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn report(label: &str, mut micros: Vec<u128>) {
    micros.sort_unstable();
    let mean = micros.iter().sum::<u128>() / micros.len().max(1) as u128;
    println!(
        "  {label:<34} n={:<5} mean {mean:>6} µs   p50 {:>6} µs   p99 {:>6} µs",
        micros.len(),
        percentile(&micros, 0.5),
        percentile(&micros, 0.99)
    );
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let started = Instant::now();
    let users: usize = std::env::var("SCIM_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let server = Server::start_with_env(CONFIG, &[("SCIMGATE_LOG", "warn")]);
    let base = server.url("/scim/v2");
    let mut client = KeepAliveClient::connect(&base, AUTH);
    println!(
        "scim-server benchmark: {users} users, release binary {}",
        target_dir().display()
    );

    // (c) Bulk create, 1000 operations per request.
    let BulkFill {
        ids,
        first_10k,
        elapsed: fill_time,
    } = bulk_fill_users(&mut client, "/scim/v2", users, started + BUDGET);
    println!("(c) Bulk create (1000 ops/request, one transaction each)");
    if let Some(t) = first_10k {
        println!(
            "  first 10k users: {:.2} s = {:.0} users/s (target >= 5000/s)",
            t.as_secs_f64(),
            10_000.0 / t.as_secs_f64()
        );
    }
    println!(
        "  all {} users:   {:.2} s = {:.0} users/s",
        ids.len(),
        fill_time.as_secs_f64(),
        ids.len() as f64 / fill_time.as_secs_f64()
    );

    // (a) Point reads and an indexed filter.
    println!(
        "(a) sequential latency at {} users (keep-alive client, loopback)",
        ids.len()
    );
    let n = 3000.min(ids.len());
    let step = (ids.len() / n).max(1);
    let mut micros = Vec::with_capacity(n);
    for k in 0..n {
        let id = &ids[(k * step + k * 7919) % ids.len()];
        let t = Instant::now();
        let (status, _) = client.request("GET", &format!("/scim/v2/Users/{id}"), None);
        micros.push(t.elapsed().as_micros());
        assert_eq!(status, 200);
    }
    report("GET /Users/{id}", micros);
    let mut micros = Vec::with_capacity(n);
    for k in 0..n {
        let i = (k * 7919) % ids.len();
        let t = Instant::now();
        let (status, body) = client.request(
            "GET",
            &format!("/scim/v2/Users?filter=userName%20eq%20%22USER{i:06}%22"),
            None,
        );
        micros.push(t.elapsed().as_micros());
        assert_eq!(status, 200);
        assert!(body.contains("\"totalResults\":1"), "{body}");
    }
    report("GET /Users?filter=userName eq …", micros);

    // (b) Full sync by startIndex pages of 100.
    let mut pages = Vec::new();
    let mut seen = 0usize;
    let sync = Instant::now();
    let mut start = 1;
    while started.elapsed() < BUDGET {
        let t = Instant::now();
        let (status, body) = client.request(
            "GET",
            &format!("/scim/v2/Users?startIndex={start}&count=100"),
            None,
        );
        let elapsed = t.elapsed().as_micros();
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).expect("page");
        let got = page["Resources"].as_array().map_or(0, Vec::len);
        if got == 0 {
            break;
        }
        pages.push(elapsed);
        seen += got;
        start += got;
    }
    let avg = |s: &[u128]| s.iter().sum::<u128>() as f64 / s.len().max(1) as f64;
    let first = avg(&pages[..5.min(pages.len())]);
    let last = avg(&pages[pages.len().saturating_sub(5)..]);
    println!(
        "(b) full sync by startIndex, count=100: {} pages, {seen} users in {:.2} s",
        pages.len(),
        sync.elapsed().as_secs_f64()
    );
    println!("  first 5 pages avg {first:.0} µs, last 5 pages avg {last:.0} µs: last/first = {:.2} (target <= 1.5)", last / first);
    // The same last page without the remembered position (a cold OFFSET query), for comparison.
    let t = Instant::now();
    let (status, _) = client.request(
        "GET",
        &format!(
            "/scim/v2/Users?startIndex={}&count=100",
            ids.len().saturating_sub(99).max(1)
        ),
        None,
    );
    assert_eq!(status, 200);
    println!(
        "  for comparison, the last page cold (OFFSET): {} µs",
        t.elapsed().as_micros()
    );

    // (d) Memory.
    let pid = server.pid();
    println!(
        "(d) host RSS serving {} users: VmRSS {:.1} MiB, peak VmHWM {:.1} MiB (target < 100 MiB)",
        ids.len(),
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0
    );
    if started.elapsed() >= BUDGET {
        println!(
            "(stopped at the {} s budget; figures cover what ran)",
            BUDGET.as_secs()
        );
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
