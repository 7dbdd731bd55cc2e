//! Micro-benchmark of the oauth2 hot paths, through the same ABI objects the
//! host calls (so the panic guard is included): bearer authentication of an
//! already-verified token (cache hit), of a new token (signature check), and
//! token issuance. Prints figures; never fails on a slow machine.
//!
//! `cargo bench -p scimgate-plugin-oauth2 --bench bearer`

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use scimgate_abi::ffi::{AuthenticatorBox, ComponentInstance, EndpointBox};
use scimgate_abi::sdk::CreateContext;
use scimgate_abi::std_types::{ROption, RString, RVec};
use scimgate_abi::{AuthOutcome, Caller, ErrorStyle, Header, Principal, Request};
use serde_json::{json, Value};

fn main() {
    let dir = std::env::temp_dir().join(format!("scimgate-oauth2-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let providers = vec![
        json!({"id": "oim", "auth": {"method": "oauth2-client-credentials", "client_id": "oim-client", "scopes": ["scim:read", "scim:write"]}}),
    ];
    let token = endpoint(create("token", json!({"ttl": "1h"}), &providers, &dir));
    let bearer = authenticator(create(
        "bearer",
        json!({"cache_size": 200_000}),
        &providers,
        &dir,
    ));

    let mut principal = Principal::new("oim", "oim-client", "oauth2-client-credentials");
    principal.scopes = vec!["scim:read".into(), "scim:write".into()].into();
    let caller = Caller {
        principal: ROption::RSome(&principal),
        provider: ROption::RNone,
    };
    let now = 1_700_000_000_000;
    let token_req = request("POST", vec![], b"grant_type=client_credentials", now);

    // Token issuance.
    let n = 20_000;
    let start = Instant::now();
    let mut tokens = Vec::with_capacity(n);
    for _ in 0..n {
        let r = token
            .handle(&token_req, caller)
            .into_result()
            .expect("token");
        let body: Value = serde_json::from_slice(&r.body).expect("json");
        tokens.push(body["access_token"].as_str().expect("token").to_string());
    }
    let issue = start.elapsed();
    println!(
        "token endpoint handle:        {:>9.0} ns/op  ({:.0} tokens/s, incl. JSON parse of the response)",
        issue.as_nanos() as f64 / n as f64,
        n as f64 / issue.as_secs_f64()
    );

    let requests: Vec<Request> = tokens
        .iter()
        .map(|t| bearer_request(t, now + 1000))
        .collect();

    // New tokens: signature verification + claims + cache insert.
    let start = Instant::now();
    for r in &requests {
        assert!(matches!(
            black_box(bearer.authenticate(r)),
            AuthOutcome::Authenticated(_)
        ));
    }
    let fresh = start.elapsed();
    println!(
        "bearer, new token:            {:>9.0} ns/op",
        fresh.as_nanos() as f64 / n as f64
    );

    // Seen tokens: cache hit (SHA-256 of the token + map lookup + principal clone).
    let rounds = 50;
    let start = Instant::now();
    for _ in 0..rounds {
        for r in &requests {
            assert!(matches!(
                black_box(bearer.authenticate(r)),
                AuthOutcome::Authenticated(_)
            ));
        }
    }
    let hit = start.elapsed();
    println!(
        "bearer, already-seen token:   {:>9.0} ns/op  ({} distinct tokens in the cache)",
        hit.as_nanos() as f64 / (n * rounds) as f64,
        n
    );

    // One hot token, the common case of one IGA client syncing.
    let one = &requests[0];
    let iters = 2_000_000;
    let start = Instant::now();
    for _ in 0..iters {
        black_box(bearer.authenticate(black_box(one)));
    }
    println!(
        "bearer, one hot token:        {:>9.0} ns/op",
        start.elapsed().as_nanos() as f64 / iters as f64
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn create(
    name: &str,
    config: Value,
    providers: &[Value],
    dir: &std::path::Path,
) -> ComponentInstance {
    let component = oauth2::components()
        .into_iter()
        .find(|c| c.name == name)
        .expect("component");
    let ctx = CreateContext {
        stage: name.into(),
        config,
        providers: providers.to_vec(),
        data_dir: PathBuf::from(dir),
        server: Value::Null,
        host: None,
    };
    component.create(&ctx).expect("create")
}

fn endpoint(instance: ComponentInstance) -> EndpointBox {
    match instance {
        ComponentInstance::Endpoint(e) => e,
        _ => panic!("not an endpoint"),
    }
}

fn authenticator(instance: ComponentInstance) -> AuthenticatorBox {
    match instance {
        ComponentInstance::Authenticator(a) => a,
        _ => panic!("not an authenticator"),
    }
}

fn bearer_request(token: &str, now: i64) -> Request {
    request(
        "GET",
        vec![Header::new("authorization", format!("Bearer {token}"))],
        b"",
        now,
    )
}

fn request(method: &str, headers: Vec<Header>, body: &[u8], now: i64) -> Request {
    Request {
        method: method.into(),
        path: RString::new(),
        query: RString::new(),
        headers: headers.into(),
        body: body.to_vec().into(),
        peer_addr: "127.0.0.1:1".into(),
        client_ip: "127.0.0.1".into(),
        request_id: "bench".into(),
        mount: "/".into(),
        base_url: "http://localhost".into(),
        received_at_unix_ms: now,
        error_style: ErrorStyle::Scim,
        attributes: RVec::new(),
    }
}
