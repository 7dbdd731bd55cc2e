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
    let boom = get(&server.url("/demo/x?panic=1"), &auth());
    assert_eq!(boom.status, 500);
    let body = boom.json();
    assert_eq!(body["status"], "500");
    // The client learns the request id, not the plugin's internals.
    let detail = body["detail"].as_str().unwrap();
    assert!(!detail.contains("panic requested"), "{detail}");
    assert_eq!(
        boom.header("x-request-id").map(|id| detail.contains(id)),
        Some(true)
    );
    // The very next request is served.
    let next = get(&server.url("/demo/x"), &auth());
    assert_eq!(next.status, 200);
    assert!(
        server.logs().contains("panic requested by the client"),
        "the log keeps the panic message"
    );
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
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    server.signal("TERM");
    let reply = slow.join().expect("client thread");
    assert_eq!(reply.status, 200, "the in-flight request finished");
    let code = server.wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "clean exit after SIGTERM");
    assert!(started.elapsed() < Duration::from_secs(10));
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.logs().contains("reload failed") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.logs().contains("reload failed"));
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
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.logs().contains("demo profile tagged a request") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.logs().contains("demo profile tagged a request"),
        "{}",
        server.logs()
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
    assert!(out.contains("ABI epoch 1"));
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
    let _ = code;
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
    let copy = |from: &str| {
        let status = std::process::Command::new("cp")
            .args([
                "-r",
                repo.join(from).to_str().unwrap(),
                root.join(from).to_str().unwrap(),
            ])
            .status()
            .unwrap();
        assert!(status.success());
    };
    std::fs::create_dir_all(root.join("core")).unwrap();
    std::fs::create_dir_all(root.join("examples")).unwrap();
    copy("core/abi");
    copy("examples/demo-plugin");
    std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock")).unwrap();
    let manifest = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let deps = &manifest[manifest.find("[workspace.dependencies]").unwrap()
        ..manifest.find("[workspace.lints.rust]").unwrap()];
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"core/abi\", \"examples/demo-plugin\"]\n\
             [workspace.package]\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"Apache-2.0\"\n\
             {deps}\n[workspace.lints.rust]\nunsafe_code = \"deny\"\n"
        ),
    )
    .unwrap();
    patch(&root);
    let target = target_dir().parent().unwrap().join("abi-variant");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--offline", "-q", "-p", "scimgate-demo-plugin"])
        .current_dir(&root)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = target.join("debug").join("libdemo.so");
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
        assert!(text.contains("version = \"0.1.0\""), "{text}");
        std::fs::write(
            &path,
            text.replacen("version = \"0.1.0\"", "version = \"0.2.0\"", 1),
        )
        .unwrap();
    });
    let dir = other_version.path().to_str().unwrap().to_string();
    let (code, _out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("libdemo.so was built against scimgate-abi 0.2.0, but this scimgate has scimgate-abi 0.1.0"),
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
                "pub const ABI_EPOCH: u32 = 1;",
                "pub const ABI_EPOCH: u32 = 2;",
            ),
        )
        .unwrap();
    });
    let dir = newer_epoch.path().to_str().unwrap().to_string();
    let (code, _out, err) = run_cli(&["plugins", "--dir", &dir], &[]);
    assert_ne!(code, 0);
    assert!(err.contains("was built for scimgate plugin ABI epoch 2, but this scimgate understands epochs 1 to 1"), "{err}");
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
