//! What the change log costs a SCIM write: two servers on the same store
//! kind, one with `change_log = true` (the default) and one with
//! `change_log = false`, measured side by side in one run over real HTTP
//! against the release binary: `POST /Users` and `PATCH /Users/{id}`
//! latency, the requests of the two servers interleaved so that machine
//! noise hits both alike, with the on/off ratio (target: under 1.10). On
//! SQLite, and on PostgreSQL when `SCIMGATE_TEST_POSTGRES_URL` is set.
//! Prints figures; never fails on a slow machine.
//!
//! Run: `cargo build --release --workspace`, optionally start a cluster
//! (`eval "$(tests/pg-cluster start DIR)"`), then
//! `cargo bench -p scimgate-e2e --bench changelog_overhead` (the bench profile runs the
//! binaries of target/release).
//! `CHANGELOG_BENCH_SAMPLES` sets the writes per kind and server (default 2000).

use std::time::Instant;

use scimgate_e2e::*;

const AUTH: &str = "Bearer bench-token";

struct Side {
    _server: Server,
    client: KeepAliveClient,
    ids: Vec<String>,
    post: Vec<u128>,
    patch: Vec<u128>,
}

impl Side {
    fn start(store_options: &str, change_log: bool, env: &[(&str, &str)]) -> Side {
        let mut envs = vec![("SCIMGATE_LOG", "warn")];
        envs.extend_from_slice(env);
        let options = format!("{store_options}\nchange_log = {change_log}\n");
        let server = Server::start_with_env(&scim_route_config("bench-token", &options), &envs);
        let client = KeepAliveClient::connect(&server.url("/scim/v2"), AUTH);
        Side {
            _server: server,
            client,
            ids: Vec::new(),
            post: Vec::new(),
            patch: Vec::new(),
        }
    }

    fn post(&mut self, i: usize) {
        let body = bench_user(i).to_string();
        let t = Instant::now();
        let (status, reply) = self.client.request("POST", "/scim/v2/Users", Some(&body));
        self.post.push(t.elapsed().as_micros());
        assert_eq!(status, 201, "{reply}");
        let id = serde_json::from_str::<Value>(&reply).expect("json")["id"]
            .as_str()
            .expect("id")
            .to_string();
        self.ids.push(id);
    }

    fn patch(&mut self, k: usize) {
        let id = self.ids[(k * 7919) % self.ids.len()].clone();
        let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "title", "value": format!("t{k}")}]})
        .to_string();
        let t = Instant::now();
        let (status, reply) =
            self.client
                .request("PATCH", &format!("/scim/v2/Users/{id}"), Some(&body));
        self.patch.push(t.elapsed().as_micros());
        assert_eq!(status, 200, "{reply}");
    }
}

/// Runs both servers on the store; prints and returns (POST, PATCH) ratios.
fn compare(name: &str, on_options: &str, off_options: &str, env: &[(&str, &str)], n: usize) {
    let mut on = Side::start(on_options, true, env);
    let mut off = Side::start(off_options, false, env);
    // Warm-up (connections, statement caches), not measured.
    for i in 0..50 {
        on.post(1_000_000 + i);
        off.post(1_000_000 + i);
    }
    on.post.clear();
    off.post.clear();
    for i in 0..n {
        // Alternate who goes first, so neither side always follows the other.
        if i % 2 == 0 {
            on.post(i);
            off.post(i);
        } else {
            off.post(i);
            on.post(i);
        }
    }
    for k in 0..n {
        if k % 2 == 0 {
            on.patch(k);
            off.patch(k);
        } else {
            off.patch(k);
            on.patch(k);
        }
    }
    println!("[{name}] {n} writes of each kind per server, interleaved");
    println!(
        "  {:<22} {:>12} {:>12} {:>8}",
        "", "log on (µs)", "log off (µs)", "on/off"
    );
    for (kind, on_samples, off_samples) in [
        ("POST /Users", &on.post, &off.post),
        ("PATCH /Users/{id}", &on.patch, &off.patch),
    ] {
        let (a, b) = (latency(on_samples.clone()), latency(off_samples.clone()));
        for (label, x, y) in [
            ("mean", a.mean, b.mean),
            ("p50", a.p50, b.p50),
            ("p99", a.p99, b.p99),
        ] {
            println!(
                "  {:<22} {x:>12.0} {y:>12.0} {:>8.3}",
                format!("{kind} {label}"),
                x / y.max(f64::MIN_POSITIVE)
            );
        }
    }
}

fn main() {
    let n: usize = std::env::var("CHANGELOG_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    println!(
        "change-log overhead: sequential keep-alive client on loopback, binary {}",
        target_dir().display()
    );
    compare("SQLite", "", "", &[], n);
    match std::env::var("SCIMGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let password = std::env::var("SCIMGATE_TEST_POSTGRES_PASSWORD").unwrap_or_default();
            let schemas = [
                format!("scimgate_clb_on_{}", std::process::id()),
                format!("scimgate_clb_off_{}", std::process::id()),
            ];
            for s in &schemas {
                psql(&url, &password, &format!("CREATE SCHEMA {s}"));
            }
            let options = |schema: &str| {
                format!(
                    "store = \"{url}?options=-csearch_path%3D{schema}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\""
                )
            };
            compare(
                "PostgreSQL",
                &options(&schemas[0]),
                &options(&schemas[1]),
                &[("SCIMGATE_PG_PASSWORD", &password)],
                n,
            );
            for s in &schemas {
                psql(&url, &password, &format!("DROP SCHEMA {s} CASCADE"));
            }
        }
        _ => println!(
            "SKIPPED: PostgreSQL needs SCIMGATE_TEST_POSTGRES_URL (tests/pg-cluster start DIR)"
        ),
    }
}
