//! Providers bound to routes, end to end: a route's `providers` list refuses
//! every other provider after authentication (403 on a SCIM route,
//! `invalid_client` on a token route), token audiences tie a token to the
//! SCIM route it was issued for, and `scimgate validate` warns about a route
//! that authenticates but names no providers.

use scimgate_e2e::*;

const OIM_ID: &str = "oim-client";
const OIM_SECRET: &str = "oim-secret-0123456789abcdef";
const OKTA_ID: &str = "okta-client";
const OKTA_SECRET: &str = "okta-secret-0123456789abcdef";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![("OIM_SECRET", OIM_SECRET), ("OKTA_SECRET", OKTA_SECRET)]
}

/// Two providers. `/oim/…` and `/okta/…` share one token stage and one
/// bearer stage (one audience) but are each bound to their provider;
/// `/a/…` and `/b/…` are bound to nobody but their tokens carry audiences of
/// their own.
const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.client-auth]
use = "oauth2/client-credentials"
[stage.token]
use = "oauth2/token"
[stage.bearer]
use = "oauth2/bearer"
[stage.token-a]
use = "oauth2/token"
audience = "scimgate:/a/scim/v2"
[stage.bearer-a]
use = "oauth2/bearer"
audience = "scimgate:/a/scim/v2"
[stage.bearer-b]
use = "oauth2/bearer"
audience = "scimgate:/b/scim/v2"
[stage.echo]
use = "demo/echo"

[[route]]
path = "/oim/oauth2/token"
pipeline = ["client-auth", "token"]
providers = ["oim"]

[[route]]
path = "/okta/oauth2/token"
pipeline = ["client-auth", "token"]
providers = ["okta"]

[[route]]
path = "/oim/scim/v2"
pipeline = ["bearer", "echo"]
providers = ["oim"]

[[route]]
path = "/okta/scim/v2"
pipeline = ["bearer", "echo"]
providers = ["okta"]

[[route]]
path = "/a/oauth2/token"
pipeline = ["client-auth", "token-a"]

[[route]]
path = "/a/scim/v2"
pipeline = ["bearer-a", "echo"]

[[route]]
path = "/b/scim/v2"
pipeline = ["bearer-b", "echo"]

[[provider]]
id = "oim"
name = "One Identity Manager"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim-client"
client_secret = "${OIM_SECRET}"
scopes = ["scim:read"]

[[provider]]
id = "okta"
name = "Okta-like"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "okta-client"
client_secret = "${OKTA_SECRET}"
scopes = ["scim:read"]
"#;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn token_reply(server: &Server, route: &str, id: &str, secret: &str) -> Reply {
    let auth = client_basic(id, secret);
    send(
        "POST",
        &server.url(route),
        &[("authorization", auth.as_str()), FORM],
        Some("grant_type=client_credentials"),
    )
}

fn token(server: &Server, route: &str, id: &str, secret: &str) -> String {
    let reply = token_reply(server, route, id, secret);
    assert_eq!(reply.status, 200, "{route}: {}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

fn users(server: &Server, mount: &str, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    get(
        &server.url(&format!("{mount}/Users")),
        &[("authorization", auth.as_str())],
    )
}

/// The audit line of the request that got `status` on `route`.
fn audit_line(logs: &str, route: &str, status: u16) -> String {
    logs.lines()
        .find(|l| {
            l.contains("scimgate::audit")
                && l.contains(&format!("route={route} "))
                && l.contains(&format!("status={status} "))
        })
        .unwrap_or_else(|| panic!("no audit line for {route} {status}:\n{logs}"))
        .to_string()
}

#[test]
fn a_providers_token_is_refused_on_a_route_bound_to_another_provider() {
    let server = Server::start_with_env(CONFIG, &env());
    let oim = token(&server, "/oim/oauth2/token", OIM_ID, OIM_SECRET);
    // Its own route serves it.
    let own = users(&server, "/oim/scim/v2", &oim);
    assert_eq!(own.status, 200, "{}", own.body);
    assert_eq!(own.json()["principal"]["provider_id"], "oim");
    // The Okta route verifies the same kind of token with the same stage,
    // and still refuses OIM: the route is Okta's.
    let foreign = users(&server, "/okta/scim/v2", &oim);
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let body = foreign.json();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], "403");
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("`oim`") && d.contains("/okta/scim/v2")),
        "{body}"
    );
    // Okta is served on its route.
    let okta = token(&server, "/okta/oauth2/token", OKTA_ID, OKTA_SECRET);
    assert_eq!(users(&server, "/okta/scim/v2", &okta).status, 200);
    // The audit trail names the provider and the route.
    let line = audit_line(&server.logs(), "/okta/scim/v2", 403);
    assert!(line.contains("provider=oim "), "{line}");
    assert!(
        line.contains("decision=\"deny\"") || line.contains("decision=deny"),
        "{line}"
    );
    assert!(
        line.contains("not allowed on route `/okta/scim/v2`"),
        "{line}"
    );
}

#[test]
fn a_providers_credentials_get_invalid_client_on_another_providers_token_route() {
    let server = Server::start_with_env(CONFIG, &env());
    let reply = token_reply(&server, "/okta/oauth2/token", OIM_ID, OIM_SECRET);
    assert_eq!(reply.status, 401, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(body.get("access_token").is_none(), "{body}");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic")),
        "{:?}",
        reply.headers
    );
    let line = audit_line(&server.logs(), "/okta/oauth2/token", 401);
    assert!(line.contains("provider=oim "), "{line}");
    assert!(
        line.contains("not allowed on route `/okta/oauth2/token`"),
        "{line}"
    );
    // The same credentials on OIM's own token route work.
    assert_eq!(
        token_reply(&server, "/oim/oauth2/token", OIM_ID, OIM_SECRET).status,
        200
    );
}

#[test]
fn a_token_for_one_routes_audience_is_refused_by_anothers_bearer() {
    let server = Server::start_with_env(CONFIG, &env());
    // Neither /a nor /b names providers: only the audience separates them.
    let for_a = token(&server, "/a/oauth2/token", OKTA_ID, OKTA_SECRET);
    let on_a = users(&server, "/a/scim/v2", &for_a);
    assert_eq!(on_a.status, 200, "{}", on_a.body);
    let on_b = users(&server, "/b/scim/v2", &for_a);
    assert_eq!(on_b.status, 401, "{}", on_b.body);
    assert!(on_b.body.contains("audience"), "{}", on_b.body);
    // A token of the shared audience is no good on /a either.
    let shared = token(&server, "/okta/oauth2/token", OKTA_ID, OKTA_SECRET);
    assert_eq!(users(&server, "/a/scim/v2", &shared).status, 401);
}

#[test]
fn validate_warns_about_a_route_serving_every_provider_and_rejects_unknown_ids() {
    let dir = TempDir::new("binding-validate");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(&path, expand(CONFIG, dir.path())).expect("write config");
    let config = path.display().to_string();
    let (code, out, err) = run_cli(&["validate", "--config", &config], &env());
    assert_eq!(code, 0, "a warning is no error:\n{out}{err}");
    assert!(out.contains("ok (") && out.contains("3 warnings"), "{out}");
    for route in ["/a/oauth2/token", "/a/scim/v2", "/b/scim/v2"] {
        assert!(
            err.contains(&format!(
                "warning: route `{route}` names no `providers`: any of the 2 registered providers (oim, okta) may use it"
            )),
            "{err}"
        );
    }
    assert!(
        err.contains("scimgate.toml:46:8"),
        "located at the path: {err}"
    );
    // Bound routes are not warned about.
    assert!(!err.contains("`/oim/scim/v2`"), "{err}");

    let unknown = CONFIG.replace("providers = [\"okta\"]", "providers = [\"otka-prod\"]");
    std::fs::write(&path, expand(&unknown, dir.path())).expect("write config");
    let (code, _, err) = run_cli(&["validate", "--config", &config], &env());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: unknown provider `otka-prod` in route `/okta/oauth2/token`"),
        "{err}"
    );
    assert!(err.contains("scimgate.toml:33:14"), "{err}");
}
