//! The engine's own cost per request over the raw backend call, in
//! process: `MemoryBackend::get` (a map look-up and a clone) against
//! `ScimService::handle` for `GET /Users/{id}` and a `userName eq` list over
//! the same backend (routing, rendering, projection, JSON). Prints figures;
//! run with `cargo bench -p scimgate-memory-backend-plugin --bench engine`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use memory::MemoryBackend;
use scimgate_abi::{Caller, Request};
use scimgate_scim::Registry;
use scimgate_scim_service::{Backend, ScimService, Settings};
use serde_json::json;

fn per_call(n: u32, mut f: impl FnMut(u32)) -> f64 {
    for i in 0..n / 10 {
        f(i);
    }
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn main() {
    let backend = Arc::new(MemoryBackend::default());
    let service = ScimService::new(Settings::default(), Registry::core(), backend.clone());
    let users = 1000;
    let mut ids = Vec::new();
    for i in 0..users {
        let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("user{i:06}"), "displayName": format!("User {i}"),
            "name": {"givenName": "Bench", "familyName": format!("U{i}")},
            "emails": [{"value": format!("user{i:06}@example.com"), "type": "work", "primary": true}]});
        let req = Request::new("POST", "/Users").with_body(body.to_string());
        let resp = service.handle(&req, Caller::ANONYMOUS).expect("create");
        let created: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
        ids.push(created["id"].as_str().expect("id").to_string());
    }
    let n = 20_000;
    let raw = per_call(n, |i| {
        black_box(backend.get("User", &ids[i as usize % users]).expect("get"));
    });
    let get_reqs: Vec<Request> = ids
        .iter()
        .map(|id| Request::new("GET", &format!("/Users/{id}")))
        .collect();
    let engine = per_call(n, |i| {
        black_box(
            service
                .handle(&get_reqs[i as usize % users], Caller::ANONYMOUS)
                .expect("get"),
        );
    });
    println!("engine overhead over the raw backend call ({users} users, memory backend)");
    println!("  MemoryBackend::get             {raw:>9.0} ns");
    println!(
        "  ScimService GET /Users/{{id}}    {engine:>9.0} ns   (engine: {:.0} ns = {:.1}x the backend call)",
        engine - raw,
        engine / raw
    );
    let filter_reqs: Vec<Request> = (0..users)
        .map(|i| {
            Request::new("GET", "/Users")
                .with_query(&format!("filter=userName%20eq%20%22USER{i:06}%22"))
        })
        .collect();
    let listed = per_call(200, |i| {
        black_box(
            service
                .handle(&filter_reqs[i as usize % users], Caller::ANONYMOUS)
                .expect("list"),
        );
    });
    println!(
        "  ScimService userName eq (engine evaluates over {users} users) {:>9.0} ns = {:.1} µs per user scanned",
        listed,
        listed / users as f64 / 1000.0
    );
}
