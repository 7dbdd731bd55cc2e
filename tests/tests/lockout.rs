//! Failure lockout on the token route cannot be turned against a provider:
//! wrong secrets from an address the provider does not allow are refused
//! unchecked and uncounted; an allowed attacker locks only its own (client,
//! address) pair; the client-wide ceiling still locks after enough distinct
//! addresses. Real binary, real plugins, real HTTP from chosen loopback
//! addresses (and through a trusted proxy with `X-Forwarded-For`).

use std::net::IpAddr;

use scimgate_e2e::*;

use crate::oauth2::{env, oim_provider, token_request, OIM_CLIENT_ID, STAGES};

const ROUTE: &str = "/iso/oauth2/token";
const GRANT: &str = "grant_type=client_credentials";

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().expect("ip"))
}

/// The reference token route with `max_failures` on the client stage,
/// 127.0.0.3 as a trusted proxy, and the provider's `allowed_ips`.
fn config(max_failures: u32, allowed_ips: &str) -> String {
    let stages = STAGES
        .replace(
            "use = \"oauth2/client-credentials\"",
            &format!("use = \"oauth2/client-credentials\"\nmax_failures = {max_failures}"),
        )
        .replace(
            "data_dir = \"{data_dir}\"",
            "data_dir = \"{data_dir}\"\ntrusted_proxies = [\"127.0.0.3\"]",
        );
    format!(
        "{stages}{}",
        oim_provider(true, &format!("allowed_ips = {allowed_ips}"))
    )
}

/// A token request with a wrong secret (Basic, the right client id).
fn wrong_secret(server: &Server, local: Option<IpAddr>, headers: &[(&str, &str)]) -> Reply {
    let auth = client_basic(OIM_CLIENT_ID, "not-the-secret");
    let mut all = vec![
        ("authorization", auth.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    all.extend_from_slice(headers);
    send_from(local, "POST", &server.url(ROUTE), &all, Some(GRANT))
}

fn assert_invalid_client(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 401, "{what}: {}", reply.body);
    let body = reply.json();
    assert_eq!(body["error"], "invalid_client", "{what}");
    assert_eq!(
        body["error_description"], "client authentication failed",
        "{what}: the answer a wrong secret gets, nothing more"
    );
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic")),
        "{what}: {:?}",
        reply.headers
    );
}

fn assert_token(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {}", reply.body);
    assert!(reply.json()["access_token"].is_string(), "{what}");
}

fn assert_locked(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 429, "{what}: {}", reply.body);
    assert_eq!(reply.json()["error"], "temporarily_unavailable", "{what}");
    assert!(
        reply
            .header("retry-after")
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| (1..=300).contains(&s)),
        "{what}: {:?}",
        reply.headers
    );
}

#[test]
fn wrong_secrets_from_a_disallowed_address_neither_count_nor_lock() {
    let server = Server::start_with_env(&config(3, r#"["127.0.0.1/32"]"#), &env());
    // Through the trusted proxy, on behalf of an address the provider does
    // not allow: 50 wrong secrets, far past max_failures and its ceiling.
    let forwarded = [("x-forwarded-for", "203.0.113.9")];
    for i in 0..50 {
        let reply = wrong_secret(&server, ip("127.0.0.3"), &forwarded);
        assert_invalid_client(&reply, &format!("attempt {i}"));
    }
    // The right secret from there gets the same answer: it was not checked.
    let right = token_request(&server, ROUTE, ip("127.0.0.3"), GRANT, &forwarded);
    assert_invalid_client(&right, "right secret, disallowed address");
    // The legitimate client, from its allowed address, is not locked out.
    assert_token(
        &token_request(&server, ROUTE, None, GRANT, &[]),
        "legitimate client after the attack",
    );
    // The audit trail says why, the client was not told.
    let logs = server.logs();
    assert!(
        logs.lines().any(|l| l.contains("client_ip=203.0.113.9")
            && l.contains("not in the allowed_ips of provider `oim-prod`")),
        "no refusal reason for 203.0.113.9 in:\n{logs}"
    );
    assert!(
        !logs.contains("locked out"),
        "nothing was counted, so nothing locked:\n{logs}"
    );
}

#[test]
fn an_allowed_attacker_locks_only_its_own_address() {
    let server = Server::start_with_env(&config(3, r#"["127.0.0.0/8"]"#), &env());
    let attacker = ip("127.0.0.2");
    for i in 0..3 {
        assert_invalid_client(
            &wrong_secret(&server, attacker, &[]),
            &format!("attempt {i}"),
        );
    }
    // That (client, address) pair is locked now, even with the right secret.
    assert_locked(&wrong_secret(&server, attacker, &[]), "attacker's next try");
    assert_locked(
        &token_request(&server, ROUTE, attacker, GRANT, &[]),
        "right secret from the locked address",
    );
    // The same client from its own address gets its token.
    assert_token(
        &token_request(&server, ROUTE, ip("127.0.0.1"), GRANT, &[]),
        "legitimate client at its own address",
    );
    assert!(
        server.logs().contains("locked out after repeated failures"),
        "the lockout is logged"
    );
}

#[test]
fn the_client_wide_ceiling_locks_after_enough_addresses() {
    // Two failures per address; the client-wide ceiling is 10 × 2 = 20.
    let server = Server::start_with_env(&config(2, r#"["127.0.0.0/8"]"#), &env());
    let attack_from = |n: u8| {
        let from = ip(&format!("127.0.0.{}", 10 + n));
        for _ in 0..2 {
            assert_invalid_client(&wrong_secret(&server, from, &[]), "wrong secret");
        }
        assert_locked(&wrong_secret(&server, from, &[]), "that address is locked");
    };
    for n in 0..9 {
        attack_from(n);
    }
    // 18 failures from nine addresses: the client still gets in.
    assert_token(
        &token_request(&server, ROUTE, ip("127.0.0.1"), GRANT, &[]),
        "below the ceiling",
    );
    attack_from(9);
    // The tenth address reaches the ceiling: the client is locked everywhere.
    assert_locked(
        &token_request(&server, ROUTE, ip("127.0.0.1"), GRANT, &[]),
        "at the ceiling",
    );
}
