//! Cost per request of the five seed policies together (provider-active,
//! validity, allowed-ips, allowed-referrers, access-mode), called through
//! the FFI boxes as the host calls them, and of rate-limit alone. Prints
//! ns/op; never fails on a slow machine.
//!
//! `cargo bench -p scimgate-plugin-policies --bench seed`

use std::hint::black_box;
use std::time::Instant;

use policies::components;
use scimgate_abi::ffi::{ComponentInstance, PolicyBox};
use scimgate_abi::sdk::CreateContext;
use scimgate_abi::std_types::{ROption, RString, RVec};
use scimgate_abi::{
    Caller, ErrorStyle, Header, PolicyDecision, Principal, ProviderRecord, Request,
};
use serde_json::json;

fn main() {
    let providers = vec![json!({
        "id": "oim-prod",
        "auth": {
            "allowed_ips": ["10.20.0.0/16", "192.0.2.0/24", "2001:db8::/32"],
            "allowed_referrers": ["https://iam.example.com", "*.corp.example.com"]
        }
    })];
    let seed: Vec<PolicyBox> = [
        ("provider-active", json!({})),
        ("validity", json!({"leeway": "30s"})),
        ("allowed-ips", json!({"allow": ["10.0.0.0/8"]})),
        ("allowed-referrers", json!({})),
        ("access-mode", json!({"overrides": {"Groups": "read-only"}})),
    ]
    .into_iter()
    .map(|(name, config)| create(name, config, &providers))
    .collect();

    let record = ProviderRecord {
        id: "oim-prod".into(),
        name: "One Identity Manager".into(),
        active: true,
        protocol: "scim2".into(),
        description: RString::new(),
        tags: RVec::new(),
        auth_method: "oauth2-client-credentials".into(),
        client_id: "oim-prod".into(),
        valid_from: ROption::RSome(1_767_225_600),
        valid_until: ROption::RSome(1_830_297_599),
        allowed_ips: ["10.20.0.0/16", "192.0.2.0/24", "2001:db8::/32"]
            .iter()
            .map(|s| RString::from(*s))
            .collect(),
        allowed_referrers: ["https://iam.example.com", "*.corp.example.com"]
            .iter()
            .map(|s| RString::from(*s))
            .collect(),
        access: "read-write".into(),
        scopes: RVec::new(),
        auth_json: "{}".into(),
    };
    let principal = Principal::new("oim-prod", "oim-prod", "oauth2-client-credentials");
    let caller = Caller {
        principal: ROption::RSome(&principal),
        provider: ROption::RSome(&record),
    };
    let mut req = Request {
        method: "PATCH".into(),
        path: "/Users/2819c223-7f76-453a-919d-413861904646".into(),
        query: RString::new(),
        headers: vec![
            Header::new("host", "vault.example.com"),
            Header::new("authorization", "Bearer eyJhbGciOiJFZERTQSJ9.e30.sig"),
            Header::new("content-type", "application/scim+json"),
            Header::new("origin", "https://app.corp.example.com"),
        ]
        .into(),
        body: RVec::new(),
        peer_addr: "10.20.3.4:51000".into(),
        client_ip: "10.20.3.4".into(),
        request_id: "r".into(),
        mount: "/iso/scim/v2".into(),
        base_url: "https://vault.example.com/iso/scim/v2".into(),
        received_at_unix_ms: 1_780_272_000_000,
        error_style: ErrorStyle::Scim,
        attributes: RVec::new(),
    };

    let seed_ns = measure(2_000_000, || {
        for policy in &seed {
            if let PolicyDecision::Deny(err) = policy.check(black_box(&req), caller) {
                panic!("seed pipeline refused: {}", err.message);
            }
        }
    });
    println!("seed policies (5, all allow, PATCH /Users/…): {seed_ns:>8.1} ns/op");

    req.client_ip = "::ffff:10.20.3.4".into();
    req.method = "GET".into();
    let mapped_ns = measure(2_000_000, || {
        for policy in &seed {
            black_box(policy.check(black_box(&req), caller));
        }
    });
    println!("seed policies (5, GET, IPv4-mapped client):   {mapped_ns:>8.1} ns/op");

    // Each seed policy alone; provider-active is close to the cost of a
    // call through the FFI box itself (the baseline).
    req.client_ip = "10.20.3.4".into();
    req.method = "PATCH".into();
    for (i, name) in [
        "provider-active",
        "validity",
        "allowed-ips",
        "allowed-referrers",
        "access-mode",
    ]
    .iter()
    .enumerate()
    {
        let one = &seed[i];
        let ns = measure(2_000_000, || {
            black_box(one.check(black_box(&req), caller));
        });
        println!("  {name:<44} {ns:>8.1} ns/op");
    }

    // Rate limit: a limit high enough never to refuse, so the cost is the
    // bookkeeping (two shard locks, two lookups, two updates).
    let limiter = create(
        "rate-limit",
        json!({"per_provider": "1000000000/s", "per_ip": "1000000000/s", "burst": 1000000}),
        &providers,
    );
    req.client_ip = "10.20.3.4".into();
    let mut t = req.received_at_unix_ms;
    let rl_ns = measure(2_000_000, || {
        t += 1;
        req.received_at_unix_ms = t;
        if let PolicyDecision::Deny(err) = limiter.check(black_box(&req), caller) {
            panic!("rate limit refused: {}", err.message);
        }
    });
    println!("rate-limit alone (per_ip + per_provider):     {rl_ns:>8.1} ns/op");

    // Many distinct addresses (map lookups miss, inserts and evictions).
    let spray = create(
        "rate-limit",
        json!({"per_ip": "10/s", "max_keys": 100000}),
        &[],
    );
    let mut n: u32 = 0;
    let addresses: Vec<RString> = (0..250_000u32)
        .map(|i| RString::from(std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string()))
        .collect();
    let spray_ns = measure(1_000_000, || {
        n = n.wrapping_add(1);
        req.client_ip = addresses[(n as usize) % addresses.len()].clone();
        black_box(spray.check(black_box(&req), Caller::ANONYMOUS));
    });
    println!("rate-limit, 250k sprayed addresses, cap 100k: {spray_ns:>8.1} ns/op (incl. a string clone)");
}

fn create(name: &str, config: serde_json::Value, providers: &[serde_json::Value]) -> PolicyBox {
    let component = components()
        .into_iter()
        .find(|c| c.name == name)
        .expect("component exists");
    let ctx = CreateContext {
        stage: name.into(),
        config,
        providers: providers.to_vec(),
        data_dir: std::env::temp_dir(),
        server: serde_json::Value::Null,
        host: None,
    };
    match component.create(&ctx) {
        Ok(ComponentInstance::Policy(policy)) => policy,
        Ok(_) => panic!("{name} is not a policy"),
        Err(err) => panic!("{name}: {}", err.message),
    }
}

/// Best of five rounds of `iterations` calls, in ns per call.
fn measure(iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .fold(f64::INFINITY, f64::min)
}
