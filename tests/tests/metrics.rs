//! `GET /metrics` end to end: the exposition parses with a real Prometheus
//! text parser (`prometheus-parse`), its counters move with real requests
//! (allowed, denied with the denying stage, a token issued and one refused
//! on an oauth2 token route, a contained plugin panic, reloads), and
//! `server.metrics_listen` / `server.metrics = false` decide where it is
//! served. The store series (`scimgate_store_*`) move with the SCIM
//! endpoint's store operations on SQLite and PostgreSQL, errors included.

use std::time::Duration;

use prometheus_parse::{LineInfo, Scrape, Value as Metric};
use scimgate_e2e::*;

const SECRET: &str = "metrics-secret-0123456789abcdef";

/// A demo route (API key, a policy, the echo endpoint) and an oauth2 token
/// route; `{extra}` is more of `[server]`.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"
blocking_threads = 3
{extra}

[stage.key]
use = "demo/api-key"
keys = { "k1" = "p1" }

[stage.needs-header]
use = "demo/require-header"
header = "x-demo"

[stage.echo]
use = "demo/echo"

[stage.client-auth]
use = "oauth2/client-credentials"

[stage.token]
use = "oauth2/token"

[[route]]
path = "/demo"
pipeline = ["key", "needs-header", "echo"]
providers = ["p1"]

[[route]]
path = "/oauth2/token"
pipeline = ["client-auth", "token"]
providers = ["oim"]

[[provider]]
id = "p1"
name = "Provider one"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

[[provider]]
id = "oim"
name = "One Identity Manager"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim-client"
client_secret = "${OIM_SECRET}"
scopes = ["scim:read"]
"#;

fn config(extra: &str) -> String {
    CONFIG.replace("{extra}", extra)
}

fn start(extra: &str) -> Server {
    Server::start_with_env(&config(extra), &[("OIM_SECRET", SECRET)])
}

/// Scrapes `url`, checks the response is the text format and that every
/// line is one the parser understands, and parses it.
pub(crate) fn scrape(url: &str) -> Scrape {
    let reply = get(url, &[]);
    assert_eq!(reply.status, 200, "{url}: {}", reply.body);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in reply.body.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "a line the Prometheus parser does not understand: {line:?}\n{}",
            reply.body
        );
    }
    Scrape::parse(reply.body.lines().map(|l| Ok(l.to_string()))).expect("a Prometheus exposition")
}

/// The value of the sample `name{labels…}` (0 when absent: a counter not yet
/// counted).
pub(crate) fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{name}{labels:?} names {} samples",
        found.len()
    );
    found.first().copied().unwrap_or(0.0)
}

/// The `(le, cumulative count)` buckets of the histogram `name{labels…}`.
fn buckets(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no histogram {name}{labels:?}"));
    match &sample.value {
        Metric::Histogram(counts) => counts.iter().map(|c| (c.less_than, c.count)).collect(),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

fn token_request(server: &Server, secret: &str) -> Reply {
    let auth = client_basic("oim-client", secret);
    send(
        "POST",
        &server.url("/oauth2/token"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    )
}

#[test]
fn counters_move_with_requests_denials_tokens_panics_and_reloads() {
    let server = start("");
    let metrics = server.url("/metrics");
    let before = scrape(&metrics);
    let demo_ok = [("route", "/demo"), ("status", "200"), ("decision", "allow")];
    assert_eq!(value(&before, "scimgate_requests_total", &demo_ok), 0.0);
    assert_eq!(value(&before, "scimgate_pipeline_capacity", &[]), 6.0);
    let build = before
        .samples
        .iter()
        .find(|s| s.metric == "scimgate_build_info")
        .expect("scimgate_build_info");
    assert!(build.labels.get("version").is_some_and(|v| !v.is_empty()));
    assert!(build
        .labels
        .get("abi_version")
        .is_some_and(|v| !v.is_empty()));
    assert!(build
        .labels
        .get("abi_epoch")
        .is_some_and(|v| v.parse::<u32>().is_ok()));

    // Allowed.
    let auth = [("x-api-key", "k1"), ("x-demo", "yes")];
    assert_eq!(get(&server.url("/demo/x"), &auth).status, 200);
    assert_eq!(get(&server.url("/demo/y"), &auth).status, 200);
    // Denied by the policy `needs-header`.
    let denied = get(&server.url("/demo/x"), &[("x-api-key", "k1")]);
    assert_eq!(denied.status, 403, "{}", denied.body);
    // Denied by the host: no route.
    assert_eq!(get(&server.url("/nowhere"), &auth).status, 404);
    // The echo endpoint panics; the SDK contains it (500).
    let boom = get(&server.url("/demo/x?panic=1"), &auth);
    assert_eq!(boom.status, 500, "{}", boom.body);
    // A token issued, one refused (wrong secret).
    let issued = token_request(&server, SECRET);
    assert_eq!(issued.status, 200, "{}", issued.body);
    let refused = token_request(&server, "not-the-secret");
    assert_eq!(refused.status, 401, "{}", refused.body);

    let after = scrape(&metrics);
    assert_eq!(value(&after, "scimgate_requests_total", &demo_ok), 2.0);
    assert_eq!(
        value(
            &after,
            "scimgate_requests_total",
            &[("route", "/demo"), ("status", "403"), ("decision", "deny")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimgate_requests_total",
            &[("route", "/demo"), ("status", "500"), ("decision", "error")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimgate_requests_total",
            &[("route", "(none)"), ("status", "404"), ("decision", "deny")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimgate_denials_total",
            &[("route", "/demo"), ("stage", "needs-header")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimgate_denials_total",
            &[("route", "(none)"), ("stage", "(host)")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimgate_denials_total",
            &[("route", "/oauth2/token"), ("stage", "client-auth")]
        ),
        1.0,
        "the refused token is a denial by the client authenticator"
    );
    assert_eq!(
        value(
            &after,
            "scimgate_tokens_issued_total",
            &[("route", "/oauth2/token")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "scimgate_tokens_refused_total",
            &[("route", "/oauth2/token")]
        ),
        1.0
    );
    // Only a route whose endpoint mints tokens has token series.
    assert!(
        !after
            .samples
            .iter()
            .any(|s| s.metric.starts_with("scimgate_tokens_")
                && s.labels.get("route") == Some("/demo")),
        "token series for /demo"
    );
    assert_eq!(
        value(&after, "scimgate_plugin_panics_total", &[("stage", "echo")]),
        1.0
    );
    // The duration histogram saw the four /demo requests, cumulatively.
    let demo = [("route", "/demo")];
    let counts = buckets(&after, "scimgate_request_duration_seconds", &demo);
    assert_eq!(counts.first().map(|c| c.0), Some(0.0005), "{counts:?}");
    assert_eq!(counts.last(), Some(&(f64::INFINITY, 4.0)), "{counts:?}");
    assert!(
        counts
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{counts:?}"
    );
    assert_eq!(
        value(&after, "scimgate_request_duration_seconds_count", &demo),
        4.0
    );
    assert!(value(&after, "scimgate_request_duration_seconds_sum", &demo) > 0.0);
    // Nothing is running now; this scrape's own connection is open.
    assert_eq!(value(&after, "scimgate_pipelines_in_flight", &[]), 0.0);
    assert!(value(&after, "scimgate_connections_open", &[]) >= 1.0);

    // Reloads, a good one and a failed one.
    server.reload_with(&config(""));
    std::fs::write(&server.config_path, "[server\nbroken").expect("write config");
    server.signal("HUP");
    wait_for_log(&server, "reload failed", Duration::from_secs(10));
    let reloaded = scrape(&metrics);
    assert_eq!(
        value(
            &reloaded,
            "scimgate_config_reloads_total",
            &[("result", "success")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &reloaded,
            "scimgate_config_reloads_total",
            &[("result", "failure")]
        ),
        1.0
    );
    // Counters survive a reload.
    assert_eq!(value(&reloaded, "scimgate_requests_total", &demo_ok), 2.0);
}

#[test]
fn metrics_listen_serves_them_on_their_own_address_only() {
    let server = start("metrics_listen = \"127.0.0.1:0\"");
    let logs = wait_for_log(&server, "(server.metrics_listen)", Duration::from_secs(10));
    let line = logs
        .lines()
        .find(|l| l.contains("(server.metrics_listen)"))
        .expect("the metrics listener's line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://") && w.ends_with("/metrics"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();
    assert!(!url.starts_with(&server.base), "{url} is the main listener");

    let auth = [("x-api-key", "k1"), ("x-demo", "yes")];
    assert_eq!(get(&server.url("/demo/x"), &auth).status, 200);
    let scraped = scrape(&url);
    assert_eq!(
        value(
            &scraped,
            "scimgate_requests_total",
            &[("route", "/demo"), ("status", "200"), ("decision", "allow")]
        ),
        1.0
    );
    // The main listener has no /metrics: it is an ordinary path (no route).
    let main = get(&server.url("/metrics"), &[]);
    assert_eq!(main.status, 404, "{}", main.body);
    assert!(
        !main.body.contains("scimgate_requests_total"),
        "{}",
        main.body
    );
    // The metrics address serves nothing else.
    let base = url.trim_end_matches("/metrics");
    assert_eq!(get(&format!("{base}/demo/x"), &auth).status, 404);
    assert_eq!(get(&format!("{base}/healthz"), &[]).status, 404);
}

#[test]
fn metrics_false_turns_them_off() {
    let server = start("metrics = false");
    let reply = get(&server.url("/metrics"), &[]);
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert!(!reply.body.contains("scimgate_"), "{}", reply.body);
    assert!(
        !server.logs().contains("metrics: http://"),
        "{}",
        server.logs()
    );
}

const SCIM_TOKEN: &str = "store-metrics-token";
const SCIM_ROUTE: (&str, &str) = ("route", "/scim/v2");
const STORE_COUNT: &str = "scimgate_store_operation_duration_seconds_count";
const STORE_ERRORS: &str = "scimgate_store_errors_total";

fn scim(server: &Server, method: &str, path: &str, body: Option<&str>) -> Reply {
    let auth = format!("Bearer {SCIM_TOKEN}");
    send(
        method,
        &server.url(&format!("/scim/v2{path}")),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/scim+json"),
        ],
        body,
    )
}

fn create_user(server: &Server, name: &str) -> String {
    let body = format!(
        r#"{{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"{name}"}}"#
    );
    let reply = scim(server, "POST", "/Users", Some(&body));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_string()
}

/// How many store operations `operation` the SCIM route counted.
fn store_ops(scrape: &Scrape, operation: &str) -> f64 {
    value(scrape, STORE_COUNT, &[SCIM_ROUTE, ("operation", operation)])
}

#[test]
fn store_operations_and_errors_are_counted_by_route_and_operation_on_sqlite() {
    let server = Server::start(&scim_route_config(SCIM_TOKEN, ""));
    let url = server.url("/metrics");
    let before = scrape(&url);
    // The store was migrated when the stage was created, outside any
    // request: counted under the route `(none)`, without an error.
    assert_eq!(
        value(
            &before,
            STORE_COUNT,
            &[("route", "(none)"), ("operation", "migrate")]
        ),
        1.0
    );
    let ops = [
        "get", "search", "count", "members", "create", "replace", "patch", "delete", "bulk",
        "write",
    ];
    let at_start: Vec<f64> = ops.iter().map(|op| store_ops(&before, op)).collect();

    let alice = create_user(&server, "alice");
    let bob = create_user(&server, "bob");
    let got = scim(&server, "GET", &format!("/Users/{alice}"), None);
    assert_eq!(got.status, 200, "{}", got.body);
    let put = scim(
        &server,
        "PUT",
        &format!("/Users/{alice}"),
        Some(
            r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"alice","displayName":"Alice"}"#,
        ),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    let patch = scim(
        &server,
        "PATCH",
        &format!("/Users/{bob}"),
        Some(
            r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","path":"displayName","value":"Bob"}]}"#,
        ),
    );
    assert_eq!(patch.status, 200, "{}", patch.body);
    let deleted = scim(&server, "DELETE", &format!("/Users/{bob}"), None);
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    // Two units of work that end in an error before writing anything:
    // a taken userName (409) and a resource already gone (404).
    let taken = scim(
        &server,
        "POST",
        "/Users",
        Some(r#"{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"ALICE"}"#),
    );
    assert_eq!(taken.status, 409, "{}", taken.body);
    let gone = scim(&server, "DELETE", &format!("/Users/{bob}"), None);
    assert_eq!(gone.status, 404, "{}", gone.body);

    let after = scrape(&url);
    let moved: Vec<(&str, f64)> = ops
        .iter()
        .zip(&at_start)
        .map(|(op, start)| (*op, store_ops(&after, op) - start))
        .filter(|(_, delta)| *delta != 0.0)
        .collect();
    // Each write request is one unit of work named after what it wrote;
    // the GET is one `get` (SQLite answers `generation` from memory, so it
    // is no store operation).
    let expected = [
        ("get", 1.0),
        ("create", 2.0),
        ("replace", 1.0),
        ("patch", 1.0),
        ("delete", 1.0),
        ("write", 2.0),
    ];
    for (op, delta) in expected {
        assert!(
            moved.contains(&(op, delta)),
            "{op} moved by {delta}: {moved:?}"
        );
    }
    // Nothing else but derived-`groups` look-ups (`members`).
    assert!(
        moved
            .iter()
            .all(|(op, _)| expected.iter().any(|(e, _)| e == op) || *op == "members"),
        "{moved:?}"
    );
    // The histogram is cumulative and ends at `_count`.
    let counts = buckets(
        &after,
        "scimgate_store_operation_duration_seconds",
        &[SCIM_ROUTE, ("operation", "create")],
    );
    assert!(counts.windows(2).all(|w| w[0].1 <= w[1].1), "{counts:?}");
    assert_eq!(
        counts.last().map(|c| c.1),
        Some(store_ops(&after, "create"))
    );
    assert_eq!(counts.last().map(|c| c.0), Some(f64::INFINITY));
    assert!(
        value(
            &after,
            "scimgate_store_operation_duration_seconds_sum",
            &[SCIM_ROUTE, ("operation", "create")]
        ) > 0.0
    );
    // The two refusals are errors of their class.
    for (kind, n) in [("conflict", 1.0), ("client", 1.0)] {
        let labels = [SCIM_ROUTE, ("operation", "write"), ("kind", kind)];
        assert_eq!(
            value(&after, STORE_ERRORS, &labels) - value(&before, STORE_ERRORS, &labels),
            n,
            "{kind}"
        );
    }

    // A store failure: the table goes away under the running server, and
    // the next read fails (500) and counts as an `internal` error of `get`.
    let db = server.dir.path().join("data").join("scim.db");
    let out = std::process::Command::new("sqlite3")
        .arg(&db)
        .arg("ALTER TABLE resources RENAME TO resources_gone")
        .output()
        .expect("run sqlite3 (the SQLite command-line shell)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failed = scim(&server, "GET", &format!("/Users/{alice}"), None);
    assert_eq!(failed.status, 500, "{}", failed.body);
    let broken = scrape(&url);
    let internal = [SCIM_ROUTE, ("operation", "get"), ("kind", "internal")];
    assert_eq!(
        value(&broken, STORE_ERRORS, &internal) - value(&after, STORE_ERRORS, &internal),
        1.0
    );
    assert_eq!(store_ops(&broken, "get") - store_ops(&after, "get"), 1.0);
    // SQLite has no connection pool to report.
    assert!(
        !broken
            .samples
            .iter()
            .any(|s| s.metric.starts_with("scimgate_store_pool")),
        "{:?}",
        broken.samples
    );

    // Kept across a reload, like the route's other series.
    server.signal("HUP");
    wait_for_log(&server, "configuration reloaded", Duration::from_secs(30));
    let reloaded = scrape(&url);
    assert_eq!(store_ops(&reloaded, "create"), store_ops(&broken, "create"));
}

#[test]
fn postgres_reports_its_pool_and_its_failures() {
    if !crate::scim::StoreKind::postgres_available() {
        return;
    }
    let pg = crate::scim::PgServer::from_env().expect("checked above");
    let schema = pg.fresh_schema("metrics");
    let env = schema.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let options = format!("{}pool_size = 3\n", schema.stage_options());
    let server = Server::start_with_env(&scim_route_config(SCIM_TOKEN, &options), &env);
    let url = server.url("/metrics");
    let alice = create_user(&server, "alice");
    let got = scim(&server, "GET", &format!("/Users/{alice}"), None);
    assert_eq!(got.status, 200, "{}", got.body);
    let after = scrape(&url);
    assert_eq!(store_ops(&after, "create"), 1.0);
    assert!(store_ops(&after, "get") >= 1.0);
    // The pool, as it was after the last operation: nothing lent out (no
    // request in flight), the connections used so far idle, size = pool_size.
    assert_eq!(
        value(&after, "scimgate_store_pool_size", &[SCIM_ROUTE]),
        3.0
    );
    let in_use = [SCIM_ROUTE, ("state", "in_use")];
    let idle = [SCIM_ROUTE, ("state", "idle")];
    assert_eq!(
        value(&after, "scimgate_store_pool_connections", &in_use),
        0.0
    );
    let idle_now = value(&after, "scimgate_store_pool_connections", &idle);
    assert!((1.0..=3.0).contains(&idle_now), "{idle_now}");

    // The table goes away: the read fails (500), an `internal` error.
    schema.psql("ALTER TABLE resources RENAME TO resources_gone");
    let failed = scim(&server, "GET", &format!("/Users/{alice}"), None);
    assert_eq!(failed.status, 500, "{}", failed.body);
    let broken = scrape(&url);
    let internal = [SCIM_ROUTE, ("operation", "get"), ("kind", "internal")];
    assert_eq!(value(&broken, STORE_ERRORS, &internal), 1.0);
    assert_eq!(store_ops(&broken, "get") - store_ops(&after, "get"), 1.0);
}

const RUNS: &str = "scimgate_pipeline_runs_total";

fn runs(scrape: &Scrape, route: &str, mode: &str) -> f64 {
    value(scrape, RUNS, &[("route", route), ("mode", mode)])
}

/// Where pipelines run: reads the SQLite store answers quickly run whole on
/// the async worker; a write, or a full list, begins there and goes on at
/// the endpoint on the blocking pool; nothing runs wholly on the pool when
/// every stage knows inline calls.
#[test]
fn point_reads_run_inline_and_writes_and_full_lists_resume_on_the_pool() {
    let server = Server::start(&scim_route_config(SCIM_TOKEN, ""));
    let alice = create_user(&server, "alice");
    for _ in 0..3 {
        let got = scim(&server, "GET", &format!("/Users/{alice}"), None);
        assert_eq!(got.status, 200, "{}", got.body);
        assert_eq!(got.json()["userName"], "alice");
    }
    let found = scim(
        &server,
        "GET",
        "/Users?filter=userName%20eq%20%22alice%22",
        None,
    );
    assert_eq!(found.json()["totalResults"], 1, "{}", found.body);
    let all = scim(&server, "GET", "/Users", None);
    assert_eq!(all.json()["totalResults"], 1, "{}", all.body);
    let scraped = scrape(&server.url("/metrics"));
    assert_eq!(runs(&scraped, "/scim/v2", "inline"), 4.0);
    assert_eq!(runs(&scraped, "/scim/v2", "resumed"), 2.0);
    assert_eq!(runs(&scraped, "/scim/v2", "blocking"), 0.0);
}

/// The token route runs inline once the client's argon2id secret is
/// verified (remembered), and resumes on the pool for the hash itself; an
/// endpoint that keeps the SDK's default (`demo/echo`) always resumes.
#[test]
fn the_token_route_hashes_on_the_pool_once_then_runs_inline() {
    use crate::oauth2::{password_hash, BASIC_PASSWORD};
    let hashed = config("").replace(
        "client_secret = \"${OIM_SECRET}\"",
        &format!("client_secret_hash = \"{}\"", password_hash()),
    );
    assert!(hashed.contains("$argon2id$"));
    let server = Server::start(&hashed);
    assert_eq!(token_request(&server, BASIC_PASSWORD).status, 200);
    assert_eq!(token_request(&server, BASIC_PASSWORD).status, 200);
    assert_eq!(token_request(&server, "wrong-secret").status, 401);
    let echoed = get(
        &server.url("/demo/x"),
        &[("x-api-key", "k1"), ("x-demo", "1")],
    );
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    let scraped = scrape(&server.url("/metrics"));
    // The first and the wrong secret hash; the second is remembered.
    assert_eq!(runs(&scraped, "/oauth2/token", "resumed"), 2.0);
    assert_eq!(runs(&scraped, "/oauth2/token", "inline"), 1.0);
    assert_eq!(runs(&scraped, "/demo", "resumed"), 1.0);
    assert_eq!(runs(&scraped, "/demo", "inline"), 0.0);
}
