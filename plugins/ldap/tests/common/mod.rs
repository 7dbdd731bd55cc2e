//! What the slapd tests of this crate share: the SKIPPED rule (a loud line
//! without `SCIMGATE_TEST_LDAP_URL`, a failure under `CI=true`) and a
//! backend config over a fresh subtree of the test directory.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use ldap::LdapConfig;
use ldap3::LdapConn;

const SKIPPED: &str =
    "SKIPPED: LDAP tests need SCIMGATE_TEST_LDAP_URL (tests/run starts slapd with tests/ldap-server)";

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

/// Whether slapd is there; prints the SKIPPED line (past the test
/// harness's capture) when it is not, and fails under `CI=true`.
pub fn available() -> bool {
    if !env("SCIMGATE_TEST_LDAP_URL").is_empty() {
        return true;
    }
    assert!(
        env("CI") != "true",
        "CI=true needs the LDAP tests: {SKIPPED}"
    );
    let _ = writeln!(std::io::stderr().lock(), "{SKIPPED}");
    false
}

/// A config over a fresh subtree `ou=<tag>-<pid>-<n>-<time>` with
/// `ou=people` and `ou=groups`, bound as the test directory's admin.
pub fn config(tag: &str) -> LdapConfig {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = format!(
        "{tag}-{}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    let root = format!("ou={unique},dc=example,dc=com");
    let mut admin = LdapConn::new(&env("SCIMGATE_TEST_LDAP_URL")).expect("connect");
    admin
        .simple_bind(
            &env("SCIMGATE_TEST_LDAP_BIND_DN"),
            &env("SCIMGATE_TEST_LDAP_PASSWORD"),
        )
        .expect("bind")
        .success()
        .expect("bound");
    for dn in [
        root.clone(),
        format!("ou=people,{root}"),
        format!("ou=groups,{root}"),
    ] {
        let ou = dn[3..].split(',').next().unwrap_or_default().to_string();
        admin
            .add(
                &dn,
                vec![
                    ("objectClass", ["organizationalUnit"].into_iter().collect()),
                    ("ou", [ou.as_str()].into_iter().collect()),
                ],
            )
            .expect("add")
            .success()
            .expect("added");
    }
    let _ = admin.unbind();
    LdapConfig {
        url: env("SCIMGATE_TEST_LDAP_URL"),
        bind_dn: env("SCIMGATE_TEST_LDAP_BIND_DN"),
        bind_password: env("SCIMGATE_TEST_LDAP_PASSWORD"),
        users_base: format!("ou=people,{root}"),
        groups_base: format!("ou=groups,{root}"),
        ..LdapConfig::default()
    }
}
