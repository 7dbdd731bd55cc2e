//! Provider authentication methods owned by plugins: the example
//! `api-key` authenticator (examples/api-key-plugin) adds
//! `[provider.auth] method = "api-key"` with no change to the host, and the
//! seed policies judge its providers like any other; its keys are checked
//! by the host from the plugin's declaration and by the plugin itself, every
//! problem located at the provider's own line.

use scimgate_e2e::*;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";

const VAULT_KEY: &str = "vault-key-3f9a1c7e5b2d4068a1b2c3d4e5f60718";
const READER_KEY: &str = "reader-key-0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const RETIRED_KEY: &str = "retired-key-9f8e7d6c5b4a39281706f5e4d3c2b1a0";
const ELSEWHERE_KEY: &str = "elsewhere-key-1234567890abcdef1234567890ab";
const OFF_KEY: &str = "off-key-fedcba0987654321fedcba0987654321";

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("VAULT_KEY", VAULT_KEY),
        ("READER_KEY", READER_KEY),
        ("RETIRED_KEY", RETIRED_KEY),
        ("ELSEWHERE_KEY", ELSEWHERE_KEY),
        ("OFF_KEY", OFF_KEY),
    ]
}

const STAGES: &str = r#"
[server]
listen = "127.0.0.1:0"
plugin_dir = "{plugin_dir}"
data_dir = "{data_dir}"

[stage.keys]
use = "api-key/api-key"
[stage.active]
use = "policies/provider-active"
[stage.validity]
use = "policies/validity"
[stage.ips]
use = "policies/allowed-ips"
[stage.access]
use = "policies/access-mode"
[stage.scim]
use = "scim-server/scim"
store = "sqlite:scim.db"

[[route]]
path = "/vault/scim/v2"
pipeline = ["keys", "active", "validity", "ips", "access", "scim"]
"#;

const PROVIDERS: &str = r#"
[[provider]]
id = "vault"
[provider.auth]
method = "api-key"
key = "${VAULT_KEY}"
key_name = "vault-2026"
allowed_ips = ["127.0.0.1"]

[[provider]]
id = "reader"
[provider.auth]
method = "api-key"
key = "${READER_KEY}"
access = "read-only"

[[provider]]
id = "retired"
[provider.auth]
method = "api-key"
key = "${RETIRED_KEY}"
valid_until = 2020-01-01T00:00:00Z

[[provider]]
id = "elsewhere"
[provider.auth]
method = "api-key"
key = "${ELSEWHERE_KEY}"
allowed_ips = ["10.0.0.0/8"]

[[provider]]
id = "off"
active = false
[provider.auth]
method = "api-key"
key = "${OFF_KEY}"
"#;

fn with_key(key: &str) -> [(&str, &str); 1] {
    [("x-api-key", key)]
}

fn detail(reply: &Reply) -> String {
    reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_plugin_method_gets_the_seed_policies_of_each_provider() {
    let server = Server::start_with_env(&format!("{STAGES}{PROVIDERS}"), &env());
    let users = server.url("/vault/scim/v2/Users");
    let alice = json!({"schemas": [USER], "userName": "alice"});

    // The vault's key works, and names the vault in the audit trail.
    let created = send_json("POST", &users, &with_key(VAULT_KEY), &alice);
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(get(&users, &with_key(VAULT_KEY)).status, 200);

    // Read-only access: reads pass, writes are refused by access-mode.
    assert_eq!(get(&users, &with_key(READER_KEY)).status, 200);
    let write = send_json(
        "POST",
        &users,
        &with_key(READER_KEY),
        &json!({"schemas": [USER], "userName": "bob"}),
    );
    assert_eq!(write.status, 403, "{}", write.body);
    assert!(detail(&write).contains("read-only"), "{}", write.body);

    // Each provider's own rules: validity, addresses, activation.
    let retired = get(&users, &with_key(RETIRED_KEY));
    assert_eq!(retired.status, 403, "{}", retired.body);
    assert!(detail(&retired).contains("expired"), "{}", retired.body);
    let elsewhere = get(&users, &with_key(ELSEWHERE_KEY));
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);
    assert!(
        detail(&elsewhere).contains("127.0.0.1"),
        "{}",
        elsewhere.body
    );
    let off = get(&users, &with_key(OFF_KEY));
    assert_eq!(off.status, 403, "{}", off.body);
    assert!(detail(&off).contains("inactive"), "{}", off.body);

    // An unknown key is refused by the authenticator; no key at all is
    // nobody's.
    assert_eq!(get(&users, &with_key("guess")).status, 401);
    assert_eq!(get(&users, &[]).status, 401);

    let logs = server.logs();
    assert!(logs.contains("vault"), "{logs}");
    for (_, key) in env() {
        assert!(!logs.contains(key), "a key leaked into the logs");
    }
}

#[test]
fn mistakes_in_a_plugin_method_are_located_at_the_provider() {
    let dir = TempDir::new("methods-validate");
    let path = dir.path().join("scimgate.toml");
    let broken = format!(
        "{STAGES}{}",
        PROVIDERS
            // An unknown key (host, from the declaration).
            .replace("key_name = \"vault-2026\"", "key_nmae = \"vault-2026\"")
            // A value the plugin refuses (its own check).
            .replace(
                "key = \"${READER_KEY}\"",
                "key_hash = \"$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\""
            )
            // The same key twice (a unique secret).
            .replace("key = \"${OFF_KEY}\"", "key = \"${VAULT_KEY}\"")
            // A method nobody declares.
            .replace(
                "method = \"api-key\"\nkey = \"${ELSEWHERE_KEY}\"",
                "method = \"apikey\"\nkey = \"${ELSEWHERE_KEY}\""
            )
    );
    std::fs::write(&path, expand(&broken, dir.path())).unwrap();
    let config = path.display().to_string();
    let (code, _, err) = run_cli(&["validate", "--config", &config], &env());
    assert_eq!(code, 2, "{err}");
    let line_of = |needle: &str| {
        broken
            .lines()
            .position(|l| l.contains(needle))
            .map(|i| i + 1)
            .unwrap()
    };
    for (message, needle) in [
        ("error: unknown key `key_nmae` in provider.auth", "key_nmae"),
        (
            "error: provider `reader` (api-key/api-key): `key_hash`: an API key is checked on every request",
            "$argon2id$",
        ),
        (
            "error: provider `off` has the same `key_hash` as provider `vault`",
            "key = \"${VAULT_KEY}\"\n",
        ),
        ("error: unknown authentication method `apikey`", "\"apikey\""),
    ] {
        let needle = needle.trim_end_matches('\n');
        let line = if needle.contains("VAULT_KEY") {
            broken.lines().enumerate().filter(|(_, l)| l.contains(needle)).map(|(i, _)| i + 1).last().unwrap()
        } else {
            line_of(needle)
        };
        let at = err.find(message).unwrap_or_else(|| panic!("`{message}` missing:\n{err}"));
        let located = &err[at..];
        assert!(
            located.contains(&format!("scimgate.toml:{line}:")),
            "`{message}` not located at line {line}:\n{err}"
        );
    }
    assert!(
        err.contains("did you mean `api-key`?"),
        "the declared methods are suggested:\n{err}"
    );
    for (_, key) in env() {
        assert!(!err.contains(key), "a secret was echoed:\n{err}");
    }
}

#[test]
fn a_method_is_known_from_any_plugin_in_the_folder_and_unknown_otherwise() {
    // No stage loads `api-key`, but the library is in the plugin folder:
    // its declaration still checks the providers (here: all valid).
    let dir = TempDir::new("methods-unloaded");
    let path = dir.path().join("scimgate.toml");
    let config = path.display().to_string();
    let without_stage = format!("{STAGES}{PROVIDERS}").replace(
        "use = \"api-key/api-key\"",
        "use = \"oauth2/static-bearer\"",
    );
    std::fs::write(&path, expand(&without_stage, dir.path())).unwrap();
    let (code, out, err) = run_cli(&["validate", "--config", &config], &env());
    assert_eq!(code, 0, "{out}{err}");
    // …and still finds their mistakes.
    let broken = without_stage.replace("key_name = \"vault-2026\"", "key_name = \"two words\"");
    std::fs::write(&path, expand(&broken, dir.path())).unwrap();
    let (code, _, err) = run_cli(&["validate", "--config", &config], &env());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("error: provider `vault` (api-key/api-key): `key_name`: a key name is 1 to 64 printable ASCII characters"),
        "{err}"
    );

    // A method no plugin in the folder declares.
    let unknown = without_stage.replace("method = \"api-key\"", "method = \"hmac\"");
    std::fs::write(&path, expand(&unknown, dir.path())).unwrap();
    let (code, _, err) = run_cli(&["validate", "--config", &config], &env());
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        err.matches("error: unknown authentication method `hmac`")
            .count(),
        5,
        "{err}"
    );
    assert!(
        err.contains("api-key, basic, client-cert, jwks, oauth2-client-credentials, static-bearer"),
        "the methods the folder's plugins declare are listed: {err}"
    );
}
