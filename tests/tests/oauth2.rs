//! The OAuth2 token endpoint and authenticators end to end: the reference
//! scenario's token route and protected route, token shape and headers,
//! every way a token is refused, provider deactivation by reload, the other
//! authenticators (static-bearer, basic, jwks over a loopback JWKS server),
//! the `token` and `provider new` CLI, and secret hygiene in the logs.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use scimgate_e2e::*;

/// Client id and secret chosen to need RFC 6749 §2.3.1 form-encoding.
pub(crate) const OIM_CLIENT_ID: &str = "client:id";
pub(crate) const OIM_SECRET: &str = "s3cret:with spaces&symbols/+=%";
const ENTRA_TOKEN: &str = "entra-static-token-6f1c0d9e2b7a4c58";
const BASIC_USER: &str = "iga-sync";
pub(crate) const BASIC_PASSWORD: &str = "correct horse battery staple";

/// The environment the configs' `${…}` refer to: plaintext lives only here.
pub(crate) fn env() -> Vec<(&'static str, &'static str)> {
    vec![("OIM_SECRET", OIM_SECRET), ("ENTRA_TOKEN", ENTRA_TOKEN)]
}

/// The stages every config here shares: the reference scenario's token and
/// bearer stages and the five seed policies.
pub(crate) const STAGES: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
ttl = "1h"
[stage.bearer]
use = "oauth2/bearer"
leeway = "0s"
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

[[route]]
path = "/iso/oauth2/token"
pipeline = ["client-auth", "active", "validity", "ips", "referrers", "token"]
"#;

/// The protected route ending in the demo plugin's echo endpoint.
pub(crate) const ECHO_ROUTE: &str = r#"
[stage.scim]
use = "demo/echo"

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scim"]
"#;

/// The protected route ending in the real SCIM endpoint (SQLite store).
pub(crate) const SCIM_ROUTE: &str = r#"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scim"]
"#;

/// The One Identity Manager provider; `{active}` and `{extra}` are filled in.
pub(crate) fn oim_provider(active: bool, extra: &str) -> String {
    format!(
        r#"
[[provider]]
id = "oim-prod"
name = "One Identity Manager"
active = {active}
protocol = "scim2"
description = "Production OIM synchronization server"
tags = ["iga", "prod"]
[provider.auth]
method = "oauth2-client-credentials"
client_id = "{OIM_CLIENT_ID}"
client_secret = "${{OIM_SECRET}}"
scopes = ["scim:read", "scim:write"]
{extra}
"#
    )
}

/// Extra routes and stages for the tests of this file.
const EXTRA: &str = r#"
[stage.token-short]
use = "oauth2/token"
ttl = "1s"
[stage.token-other]
use = "oauth2/token"
issuer = "someone-else"
[stage.static]
use = "oauth2/static-bearer"
[stage.basic]
use = "oauth2/basic"

[[route]]
path = "/short/oauth2/token"
pipeline = ["client-auth", "active", "token-short"]

[[route]]
path = "/other/oauth2/token"
pipeline = ["client-auth", "active", "token-other"]

[[route]]
path = "/multi/scim/v2"
pipeline = ["static", "basic", "bearer", "active", "validity", "ips", "referrers", "access", "scim"]

[[provider]]
id = "entra"
name = "Microsoft Entra ID"
[provider.auth]
method = "static-bearer"
token = "${ENTRA_TOKEN}"
scopes = ["scim:read", "scim:write"]

[[provider]]
id = "iga-basic"
name = "An IGA with HTTP Basic"
[provider.auth]
method = "basic"
username = "iga-sync"
password_hash = "{password_hash}"
access = "read-only"
scopes = ["scim:read"]
"#;

fn full_config(active: bool) -> String {
    format!(
        "{STAGES}{ECHO_ROUTE}{}{}",
        oim_provider(active, "allowed_ips = [\"127.0.0.1/32\"]"),
        EXTRA.replace("{password_hash}", password_hash())
    )
}

/// `scimgate secret hash --argon2id` of [`BASIC_PASSWORD`], computed once.
pub(crate) fn password_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        let (code, out, err) = cli_with_stdin(
            &["secret", "hash", "--argon2id"],
            &format!("{BASIC_PASSWORD}\n"),
        );
        assert_eq!(code, 0, "{err}");
        let hash = out.trim().to_string();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains(BASIC_PASSWORD));
        hash
    })
}

/// `scimgate ARGS…` with `input` on standard input (run_cli gives none).
fn cli_with_stdin(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = Command::new(scimgate_bin())
        .args(args)
        .env_remove("SCIMGATE_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scimgate");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait scimgate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

/// A client-credentials token request with Basic authentication.
pub(crate) fn token_request(
    server: &Server,
    path: &str,
    local: Option<std::net::IpAddr>,
    body: &str,
    extra_headers: &[(&str, &str)],
) -> Reply {
    let auth = client_basic(OIM_CLIENT_ID, OIM_SECRET);
    let mut headers = vec![("authorization", auth.as_str()), FORM];
    headers.extend_from_slice(extra_headers);
    send_from(local, "POST", &server.url(path), &headers, Some(body))
}

/// A fresh access token for `oim-prod` from the reference token route.
pub(crate) fn oim_token(server: &Server) -> String {
    let reply = token_request(
        server,
        "/iso/oauth2/token",
        None,
        "grant_type=client_credentials",
        &[],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn b64url_json(part: &str) -> Value {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap_or_else(|e| panic!("not base64url ({e}): {part}"));
    serde_json::from_slice(&bytes).expect("JSON")
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// (header, claims) of a compact JWT, unverified.
fn decode_jwt(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    (b64url_json(parts[0]), b64url_json(parts[1]))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

fn assert_token_response(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "scim:read scim:write");
    let token = body["access_token"].as_str().expect("access_token");
    let (header, claims) = decode_jwt(token);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].as_str().is_some_and(|k| k.len() == 16));
    assert_eq!(claims["iss"], "scimgate");
    assert_eq!(claims["aud"], "scimgate");
    assert_eq!(claims["sub"], OIM_CLIENT_ID);
    assert_eq!(claims["client_id"], OIM_CLIENT_ID);
    assert_eq!(claims["scope"], "scim:read scim:write");
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!((iat - now_secs()).abs() < 60, "iat {iat}");
    assert_eq!(exp - iat, 3600);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    token.to_string()
}

#[test]
fn token_via_basic_form_and_json_then_the_protected_route() {
    let server = Server::start_with_env(&full_config(true), &env());
    // client_secret_basic, id and secret form-encoded (client%3Aid).
    let auth = client_basic(OIM_CLIENT_ID, OIM_SECRET);
    assert!(base64::engine::general_purpose::STANDARD
        .decode(auth.trim_start_matches("Basic "))
        .is_ok_and(|raw| raw.starts_with(b"client%3Aid:")));
    let basic = token_request(
        &server,
        "/iso/oauth2/token",
        None,
        "grant_type=client_credentials",
        &[],
    );
    let t1 = assert_token_response(&basic);
    // client_secret_post.
    let post = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[FORM],
        Some(&format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(OIM_CLIENT_ID),
            form_encode(OIM_SECRET)
        )),
    );
    let t2 = assert_token_response(&post);
    // A JSON body is tolerated.
    let json_body = json!({"grant_type": "client_credentials", "client_id": OIM_CLIENT_ID, "client_secret": OIM_SECRET});
    let json_reply = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[("content-type", "application/json")],
        Some(&json_body.to_string()),
    );
    let t3 = assert_token_response(&json_reply);
    assert!(t1 != t2 && t2 != t3, "each token has its own jti");

    // The token opens the protected route; the endpoint sees the principal.
    let call = get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(&t1))],
    );
    assert_eq!(call.status, 200, "{}", call.body);
    let echo = call.json();
    assert_eq!(echo["principal"]["provider_id"], "oim-prod");
    assert_eq!(echo["principal"]["client_id"], OIM_CLIENT_ID);
    assert_eq!(echo["principal"]["auth_method"], "bearer");
    assert_eq!(echo["path"], "/Users");

    // Without a token: 401 with a Bearer challenge.
    let none = get(&server.url("/iso/scim/v2/Users"), &[]);
    assert_eq!(none.status, 401, "{}", none.body);
    assert!(
        none.header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer")),
        "{:?}",
        none.headers
    );
    assert_eq!(
        none.json()["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
}

#[test]
fn token_endpoint_errors_follow_rfc_6749() {
    let server = Server::start_with_env(&full_config(true), &env());
    let url = server.url("/iso/oauth2/token");
    // Wrong secret with Basic: 401 invalid_client and a Basic challenge.
    let wrong = send(
        "POST",
        &url,
        &[
            ("authorization", &client_basic(OIM_CLIENT_ID, "nope")),
            FORM,
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(wrong.json()["error"], "invalid_client");
    assert!(
        wrong
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic")),
        "{:?}",
        wrong.headers
    );
    assert_eq!(wrong.header("cache-control"), Some("no-store"));
    // Wrong secret in the body: 401 invalid_client, no Basic challenge required.
    let wrong_post = send(
        "POST",
        &url,
        &[FORM],
        Some(&format!(
            "grant_type=client_credentials&client_id={}&client_secret=nope",
            form_encode(OIM_CLIENT_ID)
        )),
    );
    assert_eq!(wrong_post.status, 401, "{}", wrong_post.body);
    assert_eq!(wrong_post.json()["error"], "invalid_client");
    // Unknown client.
    let unknown = send(
        "POST",
        &url,
        &[("authorization", &client_basic("who", OIM_SECRET)), FORM],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["error"], "invalid_client");
    // Another grant type.
    let grant = token_request(
        &server,
        "/iso/oauth2/token",
        None,
        "grant_type=password",
        &[],
    );
    assert_eq!(grant.status, 400, "{}", grant.body);
    assert_eq!(grant.json()["error"], "unsupported_grant_type");
    // A scope the provider does not have.
    let scope = token_request(
        &server,
        "/iso/oauth2/token",
        None,
        "grant_type=client_credentials&scope=scim:admin",
        &[],
    );
    assert_eq!(scope.status, 400, "{}", scope.body);
    assert_eq!(scope.json()["error"], "invalid_scope");
    // A narrowed scope.
    let narrowed = token_request(
        &server,
        "/iso/oauth2/token",
        None,
        "grant_type=client_credentials&scope=scim:read",
        &[],
    );
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    assert_eq!(narrowed.json()["scope"], "scim:read");
    // GET is not a token request.
    let get_reply = send(
        "GET",
        &url,
        &[("authorization", &client_basic(OIM_CLIENT_ID, OIM_SECRET))],
        None,
    );
    assert_eq!(get_reply.status, 405, "{}", get_reply.body);
    // No client authentication at all: 401 with an OAuth error body.
    let anonymous = send("POST", &url, &[FORM], Some("grant_type=client_credentials"));
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert_eq!(anonymous.json()["error"], "invalid_client");
}

#[test]
fn forged_expired_and_foreign_tokens_are_refused() {
    // Time is the test clock's: the server reads "now" from it.
    let clock = TestClock::at(now_ms());
    let server = clock.start_server(&full_config(true), &env());
    let good = oim_token(&server);
    let scim = server.url("/iso/scim/v2/Users");
    let call = |token: &str| get(&scim, &[("authorization", &bearer(token))]);
    assert_eq!(call(&good).status, 200);

    let refused = |token: &str, what: &str| {
        let reply = call(token);
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        let challenge = reply.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
            "{what}: {challenge}"
        );
        reply
    };

    // Tampered signature (a character in the middle flipped).
    let parts: Vec<&str> = good.split('.').collect();
    let mut sig: Vec<char> = parts[2].chars().collect();
    sig[20] = if sig[20] == 'A' { 'B' } else { 'A' };
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        sig.into_iter().collect::<String>()
    );
    refused(&tampered, "tampered signature");

    // Tampered claims, original signature.
    let (_, mut claims) = decode_jwt(&good);
    claims["scope"] = "scim:read scim:write scim:admin".into();
    let forged_claims = format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims.to_string().as_bytes()),
        parts[2]
    );
    refused(&forged_claims, "tampered claims");

    // alg: none, no signature.
    let (mut header, _) = decode_jwt(&good);
    header["alg"] = "none".into();
    let none = format!("{}.{}.", b64url(header.to_string().as_bytes()), parts[1]);
    refused(&none, "alg none");

    // Another issuer, same key.
    let other = token_request(
        &server,
        "/other/oauth2/token",
        None,
        "grant_type=client_credentials",
        &[],
    );
    assert_eq!(other.status, 200, "{}", other.body);
    let other = other.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(decode_jwt(&other).1["iss"], "someone-else");
    assert_eq!(decode_jwt(&other).0["kid"], decode_jwt(&good).0["kid"]);
    refused(&other, "foreign issuer");

    // Expired: a 1 s token, bearer leeway 0 s.
    let short = token_request(
        &server,
        "/short/oauth2/token",
        None,
        "grant_type=client_credentials",
        &[],
    );
    assert_eq!(short.status, 200, "{}", short.body);
    assert_eq!(short.json()["expires_in"], 1);
    let short = short.json()["access_token"].as_str().unwrap().to_string();
    let exp = decode_jwt(&short).1["exp"].as_i64().unwrap();
    assert_eq!(
        exp * 1000,
        clock.now_ms() / 1000 * 1000 + 1000,
        "minted on the test clock"
    );
    // The last millisecond before `exp`: still good; at `exp`: expired.
    clock.set(exp * 1000 - 1);
    assert_eq!(call(&short).status, 200, "valid until exp");
    clock.set(exp * 1000);
    let expired = refused(&short, "expired");
    assert!(expired.body.contains("expired"), "{}", expired.body);

    // Not a JWT at all.
    refused("not-a-jwt", "garbage");
    // The good token still works after all that.
    assert_eq!(call(&good).status, 200);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[test]
fn deactivating_the_provider_stops_its_tokens_at_once() {
    let server = Server::start_with_env(&full_config(true), &env());
    let token = oim_token(&server);
    let scim = server.url("/iso/scim/v2/Users");
    assert_eq!(
        get(&scim, &[("authorization", &bearer(&token))]).status,
        200
    );
    server.reload_with(&full_config(false));
    let refused = get(&scim, &[("authorization", &bearer(&token))]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("inactive")),
        "{}",
        refused.body
    );
    let no_token = token_request(
        &server,
        "/iso/oauth2/token",
        None,
        "grant_type=client_credentials",
        &[],
    );
    assert_eq!(no_token.status, 401, "{}", no_token.body);
    assert_eq!(no_token.json()["error"], "invalid_client");
    // Reactivated: the very same token works again (policies read the record, not the token).
    server.reload_with(&full_config(true));
    assert_eq!(
        get(&scim, &[("authorization", &bearer(&token))]).status,
        200
    );
}

#[test]
fn static_bearer_and_basic_share_a_route_with_bearer() {
    let server = Server::start_with_env(&full_config(true), &env());
    let multi = server.url("/multi/scim/v2/Users");
    // Entra-style static token.
    let entra = get(&multi, &[("authorization", &bearer(ENTRA_TOKEN))]);
    assert_eq!(entra.status, 200, "{}", entra.body);
    assert_eq!(entra.json()["principal"]["provider_id"], "entra");
    assert_eq!(entra.json()["principal"]["auth_method"], "static-bearer");
    // An unknown static token falls through to `bearer`, which refuses it.
    let unknown = get(
        &multi,
        &[("authorization", &bearer("entra-static-token-nope"))],
    );
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    // HTTP Basic with an argon2id hash from `scimgate secret hash --argon2id`.
    let basic = get(
        &multi,
        &[("authorization", &basic_auth(BASIC_USER, BASIC_PASSWORD))],
    );
    assert_eq!(basic.status, 200, "{}", basic.body);
    assert_eq!(basic.json()["principal"]["provider_id"], "iga-basic");
    assert_eq!(basic.json()["principal"]["auth_method"], "basic");
    // That provider is read-only.
    let write = send(
        "POST",
        &multi,
        &[("authorization", &basic_auth(BASIC_USER, BASIC_PASSWORD))],
        Some("{}"),
    );
    assert_eq!(write.status, 403, "{}", write.body);
    let wrong = get(
        &multi,
        &[("authorization", &basic_auth(BASIC_USER, "wrong password"))],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    // Our own JWTs work there too.
    let token = oim_token(&server);
    let ours = get(&multi, &[("authorization", &bearer(&token))]);
    assert_eq!(ours.status, 200, "{}", ours.body);
    assert_eq!(ours.json()["principal"]["auth_method"], "bearer");
    // A static token is not a bearer token of the reference route.
    let elsewhere = get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(ENTRA_TOKEN))],
    );
    assert_eq!(elsewhere.status, 401);
}

/// Serves `body` as JSON to every request on a loopback port, in a thread.
fn serve_jwks(body: String) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    format!("http://{addr}/keys")
}

fn sign_ed25519(key: &ed25519_dalek::SigningKey, kid: &str, claims: &Value) -> String {
    use ed25519_dalek::Signer;
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", b64url(&sig.to_bytes()))
}

#[test]
fn jwks_tokens_from_an_external_issuer_over_loopback_http() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[42u8; 32]);
    let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "ext-1", "alg": "EdDSA",
        "x": b64url(key.verifying_key().as_bytes())}]});
    let url = serve_jwks(jwks.to_string());
    let config = format!(
        r#"{STAGES}
[stage.external]
use = "oauth2/jwks"
[stage.scim]
use = "demo/echo"

[[route]]
path = "/ext/scim/v2"
pipeline = ["external", "bearer", "active", "validity", "ips", "referrers", "access", "scim"]

[[provider]]
id = "okta"
name = "Okta"
[provider.auth]
method = "jwks"
issuer = "https://issuer.example.com"
audience = "api://scimgate"
jwks = "{url}"
subject_claim = "sub"
subject = "svc-okta"
scopes = ["scim:read"]
"#
    );
    let server = Server::start(&config);
    let claims = json!({"iss": "https://issuer.example.com", "aud": "api://scimgate",
        "sub": "svc-okta", "exp": now_secs() + 300, "iat": now_secs()});
    let token = sign_ed25519(&key, "ext-1", &claims);
    let ok = get(
        &server.url("/ext/scim/v2/Users"),
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["principal"]["provider_id"], "okta");
    assert_eq!(ok.json()["principal"]["auth_method"], "jwks");
    // Signed by another key: refused.
    let other = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let forged = sign_ed25519(&other, "ext-1", &claims);
    let bad = get(
        &server.url("/ext/scim/v2/Users"),
        &[("authorization", &bearer(&forged))],
    );
    assert_eq!(bad.status, 401, "{}", bad.body);
    assert!(bad.body.contains("signature"), "{}", bad.body);
    // Expired.
    let mut old = claims.clone();
    old["exp"] = (now_secs() - 3600).into();
    let expired = get(
        &server.url("/ext/scim/v2/Users"),
        &[("authorization", &bearer(&sign_ed25519(&key, "ext-1", &old)))],
    );
    assert_eq!(expired.status, 401, "{}", expired.body);
    // Another subject than the provider's.
    let mut who = claims.clone();
    who["sub"] = "svc-other".into();
    let wrong_sub = get(
        &server.url("/ext/scim/v2/Users"),
        &[("authorization", &bearer(&sign_ed25519(&key, "ext-1", &who)))],
    );
    assert_eq!(wrong_sub.status, 401, "{}", wrong_sub.body);
}

#[test]
fn jwks_over_plain_http_to_another_host_is_a_config_error() {
    let dir = TempDir::new("jwks-http");
    let path = dir.path().join("c.toml");
    let config = format!(
        r#"{STAGES}
[stage.external]
use = "oauth2/jwks"
[stage.scim]
use = "demo/echo"
[[route]]
path = "/ext"
pipeline = ["external", "scim"]
[[provider]]
id = "okta"
[provider.auth]
method = "jwks"
issuer = "https://issuer.example.com"
audience = "api://scimgate"
jwks = "http://keys.example.com/keys"
"#
    );
    std::fs::write(&path, expand(&config, dir.path())).unwrap();
    // `validate` reports it...
    let (code, _, err) = run_cli(&["validate", "--config", path.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("loopback"), "{err}");
    // ...and `serve` refuses to start.
    let log = dir.path().join("err.log");
    let mut child = Command::new(scimgate_bin())
        .args(["serve", "--config", path.to_str().unwrap()])
        .env_remove("SCIMGATE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
        .spawn()
        .expect("spawn scimgate");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve must refuse to start: {err}"
    );
    assert!(err.contains("loopback"), "{err}");
}

#[test]
fn the_token_cli_mints_tokens_the_server_accepts() {
    let server = Server::start_with_env(&full_config(true), &env());
    let (code, out, err) = run_cli(
        &[
            "token",
            "--config",
            server.config_path.to_str().unwrap(),
            "--provider",
            "oim-prod",
        ],
        &env(),
    );
    assert_eq!(code, 0, "{err}");
    let token = out.trim();
    let (_, claims) = decode_jwt(token);
    assert_eq!(claims["sub"], OIM_CLIENT_ID);
    let reply = get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(token))],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    // The same signing key as the server's own tokens.
    assert_eq!(
        decode_jwt(token).0["kid"],
        decode_jwt(&oim_token(&server)).0["kid"]
    );
    // An unknown provider is a clear error.
    let (code, _, err) = run_cli(
        &[
            "token",
            "--config",
            server.config_path.to_str().unwrap(),
            "--provider",
            "nobody",
        ],
        &env(),
    );
    assert_ne!(code, 0);
    assert!(err.contains("nobody"), "{err}");
}

#[test]
fn provider_new_prints_a_secret_and_a_block_that_gets_a_token() {
    let (code, out, err) = run_cli(
        &[
            "provider",
            "new",
            "--name",
            "One Identity Manager",
            "--allowed-ip",
            "127.0.0.1/32",
            "--valid-until",
            "2030-01-01T00:00:00Z",
            "--access",
            "read-only",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let field = |label: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no `{label}` in:\n{out}"))
    };
    let client_id = field("Client ID:");
    let secret = field("Client secret:");
    assert_eq!(client_id, "one-identity-manager");
    assert_eq!(secret.len(), 43);
    let block = &out[out.find("[[provider]]").expect("a provider block")..];
    assert!(!block.contains(&secret), "the block holds only the hash");
    assert!(block.contains("client_secret_hash = \"sha256:"));

    let config = format!("{STAGES}{ECHO_ROUTE}\n{block}");
    let server = Server::start(&config);
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs_f64()
    };
    let before = unix_now();
    let reply = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[("authorization", &client_basic(&client_id, &secret)), FORM],
        Some("grant_type=client_credentials"),
    );
    let after = unix_now();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["expires_in"], 3600, "{}", reply.body);
    let token = reply.json()["access_token"].as_str().unwrap().to_string();
    let (_, claims) = decode_jwt(&token);
    // iat is the time of this request (whole seconds), exp one ttl later
    // (the stage's ttl = "1h"; valid_until 2030-01-01 is further away).
    let iat = claims["iat"].as_i64().expect("iat");
    let exp = claims["exp"].as_i64().expect("exp");
    assert!(
        before.floor() as i64 <= iat && iat <= after.ceil() as i64,
        "iat {iat} outside the request's [{before}, {after}]"
    );
    assert!((exp - (iat + 3600)).abs() <= 1, "exp {exp}, iat {iat}");
    // exp never passes valid_until.
    assert!(exp <= 1_893_456_000);
    let read = get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(read.status, 200, "{}", read.body);
    let write = send(
        "DELETE",
        &server.url("/iso/scim/v2/Users/1"),
        &[("authorization", &bearer(&token))],
        None,
    );
    assert_eq!(write.status, 403, "read-only: {}", write.body);
    // Another address than the allowed one gets no token.
    let elsewhere = send_from(
        Some("127.0.0.2".parse().unwrap()),
        "POST",
        &server.url("/iso/oauth2/token"),
        &[("authorization", &client_basic(&client_id, &secret)), FORM],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.body);
}

#[test]
fn secrets_tokens_and_authorization_headers_never_reach_the_log() {
    let server = Server::start_with_env(&full_config(true), &env());
    let mut tokens = Vec::new();
    // Tokens issued every way, and used.
    tokens.push(oim_token(&server));
    let post = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[FORM],
        Some(&format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            form_encode(OIM_CLIENT_ID),
            form_encode(OIM_SECRET)
        )),
    );
    tokens.push(post.json()["access_token"].as_str().unwrap().to_string());
    let short = token_request(
        &server,
        "/short/oauth2/token",
        None,
        "grant_type=client_credentials",
        &[],
    );
    tokens.push(short.json()["access_token"].as_str().unwrap().to_string());
    for token in &tokens {
        get(
            &server.url("/iso/scim/v2/Users"),
            &[("authorization", &bearer(token))],
        );
    }
    get(
        &server.url("/multi/scim/v2/Users"),
        &[("authorization", &bearer(ENTRA_TOKEN))],
    );
    get(
        &server.url("/multi/scim/v2/Users"),
        &[("authorization", &basic_auth(BASIC_USER, BASIC_PASSWORD))],
    );
    // Failures: wrong secrets, a tampered token, a refused address.
    let wrong_secret = format!("{OIM_SECRET}-wrong");
    let wrong_password = format!("{BASIC_PASSWORD}-wrong");
    send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[
            ("authorization", &client_basic(OIM_CLIENT_ID, &wrong_secret)),
            FORM,
        ],
        Some("grant_type=client_credentials"),
    );
    get(
        &server.url("/multi/scim/v2/Users"),
        &[("authorization", &basic_auth(BASIC_USER, &wrong_password))],
    );
    let tampered = format!("{}x", tokens[0]);
    get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(&tampered))],
    );
    token_request(
        &server,
        "/iso/oauth2/token",
        Some("127.0.0.2".parse().unwrap()),
        "grant_type=client_credentials",
        &[],
    );
    // `scimgate token` too.
    let (_, cli_token, _) = run_cli(
        &[
            "token",
            "--config",
            server.config_path.to_str().unwrap(),
            "--provider",
            "oim-prod",
        ],
        &env(),
    );
    tokens.push(cli_token.trim().to_string());
    get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(cli_token.trim()))],
    );

    let logs = server.logs();
    assert!(
        logs.contains("DEBUG"),
        "the server ran with debug logging:\n{logs}"
    );
    assert!(logs.contains("scimgate::audit"), "{logs}");
    let secrets = [
        ("client secret", OIM_SECRET.to_string()),
        ("client secret, form-encoded", form_encode(OIM_SECRET)),
        ("wrong client secret", wrong_secret.clone()),
        ("static token", ENTRA_TOKEN.to_string()),
        ("password", BASIC_PASSWORD.to_string()),
        ("wrong password", wrong_password.clone()),
        ("Basic credentials", client_basic(OIM_CLIENT_ID, OIM_SECRET)),
        (
            "Basic credentials (base64 only)",
            client_basic(OIM_CLIENT_ID, OIM_SECRET)[6..].to_string(),
        ),
        (
            "Basic password credentials",
            basic_auth(BASIC_USER, BASIC_PASSWORD)[6..].to_string(),
        ),
        ("tampered token", tampered.clone()),
    ];
    for (what, secret) in &secrets {
        assert!(!logs.contains(secret.as_str()), "the {what} is in the log");
    }
    for token in &tokens {
        assert!(!token.is_empty());
        assert!(
            !logs.contains(token.as_str()),
            "an access token is in the log"
        );
        // Nor its signature alone.
        let sig = token.rsplit('.').next().unwrap();
        assert!(!logs.contains(sig), "a token signature is in the log");
    }
    let lower = logs.to_ascii_lowercase();
    assert!(
        !lower.contains("authorization: ") && !lower.contains("\"authorization\""),
        "an Authorization header is in the log"
    );
    assert!(!lower.contains("bearer ey"), "a bearer token is in the log");
}

// ---------------------------------------------------------------------------
// [SCIM] with the real SCIM endpoint.

#[test]
fn the_token_opens_the_scim_endpoint() {
    let config = format!(
        "{STAGES}{SCIM_ROUTE}{}",
        oim_provider(true, "allowed_ips = [\"127.0.0.1/32\"]")
    );
    let server = Server::start_with_env(&config, &env());
    let token = oim_token(&server);
    let list = get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer(&token))],
    );
    assert_eq!(list.status, 200, "{}", list.body);
    let body = list.json();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
    assert!(body["totalResults"].is_u64(), "{body}");
    // The OIM "Test connection" reads.
    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"] {
        let reply = get(
            &server.url(&format!("/iso/scim/v2{path}")),
            &[("authorization", &bearer(&token))],
        );
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let anonymous = get(&server.url("/iso/scim/v2/Users"), &[]);
    assert_eq!(anonymous.status, 401);
    assert!(anonymous
        .header("www-authenticate")
        .is_some_and(|c| c.starts_with("Bearer")));
}
