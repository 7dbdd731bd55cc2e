//! The one way a SCIM request body is read: JSON whose objects have no two
//! member names that are equal ignoring case.
//!
//! RFC 7643 §2.1 makes attribute names case-insensitive, so
//! `{"Operations": […], "OPERATIONS": […]}` (or an exact duplicate, which
//! `serde_json` would silently collapse to its last value) has no single
//! meaning: one reader could act on the first and another on the second.
//! Such a body is refused with 400 `invalidSyntax` by everything that reads
//! SCIM bodies: the policies, the profiles and the endpoint.

use scimgate_abi::text::shown;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::ScimError;

/// Parses a SCIM request body, refusing member names that repeat ignoring
/// ASCII case (in any object, at any depth).
///
/// ```
/// use scimgate_scim::body::parse_body;
/// assert!(parse_body(br#"{"userName": "a", "name": {"givenName": "b"}}"#).is_ok());
/// let err = parse_body(br#"{"userName": "a", "USERNAME": "b"}"#).unwrap_err();
/// assert_eq!(err.scim_type.unwrap().as_str(), "invalidSyntax");
/// ```
pub fn parse_body(bytes: &[u8]) -> Result<Value, ScimError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict
        .deserialize(&mut de)
        .and_then(|value| de.end().map(|()| value))
        .map_err(|e| {
            let text = e.to_string();
            if text.starts_with(DUPLICATE) {
                ScimError::invalid_syntax(format!(
                    "{text}: attribute names ignore case (RFC 7643 §2.1), so the body has no single meaning"
                ))
            } else {
                ScimError::invalid_syntax(format!("the body is not valid JSON: {text}"))
            }
        })?;
    Ok(value)
}

/// Whether no object in `value` has two member names equal ignoring case;
/// for values that did not come through [`parse_body`].
pub fn has_unique_names(value: &Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut seen = Names::default();
            map.iter()
                .all(|(key, member)| seen.insert(key) && has_unique_names(member))
        }
        Value::Array(items) => items.iter().all(has_unique_names),
        _ => true,
    }
}

const DUPLICATE: &str = "the body has two members named";

/// Member names seen so far in one object: a linear scan while small, a set
/// of lower-cased names once large, so a hostile object with many members
/// costs linear time.
#[derive(Default)]
struct Names<'a> {
    few: Vec<&'a str>,
    many: Option<HashSet<String>>,
}

impl<'a> Names<'a> {
    const LINEAR: usize = 16;

    /// `false` when `name` (ignoring ASCII case) was seen before.
    fn insert(&mut self, name: &'a str) -> bool {
        if let Some(set) = &mut self.many {
            return set.insert(name.to_ascii_lowercase());
        }
        if self.few.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
            return false;
        }
        self.few.push(name);
        if self.few.len() > Self::LINEAR {
            self.many = Some(self.few.iter().map(|n| n.to_ascii_lowercase()).collect());
        }
        true
    }
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    // mutants: message text only — `expecting` only words a type error, and
    // `deserialize_any` on serde_json never raises one for this visitor.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    // mutants: equivalent — `Ok(Default::default())` is `Ok(Value::Null)`, this body.
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    // mutants: equivalent — `Ok(Default::default())` is `Ok(Value::Null)`, this body.
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        let mut lower: Option<HashSet<String>> = None;
        while let Some(key) = access.next_key::<String>()? {
            let repeated = match &mut lower {
                Some(set) => !set.insert(key.to_ascii_lowercase()),
                None => {
                    let hit = map
                        .keys()
                        .any(|seen: &String| seen.eq_ignore_ascii_case(&key));
                    // mutants: equivalent in result — the set only answers
                    // faster what the scan answers: building it earlier (`||`,
                    // `<`), or never but on a hit that ends the object anyway
                    // (`!` deleted), refuses exactly the same bodies; only the
                    // cost on huge objects differs, which no test may time.
                    if !hit && map.len() >= Names::LINEAR {
                        let mut set: HashSet<String> =
                            map.keys().map(|k| k.to_ascii_lowercase()).collect();
                        set.insert(key.to_ascii_lowercase());
                        lower = Some(set);
                    }
                    hit
                }
            };
            if repeated {
                let first = map
                    .keys()
                    .find(|seen| seen.eq_ignore_ascii_case(&key))
                    .cloned()
                    .unwrap_or_else(|| key.clone());
                return Err(de::Error::custom(format!(
                    "{DUPLICATE} `{}` and `{}`",
                    shown(&first),
                    shown(&key)
                )));
            }
            let value = access.next_value_seed(Strict)?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_serde_json_reads() {
        let text = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "B": {"c": []}}"#;
        assert_eq!(
            parse_body(text).unwrap(),
            serde_json::from_slice::<Value>(text).unwrap()
        );
    }

    #[test]
    fn refuses_names_equal_ignoring_case_at_any_depth() {
        for text in [
            r#"{"Operations": [], "OPERATIONS": []}"#,
            r#"{"a": 1, "a": 2}"#,
            r#"{"Operations": [{"path": "/Users", "PATH": "/Groups"}]}"#,
            r#"{"x": {"y": {"Value": 1, "value": 2}}}"#,
        ] {
            let err = parse_body(text.as_bytes()).unwrap_err();
            assert_eq!(err.status, 400, "{text}");
            assert_eq!(err.scim_type.map(|t| t.as_str()), Some("invalidSyntax"));
            assert!(err.detail.contains("no single meaning"), "{}", err.detail);
        }
    }

    #[test]
    fn large_objects_are_checked_too() {
        let mut text = String::from("{");
        for i in 0..100 {
            text.push_str(&format!("\"k{i}\": {i},"));
        }
        text.push_str("\"K57\": 0}");
        assert!(parse_body(text.as_bytes()).is_err());
        let ok = text.replace("\"K57\"", "\"k100\"");
        assert_eq!(
            parse_body(ok.as_bytes())
                .unwrap()
                .as_object()
                .unwrap()
                .len(),
            101
        );
    }

    #[test]
    fn trailing_garbage_and_bad_json_are_syntax_errors() {
        for text in ["{} x", "{", "", "[1,]", "{\"a\" 1}"] {
            let err = parse_body(text.as_bytes()).unwrap_err();
            assert!(
                err.detail.contains("not valid JSON"),
                "{text}: {}",
                err.detail
            );
        }
    }

    /// The name set switches from a linear scan to a hash set once it holds
    /// more than `LINEAR` names (a hostile object then costs linear time),
    /// and answers the same before and after the switch.
    #[test]
    fn names_switch_to_a_set_past_the_linear_bound() {
        let names: Vec<String> = (0..=Names::LINEAR).map(|i| format!("N{i}")).collect();
        let lower: Vec<String> = names.iter().map(|n| n.to_lowercase()).collect();
        let mut seen = Names::default();
        for (i, name) in names.iter().enumerate() {
            assert!(seen.insert(name), "{name} is new");
            assert_eq!(
                seen.many.is_some(),
                i + 1 > Names::LINEAR,
                "after {} names",
                i + 1
            );
            assert!(!seen.insert(&lower[0]), "n0 was seen");
            assert!(!seen.insert(&lower[i]), "{name} was seen");
        }
        assert!(seen.insert("other"));
        assert!(!seen.insert("OTHER"));
    }

    /// Every primitive a deserializer may hand over becomes its JSON value,
    /// including `visit_string`, which `serde_json` itself does not call.
    #[test]
    fn the_visitor_maps_each_primitive() {
        type E = serde_json::Error;
        assert_eq!(
            StrictVisitor.visit_string::<E>("x".into()).unwrap(),
            json!("x")
        );
        assert_eq!(StrictVisitor.visit_str::<E>("y").unwrap(), json!("y"));
        assert_eq!(StrictVisitor.visit_bool::<E>(false).unwrap(), json!(false));
        assert_eq!(StrictVisitor.visit_i64::<E>(-3).unwrap(), json!(-3));
        assert_eq!(
            StrictVisitor.visit_u64::<E>(u64::MAX).unwrap(),
            json!(u64::MAX)
        );
        assert_eq!(StrictVisitor.visit_f64::<E>(0.5).unwrap(), json!(0.5));
        assert_eq!(StrictVisitor.visit_f64::<E>(f64::NAN).unwrap(), Value::Null);
        assert_eq!(StrictVisitor.visit_unit::<E>().unwrap(), Value::Null);
        assert_eq!(StrictVisitor.visit_none::<E>().unwrap(), Value::Null);
        assert_eq!(parse_body(br#""a\"b""#).unwrap(), json!("a\"b"));
        assert_eq!(parse_body(b"[false, 2]").unwrap(), json!([false, 2]));
    }

    #[test]
    fn unique_names_of_a_built_value() {
        assert!(has_unique_names(&json!({"a": [{"b": 1, "c": 2}], "d": 1})));
        let mut object = Map::new();
        object.insert("path".into(), json!(1));
        object.insert("PATH".into(), json!(2));
        assert!(!has_unique_names(&json!([{"x": Value::Object(object)}])));
    }
}
