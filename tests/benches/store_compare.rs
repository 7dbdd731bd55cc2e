//! The two SCIM stores side by side in one run, over real HTTP against the
//! release binary: Bulk create of the first 10k users, then (after filling
//! to 100k) `GET /Users/{id}` and a `userName eq` filter, on SQLite and on
//! PostgreSQL, with the PostgreSQL/SQLite ratios. Prints figures; never fails
//! on a slow machine.
//!
//! Run: `cargo build --release --workspace`, start a cluster
//! (`eval "$(tests/pg-cluster start DIR)"`), then
//! `cargo bench -p scimgate-e2e --bench store_compare` (the bench profile runs
//! the binaries of target/release).
//! `SCIM_BENCH_USERS` changes the population (default 100000). Without
//! `SCIMGATE_TEST_POSTGRES_URL` only SQLite runs.

use std::time::{Duration, Instant};

use scimgate_e2e::*;

const AUTH: &str = "Bearer bench-token";
/// Each store stops filling (and measures what it has) after this long.
const FILL_BUDGET: Duration = Duration::from_secs(150);
const SAMPLES: usize = 2000;

fn config(store: &str) -> String {
    scim_route_config("bench-token", store)
}

/// What one store measured.
struct Figures {
    users: usize,
    first_10k_per_s: f64,
    fill_per_s: f64,
    get_by_id: Latency,
    user_name_eq: Latency,
}

fn measure(name: &str, store_options: &str, env: &[(&str, &str)], users: usize) -> Figures {
    let mut envs = vec![("SCIMGATE_LOG", "warn")];
    envs.extend_from_slice(env);
    let server = Server::start_with_env(&config(store_options), &envs);
    let base = server.url("/scim/v2");
    let mut client = KeepAliveClient::connect(&base, AUTH);
    println!("[{name}] filling {users} users by Bulk (1000 ops/request, one transaction each)");
    let BulkFill {
        ids,
        first_10k,
        elapsed: fill_time,
    } = bulk_fill_users(&mut client, "/scim/v2", users, Instant::now() + FILL_BUDGET);
    if ids.len() < users {
        println!(
            "[{name}] stopped filling at the {} s budget",
            FILL_BUDGET.as_secs()
        );
    }
    let n = SAMPLES.min(ids.len());
    let mut micros = Vec::with_capacity(n);
    for k in 0..n {
        let id = &ids[(k * 7919) % ids.len()];
        let t = Instant::now();
        let (status, _) = client.request("GET", &format!("/scim/v2/Users/{id}"), None);
        micros.push(t.elapsed().as_micros());
        assert_eq!(status, 200);
    }
    let get_by_id = latency(micros);
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
    let user_name_eq = latency(micros);
    Figures {
        users: ids.len(),
        first_10k_per_s: first_10k.map_or(0.0, |t| 10_000.0 / t.as_secs_f64()),
        fill_per_s: ids.len() as f64 / fill_time.as_secs_f64(),
        get_by_id,
        user_name_eq,
    }
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

fn row(label: &str, sqlite: f64, postgres: Option<f64>, unit: &str) {
    match postgres {
        Some(pg) => println!(
            "  {label:<34} {sqlite:>10.0} {unit:<7} {pg:>10.0} {unit:<7} PostgreSQL/SQLite = {:.2}",
            pg / sqlite.max(f64::MIN_POSITIVE)
        ),
        None => println!("  {label:<34} {sqlite:>10.0} {unit:<7} (PostgreSQL skipped)"),
    }
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
    let sqlite = measure("SQLite", "", &[], users);
    let postgres = match std::env::var("SCIMGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let password = std::env::var("SCIMGATE_TEST_POSTGRES_PASSWORD").unwrap_or_default();
            let schema = Schema::create(&url, &password);
            let options = format!(
                "store = \"{url}?options=-csearch_path%3D{}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\"",
                schema.name
            );
            Some(measure(
                "PostgreSQL",
                &options,
                &[("SCIMGATE_PG_PASSWORD", &password)],
                users,
            ))
        }
        _ => {
            println!(
                "SKIPPED: PostgreSQL needs SCIMGATE_TEST_POSTGRES_URL (tests/pg-cluster start DIR)"
            );
            None
        }
    };
    println!(
        "results (sequential keep-alive client on loopback; SQLite {} users, PostgreSQL {} users)",
        sqlite.users,
        postgres.as_ref().map_or(0, |p| p.users)
    );
    println!("  {:<34} {:>18} {:>18}", "", "SQLite", "PostgreSQL");
    let pg = postgres.as_ref();
    row(
        "Bulk create, first 10k users",
        sqlite.first_10k_per_s,
        pg.map(|p| p.first_10k_per_s),
        "users/s",
    );
    row(
        "Bulk create, all users",
        sqlite.fill_per_s,
        pg.map(|p| p.fill_per_s),
        "users/s",
    );
    for (label, s, p) in [
        (
            "GET /Users/{id} mean",
            sqlite.get_by_id.mean,
            pg.map(|p| p.get_by_id.mean),
        ),
        (
            "GET /Users/{id} p50",
            sqlite.get_by_id.p50,
            pg.map(|p| p.get_by_id.p50),
        ),
        (
            "GET /Users/{id} p99",
            sqlite.get_by_id.p99,
            pg.map(|p| p.get_by_id.p99),
        ),
        (
            "userName eq filter mean",
            sqlite.user_name_eq.mean,
            pg.map(|p| p.user_name_eq.mean),
        ),
        (
            "userName eq filter p50",
            sqlite.user_name_eq.p50,
            pg.map(|p| p.user_name_eq.p50),
        ),
        (
            "userName eq filter p99",
            sqlite.user_name_eq.p99,
            pg.map(|p| p.user_name_eq.p99),
        ),
    ] {
        row(label, s, p, "µs");
    }
    println!("total bench time {:.1} s", started.elapsed().as_secs_f64());
}
