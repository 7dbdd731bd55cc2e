//! The `tls/client-cert` authenticator against the real binary: scimgate
//! serves HTTPS (`[server.tls]`, client certificates optional), and `curl`
//! presents certificates made by `scimgate_e2e::certs` (a throwaway CA).
//! A provider registered by fingerprint or by subjectAltName gets in, an
//! unregistered certificate of the same CA gets 401, another CA's
//! certificate fails the handshake, an inactive provider is refused by the
//! policies, and without a certificate a bearer token still works. The
//! provider keys are checked at load, every mistake located in the file.

use std::path::Path;
use std::process::Command;

use scimgate_e2e::certs::{CertFiles, Certs};
use scimgate_e2e::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ROBOT_TOKEN: &str = "robot-token-5c1f0e9d8b7a69584736251403f2e1d0";

/// What curl got: its exit code, the HTTP status (0: none) and the body.
struct Curl {
    exit: i32,
    status: u16,
    body: String,
    stderr: String,
}

impl Curl {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn detail(&self) -> String {
        self.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTPS request with curl, trusting `ca`, presenting `client` if any.
fn curl(
    url: &str,
    ca: &Path,
    client: Option<&CertFiles>,
    headers: &[&str],
    post: Option<&Value>,
) -> Curl {
    let mut cmd = Command::new("curl");
    // --max-time only bounds a broken run; nothing waits on it.
    cmd.args(["-sS", "--max-time", "30", "-o", "-", "-w", "\n%{http_code}"])
        .arg("--cacert")
        .arg(ca);
    if let Some(client) = client {
        cmd.arg("--cert")
            .arg(&client.cert)
            .arg("--key")
            .arg(&client.key);
    }
    for header in headers {
        cmd.arg("-H").arg(header);
    }
    if let Some(body) = post {
        cmd.args(["-H", "content-type: application/scim+json", "--data-binary"])
            .arg(body.to_string());
    }
    let out = cmd.arg(url).output().expect("run curl");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    Curl {
        exit: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `AB:CD:…`, as `openssl x509 -noout -fingerprint -sha256` prints it.
fn openssl_spelling(sha256: &str) -> String {
    sha256
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).to_uppercase())
        .collect::<Vec<_>>()
        .join(":")
}

const STAGES: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"
@TLS@
[stage.mtls]
use = "tls/client-cert"
[stage.robots]
use = "oauth2/static-bearer"
[stage.active]
use = "policies/provider-active"
[stage.validity]
use = "policies/validity"
[stage.ips]
use = "policies/allowed-ips"
[stage.referrers]
use = "policies/allowed-referrers"
[stage.access]
use = "policies/access-mode"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/iga/scim/v2"
pipeline = ["mtls", "robots", "active", "validity", "ips", "referrers", "access", "scim"]
providers = ["by-fingerprint", "by-san", "off", "robot"]
"#;

#[test]
fn client_certificates_name_their_providers_over_tls() {
    let certs = Certs::new();
    let pinned = certs.client("pinned", &["DNS:pinned.example"]);
    let named = certs.client(
        "named",
        &["DNS:san-client.example", "email:ops@example.com"],
    );
    let stranger = certs.client("stranger", &["DNS:stranger.example"]);
    let retired = certs.client("retired", &[]);
    // Claims the registered name, but its CA is not `client_ca_file`.
    let forged = certs.other_ca_client("forged", &["DNS:san-client.example"]);

    let tls = format!(
        "\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\nclient_auth = \"optional\"\n",
        certs.server.cert.display(),
        certs.server.key.display(),
        certs.ca.display()
    );
    let providers = format!(
        r#"
[[provider]]
id = "by-fingerprint"
[provider.auth]
method = "client-cert"
cert_sha256 = "{}"
scopes = ["scim:read", "scim:write"]

[[provider]]
id = "by-san"
[provider.auth]
method = "client-cert"
cert_san = ["dns:SAN-Client.example"]

[[provider]]
id = "off"
active = false
[provider.auth]
method = "client-cert"
cert_sha256 = ["{}"]

[[provider]]
id = "robot"
[provider.auth]
method = "static-bearer"
token = "${{ROBOT_TOKEN}}"
"#,
        openssl_spelling(&pinned.sha256),
        retired.sha256
    );
    let config = format!("{}{providers}", STAGES.replace("@TLS@", &tls));
    let server = Server::start_with_env(&config, &[("ROBOT_TOKEN", ROBOT_TOKEN)]);
    let authority = server.base.split("://").last().unwrap_or(&server.base);
    let users = format!("https://{authority}/iga/scim/v2/Users");
    let ca = certs.ca.as_path();

    // Registered by fingerprint (written as openssl prints it): in, and
    // read-write.
    let alice = json!({"schemas": [USER], "userName": "alice"});
    let created = curl(&users, ca, Some(&pinned), &[], Some(&alice));
    assert_eq!(created.status, 201, "{} {}", created.body, created.stderr);
    let listed = curl(&users, ca, Some(&pinned), &[], None);
    assert_eq!(listed.status, 200, "{} {}", listed.body, listed.stderr);
    assert_eq!(listed.json()["totalResults"], 1, "{}", listed.body);

    // Registered by subjectAltName (the DNS name in another case): in.
    let by_name = curl(&users, ca, Some(&named), &[], None);
    assert_eq!(by_name.status, 200, "{} {}", by_name.body, by_name.stderr);
    assert_eq!(by_name.json()["Resources"][0]["userName"], "alice");

    // The CA vouches for it, but no provider registered it.
    let unknown = curl(&users, ca, Some(&stranger), &[], None);
    assert_eq!(unknown.status, 401, "{} {}", unknown.body, unknown.stderr);
    assert_eq!(unknown.detail(), "client certificate not registered");
    // Not even with a valid bearer token: the certificate was refused.
    let both = curl(
        &users,
        ca,
        Some(&stranger),
        &[&format!("authorization: Bearer {ROBOT_TOKEN}")],
        None,
    );
    assert_eq!(both.status, 401, "{}", both.body);

    // Another CA: no HTTP exchange at all.
    let refused = curl(&users, ca, Some(&forged), &[], None);
    assert_eq!(
        refused.status, 0,
        "another CA's certificate got an answer: {}",
        refused.body
    );
    assert_ne!(refused.exit, 0, "{}", refused.stderr);

    // Registered but deactivated: the policies refuse it.
    let off = curl(&users, ca, Some(&retired), &[], None);
    assert_eq!(off.status, 403, "{} {}", off.body, off.stderr);
    assert!(off.detail().contains("inactive"), "{}", off.body);

    // No client certificate: the bearer stage after it decides.
    let robot = curl(
        &users,
        ca,
        None,
        &[&format!("authorization: Bearer {ROBOT_TOKEN}")],
        None,
    );
    assert_eq!(robot.status, 200, "{} {}", robot.body, robot.stderr);
    assert_eq!(robot.json()["totalResults"], 1, "{}", robot.body);
    let nobody = curl(&users, ca, None, &[], None);
    assert_eq!(nobody.status, 401, "{}", nobody.body);

    // The audit trail names the provider and the certificate that matched.
    let logs = server.logs();
    for (provider, client_id) in [
        ("by-fingerprint", pinned.sha256.as_str()),
        ("by-san", "dns:san-client.example"),
        ("off", retired.sha256.as_str()),
    ] {
        assert!(
            logs.contains(&format!("provider={provider} client_id={client_id} ")),
            "no audit event for {provider} as {client_id}:\n{logs}"
        );
    }
    assert!(
        !logs.contains(ROBOT_TOKEN),
        "the token leaked into the logs"
    );
}

#[test]
fn client_cert_providers_are_checked_where_they_are_written() {
    let fingerprint = "3b5d2f0a9c1e4b7d8f6a0c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d";
    let valid = format!(
        r#"{}
[[provider]]
id = "by-fingerprint"
[provider.auth]
method = "client-cert"
cert_sha256 = "{fingerprint}"

[[provider]]
id = "by-san"
[provider.auth]
method = "client-cert"
cert_san = ["dns:iga.example.com", "uri:spiffe://example.org/iga"]

[[provider]]
id = "off"
[provider.auth]
method = "client-cert"
cert_san = "email:ops@example.com"

[[provider]]
id = "robot"
[provider.auth]
method = "static-bearer"
token = "${{ROBOT_TOKEN}}"
"#,
        STAGES.replace("@TLS@", "")
    );
    let dir = TempDir::new("client-cert-validate");
    let path = dir.path().join("scimgate.toml");
    let config = path.display().to_string();
    let env = [("ROBOT_TOKEN", ROBOT_TOKEN)];
    std::fs::write(&path, expand(&valid, dir.path())).unwrap();
    let (code, out, err) = run_cli(&["validate", "--config", &config], &env);
    assert_eq!(code, 0, "{out}{err}");

    let broken = format!(
        "{}\n[[provider]]\nid = \"twin\"\n[provider.auth]\nmethod = \"client-cert\"\ncert_sha256 = \"{}\"\n\n[[provider]]\nid = \"typo\"\n[provider.auth]\nmethod = \"client-cert\"\ncert_sans = \"dns:typo.example\"\n",
        valid
            // No certificate at all.
            .replace("cert_san = \"email:ops@example.com\"", "")
            // A fingerprint that is not one.
            .replace(
                "cert_san = [\"dns:iga.example.com\"",
                "cert_sha256 = \"AB:CD\"\ncert_san = [\"dns:iga.example.com\"",
            ),
        // Another provider's certificate, in another spelling.
        openssl_spelling(fingerprint)
    );
    std::fs::write(&path, expand(&broken, dir.path())).unwrap();
    let (code, _, err) = run_cli(&["validate", "--config", &config], &env);
    assert_eq!(code, 2, "{err}");
    let line_of = |needle: &str, nth: usize| {
        broken
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .nth(nth)
            .unwrap_or_else(|| panic!("`{needle}` not in the config"))
    };
    for (message, line) in [
        (
            "error: provider `off` (tls/client-cert): method client-cert needs `cert_sha256`".to_string(),
            line_of("[provider.auth]", 2),
        ),
        (
            "error: provider `by-san` (tls/client-cert): `cert_sha256`: `AB:CD` is not a SHA-256 fingerprint".to_string(),
            line_of("\"AB:CD\"", 0),
        ),
        (
            format!("provider `twin` registers the certificate fingerprint `{fingerprint}` that provider `by-fingerprint` registers already"),
            line_of("[stage.mtls]", 0),
        ),
        ("error: unknown key `cert_sans` in provider.auth".to_string(), line_of("cert_sans", 0)),
    ] {
        let at = err
            .find(&message)
            .unwrap_or_else(|| panic!("`{message}` missing:\n{err}"));
        let located = &err[at..];
        let next = located[1..].find("error:").map_or(located.len(), |i| i + 1);
        assert!(
            located[..next].contains(&format!("scimgate.toml:{line}:")),
            "`{message}` not located at line {line}:\n{err}"
        );
    }
    assert!(!err.contains(ROBOT_TOKEN), "a secret was echoed:\n{err}");
}
