//! The host with the demo plugin: pipeline order, authentication, policy
//! denial, profile rewrites, panic containment, limits, reload, shutdown,
//! and the CLI (`validate`, `plugins`).

use std::time::{Duration, Instant};

use scimgate_e2e::*;

const DEMO: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"
max_body_size = "64KiB"
request_timeout = "5s"

[stage.key]
use = "demo/api-key"
keys = { "k1" = "p1" }

[stage.needs-header]
use = "demo/require-header"
header = "x-demo"

[stage.outer]
use = "demo/tag"
tag = "outer"

[stage.inner]
use = "demo/tag"
tag = "inner"

[stage.echo]
use = "demo/echo"

[[route]]
path = "/demo"
pipeline = ["key", "needs-header", "outer", "inner", "echo"]

[[provider]]
id = "p1"
name = "Provider one"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn auth() -> Vec<(&'static str, &'static str)> {
    vec![("x-api-key", "k1"), ("x-demo", "yes")]
}

#[test]
fn pipeline_runs_auth_policy_profiles_endpoint_then_profiles_reversed() {
    let server = Server::start(DEMO);
    let reply = get(&server.url("/demo/hello?x=1"), &auth());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    // The authenticator ran first: the endpoint sees its principal and the provider record.
    assert_eq!(body["principal"]["provider_id"], "p1");
    assert_eq!(body["provider"], "p1");
    // Profiles inbound in pipeline order, before the endpoint.
    assert_eq!(body["headers"]["x-demo-profile"], "outer,inner");
    // Profiles outbound in reverse order, after the endpoint.
    assert_eq!(reply.header("x-demo-outbound"), Some("inner,outer"));
    assert_eq!(body["profiled"], "inner,outer");
    // The path is below the mount; the query is passed raw.
    assert_eq!(body["path"], "/hello");
    assert_eq!(body["query"], "x=1");
    assert_eq!(body["mount"], "/demo");
    assert_eq!(body["client_ip"], "127.0.0.1");
    assert!(body["base_url"].as_str().unwrap().ends_with("/demo"));
}

#[test]
fn no_credentials_is_401_with_a_challenge_and_a_scim_error() {
    let server = Server::start(DEMO);
    let reply = get(&server.url("/demo/x"), &[("x-demo", "yes")]);
    assert_eq!(reply.status, 401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("ApiKey header=\"x-api-key\"")
    );
    let body = reply.json();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], "401");
    let wrong = get(
        &server.url("/demo/x"),
        &[("x-api-key", "nope"), ("x-demo", "yes")],
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.json()["detail"]
        .as_str()
        .unwrap()
        .contains("unknown API key"));
}

#[test]
fn policy_denial_stops_the_request_before_the_endpoint() {
    let server = Server::start(DEMO);
    let reply = get(&server.url("/demo/x?panic=1"), &[("x-api-key", "k1")]);
    // Had the endpoint run, `panic=1` would have produced a 500.
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert!(reply.json()["detail"].as_str().unwrap().contains("x-demo"));
    let logs = server.logs();
    assert!(
        logs.contains("decision=\"deny\"") || logs.contains("decision=deny"),
        "audit line missing:\n{logs}"
    );
    assert!(
        logs.contains("needs-header"),
        "the audit event names the stage:\n{logs}"
    );
}

#[test]
fn a_plugin_panic_is_a_500_for_that_request_only() {
    let server = Server::start(DEMO);
    // One panic switch of the demo `.so` per component kind on the route:
    // authenticator, policy, profile inbound, profile outbound, endpoint.
    for (call, logged) in [
        (
            "authenticate",
            "panic in authenticate requested by the client",
        ),
        ("check", "panic in check requested by the client"),
        ("inbound", "panic in inbound requested by the client"),
        ("outbound", "panic in outbound requested by the client"),
        ("1", "panic requested by the client"),
    ] {
        let boom = get(&server.url(&format!("/demo/x?panic={call}")), &auth());
        assert_eq!(boom.status, 500, "panic={call}: {}", boom.body);
        let body = boom.json();
        assert_eq!(
            body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "panic={call}: {body}"
        );
        assert_eq!(body["status"], "500", "panic={call}");
        // Nothing of the endpoint's answer gets out (the outbound panic
        // comes after the echo answered).
        assert!(body.get("path").is_none(), "panic={call}: {body}");
        // The client learns the request id, not the plugin's internals.
        let detail = body["detail"].as_str().unwrap();
        assert!(!detail.contains("requested"), "panic={call}: {detail}");
        assert_eq!(
            boom.header("x-request-id").map(|id| detail.contains(id)),
            Some(true),
            "panic={call}: {detail}"
        );
        // The very next request is served by the whole pipeline.
        let next = get(&server.url("/demo/x"), &auth());
        assert_eq!(next.status, 200, "after panic={call}: {}", next.body);
        assert_eq!(next.json()["headers"]["x-demo-profile"], "outer,inner");
        assert_eq!(next.header("x-demo-outbound"), Some("inner,outer"));
        assert!(
            server.logs().contains(logged),
            "panic={call}: the log keeps the panic message:\n{}",
            server.logs()
        );
    }
    // Contained panics reach the log through the host, with their place,
    // never as the default hook's raw stderr text and backtrace.
    let logs = server.logs();
    assert!(!logs.contains("thread '"), "raw panic output:\n{logs}");
    assert!(
        logs.contains("a plugin panicked at ") && logs.contains("examples/demo-plugin/src/lib.rs"),
        "{logs}"
    );
}

/// Runs `scimgate ARGS…` that must exit by itself within 20 s (e.g. `serve`
/// on a config it refuses): (exit code, stdout, stderr). A process still
/// running then is killed and fails the test.
fn run_to_exit(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out_path = dir.join("run.out");
    let err_path = dir.join("run.err");
    let mut child = std::process::Command::new(scimgate_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("SCIMGATE_CONFIG")
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn scimgate");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "scimgate {args:?} was still running after 20 s:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        code,
        std::fs::read_to_string(&out_path).unwrap_or_default(),
        std::fs::read_to_string(&err_path).unwrap_or_default(),
    )
}

#[test]
fn a_panic_in_validate_or_create_is_a_located_config_error() {
    // (flag, message, where: a validation issue is at the stage's table, a
    // creation error at its `use` value, one line below).
    for (flag, message, line_below, column) in [
        (
            "panic_in_validate",
            "the plugin panicked while validating: validation panic requested by the config",
            0,
            1,
        ),
        (
            "panic_in_create",
            "component `allow` panicked: creation panic requested by the config",
            1,
            7,
        ),
    ] {
        // The panicking stage on the route, at a known line.
        let config = format!(
            "{}\n[stage.boom]\nuse = \"demo/allow\"\n{flag} = true\n",
            DEMO.replace(
                r#"pipeline = ["key", "needs-header","#,
                r#"pipeline = ["key", "boom", "needs-header","#
            )
        );
        let line = config
            .lines()
            .position(|l| l == "[stage.boom]")
            .expect("stage line")
            + 1
            + line_below;
        let location = format!("scimgate.toml:{line}:{column}");
        let dir = TempDir::new("panic-config");
        let path = dir.path().join("scimgate.toml");
        std::fs::write(&path, expand(&config, dir.path())).expect("write config");
        let path = path.to_str().expect("path");

        // `validate`: exit 2, the panic as a config error at its stage.
        // (`validate` creates no stage, so it cannot see a creation panic.)
        if flag == "panic_in_validate" {
            let (code, out, err) = run_to_exit(&["validate", "--config", path], dir.path());
            assert_eq!(code, 2, "{flag}: {out}{err}");
            assert!(err.contains(message), "{flag}: {err}");
            assert!(err.contains(&location), "{flag}: not at {location}: {err}");
        }

        // `serve`: the same error, and the server does not start.
        let (code, out, err) = run_to_exit(
            &["serve", "--config", path, "--listen", "127.0.0.1:0"],
            dir.path(),
        );
        assert_eq!(code, 2, "{flag}: {out}{err}");
        assert!(!out.contains("listening on"), "{flag}: {out}");
        assert!(err.contains(message), "{flag}: {err}");
        assert!(err.contains(&location), "{flag}: not at {location}: {err}");

        // On reload: refused, and the running configuration keeps serving.
        let server = Server::start(DEMO);
        // (A first request, as in `sighup_reloads_the_configuration`: a
        // SIGHUP right after the banner can still find no handler installed.)
        assert_eq!(get(&server.url("/demo/x"), &auth()).status, 200);
        std::fs::write(&server.config_path, expand(&config, server.dir.path())).unwrap();
        server.signal("HUP");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.logs().contains("reload failed") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let logs = server.logs();
        assert!(logs.contains("reload failed"), "{flag}: {logs}");
        assert!(logs.contains(message), "{flag}: {logs}");
        assert!(!logs.contains("configuration reloaded"), "{flag}: {logs}");
        let next = get(&server.url("/demo/x"), &auth());
        assert_eq!(next.status, 200, "{flag}: {}", next.body);
    }
}

#[test]
fn unknown_routes_oversize_bodies_and_request_ids() {
    let server = Server::start(DEMO);
    let missing = get(&server.url("/nowhere"), &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["status"], "404");
    let big = "x".repeat(70 * 1024);
    let too_big = send("POST", &server.url("/demo/x"), &auth(), Some(&big));
    assert_eq!(too_big.status, 413);
    assert_eq!(too_big.json()["status"], "413");
    let with_id = get(
        &server.url("/demo/x"),
        &[
            ("x-api-key", "k1"),
            ("x-demo", "1"),
            ("x-request-id", "trace-42"),
        ],
    );
    assert_eq!(with_id.header("x-request-id"), Some("trace-42"));
    assert_eq!(with_id.json()["request_id"], "trace-42");
    let generated = get(&server.url("/demo/x"), &auth());
    assert_eq!(generated.header("x-request-id").map(str::len), Some(36));
    assert_eq!(get(&server.url("/healthz"), &[]).status, 200);
    let ready = get(&server.url("/readyz"), &[]);
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json(), json!({"status": "ready"}));
    // A client's mistakes are not errors in the log.
    assert!(!server.logs().contains("ERROR"), "{}", server.logs());
}

#[test]
fn endpoint_errors_are_rendered_as_scim_errors() {
    let server = Server::start(DEMO);
    let reply = get(&server.url("/demo/x?fail=409"), &auth());
    assert_eq!(reply.status, 409);
    let body = reply.json();
    assert_eq!(body["scimType"], "invalidValue");
    assert_eq!(reply.header("content-type"), Some("application/scim+json"));
}

#[test]
fn graceful_shutdown_lets_in_flight_requests_finish() {
    let mut server = Server::start(DEMO);
    let url = server.url("/demo/slow?sleep_ms=1500");
    let slow = std::thread::spawn(move || get(&url, &[("x-api-key", "k1"), ("x-demo", "1")]));
    // In flight: the profiles before the (sleeping) endpoint have run.
    wait_for_log(
        &server,
        "demo profile tagged a request",
        Duration::from_secs(10),
    );
    server.signal("TERM");
    let reply = slow.join().expect("client thread");
    assert_eq!(reply.status, 200, "the in-flight request finished");
    let code = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "clean exit after SIGTERM");
}

/// One blocking thread (two pipeline slots), and a route whose policy runs
/// inline before an endpoint that goes on on the blocking pool: the
/// per-address rate limit allows three requests.
const BUSY: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"
blocking_threads = 1

[stage.limit]
use = "policies/rate-limit"
per_ip = "3/h"

[stage.echo]
use = "demo/echo"

[[route]]
path = "/limited"
pipeline = ["limit", "echo"]
anonymous = true
"#;

/// `scimgate_pipelines_in_flight` as `/metrics` shows it.
fn pipelines_in_flight(server: &Server) -> f64 {
    let scraped = crate::metrics::scrape(&server.url("/metrics"));
    crate::metrics::value(&scraped, "scimgate_pipelines_in_flight", &[])
}

#[test]
fn a_busy_server_refuses_a_request_before_any_stage_counts_it() {
    let server = Server::start(BUSY);
    // Two slow requests take both pipeline slots (the rate limit counts
    // them: one and two of three).
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let url = server.url("/limited/x?sleep_ms=2000");
            std::thread::spawn(move || get(&url, &[]))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pipelines_in_flight(&server) < 2.0 {
        assert!(Instant::now() < deadline, "the slow requests never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    // No room: 503 at once, before the rate limit saw it.
    let busy = get(&server.url("/limited/x"), &[]);
    assert_eq!(busy.status, 503, "{}", busy.body);
    assert_eq!(busy.header("retry-after"), Some("1"));
    for request in slow {
        assert_eq!(request.join().expect("client").status, 200);
    }
    // So the third request the limit counts is this one, and the fourth
    // is refused by it.
    assert_eq!(get(&server.url("/limited/x"), &[]).status, 200);
    let limited = get(&server.url("/limited/x"), &[]);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(pipelines_in_flight(&server), 0.0);
}

#[test]
fn sighup_reloads_the_configuration() {
    let server = Server::start(DEMO);
    assert_eq!(get(&server.url("/demo/x"), &auth()).status, 200);
    server.reload_with(&DEMO.replace("header = \"x-demo\"", "header = \"x-other\""));
    assert_eq!(get(&server.url("/demo/x"), &auth()).status, 403);
    assert_eq!(
        get(
            &server.url("/demo/x"),
            &[("x-api-key", "k1"), ("x-other", "1")]
        )
        .status,
        200
    );
    // A broken config on reload keeps the running one.
    std::fs::write(&server.config_path, "this is = = not toml").unwrap();
    server.signal("HUP");
    wait_for_log(&server, "reload failed", Duration::from_secs(10));
    assert_eq!(
        get(
            &server.url("/demo/x"),
            &[("x-api-key", "k1"), ("x-other", "1")]
        )
        .status,
        200
    );
}

#[test]
fn plugin_logs_reach_the_host_through_the_tracing_bridge() {
    let server = Server::start(DEMO);
    assert_eq!(get(&server.url("/demo/x"), &auth()).status, 200);
    wait_for_log(
        &server,
        "demo profile tagged a request",
        Duration::from_secs(10),
    );
}

#[test]
fn validate_passes_for_every_example_config() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&root).unwrap().flatten() {
        let config = entry.path().join("scimgate.toml");
        if !config.is_file() {
            continue;
        }
        // Examples take their secrets from the environment, with no default.
        let text = std::fs::read_to_string(&config).unwrap();
        let secrets: Vec<String> = text
            .split("${")
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .filter(|name| !name.contains(":-"))
            .map(str::to_string)
            .collect();
        let path = config.to_str().unwrap();
        if !secrets.is_empty() {
            let (code, _, err) = run_cli(&["validate", "--config", path], &[]);
            assert_eq!(code, 2, "{path} must not run without its secrets");
            assert!(err.contains(&format!("`{}`", secrets[0])), "{err}");
        }
        let envs: Vec<(&str, &str)> = secrets
            .iter()
            .map(|n| (n.as_str(), "a-test-secret"))
            .collect();
        let (code, out, err) = run_cli(&["validate", "--config", path], &envs);
        assert_eq!(code, 0, "{}: {out}{err}", config.display());
        assert!(out.contains(": ok"), "{out}");
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no example configs found in {}",
        root.display()
    );
}

#[test]
fn validate_reports_every_mistake_with_its_location() {
    let dir = TempDir::new("broken");
    let path = dir.path().join("broken.toml");
    let broken = DEMO
        .replace("{plugin_dir}", &target_dir().display().to_string())
        .replace("{data_dir}", "data")
        .replace("use = \"demo/echo\"", "use = \"demo/ecko\"")
        .replace("header = \"x-demo\"", "header = 42")
        .replace(
            "pipeline = [\"key\", \"needs-header\"",
            "pipeline = [\"kee\", \"needs-header\"",
        )
        + "\n[[route]]\npath = \"/open\"\npipeline = [\"outer\", \"echo\"]\n";
    std::fs::write(&path, &broken).unwrap();
    let (code, _out, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    // Unknown component, with the file:line of the `use`.
    assert!(
        err.contains(&format!("broken.toml:{}:", line_of("demo/ecko"))),
        "{err}"
    );
    assert!(err.contains("no component `ecko`"), "{err}");
    // Unknown stage in a pipeline, with a suggestion.
    assert!(
        err.contains(&format!("broken.toml:{}:", line_of("\"kee\""))),
        "{err}"
    );
    // A plugin's own validation, mapped back to the key.
    assert!(
        err.contains(&format!("broken.toml:{}:", line_of("header = 42"))),
        "{err}"
    );
    // A route without an authenticator.
    assert!(err.contains("has no authenticator"), "{err}");
    assert!(err.contains('^'), "carets under the offending text: {err}");
}

#[test]
fn broken_plugin_files_get_one_paragraph_errors() {
    let dir = TempDir::new("badplugin");
    std::fs::write(dir.path().join("libfake.so"), b"not an ELF file").unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nplugin_dir = \"{}\"\n[stage.x]\nuse = \"fake/thing\"\n[stage.y]\nuse = \"absent/thing\"\n[[route]]\npath = \"/x\"\nanonymous = true\npipeline = [\"x\"]\n",
        dir.path().display()
    );
    let path = dir.path().join("c.toml");
    std::fs::write(&path, config).unwrap();
    let (code, _out, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("libfake.so could not be opened as a shared library"),
        "{err}"
    );
    assert!(err.contains("plugin library `absent` not found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn plugins_lists_libraries_and_components() {
    let (code, out, err) = run_cli(&["plugins", "--dir", target_dir().to_str().unwrap()], &[]);
    assert!(out.contains("demo/api-key"), "{out}{err}");
    assert!(out.contains("authenticator"));
    assert!(out.contains("ABI epoch 3"));
    // Components that may block are declared so; the host runs their routes
    // on the blocking pool.
    let basic = out
        .lines()
        .find(|l| l.contains("oauth2/basic"))
        .unwrap_or_default();
    assert!(basic.contains("authenticator (may block)"), "{out}");
    let bearer = out
        .lines()
        .find(|l| l.contains("oauth2/bearer "))
        .unwrap_or_default();
    assert!(
        bearer.contains("authenticator ") && !bearer.contains("may block"),
        "{out}"
    );
    assert_eq!(code, 0, "{out}{err}");
    // A file that is not a plugin fails the listing, naming the file.
    let dir = TempDir::new("plugins-bad");
    std::fs::write(dir.path().join("libbad.so"), "not a library").unwrap();
    let (code, out, err) = run_cli(&["plugins", "--dir", dir.path().to_str().unwrap()], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("libbad.so could not be opened as a shared library"),
        "{err}"
    );
}

#[test]
fn the_embedded_quickstart_creates_a_provider_once_and_serves_scim() {
    let (code, out, err) = run_cli(&["validate"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let mut server = Server::start_cli(&["serve", "--listen", "127.0.0.1:0"]);
    let stdout = server.stdout_lines.join("\n");
    assert!(stdout.contains("embedded default"), "{stdout}");
    let field = |name: &str| {
        server
            .stdout_lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no `{name}` line in {stdout}"))
    };
    let client_id = field("client ID:");
    let secret = field("client secret:");
    assert_eq!(secret.len(), 43, "a 256-bit secret, base64url");
    assert_eq!(get(&server.url("/healthz"), &[]).status, 200);
    // Nothing but health is reachable without credentials.
    assert_eq!(get(&server.url("/scim/v2/Users"), &[]).status, 401);
    assert_eq!(get(&server.url("/anything"), &[]).status, 404);
    let basic = basic_auth(&client_id, &secret);
    let token = send(
        "POST",
        &server.url("/oauth2/token"),
        &[
            ("authorization", &basic),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(token.status, 200, "{}", token.body);
    let access = token.json()["access_token"].as_str().unwrap().to_string();
    let bearer = format!("Bearer {access}");
    let created = send_json(
        "POST",
        &server.url("/scim/v2/Users"),
        &[("authorization", &bearer)],
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    // Only the hash is kept, and neither secret nor token reach the log.
    let stored = std::fs::read_to_string(
        server
            .dir
            .path()
            .join("scimgate-data/quickstart-provider.json"),
    )
    .unwrap();
    assert!(!stored.contains(&secret));
    assert!(!server.logs().contains(&secret) && !server.logs().contains(&access));
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));

    // A second start reuses the provider, prints no secret, keeps the data.
    let dir = server.take_dir();
    let again = Server::start_cli_in(dir, &["serve", "--listen", "127.0.0.1:0"]);
    assert!(
        !again
            .stdout_lines
            .iter()
            .any(|l| l.contains("client secret")),
        "{:?}",
        again.stdout_lines
    );
    let token = send(
        "POST",
        &again.url("/oauth2/token"),
        &[
            ("authorization", &basic),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(token.status, 200, "{}", token.body);
    let bearer = format!("Bearer {}", token.json()["access_token"].as_str().unwrap());
    let list = get(
        &again.url("/scim/v2/Users?filter=userName%20eq%20%22bjensen%22"),
        &[("authorization", &bearer)],
    );
    assert_eq!(list.json()["totalResults"], 1, "{}", list.body);
}

/// Builds the demo plugin against a modified copy of `scimgate-abi` (offline,
/// in a cached target folder next to the main one) and returns the `.so`.
fn demo_plugin_built_against(tag: &str, patch: impl Fn(&std::path::Path)) -> TempDir {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let work = TempDir::new(tag);
    let root = work.path().to_path_buf();
    // The crates sit under `<tag>/` in the variant's workspace: cargo names
    // a path crate's build by its path relative to the workspace, so with
    // the same relative paths the variants would share (and overwrite) one
    // `scimgate-abi` build in the shared target dir.
    let src = root.join(tag);
    let copy = |from: &str| {
        let status = std::process::Command::new("cp")
            .args([
                "-r",
                repo.join(from).to_str().unwrap(),
                src.join(from).to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    std::fs::create_dir_all(src.join("core")).unwrap();
    std::fs::create_dir_all(src.join("examples")).unwrap();
    copy("core/abi");
    copy("examples/demo-plugin");
    std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let deps = manifest[manifest.find("[workspace.dependencies]").unwrap()
        ..manifest.find("[workspace.lints.rust]").unwrap()]
        .replace("path = \"", &format!("path = \"{tag}/"))
        .lines()
        // The variant's crates are built against a modified `scimgate-abi`
        // whose version may differ: path dependencies lose their version.
        .map(
            |line| match (line.contains("path = "), line.find(", version = \"")) {
                (true, Some(at)) => {
                    let end = at + 13 + line[at + 13..].find('"').unwrap() + 1;
                    format!("{}{}", &line[..at], &line[end..])
                }
                _ => line.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"{tag}/core/abi\", \"{tag}/examples/demo-plugin\"]\n\
             [workspace.package]\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"Apache-2.0\"\n\
             {deps}\n[workspace.lints.rust]\nunsafe_code = \"deny\"\n"
        ),
    )
    .unwrap();
    // Each variant builds its own library name: a cdylib's file name carries
    // no hash, so in the shared target dir one variant's `libdemo.so` would
    // overwrite another's while cargo still counts that one as built.
    let lib_name = format!("demo_{}", tag.replace('-', "_"));
    let plugin_manifest = src.join("examples/demo-plugin/Cargo.toml");
    let text = std::fs::read_to_string(&plugin_manifest).unwrap();
    assert!(text.contains("name = \"demo\"\n"), "{text}");
    std::fs::write(
        &plugin_manifest,
        text.replacen("name = \"demo\"\n", &format!("name = \"{lib_name}\"\n"), 1),
    )
    .unwrap();
    patch(&src);
    // Built at a path that stays the same from run to run (only changed
    // files rewritten), so that reruns are incremental.
    let build = BuildDir::new(tag);
    sync_tree(&root, build.path());
    let target = out_of_tree_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build_plugin = || {
        std::process::Command::new(&cargo)
            .args(["build", "--offline", "-q", "-p", "scimgate-demo-plugin"])
            .current_dir(build.path())
            .env("CARGO_TARGET_DIR", &target)
            .output()
            .unwrap()
    };
    let mut out = build_plugin();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--offline") {
        // A variant's lock file (the epoch-2 one comes from the history)
        // can name crates the current workspace never downloaded: on a
        // fresh machine, fetch them from the registry once, then build
        // offline again.
        let fetched = std::process::Command::new(&cargo)
            .args(["fetch", "-q"])
            .current_dir(build.path())
            .output()
            .unwrap();
        assert!(
            fetched.status.success(),
            "cargo fetch for the {tag} variant: {}",
            String::from_utf8_lossy(&fetched.stderr)
        );
        out = build_plugin();
    }
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = target.join("debug").join(format!("lib{lib_name}.so"));
    let plugin_dir = TempDir::new(&format!("{tag}-plugins"));
    std::fs::copy(&built, plugin_dir.path().join("libdemo.so")).unwrap();
    plugin_dir
}

#[test]
fn plugins_built_against_another_abi_are_refused_with_one_paragraph() {
    // Another layout of a contract type (a variant added to ErrorStyle).
    let changed_layout = demo_plugin_built_against("abi-layout", |root| {
        let path = root.join("core/abi/src/types.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("    OAuth,\n}", "    OAuth,\n    Plain,\n}", 1),
        )
        .unwrap();
    });
    let dir = changed_layout.path().to_str().unwrap().to_string();
    let (code, _out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains(
            "libdemo.so was built against a different layout of the scimgate plugin types"
        ),
        "{err}"
    );
    // It names the type and the variant that differ, and says what to do.
    assert!(
        err.contains("`ErrorStyle` has variant `Plain` that this scimgate does not know"),
        "{err}"
    );
    assert!(
        err.contains("Rebuild the plugin against this scimgate's `scimgate-abi`"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");

    // Another `scimgate-abi` version number: named as such, not as a layout.
    let other_version = demo_plugin_built_against("abi-version", |root| {
        let path = root.join("core/abi/Cargo.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("version = \"0.3.0\""), "{text}");
        std::fs::write(
            &path,
            text.replacen("version = \"0.3.0\"", "version = \"0.9.0\"", 1),
        )
        .unwrap();
    });
    let dir = other_version.path().to_str().unwrap().to_string();
    let (code, _out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("libdemo.so was built against scimgate-abi 0.9.0, but this scimgate has scimgate-abi 0.3.0"),
        "{err}"
    );
    assert!(!err.contains("layout"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");

    // Same layout, a newer ABI epoch.
    let newer_epoch = demo_plugin_built_against("abi-epoch", |root| {
        let path = root.join("core/abi/src/lib.rs");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace(
                "pub const ABI_EPOCH: u32 = 3;",
                "pub const ABI_EPOCH: u32 = 4;",
            ),
        )
        .unwrap();
    });
    let dir = newer_epoch.path().to_str().unwrap().to_string();
    let (code, _out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("was built for scimgate plugin ABI epoch 4, but this scimgate understands epochs 3 to 3"), "{err}");
}

#[test]
fn slow_requests_time_out_with_503_and_json_logs_carry_the_audit_fields() {
    let config = DEMO
        .replace("request_timeout = \"5s\"", "request_timeout = \"300ms\"")
        .replace(
            "max_body_size = \"64KiB\"",
            "max_body_size = \"64KiB\"\nlog_format = \"json\"",
        );
    let server = Server::start(&config);
    let slow = get(&server.url("/demo/slow?sleep_ms=1500"), &auth());
    assert_eq!(slow.status, 503, "{}", slow.body);
    assert_eq!(slow.header("retry-after"), Some("1"));
    assert_eq!(slow.json()["status"], "503");
    assert_eq!(get(&server.url("/demo/fast"), &auth()).status, 200);
    // Every log line is a JSON object; the audit events carry their fields.
    let logs = server.logs();
    let events: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let audit: Vec<&Value> = events
        .iter()
        .filter(|e| e["target"] == "scimgate::audit")
        .collect();
    assert!(
        audit
            .iter()
            .any(|e| e["status"] == 503 && e["path"] == "/demo/slow"),
        "{logs}"
    );
    let ok = audit
        .iter()
        .find(|e| e["path"] == "/demo/fast")
        .expect("audit event of the fast request");
    assert_eq!(ok["provider"], "p1");
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["route"], "/demo");
    assert!(ok["latency_us"].is_u64());
}

#[test]
fn plugin_dir_takes_a_list_of_folders_searched_in_order() {
    let empty = TempDir::new("plugins-empty");
    let shadowing = TempDir::new("plugins-shadowing");
    let target = target_dir().display().to_string();
    let listed = |first: &TempDir| {
        DEMO.replace(
            "plugin_dir = \"{plugin_dir}\"",
            &format!(
                "plugin_dir = [\"{}\", \"{target}\"]",
                first.path().display()
            ),
        )
    };
    // A library missing from the first folder is found in the next.
    let server = Server::start(&listed(&empty));
    assert_eq!(get(&server.url("/demo/hello"), &auth()).status, 200);
    drop(server);

    // The first folder that has the file wins, even over a good one later.
    std::fs::write(shadowing.path().join("libdemo.so"), b"not an ELF file").unwrap();
    let dir = TempDir::new("plugins-config");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(&path, expand(&listed(&shadowing), dir.path())).unwrap();
    let config = path.display().to_string();
    let (code, _, err) = run_cli(&["validate", "--config", &config], &[]);
    assert_eq!(code, 2, "{err}");
    let first = shadowing.path().join("libdemo.so");
    assert!(
        err.contains(&format!("{} could not be opened", first.display())),
        "{err}"
    );

    // A library in none of them names every folder searched.
    let absent = listed(&empty).replace("use = \"demo/echo\"", "use = \"absent/echo\"");
    std::fs::write(&path, expand(&absent, dir.path())).unwrap();
    let (code, _, err) = run_cli(&["validate", "--config", &config], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "plugin library `absent` not found: looked for libabsent.so in {}, {target}",
            empty.path().display()
        )),
        "{err}"
    );
}

#[test]
fn a_plugin_built_before_declarations_existed_is_refused_by_version() {
    // Epoch 2 added `declarations` and `validate_provider` to the root
    // module. abi_stable refuses a library whose root module has fewer
    // fields than the host's, so that addition raised `scimgate-abi` to 0.2:
    // a plugin built against 0.1 (without the fields) gets a version
    // message, not a layout report.
    let older = demo_plugin_built_against("abi-before-declarations", |root| {
        let ffi = root.join("core/abi/src/ffi.rs");
        let text = std::fs::read_to_string(&ffi).unwrap();
        let start = text
            .find("    // Fields after `create` were added")
            .unwrap();
        let end = start + text[start..].find("\n}\n").unwrap();
        std::fs::write(&ffi, format!("{}{}", &text[..start], &text[end + 1..])).unwrap();
        let sdk = root.join("core/abi/src/sdk.rs");
        let text = std::fs::read_to_string(&sdk).unwrap();
        let exported =
            "                    declarations,\n                    validate_provider,\n";
        assert!(text.contains(exported));
        std::fs::write(&sdk, text.replace(exported, "")).unwrap();
        let manifest = root.join("core/abi/Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            text.replacen("version = \"0.3.0\"", "version = \"0.1.0\"", 1),
        )
        .unwrap();
    });
    let dir = older.path().display().to_string();
    let (code, out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("libdemo.so was built against scimgate-abi 0.1.0, but this scimgate has scimgate-abi 0.3.0"),
        "{err}"
    );
    assert!(!err.contains("layout"), "{err}");
}

/// The last commit of the epoch-2 contract (`scimgate-abi` 0.2.0): the
/// host services had `max_level` and `log` only.
const EPOCH_2_COMMIT: &str = "956a57edb97634c228edeb6231e256f8f5b8d14e";

/// The variant's `scimgate-abi` as it was in epoch 2: from this repository's
/// history when the clone has [`EPOCH_2_COMMIT`] (a plugin exactly as it was
/// built then), else the current one with the epoch-3 method taken out (a
/// shallow clone: the same contract, rebuilt by edit).
fn with_the_epoch_2_contract(root: &std::path::Path) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let has_commit = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &format!("{EPOCH_2_COMMIT}^{{commit}}")])
        .status()
        .is_ok_and(|status| status.success());
    // SCIMGATE_TEST_EPOCH2_BY_EDIT=1 takes the shallow-clone path anyway.
    if has_commit && std::env::var_os("SCIMGATE_TEST_EPOCH2_BY_EDIT").is_none() {
        epoch_2_from_history(root, repo);
    } else {
        epoch_2_by_edit(root);
    }
    let abi = root.join("core/abi");
    let manifest = std::fs::read_to_string(abi.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("version = \"0.2.0\""), "{manifest}");
    let lib = std::fs::read_to_string(abi.join("src/lib.rs")).unwrap();
    assert!(lib.contains("pub const ABI_EPOCH: u32 = 2;"), "{lib}");
    let ffi = std::fs::read_to_string(abi.join("src/ffi.rs")).unwrap();
    assert!(!ffi.contains("report_store_op"), "{ffi}");
}

/// Replaces the variant's `scimgate-abi` (and its lock file) and the demo
/// plugin's sources with those at [`EPOCH_2_COMMIT`].
fn epoch_2_from_history(root: &std::path::Path, repo: &std::path::Path) {
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "this test reads the epoch-2 contract from the git history (commit \
             {EPOCH_2_COMMIT}); a shallow clone lacks it: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let abi = root.join("core/abi");
    std::fs::remove_dir_all(&abi).unwrap();
    std::fs::remove_dir_all(root.join("examples/demo-plugin/src")).unwrap();
    let listing = git(&[
        "ls-tree",
        "-r",
        "--name-only",
        EPOCH_2_COMMIT,
        "core/abi",
        "examples/demo-plugin/src",
    ]);
    for path in String::from_utf8(listing).unwrap().lines() {
        let to = root.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(&to, git(&["show", &format!("{EPOCH_2_COMMIT}:{path}")])).unwrap();
    }
    let lock = git(&["show", &format!("{EPOCH_2_COMMIT}:Cargo.lock")]);
    std::fs::write(root.parent().unwrap().join("Cargo.lock"), lock).unwrap();
}

/// Takes the epoch-3 method out of the current `scimgate-abi` and labels it
/// 0.2.0 / epoch 2.
fn epoch_2_by_edit(root: &std::path::Path) {
    let abi = root.join("core/abi");
    let edit = |file: &str, f: &dyn Fn(String) -> String| {
        let path = abi.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let edited = f(text.clone());
        assert_ne!(
            edited, text,
            "{file} did not change: this edit needs updating"
        );
        std::fs::write(&path, edited).unwrap();
    };
    let cut = |text: &str, from: &str, to: &str, with: &str| {
        let start = text.find(from).expect(from);
        let end = start + text[start..].find(to).expect(to) + to.len();
        format!("{}{with}{}", &text[..start], &text[end..])
    };
    edit("src/ffi.rs", &|t| {
        cut(
            &t,
            "    // Methods after `log` were added in epoch 3",
            "    );\n}\n",
            "}\n",
        )
    });
    edit("src/sdk.rs", &|t| {
        let t = cut(
            &t,
            "        self.inner.report_store_op(",
            "        );\n",
            "        let _ = (operation, nanos, error_kind, pool);\n",
        );
        cut(
            &t,
            "        self.inner\n            .report_change_lag(",
            ");\n",
            "        let _ = (subscriber, lag, dead_lettered);\n",
        )
    });
    edit("src/testing.rs", &|t| {
        let t = cut(
            &t,
            "    /// Store metrics are the host's: the harness ignores them.",
            "    ) {\n    }\n",
            "",
        );
        cut(
            &t,
            "    /// Change-feed gauges are the host's too.",
            "{}\n",
            "",
        )
    });
    edit("src/lib.rs", &|t| {
        t.replace(
            "pub const ABI_EPOCH: u32 = 3;",
            "pub const ABI_EPOCH: u32 = 2;",
        )
        .replace(
            "pub const MIN_SUPPORTED_EPOCH: u32 = 3;",
            "pub const MIN_SUPPORTED_EPOCH: u32 = 2;",
        )
    });
    edit("Cargo.toml", &|t| {
        t.replacen("version = \"0.3.0\"", "version = \"0.2.0\"", 1)
    });
}

#[test]
fn a_plugin_built_against_the_epoch_2_contract_is_refused_with_a_clear_message() {
    // Epoch 3 added `FfiHostServices::report_store_op`. The host hands its
    // services table to the plugin, but abi_stable checks that table as part
    // of the root module's layout, host side as expected: a plugin whose
    // table has fewer methods is refused. So 0.3 / epoch 3 is the oldest
    // this host loads, and an epoch-2 plugin gets the version message.
    let old = demo_plugin_built_against("abi-epoch-2", with_the_epoch_2_contract);
    let dir = old.path().display().to_string();
    let (code, out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("libdemo.so was built against scimgate-abi 0.2.0, but this scimgate has scimgate-abi 0.3.0"),
        "{err}"
    );
    assert!(!err.contains("layout"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");

    // The same epoch-2 contract labelled 0.3.0 passes the version check and
    // meets abi_stable's layout check, which refuses it: this is why the
    // method could not be added without dropping epoch 2.
    let relabelled = demo_plugin_built_against("abi-epoch-2-as-0-3", |root| {
        with_the_epoch_2_contract(root);
        let manifest = root.join("core/abi/Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            text.replacen("version = \"0.2.0\"", "version = \"0.3.0\"", 1),
        )
        .unwrap();
    });
    let dir = relabelled.path().display().to_string();
    let (code, out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains(
            "libdemo.so was built against a different layout of the scimgate plugin types"
        ),
        "{err}"
    );
    // abi_stable's report ("too many fields, expected 6, found 4") is about
    // the host services' method table (`FfiHostServices`' `VTable`):
    // `_sabi_tys`, `_sabi_vtable`, `max_level`, `log` (+ `report_store_op`,
    // `report_change_lag`).
    assert!(
        err.contains("`VTable` has 4 fields where this scimgate's has 6"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one paragraph: {err}");
}

#[test]
fn a_signal_right_after_the_banner_is_handled_not_fatal() {
    // The handlers are installed before the banner is printed: a SIGHUP
    // sent the moment the server says it listens reloads, and a SIGTERM
    // stops it gracefully, instead of the default action killing it.
    for _ in 0..3 {
        let server = Server::start(DEMO);
        server.signal("HUP");
        wait_for_log(&server, "configuration reloaded", Duration::from_secs(30));
        assert_eq!(get(&server.url("/healthz"), &[]).status, 200);
    }
    let mut server = Server::start(DEMO);
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(30)), Some(0));
    assert!(server.logs().contains("shutting down"), "{}", server.logs());
}

#[test]
fn version_names_the_plugin_contract() {
    let (code, out, err) = run_cli(&["--version"], &[]);
    assert_eq!(code, 0, "{err}");
    let abi = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/abi/Cargo.toml"),
    )
    .unwrap();
    let abi_version = abi
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap();
    assert!(
        out.contains(&format!(
            "(plugin ABI: scimgate-abi {abi_version}, epoch 3)"
        )),
        "{out}"
    );
}

#[test]
fn plugin_log_lines_carry_the_request_id_and_the_level_is_configurable() {
    let config = DEMO.replace(
        "max_body_size = \"64KiB\"",
        "max_body_size = \"64KiB\"\nlog_format = \"json\"",
    );
    let server = Server::start(&config);
    let mut headers = auth();
    headers.push(("x-request-id", "req-7f3a-plugin-log"));
    let reply = get(
        &server.url("/demo/hello?log=marker-from-the-plugin"),
        &headers,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let logs = wait_for_log(&server, "marker-from-the-plugin", Duration::from_secs(30));
    let line: Value = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("marker-from-the-plugin"))
        })
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(line["target"], "scimgate::plugin", "{line}");
    assert_eq!(line["request_id"], "req-7f3a-plugin-log", "{line}");
    drop(server);

    // `serve --log-level` wins over SCIMGATE_LOG (which the test harness
    // sets to debug): at warn, no per-request audit lines.
    let dir = TempDir::new("log-level-cli");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(&path, expand(&config, dir.path())).unwrap();
    let quiet = Server::start_cli_in(
        dir,
        &[
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--log-level",
            "warn",
        ],
    );
    assert_eq!(get(&quiet.url("/demo/hello"), &auth()).status, 200);
    let noisy = Server::start(&config);
    assert_eq!(get(&noisy.url("/demo/hello"), &auth()).status, 200);
    wait_for_log(&noisy, "scimgate::audit", Duration::from_secs(30));
    assert!(
        !quiet.logs().contains("scimgate::audit"),
        "{}",
        quiet.logs()
    );

    // A level that is not one is a located config error.
    let dir = TempDir::new("log-level");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(
        &path,
        expand(
            &config.replace("log_format = \"json\"", "log_level = \"scimgate=loud\""),
            dir.path(),
        ),
    )
    .unwrap();
    let (code, _, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("invalid log level `scimgate=loud`"), "{err}");
    assert!(err.contains("scimgate.toml:"), "{err}");
}

/// The log's buffer (`SCIMGATE_LOG_FLUSH`): an error line is written before
/// its response is read, and every buffered line by a graceful shutdown.
#[test]
fn buffered_log_lines_are_written_at_once_for_errors_and_all_at_shutdown() {
    let mut server = Server::start_with_env(
        DEMO,
        &[("SCIMGATE_LOG_FLUSH", "10s"), ("SCIMGATE_LOG", "info")],
    );
    let failed = get(&server.url("/demo/boom?panic=1"), &auth());
    assert_eq!(failed.status, 500, "{}", failed.body);
    let logs = server.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("request failed") && l.contains("path=/demo/boom")),
        "the error line waited for the flush:\n{logs}"
    );
    for i in 0..20 {
        let reply = get(&server.url(&format!("/demo/ok{i}")), &auth());
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    server.signal("TERM");
    assert_eq!(server.wait_exit(Duration::from_secs(10)), Some(0));
    let logs = server.logs();
    for i in 0..20 {
        let path = format!("path=/demo/ok{i} ");
        assert!(
            logs.lines().any(|l| l.contains("scimgate::audit")
                && l.contains(&path)
                && l.contains("status=200")),
            "no audit line for /demo/ok{i} after shutdown:\n{logs}"
        );
    }
}

/// The host turns transparent huge pages off for itself (mimalloc's arenas
/// would otherwise count in 2 MiB pages; docs/performance.md): the kernel
/// reports it in `/proc/PID/status`, after the plugins are loaded.
#[test]
fn the_serving_process_has_transparent_huge_pages_off() {
    let server = Server::start(DEMO);
    let reply = get(&server.url("/demo/ok"), &auth());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid()))
        .expect("the server's /proc status");
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    // Kernels before 5.0 do not report it; this one must.
    assert_eq!(thp, Some("0"), "{status}");
}
