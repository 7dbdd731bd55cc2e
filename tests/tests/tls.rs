//! `[server.tls]` against the real binary: TLS 1.3 and 1.2 handshakes (and
//! `min_version`), no HTTP answer to plaintext on the TLS port, HTTP/2 via
//! ALPN, the certificate swapped on SIGHUP for new connections only, a bad
//! key on reload keeping the old certificate, client certificates (required
//! and optional) and the `tls.*` attributes plugins see, `https` base URLs,
//! and `scimgate validate` locating bad TLS files. Certificates come from
//! `scimgate_e2e::certs` (the openssl CLI) in each test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, ClientConnection, RootCertStore, StreamOwned, SupportedProtocolVersion,
};
use scimgate_e2e::certs::{CertFiles, Certs, KeyAlg};
use scimgate_e2e::*;

const TLS12: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
const TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
const BOTH: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A demo pipeline (API key `k1`, then the echo endpoint at `/demo`) on a
/// TLS listener; `tls` is the body of `[server.tls]`.
fn config(tls: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{{plugin_dir}}"
data_dir = "{{data_dir}}"
header_read_timeout = "2s"

[server.tls]
{tls}

[stage.key]
use = "demo/api-key"
keys = {{ "k1" = "p1" }}

[stage.echo]
use = "demo/echo"

[[route]]
path = "/demo"
pipeline = ["key", "echo"]

[[provider]]
id = "p1"
name = "Provider one"
[provider.auth]
method = "static-bearer"
token_hash = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#
    )
}

/// `cert_file`/`key_file` lines for absolute paths.
fn files(cert: &Path, key: &Path) -> String {
    format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

fn start(certs: &Certs, extra: &str) -> Server {
    let tls = files(&certs.server.cert, &certs.server.key) + extra;
    Server::start(&config(&tls))
}

fn port(server: &Server) -> u16 {
    let base = server.url("");
    assert!(base.starts_with("https://"), "the banner says {base}");
    base.rsplit(':').next().unwrap().parse().unwrap()
}

fn der_of(pem: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(pem).expect("a PEM certificate")
}

/// A rustls client trusting the test CA, offering `alpn`, presenting
/// `identity` when given.
fn client(
    certs: &Certs,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
    identity: Option<&CertFiles>,
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(der_of(&certs.ca)).unwrap();
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(
                vec![der_of(&id.cert)],
                PrivateKeyDer::from_pem_file(&id.key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// Connects to `localhost` (127.0.0.1) and completes the handshake.
fn connect(port: u16, config: Arc<ClientConfig>) -> std::io::Result<Tls> {
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One HTTP/1.1 request on a kept-alive TLS stream: (status, body).
fn request(
    stream: &mut Tls,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.flush()?;
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("closed after {:?}", String::from_utf8_lossy(&buf)),
            ));
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head}"));
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no content-length: {head}"));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn version(stream: &Tls) -> Option<rustls::ProtocolVersion> {
    stream.conn.protocol_version()
}

fn peer_cert(stream: &Tls) -> CertificateDer<'static> {
    stream.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// Whether the server serves a request to this client (handshake and one
/// `/healthz`); a refusal may surface at the handshake or at the first read
/// (TLS 1.3 reports a rejected client certificate after the client's
/// handshake is done).
fn served(port: u16, config: Arc<ClientConfig>) -> bool {
    match connect(port, config) {
        Ok(mut stream) => matches!(request(&mut stream, "/healthz", &[]), Ok((200, _))),
        Err(_) => false,
    }
}

/// The `[name, value]` pairs of the echo endpoint's `attributes`.
fn attributes(body: &str) -> Vec<(String, String)> {
    let json: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
    json["attributes"]
        .as_array()
        .unwrap_or_else(|| panic!("no attributes: {body}"))
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_string(),
                pair[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn attr<'a>(attrs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    attrs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

const KEY: (&str, &str) = ("x-api-key", "k1");

#[test]
fn tls13_and_tls12_clients_are_served_over_https() {
    let certs = Certs::new();
    let server = start(&certs, "");
    let port = port(&server);
    for (versions, expected, name) in [
        (TLS13, rustls::ProtocolVersion::TLSv1_3, "TLSv1.3"),
        (TLS12, rustls::ProtocolVersion::TLSv1_2, "TLSv1.2"),
    ] {
        let mut stream = connect(port, client(&certs, versions, &[], None)).unwrap();
        assert_eq!(version(&stream), Some(expected));
        assert_eq!(peer_cert(&stream), der_of(&certs.server.cert));
        let (status, body) = request(&mut stream, "/healthz", &[]).unwrap();
        assert_eq!((status, body.as_str()), (200, r#"{"status":"ok"}"#));
        // The same kept-alive connection serves a pipeline, which sees an
        // https base URL and the TLS facts, and no client certificate.
        let (status, body) = request(&mut stream, "/demo/x", &[KEY]).unwrap();
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["base_url"], format!("https://localhost/demo"));
        let attrs = attributes(&body);
        assert_eq!(attr(&attrs, "tls.version"), vec![name], "{body}");
        assert!(
            attr(&attrs, "tls.alpn").is_empty(),
            "no ALPN offered: {body}"
        );
        assert!(!body.contains("tls.client_cert"), "{body}");
    }
    // A trusted proxy's X-Forwarded-Proto still wins over the connection.
    let mut stream = connect(port, client(&certs, BOTH, &[b"http/1.1"], None)).unwrap();
    let (_, body) = request(
        &mut stream,
        "/demo/x",
        &[KEY, ("x-forwarded-proto", "http")],
    )
    .unwrap();
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        json["base_url"], "https://localhost/demo",
        "the peer is no trusted proxy"
    );
    assert_eq!(attr(&attributes(&body), "tls.alpn"), vec!["http/1.1"]);
    // curl, verifying the chain against the CA.
    let out = curl(&certs, port, &["--http1.1"], "/healthz");
    assert_eq!(out, "{\"status\":\"ok\"}\n1.1", "curl over HTTP/1.1");
}

#[test]
fn min_version_1_3_refuses_tls12_clients() {
    let certs = Certs::new();
    let server = start(&certs, "min_version = \"1.3\"\n");
    let port = port(&server);
    assert!(served(port, client(&certs, TLS13, &[], None)));
    assert!(
        !served(port, client(&certs, TLS12, &[], None)),
        "a TLS 1.2 client was served with min_version 1.3"
    );
    wait_for_log(&server, "TLS handshake failed", Duration::from_secs(10));
}

#[test]
fn plaintext_http_to_the_tls_port_gets_no_http_answer() {
    let certs = Certs::new();
    let server = start(&certs, "");
    let port = port(&server);
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    // The server closes the connection (perhaps after a TLS alert): read to
    // the end; a timeout here would mean it kept the connection open.
    match tcp.read_to_end(&mut answer) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the plaintext connection was not closed: {e}"),
    }
    assert!(
        !String::from_utf8_lossy(&answer).contains("HTTP/"),
        "plaintext got an HTTP answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(!answer.windows(6).any(|w| w == b"status"), "{answer:?}");
    wait_for_log(&server, "TLS handshake failed", Duration::from_secs(10));
    // A client that connects and says nothing is closed at the deadline.
    let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{rest:?}");
    wait_for_log(
        &server,
        "TLS handshake did not complete within server.header_read_timeout",
        Duration::from_secs(10),
    );
    // The listener still serves TLS.
    assert!(served(port, client(&certs, BOTH, &[], None)));
}

/// `curl` against `https://localhost:PORT{path}` with the test CA: the body
/// and, after a line break, the HTTP version curl used.
fn curl(certs: &Certs, port: u16, args: &[&str], path: &str) -> String {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&certs.ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(args)
        .args(["-w", "\n%{http_version}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .expect("run curl (tests/run installs it when missing)");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn http2_is_negotiated_by_alpn_and_served() {
    let certs = Certs::new();
    let server = start(&certs, "");
    let port = port(&server);
    let stream = connect(port, client(&certs, BOTH, &[b"h2", b"http/1.1"], None)).unwrap();
    assert_eq!(stream.conn.alpn_protocol(), Some(b"h2".as_slice()));
    drop(stream);
    assert_eq!(
        curl(&certs, port, &["--http2"], "/healthz"),
        "{\"status\":\"ok\"}\n2"
    );
    // A pipeline over HTTP/2: the authority stands in for Host.
    let out = curl(
        &certs,
        port,
        &["--http2", "-H", "x-api-key: k1"],
        "/demo/h2",
    );
    let (body, version) = out.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{out}");
    let json: Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["base_url"], format!("https://localhost:{port}/demo"));
    assert_eq!(json["path"], "/h2");
    assert_eq!(attr(&attributes(body), "tls.alpn"), vec!["h2"]);
    // Several requests over one HTTP/2 connection.
    let url = format!("https://localhost:{port}/healthz");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2", "--cacert"])
        .arg(&certs.ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-w", "%{http_version} %{num_connects}\n"])
        .args([&url, &url, &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.matches("{\"status\":\"ok\"}2 ").count(), 3, "{text}");
    assert_eq!(
        text.matches("2 1\n").count(),
        1,
        "one connection reused: {text}"
    );

    // http2 = false: ALPN offers http/1.1 only.
    let server = start(&certs, "http2 = false\n");
    let port = self::port(&server);
    let stream = connect(port, client(&certs, BOTH, &[b"h2", b"http/1.1"], None)).unwrap();
    assert_eq!(stream.conn.alpn_protocol(), Some(b"http/1.1".as_slice()));
    assert_eq!(
        curl(&certs, port, &["--http2"], "/healthz"),
        "{\"status\":\"ok\"}\n1.1"
    );
}

/// The server's folder with its certificate and key as `tls/server.pem` and
/// `tls/server.key` (relative paths in the config), copied from `from`.
fn install(dir: &Path, from: &CertFiles) {
    std::fs::create_dir_all(dir.join("tls")).unwrap();
    std::fs::copy(&from.cert, dir.join("tls/server.pem")).unwrap();
    std::fs::copy(&from.key, dir.join("tls/server.key")).unwrap();
}

fn start_relative(certs: &Certs) -> Server {
    let dir = TempDir::new("tls");
    install(dir.path(), &certs.server);
    let config_path = dir.path().join("scimgate.toml");
    let text = config("cert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\n");
    std::fs::write(&config_path, expand(&text, dir.path())).unwrap();
    Server::start_at(dir, config_path, &[])
}

fn hangup_and_wait(server: &Server, outcome: &str) -> String {
    let before = server.logs().matches(outcome).count();
    server.signal("HUP");
    wait_until_or(
        Duration::from_secs(10),
        outcome,
        || server.logs().matches(outcome).count() > before,
        || server.logs(),
    );
    server.logs()
}

#[test]
fn sighup_gives_new_connections_the_new_certificate_and_keeps_open_ones() {
    let certs = Certs::new();
    let server = start_relative(&certs);
    let port = port(&server);
    let mut before = connect(port, client(&certs, BOTH, &[], None)).unwrap();
    assert_eq!(request(&mut before, "/healthz", &[]).unwrap().0, 200);
    assert_eq!(peer_cert(&before), der_of(&certs.server.cert));

    let renewed = certs.new_server("renewed");
    install(server.dir.path(), &renewed);
    hangup_and_wait(&server, "configuration reloaded");

    // The connection opened before the reload is still served.
    assert_eq!(request(&mut before, "/healthz", &[]).unwrap().0, 200);
    assert_eq!(peer_cert(&before), der_of(&certs.server.cert));
    // A new one gets the renewed certificate.
    let after = connect(port, client(&certs, BOTH, &[], None)).unwrap();
    assert_eq!(peer_cert(&after), der_of(&renewed.cert));
    assert_ne!(renewed.sha256, certs.server.sha256);
}

#[test]
fn a_reload_with_a_bad_key_keeps_the_old_certificate() {
    let certs = Certs::new();
    let server = start_relative(&certs);
    let port = port(&server);
    let tls = server.dir.path().join("tls");
    // A renewed certificate whose key is another one's: they do not match.
    let renewed = certs.new_server("renewed");
    let stranger = certs.new_server("stranger");
    std::fs::copy(&renewed.cert, tls.join("server.pem")).unwrap();
    std::fs::copy(&stranger.key, tls.join("server.key")).unwrap();
    let logs = hangup_and_wait(&server, "reload failed");
    wait_for_log(
        &server,
        "does not match the certificate",
        Duration::from_secs(10),
    );
    let logs = server.logs() + &logs;
    assert!(logs.contains("server.tls.key_file"), "{logs}");
    assert!(logs.contains("server.key"), "the file is named: {logs}");
    // Never the key itself.
    let key_text = std::fs::read_to_string(&stranger.key).unwrap();
    let key_line = key_text.lines().nth(1).unwrap();
    assert!(!logs.contains(key_line), "key material in the log");
    let stream = connect(port, client(&certs, BOTH, &[], None)).unwrap();
    assert_eq!(
        peer_cert(&stream),
        der_of(&certs.server.cert),
        "the old certificate stays"
    );

    // A key file that is not PEM at all: named, and the old certificate stays.
    std::fs::copy(&renewed.cert, tls.join("server.pem")).unwrap();
    std::fs::write(tls.join("server.key"), "not a key\n").unwrap();
    let before = server.logs().matches("no PEM private key").count();
    hangup_and_wait(&server, "reload failed: ");
    wait_until_or(
        Duration::from_secs(10),
        "the key error",
        || server.logs().matches("no PEM private key").count() > before,
        || server.logs(),
    );
    let mut stream = connect(port, client(&certs, BOTH, &[], None)).unwrap();
    assert_eq!(peer_cert(&stream), der_of(&certs.server.cert));
    let (status, metrics) = request(&mut stream, "/metrics", &[]).unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("scimgate_config_reloads_total{result=\"failure\"} 2")),
        "{metrics}"
    );

    // Fixed: the renewed certificate is served.
    std::fs::copy(&renewed.key, tls.join("server.key")).unwrap();
    hangup_and_wait(&server, "configuration reloaded");
    let stream = connect(port, client(&certs, BOTH, &[], None)).unwrap();
    assert_eq!(peer_cert(&stream), der_of(&renewed.cert));
}

#[test]
fn required_client_auth_refuses_clients_without_a_verified_certificate() {
    let certs = Certs::new();
    let extra = format!(
        "client_ca_file = \"{}\"\nclient_auth = \"required\"\n",
        certs.ca.display()
    );
    let server = start(&certs, &extra);
    let port = port(&server);
    let alice = certs.client("alice", &["DNS:alice.example"]);
    for versions in [TLS13, TLS12] {
        assert!(served(port, client(&certs, versions, &[], Some(&alice))));
        assert!(
            !served(port, client(&certs, versions, &[], None)),
            "served without a client certificate"
        );
    }
    let mallory = certs.self_signed_client("mallory", &["DNS:alice.example"]);
    assert!(!served(port, client(&certs, BOTH, &[], Some(&mallory))));
    let eve = certs.other_ca_client("eve", &[]);
    assert!(!served(port, client(&certs, BOTH, &[], Some(&eve))));
    wait_for_log(&server, "TLS handshake failed", Duration::from_secs(10));
}

#[test]
fn optional_client_auth_hands_the_verified_certificate_to_plugins() {
    let certs = Certs::new();
    let extra = format!("client_ca_file = \"{}\"\n", certs.ca.display());
    let server = start(&certs, &extra);
    let port = port(&server);
    let alice = certs.client(
        "alice",
        &[
            "DNS:alice.example",
            "URI:spiffe://corp/alice",
            "email:alice@example.com",
            "IP:10.1.2.3",
        ],
    );
    let mut stream = connect(port, client(&certs, BOTH, &[b"http/1.1"], Some(&alice))).unwrap();
    let (status, body) = request(&mut stream, "/demo/me", &[KEY]).unwrap();
    assert_eq!(status, 200, "{body}");
    let attrs = attributes(&body);
    assert_eq!(attr(&attrs, "tls.version"), vec!["TLSv1.3"]);
    assert_eq!(attr(&attrs, "tls.alpn"), vec!["http/1.1"]);
    assert_eq!(
        attr(&attrs, "tls.client_cert.sha256"),
        vec![alice.sha256.as_str()]
    );
    assert_eq!(attr(&attrs, "tls.client_cert.subject"), vec!["CN=alice"]);
    assert_eq!(
        attr(&attrs, "tls.client_cert.san"),
        vec![
            "dns:alice.example",
            "uri:spiffe://corp/alice",
            "email:alice@example.com",
            "ip:10.1.2.3"
        ]
    );
    assert_eq!(
        attr(&attrs, "tls.client_cert.not_after"),
        vec![alice.not_after.to_string()]
    );

    // A subject of several RDNs is written last RDN first, escaped; over h2.
    let bob = certs.client_with_subject("bob", "/C=DE/O=Example, Inc./CN=bob", &[]);
    assert_eq!(bob.subject, "CN=bob,O=Example\\, Inc.,C=DE");
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2", "--cacert"])
        .arg(&certs.ca)
        .arg("--cert")
        .arg(&bob.cert)
        .arg("--key")
        .arg(&bob.key)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-H", "x-api-key: k1"])
        .arg(format!("https://localhost:{port}/demo/bob"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    let attrs = attributes(&body);
    assert_eq!(attr(&attrs, "tls.alpn"), vec!["h2"], "{body}");
    assert_eq!(
        attr(&attrs, "tls.client_cert.subject"),
        vec![bob.subject.as_str()]
    );
    assert_eq!(
        attr(&attrs, "tls.client_cert.sha256"),
        vec![bob.sha256.as_str()]
    );
    assert!(attr(&attrs, "tls.client_cert.san").is_empty(), "{body}");

    // No certificate: served, and no client_cert attributes.
    let mut stream = connect(port, client(&certs, TLS12, &[], None)).unwrap();
    let (status, body) = request(&mut stream, "/demo/me", &[KEY]).unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(attr(&attributes(&body), "tls.version"), vec!["TLSv1.2"]);
    assert!(!body.contains("tls.client_cert"), "{body}");
    // A certificate the CA did not issue is refused, not ignored.
    let mallory = certs.self_signed_client("mallory", &["DNS:alice.example"]);
    assert!(!served(port, client(&certs, BOTH, &[], Some(&mallory))));
}

#[test]
fn validate_locates_bad_tls_settings_and_files() {
    let certs = Certs::new();
    let dir = TempDir::new("tls-validate");
    let path = dir.path().join("tls.toml");
    let validate = |tls: &str| -> (i32, String, String) {
        let text = expand(&config(tls), dir.path());
        std::fs::write(&path, &text).unwrap();
        let (code, out, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
        (code, format!("{out}{err}"), text)
    };
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;

    // Good: PKCS#8, SEC1 and RSA PKCS#1 keys; relative paths from the config's folder.
    install(dir.path(), &certs.server);
    let (code, out, _) =
        validate("cert_file = \"tls/server.pem\"\nkey_file = \"tls/server.key\"\n");
    assert_eq!(code, 0, "{out}");
    let sec1 = certs.traditional_key(&certs.server);
    assert_eq!(validate(&files(&certs.server.cert, &sec1)).0, 0);
    let rsa = certs.new_server_with("rsa", KeyAlg::Rsa2048);
    let pkcs1 = certs.traditional_key(&rsa);
    assert_eq!(validate(&files(&rsa.cert, &pkcs1)).0, 0);

    // A key that is not the certificate's.
    let (code, out, text) = validate(&files(&certs.server.cert, &rsa.key));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("tls.toml:{}:", line_of(&text, "key_file"))),
        "{out}"
    );
    assert!(out.contains("does not match the certificate"), "{out}");
    assert!(out.contains("help:"), "{out}");
    let key_text = std::fs::read_to_string(&rsa.key).unwrap();
    assert!(
        !out.contains(key_text.lines().nth(1).unwrap()),
        "key material: {out}"
    );

    // A missing certificate file, at `cert_file`.
    let (code, out, text) = validate(&files(&dir.path().join("nope.pem"), &certs.server.key));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("tls.toml:{}:", line_of(&text, "cert_file"))),
        "{out}"
    );
    assert!(out.contains("cannot read the file"), "{out}");

    // A certificate where the key should be.
    let (code, out, _) = validate(&files(&certs.server.cert, &certs.server.cert));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no PEM private key"), "{out}");

    // A client CA file without certificates, at `client_ca_file`.
    let tls = files(&certs.server.cert, &certs.server.key)
        + &format!("client_ca_file = \"{}\"\n", certs.server.key.display());
    let (code, out, text) = validate(&tls);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains(&format!("tls.toml:{}:", line_of(&text, "client_ca_file"))),
        "{out}"
    );
    assert!(out.contains("no PEM certificate"), "{out}");

    // Settings: client_auth without a CA, an old TLS version, a missing key.
    let good = files(&certs.server.cert, &certs.server.key);
    for (extra, needle, message) in [
        (
            "client_auth = \"required\"\n",
            "client_auth",
            "without `client_ca_file`",
        ),
        (
            "min_version = \"1.1\"\n",
            "min_version",
            "unsupported `server.tls.min_version`",
        ),
        ("http2 = \"yes\"\n", "http2", "expected a boolean"),
        ("ciphers = \"all\"\n", "ciphers", "unknown key"),
    ] {
        let (code, out, text) = validate(&(good.clone() + extra));
        assert_eq!(code, 2, "{extra}: {out}");
        assert!(
            out.contains(&format!("tls.toml:{}:", line_of(&text, needle))),
            "{out}"
        );
        assert!(out.contains(message), "{extra}: {out}");
    }
    let (code, out, text) = validate(&format!(
        "cert_file = \"{}\"\n",
        certs.server.cert.display()
    ));
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("missing required key `key_file`"), "{out}");
    assert!(
        out.contains(&format!("tls.toml:{}:", line_of(&text, "[server.tls]"))),
        "{out}"
    );
}
