//! The policy library end to end, on the reference scenario's two routes:
//! allowed IPs (with and without trusted proxies), validity windows,
//! allowed referrers, read-only access, scopes, rate limits, and the audit
//! trail every denial leaves.

use std::net::IpAddr;
use std::time::Duration;

use scimgate_e2e::*;

use crate::oauth2::{
    bearer, env, oim_provider, oim_token, token_request, ECHO_ROUTE, OIM_CLIENT_ID, SCIM_ROUTE,
    STAGES,
};

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

/// The reference scenario with the echo endpoint and one provider whose
/// `[provider.auth]` gets `auth_extra`.
fn echo_config(auth_extra: &str) -> String {
    format!("{STAGES}{ECHO_ROUTE}{}", oim_provider(true, auth_extra))
}

/// A token request from `local` (Basic), optionally with extra headers.
fn token_from(server: &Server, local: Option<IpAddr>, headers: &[(&str, &str)]) -> Reply {
    token_request(
        server,
        "/iso/oauth2/token",
        local,
        "grant_type=client_credentials",
        headers,
    )
}

/// `GET /iso/scim/v2/Users` from `local` with `token`.
fn users_from(
    server: &Server,
    local: Option<IpAddr>,
    token: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let auth = bearer(token);
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    send_from(local, "GET", &server.url("/iso/scim/v2/Users"), &all, None)
}

fn assert_token_refused(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    assert_eq!(reply.json()["error"], "invalid_client", "{what}");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic")),
        "{what}: Basic was used, so a Basic challenge: {:?}",
        reply.headers
    );
}

fn assert_scim_forbidden(reply: &Reply, needle: &str) {
    assert_eq!(reply.status, 403, "{}", reply.body);
    let body = reply.json();
    assert_eq!(
        body["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(body["status"], "403");
    assert!(
        body["detail"].as_str().is_some_and(|d| d.contains(needle)),
        "`{needle}` not in {}",
        reply.body
    );
}

#[test]
fn allowed_ips_refuse_other_addresses_on_both_routes() {
    let only_one = echo_config(r#"allowed_ips = ["127.0.0.1/32"]"#);
    let server = Server::start_with_env(&only_one, &env());
    let token = oim_token(&server);
    // 127.0.0.2 gets no token and cannot use one.
    assert_token_refused(&token_from(&server, ip("127.0.0.2"), &[]), "127.0.0.2");
    assert_scim_forbidden(
        &users_from(&server, ip("127.0.0.2"), &token, &[]),
        "127.0.0.2",
    );
    // A spoofed X-Forwarded-For changes nothing: there are no trusted proxies.
    let spoof = [("x-forwarded-for", "127.0.0.1")];
    assert_token_refused(&token_from(&server, ip("127.0.0.2"), &spoof), "spoofed");
    assert_scim_forbidden(
        &users_from(&server, ip("127.0.0.2"), &token, &spoof),
        "127.0.0.2",
    );
    let forwarded = [("forwarded", "for=127.0.0.1")];
    assert_token_refused(
        &token_from(&server, ip("127.0.0.2"), &forwarded),
        "Forwarded",
    );
    // 127.0.0.1 is fine.
    let ok = users_from(&server, ip("127.0.0.1"), &token, &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["client_ip"], "127.0.0.1");

    // Allow 127.0.0.2 too (a CIDR block): both routes accept it.
    server.reload_with(&echo_config(
        r#"allowed_ips = ["127.0.0.1/32", "127.0.0.2/31"]"#,
    ));
    let from_two = token_from(&server, ip("127.0.0.2"), &[]);
    assert_eq!(from_two.status, 200, "{}", from_two.body);
    let ok = users_from(&server, ip("127.0.0.2"), &token, &[]);
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["client_ip"], "127.0.0.2");
    // An empty list allows any address.
    server.reload_with(&echo_config("allowed_ips = []"));
    assert_eq!(token_from(&server, ip("127.0.0.5"), &[]).status, 200);
}

#[test]
fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let config = echo_config(r#"allowed_ips = ["127.0.0.1/32"]"#).replace(
        "data_dir = \"{data_dir}\"",
        "data_dir = \"{data_dir}\"\ntrusted_proxies = [\"127.0.0.3\"]",
    );
    let server = Server::start_with_env(&config, &env());
    let xff = [("x-forwarded-for", "127.0.0.1")];
    // From the proxy, on behalf of 127.0.0.1: allowed on both routes.
    let token = token_from(&server, ip("127.0.0.3"), &xff);
    assert_eq!(token.status, 200, "{}", token.body);
    let token = token.json()["access_token"].as_str().unwrap().to_string();
    let via_proxy = users_from(&server, ip("127.0.0.3"), &token, &xff);
    assert_eq!(via_proxy.status, 200, "{}", via_proxy.body);
    assert_eq!(via_proxy.json()["client_ip"], "127.0.0.1");
    // The proxy's own address is not allowed.
    assert_token_refused(&token_from(&server, ip("127.0.0.3"), &[]), "proxy itself");
    assert_scim_forbidden(
        &users_from(&server, ip("127.0.0.3"), &token, &[]),
        "127.0.0.3",
    );
    // The proxy forwarding for another client: that client is judged.
    let other = [("x-forwarded-for", "127.0.0.1, 127.0.0.9")];
    assert_scim_forbidden(
        &users_from(&server, ip("127.0.0.3"), &token, &other),
        "127.0.0.9",
    );
    // Not the proxy: the header is ignored.
    assert_token_refused(&token_from(&server, ip("127.0.0.2"), &xff), "not a proxy");
    assert_scim_forbidden(
        &users_from(&server, ip("127.0.0.2"), &token, &xff),
        "127.0.0.2",
    );
}

#[test]
fn an_expired_provider_gets_no_token_and_uses_none() {
    let server = Server::start_with_env(&echo_config("valid_until = 2099-12-31T23:59:59Z"), &env());
    let token = oim_token(&server);
    assert_eq!(users_from(&server, None, &token, &[]).status, 200);
    server.reload_with(&echo_config("valid_until = 2020-01-01T00:00:00Z"));
    assert_scim_forbidden(&users_from(&server, None, &token, &[]), "valid_until");
    assert_token_refused(&token_from(&server, None, &[]), "expired");
}

#[test]
fn a_not_yet_valid_provider_gets_no_token_and_uses_none() {
    let server = Server::start_with_env(&echo_config("valid_from = 2099-01-01T00:00:00Z"), &env());
    assert_token_refused(&token_from(&server, None, &[]), "not yet valid");
    // `scimgate token` checks no window: the policies on the route do.
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
    assert_scim_forbidden(&users_from(&server, None, out.trim(), &[]), "valid_from");
}

#[test]
fn the_validity_window_opens_and_closes_to_the_millisecond() {
    let window = |until: &str| {
        echo_config(&format!(
            "valid_from = 2030-01-01T00:00:00Z\nvalid_until = {until}"
        ))
    };
    let clock = TestClock::at_utc("2029-12-31T23:59:59.999Z");
    let server = clock.start_server(&window("2030-06-30T23:59:59Z"), &env());
    // A millisecond before valid_from: no token.
    assert_token_refused(&token_from(&server, None, &[]), "not yet valid");
    // From valid_from on: a token, and it works.
    clock.set_utc("2030-01-01T00:00:00.000Z");
    let early = oim_token(&server);
    assert_eq!(users_from(&server, None, &early, &[]).status, 200);
    // The whole second of valid_until counts, to its last millisecond.
    clock.set_utc("2030-06-30T23:59:59.000Z");
    let late = oim_token(&server);
    clock.set_utc("2030-06-30T23:59:59.999Z");
    assert_eq!(users_from(&server, None, &late, &[]).status, 200);
    assert_eq!(token_from(&server, None, &[]).status, 200);
    // A millisecond later no new token; and a token never outlives the
    // validity it was minted under: it expires with it.
    clock.set_utc("2030-07-01T00:00:00.000Z");
    assert_token_refused(&token_from(&server, None, &[]), "expired");
    let expired = users_from(&server, None, &late, &[]);
    assert_eq!(expired.status, 401, "{}", expired.body);

    // The policy's own bound, for a token minted under a longer window: a
    // reload shortens the window, and the still-unexpired token is refused
    // from the first millisecond after the new valid_until.
    server.reload_with(&window("2030-07-01T00:59:59Z"));
    clock.set_utc("2030-07-01T00:30:00.000Z");
    let fresh = oim_token(&server);
    server.reload_with(&window("2030-07-01T00:44:59Z"));
    clock.set_utc("2030-07-01T00:44:59.999Z");
    assert_eq!(users_from(&server, None, &fresh, &[]).status, 200);
    clock.set_utc("2030-07-01T00:45:00.000Z");
    assert_scim_forbidden(&users_from(&server, None, &fresh, &[]), "valid_until");
    // A reload that extends the window lets the same token back in.
    server.reload_with(&window("2031-01-01T00:00:00Z"));
    assert_eq!(users_from(&server, None, &fresh, &[]).status, 200);
}

#[test]
fn allowed_referrers_match_origin_and_referer() {
    let server = Server::start_with_env(
        &echo_config(r#"allowed_referrers = ["https://iam.example.com", "*.corp.example.com"]"#),
        &env(),
    );
    let good_origin = [("origin", "https://iam.example.com")];
    let good_referer = [("referer", "https://iam.example.com/ui/connectors?x=1")];
    let wildcard = [("origin", "http://a.b.corp.example.com")];
    let evil_origin = [("origin", "https://evil.example.com")];
    let evil_referer = [("referer", "https://iam.example.com.evil.example/")];
    let mixed = [
        ("origin", "https://iam.example.com"),
        ("referer", "https://evil.example.com/"),
    ];
    // Token route.
    assert_eq!(token_from(&server, None, &good_origin).status, 200);
    assert_eq!(token_from(&server, None, &good_referer).status, 200);
    assert_eq!(token_from(&server, None, &wildcard).status, 200);
    assert_eq!(token_from(&server, None, &[]).status, 200, "allow_missing");
    assert_token_refused(&token_from(&server, None, &evil_origin), "evil origin");
    assert_token_refused(&token_from(&server, None, &evil_referer), "evil referer");
    assert_token_refused(&token_from(&server, None, &mixed), "both must match");
    assert_token_refused(
        &token_from(&server, None, &[("origin", "null")]),
        "Origin: null",
    );
    // Protected route.
    let token = oim_token(&server);
    assert_eq!(users_from(&server, None, &token, &good_origin).status, 200);
    assert_eq!(users_from(&server, None, &token, &good_referer).status, 200);
    assert_eq!(users_from(&server, None, &token, &[]).status, 200);
    assert_scim_forbidden(
        &users_from(&server, None, &token, &evil_origin),
        "evil.example.com",
    );
    assert_scim_forbidden(
        &users_from(&server, None, &token, &mixed),
        "evil.example.com",
    );
}

#[test]
fn read_only_providers_may_read_and_search_but_not_write() {
    let server = Server::start_with_env(&echo_config(r#"access = "read-only""#), &env());
    let token = oim_token(&server);
    let auth = bearer(&token);
    let h = [("authorization", auth.as_str())];
    let url = |p: &str| server.url(&format!("/iso/scim/v2{p}"));
    assert_eq!(get(&url("/Users"), &h).status, 200);
    assert_eq!(send("HEAD", &url("/Users"), &h, None).status, 200);
    let search = send_json(
        "POST",
        &url("/Users/.search"),
        &h,
        &json!({"filter": "userName pr"}),
    );
    assert_eq!(search.status, 200, "{}", search.body);
    assert_eq!(
        send_json("POST", &url("/.search"), &h, &json!({})).status,
        200
    );
    for (method, path) in [
        ("POST", "/Users"),
        ("PUT", "/Users/1"),
        ("PATCH", "/Users/1"),
        ("DELETE", "/Users/1"),
        ("POST", "/Groups"),
        ("POST", "/Bulk"),
    ] {
        let reply = send_json(method, &url(path), &h, &json!({}));
        assert_scim_forbidden(&reply, "read-only");
        assert!(
            reply.json()["detail"]
                .as_str()
                .is_some_and(|d| d.contains(method)),
            "{}",
            reply.body
        );
    }
}

#[test]
fn a_token_narrowed_to_read_cannot_write() {
    let config = format!(
        "{}{}",
        echo_config(""),
        "\n[stage.scopes]\nuse = \"policies/scopes\"\nread = \"scim:read\"\nwrite = \"scim:write\"\n"
    )
    .replace(
        r#"pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scim"]"#,
        r#"pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scopes", "scim"]"#,
    );
    let server = Server::start_with_env(&config, &env());
    let narrowed = token_request(
        &server,
        "/iso/oauth2/token",
        None,
        "grant_type=client_credentials&scope=scim:read",
        &[],
    );
    assert_eq!(narrowed.status, 200, "{}", narrowed.body);
    let read_token = narrowed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let full_token = oim_token(&server);
    let users = server.url("/iso/scim/v2/Users");
    let read_auth = bearer(&read_token);
    let full_auth = bearer(&full_token);
    assert_eq!(get(&users, &[("authorization", &read_auth)]).status, 200);
    let write = send_json(
        "POST",
        &users,
        &[("authorization", &read_auth)],
        &json!({"userName": "x"}),
    );
    assert_eq!(write.status, 403, "{}", write.body);
    let challenge = write.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("insufficient_scope"),
        "{challenge}"
    );
    assert!(challenge.contains("scim:write"), "{challenge}");
    let ok = send_json(
        "POST",
        &users,
        &[("authorization", &full_auth)],
        &json!({"userName": "x"}),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn rate_limits_answer_429_with_retry_after_then_recover() {
    let config = format!(
        "{}{}",
        echo_config(""),
        r#"
[stage.limit-ip]
use = "policies/rate-limit"
per_ip = "1/s"
burst = 2
[stage.limit-provider]
use = "policies/rate-limit"
per_provider = "1/s"
burst = 3
"#
    )
    .replace(
        r#"pipeline = ["client-auth", "active", "validity", "ips", "referrers", "token"]"#,
        r#"pipeline = ["limit-ip", "client-auth", "active", "validity", "ips", "referrers", "token"]"#,
    )
    .replace(
        r#"pipeline = ["bearer", "active", "validity", "ips", "referrers", "access", "scim"]"#,
        r#"pipeline = ["bearer", "limit-provider", "active", "validity", "ips", "referrers", "access", "scim"]"#,
    );
    // The buckets refill on the test clock, stopped until the test moves it.
    let clock = TestClock::at_utc("2030-01-01T00:00:00Z");
    let server = clock.start_server(&config, &env());
    // Token route, per address, before authentication: 2 at once, then 429.
    let first = token_from(&server, ip("127.0.0.1"), &[]);
    assert_eq!(first.status, 200, "{}", first.body);
    let token = first.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(token_from(&server, ip("127.0.0.1"), &[]).status, 200);
    let limited = token_from(&server, ip("127.0.0.1"), &[]);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert_eq!(
        limited.json()["error"],
        "too_many_requests",
        "{}",
        limited.body
    );
    let retry: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert_eq!(retry, 1, "one token back after 1 s at 1/s");
    // Another address has its own budget.
    assert_eq!(token_from(&server, ip("127.0.0.4"), &[]).status, 200);

    // SCIM route, per provider: 3 at once, then 429 with a SCIM error.
    for _ in 0..3 {
        assert_eq!(users_from(&server, None, &token, &[]).status, 200);
    }
    let scim_limited = users_from(&server, None, &token, &[]);
    assert_eq!(scim_limited.status, 429, "{}", scim_limited.body);
    assert_eq!(scim_limited.json()["status"], "429");
    let scim_retry: u64 = scim_limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert_eq!(scim_retry, 1);
    // The same provider from another address shares the limit.
    assert_eq!(
        users_from(&server, ip("127.0.0.4"), &token, &[]).status,
        429
    );

    // A millisecond short of the wait they were told: still refused (and a
    // refusal charges nothing)...
    clock.advance(Duration::from_secs(retry) - Duration::from_millis(1));
    assert_eq!(token_from(&server, ip("127.0.0.1"), &[]).status, 429);
    assert_eq!(users_from(&server, None, &token, &[]).status, 429);
    // ...and once it is over, both recover.
    clock.advance(Duration::from_millis(1));
    assert_eq!(token_from(&server, ip("127.0.0.1"), &[]).status, 200);
    assert_eq!(users_from(&server, None, &token, &[]).status, 200);
}

/// The audit lines (target `scimgate::audit`) of a log.
fn audit_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter(|l| l.contains("scimgate::audit"))
        .collect()
}

fn is_deny(line: &str) -> bool {
    line.contains("decision=\"deny\"") || line.contains("decision=deny")
}

/// The one deny line for `path` from `client_ip` decided by `stage`.
fn find_denial<'a>(lines: &[&'a str], stage: &str, client_ip: &str, path: &str) -> &'a str {
    lines
        .iter()
        .copied()
        .find(|l| {
            is_deny(l)
                && (l.contains(&format!("stage={stage} "))
                    || l.contains(&format!("stage=\"{stage}\"")))
                && l.contains(&format!("client_ip={client_ip} "))
                && l.contains(&format!("path={path} "))
        })
        .unwrap_or_else(|| {
            panic!(
                "no deny line for stage {stage}, client {client_ip}, path {path} in:\n{}",
                lines.join("\n")
            )
        })
}

/// Denials on both routes, then the audit trail.
fn denials(server: &Server) -> Vec<(&'static str, &'static str, &'static str)> {
    let token = oim_token(server);
    token_from(server, ip("127.0.0.2"), &[]);
    users_from(server, ip("127.0.0.2"), &token, &[]);
    token_from(server, None, &[("origin", "https://evil.example.com")]);
    let auth = bearer(&token);
    send_json(
        "DELETE",
        &server.url("/iso/scim/v2/Users/42"),
        &[("authorization", auth.as_str())],
        &json!({}),
    );
    vec![
        // On the token route a disallowed address is refused by the client
        // authenticator before its secret is checked (see lockout.rs).
        ("client-auth", "127.0.0.2", "/iso/oauth2/token"),
        ("ips", "127.0.0.2", "/iso/scim/v2/Users"),
        ("referrers", "127.0.0.1", "/iso/oauth2/token"),
        ("access", "127.0.0.1", "/iso/scim/v2/Users/42"),
    ]
}

#[test]
fn every_denial_is_in_the_audit_log_with_stage_client_and_provider() {
    let server = Server::start_with_env(
        &echo_config(
            r#"allowed_ips = ["127.0.0.1/32"]
allowed_referrers = ["https://iam.example.com"]
access = "read-only""#,
        ),
        &env(),
    );
    let expected = denials(&server);
    // An unauthenticated request is denied by the authenticator stage.
    send_from(
        ip("127.0.0.6"),
        "GET",
        &server.url("/iso/scim/v2/Users"),
        &[],
        None,
    );
    let logs = server.logs();
    let lines = audit_lines(&logs);
    for (stage, client, path) in expected {
        let line = find_denial(&lines, stage, client, path);
        // The provider is named (in the reason at least).
        assert!(line.contains("oim-prod"), "{line}");
        assert!(line.contains("reason="), "{line}");
    }
    let unauthenticated = find_denial(&lines, "bearer", "127.0.0.6", "/iso/scim/v2/Users");
    assert!(unauthenticated.contains("status=401"), "{unauthenticated}");
    // Allowed requests are audited too.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("decision=\"allow\"") || l.contains("decision=allow")),
        "{logs}"
    );
}

#[test]
fn policy_denials_fill_the_audit_provider_field() {
    let server = Server::start_with_env(
        &echo_config(
            r#"allowed_ips = ["127.0.0.1/32"]
allowed_referrers = ["https://iam.example.com"]
access = "read-only""#,
        ),
        &env(),
    );
    let expected = denials(&server);
    let logs = server.logs();
    let lines = audit_lines(&logs);
    for (stage, client, path) in expected {
        if stage == "client-auth" {
            continue; // an authenticator's denial: no caller yet
        }
        let line = find_denial(&lines, stage, client, path);
        assert!(
            line.contains("provider=oim-prod") || line.contains("provider=\"oim-prod\""),
            "{line}"
        );
        assert!(
            line.contains(&format!("client_id={OIM_CLIENT_ID}")),
            "{line}"
        );
    }
}

// ---------------------------------------------------------------------------
// [SCIM] with the real SCIM endpoint and its SQLite store.

/// Two providers on the SCIM route: `oim-prod` (read-only) and `admin`
/// (read-write, Basic-free client secret `admin-secret`).
fn scim_config() -> String {
    format!(
        "{STAGES}{SCIM_ROUTE}{}{}",
        oim_provider(true, r#"access = "read-only""#),
        r#"
[[provider]]
id = "admin"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "admin"
client_secret = "admin-secret"
access = "read-write"
scopes = ["scim:read", "scim:write"]
"#
    )
}

fn admin_token(server: &Server) -> String {
    let reply = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[
            ("authorization", &client_basic("admin", "admin-secret")),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"].as_str().unwrap().to_string()
}

#[test]
fn read_only_writes_change_nothing_in_the_store() {
    let server = Server::start_with_env(&scim_config(), &env());
    let admin = bearer(&admin_token(&server));
    let admin_h = [("authorization", admin.as_str())];
    let url = |p: &str| server.url(&format!("/iso/scim/v2{p}"));
    let user = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "alice", "active": true});
    let created = send_json("POST", &url("/Users"), &admin_h, &user);
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let before = get(&url(&format!("/Users/{id}")), &admin_h).json();

    let ro = bearer(&oim_token(&server));
    let ro_h = [("authorization", ro.as_str())];
    let list = get(&url("/Users"), &ro_h);
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.json()["totalResults"], 1);
    let search = send_json(
        "POST",
        &url("/Users/.search"),
        &ro_h,
        &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName eq \"alice\""}),
    );
    assert_eq!(search.status, 200, "{}", search.body);
    assert_eq!(search.json()["totalResults"], 1);

    let bob = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob"});
    let replace =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "mallory"});
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": false}]});
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
        "Operations": [{"method": "POST", "path": "/Users", "bulkId": "b1", "data": bob}]});
    let group =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g"});
    let user_path = format!("/Users/{id}");
    for (method, path, body) in [
        ("POST", "/Users", &bob),
        ("PUT", user_path.as_str(), &replace),
        ("PATCH", user_path.as_str(), &patch),
        ("DELETE", user_path.as_str(), &json!({})),
        ("POST", "/Bulk", &bulk),
        ("POST", "/Groups", &group),
    ] {
        let reply = send_json(method, &url(path), &ro_h, body);
        assert_scim_forbidden(&reply, "read-only");
    }
    // Nothing changed.
    let after = get(&url(&format!("/Users/{id}")), &admin_h);
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.json(), before);
    let users = get(&url("/Users"), &admin_h).json();
    assert_eq!(users["totalResults"], 1, "{users}");
    let groups = get(&url("/Groups"), &admin_h).json();
    assert_eq!(groups["totalResults"], 0, "{groups}");
}
