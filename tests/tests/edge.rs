//! The host's edge against hostile or broken clients, over raw TCP where
//! HTTP clients would hide it: slow request heads and bodies are cut off,
//! `max_connections` holds the next connection back, `/readyz` tells only
//! its status, only the configured forwarding header names the client, and
//! client-chosen text cannot forge log lines.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use scimgate_e2e::*;

/// The demo echo behind an API key; `{server}` takes extra `[server]` lines.
const DEMO: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"
{server}

[stage.key]
use = "demo/api-key"
keys = { "k1" = "p1" }

[stage.echo]
use = "demo/echo"

[[route]]
path = "/demo"
pipeline = ["key", "echo"]

[[provider]]
id = "p1"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn demo(server_lines: &str) -> String {
    DEMO.replace("{server}", server_lines)
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.base.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    stream
}

/// Waits until `logs` contains `needle` (the server's own signal).
fn wait_for_log(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if server.logs().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("`{needle}` never appeared in the log:\n{}", server.logs());
}

/// Reads until the peer closes; `(bytes, closed)`: `closed` is false when
/// the read timed out with the connection still open.
fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    stream.set_read_timeout(Some(timeout)).ok();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return (got, false)
            }
            Err(_) => return (got, true), // reset
        }
    }
}

/// Sends `bytes` one at a time, `gap` apart, on a thread; the flag says
/// whether all of them went out.
fn dribble(stream: &TcpStream, bytes: Vec<u8>, gap: Duration) -> Arc<AtomicBool> {
    let mut writer = stream.try_clone().expect("clone");
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    std::thread::spawn(move || {
        for b in bytes {
            if writer.write_all(&[b]).is_err() {
                return;
            }
            std::thread::sleep(gap);
        }
        flag.store(true, Ordering::SeqCst);
    });
    done
}

#[test]
fn a_client_dribbling_its_request_head_is_disconnected() {
    let server = Server::start(&demo("header_read_timeout = \"1s\""));
    let mut stream = connect(&server);
    // ~60 s worth of header bytes at one per 300 ms, never finishing the head.
    let mut head = b"GET /demo/x HTTP/1.1\r\nHost: x\r\nX-Api-Key: k1\r\nX-Slow: ".to_vec();
    head.extend_from_slice(&[b'a'; 150]);
    let all_sent = dribble(&stream, head, Duration::from_millis(300));
    let (bytes, closed) = read_until_closed(&mut stream, Duration::from_secs(30));
    assert!(closed, "the connection is still open after 30 s");
    assert!(
        !all_sent.load(Ordering::SeqCst),
        "closed only after the client stopped"
    );
    assert!(
        bytes.is_empty(),
        "no response to a head that never completed: {}",
        String::from_utf8_lossy(&bytes)
    );
    // Other clients are served as usual.
    assert_eq!(
        get(&server.url("/demo/x"), &[("x-api-key", "k1")]).status,
        200
    );
}

#[test]
fn a_client_dribbling_its_body_gets_503_within_the_request_timeout() {
    let server = Server::start(&demo("request_timeout = \"1s\""));
    let mut stream = connect(&server);
    stream
        .write_all(
            b"POST /demo/x HTTP/1.1\r\nHost: x\r\nX-Api-Key: k1\r\nContent-Length: 200\r\n\r\n",
        )
        .expect("head");
    let all_sent = dribble(&stream, vec![b'x'; 200], Duration::from_millis(300));
    let (bytes, closed) = read_until_closed(&mut stream, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.starts_with("HTTP/1.1 503") || (closed && bytes.is_empty()),
        "expected 503 or a closed connection, got (closed: {closed}): {text}"
    );
    assert!(
        !all_sent.load(Ordering::SeqCst),
        "answered only after the whole body"
    );
    if text.starts_with("HTTP/1.1 503") {
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 1"),
            "{text}"
        );
    }
    wait_for_log(&server, "request timed out after");
}

#[test]
fn connections_past_max_connections_wait_until_one_closes() {
    let server = Server::start(&demo("max_connections = 2"));
    // Two kept-alive connections, each with a request served: both held.
    let mut first = KeepAliveClient::connect(&server.base, "none");
    let mut second = KeepAliveClient::connect(&server.base, "none");
    assert_eq!(first.request("GET", "/healthz", None).0, 200);
    assert_eq!(second.request("GET", "/healthz", None).0, 200);
    wait_for_log(&server, "connection limit reached");
    // The third connects (the kernel queues it) but is not served...
    let mut third = connect(&server);
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("request");
    let (early, closed) = read_until_closed(&mut third, Duration::from_secs(2));
    assert!(
        early.is_empty() && !closed,
        "the third connection was served while two were open: {}",
        String::from_utf8_lossy(&early)
    );
    // ...until one of the two closes.
    drop(first);
    let (reply, _) = read_until_closed(&mut third, Duration::from_secs(20));
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"status":"ok"}"#), "{text}");
    // The second is still served on its connection.
    assert_eq!(second.request("GET", "/healthz", None).0, 200);
}

#[test]
fn only_the_configured_forwarding_header_names_the_client() {
    let proxy = "trusted_proxies = [\"127.0.0.1\"]";
    let server = Server::start(&demo(&format!("{proxy}\nforwarded_header = \"forwarded\"")));
    // The proxy (127.0.0.1) sets Forwarded; the client's own
    // X-Forwarded-For came through untouched.
    let headers = [
        ("x-api-key", "k1"),
        ("x-forwarded-for", "198.51.100.66"),
        ("forwarded", "for=203.0.113.7;proto=https"),
    ];
    let reply = get(&server.url("/demo/x"), &headers);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["client_ip"], "203.0.113.7");
    let spoofed_only = get(
        &server.url("/demo/x"),
        &[("x-api-key", "k1"), ("x-forwarded-for", "198.51.100.66")],
    );
    assert_eq!(spoofed_only.json()["client_ip"], "127.0.0.1");
    // The audit trail says the same.
    let logs = server.logs();
    assert!(logs.contains("client_ip=203.0.113.7 "), "{logs}");
    assert!(!logs.contains("client_ip=198.51.100.66"), "{logs}");

    // The other way round: X-Forwarded-For (the default) is read, Forwarded ignored.
    server.reload_with(&demo(proxy));
    let reply = get(&server.url("/demo/x"), &headers);
    assert_eq!(reply.json()["client_ip"], "198.51.100.66");
    let forwarded_only = get(
        &server.url("/demo/x"),
        &[("x-api-key", "k1"), ("forwarded", "for=203.0.113.7")],
    );
    assert_eq!(forwarded_only.json()["client_ip"], "127.0.0.1");
}

#[test]
fn an_unknown_forwarded_header_is_a_located_error() {
    let dir = TempDir::new("edge-forwarded");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(
        &path,
        expand(&demo("forwarded_header = \"x-real-ip\""), dir.path()),
    )
    .expect("write");
    let (code, _, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: unknown forwarded header `x-real-ip`")
            && err.contains("scimgate.toml:6:20"),
        "{err}"
    );
}

/// A fake audit line a client tries to smuggle into the log.
const FAKE: &str = "2030-01-01T00:00:00.000000Z  INFO scimgate::audit: request route=/admin decision=\"allow\" FORGED";

/// The token route and a SCIM route with the real plugins.
const TOKEN_AND_SCIM: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"
log_format = "{format}"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
[stage.bearer]
use = "oauth2/bearer"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/oauth2/token"
pipeline = ["client-auth", "token"]

[[route]]
path = "/scim/v2"
pipeline = ["bearer", "scim"]

[[provider]]
id = "oim"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim"
client_secret = "oim-secret-0123456789"
scopes = ["scim:read", "scim:write"]
"#;

/// Sends the forging attempts: a Basic client id with an encoded line break,
/// and a SCIM filter with one.
fn forge(server: &Server) {
    let id = format!("x\n{FAKE}");
    let auth = client_basic(&id, "whatever");
    let reply = send(
        "POST",
        &server.url("/oauth2/token"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    let token = send(
        "POST",
        &server.url("/oauth2/token"),
        &[
            (
                "authorization",
                client_basic("oim", "oim-secret-0123456789").as_str(),
            ),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(token.status, 200, "{}", token.body);
    let bearer = format!("Bearer {}", token.json()["access_token"].as_str().unwrap());
    let auth = [("authorization", bearer.as_str())];
    let created = send_json(
        "POST",
        &server.url("/scim/v2/Users"),
        &auth,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_string();
    // SCIM errors quote the attribute a client named; the audit reason
    // carries the error.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "value": {format!("x\n{FAKE}"): 1}}]
    });
    let reply = send_json(
        "PATCH",
        &server.url(&format!("/scim/v2/Users/{id}")),
        &auth,
        &patch,
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    wait_for_log(server, "PATCH");
}

#[test]
fn client_text_cannot_forge_a_human_log_line() {
    let server = Server::start(&TOKEN_AND_SCIM.replace("{format}", "human"));
    forge(&server);
    let logs = server.logs();
    assert!(
        logs.contains("FORGED"),
        "the attempt reached the log, escaped:\n{logs}"
    );
    for line in logs.lines() {
        assert!(
            !line.starts_with("2030-01-01") && !line.contains("\u{1b}") && !line.contains('\r'),
            "a forged line:\n{line}\nin:\n{logs}"
        );
    }
}

#[test]
fn a_plugin_logging_client_text_as_is_cannot_forge_a_human_line() {
    // The demo echo logs `?log=` unescaped: only the host's formatter
    // stands between that text and the log file.
    let server = Server::start(&demo(r#"log_format = "human""#));
    let text = percent_encode(&format!("x\n{FAKE}\r\u{1b}[2K"));
    let reply = send(
        "GET",
        &server.url(&format!("/demo?log={text}")),
        &[("x-api-key", "k1")],
        None,
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_for_log(&server, "demo echo logged");
    let logs = server.logs();
    assert!(logs.contains("FORGED"), "the text reached the log:\n{logs}");
    for line in logs.lines() {
        assert!(
            !line.starts_with("2030-01-01") && !line.contains('\u{1b}') && !line.contains('\r'),
            "a forged line:\n{line}\nin:\n{logs}"
        );
    }
}

#[test]
fn client_text_stays_inside_one_json_field() {
    let server = Server::start(&TOKEN_AND_SCIM.replace("{format}", "json"));
    forge(&server);
    let logs = server.logs();
    let mut carrying = 0;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}\nin:\n{logs}"));
        if line.contains("FORGED") {
            carrying += 1;
            let fields = event.as_object().expect("object");
            assert!(
                fields.values().any(|v| v.as_str().is_some_and(|s| s
                    .contains(&format!("\n{FAKE}"))
                    || s.contains(&format!("\\n{FAKE}")))),
                "the text is one field's value: {event}"
            );
        }
    }
    assert!(carrying > 0, "the attempt reached the log:\n{logs}");
}

/// `/readyz` with the store gone: 503 and `{"status":"not ready"}`, nothing
/// else (no store error, host, user or database name); the reason is in the
/// log, once for the change, not once per probe.
#[test]
fn readyz_tells_only_its_status_and_logs_the_reason() {
    if !crate::scim::StoreKind::postgres_available() {
        return;
    }
    let cluster = crate::scim::PrivateCluster::start("readyz");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.key]
use = "demo/api-key"
keys = {{ "k1" = "p1" }}
[stage.scim]
use = "scim-server/scim"
store = "{url}"
store_password = "${{SCIMGATE_PG_PASSWORD}}"
pool_size = 2

[[route]]
path = "/scim/v2"
pipeline = ["key", "scim"]

[[provider]]
id = "p1"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#,
        url = cluster.server.url
    );
    let server = Server::start_with_env(
        &config,
        &[("SCIMGATE_PG_PASSWORD", cluster.server.password.as_str())],
    );
    let ready = get(&server.url("/readyz"), &[]);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json(), json!({"status": "ready"}));

    cluster.pause();
    for _ in 0..3 {
        let not_ready = get(&server.url("/readyz"), &[]);
        assert_eq!(not_ready.status, 503, "{}", not_ready.body);
        assert_eq!(
            not_ready.json(),
            json!({"status": "not ready"}),
            "nothing but the status"
        );
    }
    let logs = server.logs();
    let reasons: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("scimgate::readiness") && l.contains("not ready"))
        .collect();
    assert_eq!(reasons.len(), 1, "one line for the change:\n{logs}");
    assert!(reasons[0].contains("stage `scim`"), "{}", reasons[0]);
    assert!(!logs.contains(&cluster.server.password), "{logs}");

    cluster.resume();
    let deadline = Instant::now() + Duration::from_secs(15);
    while get(&server.url("/readyz"), &[]).status != 200 {
        assert!(
            Instant::now() < deadline,
            "ready again once the database is back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_log(&server, "ready again");
}
