//! The operator's tools against a running instance of the One Identity
//! reference configuration (examples/one-identity/scimgate.toml, copied
//! as is, plus a second OIM provider the routes are not bound to):
//! `scimgate explain` names the stage that decides, with the same reason the
//! server gives; `scimgate check-connection` walks OIM's five test steps and
//! names the cause of a failure, never printing the secret.

use scimgate_e2e::*;

use crate::oauth2::OIM_SECRET;

/// A second OIM system, registered but bound to no route.
const OTHER_SECRET: &str = "other-oim-secret-4b1d";
const OTHER_PROVIDER: &str = r#"
[[provider]]
id = "oim-test"
name = "OIM test system"
[provider.auth]
method = "oauth2-client-credentials"
client_id = "oim-test"
client_secret = "${OIM_TEST_SECRET}"
scopes = ["scim:read"]
"#;

/// Inside the reference provider's validity window (2026-01-01 to
/// 2027-12-31T23:59:59Z), so that no test depends on the wall clock.
const INSIDE_WINDOW: &str = "2027-06-01T00:00:00Z";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("OIM_CLIENT_SECRET", OIM_SECRET),
        ("OIM_TEST_SECRET", OTHER_SECRET),
        ("SCIMGATE_LISTEN", "127.0.0.1:0"),
    ]
}

/// The reference configuration, served from a fresh folder (its data
/// lives next to the copied file).
fn reference_server() -> Server {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/one-identity/scimgate.toml"
    );
    let text = std::fs::read_to_string(example).expect("the One Identity example");
    let dir = TempDir::new("operator");
    let config = dir.path().join("scimgate.toml");
    std::fs::write(&config, format!("{text}\n{OTHER_PROVIDER}")).expect("write config");
    Server::start_at(dir, config, &env())
}

fn explain(server: &Server, args: &[&str]) -> (i32, String, String) {
    let config = server.config_path.display().to_string();
    let mut all = vec!["explain", "--config", config.as_str()];
    all.extend_from_slice(args);
    run_cli(&all, &env())
}

fn token(server: &Server) -> String {
    let auth = client_basic("oim-prod", OIM_SECRET);
    let reply = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// The line of `stage` in explain's table.
fn stage_line<'a>(out: &'a str, stage: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .unwrap_or_else(|| panic!("no line for stage `{stage}`:\n{out}"))
}

#[test]
fn explain_names_the_deciding_stage_with_the_servers_own_reason() {
    let server = reference_server();
    let bearer = format!("Bearer {}", token(&server));

    // A read: allowed, and the server agrees.
    let (code, out, err) = explain(
        &server,
        &[
            "--provider",
            "oim-prod",
            "--at",
            INSIDE_WINDOW,
            "GET",
            "/iso/scim/v2/Users",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("route /iso/scim/v2 (providers: oim-prod)"),
        "{out}"
    );
    assert!(
        stage_line(&out, "bearer").contains("explain attaches provider `oim-prod` directly"),
        "{out}"
    );
    for policy in ["active", "validity", "ips", "referrers", "access"] {
        assert!(stage_line(&out, policy).ends_with("allow"), "{out}");
    }
    assert!(
        out.lines().last().unwrap().starts_with("=> allowed"),
        "{out}"
    );
    let reply = get(
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer)],
    );
    assert_eq!(reply.status, 200, "{}", reply.body);

    // A write by the read-only provider: refused by `access`, with the
    // reason the server gives the same request.
    let (code, out, _) = explain(
        &server,
        &[
            "--provider",
            "oim-prod",
            "--at",
            INSIDE_WINDOW,
            "POST",
            "/iso/scim/v2/Users",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let reply = send_json(
        "POST",
        &server.url("/iso/scim/v2/Users"),
        &[("authorization", &bearer)],
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bjensen"}),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
    let detail = reply.json()["detail"].as_str().expect("detail").to_string();
    assert!(
        stage_line(&out, "access").contains(&format!("DENY 403: {detail}")),
        "{out}"
    );
    let last = out.lines().last().unwrap();
    assert!(
        last.starts_with("=> refused by stage `access` (policies/access-mode)")
            && last.contains(&detail),
        "{out}"
    );

    // From outside allowed_ips: refused by `ips`; later stages not reached.
    let (code, out, _) = explain(
        &server,
        &[
            "--provider",
            "oim-prod",
            "--from",
            "10.9.9.9",
            "--at",
            INSIDE_WINDOW,
            "GET",
            "/iso/scim/v2/Users",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        stage_line(&out, "ips").contains("DENY 403") && out.contains("10.9.9.9"),
        "{out}"
    );
    assert!(stage_line(&out, "access").contains("not reached"), "{out}");
    assert!(
        out.contains("=> refused by stage `ips` (policies/allowed-ips)"),
        "{out}"
    );

    // After valid_until: refused by `validity`, naming the end of the window.
    let (code, out, _) = explain(
        &server,
        &[
            "--provider",
            "oim-prod",
            "--at",
            "2028-01-01T00:00:00Z",
            "GET",
            "/iso/scim/v2/Users",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(stage_line(&out, "validity").contains("DENY 403"), "{out}");
    assert!(out.contains("2027-12-31T23:59:59Z"), "{out}");
    assert!(
        out.contains("=> refused by stage `validity` (policies/validity)"),
        "{out}"
    );

    // A provider the routes are not bound to: refused at the authenticator,
    // with the token route's own invalid_client description.
    let (code, out, _) = explain(
        &server,
        &[
            "--provider",
            "oim-test",
            "--at",
            INSIDE_WINDOW,
            "POST",
            "/iso/oauth2/token",
        ],
    );
    assert_eq!(code, 1, "{out}");
    let auth = client_basic("oim-test", OTHER_SECRET);
    let reply = send(
        "POST",
        &server.url("/iso/oauth2/token"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("grant_type=client_credentials"),
    );
    assert_eq!(reply.status, 401, "{}", reply.body);
    let description = reply.json()["error_description"]
        .as_str()
        .expect("error_description")
        .to_string();
    assert!(
        stage_line(&out, "client-auth")
            .contains(&format!("DENY 401 invalid_client: {description}")),
        "server said {description:?}; explain:\n{out}"
    );
    assert!(
        out.contains("=> refused by stage `client-auth` (oauth2/client-credentials)"),
        "{out}"
    );
    let (code, out, _) = explain(
        &server,
        &[
            "--provider",
            "oim-test",
            "--at",
            INSIDE_WINDOW,
            "GET",
            "/iso/scim/v2/Users",
        ],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        stage_line(&out, "bearer")
            .contains("DENY 403: provider `oim-test` is not allowed on route `/iso/scim/v2`"),
        "{out}"
    );
    assert!(stage_line(&out, "active").contains("not reached"), "{out}");

    // A path the host canonicalises to the same route (trailing slash,
    // encoded letter) is explained on that route.
    let (code, out, _) = explain(
        &server,
        &[
            "--provider",
            "oim-prod",
            "--at",
            INSIDE_WINDOW,
            "GET",
            "/iso/scim/v2/%55sers/",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("route /iso/scim/v2 "), "{out}");

    // Configuration and usage errors: exit 2, the reason on stderr.
    let (code, _, err) = explain(
        &server,
        &["--provider", "nobody", "GET", "/iso/scim/v2/Users"],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("no provider `nobody`") && err.contains("oim-prod"),
        "{err}"
    );
    let (code, _, err) = explain(
        &server,
        &[
            "--provider",
            "oim-prod",
            "--header",
            "no-colon",
            "GET",
            "/iso/scim/v2/Users",
        ],
    );
    assert_eq!(code, 2);
    assert!(err.contains("Name: value"), "{err}");
}

/// `--client-secret-file` with the secret and a trailing newline.
fn secret_file(server: &Server, name: &str, secret: &str) -> String {
    let path = server.dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("secret file");
    path.display().to_string()
}

fn check_connection(url: &str, secret_file: &str) -> (i32, String, String) {
    run_cli(
        &[
            "check-connection",
            url,
            "--client-id",
            "oim-prod",
            "--client-secret-file",
            secret_file,
            "--timeout",
            "10s",
        ],
        &[],
    )
}

#[test]
fn check_connection_walks_oims_five_steps_and_names_the_cause() {
    let server = reference_server();
    let base = server.url("/iso/scim/v2");
    let right = secret_file(&server, "secret", OIM_SECRET);
    let wrong_secret = "not-the-secret-9f3e";
    let wrong = secret_file(&server, "wrong", wrong_secret);
    let secrets = [OIM_SECRET, wrong_secret];

    // The right secret (one that needs form-encoding): five 2xx steps.
    let (code, out, err) = check_connection(&base, &right);
    assert_eq!(code, 0, "{out}{err}");
    for (number, path) in [
        ("1. token", "/iso/oauth2/token"),
        ("2. service config", "/iso/scim/v2/ServiceProviderConfig"),
        ("3. resource types", "/iso/scim/v2/ResourceTypes"),
        ("4. schemas", "/iso/scim/v2/Schemas"),
        ("5. users", "/iso/scim/v2/Users?count=1"),
    ] {
        let line = out
            .lines()
            .find(|l| l.trim_start().starts_with(number))
            .unwrap_or_else(|| panic!("no step `{number}`:\n{out}"));
        assert!(line.contains(&server.url(path)), "{line}");
        assert!(
            line.contains(" 200 ") && line.contains(" ms  ok: "),
            "{line}"
        );
    }
    assert!(out.contains("patch yes"), "{out}");
    assert!(out.contains("=> all 5 steps passed"), "{out}");

    // The wrong secret: step 1 fails with the OAuth error; nothing after it runs.
    let (code, out, err) = check_connection(&base, &wrong);
    assert_eq!(code, 1, "{out}{err}");
    let step1 = out
        .lines()
        .find(|l| l.contains("1. token"))
        .expect("step 1");
    assert!(
        step1.contains(" 401 ") && step1.contains("FAILED: 401 invalid_client"),
        "{out}"
    );
    assert!(!out.contains("2. service config"), "{out}");
    assert!(
        out.contains("=> failed at step 1 (token): 401 invalid_client"),
        "{out}"
    );

    // A closed port: connection refused, in words.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let (code, out, err) =
        check_connection(&format!("http://127.0.0.1:{closed}/iso/scim/v2"), &right);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!("=> failed at step 1 (token): connection refused: nothing listens on 127.0.0.1:{closed}")),
        "{out}"
    );

    // Usage errors: exit 2.
    let missing = server.dir.path().join("no-such-file").display().to_string();
    let (code, _, err) = check_connection(&base, &missing);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the client secret file"), "{err}");

    // Neither secret was printed, whatever happened; the server's log
    // has neither either.
    for (out, err) in [
        check_connection(&base, &right),
        check_connection(&base, &wrong),
    ]
    .map(|(_, out, err)| (out, err))
    {
        for secret in secrets {
            assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
        }
    }
    let logs = server.logs();
    for secret in secrets {
        assert!(!logs.contains(secret), "the server logged a secret");
    }
}

#[test]
fn check_connection_over_https_trusts_the_ca_it_is_given() {
    // The reference configuration behind the host's own TLS, with a
    // certificate from a private CA.
    let certs = scimgate_e2e::certs::Certs::new();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/one-identity/scimgate.toml"
    );
    let text = std::fs::read_to_string(example).expect("the One Identity example");
    let dir = TempDir::new("operator-tls");
    let config = dir.path().join("scimgate.toml");
    let tls = format!(
        "\n[server.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        certs.server.cert.display(),
        certs.server.key.display()
    );
    std::fs::write(&config, format!("{text}\n{tls}")).expect("write config");
    let server = Server::start_at(dir, config, &env());
    let base = server
        .url("/iso/scim/v2")
        .replacen("http://", "https://", 1);
    let secret = secret_file(&server, "secret", OIM_SECRET);
    let ca = certs.ca.display().to_string();
    let with_ca = |extra: &[&str]| {
        let mut args = vec![
            "check-connection",
            base.as_str(),
            "--client-id",
            "oim-prod",
            "--client-secret-file",
            secret.as_str(),
        ];
        args.extend_from_slice(extra);
        run_cli(&args, &[])
    };

    let (code, out, err) = with_ca(&["--ca-file", &ca]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("=> all 5 steps passed"), "{out}");
    assert!(out.contains(&format!("{base}/Users?count=1")), "{out}");

    // The public roots do not know the private CA: the cause says TLS.
    let (code, out, err) = with_ca(&[]);
    assert_eq!(code, 1, "{out}{err}");
    let failed = out
        .lines()
        .find(|l| l.starts_with("=> failed at step 1 (token): "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(failed.to_ascii_lowercase().contains("tls"), "{failed}");

    // A CA file that holds no certificate is a usage error.
    let (code, _, err) = with_ca(&["--ca-file", &secret]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("holds no certificate"), "{err}");
}
