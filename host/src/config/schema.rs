//! The JSON Schema of a whole configuration file, for editor completion and
//! checking as you type (taplo / Even Better TOML, any JSON Schema aware
//! editor). The host's own tables (`[server]`, `[stage.*]` with `use`,
//! `[[route]]`, `[[provider]]` with `[provider.auth]`) are written here once
//! (a unit test keeps them equal to the keys the parser accepts); each
//! component's stage schema comes from its plugin (derived from its config
//! struct) and is attached by `use` value: `[stage.NAME]` of a known config
//! directly, or any stage through `if`/`then` on `use`.
//!
//! The output is draft-07 (what editors support best): component schemas
//! (draft 2020-12, `$defs`) are moved under `definitions` with their
//! references rewritten.

use scimgate_abi::declare::{ProviderMethod, GENERIC_AUTH_KEYS};
use scimgate_abi::units::{HumanDuration, Size};
use serde_json::{json, Map, Value};

/// One component's stage schema, as its library publishes it.
#[derive(Debug, Clone)]
pub struct ComponentSchema {
    /// `library/component`, the value of `use`.
    pub uses: String,
    pub description: String,
    /// The component's `config_schema` (JSON Schema of the stage table
    /// without `use`); `{}` when it publishes none.
    pub schema: Value,
}

/// A unit schema of `scimgate_abi::units`, inlined (no `$schema`/`title`).
fn unit(mut schema: Value) -> Value {
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        map.remove("title");
    }
    schema
}

/// `[server]` durations are strings with a unit.
fn server_duration(default: &str, description: &str) -> Value {
    let mut schema = unit(scimgate_abi::schema::schema_of::<HumanDuration>());
    schema["type"] = json!("string");
    if let Some(map) = schema.as_object_mut() {
        map.remove("minimum");
    }
    schema["default"] = json!(default);
    schema["description"] = json!(description);
    schema
}

fn strings(description: &str) -> Value {
    json!({"type": "array", "items": {"type": "string"}, "description": description})
}

fn server_schema() -> Value {
    let mut max_body_size = unit(scimgate_abi::schema::schema_of::<Size>());
    max_body_size["default"] = json!("2MiB");
    max_body_size["description"] = json!("largest request body; 413 above");
    json!({
        "type": "object",
        "description": "Where to listen, where plugins and data live, request limits.",
        "additionalProperties": false,
        "properties": {
            "listen": {"type": "string", "default": "127.0.0.1:8080", "description": "IP:port to listen on"},
            "plugin_dir": {"description": "folder of the plugin libraries, or a list of folders searched in order (default: the binary's folder)", "anyOf": [{"type": "string", "minLength": 1}, {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}]},
            "data_dir": {"type": "string", "default": "scimgate-data", "description": "folder for stores and keys, relative to the config file"},
            "trusted_proxies": strings("addresses or CIDR blocks whose forwarded header is honoured"),
            "max_body_size": max_body_size,
            "request_timeout": server_duration("30s", "how long one request may take"),
            "blocking_threads": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 64,
                "description": "size of the pool endpoints run on"},
            "public_url": {"type": "string", "description": "the external http(s) base URL, without trailing slash"},
            "log_format": {"enum": ["human", "json"], "default": "human"},
            "log_level": {"type": "string", "default": "info", "description": "a level (error, warn, info, debug, trace) or filter directives like \"info,scimgate::audit=warn\"; --log-level and SCIMGATE_LOG win"},
            "header_read_timeout": server_duration("10s", "how long a client may take to send a request's head"),
            "keep_alive_timeout": server_duration("60s", "how long an idle kept-alive connection stays open"),
            "max_connections": {"type": "integer", "minimum": 1, "maximum": 1_048_576, "default": 1024,
                "description": "connections served at once"},
            "forwarded_header": {"enum": ["x-forwarded-for", "forwarded"], "default": "x-forwarded-for",
                "description": "the one header a trusted proxy's client address is read from"},
            "metrics": {"type": "boolean", "default": true,
                "description": "serve Prometheus metrics at /metrics"},
            "metrics_listen": {"type": "string",
                "description": "IP:port to serve /metrics on instead of the main listener, e.g. \"127.0.0.1:9100\""},
            "tls": {
                "type": "object",
                "description": "serve HTTPS (TLS 1.2/1.3, HTTP/2 by ALPN) on `listen`; files re-read on reload",
                "additionalProperties": false,
                "required": ["cert_file", "key_file"],
                "properties": {
                    "cert_file": {"type": "string", "minLength": 1, "description": "PEM certificate chain, leaf first (relative to the config file)"},
                    "key_file": {"type": "string", "minLength": 1, "description": "PEM private key: PKCS#8, RSA or SEC1 (relative to the config file)"},
                    "client_ca_file": {"type": "string", "minLength": 1, "description": "PEM CA bundle: ask clients for a certificate and verify it against these CAs"},
                    "client_auth": {"enum": ["optional", "required"], "default": "optional", "description": "whether a client certificate is required (only with client_ca_file)"},
                    "min_version": {"enum": ["1.2", "1.3"], "default": "1.2", "description": "oldest TLS version served"},
                    "http2": {"type": "boolean", "default": true, "description": "offer h2 before http/1.1 in ALPN"}
                }
            }
        }
    })
}

fn route_schema() -> Value {
    json!({
        "type": "object",
        "description": "A mount path and the stages a request passes, ending with an endpoint.",
        "additionalProperties": false,
        "required": ["path", "pipeline"],
        "properties": {
            "path": {"type": "string", "description": "mount path, e.g. \"/scim/v2\""},
            "pipeline": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                "description": "stage names: authenticators, policies, profiles, then one endpoint"},
            "anonymous": {"type": "boolean", "default": false,
                "description": "serve without an authenticated caller"},
            "providers": strings("the provider ids this route serves (default: every registered provider)")
        }
    })
}

/// `[provider.auth]`: the generic keys, `method`, and each declared
/// method's own keys when they are known.
fn auth_schema(methods: &[ProviderMethod]) -> Value {
    let mut method = json!({"type": "string", "description": "the authentication method; its authenticator declares the other keys"});
    if !methods.is_empty() {
        method["enum"] = methods.iter().map(|m| json!(m.name)).collect();
    }
    let mut schema = json!({
        "type": "object",
        "required": ["method"],
        "properties": {
            "method": method,
            "client_id": {"type": "string", "description": "the client ID (names the client in principals and audit events)"},
            "valid_from": {"type": "string", "format": "date-time", "description": "start of the validity window (RFC 3339)"},
            "valid_until": {"type": "string", "format": "date-time", "description": "end of the validity window (RFC 3339)"},
            "allowed_ips": strings("client addresses or CIDR blocks allowed (none: any)"),
            "allowed_referrers": strings("origins allowed in Referer/Origin (none: any)"),
            "access": {"enum": ["read-only", "read-write"], "default": "read-write"},
            "scopes": strings("scopes tokens of this provider may carry")
        }
    });
    let branches: Vec<Value> = methods
        .iter()
        .map(|m| {
            let properties: Map<String, Value> = m
                .all_keys()
                .map(|key| (key.to_string(), json!({"type": "string"})))
                .collect();
            let mut then = json!({"properties": properties, "description": m.description});
            if m.requires_client_id {
                then["required"] = json!(["client_id"]);
            }
            json!({"if": {"properties": {"method": {"const": m.name}}, "required": ["method"]}, "then": then})
        })
        .collect();
    if !branches.is_empty() {
        schema["allOf"] = Value::Array(branches);
    }
    schema
}

fn provider_schema(methods: &[ProviderMethod]) -> Value {
    json!({
        "type": "object",
        "description": "A registered IGA provider and how it authenticates.",
        "additionalProperties": false,
        "required": ["id", "auth"],
        "properties": {
            "id": {"type": "string", "description": "letters, digits, `.`, `_` and `-`"},
            "name": {"type": "string"},
            "active": {"type": "boolean", "default": true},
            "protocol": {"type": "string", "default": "scim2"},
            "description": {"type": "string"},
            "tags": strings("free-form labels"),
            "auth": auth_schema(methods)
        }
    })
}

/// A stage whose component is not known here: `use` and any keys.
fn generic_stage(uses: &[String]) -> Value {
    let mut use_schema = json!({"type": "string", "pattern": "^[a-z0-9_-]+/[a-z0-9_-]+$",
        "description": "the component: \"library/component\""});
    if !uses.is_empty() {
        use_schema["enum"] = uses.iter().map(|u| json!(u)).collect();
    }
    json!({"type": "object", "required": ["use"], "properties": {"use": use_schema}})
}

/// The schema of the host's own tables only (every stage generic).
pub fn host_schema() -> Value {
    config_schema(&[], None, &[])
}

/// The schema of a whole configuration. `stages`: the configuration's
/// `(stage name, use)` pairs, each mapped to its component's schema; without
/// them every stage is matched by its `use` value.
pub fn config_schema(
    components: &[ComponentSchema],
    stages: Option<&[(String, String)]>,
    methods: &[ProviderMethod],
) -> Value {
    let mut definitions = Map::new();
    for component in components {
        let name = def_name(&component.uses);
        let mut schema = component.schema.clone();
        hoist(&mut schema, &name, &mut definitions);
        attach_use(&mut schema, component);
        definitions.insert(name, schema);
    }
    let uses: Vec<String> = components.iter().map(|c| c.uses.clone()).collect();
    let mut stage = generic_stage(&uses);
    let branches: Vec<Value> = components
        .iter()
        .map(|c| {
            json!({
                "if": {"properties": {"use": {"const": c.uses}}, "required": ["use"]},
                "then": {"$ref": format!("#/definitions/{}", def_name(&c.uses))}
            })
        })
        .collect();
    if !branches.is_empty() {
        stage["allOf"] = Value::Array(branches);
    }
    let mut stage_table = json!({
        "type": "object",
        "description": "Named stages: `[stage.NAME]` with `use = \"library/component\"` and the component's keys.",
        "additionalProperties": stage,
    });
    if let Some(stages) = stages {
        let mut properties = Map::new();
        for (name, uses) in stages {
            let schema = if components.iter().any(|c| &c.uses == uses) {
                json!({"$ref": format!("#/definitions/{}", def_name(uses))})
            } else {
                generic_stage(&[])
            };
            properties.insert(name.clone(), schema);
        }
        stage_table["properties"] = Value::Object(properties);
    }
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "scimgate configuration",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "server": server_schema(),
            "stage": stage_table,
            "route": {"type": "array", "items": route_schema()},
            "provider": {"type": "array", "items": provider_schema(methods)}
        },
        "definitions": definitions
    })
}

/// `oauth2/token` → `oauth2.token` (a `definitions` key).
fn def_name(uses: &str) -> String {
    uses.replace('/', ".")
}

/// Moves a component schema's `$defs`/`definitions` into the shared
/// `definitions` as `PREFIX.NAME` and rewrites its references.
fn hoist(schema: &mut Value, prefix: &str, definitions: &mut Map<String, Value>) {
    let mut local = Map::new();
    if let Some(map) = schema.as_object_mut() {
        map.remove("$schema");
        for key in ["$defs", "definitions"] {
            if let Some(Value::Object(defs)) = map.remove(key) {
                local.extend(defs);
            }
        }
    }
    rewrite_refs(schema, prefix);
    for (name, mut def) in local {
        rewrite_refs(&mut def, prefix);
        definitions.insert(format!("{prefix}.{name}"), def);
    }
}

fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if key == "$ref" {
                    if let Some(reference) = item.as_str() {
                        let name = reference
                            .strip_prefix("#/$defs/")
                            .or_else(|| reference.strip_prefix("#/definitions/"));
                        if let Some(name) = name {
                            *item = json!(format!("#/definitions/{prefix}.{name}"));
                        }
                    }
                } else {
                    rewrite_refs(item, prefix);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite_refs(item, prefix)),
        _ => {}
    }
}

/// The stage table holds `use` besides the component's keys: allow it in
/// the component's schema (which describes the table without it) and put
/// it in the examples.
fn attach_use(schema: &mut Value, component: &ComponentSchema) {
    if !schema.is_object() {
        *schema = json!({});
    }
    let map = schema.as_object_mut().expect("an object");
    let properties = map.entry("properties").or_insert_with(|| json!({}));
    if let Some(properties) = properties.as_object_mut() {
        properties.insert("use".into(), json!({"const": component.uses}));
    }
    if let Some(required) = map
        .entry("required")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        required.push(json!("use"));
    }
    if !component.description.is_empty() && !map.contains_key("description") {
        map.insert("description".into(), json!(component.description));
    }
    if let Some(Value::Array(examples)) = map.get_mut("examples") {
        for example in examples {
            if let Some(example) = example.as_object_mut() {
                example.insert("use".into(), json!(component.uses));
            }
        }
    }
}

/// The keys of one table of [`host_schema`], for tests and tools.
pub fn table_keys(schema: &Value, pointer: &str) -> Vec<String> {
    let mut keys: Vec<String> = schema
        .pointer(pointer)
        .and_then(|t| t.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

/// The generic keys of `[provider.auth]` (those every method shares).
pub fn generic_auth_keys() -> Vec<String> {
    let mut keys: Vec<String> = GENERIC_AUTH_KEYS.iter().map(|k| k.to_string()).collect();
    keys.sort();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `ck.unknown_keys(table, "NAME", LIST)` of the parser's sources,
    /// as (NAME, sorted keys): the lists the parser accepts, read from the
    /// code itself so that a key added there and not here fails this test.
    fn parser_key_lists() -> Vec<(String, Vec<String>)> {
        let sources = [
            include_str!("mod.rs"),
            include_str!("server.rs"),
            include_str!("pipeline.rs"),
            include_str!("provider.rs"),
        ];
        let mut lists = Vec::new();
        for source in sources {
            let mut rest = source;
            while let Some(at) = rest.find("unknown_keys(") {
                rest = &rest[at + "unknown_keys(".len()..];
                if rest.starts_with("&mut self") {
                    continue; // the definition, not a call
                }
                let call = &rest[..rest.find(");").expect("a call ends")];
                let mut args = call.splitn(3, ',').map(str::trim);
                let _table = args.next();
                let name = args.next().expect("a name").trim_matches('"').to_string();
                let list = args.next().expect("a list").trim();
                let literal = if list.starts_with("&[") {
                    list.to_string()
                } else {
                    let decl = format!("const {list}: &[&str] = &[");
                    let start = source.find(&decl).unwrap_or_else(|| panic!("{decl}"));
                    let body = &source[start + decl.len()..];
                    body[..body.find("];").expect("list end")].to_string()
                };
                let mut keys: Vec<String> = literal
                    .split('"')
                    .skip(1)
                    .step_by(2)
                    .map(str::to_string)
                    .collect();
                keys.sort();
                lists.push((name, keys));
            }
        }
        lists
    }

    #[test]
    fn the_schema_has_exactly_the_keys_the_parser_accepts() {
        let schema = host_schema();
        let lists = parser_key_lists();
        let names: Vec<&str> = lists.iter().map(|(n, _)| n.as_str()).collect();
        for expected in ["top level", "server", "route", "provider"] {
            assert!(
                names.contains(&expected),
                "no key list for {expected}: {names:?}"
            );
        }
        for (name, keys) in &lists {
            let pointer = match name.as_str() {
                "top level" => "",
                "server" => "/properties/server",
                "server.tls" => "/properties/server/properties/tls",
                "route" => "/properties/route/items",
                "provider" => "/properties/provider/items",
                other => panic!("a key list for `{other}` the schema does not describe"),
            };
            assert_eq!(&table_keys(&schema, pointer), keys, "[{name}]");
        }
        assert_eq!(
            table_keys(&schema, "/properties/provider/items/properties/auth"),
            generic_auth_keys()
        );
        assert_eq!(
            table_keys(&schema, "/properties/stage/additionalProperties"),
            ["use"]
        );
    }

    #[test]
    fn components_are_attached_by_use_and_by_stage_name() {
        let component = ComponentSchema {
            uses: "oauth2/token".into(),
            description: "the token endpoint".into(),
            schema: json!({"$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object", "additionalProperties": false,
                "properties": {"ttl": {"$ref": "#/$defs/Duration"}},
                "$defs": {"Duration": {"type": "string"}},
                "examples": [{"ttl": "1h"}]}),
        };
        let stages = vec![("token".to_string(), "oauth2/token".to_string())];
        let method = ProviderMethod::new("basic", "HTTP Basic").secret("password_hash", "password");
        let schema = config_schema(&[component], Some(&stages), &[method]);
        let def = &schema["definitions"]["oauth2.token"];
        assert_eq!(
            def["properties"]["ttl"]["$ref"],
            "#/definitions/oauth2.token.Duration"
        );
        assert_eq!(
            schema["definitions"]["oauth2.token.Duration"]["type"],
            "string"
        );
        assert_eq!(def["properties"]["use"]["const"], "oauth2/token");
        assert_eq!(def["examples"][0]["use"], "oauth2/token");
        assert_eq!(
            schema["properties"]["stage"]["properties"]["token"]["$ref"],
            "#/definitions/oauth2.token"
        );
        let branch = &schema["properties"]["stage"]["additionalProperties"]["allOf"][0];
        assert_eq!(branch["if"]["properties"]["use"]["const"], "oauth2/token");
        let auth = &schema["properties"]["provider"]["items"]["properties"]["auth"];
        assert_eq!(auth["properties"]["method"]["enum"], json!(["basic"]));
        assert!(auth["allOf"][0]["then"]["properties"]["password_hash"].is_object());
    }
}
