//! Cost of the plugin boundary and of a whole no-op pipeline, in-process, no
//! HTTP: the demo plugin's no-op components loaded through the real ABI.
//! Prints figures; never fails on a slow machine.
//!
//!   cargo build --release --workspace && cargo bench -p scimgate --bench pipeline

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use abi_stable::std_types::{RString, RVec};
use scimgate_abi::{Caller, ErrorStyle, Header, Request};
use scimgate_host::config::{parse_str, SourceFile};
use scimgate_host::loader::LibraryCache;
use scimgate_host::pipeline::{assemble, AssembleMode, PreStage};

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[stage.auth]
use = "demo/anyone"
provider = "p1"
[stage.p1]
use = "demo/allow"
[stage.p2]
use = "demo/allow"
[stage.p3]
use = "demo/allow"
[stage.profile]
use = "demo/noop"
[stage.endpoint]
use = "demo/empty"
[[route]]
path = "/bench"
pipeline = ["auth", "p1", "p2", "p3", "profile", "endpoint"]
[[provider]]
id = "p1"
name = "bench"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#;

fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("bench executable");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf()
}

fn request() -> Request {
    Request {
        method: "GET".into(),
        path: "/Users/2819c223-7f76-453a-919d-413861904646".into(),
        query: RString::new(),
        headers: vec![
            Header::new("host", "127.0.0.1:8080"),
            Header::new("authorization", "Bearer x"),
            Header::new("accept", "application/scim+json"),
        ]
        .into(),
        body: RVec::new(),
        peer_addr: "127.0.0.1:50000".into(),
        client_ip: "127.0.0.1".into(),
        request_id: "bench".into(),
        mount: "/bench".into(),
        base_url: "http://127.0.0.1:8080/bench".into(),
        received_at_unix_ms: 1_700_000_000_000,
        error_style: ErrorStyle::Scim,
        attributes: RVec::new(),
    }
}

fn time_per_op(iterations: u64, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn main() {
    let env = |_: &str| None;
    let source = SourceFile {
        path: PathBuf::from("bench.toml"),
        text: CONFIG.to_string(),
    };
    let config = parse_str(source, &env)
        .unwrap_or_else(|(s, d)| panic!("{}", scimgate_host::config::render_diagnostics(&s, &d)));
    let mut cache = LibraryCache::default();
    let plugins = scimgate_host::loader::PluginPath::single(plugin_dir());
    let runtime = assemble(&config, &plugins, &mut cache, AssembleMode::Create)
        .unwrap_or_else(|d| {
            panic!(
                "{}",
                scimgate_host::config::render_diagnostics(&config.source, &d)
            )
        })
        .expect("runtime");
    let route = runtime.routes[0].clone();
    let iterations = 2_000_000;

    let policy = match &route.pre[1] {
        PreStage::Policy(p) => &p.component,
        _ => panic!("stage 1 is a policy"),
    };
    let req = request();
    let one_call = time_per_op(iterations, || {
        black_box(policy.check(black_box(&req), Caller::ANONYMOUS));
    });

    let pipeline = time_per_op(iterations, || {
        black_box(route.run(request(), &runtime.providers));
    });
    let build_request = time_per_op(iterations, || {
        black_box(request());
    });

    println!("no-op policy call through the loaded ABI:           {one_call:8.1} ns");
    println!("full no-op pipeline (auth + 3 policies + profile + endpoint), inline:");
    println!("  including building the Request:                   {pipeline:8.1} ns");
    println!("  building the Request alone:                       {build_request:8.1} ns");
    println!(
        "  pipeline without building the Request:            {:8.1} ns",
        pipeline - build_request
    );
    println!(
        "target: < 1000 ns for the whole no-op pipeline; ratio to target: {:.2}",
        (pipeline - build_request) / 1000.0
    );
}
