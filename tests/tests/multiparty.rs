//! Several IGA providers on the same routes at once, through the real
//! binary, the oauth2 and policies `.so`s and the demo echo endpoint: each
//! request is judged by the rules of its own provider (addresses, validity
//! windows, referrers, access mode, scopes), never by another's. Every
//! scenario is a matrix — each provider's credentials from each provider's
//! situation — so a host that attached the wrong provider's record (the
//! first, the last, the previous request's) gives a wrong answer somewhere.

use std::net::IpAddr;

use base64::Engine;
use scimgate_e2e::*;

/// The reference scenario's stages and token route (shared with the
/// oauth2 module), `policies/scopes`, and a protected route ending in the
/// demo echo endpoint; the providers follow.
const ROUTES: &str = r#"
[stage.scopes]
use = "policies/scopes"
read = "scim:read"
write = "scim:write"
[stage.echo]
use = "demo/echo"

[[route]]
path = "/iso/scim/v2"
pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scopes", "echo"]
"#;

const PROVIDERS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Each provider's secret, by environment variable (`SECRET_ALPHA`, …).
fn secret(id: &str) -> String {
    format!("{id}-secret-0c5e1f7a9b3d")
}

fn env() -> Vec<(String, String)> {
    PROVIDERS
        .iter()
        .map(|id| (format!("SECRET_{}", id.to_uppercase()), secret(id)))
        .collect()
}

fn start(rules: &[(&str, &str)]) -> Server {
    let mut config = format!("{}{ROUTES}", crate::oauth2::STAGES);
    for (id, auth) in rules {
        config.push_str(&format!(
            r#"
[[provider]]
id = "{id}"
name = "Provider {id}"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "{id}-client"
client_secret = "${{SECRET_{upper}}}"
{auth}
"#,
            upper = id.to_uppercase()
        ));
    }
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Server::start_with_env(&config, &env)
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// A client-credentials token request of provider `id` from `from`.
fn token_request(server: &Server, id: &str, from: IpAddr, headers: &[(&str, &str)]) -> Reply {
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}-client:{}", secret(id)))
    );
    let mut all = vec![
        ("authorization", basic.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    all.extend_from_slice(headers);
    send_from(
        Some(from),
        "POST",
        &server.url("/iso/oauth2/token"),
        &all,
        Some("grant_type=client_credentials"),
    )
}

/// A token of provider `id`, from the token route (`from`) or, for providers
/// the route refuses, minted by `scimgate token` (which checks no policy).
fn token_of(server: &Server, id: &str, from: Option<IpAddr>) -> String {
    match from {
        Some(from) => {
            let reply = token_request(server, id, from, &[]);
            assert_eq!(reply.status, 200, "{id} from {from}: {}", reply.body);
            reply.json()["access_token"]
                .as_str()
                .expect("access_token")
                .to_string()
        }
        None => {
            let env = env();
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let config = server.config_path.to_str().expect("path");
            let (code, out, err) = run_cli(&["token", "--config", config, "--provider", id], &env);
            assert_eq!(code, 0, "{err}");
            out.trim().to_string()
        }
    }
}

/// `method /iso/scim/v2/Users` with `token` from `from`.
fn scim(
    server: &Server,
    method: &str,
    token: &str,
    from: IpAddr,
    headers: &[(&str, &str)],
) -> Reply {
    let auth = format!("Bearer {token}");
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    let body = (method != "GET").then_some(r#"{"userName":"x"}"#);
    if body.is_some() {
        all.push(("content-type", "application/scim+json"));
    }
    send_from(
        Some(from),
        method,
        &server.url("/iso/scim/v2/Users"),
        &all,
        body,
    )
}

/// The echo endpoint answered, for provider `id`, from `from`.
fn assert_served(reply: &Reply, id: &str, from: IpAddr, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["provider"], id, "{what}: {body}");
    assert_eq!(body["principal"]["provider_id"], id, "{what}: {body}");
    assert_eq!(body["client_ip"], from.to_string(), "{what}: {body}");
}

/// A 403 SCIM error whose reason names provider `id` and contains `needle`.
fn assert_refused(reply: &Reply, id: &str, needle: &str, what: &str) {
    assert_eq!(reply.status, 403, "{what}: {}", reply.body);
    let body = reply.json();
    assert_eq!(
        body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{what}: {body}"
    );
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("provider `{id}`")) && detail.contains(needle),
        "{what}: expected provider `{id}` and `{needle}` in: {detail}"
    );
}

fn assert_no_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    assert_eq!(reply.json()["error"], "invalid_client", "{what}");
    assert!(reply.json().get("access_token").is_none(), "{what}");
}

#[test]
fn each_provider_is_held_to_its_own_addresses() {
    let homes = [
        ("alpha", "127.0.0.2"),
        ("beta", "127.0.0.3"),
        ("gamma", "127.0.0.4"),
    ];
    let rules: Vec<(&str, String)> = homes
        .iter()
        .map(|(id, addr)| {
            (
                *id,
                format!("allowed_ips = [\"{addr}/32\"]\nscopes = [\"scim:read\", \"scim:write\"]"),
            )
        })
        .collect();
    let rules: Vec<(&str, &str)> = rules.iter().map(|(id, r)| (*id, r.as_str())).collect();
    let server = start(&rules);
    let tokens: Vec<String> = homes
        .iter()
        .map(|(id, addr)| token_of(&server, id, Some(ip(addr))))
        .collect();
    // Every provider's credentials from every provider's address, the
    // providers interleaved request by request.
    for round in 0..2 {
        for (_, from) in homes {
            let from = ip(from);
            for ((id, home), token) in homes.iter().zip(&tokens) {
                let what = format!("round {round}: {id} from {from}");
                let read = scim(&server, "GET", token, from, &[]);
                let fresh = token_request(&server, id, from, &[]);
                if from == ip(home) {
                    assert_served(&read, id, from, &what);
                    assert_eq!(fresh.status, 200, "{what}: {}", fresh.body);
                } else {
                    assert_refused(&read, id, &format!("client address {from}"), &what);
                    assert_no_token(&fresh, &what);
                }
            }
        }
    }
    // The same at once, from three threads: no record leaks between
    // concurrent requests.
    let base = server.base.clone();
    let workers: Vec<_> = homes
        .iter()
        .zip(tokens.clone())
        .enumerate()
        .map(|(i, ((id, _), token))| {
            let base = base.clone();
            let id = id.to_string();
            std::thread::spawn(move || {
                let mut outcomes = Vec::new();
                for n in 0..30 {
                    let (_, from) = homes[(i + n) % 3];
                    let auth = format!("Bearer {token}");
                    let reply = send_from(
                        Some(ip(from)),
                        "GET",
                        &format!("{base}/iso/scim/v2/Users"),
                        &[("authorization", &auth)],
                        None,
                    );
                    outcomes.push((id.clone(), from, reply));
                }
                outcomes
            })
        })
        .collect();
    for worker in workers {
        for (id, from, reply) in worker.join().expect("worker") {
            let home = homes.iter().find(|(p, _)| *p == id).expect("home").1;
            let what = format!("concurrent: {id} from {from}");
            if from == home {
                assert_served(&reply, &id, ip(from), &what);
            } else {
                assert_refused(&reply, &id, &format!("client address {from}"), &what);
            }
        }
    }
}

#[test]
fn each_provider_is_held_to_its_own_validity_window() {
    let server = start(&[
        (
            "alpha",
            "valid_from = 2020-01-01T00:00:00Z\nvalid_until = 2099-12-31T23:59:59Z\nscopes = [\"scim:read\"]",
        ),
        (
            "beta",
            "valid_until = 2020-01-01T00:00:00Z\nscopes = [\"scim:read\"]",
        ),
        (
            "gamma",
            "valid_from = 2099-01-01T00:00:00Z\nscopes = [\"scim:read\"]",
        ),
    ]);
    let from = ip("127.0.0.1");
    let alpha = token_of(&server, "alpha", Some(from));
    // The token route: only alpha's window is open.
    for round in 0..2 {
        for id in PROVIDERS {
            let reply = token_request(&server, id, from, &[]);
            let what = format!("round {round}: token for {id}");
            if id == "alpha" {
                assert_eq!(reply.status, 200, "{what}: {}", reply.body);
            } else {
                assert_no_token(&reply, &what);
            }
        }
    }
    // `scimgate token` checks no policy, but a token never outlives its
    // provider: none at all for beta, whose validity is over.
    let env = env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = server.config_path.to_str().expect("path");
    let (code, _, err) = run_cli(&["token", "--config", config, "--provider", "beta"], &env);
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("no longer valid"), "{err}");
    // Gamma's is minted, and refused on use for gamma's own bound, while
    // alpha's is served.
    let gamma = token_of(&server, "gamma", None);
    for round in 0..2 {
        assert_served(
            &scim(&server, "GET", &alpha, from, &[]),
            "alpha",
            from,
            "alpha",
        );
        assert_refused(
            &scim(&server, "GET", &gamma, from, &[]),
            "gamma",
            "valid_from",
            &format!("round {round}: gamma"),
        );
    }
}

#[test]
fn referrers_access_modes_and_scopes_are_each_providers_own() {
    let server = start(&[
        (
            "alpha",
            "allowed_referrers = [\"https://alpha.example.com\"]\naccess = \"read-write\"\nscopes = [\"scim:read\", \"scim:write\"]",
        ),
        (
            "beta",
            "allowed_referrers = [\"https://beta.example.com\"]\naccess = \"read-only\"\nscopes = [\"scim:read\", \"scim:write\"]",
        ),
        (
            "gamma",
            "allowed_referrers = []\naccess = \"read-write\"\nscopes = [\"scim:read\"]",
        ),
    ]);
    let from = ip("127.0.0.1");
    // Scopes are granted from each provider's own record.
    let mut tokens = Vec::new();
    for (id, scope) in [
        ("alpha", "scim:read scim:write"),
        ("beta", "scim:read scim:write"),
        ("gamma", "scim:read"),
    ] {
        let reply = token_request(&server, id, from, &[]);
        assert_eq!(reply.status, 200, "{id}: {}", reply.body);
        assert_eq!(reply.json()["scope"], scope, "{id}: {}", reply.body);
        tokens.push(
            reply.json()["access_token"]
                .as_str()
                .expect("token")
                .to_string(),
        );
    }
    let token = |id: &str| tokens[PROVIDERS.iter().position(|p| *p == id).expect("id")].as_str();
    let alpha_page = [("origin", "https://alpha.example.com")];
    let beta_page = [("referer", "https://beta.example.com/connectors")];
    for round in 0..2 {
        let what = |id: &str, case: &str| format!("round {round}: {id} {case}");
        // Referrers: alpha's page is alpha's only; gamma allows any.
        assert_served(
            &scim(&server, "GET", token("alpha"), from, &alpha_page),
            "alpha",
            from,
            &what("alpha", "from alpha's page"),
        );
        assert_refused(
            &scim(&server, "GET", token("beta"), from, &alpha_page),
            "beta",
            "allowed_referrers",
            &what("beta", "from alpha's page"),
        );
        assert_served(
            &scim(&server, "GET", token("gamma"), from, &alpha_page),
            "gamma",
            from,
            &what("gamma", "from alpha's page"),
        );
        assert_refused(
            &scim(&server, "GET", token("alpha"), from, &beta_page),
            "alpha",
            "allowed_referrers",
            &what("alpha", "from beta's page"),
        );
        assert_served(
            &scim(&server, "GET", token("beta"), from, &beta_page),
            "beta",
            from,
            &what("beta", "from beta's page"),
        );
        assert_served(
            &scim(&server, "GET", token("gamma"), from, &beta_page),
            "gamma",
            from,
            &what("gamma", "from beta's page"),
        );
        // The token route applies the same referrer rules.
        assert_eq!(
            token_request(&server, "alpha", from, &alpha_page).status,
            200
        );
        assert_no_token(
            &token_request(&server, "beta", from, &alpha_page),
            &what("beta", "token from alpha's page"),
        );
        assert_no_token(
            &token_request(&server, "alpha", from, &beta_page),
            &what("alpha", "token from beta's page"),
        );
        assert_eq!(
            token_request(&server, "gamma", from, &beta_page).status,
            200
        );
        // Writes: alpha may; beta is read-only (access-mode); gamma's token
        // lacks scim:write (scopes).
        assert_served(
            &scim(&server, "POST", token("alpha"), from, &[]),
            "alpha",
            from,
            &what("alpha", "POST"),
        );
        assert_refused(
            &scim(&server, "POST", token("beta"), from, &[]),
            "beta",
            "read-only access",
            &what("beta", "POST"),
        );
        let gamma_write = scim(&server, "POST", token("gamma"), from, &[]);
        assert_refused(
            &gamma_write,
            "gamma",
            "lacks scope `scim:write`",
            &what("gamma", "POST"),
        );
        assert!(
            gamma_write
                .header("www-authenticate")
                .is_some_and(|c| c.contains("insufficient_scope")),
            "{:?}",
            gamma_write.headers
        );
        // Reads: everyone.
        for id in PROVIDERS {
            assert_served(
                &scim(&server, "GET", token(id), from, &[]),
                id,
                from,
                &what(id, "GET"),
            );
        }
    }
}
