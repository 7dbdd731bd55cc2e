//! The LDAP backend against the SQLite store, side by side in one run over
//! real HTTP (a benchmark that prints figures, not a timed test): one
//! release binary serves `/sql/v2` (`scim-server/scim`, SQLite) and
//! `/ldap/v2` (`ldap/directory` over slapd), both filled with the same
//! users by Bulk; then GET by id, a `userName eq` filter, and a full
//! `startIndex` sync of the directory in pages of 100 (last page / first
//! page).
//!
//! Run: `cargo build --release --workspace && cargo bench -p scimgate-e2e --bench ldap_compare`
//! It starts its own slapd with `tests/ldap-server` unless
//! `SCIMGATE_TEST_LDAP_URL` (and the other `SCIMGATE_TEST_LDAP_*`) are set.
//! `LDAP_BENCH_USERS` changes the population (default 10000).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use scimgate_e2e::*;

const AUTH: &str = "Bearer bench-token";
const BUDGET: Duration = Duration::from_secs(600);

/// A directory for the run: the one in the environment, or one we start.
struct Directory {
    url: String,
    bind_dn: String,
    password: String,
    started: Option<PathBuf>,
}

impl Directory {
    fn get() -> Directory {
        if let Ok(url) = std::env::var("SCIMGATE_TEST_LDAP_URL") {
            return Directory {
                url,
                bind_dn: std::env::var("SCIMGATE_TEST_LDAP_BIND_DN").unwrap_or_default(),
                password: std::env::var("SCIMGATE_TEST_LDAP_PASSWORD").unwrap_or_default(),
                started: None,
            };
        }
        let dir = std::env::temp_dir().join(format!("scimgate-ldap-bench-{}", std::process::id()));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ldap-server");
        let out = Command::new(&script)
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run tests/ldap-server");
        assert!(
            out.status.success(),
            "tests/ldap-server start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let var = |name: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .unwrap_or_default()
                .trim_matches('\'')
                .to_string()
        };
        Directory {
            url: var("SCIMGATE_TEST_LDAP_URL"),
            bind_dn: var("SCIMGATE_TEST_LDAP_BIND_DN"),
            password: var("SCIMGATE_TEST_LDAP_PASSWORD"),
            started: Some(dir),
        }
    }

    /// A fresh subtree with `ou=people` and `ou=groups`; its DN.
    fn subtree(&self) -> String {
        let name = format!("bench-{}", std::process::id());
        let root = format!("ou={name},dc=example,dc=com");
        let ldif = format!(
            "dn: {root}\nobjectClass: organizationalUnit\nou: {name}\n\n\
             dn: ou=people,{root}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: ou=groups,{root}\nobjectClass: organizationalUnit\nou: groups\n"
        );
        let path = std::env::temp_dir().join(format!("{name}.ldif"));
        std::fs::write(&path, ldif).expect("write ldif");
        let status = Command::new("ldapadd")
            .args([
                "-x",
                "-H",
                &self.url,
                "-D",
                &self.bind_dn,
                "-w",
                &self.password,
                "-f",
            ])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run ldapadd");
        assert!(status.success(), "ldapadd {root}");
        root
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        if let Some(dir) = &self.started {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("ldap-server");
            let _ = Command::new(script).arg("stop").arg(dir).status();
        }
    }
}

fn config(directory: &Directory, root: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.key]
use = "demo/api-key"
header = "authorization"
keys = {{ "Bearer bench-token" = "p1" }}

[stage.sql]
use = "scim-server/scim"

[stage.directory]
use = "ldap/directory"
url = "{url}"
bind_dn = "{bind_dn}"
bind_password = "${{BENCH_LDAP_PASSWORD}}"
users_base = "ou=people,{root}"
groups_base = "ou=groups,{root}"

[[route]]
path = "/sql/v2"
pipeline = ["key", "sql"]
providers = ["p1"]

[[route]]
path = "/ldap/v2"
pipeline = ["key", "directory"]
providers = ["p1"]

[[provider]]
id = "p1"
name = "Bench"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#,
        url = directory.url,
        bind_dn = directory.bind_dn,
    )
}

struct Latency {
    mean: f64,
    p50: u128,
    p99: u128,
}

fn measure(micros: &mut [u128]) -> Latency {
    micros.sort_unstable();
    Latency {
        mean: micros.iter().sum::<u128>() as f64 / micros.len().max(1) as f64,
        p50: percentile(micros, 0.5),
        p99: percentile(micros, 0.99),
    }
}

fn point_reads(client: &mut KeepAliveClient, mount: &str, ids: &[String], n: usize) -> Latency {
    let mut micros = Vec::with_capacity(n);
    for k in 0..n {
        let id = &ids[(k * 7919) % ids.len()];
        let t = Instant::now();
        let (status, _) = client.request("GET", &format!("{mount}/Users/{id}"), None);
        micros.push(t.elapsed().as_micros());
        assert_eq!(status, 200);
    }
    measure(&mut micros)
}

fn filtered_reads(client: &mut KeepAliveClient, mount: &str, users: usize, n: usize) -> Latency {
    let mut micros = Vec::with_capacity(n);
    for k in 0..n {
        let i = (k * 7919) % users;
        let t = Instant::now();
        let (status, body) = client.request(
            "GET",
            &format!("{mount}/Users?filter=userName%20eq%20%22USER{i:06}%22"),
            None,
        );
        micros.push(t.elapsed().as_micros());
        assert_eq!(status, 200);
        assert!(body.contains("\"totalResults\":1"), "{body}");
    }
    measure(&mut micros)
}

fn main() {
    let started = Instant::now();
    let users: usize = std::env::var("LDAP_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let directory = Directory::get();
    let root = directory.subtree();
    let server = Server::start_with_env(
        &config(&directory, &root),
        &[
            ("SCIMGATE_LOG", "warn"),
            ("BENCH_LDAP_PASSWORD", directory.password.as_str()),
        ],
    );
    println!(
        "LDAP vs SQLite: {users} users each, release binary {}",
        target_dir().display()
    );
    let mut sql = KeepAliveClient::connect(&server.url("/sql/v2"), AUTH);
    let mut ldap = KeepAliveClient::connect(&server.url("/ldap/v2"), AUTH);

    let deadline = started + BUDGET;
    let sql_fill = bulk_fill_users(&mut sql, "/sql/v2", users, deadline);
    let ldap_fill = bulk_fill_users(&mut ldap, "/ldap/v2", users, deadline);
    println!("fill by Bulk (1000 ops/request)");
    for (name, fill) in [("SQLite", &sql_fill), ("LDAP", &ldap_fill)] {
        println!(
            "  {name:<6} {} users in {:.2} s = {:.0} users/s",
            fill.ids.len(),
            fill.elapsed.as_secs_f64(),
            fill.ids.len() as f64 / fill.elapsed.as_secs_f64()
        );
    }

    let n = 2000.min(users);
    println!("sequential latency (keep-alive client, loopback, n={n})");
    let rows = [
        (
            "GET /Users/{id}",
            point_reads(&mut sql, "/sql/v2", &sql_fill.ids, n),
            point_reads(&mut ldap, "/ldap/v2", &ldap_fill.ids, n),
        ),
        (
            "GET /Users?filter=userName eq …",
            filtered_reads(&mut sql, "/sql/v2", sql_fill.ids.len(), n),
            filtered_reads(&mut ldap, "/ldap/v2", ldap_fill.ids.len(), n),
        ),
    ];
    for (label, s, l) in rows {
        println!(
            "  {label:<32} SQLite mean {:>6.0} µs (p50 {:>5}, p99 {:>5})   LDAP mean {:>6.0} µs (p50 {:>5}, p99 {:>5})   LDAP/SQLite {:.2}",
            s.mean, s.p50, s.p99, l.mean, l.p50, l.p99, l.mean / s.mean
        );
    }

    // Full sync of the directory by startIndex pages of 100.
    let mut pages = Vec::new();
    let mut seen = 0usize;
    let sync = Instant::now();
    let mut start = 1;
    while Instant::now() < deadline {
        let t = Instant::now();
        let (status, body) = ldap.request(
            "GET",
            &format!("/ldap/v2/Users?startIndex={start}&count=100"),
            None,
        );
        let elapsed = t.elapsed().as_micros();
        assert_eq!(status, 200, "{body}");
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
        "LDAP full sync by startIndex, count=100: {} pages, {seen} users in {:.2} s",
        pages.len(),
        sync.elapsed().as_secs_f64()
    );
    println!(
        "  first 5 pages avg {first:.0} µs, last 5 pages avg {last:.0} µs: last/first = {:.2} (target <= 1.5)",
        last / first
    );
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
