//! Config conformance of every shipped component, through the real binary
//! and the real `.so` files: each component publishes the JSON Schema of its
//! stage table and an example (`scimgate config schema`); the example
//! validates (`scimgate validate`); a bad config reports every mistake at
//! once at `file:line:col`; hostile values (wrong types everywhere, deep
//! nesting, huge strings, a panic inside validation) are errors, never a
//! crash; the shipped example configurations still load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use scimgate_e2e::*;

/// Every library the workspace ships (the plugin folder may hold others).
const SHIPPED: &[&str] = &[
    "oauth2",
    "policies",
    "scim-server",
    "ldap",
    "one-identity",
    "entra-id",
    "okta",
    "profiles",
    "demo",
    "memory",
    "api-key",
    "tls",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// `scimgate config schema` over the plugin folder.
fn whole_schema() -> Value {
    let dir = target_dir().display().to_string();
    let (code, out, err) = run_cli(&["config", "schema", "--dir", &dir], &[]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Every `library/component` the schema knows, with its definition.
fn components(schema: &Value) -> BTreeMap<String, Value> {
    let uses = schema["properties"]["stage"]["additionalProperties"]["properties"]["use"]["enum"]
        .as_array()
        .expect("the components' `use` values");
    uses.iter()
        .map(|u| {
            let uses = u.as_str().expect("a use").to_string();
            let def = schema["definitions"][uses.replace('/', ".")].clone();
            (uses, def)
        })
        .filter(|(uses, _)| SHIPPED.contains(&uses.split('/').next().unwrap_or("")))
        .collect()
}

/// A JSON value as TOML (inline tables and arrays).
fn toml(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let items: Vec<String> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{} = {}", Value::from(k.as_str()), toml(v)))
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// `[stage.NAME]` with `use` and the keys of `config`.
fn stage(name: &str, uses: &str, config: &Value) -> String {
    let mut text = format!("[stage.{name}]\nuse = \"{uses}\"\n");
    for (key, value) in config.as_object().expect("a table") {
        if !value.is_null() {
            text.push_str(&format!(
                "{} = {}\n",
                Value::from(key.as_str()),
                toml(value)
            ));
        }
    }
    text
}

fn config_with(stages: &str) -> String {
    format!(
        "[server]\nplugin_dir = \"{}\"\ndata_dir = \"{{data_dir}}\"\n\n{stages}",
        target_dir().display()
    )
}

/// Writes a config into a fresh folder and runs `scimgate validate` on it.
fn validate(config: &str, envs: &[(&str, &str)]) -> (i32, String, String) {
    let dir = TempDir::new("conformance");
    let path = dir.path().join("scimgate.toml");
    std::fs::write(&path, expand(config, dir.path())).expect("write config");
    let path = path.display().to_string();
    run_cli(&["validate", "--config", &path], envs)
}

/// The `[stage.*]` block of a shipped example configuration that uses
/// `uses`, with the `${VAR}`s it names.
fn shipped_stage(uses: &str) -> Option<(String, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .ok()?
        .flatten()
        .map(|e| e.path().join("scimgate.toml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).ok()?;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !line.trim_start().starts_with("[stage.") {
                continue;
            }
            let end = lines[i + 1..]
                .iter()
                .position(|l| l.trim_start().starts_with('['))
                .map_or(lines.len(), |p| i + 1 + p);
            let block = lines[i..end].join("\n");
            if block.contains(&format!("use = \"{uses}\"")) {
                return Some((block.clone(), variables(&block)));
            }
        }
    }
    None
}

fn variables(text: &str) -> Vec<String> {
    text.split("${")
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn every_component_publishes_a_schema_and_an_example_that_validates() {
    let schema = whole_schema();
    let components = components(&schema);
    for library in [
        "oauth2",
        "policies",
        "scim-server",
        "ldap",
        "demo",
        "memory",
    ] {
        assert!(
            components
                .keys()
                .any(|u| u.starts_with(&format!("{library}/"))),
            "{library} is missing from the schema: {:?}",
            components.keys()
        );
    }
    let (mut missing, mut invalid) = (Vec::new(), Vec::new());
    for (uses, def) in &components {
        // A typed config: a table that refuses unknown keys, `use` attached.
        assert_eq!(def["type"], "object", "{uses}: {def}");
        assert_eq!(def["additionalProperties"], false, "{uses}: {def}");
        assert_eq!(def["properties"]["use"]["const"], uses.as_str(), "{uses}");
        let (block, vars) = match def["examples"].get(0) {
            Some(example) => {
                let mut example = example.clone();
                assert_eq!(
                    example["use"],
                    uses.as_str(),
                    "{uses}: the example names its component"
                );
                example.as_object_mut().expect("a table").remove("use");
                (
                    stage("example", uses, &example),
                    variables(&example.to_string()),
                )
            }
            None => match shipped_stage(uses) {
                Some(found) => found,
                None => {
                    missing.push(uses.clone());
                    continue;
                }
            },
        };
        let values: Vec<(String, String)> = vars
            .iter()
            .map(|v| (v.clone(), "placeholder-value".to_string()))
            .collect();
        let envs: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let (code, out, err) = validate(&config_with(&block), &envs);
        if code != 0 || !out.contains(": ok (") {
            invalid.push(format!("{uses}: {block}\n{err}"));
        }
    }
    assert!(
        invalid.is_empty(),
        "examples that do not validate: {invalid:#?}"
    );
    assert!(
        missing.is_empty(),
        "components without an example (declare one with Component::with_example): {missing:?}"
    );
}

#[test]
fn a_bad_config_reports_every_mistake_at_once_each_located() {
    let config = config_with(
        r#"[stage.scim]
use = "scim-server/scim"
max_resluts = 10
bulk = { max_operations = "many", max_payload_size = "1m" }
cursor_timeout = "10"

[stage.token]
use = "oauth2/token"
ttl = "1 fortnight"
issuer = 42

[stage.limit]
use = "policies/rate-limit"
per_ip = "5/s"
burst = -3
ipv6_prefix = 300
"#,
    );
    let (code, _out, err) = validate(&config, &[]);
    assert_eq!(code, 2, "{err}");
    let expected = [
        (
            "scimgate.toml:8:27",
            "`bulk.max_operations`: expected an integer, found a string",
        ),
        (
            "scimgate.toml:8:54",
            "write \"1MiB\" (1048576 bytes) or \"1MB\" (1000000 bytes)",
        ),
        (
            "scimgate.toml:9:18",
            "`cursor_timeout`: invalid duration `10`: missing unit",
        ),
        (
            "scimgate.toml:7:15",
            "unknown key `max_resluts`; did you mean `max_results`?",
        ),
        ("scimgate.toml:13:7", "unknown unit `fortnight`"),
        (
            "scimgate.toml:14:10",
            "`issuer`: expected a string, found an integer",
        ),
        ("scimgate.toml:19:9", "`burst`: -3 is below the minimum 0"),
        (
            "scimgate.toml:20:15",
            "`ipv6_prefix`: 300 is above the maximum 255",
        ),
    ];
    for (place, message) in expected {
        assert!(err.contains(place), "no issue at {place}:\n{err}");
        assert!(err.contains(message), "no `{message}`:\n{err}");
    }
    assert!(
        err.contains(&format!("due to {} previous errors", expected.len())),
        "every mistake, each once:\n{err}"
    );
}

/// The JSON types a (draft-07, resolved) schema allows; `None` when it
/// does not say (any value may be fine).
fn types_of(schema: &Value, definitions: &Value, depth: usize) -> Option<Vec<String>> {
    if depth > 8 {
        return None;
    }
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/definitions/");
        return types_of(&definitions[name], definitions, depth + 1);
    }
    if let Some(options) = schema["enum"].as_array() {
        return Some(
            options
                .iter()
                .map(|o| if o.is_string() { "string" } else { "other" }.to_string())
                .collect(),
        );
    }
    if let Some(branches) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        let mut all = Vec::new();
        for branch in branches {
            all.extend(types_of(branch, definitions, depth + 1)?);
        }
        return Some(all);
    }
    match &schema["type"] {
        Value::String(t) => Some(vec![t.clone()]),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        _ => None,
    }
}

/// A value of another type than the schema allows, as hostile as it gets
/// (a huge string, a deeply nested array, a negative fraction); `None` for
/// a key that takes any value.
fn wrong_value(schema: &Value, definitions: &Value) -> Option<Value> {
    let types = types_of(schema, definitions, 0)?;
    let allows = |t: &str| types.iter().any(|x| x == t);
    if !allows("string") {
        Some(json!("x".repeat(200_000)))
    } else if !allows("array") {
        let mut deep = json!([1]);
        for _ in 0..60 {
            deep = json!([deep]);
        }
        Some(deep)
    } else if !allows("number") && !allows("integer") {
        Some(json!(-1.5))
    } else {
        None
    }
}

#[test]
fn hostile_values_are_located_errors_and_never_crash_the_host() {
    let schema = whole_schema();
    let definitions = &schema["definitions"];
    let mut unreported = Vec::new();
    for (uses, def) in components(&schema) {
        let properties = def["properties"].as_object().expect("properties");
        let mut config = serde_json::Map::new();
        for (key, property) in properties.iter().filter(|(k, _)| *k != "use") {
            if let Some(value) = wrong_value(property, definitions) {
                config.insert(key.clone(), value);
            }
        }
        config.insert(
            "k".repeat(5000),
            json!({"nested": {"deeper": [1, "two", 3.5]}}),
        );
        let (code, _out, err) = validate(
            &config_with(&stage("hostile", &uses, &Value::Object(config.clone()))),
            &[],
        );
        // Never a crash: a clean exit 2, no panic, every issue located.
        assert_eq!(
            code, 2,
            "{uses}: a hostile config is an error, not a crash:\n{err}"
        );
        assert!(!err.contains("panicked"), "{uses}: {err}");
        assert!(err.contains("scimgate.toml:"), "{uses}: located: {err}");
        // Every mistake at once (collected over all components, reported together).
        for key in config.keys().filter(|k| k.len() < 100) {
            if !err.contains(&format!("`{key}`")) {
                unreported.push(format!("{uses}: `{key}`"));
            }
        }
    }
    assert!(
        unreported.is_empty(),
        "wrong values not reported (check the config against its schema first: scimgate_abi::schema): {unreported:?}"
    );
}

#[test]
fn a_panic_inside_validation_is_contained_and_reported() {
    let config = config_with(
        "[stage.boom]\nuse = \"demo/allow\"\npanic_in_validate = true\n\n[stage.fine]\nuse = \"demo/tag\"\ntag = 7\n",
    );
    let (code, _out, err) = validate(&config, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(
            "the plugin panicked while validating: validation panic requested by the config"
        ),
        "{err}"
    );
    assert!(
        err.contains("scimgate.toml:5:1"),
        "the panic is located at its stage: {err}"
    );
    // The other stage is still checked.
    assert!(
        err.contains("`tag`: expected a string, found an integer"),
        "{err}"
    );
}

#[test]
fn the_schema_command_maps_each_stage_of_a_config_to_its_component() {
    let dir = TempDir::new("schema-cmd");
    let path = dir.path().join("scimgate.toml");
    let config = config_with(
        "[stage.token]\nuse = \"oauth2/token\"\n\n[stage.scim]\nuse = \"scim-server/scim\"\n\n[[route]]\npath = \"/scim/v2\"\npipeline = [\"scim\"]\nanonymous = true\n",
    );
    std::fs::write(&path, expand(&config, dir.path())).expect("write");
    let path = path.display().to_string();
    let (code, out, err) = run_cli(&["config", "schema", "--config", &path], &[]);
    assert_eq!(code, 0, "{err}");
    let schema: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    let stages = &schema["properties"]["stage"]["properties"];
    assert_eq!(stages["token"]["$ref"], "#/definitions/oauth2.token");
    assert_eq!(stages["scim"]["$ref"], "#/definitions/scim-server.scim");
    // Only the libraries the config uses.
    let defs = schema["definitions"].as_object().expect("definitions");
    assert!(
        defs.contains_key("scim-server.scim.BulkConfig"),
        "{:?}",
        defs.keys()
    );
    assert!(
        !defs.keys().any(|k| k.starts_with("policies.")),
        "{:?}",
        defs.keys()
    );
    // The engine keys are the scim stage's own, with the shared units.
    let scim = &defs["scim-server.scim"]["properties"];
    assert_eq!(scim["cursor_timeout"]["x-unit"], "seconds");
    assert_eq!(scim["max_results"]["default"], 200);
    let server = &schema["properties"]["server"]["properties"];
    assert_eq!(server["max_body_size"]["x-unit"], "size");
    // A broken config is reported like `validate` does.
    std::fs::write(dir.path().join("broken.toml"), "[server\n").expect("write");
    let broken = dir.path().join("broken.toml").display().to_string();
    let (code, _out, err) = run_cli(&["config", "schema", "--config", &broken], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.toml:1:"), "{err}");
}

#[test]
fn the_shipped_configurations_still_load() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))
        .expect("examples")
        .flatten()
        .map(|e| e.path().join("scimgate.toml"))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        let names = variables(&text);
        let values: Vec<(String, String)> = names
            .iter()
            .map(|v| {
                let value = match v.as_str() {
                    "LDAP_URL" => "ldap://127.0.0.1:389",
                    "SCIMGATE_LISTEN" => "127.0.0.1:0",
                    _ => "placeholder-value",
                };
                (v.clone(), value.to_string())
            })
            .collect();
        // No `plugin_dir` in them: the plugins next to the binary.
        let envs: Vec<(&str, &str)> = values
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = file.display().to_string();
        let (code, out, err) = run_cli(&["validate", "--config", &path], &envs);
        assert_eq!(code, 0, "{path} no longer loads:\n{err}");
        assert!(out.contains(": ok ("), "{out}");
    }
    // The embedded quickstart configuration (host/src/default.toml).
    let dir = TempDir::new("embedded");
    let out = std::process::Command::new(scimgate_bin())
        .arg("validate")
        .current_dir(dir.path())
        .env_remove("SCIMGATE_CONFIG")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("<embedded default config>: ok ("),
        "{stdout}"
    );
}
