//! TLS to PostgreSQL end to end: the real binary and `libscim_server.so`
//! against the test cluster of tests/pg-cluster, whose server certificate
//! (from a throwaway CA, `SCIMGATE_TEST_POSTGRES_CA`) names `localhost`
//! only. `verify-full` serves SCIM over TLS, `verify-ca` and `require`
//! encrypt without checking the name, a wrong name or another CA stops the
//! start with a readable error, and `prefer` or a remote host without
//! `sslmode` are located config errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use scimgate_e2e::*;

use crate::scim::{PgSchema, PgServer, StoreKind};

const AUTH: (&str, &str) = ("authorization", "Bearer tls-token");

/// A config with one SCIM route at `/scim/v2` on `store`.
fn config(store: &str) -> String {
    scim_route_config(
        "tls-token",
        &format!("store = \"{store}\"\nstore_password = \"${{SCIMGATE_PG_PASSWORD}}\""),
    )
}

/// The test cluster with its CA, or `None` (said loudly; an error under
/// `CI=true`) when there is none.
struct Cluster {
    server: PgServer,
    ca: PathBuf,
}

impl Cluster {
    fn from_env() -> Option<Cluster> {
        if !StoreKind::postgres_available() {
            return None;
        }
        let server = PgServer::from_env()?;
        match std::env::var("SCIMGATE_TEST_POSTGRES_CA") {
            Ok(ca) if !ca.is_empty() => Some(Cluster {
                server,
                ca: PathBuf::from(ca),
            }),
            _ => {
                let skipped = "SKIPPED: PostgreSQL TLS tests need SCIMGATE_TEST_POSTGRES_CA \
                               (tests/pg-cluster start DIR prints it)";
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "CI=true needs the PostgreSQL TLS tests: {skipped}"
                );
                let _ = writeln!(std::io::stderr().lock(), "{skipped}");
                None
            }
        }
    }

    /// The cluster URL with `host` in place of its host, the schema's
    /// search path, an application name to find the sessions by, and `tail`.
    fn url(&self, host: &str, schema: &PgSchema, app: &str, tail: &str) -> String {
        let url = &self.server.url;
        let (scheme, rest) = url.split_once("://").expect("a URL");
        let (user, rest) = rest.split_once('@').expect("a user in the test URL");
        let (_, port_db) = rest.split_once(':').expect("a port in the test URL");
        let joiner = if port_db.contains('?') { '&' } else { '?' };
        format!(
            "{scheme}://{user}@{host}:{port_db}{joiner}options=-csearch_path%3D{}&application_name={app}{tail}",
            schema.name
        )
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("SCIMGATE_PG_PASSWORD", self.server.password.as_str())]
    }

    /// Whether the store's sessions (by application name) use TLS:
    /// `pg_stat_ssl` of every session of `app`.
    fn ssl_of(&self, app: &str) -> String {
        self.server.psql(&format!(
            "SELECT string_agg(DISTINCT s.ssl::text, ',') FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{app}'"
        ))
    }
}

/// Starts the server on `store`, creates a user and reads it back.
fn create_and_read(cluster: &Cluster, store: &str, name: &str) -> Server {
    let server = Server::start_with_env(&config(store), &cluster.env());
    let scim = |path: &str| server.url(&format!("/scim/v2{path}"));
    let created = send_json(
        "POST",
        &scim("/Users"),
        &[AUTH],
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let read = get(&scim(&format!("/Users/{id}")), &[AUTH]);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["userName"], name);
    assert_eq!(get(&server.url("/readyz"), &[]).status, 200);
    server
}

/// `scimgate serve` on `store` must fail to start: its output.
fn start_fails(cluster: &Cluster, store: &str) -> String {
    let dir = TempDir::new("pgtls");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(&path, expand(&config(store), dir.path())).expect("write config");
    let (code, out, err) = run_cli(
        &["serve", "--config", &path.display().to_string()],
        &cluster.env(),
    );
    assert_ne!(code, 0, "the server started:\n{out}{err}");
    let text = format!("{out}{err}");
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        !text.contains(&cluster.server.password),
        "the password leaked: {text}"
    );
    assert!(text.contains("cannot open the PostgreSQL store"), "{text}");
    text
}

/// A CA of its own (not the cluster's), as a PEM file in `dir`.
fn other_ca(dir: &Path) -> PathBuf {
    let ca = dir.join("other-ca.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=another test CA",
            "-keyout",
        ])
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ca
}

#[test]
fn verify_full_with_the_ca_serves_scim_over_tls() {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let schema = cluster.server.fresh_schema("tlsfull");
    // The certificate names `localhost`; hostaddr keeps the connection on
    // the IPv4 loopback the cluster listens on.
    let store = cluster.url(
        "localhost",
        &schema,
        "pgtls_full",
        &format!(
            "&hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            cluster.ca.display()
        ),
    );
    let server = create_and_read(&cluster, &store, "tls-full");
    assert_eq!(cluster.ssl_of("pgtls_full"), "true");
    assert_eq!(schema.psql("SELECT COUNT(*) FROM resources"), "1");
    assert!(!server.logs().contains(&cluster.server.password));
}

#[test]
fn require_and_verify_ca_encrypt_and_loopback_without_sslmode_does_not() {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let schema = cluster.server.fresh_schema("tlsmodes");
    // `require`: any certificate, still TLS.
    let require = cluster.url("127.0.0.1", &schema, "pgtls_require", "&sslmode=require");
    let _require = create_and_read(&cluster, &require, "tls-require");
    assert_eq!(cluster.ssl_of("pgtls_require"), "true");
    // `verify-ca`: the chain is checked, the name (127.0.0.1, not in the
    // certificate) is not.
    let verify_ca = cluster.url(
        "127.0.0.1",
        &schema,
        "pgtls_ca",
        &format!("&sslmode=verify-ca&sslrootcert={}", cluster.ca.display()),
    );
    let _verify_ca = create_and_read(&cluster, &verify_ca, "tls-ca");
    assert_eq!(cluster.ssl_of("pgtls_ca"), "true");
    // No sslmode on loopback: plaintext, as before TLS existed.
    let plain = cluster.url("127.0.0.1", &schema, "pgtls_plain", "");
    let _plain = create_and_read(&cluster, &plain, "tls-plain");
    assert_eq!(cluster.ssl_of("pgtls_plain"), "false");
}

#[test]
fn verify_full_refuses_a_certificate_for_another_name() {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let schema = cluster.server.fresh_schema("tlsname");
    let store = cluster.url(
        "127.0.0.1",
        &schema,
        "pgtls_name",
        &format!("&sslmode=verify-full&sslrootcert={}", cluster.ca.display()),
    );
    let text = start_fails(&cluster, &store);
    assert!(
        text.contains("certificate not valid for name \"127.0.0.1\"")
            && text.contains("localhost")
            && text.contains("verify-full checks the host name"),
        "{text}"
    );
    assert_eq!(
        schema.psql("SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema()"),
        "0"
    );
}

#[test]
fn verify_ca_refuses_a_server_signed_by_another_ca() {
    let Some(cluster) = Cluster::from_env() else {
        return;
    };
    let dir = TempDir::new("pgtls-ca");
    let ca = other_ca(dir.path());
    let schema = cluster.server.fresh_schema("tlsca");
    let store = cluster.url(
        "localhost",
        &schema,
        "pgtls_other",
        &format!(
            "&hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={}",
            ca.display()
        ),
    );
    let text = start_fails(&cluster, &store);
    assert!(
        text.contains("UnknownIssuer") && text.contains("not signed by a CA in sslrootcert"),
        "{text}"
    );
}

/// Without a cluster: the URL checks run at config time, located.
#[test]
fn prefer_a_remote_host_without_sslmode_and_a_missing_ca_are_located_config_errors() {
    let dir = TempDir::new("pgtls-validate");
    let path = dir.path().join("scimgate.toml");
    let cases = [
        (
            "postgres://scim@127.0.0.1:5432/scim?sslmode=prefer",
            "sslmode=prefer is refused: it falls back to plaintext",
        ),
        (
            "postgres://scim@db.example:5432/scim",
            "no sslmode, and db.example is not on this machine",
        ),
        (
            "postgres://scim@db.example:5432/scim?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
            "sslrootcert /no/such/ca.pem: cannot read",
        ),
    ];
    for (store, message) in cases {
        std::fs::write(&path, expand(&config(store), dir.path())).expect("write config");
        let (code, out, err) = run_cli(
            &["validate", "--config", &path.display().to_string()],
            &[("SCIMGATE_PG_PASSWORD", "hunter2")],
        );
        assert_eq!(code, 2, "{store}:\n{out}{err}");
        assert!(err.contains(message), "{store}: {err}");
        // `store = "…"` is line 14 of the config; the value starts at column 9.
        assert!(err.contains("scimgate.toml:14:9"), "located: {err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
