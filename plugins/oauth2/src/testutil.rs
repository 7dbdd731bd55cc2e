//! Helpers shared by the unit tests: hand-built contexts and requests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use scimgate_abi::sdk::CreateContext;
use scimgate_abi::std_types::{RString, RVec};
use scimgate_abi::{AuthOutcome, ErrorStyle, Header, PluginError, ProviderRecord, Request};
use serde_json::Value;

/// What every test folder's name starts with.
const PREFIX: &str = "scimgate-oauth2-";

/// A fresh, empty folder under the system temp dir, named after this
/// process. A component may use its folder until the process ends, so none
/// is removed here; the first call of a run removes the folders of test
/// processes that have ended ([`remove_ended_runs`]).
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(|| remove_ended_runs(&std::env::temp_dir()));
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{PREFIX}{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the test folders under `root` whose process (the second-last
/// `-` field of the name) no longer runs.
fn remove_ended_runs(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid {
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

#[test]
fn folders_of_ended_test_runs_are_removed_and_running_ones_kept() {
    let root = temp_dir("sweep");
    // No process has this id (above the kernel's pid_max of 2^22).
    let ended = root.join(format!("{PREFIX}ctx-4999999-0"));
    let running = root.join(format!("{PREFIX}ctx-{}-0", std::process::id()));
    let other = root.join("something-else-4999999-0");
    for dir in [&ended, &running, &other] {
        std::fs::create_dir_all(dir).unwrap();
    }
    remove_ended_runs(&root);
    assert!(!ended.exists());
    assert!(running.exists());
    assert!(other.exists());
}

pub fn ctx(config: Value, providers: Vec<Value>) -> CreateContext {
    ctx_in(config, providers, temp_dir("ctx"))
}

pub fn ctx_in(config: Value, providers: Vec<Value>, data_dir: PathBuf) -> CreateContext {
    CreateContext {
        stage: "test".into(),
        config,
        providers,
        data_dir,
        server: Value::Null,
        host: None,
    }
}

pub fn request(method: &str, headers: &[(&str, &str)], body: &str, now_ms: i64) -> Request {
    Request {
        method: method.into(),
        path: RString::new(),
        query: RString::new(),
        headers: headers.iter().map(|(k, v)| Header::new(*k, *v)).collect(),
        body: body.as_bytes().to_vec().into(),
        peer_addr: "127.0.0.1:40000".into(),
        client_ip: "127.0.0.1".into(),
        request_id: "test".into(),
        mount: "/oauth2/token".into(),
        base_url: "http://localhost/oauth2/token".into(),
        received_at_unix_ms: now_ms,
        error_style: ErrorStyle::OAuth,
        attributes: RVec::new(),
    }
}

/// An `Authorization: Basic` header of `user:password` as given (no encoding).
pub fn basic(user: &str, password: &str) -> (&'static str, &'static str) {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    (
        "authorization",
        Box::leak(format!("Basic {encoded}").into_boxed_str()),
    )
}

pub fn with_ip(req: &mut Request, ip: &str) {
    req.client_ip = ip.into();
}

pub fn rejected(outcome: AuthOutcome) -> PluginError {
    match outcome {
        AuthOutcome::Rejected(e) => e,
        other => panic!("expected Rejected, got {other:?}"),
    }
}

pub fn provider_record(id: &str, scopes: &[&str]) -> ProviderRecord {
    ProviderRecord {
        id: id.into(),
        name: id.into(),
        active: true,
        protocol: "scim2".into(),
        description: RString::new(),
        tags: RVec::new(),
        auth_method: "oauth2-client-credentials".into(),
        client_id: id.into(),
        valid_from: None.into(),
        valid_until: None.into(),
        allowed_ips: RVec::new(),
        allowed_referrers: RVec::new(),
        access: "read-write".into(),
        scopes: scopes.iter().map(|s| (*s).into()).collect(),
        auth_json: "{}".into(),
    }
}
