//! The two SCIM stores side by side in one run, over real HTTP against the
//! release binary: Bulk create of the first 10k users, then (after filling
//! to 100k) `GET /Users/{id}` and a `userName eq` filter, on SQLite and on
//! PostgreSQL, with the PostgreSQL/SQLite ratios; then a concurrent round of
//! `GET /Users/{id}` from [`CONCURRENCY`] client threads (one keep-alive
//! connection each). Prints figures; never fails on a slow machine.
//!
//! Both servers run at once and the sequential figures are taken
//! interleaved, so that both stores see the same machine (this machine is
//! shared, and its load changes from second to second): the fill sends each
//! Bulk request (1,000 creates) to one store then the same request to the
//! other, and the sequential reads alternate in runs of 50 back-to-back
//! requests (the first store of each round alternating too). Each store's
//! figure counts only its own requests. After the fill, the PostgreSQL
//! tables get the `VACUUM ANALYZE` autovacuum would otherwise run during
//! the reads (not timed).
//! The concurrent rounds run one store after the other.
//!
//! Run: `cargo build --release --workspace`, start a cluster
//! (`eval "$(tests/pg-cluster start DIR)"`), then
//! `cargo bench -p scimgate-e2e --bench store_compare` (the bench profile runs
//! the binaries of target/release).
//! `SCIM_BENCH_USERS` changes the population (default 100000). Without
//! `SCIMGATE_TEST_POSTGRES_URL` only SQLite runs. While iterating,
//! `SCIM_BENCH_ONLY=postgres` (or `sqlite`) measures one store alone (no
//! ratios); the figures to compare come from a run of both.
//! `SCIM_BENCH_HOLD=1` prints each filled server's address and a user's
//! URL, and keeps them up until stdin closes (for `perf`, `wrk`).

use std::time::{Duration, Instant};

use scimgate_e2e::*;
use serde_json::{json, Value};

const AUTH: &str = "Bearer bench-token";
/// Filling stops (and both stores measure what they have) after this long.
const FILL_BUDGET: Duration = Duration::from_secs(300);
const BATCH: usize = 1000;
const SAMPLES: usize = 2000;
/// Sequential requests sent to one store before the other store's turn:
/// back to back, as one client sends them, yet both stores see the same
/// few milliseconds of machine load.
const RUN: usize = 50;
/// Client threads of the concurrent GET round.
const CONCURRENCY: usize = 16;
/// Requests each of them sends.
const CONCURRENT_PER_THREAD: usize = 500;

fn config(store: &str) -> String {
    scim_route_config("bench-token", store)
}

/// One store under test: its server, a keep-alive client, what it measured.
struct Store {
    name: &'static str,
    server: Server,
    client: KeepAliveClient,
    ids: Vec<String>,
    fill_time: Duration,
    first_10k: Option<Duration>,
    get_micros: Vec<u128>,
    filter_micros: Vec<u128>,
}

impl Store {
    fn start(name: &'static str, store_options: &str, env: &[(&str, &str)]) -> Store {
        let mut envs = vec![("SCIMGATE_LOG", "warn")];
        envs.extend_from_slice(env);
        let server = Server::start_with_env(&config(store_options), &envs);
        let client = KeepAliveClient::connect(&server.url("/scim/v2"), AUTH);
        println!("[{name}] server pid {}", server.pid());
        Store {
            name,
            server,
            client,
            ids: Vec::new(),
            fill_time: Duration::ZERO,
            first_10k: None,
            get_micros: Vec::with_capacity(SAMPLES),
            filter_micros: Vec::with_capacity(SAMPLES),
        }
    }

    /// Sends one Bulk request; every operation must answer 201.
    fn bulk(&mut self, body: &str) {
        let started = Instant::now();
        let (status, reply) = self.client.request("POST", "/scim/v2/Bulk", Some(body));
        self.fill_time += started.elapsed();
        assert_eq!(status, 200, "{reply}");
        let reply: Value = serde_json::from_str(&reply).expect("bulk json");
        for op in reply["Operations"].as_array().expect("ops") {
            assert_eq!(op["status"], "201", "{}: {op}", self.name);
            self.ids.push(
                op["location"]
                    .as_str()
                    .and_then(|l| l.rsplit('/').next())
                    .expect("location")
                    .to_string(),
            );
        }
        if self.ids.len() >= 10_000 && self.first_10k.is_none() {
            self.first_10k = Some(self.fill_time);
        }
    }

    fn get(&mut self, k: usize) {
        let id = &self.ids[(k * 7919) % self.ids.len()];
        let path = format!("/scim/v2/Users/{id}");
        let started = Instant::now();
        let (status, _) = self.client.request("GET", &path, None);
        self.get_micros.push(started.elapsed().as_micros());
        assert_eq!(status, 200, "{}", self.name);
    }

    fn filter(&mut self, k: usize) {
        let i = (k * 7919) % self.ids.len();
        let path = format!("/scim/v2/Users?filter=userName%20eq%20%22USER{i:06}%22");
        let started = Instant::now();
        let (status, body) = self.client.request("GET", &path, None);
        self.filter_micros.push(started.elapsed().as_micros());
        assert_eq!(status, 200, "{}", self.name);
        assert!(body.contains("\"totalResults\":1"), "{body}");
    }

    fn figures(self) -> Figures {
        let (concurrent_per_s, concurrent) =
            concurrent_gets(&self.server.url("/scim/v2"), &self.ids);
        Figures {
            users: self.ids.len(),
            first_10k_per_s: self.first_10k.map_or(0.0, |t| 10_000.0 / t.as_secs_f64()),
            fill_per_s: self.ids.len() as f64 / self.fill_time.as_secs_f64().max(1e-9),
            get_by_id: latency(self.get_micros),
            user_name_eq: latency(self.filter_micros),
            concurrent_per_s,
            concurrent,
        }
    }
}

/// What one store measured.
struct Figures {
    users: usize,
    first_10k_per_s: f64,
    fill_per_s: f64,
    get_by_id: Latency,
    user_name_eq: Latency,
    /// GETs per second and their latency with [`CONCURRENCY`] clients.
    concurrent_per_s: f64,
    concurrent: Latency,
}

/// The Bulk request creating users `from..from + n`.
fn bulk_body(from: usize, n: usize) -> String {
    let ops: Vec<Value> = (from..from + n)
        .map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": bench_user(i)}))
        .collect();
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": ops})
        .to_string()
}

/// Fills every store with the same `users` by the same Bulk requests, each
/// request to every store in turn, until done or the budget is spent.
fn fill(stores: &mut [Store], users: usize) {
    let deadline = Instant::now() + FILL_BUDGET;
    let mut from = 0;
    while from < users && Instant::now() < deadline {
        let n = BATCH.min(users - from);
        let body = bulk_body(from, n);
        for store in stores.iter_mut() {
            store.bulk(&body);
        }
        from += n;
    }
    if from < users {
        println!(
            "stopped filling at {from} users (the {} s budget)",
            FILL_BUDGET.as_secs()
        );
    }
}

/// `SAMPLES` sequential requests to every store, interleaved in runs of
/// [`RUN`] back-to-back requests to one store, the first store of each
/// round alternating.
fn interleaved(stores: &mut [Store], request: fn(&mut Store, usize)) {
    let n = stores.len();
    for (round, from) in (0..SAMPLES).step_by(RUN).enumerate() {
        for j in 0..n {
            let store = &mut stores[(round + j) % n];
            for k in from..(from + RUN).min(SAMPLES) {
                request(store, k);
            }
        }
    }
}

/// [`CONCURRENCY`] threads, each on its own keep-alive connection, GET
/// [`CONCURRENT_PER_THREAD`] users spread over the population: the rate
/// over the whole round and the latency of every request.
fn concurrent_gets(base: &str, ids: &[String]) -> (f64, Latency) {
    if ids.is_empty() {
        return (0.0, Latency::default());
    }
    let barrier = std::sync::Barrier::new(CONCURRENCY + 1);
    let (micros, elapsed) = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONCURRENCY)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut client = KeepAliveClient::connect(base, AUTH);
                    let mut micros = Vec::with_capacity(CONCURRENT_PER_THREAD);
                    barrier.wait();
                    for k in 0..CONCURRENT_PER_THREAD {
                        let id = &ids[(t * 104_729 + k * 7919) % ids.len()];
                        let started = Instant::now();
                        let (status, _) =
                            client.request("GET", &format!("/scim/v2/Users/{id}"), None);
                        micros.push(started.elapsed().as_micros());
                        assert_eq!(status, 200);
                    }
                    micros
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let micros: Vec<u128> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("client thread"))
            .collect();
        (micros, started.elapsed())
    });
    let rate = micros.len() as f64 / elapsed.as_secs_f64();
    (rate, latency(micros))
}

/// A fresh schema in the test server for the PostgreSQL run (dropped after).
struct Schema {
    url: String,
    password: String,
    name: String,
}

impl Schema {
    fn create(url: &str, password: &str) -> Schema {
        let name = format!("scimgate_bench_{}", std::process::id());
        let schema = Schema {
            url: url.to_string(),
            password: password.to_string(),
            name,
        };
        schema.psql(&format!("CREATE SCHEMA {}", schema.name));
        schema
    }

    fn psql(&self, sql: &str) {
        psql(&self.url, &self.password, sql);
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        self.psql(&format!("DROP SCHEMA {} CASCADE", self.name));
    }
}

/// A result line: label, the figure it shows, unit.
type Row = (&'static str, fn(&Figures) -> f64, &'static str);

/// One result line: each store's figure, and the ratio when both ran.
fn row(label: &str, sqlite: Option<f64>, postgres: Option<f64>, unit: &str) {
    let cell = |v: Option<f64>| match v {
        Some(v) => format!("{v:>10.0} {unit:<7}"),
        None => format!("{:>10} {unit:<7}", "-"),
    };
    let ratio = match (sqlite, postgres) {
        (Some(s), Some(p)) => format!("PostgreSQL/SQLite = {:.2}", p / s.max(f64::MIN_POSITIVE)),
        (_, None) => "(PostgreSQL skipped)".to_string(),
        (None, _) => "(SQLite skipped)".to_string(),
    };
    println!("  {label:<34} {} {} {ratio}", cell(sqlite), cell(postgres));
}

fn main() {
    let started = Instant::now();
    let users: usize = std::env::var("SCIM_BENCH_USERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    println!(
        "store comparison: {users} users per store, release binary {}",
        target_dir().display()
    );
    let only = std::env::var("SCIM_BENCH_ONLY").unwrap_or_default();
    let mut stores = Vec::new();
    if only != "postgres" {
        stores.push(Store::start("SQLite", "", &[]));
    }
    let mut _schema = None;
    match std::env::var("SCIMGATE_TEST_POSTGRES_URL") {
        Ok(_) if only == "sqlite" => {}
        Ok(url) if !url.is_empty() => {
            let password = std::env::var("SCIMGATE_TEST_POSTGRES_PASSWORD").unwrap_or_default();
            let schema = Schema::create(&url, &password);
            let options = format!(
                "store = \"{url}?options=-csearch_path%3D{}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\"",
                schema.name
            );
            stores.push(Store::start(
                "PostgreSQL",
                &options,
                &[("SCIMGATE_PG_PASSWORD", &password)],
            ));
            _schema = Some(schema);
        }
        _ => println!(
            "SKIPPED: PostgreSQL needs SCIMGATE_TEST_POSTGRES_URL (tests/pg-cluster start DIR)"
        ),
    }
    println!(
        "filling {users} users per store by Bulk ({BATCH} creates a request, one transaction each), \
         each request to every store in turn"
    );
    fill(&mut stores, users);
    if let Some(schema) = &_schema {
        // What autovacuum would otherwise start on its own after the bulk
        // load, in the middle of the reads: done before them, not timed.
        for table in ["resources", "emails", "memberships", "scim_changes"] {
            schema.psql(&format!("VACUUM ANALYZE {}.{table}", schema.name));
        }
    }
    if std::env::var_os("SCIM_BENCH_HOLD").is_some() {
        // For profiling: keep the filled servers up until stdin closes.
        for store in &stores {
            println!(
                "{} {}/scim/v2/Users/{} (authorization: {AUTH})",
                store.name,
                store.server.base,
                store.ids.first().map_or("", String::as_str)
            );
        }
        std::io::stdin().lines().for_each(drop);
        return;
    }
    interleaved(&mut stores, Store::get);
    interleaved(&mut stores, Store::filter);
    let mut sqlite = None;
    let mut postgres = None;
    for store in stores {
        match store.name {
            "SQLite" => sqlite = Some(store.figures()),
            _ => postgres = Some(store.figures()),
        }
    }
    println!(
        "results (sequential keep-alive client on loopback, requests interleaved in runs of {RUN}; SQLite {} users, \
         PostgreSQL {} users; {CONCURRENCY} clients: one store after the other)",
        sqlite.as_ref().map_or(0, |s| s.users),
        postgres.as_ref().map_or(0, |p| p.users)
    );
    println!("  {:<34} {:>18} {:>18}", "", "SQLite", "PostgreSQL");
    let (lite, pg) = (sqlite.as_ref(), postgres.as_ref());
    let rows: [Row; 11] = [
        (
            "Bulk create, first 10k users",
            |f| f.first_10k_per_s,
            "users/s",
        ),
        ("Bulk create, all users", |f| f.fill_per_s, "users/s"),
        ("GET /Users/{id} mean", |f| f.get_by_id.mean, "µs"),
        ("GET /Users/{id} p50", |f| f.get_by_id.p50, "µs"),
        ("GET /Users/{id} p99", |f| f.get_by_id.p99, "µs"),
        ("userName eq filter mean", |f| f.user_name_eq.mean, "µs"),
        ("userName eq filter p50", |f| f.user_name_eq.p50, "µs"),
        ("userName eq filter p99", |f| f.user_name_eq.p99, "µs"),
        (
            "GET /Users/{id} x16 clients",
            |f| f.concurrent_per_s,
            "req/s",
        ),
        (
            "GET /Users/{id} x16 clients p50",
            |f| f.concurrent.p50,
            "µs",
        ),
        (
            "GET /Users/{id} x16 clients p99",
            |f| f.concurrent.p99,
            "µs",
        ),
    ];
    for (label, figure, unit) in rows {
        row(label, lite.map(figure), pg.map(figure), unit);
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
