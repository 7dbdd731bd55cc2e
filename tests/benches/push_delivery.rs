//! Push delivery throughput: signed change events (SETs) delivered per
//! second to a webhook receiver on loopback, by the release binary and
//! `libscim_server.so`. A backlog of N changes is written (Bulk creates)
//! while the receiver answers 503; the receiver then accepts (202,
//! keep-alive) and the time until it has acknowledged the N-th event gives
//! events/s, one POST per event as the engine sends them. On SQLite, and
//! on PostgreSQL when `SCIMGATE_TEST_POSTGRES_URL` is set. Prints figures;
//! never fails on a slow machine.
//!
//! Run: `cargo build --release --workspace`, optionally start a cluster
//! (`eval "$(tests/pg-cluster start DIR)"`), then
//! `cargo bench -p scimgate-e2e --bench push_delivery` (the bench profile runs the
//! binaries of target/release).
//! `PUSH_BENCH_EVENTS` sets N (default 5000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use scimgate_e2e::*;

/// A keep-alive receiver: 503 until `open`, then 202; keeps the highest
/// `scimgate.seq` it accepted.
struct Receiver {
    url: String,
    open: Arc<AtomicBool>,
    newest: Arc<AtomicU64>,
    accepted: Arc<AtomicU64>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/events", listener.local_addr().expect("addr"));
        let open = Arc::new(AtomicBool::new(false));
        let newest = Arc::new(AtomicU64::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let (o, n, a) = (open.clone(), newest.clone(), accepted.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (o, n, a) = (o.clone(), n.clone(), a.clone());
                std::thread::spawn(move || serve(stream, &o, &n, &a));
            }
        });
        Receiver {
            url,
            open,
            newest,
            accepted,
        }
    }
}

fn serve(stream: TcpStream, open: &AtomicBool, newest: &AtomicU64, accepted: &AtomicU64) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let answer: &[u8] = if open.load(Ordering::Acquire) {
            let seq = seq_of(&body);
            newest.fetch_max(seq, Ordering::AcqRel);
            accepted.fetch_add(1, Ordering::AcqRel);
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
        };
        if writer.write_all(answer).is_err() {
            return;
        }
    }
}

fn seq_of(token: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(token);
    let payload = text.split('.').nth(1).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .and_then(|c| c["scimgate"]["seq"].as_u64())
        .unwrap_or(0)
}

fn run(name: &str, store_options: &str, env: &[(&str, &str)], n: usize) {
    let rx = Receiver::start();
    let options = format!(
        "{store_options}\n[[stage.scim.subscriber]]\nname = \"bench\"\nurl = \"{}\"\nmax_attempts = 1000000\nbackoff_base = \"10ms\"\nbackoff_cap = \"50ms\"\n",
        rx.url
    );
    let mut envs = vec![("SCIMGATE_LOG", "error")];
    envs.extend_from_slice(env);
    let server = Server::start_with_env(&scim_route_config("bench-token", &options), &envs);
    let mut client = KeepAliveClient::connect(&server.url("/scim/v2"), "Bearer bench-token");
    let fill = bulk_fill_users(
        &mut client,
        "/scim/v2",
        n,
        Instant::now() + Duration::from_secs(600),
    );
    let events = fill.ids.len() as u64;
    let started = Instant::now();
    rx.open.store(true, Ordering::Release);
    while rx.newest.load(Ordering::Acquire) < events {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "not delivered within 10 min"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = started.elapsed();
    let posts = rx.accepted.load(Ordering::Acquire);
    println!(
        "[{name}] {events} events delivered in {:.2} s: {:.0} events/s ({posts} POSTs accepted)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    drop(server);
}

fn main() {
    let n: usize = std::env::var("PUSH_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    println!(
        "push delivery: one subscriber, loopback receiver, binary {}",
        target_dir().display()
    );
    run("SQLite", "", &[], n);
    match std::env::var("SCIMGATE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => {
            let password = std::env::var("SCIMGATE_TEST_POSTGRES_PASSWORD").unwrap_or_default();
            let schema = format!("scimgate_push_bench_{}", std::process::id());
            psql(&url, &password, &format!("CREATE SCHEMA {schema}"));
            let options = format!(
                "store = \"{url}?options=-csearch_path%3D{schema}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\""
            );
            run(
                "PostgreSQL",
                &options,
                &[("SCIMGATE_PG_PASSWORD", &password)],
                n,
            );
            psql(&url, &password, &format!("DROP SCHEMA {schema} CASCADE"));
        }
        _ => println!("[PostgreSQL] skipped: SCIMGATE_TEST_POSTGRES_URL is not set"),
    }
}
