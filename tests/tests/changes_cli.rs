//! `scimgate changes status|replay|skip` against a small HTTP service in the
//! test that answers like the SCIM route's change-feed operations API
//! (`GET …/Changes/Subscribers`, `POST …/Changes/Subscribers/NAME`) and an
//! OAuth2 token endpoint: real HTTP exchanges with the real binary. The
//! service records what it received, so the tests check what the CLI sent
//! (method, path, bearer token, JSON body) as well as what it printed, its
//! exit status, and that no token or secret is ever printed. Last, the
//! same commands against the real `libscim_server.so` with a webhook
//! receiver that fails, then recovers: the status table, a replay, and the
//! `scimgate_change_subscriber_*` gauges in `/metrics` agree.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use scimgate_e2e::*;
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "admin-token-7f3a9c2e41";
const READ_TOKEN: &str = "read-only-token-55e0b1";
const CLIENT_ID: &str = "ops:cli";
const CLIENT_SECRET: &str = "ops-secret-with spaces&symbols-91d2";
const SCIM_ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// One request as the service received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: String,
    body: String,
}

/// The test's operations API on 127.0.0.1; serves until the test process
/// ends.
struct Api {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Api {
    fn start() -> Api {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream, &log);
            }
        });
        Api {
            base: format!("http://127.0.0.1:{port}/iso/scim/v2"),
            seen,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn status(name: &str, acked: u64, dead: bool) -> Value {
    json!({
        "name": name,
        "state": if dead { "dead-lettered" } else { "active" },
        "ackedSeq": acked, "newestSeq": 43, "lag": 43 - acked,
        "attempts": if dead { 10 } else { 0 },
        "nextAttemptAt": null,
        "deadSeq": if dead { json!(acked + 1) } else { Value::Null },
        "lastError": if dead { json!("503 Service Unavailable from https://audit.example.com/events") } else { Value::Null },
    })
}

fn scim_error(status: u16, detail: &str) -> (u16, Value) {
    (
        status,
        json!({"schemas": [SCIM_ERROR], "status": status.to_string(), "detail": detail}),
    )
}

/// Answers one request like the API (and a token endpoint would).
fn answer(req: &Seen) -> (u16, Value) {
    if req.path == "/iso/oauth2/token" {
        let expected = client_basic(CLIENT_ID, CLIENT_SECRET);
        return if req.method == "POST"
            && req.authorization == expected
            && req.body.starts_with("grant_type=client_credentials")
        {
            (
                200,
                json!({"access_token": ADMIN_TOKEN, "token_type": "Bearer", "expires_in": 300}),
            )
        } else {
            (
                401,
                json!({"error": "invalid_client", "error_description": "client authentication failed"}),
            )
        };
    }
    let Some(rest) = req.path.strip_prefix("/iso/scim/v2/Changes/Subscribers") else {
        return scim_error(404, "no such endpoint");
    };
    match req.authorization.strip_prefix("Bearer ") {
        Some(ADMIN_TOKEN) => {}
        Some(READ_TOKEN) => {
            return scim_error(403, "the operations need the scope scim:changes:admin")
        }
        _ => return scim_error(401, "the access token is missing or not valid"),
    }
    match (req.method.as_str(), rest) {
        ("GET", "") => (
            200,
            json!({"subscribers": [status("iga", 41, false), status("audit archive", 7, true)]}),
        ),
        ("POST", name) => {
            let name = match name {
                "/iga" => "iga",
                "/audit%20archive" => "audit archive",
                other => {
                    let other = other.trim_start_matches('/');
                    return scim_error(404, &format!("no subscriber named {other}"));
                }
            };
            let Ok(body) = serde_json::from_str::<Value>(&req.body) else {
                return scim_error(400, "the body is not JSON");
            };
            match (body["action"].as_str(), body["from"].as_u64()) {
                (Some("replay"), Some(from)) => (200, status(name, from.saturating_sub(1), false)),
                (Some("skip"), None) => (200, status(name, 8, false)),
                _ => scim_error(400, "action must be replay (with from) or skip"),
            }
        }
        _ => scim_error(405, "method not allowed"),
    }
}

fn serve(stream: TcpStream, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut length = 0;
    let mut authorization = String::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_string(),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req = Seen {
        method,
        path,
        authorization,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let (status, json) = answer(&req);
    log.lock().unwrap().push(req);
    let body = json.to_string();
    let content_type = if json.get("error").is_some() || json.get("access_token").is_some() {
        "application/json"
    } else {
        "application/scim+json"
    };
    let response = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = reader.into_inner();
    let _ = stream.write_all(response.as_bytes());
}

fn changes(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["changes"];
    all.extend_from_slice(args);
    run_cli(&all, &[])
}

fn assert_no_secret(out: &str) {
    for secret in [ADMIN_TOKEN, READ_TOKEN, CLIENT_SECRET] {
        assert!(!out.contains(secret), "{out}");
    }
}

/// A file in `dir` holding `text` and a newline, as a path argument.
fn file(dir: &TempDir, name: &str, text: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path.display().to_string()
}

#[test]
fn status_prints_each_subscriber_as_a_table_with_a_token_file() {
    let api = Api::start();
    let dir = TempDir::new("changes-cli-status");
    let token = file(&dir, "token", ADMIN_TOKEN);

    let (code, out, err) = changes(&["status", &api.base, "--token-file", &token]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("NAME           STATE               ACKED  NEWEST  LAG  ATTEMPTS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("iga            active                 41      43    2         0  -"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("audit archive  dead-lettered at 8      7      43   36        10  -"),
        "{out}"
    );
    assert!(
        lines[2].ends_with("503 Service Unavailable from https://audit.example.com/events"),
        "{out}"
    );
    assert_no_secret(&format!("{out}{err}"));
    let seen = api.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/iso/scim/v2/Changes/Subscribers");
    assert_eq!(seen[0].authorization, format!("Bearer {ADMIN_TOKEN}"));

    // One subscriber by name; a name the service does not know is exit 1.
    let (code, out, err) = changes(&[
        "status",
        &format!("{}/", api.base),
        "--token-file",
        &token,
        "--subscriber",
        "audit archive",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("audit archive"),
        "{out}"
    );
    let (code, out, err) = changes(&[
        "status",
        &api.base,
        "--token-file",
        &token,
        "--subscriber",
        "crm",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("no subscriber named `crm`")
            && err.contains("(configured: iga, audit archive)"),
        "{err}"
    );
}

#[test]
fn replay_and_skip_post_the_action_and_print_the_new_state() {
    let api = Api::start();
    let dir = TempDir::new("changes-cli-actions");
    let secret = file(&dir, "secret", CLIENT_SECRET);

    // Replay with a token fetched by client credentials from the derived
    // token URL (…/scim/v2 → …/oauth2/token).
    let (code, out, err) = changes(&[
        "replay",
        &api.base,
        "iga",
        "--from",
        "5",
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        &secret,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("replay of `iga` from seq 5 accepted; now:\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .nth(2)
            .unwrap()
            .starts_with("iga   active      4      43   39"),
        "{out}"
    );
    assert_no_secret(&format!("{out}{err}"));
    let seen = api.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/iso/oauth2/token")
    );
    assert_eq!(seen[1].method, "POST");
    assert_eq!(seen[1].path, "/iso/scim/v2/Changes/Subscribers/iga");
    assert_eq!(seen[1].authorization, format!("Bearer {ADMIN_TOKEN}"));
    let body: Value = serde_json::from_str(&seen[1].body).unwrap();
    assert_eq!(body, json!({"action": "replay", "from": 5}));

    // Skip, with a name that needs encoding in the path.
    let token = file(&dir, "token", ADMIN_TOKEN);
    let (code, out, err) = changes(&["skip", &api.base, "audit archive", "--token-file", &token]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("skip of `audit archive` accepted; now:\n"),
        "{out}"
    );
    assert!(out.lines().nth(2).unwrap().contains(" active "), "{out}");
    let last = api.seen().pop().unwrap();
    assert_eq!(
        last.path,
        "/iso/scim/v2/Changes/Subscribers/audit%20archive"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&last.body).unwrap(),
        json!({"action": "skip"})
    );
}

#[test]
fn refusals_exit_1_with_the_services_detail_and_usage_errors_exit_2() {
    let api = Api::start();
    let dir = TempDir::new("changes-cli-errors");
    let admin = file(&dir, "admin", ADMIN_TOKEN);
    let read = file(&dir, "read", READ_TOKEN);
    let wrong_secret = file(&dir, "wrong", "not-the-secret");

    // 404 for an unknown subscriber: the SCIM detail, nothing on stdout.
    let (code, out, err) = changes(&["skip", &api.base, "crm", "--token-file", &admin]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("404: no subscriber named crm"), "{err}");

    // 403 without the admin scope.
    let (code, out, err) = changes(&[
        "replay",
        &api.base,
        "iga",
        "--from",
        "1",
        "--token-file",
        &read,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("403 forbidden: the operations need the scope scim:changes:admin"),
        "{err}"
    );
    assert_no_secret(&format!("{out}{err}"));

    // The token endpoint refuses the client: no API call is made.
    let before = api.seen().len();
    let (code, out, err) = changes(&[
        "status",
        &api.base,
        "--client-id",
        CLIENT_ID,
        "--client-secret-file",
        &wrong_secret,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no token from"), "{err}");
    assert!(
        err.contains("401 invalid_client: client authentication failed"),
        "{err}"
    );
    assert!(!err.contains("not-the-secret"), "{err}");
    assert_eq!(api.seen().len(), before + 1);

    // Nothing listening: exit 1 with the cause in words.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let (code, out, err) = changes(&[
        "status",
        &format!("http://127.0.0.1:{closed}/iso/scim/v2"),
        "--token-file",
        &admin,
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("connection refused"), "{err}");

    // Usage errors: exit 2, and the service is not called.
    let before = api.seen().len();
    for args in [
        vec![
            "replay",
            api.base.as_str(),
            "iga",
            "--token-file",
            admin.as_str(),
        ],
        vec!["status", api.base.as_str()],
        vec![
            "status",
            api.base.as_str(),
            "--token-file",
            "/nonexistent/token",
        ],
        vec![
            "skip",
            api.base.as_str(),
            "iga",
            "--token-file",
            admin.as_str(),
            "--client-id",
            "x",
        ],
    ] {
        let (code, out, err) = changes(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(!err.is_empty(), "{args:?}");
    }
    assert_eq!(api.seen().len(), before);
}

// ------------------------------------------- against the real SCIM endpoint

/// A webhook receiver on 127.0.0.1 answering 503 until told to accept
/// (then 202).
struct Receiver {
    url: String,
    accept: Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let accept = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = accept.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).is_err() || line.trim().is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.trim().eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let status = if flag.load(std::sync::atomic::Ordering::SeqCst) {
                        "202 Accepted"
                    } else {
                        "503 Service Unavailable"
                    };
                    let _ = reader.into_inner().write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    );
                });
            }
        });
        Receiver { url, accept }
    }
}

/// The SCIM endpoint with one subscriber `rx` that gives up after one
/// failure; an operator token with `scim:changes:admin`, a writer without.
fn push_config(url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"

[stage.static]
use = "oauth2/static-bearer"
[stage.scopes]
use = "policies/scopes"
read = "scim:read"
write = "scim:write"
[stage.scim]
use = "scim-server/scim"

[[stage.scim.subscriber]]
name = "rx"
url = "{url}"
audience = "https://rx.test"
max_attempts = 1
backoff_base = "20ms"
backoff_cap = "100ms"

[[route]]
path = "/iso/scim/v2"
pipeline = ["static", "scopes", "scim"]

[[provider]]
id = "ops"
name = "Operator"
[provider.auth]
method = "static-bearer"
token = "${{OPS_TOKEN}}"
scopes = ["scim:read", "scim:changes:admin"]

[[provider]]
id = "iga"
name = "IGA"
[provider.auth]
method = "static-bearer"
token = "${{IGA_TOKEN}}"
scopes = ["scim:read", "scim:write"]
"#
    )
}

/// `scimgate_change_subscriber_*{route="(none)",subscriber="rx"}` from
/// `/metrics`: (lag, dead-lettered), `None` before the first report.
fn rx_gauges(server: &Server) -> Option<(String, String)> {
    let text = get(&server.url("/metrics"), &[]).body;
    let value = |name: &str| {
        let prefix = format!("{name}{{route=\"(none)\",subscriber=\"rx\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map(str::to_string)
    };
    Some((
        value("scimgate_change_subscriber_lag")?,
        value("scimgate_change_subscriber_dead_lettered")?,
    ))
}

#[test]
fn against_the_scim_endpoint_status_replay_and_the_gauges_agree() {
    let rx = Receiver::start();
    let server = Server::start_with_env(
        &push_config(&rx.url),
        &[("OPS_TOKEN", ADMIN_TOKEN), ("IGA_TOKEN", READ_TOKEN)],
    );
    let base = server.url("/iso/scim/v2");
    let dir = TempDir::new("changes-cli-real");
    let ops = file(&dir, "ops", ADMIN_TOKEN);
    let iga = file(&dir, "iga", READ_TOKEN);

    // One write; the receiver refuses it once, and rx is dead-lettered.
    let created = send_json(
        "POST",
        &format!("{base}/Users"),
        &[("authorization", &format!("Bearer {READ_TOKEN}"))],
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "cli-a"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let dead = Some(("1".to_string(), "1".to_string()));
    wait_until_or(
        Duration::from_secs(60),
        "rx dead-lettered in /metrics",
        || rx_gauges(&server) == dead,
        || format!("{:?}\n{}", rx_gauges(&server), server.logs()),
    );

    let (code, out, err) = changes(&["status", &base, "--token-file", &ops]);
    assert_eq!(code, 0, "{out}{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("rx "))
        .unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    // rx, dead-lettered, at, 1, acked 0, newest 1, lag 1, attempts 1, …
    assert_eq!(
        &cells[..8],
        ["rx", "dead-lettered", "at", "1", "0", "1", "1", "1"],
        "{out}"
    );
    assert!(row.contains("503"), "{out}");
    assert_no_secret(&format!("{out}{err}"));

    // Without the admin scope: refused, with the service's reason.
    let (code, out, err) = changes(&["skip", &base, "rx", "--token-file", &iga]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("403"), "{err}");
    let (code, _, err) = changes(&["skip", &base, "nobody", "--token-file", &ops]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("404"), "{err}");

    // The receiver is fixed: replay from 1 delivers it, and the gauges
    // follow.
    rx.accept.store(true, std::sync::atomic::Ordering::SeqCst);
    let (code, out, err) = changes(&["replay", &base, "rx", "--from", "1", "--token-file", &ops]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("replay of `rx` from seq 1 accepted; now:\n"),
        "{out}"
    );
    assert!(
        out.lines()
            .nth(2)
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("active")),
        "{out}"
    );
    let caught_up = Some(("0".to_string(), "0".to_string()));
    wait_until_or(
        Duration::from_secs(60),
        "rx caught up in /metrics",
        || rx_gauges(&server) == caught_up,
        || format!("{:?}\n{}", rx_gauges(&server), server.logs()),
    );
    let (code, out, err) = changes(&["status", &base, "--token-file", &ops, "--subscriber", "rx"]);
    assert_eq!(code, 0, "{out}{err}");
    let cells: Vec<&str> = out.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&cells[..5], ["rx", "active", "1", "1", "0"], "{out}");
    // One series per gauge for rx: the delivery thread's, `route="(none)"`.
    let text = get(&server.url("/metrics"), &[]).body;
    for name in [
        "scimgate_change_subscriber_lag{",
        "scimgate_change_subscriber_dead_lettered{",
    ] {
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(name) && l.contains("subscriber=\"rx\""))
            .collect();
        assert_eq!(series.len(), 1, "{text}");
    }
}
