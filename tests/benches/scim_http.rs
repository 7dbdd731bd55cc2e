//! SCIM endpoint benchmark over real HTTP against the release binary and
//! `libscim_server.so` (a benchmark that prints figures, not a timed test).
//!
//! Run: `cargo build --release --workspace && cargo bench -p scimgate-e2e --bench scim_http`
//! Prints: (c) Bulk create throughput for the first 10k users, then fills to
//! the population; (a) GET /Users/{id} and `userName eq` latency;
//! (b) a full `startIndex` sync in pages of 100 (last page / first page);
//! (e) 16 concurrent keep-alive clients doing GET /Users/{id};
//! (d) the host's RSS; then a summary. `SCIM_BENCH_USERS` changes the
//! population (default 100000; 1000000 is the large-store run),
//! `SCIM_BENCH_BUDGET_SECS` the time budget (default 300 s, plus 1 s per
//! 1000 users beyond 100000, so 1,200 s at 1M users).

use std::time::{Duration, Instant};

use scimgate_e2e::*;

const AUTH: &str = "Bearer bench-token";

/// Concurrent clients of phase (e).
const CLIENTS: usize = 16;

/// The whole run stops (with what it has) after this long.
fn budget(users: usize) -> Duration {
    let default = 300 + users.saturating_sub(100_000) as u64 / 1000;
    let secs = std::env::var("SCIM_BENCH_BUDGET_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

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
    let budget = budget(users);
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
    } = bulk_fill_users(&mut client, "/scim/v2", users, started + budget);
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
    while started.elapsed() < budget {
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
        let first_id = page["Resources"][0]["id"].as_str().unwrap_or_default();
        assert_eq!(first_id, ids[seen], "page at startIndex {start}");
        pages.push(elapsed);
        seen += got;
        start += got;
    }
    // Page 1 also counts the population (`totalResults`). The walk's start
    // and end are the medians of 50 pages each (pages 2-51 and the last
    // 50): one slow page on a shared machine does not decide the ratio.
    let median = |s: &[u128]| {
        let mut s = s.to_vec();
        s.sort_unstable();
        s.get(s.len() / 2).copied().unwrap_or(0) as f64
    };
    let page_one = pages.first().copied().unwrap_or(0);
    let first = median(&pages[1.min(pages.len())..51.min(pages.len())]);
    let last = median(&pages[pages.len().saturating_sub(50)..]);
    let ratio = last / first;
    println!(
        "(b) full sync by startIndex, count=100: {} pages, {seen} users in {:.2} s",
        pages.len(),
        sync.elapsed().as_secs_f64()
    );
    println!("  page 1 (with the total count) {page_one} µs; pages 2-51 median {first:.0} µs, last 50 pages median {last:.0} µs: last/first = {ratio:.2} (target <= 1.5)");
    // The same last page without the remembered position (a cold startIndex), for comparison.
    let cold_start = ids.len().saturating_sub(99).max(1);
    let mut cold = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let (status, body) = client.request(
            "GET",
            &format!("/scim/v2/Users?startIndex={cold_start}&count=100"),
            None,
        );
        cold.push(t.elapsed().as_micros());
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).expect("page");
        let first_id = page["Resources"][0]["id"].as_str().unwrap_or_default();
        assert_eq!(first_id, ids[cold_start - 1], "cold startIndex page");
    }
    println!(
        "  for comparison, the last page by a cold startIndex (no walk to continue), 3 times: {cold:?} µs"
    );

    // (e) Concurrent point reads.
    let per_client = 500;
    let t = Instant::now();
    let threads: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let base = base.clone();
            let ids: Vec<String> = (0..per_client)
                .map(|k| ids[(c * 104_729 + k * 7919) % ids.len()].clone())
                .collect();
            std::thread::spawn(move || {
                let mut client = KeepAliveClient::connect(&base, AUTH);
                let mut micros = Vec::with_capacity(ids.len());
                for id in ids {
                    let t = Instant::now();
                    let (status, _) = client.request("GET", &format!("/scim/v2/Users/{id}"), None);
                    micros.push(t.elapsed().as_micros());
                    assert_eq!(status, 200);
                }
                micros
            })
        })
        .collect();
    let micros: Vec<u128> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let wall = t.elapsed().as_secs_f64();
    println!(
        "(e) {CLIENTS} concurrent clients, GET /Users/{{id}}: {:.0} requests/s",
        micros.len() as f64 / wall
    );
    report("GET /Users/{id} (concurrent)", micros);

    // (d) Memory.
    let pid = server.pid();
    let (rss, hwm) = (
        rss_kib(pid, "VmRSS:") as f64 / 1024.0,
        rss_kib(pid, "VmHWM:") as f64 / 1024.0,
    );
    println!(
        "(d) host RSS serving {} users: VmRSS {rss:.1} MiB, peak VmHWM {hwm:.1} MiB (target < 150 MiB)",
        ids.len(),
    );
    if started.elapsed() >= budget {
        println!(
            "(stopped at the {} s budget; figures cover what ran)",
            budget.as_secs()
        );
    }
    println!("summary:");
    println!(
        "  bulk load {} users: {:.1} s",
        ids.len(),
        fill_time.as_secs_f64()
    );
    println!("  last/first page ratio: {ratio:.2}");
    println!("  VmRSS/VmHWM: {rss:.1}/{hwm:.1} MiB");
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
