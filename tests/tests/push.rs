//! Push delivery of the change log (webhooks) end to end: the real binary
//! and `libscim_server.so` POSTing signed SETs to a real receiver on
//! 127.0.0.1 (a small HTTP server in this file that records what it
//! accepts, and can answer 503 or hold a request unanswered). Proves:
//! in-order delivery with signatures that verify against the published
//! JWKS; a receiver down for a while gets everything once it is back; a
//! dead-lettered subscriber is replayed (and skipped) through the admin
//! API, which needs its own scope, and shows in the host's gauges; a reload
//! stops the old delivery thread; a host killed with SIGKILL mid-delivery
//! loses and reorders nothing; two nodes on one PostgreSQL deliver each
//! event once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use scimgate_e2e::*;

use crate::scim::{PgServer, StoreKind};

const ADMIN_TOKEN: &str = "push-admin-token-3f9a1c7e5b2d4a6c8e0f";
const WRITER_TOKEN: &str = "push-writer-token-8b1d3f5a7c9e2b4d6f0a";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------- receiver

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// 202, the body recorded.
    Accept,
    /// 503, nothing recorded.
    Fail,
    /// No answer until the mode changes; then the connection is closed
    /// without an answer and nothing is recorded.
    Hold,
}

#[derive(Default)]
struct RxState {
    mode: Option<Mode>,
    /// Accepted SETs, in the order they were answered.
    accepted: Vec<String>,
    /// Content types of the accepted requests.
    content_types: BTreeSet<String>,
    /// Requests received (any mode).
    requests: usize,
    /// Requests being held now.
    holding: usize,
}

/// A webhook receiver on 127.0.0.1, one thread per connection.
#[derive(Clone)]
struct Receiver {
    url: String,
    state: Arc<(Mutex<RxState>, Condvar)>,
}

impl Receiver {
    fn start(mode: Mode) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let url = format!(
            "http://{}/events",
            listener.local_addr().expect("receiver address")
        );
        let state = Arc::new((
            Mutex::new(RxState {
                mode: Some(mode),
                ..RxState::default()
            }),
            Condvar::new(),
        ));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Receiver { url, state }
    }

    fn set_mode(&self, mode: Mode) {
        let (lock, cv) = &*self.state;
        lock.lock().expect("receiver state").mode = Some(mode);
        cv.notify_all();
    }

    fn with<T>(&self, f: impl FnOnce(&RxState) -> T) -> T {
        f(&self.state.0.lock().expect("receiver state"))
    }

    fn accepted(&self) -> Vec<String> {
        self.with(|s| s.accepted.clone())
    }

    /// The `scimgate.seq` of each accepted SET, in arrival order.
    fn seqs(&self) -> Vec<u64> {
        self.accepted()
            .iter()
            .map(|t| claims(t)["scimgate"]["seq"].as_u64().expect("seq"))
            .collect()
    }

    fn requests(&self) -> usize {
        self.with(|s| s.requests)
    }
}

fn serve(mut stream: TcpStream, state: &(Mutex<RxState>, Condvar)) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
        if let Some(at) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let length: usize = header("content-length").parse().unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]).to_string();
    let (lock, cv) = state;
    let mut st = lock.lock().expect("receiver state");
    st.requests += 1;
    if st.mode == Some(Mode::Hold) {
        st.holding += 1;
        cv.notify_all();
        let (mut st, _) = cv
            .wait_timeout_while(st, Duration::from_secs(120), |s| s.mode == Some(Mode::Hold))
            .expect("receiver state");
        st.holding -= 1;
        return;
    }
    let answer = if st.mode == Some(Mode::Accept) {
        st.accepted.push(body);
        st.content_types.insert(header("content-type"));
        "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    } else {
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 9\r\nConnection: close\r\n\r\ndown-body"
    };
    cv.notify_all();
    drop(st);
    let _ = stream.write_all(answer.as_bytes());
}

fn b64url(part: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url")
}

fn header_of(token: &str) -> Value {
    serde_json::from_slice(&b64url(token.split('.').next().expect("header"))).expect("JSON")
}

fn claims(token: &str) -> Value {
    serde_json::from_slice(&b64url(token.split('.').nth(1).expect("payload"))).expect("JSON")
}

/// Verifies an EdDSA SET against a JWKS document; its claims.
fn verify(token: &str, jwks: &Value) -> Value {
    let header = header_of(token);
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert_eq!(header["typ"], "secevent+jwt", "{header}");
    let kid = header["kid"].as_str().expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid} in {jwks}"));
    assert_eq!(
        (jwk["kty"].as_str(), jwk["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let x: [u8; 32] = b64url(jwk["x"].as_str().expect("x"))
        .try_into()
        .expect("32 bytes");
    let key = VerifyingKey::from_bytes(&x).expect("a public key");
    let (input, sig) = token.rsplit_once('.').expect("three parts");
    let sig: [u8; 64] = b64url(sig).try_into().expect("64 bytes");
    key.verify(input.as_bytes(), &Signature::from_bytes(&sig))
        .expect("the signature verifies");
    claims(token)
}

// ----------------------------------------------------------------- server

/// Static bearer tokens, the scopes policy, a SCIM stage with one
/// subscriber `rx` (`sub_options` added to its table) and the JWKS route.
fn config(stage_options: &str, url: &str, sub_options: &str) -> String {
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
change_issuer = "https://scim.test/scim/v2"
{stage_options}

[[stage.scim.subscriber]]
name = "rx"
url = "{url}"
audience = "https://rx.test"
backoff_base = "20ms"
backoff_cap = "100ms"
{sub_options}

[stage.keys]
use = "scim-server/change-keys"

[[route]]
path = "/scim/v2"
pipeline = ["static", "scopes", "scim"]

[[route]]
path = "/.well-known/scimgate/change-keys"
pipeline = ["keys"]
anonymous = true

[[provider]]
id = "ops"
name = "Operator"
[provider.auth]
method = "static-bearer"
token = "${{ADMIN_TOKEN}}"
scopes = ["scim:read", "scim:write", "scim:changes:admin"]

[[provider]]
id = "iga"
name = "IGA"
[provider.auth]
method = "static-bearer"
token = "${{WRITER_TOKEN}}"
scopes = ["scim:read", "scim:write", "scim:changes"]
"#
    )
}

fn env(extra: &[(String, String)]) -> Vec<(&str, &str)> {
    let mut all: Vec<(&str, &str)> = extra
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("ADMIN_TOKEN", ADMIN_TOKEN));
    all.push(("WRITER_TOKEN", WRITER_TOKEN));
    all
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn write(server: &Server, method: &str, path: &str, body: &Value) -> Value {
    write_ok(
        server,
        WRITER_TOKEN,
        method,
        &format!("/scim/v2{path}"),
        body,
    )
}

fn create_user(server: &Server, name: &str) -> String {
    let user = write(
        server,
        "POST",
        "/Users",
        &json!({"schemas": [USER], "userName": name}),
    );
    user["id"].as_str().expect("id").to_string()
}

fn patch_user(server: &Server, id: &str, title: &str) {
    write(
        server,
        "PATCH",
        &format!("/Users/{id}"),
        &json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": title}]}),
    );
}

/// The admin API's view of subscriber `rx`.
fn status(server: &Server) -> Value {
    let a = bearer(ADMIN_TOKEN);
    let reply = get(
        &server.url("/scim/v2/Changes/Subscribers"),
        &[("authorization", &a)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    body["subscribers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "rx").cloned())
        .unwrap_or_else(|| panic!("no subscriber rx in {body}"))
}

fn admin_post(server: &Server, name: &str, body: &Value) -> Reply {
    let a = bearer(ADMIN_TOKEN);
    send_json(
        "POST",
        &server.url(&format!("/scim/v2/Changes/Subscribers/{name}")),
        &[("authorization", &a)],
        body,
    )
}

/// The newest seq of the log, from the admin API.
fn newest(server: &Server) -> u64 {
    status(server)["newestSeq"].as_u64().expect("newestSeq")
}

/// Waits until the receiver has accepted every seq in `1..=upto`.
fn wait_for_all(rx: &Receiver, server: Option<&Server>, upto: u64) {
    wait_until_or(
        WAIT,
        &format!("every seq up to {upto} delivered"),
        || {
            let got: BTreeSet<u64> = rx.seqs().into_iter().collect();
            (1..=upto).all(|s| got.contains(&s))
        },
        || {
            format!(
                "accepted seqs: {:?}\nlog:\n{}",
                rx.seqs(),
                server.map(Server::logs).unwrap_or_default()
            )
        },
    );
}

/// Accepted seqs never go backwards (a redelivery after a crash restarts
/// at the first unacknowledged one, so duplicates sit next to each other).
fn assert_in_order(seqs: &[u64]) {
    assert!(
        seqs.windows(2).all(|w| w[0] <= w[1]),
        "delivered out of order: {seqs:?}"
    );
}

// ------------------------------------------------------------------ tests

#[test]
fn events_arrive_in_order_signed_with_the_published_key() {
    let rx = Receiver::start(Mode::Accept);
    let server = Server::start_with_env(&config("", &rx.url, ""), &env(&[]));
    let alice = create_user(&server, "alice");
    let bob = create_user(&server, "bob");
    patch_user(&server, &alice, "Engineer");
    let w = bearer(WRITER_TOKEN);
    let deleted = send(
        "DELETE",
        &server.url(&format!("/scim/v2/Users/{bob}")),
        &[("authorization", &w)],
        None,
    );
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    patch_user(&server, &alice, "Lead");
    let upto = newest(&server);
    assert_eq!(upto, 5, "five writes, five entries");
    wait_for_all(&rx, Some(&server), upto);
    let seqs = rx.seqs();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5], "each once, in order");
    assert_eq!(
        rx.with(|s| s.content_types.clone()),
        BTreeSet::from(["application/secevent+jwt".to_string()])
    );

    // The JWKS route is anonymous and its kid is the SETs' kid.
    let keys = get(&server.url("/.well-known/scimgate/change-keys"), &[]);
    assert_eq!(keys.status, 200, "{}", keys.body);
    assert_eq!(
        keys.header("content-type"),
        Some("application/jwk-set+json")
    );
    let jwks = keys.json();
    let tokens = rx.accepted();
    let all: Vec<Value> = tokens.iter().map(|t| verify(t, &jwks)).collect();
    assert_eq!(header_of(&tokens[0])["kid"], jwks["keys"][0]["kid"]);
    // A tampered SET does not verify.
    let (input, sig) = tokens[0].rsplit_once('.').expect("parts");
    let mut forged = claims(&tokens[0]);
    forged["sub_id"]["uri"] = json!("/Users/someone-else");
    let forged_input = format!(
        "{}.{}",
        input.split('.').next().expect("header"),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged.to_string())
    );
    let result = std::panic::catch_unwind(|| verify(&format!("{forged_input}.{sig}"), &jwks));
    assert!(result.is_err(), "a forged payload must not verify");

    // The claims: issuer, audience, the resource and the event per op.
    for c in &all {
        assert_eq!(c["iss"], "https://scim.test/scim/v2");
        assert_eq!(c["aud"], "https://rx.test");
    }
    assert_eq!(all[0]["sub_id"]["uri"], format!("/Users/{alice}"));
    assert!(all[0]["events"]
        .get("urn:ietf:params:scim:event:prov:create:notice")
        .is_some());
    assert!(all[2]["events"]
        .get("urn:ietf:params:scim:event:prov:patch:notice")
        .is_some());
    assert_eq!(all[3]["sub_id"]["uri"], format!("/Users/{bob}"));
    assert!(all[3]["events"]
        .get("urn:ietf:params:scim:event:prov:delete")
        .is_some());

    // The admin view: caught up. Without the admin scope: 403.
    let st = status(&server);
    assert_eq!(st["state"], "active", "{st}");
    assert_eq!(
        (st["ackedSeq"].as_u64(), st["lag"].as_u64()),
        (Some(5), Some(0)),
        "{st}"
    );
    let denied = get(
        &server.url("/scim/v2/Changes/Subscribers"),
        &[("authorization", &w)],
    );
    assert_eq!(denied.status, 403, "{}", denied.body);
}

#[test]
fn a_receiver_down_for_a_while_gets_everything_after_it_returns() {
    let rx = Receiver::start(Mode::Fail);
    let server = Server::start_with_env(&config("", &rx.url, "max_attempts = 1000"), &env(&[]));
    let ids: Vec<String> = (0..3)
        .map(|i| create_user(&server, &format!("down-{i}")))
        .collect();
    for id in &ids {
        patch_user(&server, id, "x");
    }
    // Retried with backoff while down: several attempts, none accepted.
    wait_until(WAIT, "retries against the failing receiver", || {
        rx.requests() >= 3
    });
    let log = wait_for_log(&server, "delivery failed, will retry", WAIT);
    let line = log
        .lines()
        .find(|l| l.contains("delivery failed, will retry"))
        .expect("the line");
    assert!(
        line.contains("rx") && line.contains("seq") && line.contains("HTTP 503"),
        "{line}"
    );
    assert!(!log.contains("eyJ"), "no SET in the log");
    let st = status(&server);
    assert_eq!(st["ackedSeq"], 0, "{st}");
    assert!(st["attempts"].as_u64() >= Some(1), "{st}");
    assert!(
        st["nextAttemptAt"].as_i64() > Some(0),
        "Unix ms of the retry: {st}"
    );
    assert_eq!(
        st["lastError"].as_str().map(|e| e.starts_with("HTTP 503")),
        Some(true),
        "{st}"
    );
    assert!(rx.accepted().is_empty());

    rx.set_mode(Mode::Accept);
    let upto = newest(&server);
    assert_eq!(upto, 6);
    wait_for_all(&rx, Some(&server), upto);
    let seqs = rx.seqs();
    assert_in_order(&seqs);
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>(), "each once, in order");
    wait_until(WAIT, "the position saved", || status(&server)["lag"] == 0);
}

#[test]
fn a_dead_lettered_subscriber_is_replayed() {
    let rx = Receiver::start(Mode::Fail);
    let server = Server::start_with_env(&config("", &rx.url, "max_attempts = 2"), &env(&[]));
    let a = create_user(&server, "dead-a");
    patch_user(&server, &a, "t1");
    wait_until_or(
        WAIT,
        "the subscriber dead-lettered",
        || status(&server)["state"] == "dead-lettered",
        || server.logs(),
    );
    let st = status(&server);
    assert_eq!(
        (st["deadSeq"].as_u64(), st["ackedSeq"].as_u64()),
        (Some(1), Some(0)),
        "{st}"
    );
    assert_eq!(st["attempts"], 2, "{st}");
    assert!(
        st["lastError"].as_str().is_some_and(|e| e.contains("503")),
        "{st}"
    );
    wait_for_log(&server, "subscriber dead-lettered", WAIT);
    // The host's gauges show it (reported by the delivery thread).
    let gauge = |name: &str| {
        let metrics = get(&server.url("/metrics"), &[]);
        assert_eq!(metrics.status, 200, "{}", metrics.body);
        metrics
            .body
            .lines()
            .find(|l| l.starts_with(name) && l.contains("subscriber=\"rx\""))
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    wait_until(WAIT, "the dead-letter gauge", || {
        gauge("scimgate_change_subscriber_dead_lettered").as_deref() == Some("1")
    });
    assert_eq!(
        gauge("scimgate_change_subscriber_lag").as_deref(),
        Some("2")
    );
    let requests = rx.requests();
    assert_eq!(requests, 2, "max_attempts = 2: no third try");
    // Writes go on while the subscriber is dead.
    patch_user(&server, &a, "t2");
    assert_eq!(status(&server)["newestSeq"], 3);

    // Operations: mistakes are 400/404, the right scope is needed.
    assert_eq!(
        admin_post(&server, "nobody", &json!({"action": "skip"})).status,
        404
    );
    for bad in [
        json!({"action": "rewind"}),
        json!({"action": "replay"}),
        json!({"action": "replay", "from": "one"}),
        json!({"action": "skip", "from": 1}),
        json!([1]),
    ] {
        let reply = admin_post(&server, "rx", &bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert_eq!(reply.json()["scimType"], "invalidValue", "{}", reply.body);
    }
    let w = bearer(WRITER_TOKEN);
    let denied = send_json(
        "POST",
        &server.url("/scim/v2/Changes/Subscribers/rx"),
        &[("authorization", &w)],
        &json!({"action": "replay", "from": 1}),
    );
    assert_eq!(denied.status, 403);
    assert_eq!(status(&server)["state"], "dead-lettered");

    rx.set_mode(Mode::Accept);
    let reply = admin_post(&server, "rx", &json!({"action": "replay", "from": 1}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let st = reply.json();
    assert_eq!(st["name"], "rx");
    assert_eq!(st["state"], "active", "{st}");
    wait_for_all(&rx, Some(&server), 3);
    assert_eq!(rx.seqs(), vec![1, 2, 3]);

    // Skip: with the receiver failing again, the head is passed over.
    rx.set_mode(Mode::Fail);
    patch_user(&server, &a, "t3");
    wait_until(WAIT, "the subscriber dead-lettered at 4", || {
        status(&server)["deadSeq"] == 4
    });
    rx.set_mode(Mode::Accept);
    let reply = admin_post(&server, "rx", &json!({"action": "skip"}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let st = reply.json();
    assert_eq!(
        (st["state"].as_str(), st["ackedSeq"].as_u64()),
        (Some("active"), Some(4)),
        "{st}"
    );
    patch_user(&server, &a, "t4");
    wait_until_or(
        WAIT,
        "seq 5 delivered",
        || rx.seqs().contains(&5),
        || server.logs(),
    );
    assert_eq!(rx.seqs(), vec![1, 2, 3, 5], "4 was skipped");
}

#[test]
fn a_reload_stops_the_old_generation_and_the_new_one_delivers() {
    let old_rx = Receiver::start(Mode::Accept);
    let new_rx = Receiver::start(Mode::Accept);
    let server = Server::start_with_env(&config("", &old_rx.url, ""), &env(&[]));
    let a = create_user(&server, "reload-a");
    wait_for_all(&old_rx, Some(&server), 1);
    server.reload_with(&config("", &new_rx.url, ""));
    wait_for_log(&server, "change push: delivery stopped", WAIT);
    patch_user(&server, &a, "after");
    // The position is the subscriber's (by name): the new generation goes
    // on after seq 1, to the new url.
    wait_until_or(
        WAIT,
        "seq 2 at the new receiver",
        || new_rx.seqs() == vec![2],
        || server.logs(),
    );
    assert_eq!(
        old_rx.seqs(),
        vec![1],
        "the old generation delivers no more"
    );
}

#[test]
fn sigkill_mid_delivery_loses_and_reorders_nothing() {
    let rx = Receiver::start(Mode::Accept);
    // A POST is held up to 5 s: the kill lands while one is in flight. The
    // dead process's lease (2 × timeout + 5 s) expires before the restarted
    // one takes over.
    let text = config("", &rx.url, "batch_size = 3\ntimeout = \"5s\"");
    let mut server = Server::start_with_env(&text, &env(&[]));
    let ids: Vec<String> = (0..3)
        .map(|i| create_user(&server, &format!("kill-{i}")))
        .collect();
    wait_for_all(&rx, Some(&server), 3);
    // The receiver now holds the next delivery; writes go on meanwhile.
    rx.set_mode(Mode::Hold);
    for round in 0..3 {
        for id in &ids {
            patch_user(&server, id, &format!("r{round}"));
        }
    }
    wait_until(WAIT, "a delivery held by the receiver", || {
        rx.with(|s| s.holding) >= 1
    });
    for id in &ids {
        patch_user(&server, id, "while-held");
    }
    let upto = newest(&server);
    assert_eq!(upto, 3 + 9 + 3);
    server.kill_hard();
    rx.set_mode(Mode::Accept);

    let dir = server.take_dir();
    let config_path = server.config_path.clone();
    let restarted = Server::start_at(dir, config_path, &env(&[]));
    wait_for_all(&rx, Some(&restarted), upto);
    let seqs = rx.seqs();
    assert_in_order(&seqs);
    // Per resource, the order of the log.
    let tokens = rx.accepted();
    let mut per_resource: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for t in &tokens {
        let c = claims(t);
        per_resource
            .entry(c["sub_id"]["uri"].as_str().expect("uri").to_string())
            .or_default()
            .push(c["scimgate"]["seq"].as_u64().expect("seq"));
    }
    assert_eq!(per_resource.len(), 3);
    for (uri, seqs) in &per_resource {
        assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "{uri}: {seqs:?}");
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            5,
            "{uri}: create, three patches, one more: {seqs:?}"
        );
    }
}

#[test]
fn two_nodes_on_postgres_deliver_each_event_once() {
    if !StoreKind::postgres_available() {
        return;
    }
    let pg = PgServer::from_env().expect("checked");
    let schema = pg.fresh_schema("push");
    let rx = Receiver::start(Mode::Accept);
    let text = config(&schema.stage_options(), &rx.url, "");
    let extra = schema.env();
    let a = Server::start_with_env(&text, &env(&extra));
    let b = Server::start_with_env(&text, &env(&extra));
    let mut ids = Vec::new();
    for i in 0..10 {
        let node = if i % 2 == 0 { &a } else { &b };
        ids.push(create_user(node, &format!("node-{i}")));
    }
    for (i, id) in ids.iter().enumerate() {
        let node = if i % 2 == 0 { &b } else { &a };
        patch_user(node, id, "t");
    }
    let upto = newest(&a);
    assert_eq!(upto, 20);
    wait_for_all(&rx, Some(&a), upto);
    let seqs = rx.seqs();
    assert_eq!(
        seqs,
        (1..=20).collect::<Vec<_>>(),
        "each event once, in order"
    );
    // Both nodes report the same, shared position.
    wait_until(WAIT, "both nodes see the shared position", || {
        status(&a)["ackedSeq"] == 20 && status(&b)["ackedSeq"] == 20
    });
}

#[test]
fn hmac_subscribers_get_sets_signed_with_their_secret() {
    // A receiver that asked for HS256 with its own secret (given through
    // the environment, as `${VAR}` works in any config value).
    use hmac::{KeyInit, Mac};
    const SECRET: &str = "rx-shared-secret-0123456789abcdef0123456789";
    let rx = Receiver::start(Mode::Accept);
    let server = Server::start_with_env(
        &config(
            "",
            &rx.url,
            "signature = \"hmac\"\nsecret = \"${RX_SECRET}\"",
        ),
        &env(&[("RX_SECRET".to_string(), SECRET.to_string())]),
    );
    let id = create_user(&server, "hmac-1");
    patch_user(&server, &id, "Signed");
    let upto = newest(&server);
    wait_for_all(&rx, Some(&server), upto);
    let tokens = rx.accepted();
    assert_eq!(rx.seqs(), vec![1, 2], "each once, in order");
    let mac = |key: &str, input: &str| {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).expect("key");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    for token in &tokens {
        let header = header_of(token);
        assert_eq!(header["alg"], "HS256", "{header}");
        assert_eq!(header["typ"], "secevent+jwt", "{header}");
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        assert_eq!(
            b64url(sig),
            mac(SECRET, input),
            "the MAC is HS256 over header.payload"
        );
        assert_ne!(b64url(sig), mac("another secret", input));
    }
    assert_eq!(claims(&tokens[0])["sub_id"]["uri"], format!("/Users/{id}"));
    // The secret is never in the log.
    assert!(
        !server.logs().contains(SECRET),
        "the HMAC secret was logged"
    );
}
