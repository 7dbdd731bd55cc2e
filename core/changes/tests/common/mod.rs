//! Test helpers: a scripted HTTP receiver on 127.0.0.1 (a std TcpListener
//! thread that records every request and answers per a script), a manual
//! clock, and change/deliverer builders.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{channel, Receiver as Rx, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use scimgate_changes::memory::{MemoryLog, MemoryPositions};
use scimgate_changes::{Change, Clock, Deliverer, Issuer, Op, Subscriber};

/// How the receiver answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16, &'static str),
    /// Waits, then answers 202.
    Slow(Duration),
    /// 302 with this Location.
    Redirect(String),
    /// Closes the connection without answering.
    Close,
    /// Answers 202 once the test sends on the paired channel.
    Hold(Arc<Mutex<Rx<()>>>),
}

/// A `Reply::Hold` and the sender that releases it.
pub fn hold() -> (Reply, Sender<()>) {
    let (tx, rx) = channel();
    (Reply::Hold(Arc::new(Mutex::new(rx))), tx)
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    log: Arc<Mutex<Vec<Request>>>,
    events: Mutex<Rx<Request>>,
}

impl Receiver {
    /// Answers 202 unless a scripted reply is queued.
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = channel();
        let (s, l) = (script.clone(), log.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (s, l, tx) = (s.clone(), l.clone(), tx.clone());
                std::thread::spawn(move || serve(stream, &s, &l, &tx));
            }
        });
        Receiver {
            url,
            script,
            log,
            events: Mutex::new(rx),
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().unwrap().extend(replies);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) for the next request.
    pub fn next_request(&self) -> Option<Request> {
        self.events
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20))
            .ok()
    }

    /// The `txn` claim of every request received, in arrival order.
    pub fn txns(&self) -> Vec<u64> {
        self.requests().iter().map(|r| txn_of(&r.body)).collect()
    }
}

/// The `txn` of a compact JWS, without verifying it.
pub fn txn_of(token: &str) -> u64 {
    claims_of(token)["txn"].as_str().unwrap().parse().unwrap()
}

pub fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn serve(
    stream: TcpStream,
    script: &Mutex<VecDeque<Reply>>,
    log: &Mutex<Vec<Request>>,
    tx: &Sender<Request>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let request = Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let reply = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(202, ""));
    log.lock().unwrap().push(request.clone());
    let _ = tx.send(request);
    let mut stream = stream;
    let answer = |status: u16, extra: &str, body: &str| {
        format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    let text = match reply {
        Reply::Status(code, body) => answer(code, "", body),
        Reply::Slow(d) => {
            std::thread::sleep(d);
            answer(202, "", "")
        }
        Reply::Redirect(to) => answer(302, &format!("Location: {to}\r\n"), ""),
        Reply::Close => return,
        Reply::Hold(gate) => {
            let _ = gate.lock().unwrap().recv_timeout(Duration::from_secs(20));
            answer(202, "", "")
        }
    };
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}

/// A clock the test moves.
#[derive(Debug, Default)]
pub struct ManualClock(pub AtomicI64);

impl ManualClock {
    pub fn at(ms: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock(AtomicI64::new(ms)))
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

pub fn key() -> Arc<SigningKey> {
    Arc::new(SigningKey::from_bytes(&[42u8; 32]))
}

pub fn issuer() -> Issuer {
    Issuer {
        iss: "https://scim.example.test/scim/v2".into(),
        instance: "inst".into(),
    }
}

pub fn change(resource_id: &str, op: Op) -> Change {
    Change {
        seq: 0,
        at: 1_700_000_000_000,
        resource_type: "User".into(),
        resource_id: resource_id.into(),
        op,
        version: Some("W/\"1\"".into()),
        provider_id: "mem".into(),
        client_id: Some("iga".into()),
        attributes: vec!["userName".into()],
        via: None,
    }
}

pub fn subscriber(url: &str) -> Subscriber {
    let mut s = Subscriber::new("rx", url, "https://rx.example.test");
    s.request_timeout = Duration::from_secs(5);
    s.backoff.base = Duration::from_millis(100);
    s.backoff.cap = Duration::from_secs(10);
    s
}

pub fn deliverer(
    sub: Subscriber,
    node: &str,
    log: &Arc<MemoryLog>,
    store: Arc<dyn scimgate_changes::PositionStore>,
    clock: &Arc<ManualClock>,
) -> Deliverer {
    Deliverer::new(sub, issuer(), key(), node, log.clone(), store)
        .unwrap()
        .with_clock(clock.clone())
}

pub fn memory() -> (Arc<MemoryLog>, Arc<MemoryPositions>) {
    (Arc::new(MemoryLog::new()), Arc::new(MemoryPositions::new()))
}
