//! Config schemas: the JSON Schema a typed stage config derives with
//! `schemars` ([`schema_of`]), and a small checker ([`check`]) that runs it
//! over a config and reports every problem at once, each as a located
//! [`ConfigIssue`] (key path such as `bulk.max_operations` or `allow[2]`;
//! unknown keys get a did-you-mean from the known ones). [`check_config`]
//! runs the checker first and serde second, for the value checks only serde
//! can do.
//!
//! The checker understands what `schemars` emits for our config structs:
//! `type` (also lists), `enum`, `const`, objects (`properties`, `required`,
//! `additionalProperties`), arrays (`items`), numeric bounds, string
//! lengths, `$ref` into `$defs`/`definitions`, `allOf`, `anyOf`/`oneOf`
//! (`Option`, untagged enums) and the `x-unit` keyword of
//! [`crate::units`]. `pattern` is left to editors (the unit grammar and
//! serde check the values it describes).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::ConfigIssue;

/// Deepest schema nesting followed (recursive `$ref`s, hostile schemas).
const MAX_DEPTH: usize = 64;
/// Most issues reported for one config (hostile configs stay readable).
const MAX_ISSUES: usize = 100;

/// The JSON Schema `schemars` derives for a config type (draft 2020-12,
/// definitions under `$defs`).
pub fn schema_of<C: schemars::JsonSchema>() -> Value {
    schemars::schema_for!(C).to_value()
}

/// Checks `value` against its derived schema, then deserializes it: every
/// schema problem at once, or serde's first error when the schema allowed
/// the value but serde did not. A missing (`null`) config is `{}`.
pub fn check_config<C: DeserializeOwned>(
    schema: &Value,
    value: &Value,
) -> Result<C, Vec<ConfigIssue>> {
    let value = if value.is_null() {
        Value::Object(Map::new())
    } else {
        value.clone()
    };
    let issues = check(schema, &value);
    if !issues.is_empty() {
        return Err(issues);
    }
    crate::sdk::deserialize_config(&value).map_err(|issue| vec![issue])
}

/// Every problem of `value` against `schema`, in document order.
pub fn check(schema: &Value, value: &Value) -> Vec<ConfigIssue> {
    let mut checker = Checker {
        root: schema,
        issues: Vec::new(),
    };
    checker.at(schema, value, "", 0);
    let mut issues = checker.issues;
    if issues.len() > MAX_ISSUES {
        issues.truncate(MAX_ISSUES);
        issues.push(ConfigIssue::new(
            "",
            format!("more than {MAX_ISSUES} problems; fix these first"),
        ));
    }
    issues
}

struct Checker<'a> {
    root: &'a Value,
    issues: Vec<ConfigIssue>,
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type of a value, as JSON Schema names it.
fn type_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// How a type reads in a message (TOML words: a config is TOML).
fn type_word(name: &str) -> &str {
    match name {
        "object" => "a table",
        "array" => "an array",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "a boolean",
        "null" => "nothing",
        other => other,
    }
}

fn shown(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 40 {
        let cut: String = text.chars().take(37).collect();
        format!("{cut}…")
    } else {
        text
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    let actual = type_of(value);
    expected == actual
        || (expected == "number" && actual == "integer")
        || (expected == "integer"
            && value
                .as_f64()
                .is_some_and(|f| f.fract() == 0.0 && actual == "number"))
}

impl<'a> Checker<'a> {
    fn push(&mut self, path: &str, message: String) {
        self.issues.push(ConfigIssue::new(path, message));
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    /// Checks one value; returns nothing, pushes issues.
    fn at(&mut self, schema: &'a Value, value: &Value, path: &str, depth: usize) {
        if depth > MAX_DEPTH {
            self.push(path, "the config nests too deeply to check".into());
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                self.push(path, "no value is allowed here".into());
                return;
            }
            Value::Object(map) => map,
            _ => return,
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match self.resolve(reference) {
                Some(target) => self.at(target, value, path, depth + 1),
                None => self.push(path, format!("the schema refers to unknown `{reference}`")),
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.at(sub, value, path, depth + 1);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = schema.get(key).and_then(Value::as_array) {
                self.any_of(branches, value, path, depth);
            }
        }
        if let Some(expected) = schema.get("type") {
            let names: Vec<&str> = match expected {
                Value::String(s) => vec![s.as_str()],
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !names.is_empty() && !names.iter().any(|t| type_matches(t, value)) {
                let words: Vec<&str> = names.iter().map(|t| type_word(t)).collect();
                self.push(
                    path,
                    format!(
                        "expected {}, found {} {}",
                        words.join(" or "),
                        type_word(type_of(value)),
                        shown(value)
                    ),
                );
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                self.push(path, enum_message(options, value));
                return;
            }
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                self.push(
                    path,
                    format!("expected {}, found {}", shown(constant), shown(value)),
                );
                return;
            }
        }
        if let Some(unit) = schema
            .get(crate::units::UNIT_KEYWORD)
            .and_then(Value::as_str)
        {
            if let Some(message) = crate::units::check_unit(unit, value) {
                self.push(path, message);
            }
        }
        match value {
            Value::Object(object) => self.object(schema, object, path, depth),
            Value::Array(items) => self.array(schema, items, path, depth),
            Value::Number(_) => self.number(schema, value, path),
            Value::String(text) => self.string(schema, text, path),
            _ => {}
        }
    }

    /// `anyOf`/`oneOf`: fine when one branch takes the value; otherwise the
    /// issues of the branch meant for the value's type (or a summary).
    fn any_of(&mut self, branches: &'a [Value], value: &Value, path: &str, depth: usize) {
        let mut candidates: Vec<Vec<ConfigIssue>> = Vec::new();
        let mut expected: Vec<String> = Vec::new();
        for branch in branches {
            let mut sub = Checker {
                root: self.root,
                issues: Vec::new(),
            };
            sub.at(branch, value, path, depth + 1);
            if sub.issues.is_empty() {
                return;
            }
            match self.branch_type(branch, depth) {
                Some(types) if !types.iter().any(|t| type_matches(t, value)) => {
                    expected.extend(types.iter().map(|t| type_word(t).to_string()))
                }
                _ => candidates.push(sub.issues),
            }
        }
        match candidates.into_iter().min_by_key(Vec::len) {
            Some(issues) => self.issues.extend(issues),
            None => {
                expected.dedup();
                self.push(
                    path,
                    format!(
                        "expected {}, found {} {}",
                        if expected.is_empty() {
                            "another value".to_string()
                        } else {
                            expected.join(" or ")
                        },
                        type_word(type_of(value)),
                        shown(value)
                    ),
                );
            }
        }
    }

    /// The types a branch accepts, when it says (through `$ref`s).
    fn branch_type(&self, branch: &'a Value, depth: usize) -> Option<Vec<&'a str>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let map = branch.as_object()?;
        if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
            return self.branch_type(self.resolve(reference)?, depth + 1);
        }
        if let Some(options) = map.get("enum").and_then(Value::as_array) {
            let mut types: Vec<&str> = options.iter().map(type_of).collect();
            types.dedup();
            return Some(types);
        }
        if let Some(constant) = map.get("const") {
            return Some(vec![type_of(constant)]);
        }
        match map.get("type")? {
            Value::String(s) => Some(vec![s.as_str()]),
            Value::Array(items) => Some(items.iter().filter_map(Value::as_str).collect()),
            _ => None,
        }
    }

    fn object(
        &mut self,
        schema: &'a Map<String, Value>,
        object: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) {
        let properties: Option<&'a Map<String, Value>> =
            schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    self.push(path, format!("missing required key `{key}`"));
                }
            }
        }
        let additional = schema.get("additionalProperties");
        let has_patterns = schema.contains_key("patternProperties");
        for (key, item) in object {
            let item_path = join_key(path, key);
            if let Some(sub) = properties.and_then(|p| p.get(key)) {
                self.at(sub, item, &item_path, depth + 1);
                continue;
            }
            match additional {
                Some(Value::Bool(false)) if !has_patterns => {
                    self.push(&item_path, unknown_key_message(key, properties));
                }
                Some(sub @ Value::Object(_)) => self.at(sub, item, &item_path, depth + 1),
                _ => {}
            }
        }
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
            if (object.len() as u64) < min {
                self.push(path, format!("needs at least {min} entries"));
            }
        }
    }

    fn array(&mut self, schema: &'a Map<String, Value>, items: &[Value], path: &str, depth: usize) {
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.at(item_schema, item, &format!("{path}[{i}]"), depth + 1);
            }
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                self.push(
                    path,
                    format!("needs at least {min} items, found {}", items.len()),
                );
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                self.push(
                    path,
                    format!("takes at most {max} items, found {}", items.len()),
                );
            }
        }
    }

    fn number(&mut self, schema: &Map<String, Value>, value: &Value, path: &str) {
        let Some(n) = value.as_f64() else { return };
        let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
        let text = value.to_string();
        if let Some(min) = bound("minimum") {
            if n < min {
                self.push(
                    path,
                    format!("{text} is below the minimum {}", schema["minimum"]),
                );
            }
        }
        if let Some(max) = bound("maximum") {
            if n > max {
                self.push(
                    path,
                    format!("{text} is above the maximum {}", schema["maximum"]),
                );
            }
        }
        if let Some(min) = bound("exclusiveMinimum") {
            if n <= min {
                self.push(
                    path,
                    format!("{text} must be greater than {}", schema["exclusiveMinimum"]),
                );
            }
        }
        if let Some(max) = bound("exclusiveMaximum") {
            if n >= max {
                self.push(
                    path,
                    format!("{text} must be less than {}", schema["exclusiveMaximum"]),
                );
            }
        }
    }

    fn string(&mut self, schema: &Map<String, Value>, text: &str, path: &str) {
        let chars = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if chars < min {
                self.push(path, format!("must be at least {min} characters long"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if chars > max {
                self.push(
                    path,
                    format!("must be at most {max} characters long, found {chars}"),
                );
            }
        }
    }
}

fn enum_message(options: &[Value], value: &Value) -> String {
    let listed: Vec<String> = options.iter().map(|o| o.to_string()).collect();
    let mut message = format!(
        "expected one of {}, found {}",
        listed.join(", "),
        shown(value)
    );
    if let Some(text) = value.as_str() {
        let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
        if let Some(best) = did_you_mean(text, &names) {
            message.push_str(&format!("; did you mean \"{best}\"?"));
        }
    }
    message
}

fn unknown_key_message(key: &str, properties: Option<&Map<String, Value>>) -> String {
    let known: Vec<&str> = properties
        .into_iter()
        .flat_map(|p| p.keys().map(String::as_str))
        .collect();
    let mut message = format!("unknown key `{key}`");
    if let Some(best) = did_you_mean(key, &known) {
        message.push_str(&format!("; did you mean `{best}`?"));
    }
    if known.is_empty() {
        message.push_str(" (this table takes no keys)");
    } else if known.len() <= 30 {
        message.push_str(&format!(" (known keys: {})", known.join(", ")));
    }
    message
}

/// The closest of `candidates` to `word` (case-insensitive edit distance),
/// when it is close enough to be a likely typo.
pub fn did_you_mean<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    if word.chars().count() > 64 {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            current.push(
                (previous[j] + cost)
                    .min(previous[j + 1] + 1)
                    .min(current[j] + 1),
            );
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::{HumanDuration, Size};
    use serde::Deserialize;
    use serde_json::json;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        #[serde(default)]
        max_results: u64,
        #[serde(default)]
        bulk: Bulk,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        timeout: Option<HumanDuration>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        sources: Vec<Source>,
        #[serde(flatten)]
        engine: Engine,
    }

    #[allow(dead_code)]
    #[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Bulk {
        #[serde(default)]
        max_operations: u32,
        #[serde(default)]
        max_payload_size: Size,
    }

    #[allow(dead_code)]
    #[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
    #[serde(rename_all = "kebab-case")]
    enum Mode {
        #[default]
        ReadOnly,
        ReadWrite,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize, schemars::JsonSchema)]
    #[serde(untagged)]
    enum Source {
        File(String),
        Inline(Map<String, Value>),
    }

    #[allow(dead_code)]
    #[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
    struct Engine {
        #[serde(default)]
        me: bool,
    }

    fn issues(value: Value) -> Vec<(String, String)> {
        check(&schema_of::<Cfg>(), &value)
            .into_iter()
            .map(|i| (i.path.to_string(), i.message.to_string()))
            .collect()
    }

    #[test]
    fn a_good_config_passes_and_deserializes() {
        let value = json!({"max_results": 5, "bulk": {"max_payload_size": "1MiB"}, "mode": "read-write",
            "timeout": "1h30m", "type": "x", "sources": ["a.json", {"id": "u"}], "me": true});
        assert_eq!(issues(value.clone()), vec![]);
        let cfg: Cfg = check_config(&schema_of::<Cfg>(), &value).unwrap();
        assert_eq!(cfg.bulk.max_payload_size, Size(1 << 20));
        assert!(cfg.engine.me);
    }

    #[test]
    fn three_independent_mistakes_give_three_located_issues() {
        let found = issues(json!({
            "max_resluts": 5,
            "bulk": {"max_operations": "many"},
            "timeout": "10 parsecs",
        }));
        let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["bulk.max_operations", "max_resluts", "timeout"],
            "{found:?}"
        );
        assert!(
            found[0].1.contains("expected an integer, found a string"),
            "{found:?}"
        );
        assert!(
            found[1].1.contains("did you mean `max_results`?"),
            "{found:?}"
        );
        assert!(found[2].1.contains("unknown unit `parsecs`"), "{found:?}");
        let err = check_config::<Cfg>(
            &schema_of::<Cfg>(),
            &json!({"max_resluts": 5, "mode": "read_only", "me": "yes"}),
        )
        .unwrap_err();
        assert_eq!(err.len(), 3, "{err:?}");
    }

    #[test]
    fn enums_renames_untagged_and_flatten_are_understood() {
        let found = issues(
            json!({"mode": "readonly", "kind": 1, "sources": [3], "me": "no",
            "bulk": {"max_payload_size": "1m"}}),
        );
        let find = |p: &str| {
            found
                .iter()
                .find(|(path, _)| path == p)
                .map(|(_, m)| m.clone())
        };
        assert!(
            find("mode")
                .unwrap()
                .contains("did you mean \"read-only\"?"),
            "{found:?}"
        );
        assert!(
            find("kind")
                .unwrap()
                .contains("unknown key `kind`; did you mean `mode`?")
                || find("kind").unwrap().contains("unknown key `kind`"),
            "{found:?}"
        );
        assert!(
            find("sources[0]")
                .unwrap()
                .contains("expected a string or a table"),
            "{found:?}"
        );
        assert!(
            find("me").unwrap().contains("expected a boolean"),
            "{found:?}"
        );
        assert!(
            find("bulk.max_payload_size").unwrap().contains("\"1MiB\""),
            "{found:?}"
        );
    }

    #[test]
    fn hostile_values_give_issues_not_crashes() {
        let mut deep = json!(1);
        for _ in 0..500 {
            deep = json!({ "a": deep });
        }
        let found = issues(
            json!({"max_results": -1, "bulk": deep, "type": "x".repeat(1 << 20),
            "sources": {"not": "an array"}}),
        );
        assert!(found.iter().any(|(p, _)| p == "max_results"), "{found:?}");
        assert!(found.iter().any(|(p, _)| p == "bulk.a"), "{found:?}");
        assert!(found.iter().any(|(p, _)| p == "sources"), "{found:?}");
        assert!(found.iter().all(|(_, m)| m.len() < 1000));
        let huge: Vec<Value> = (0..1000).map(|_| json!(1)).collect();
        let found = issues(json!({ "sources": huge }));
        assert_eq!(found.len(), MAX_ISSUES + 1);
    }

    #[test]
    fn did_you_mean_needs_a_close_word() {
        assert_eq!(
            did_you_mean("pagesize", &["page_size", "me"]),
            Some("page_size")
        );
        assert_eq!(did_you_mean("zzz", &["page_size", "me"]), None);
    }

    #[test]
    fn typed_components_publish_the_derived_schema_and_report_every_issue() {
        struct Pass;
        impl crate::sdk::Policy for Pass {
            fn check(&self, _: &crate::Request, _: crate::Caller<'_>) -> crate::PolicyDecision {
                crate::PolicyDecision::Allow
            }
        }
        let component = crate::sdk::Component::policy_with_config("p", "", |_: Cfg, _| Ok(Pass))
            .with_example(json!({"max_results": 3}));
        let mut published: Value = serde_json::from_str(&component.config_schema).unwrap();
        let examples = published
            .as_object_mut()
            .unwrap()
            .remove("examples")
            .unwrap();
        assert_eq!(published, schema_of::<Cfg>());
        assert_eq!(examples, json!([{"max_results": 3}]));
        let ctx = |config| crate::sdk::CreateContext {
            stage: "p".into(),
            config,
            providers: Vec::new(),
            data_dir: std::path::PathBuf::from("/tmp"),
            server: json!({}),
            host: None,
        };
        assert!(component.validate(&ctx(examples[0].clone())).is_empty());
        let issues = component.validate(&ctx(json!({"max_results": "x", "mode": 1, "bulkk": {}})));
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["bulkk", "max_results", "mode"], "{issues:?}");
        let error = match component.create(&ctx(json!({"me": 1}))) {
            Err(error) => error,
            Ok(_) => panic!("an invalid config must not create"),
        };
        assert!(
            error.message.contains("me: expected a boolean"),
            "{}",
            error.message
        );
    }
}
