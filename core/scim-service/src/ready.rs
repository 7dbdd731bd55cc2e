//! Ready JSON: a resource answered by copying the body its store keeps as
//! JSON text ([`Backend::get_text`](crate::Backend::get_text)) into the
//! response, with the engine's own members (`id`, `meta`, derived
//! `groups`) spliced in, instead of parsing the text into a tree, editing
//! the tree (`returned` rules, projection) and serializing it again.
//!
//! Only where the copy is what the long way returns: [`splice`] answers
//! `None` as soon as a member would need editing, and the caller takes
//! the long way.

use std::collections::HashMap;

use scimgate_abi::PluginError;
use scimgate_scim::{Attribute, Returned, SchemaCtx};
use serde_json::Value;

use crate::backend::{GroupRef, RecordText};
use crate::resources::Kind;
use crate::service::ScimService;

impl ScimService {
    /// The stored text of `row`, a `kind` resource, with `id`, `meta` and
    /// the derived `groups` spliced in ([`splice`]); `None` when it needs
    /// the long way. `page`: a list page's groups, fetched beforehand.
    pub(crate) fn copy_stored(
        &self,
        kind: &Kind<'_>,
        row: &RecordText,
        base: &str,
        page: Option<&HashMap<String, Vec<GroupRef>>>,
    ) -> Result<Option<Vec<u8>>, PluginError> {
        let rec = &row.record;
        let mut own = vec![
            ("id", Own::Value(Value::String(rec.id.clone()))),
            ("meta", Own::Json(self.meta_json(kind, rec, base))),
        ];
        // As the long way, no `groups` when there are none.
        let groups = if kind.has_groups {
            self.groups(rec, base, page)?
        } else {
            Vec::new()
        };
        if !groups.is_empty() {
            own.push(("groups", Own::Value(Value::Array(groups))));
        }
        Ok(splice(&kind.ctx, &row.text, &own))
    }

    /// [`ScimService::meta`] serialized, written directly (no tree).
    fn meta_json(&self, kind: &Kind<'_>, rec: &crate::backend::Record, base: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        for (i, (name, value)) in self.meta_members(kind, rec, base).iter().enumerate() {
            out.push(if i == 0 { b'{' } else { b',' });
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut out, value);
        }
        out.push(b'}');
        out
    }
}

/// A member the engine adds to a stored body.
pub(crate) enum Own {
    Value(Value),
    /// JSON text the engine wrote (`meta`).
    Json(Vec<u8>),
}

/// The bytes the default projection (no `attributes`/`excludedAttributes`)
/// returns for the stored body `text` with the engine's members `added`;
/// `None` when a member needs editing:
/// - an empty object or array anywhere (the projection drops those; the
///   text is searched for `{}` and `[]`, strings included, to be safe);
/// - an attribute with a `returned: never` or `request` sub-attribute, an
///   extension with such an attribute, an extension that is not an object;
/// - a stored member named as one the engine adds but for case, a key
///   with escapes, a text that is not an object.
///
/// The engine's members replace stored ones of the same name (the stored
/// `id`; the caller adds no empty `groups`, as the long way does not). A
/// `returned: never` or `request` attribute is left out, as the
/// projection leaves it out. Members are written in the byte order of
/// their names, as a serialized `serde_json::Map` is: for a text that is
/// serde_json's own compact serialization (what the SQLite store writes)
/// the bytes are the long way's bytes.
pub(crate) fn splice(ctx: &SchemaCtx<'_>, text: &str, added: &[(&str, Own)]) -> Option<Vec<u8>> {
    if text.contains("{}") || text.contains("[]") {
        return None;
    }
    let stored = members(text)?;
    let mut members: Vec<(&str, Piece<'_>)> = Vec::with_capacity(stored.len() + added.len());
    for (name, value) in stored {
        // The engine's member replaces the stored one of the same name (a
        // stored `id`); a name equal but for case would be a second member.
        if added.iter().any(|(own, _)| *own == name) {
            continue;
        }
        if added.iter().any(|(own, _)| own.eq_ignore_ascii_case(name)) {
            return None;
        }
        match verdict(ctx, name, value.starts_with('{')) {
            Verdict::Copy => members.push((name, Piece::Stored(value))),
            Verdict::Omit => {}
            Verdict::Edit => return None,
        }
    }
    for (name, own) in added {
        let is_object = match own {
            Own::Value(value) => value.is_object(),
            Own::Json(text) => text.first() == Some(&b'{'),
        };
        match verdict(ctx, name, is_object) {
            Verdict::Copy => members.push((name, Piece::Made(own))),
            Verdict::Omit => {}
            Verdict::Edit => return None,
        }
    }
    members.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::with_capacity(text.len() + 320);
    out.push(b'{');
    for (i, (name, piece)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Stored names have no escapes (`members`), the engine's neither.
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        match piece {
            Piece::Stored(raw) => out.extend_from_slice(raw.as_bytes()),
            Piece::Made(Own::Value(value)) => serde_json::to_writer(&mut out, value).ok()?,
            Piece::Made(Own::Json(text)) => out.extend_from_slice(text),
        }
    }
    out.push(b'}');
    Some(out)
}

/// What the default projection does with one top-level member.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Kept as it is.
    Copy,
    /// Left out whole (`returned: never` or `request`).
    Omit,
    /// Kept with parts removed: only the long way can.
    Edit,
}

/// The verdict for the member `name` (its value an object or not), by the
/// rules of `scimgate_scim::projection`: `schemas` is kept, an extension
/// is kept whole when none of its attributes is withheld, a core or
/// common attribute by its `returned` and its sub-attributes', a member
/// the schema does not know is kept.
fn verdict(ctx: &SchemaCtx<'_>, name: &str, is_object: bool) -> Verdict {
    if name.eq_ignore_ascii_case("schemas") {
        return Verdict::Copy;
    }
    if let Some(extension) = ctx.extension(name) {
        return if is_object && extension.attributes.iter().all(shown_whole) {
            Verdict::Copy
        } else {
            Verdict::Edit
        };
    }
    let attribute = ctx
        .core
        .and_then(|core| ctx.resolve_name(Some(&core.id), name))
        .map(|(_, attribute)| attribute);
    match attribute {
        None => Verdict::Copy,
        Some(attribute) if !shown(attribute.returned) => Verdict::Omit,
        Some(attribute) if shown_whole(attribute) => Verdict::Copy,
        Some(_) => Verdict::Edit,
    }
}

/// Returned without being asked for.
fn shown(returned: Returned) -> bool {
    matches!(returned, Returned::Default | Returned::Always)
}

/// Returned, with every sub-attribute, without being asked for.
fn shown_whole(attribute: &Attribute) -> bool {
    shown(attribute.returned)
        && attribute
            .sub_attributes
            .iter()
            .all(|sub| shown(sub.returned))
}

/// One member's value in the response.
enum Piece<'a> {
    /// As the store keeps it.
    Stored(&'a str),
    /// Made by the engine.
    Made(&'a Own),
}

/// A JSON object's members in their order, each name and the text of its
/// value, borrowed from `text`; `None` for anything else, and for a name
/// with escapes (it cannot be borrowed, nor written back as it is). A
/// scan, not a parse: strings are followed to their closing quote, arrays
/// and objects to their closing bracket, and a scalar must be a number's
/// characters or `true`, `false`, `null` (tested against serde_json).
fn members(text: &str) -> Option<Vec<(&str, &str)>> {
    let bytes = text.as_bytes();
    let mut at = skip_space(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return None;
    }
    at = skip_space(bytes, at + 1);
    let mut entries = Vec::with_capacity(16);
    if bytes.get(at) == Some(&b'}') {
        return (skip_space(bytes, at + 1) == bytes.len()).then_some(entries);
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return None;
        }
        let name_end = string_end(bytes, at)?;
        let name = &text[at + 1..name_end - 1];
        if name.contains('\\') {
            return None;
        }
        at = skip_space(bytes, name_end);
        if bytes.get(at) != Some(&b':') {
            return None;
        }
        let start = skip_space(bytes, at + 1);
        let end = value_end(bytes, start)?;
        entries.push((name, &text[start..end]));
        at = skip_space(bytes, end);
        match bytes.get(at) {
            Some(b',') => at = skip_space(bytes, at + 1),
            Some(b'}') => {
                return (skip_space(bytes, at + 1) == bytes.len()).then_some(entries);
            }
            _ => return None,
        }
    }
}

fn skip_space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// Past the closing quote of the string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    loop {
        match *bytes.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => at += 2,
            b if b < 0x20 => return None,
            _ => at += 1,
        }
    }
}

/// Past the value starting at `start`.
fn value_end(bytes: &[u8], start: usize) -> Option<usize> {
    match *bytes.get(start)? {
        b'"' => string_end(bytes, start),
        b'{' | b'[' => {
            // Brackets matched pairwise, strings skipped.
            let mut open = vec![bytes[start]];
            let mut at = start + 1;
            while let Some(&b) = bytes.get(at) {
                match b {
                    b'"' => {
                        at = string_end(bytes, at)?;
                        continue;
                    }
                    b'{' | b'[' => open.push(b),
                    b'}' | b']' => {
                        let expected = if b == b'}' { b'{' } else { b'[' };
                        if open.pop() != Some(expected) {
                            return None;
                        }
                        if open.is_empty() {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            None
        }
        _ => {
            let end = bytes[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(bytes.len(), |n| start + n);
            let scalar = &bytes[start..end];
            let number = !scalar.is_empty()
                && scalar
                    .iter()
                    .all(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'));
            (number || matches!(scalar, b"true" | b"false" | b"null")).then_some(end)
        }
    }
}

#[cfg(test)]
mod tests {
    use scimgate_scim::{project_owned, strip_never_owned, AttributeSelection, Registry, Schema};
    use serde_json::json;

    use super::*;

    const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

    /// The core registry; with `extension`, that schema added as an
    /// optional User extension.
    fn registry(extension: Option<Value>) -> Registry {
        let mut registry = Registry::core();
        if let Some(schema) = extension {
            let urn = schema["id"].as_str().expect("id").to_string();
            registry
                .add_schema(Schema::from_json(&schema).expect("schema"))
                .expect("add");
            registry.add_extension("User", &urn, false).expect("extend");
        }
        registry
    }

    /// What the engine adds to a stored User body: `groups` only when
    /// there are some (as `copy_stored` and the long way render).
    fn own(groups: Value) -> Vec<(&'static str, Value)> {
        let mut own = vec![
            ("id", json!("2819c223-7f76-453a-919d-413861904646")),
            (
                "meta",
                json!({"resourceType": "User", "created": "2026-12-04T10:00:00.000Z",
                    "lastModified": "2026-12-04T10:00:00.000Z",
                    "location": "https://h/scim/v2/Users/2819c223-7f76-453a-919d-413861904646",
                    "version": "W/\"3\""}),
            ),
        ];
        if groups.as_array().is_some_and(|groups| !groups.is_empty()) {
            own.push(("groups", groups));
        }
        own
    }

    /// `added` as the engine hands it over: `meta` as JSON text.
    fn owned(added: &[(&'static str, Value)]) -> Vec<(&'static str, Own)> {
        added
            .iter()
            .map(|(name, value)| match *name {
                "meta" => (*name, Own::Json(serde_json::to_vec(value).expect("json"))),
                _ => (*name, Own::Value(value.clone())),
            })
            .collect()
    }

    /// The long way: the body parsed, the engine's members inserted,
    /// `never` stripped, projected, serialized.
    fn long_way(ctx: &SchemaCtx<'_>, body: &Value, added: &[(&str, Value)]) -> Vec<u8> {
        let mut tree = body.as_object().cloned().expect("object");
        for (name, value) in added {
            tree.insert((*name).to_string(), value.clone());
        }
        let shown = project_owned(
            ctx,
            strip_never_owned(ctx, Value::Object(tree)),
            &AttributeSelection::default(),
        );
        serde_json::to_vec(&shown).expect("json")
    }

    fn bjensen() -> Value {
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": "bjensen",
            "externalId": "e-1",
            "name": {"givenName": "Barbara", "familyName": "Jensen", "formatted": "Ms. Barbara J Jensen III"},
            "displayName": "Babs \"B\" Jensen\n\u{1f600} Zoë \\ </script>",
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true},
                       {"value": "babs@jensen.org", "type": "home"}],
            "active": true,
            "x-unknown": {"deep": [1, 2.5, -3e-7, null, "\u{0}"]},
            ENTERPRISE: {"employeeNumber": "701984", "manager": {"value": "26118915", "displayName": "John Smith"}},
        })
    }

    /// serde_json's reading of an object's members, borrowed: what
    /// `members` must agree with.
    fn members_by_serde(text: &str) -> Option<Vec<(&str, &str)>> {
        use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
        use serde_json::value::RawValue;
        struct Members<'a>(Vec<(&'a str, &'a RawValue)>);
        impl<'de> Deserialize<'de> for Members<'de> {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Entries;
                impl<'de> Visitor<'de> for Entries {
                    type Value = Members<'de>;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Members<'de>, A::Error> {
                        let mut entries = Vec::new();
                        while let Some(entry) = map.next_entry::<&'de str, &'de RawValue>()? {
                            entries.push(entry);
                        }
                        Ok(Members(entries))
                    }
                }
                deserializer.deserialize_map(Entries)
            }
        }
        let Members(entries) = serde_json::from_str(text).ok()?;
        Some(entries.into_iter().map(|(k, v)| (k, v.get())).collect())
    }

    #[test]
    fn members_are_scanned_as_serde_json_reads_them() {
        let valid = [
            r#"{}"#,
            r#" { } "#,
            r#"{"a":1}"#,
            r#"{"id":"2819c223","userName":"bjensen","active":true,"x":null,"n":-1.5e+3,"f":false}"#,
            r#"{"name":{"givenName":"Bär","familyName":"O\"Brien}{"},"emails":[{"value":"a@b","primary":true},{"value":"c]d"}]}"#,
            r#"{"s":"back\\slash","t":"\u00e9\n","deep":[[[{"k":[1,{"z":"]}"}]}]]],"e":[],"o":{}}"#,
            "{\n  \"spaced\" : [ 1 , 2 ] ,\t\"b\" : { \"c\" : \"d\" }\r\n}",
            r#"{"dup":1,"dup":2}"#,
        ];
        for text in valid {
            let expected = members_by_serde(text).expect(text);
            assert_eq!(members(text), Some(expected), "{text}");
        }
        // The stored bodies of a real write, with the enterprise extension.
        let user = serde_json::to_string(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "userName": "user\u{1}\"quoted\"", "name": {"formatted": "A \\ B"},
            ENTERPRISE: {"manager": {"value": "26118915", "displayName": "[Boss]"}},
        }))
        .unwrap();
        assert_eq!(members(&user), members_by_serde(&user));
        let refused = [
            "",
            "[]",
            r#""text""#,
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":"open}"#,
            r#"{"a":[1,2}"#,
            r#"{"a":{"b":[}]}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul,"b":2}"#,
            r#"{"a":}"#,
            r#"{"a":1 2}"#,
            "{\"a\":\"line\nbreak\"}",
            // A name with escapes cannot be written back as it is.
            r#"{"\u0061":1}"#,
            r#"{"a\"b":1}"#,
        ];
        for text in refused {
            assert_eq!(members(text), None, "{text}");
        }
    }

    #[test]
    fn a_copy_is_byte_for_byte_the_long_way() {
        let registry = registry(None);
        let ctx = registry.context_for("User").expect("ctx");
        let groups = json!([{"value": "g-1", "$ref": "https://h/scim/v2/Groups/g-1",
            "type": "direct", "display": "Tour Guides"}]);
        let mut with_password = bjensen();
        with_password["password"] = json!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA");
        for (what, body, added) in [
            ("plain", bjensen(), own(json!([]))),
            ("in a group", bjensen(), own(groups.clone())),
            ("with a password", with_password, own(groups)),
            ("minimal", json!({"userName": "a"}), own(json!([]))),
            // The stored id (the SQL stores keep it) is replaced, whatever it says.
            (
                "a stored id",
                json!({"id": "stale", "userName": "a"}),
                own(json!([])),
            ),
            // A stored `groups` stays unless the engine derives some.
            (
                "a stored groups",
                json!({"groups": [{"value": "g"}], "userName": "a"}),
                own(json!([])),
            ),
            (
                "stored and derived groups",
                json!({"groups": [{"value": "g"}], "userName": "a"}),
                own(json!([{"value": "h"}])),
            ),
        ] {
            let text = body.to_string();
            let copied = splice(&ctx, &text, &owned(&added))
                .unwrap_or_else(|| panic!("{what}: should be copied"));
            assert_eq!(
                String::from_utf8_lossy(&copied),
                String::from_utf8_lossy(&long_way(&ctx, &body, &added)),
                "{what}"
            );
        }
        // The password is left out, never copied.
        let text = json!({"userName": "a", "password": "secret-hash"}).to_string();
        let copied = splice(&ctx, &text, &owned(&own(json!([])))).expect("copied");
        assert!(!String::from_utf8_lossy(&copied).contains("secret-hash"));
    }

    #[test]
    fn what_needs_editing_takes_the_long_way() {
        let keys = json!({"id": "urn:example:Keys", "name": "Keys", "attributes": [
            {"name": "keys", "type": "complex", "multiValued": true, "subAttributes": [
                {"name": "label", "type": "string"},
                {"name": "secret", "type": "string", "returned": "never"}]},
            {"name": "badge", "type": "string", "returned": "request"}]});
        let registry = registry(Some(keys));
        let ctx = registry.context_for("User").expect("ctx");
        let added = own(json!([]));
        for (what, text) in [
            (
                "an empty array",
                r#"{"emails":[],"userName":"a"}"#.to_string(),
            ),
            (
                "an empty object",
                r#"{"name":{},"userName":"a"}"#.to_string(),
            ),
            (
                "a stored meta, in another case",
                r#"{"Meta":{"x":1},"userName":"a"}"#.to_string(),
            ),
            (
                "an extension with withheld attributes",
                json!({"userName": "a",
                "urn:example:Keys": {"keys": [{"label": "l", "secret": "s"}]}})
                .to_string(),
            ),
            (
                "an extension that is not an object",
                json!({"userName": "a",
                ENTERPRISE: "x"})
                .to_string(),
            ),
            ("a key with an escape", r#"{"user\nName":"a"}"#.to_string()),
            ("not an object", "[1,2]".to_string()),
            ("not JSON", r#"{"userName":"a""#.to_string()),
        ] {
            assert_eq!(splice(&ctx, &text, &owned(&added)), None, "{what}");
        }
        // Each of those the long way handles (the parseable ones): the copy
        // would have differed.
        let body =
            json!({"userName": "a", "urn:example:Keys": {"keys": [{"label": "l", "secret": "s"}]}});
        assert!(!String::from_utf8_lossy(&long_way(&ctx, &body, &added)).contains("secret"));
    }

    #[test]
    fn verdicts_follow_the_returned_rules() {
        let registry = registry(None);
        let ctx = registry.context_for("User").expect("ctx");
        assert_eq!(verdict(&ctx, "userName", false), Verdict::Copy);
        assert_eq!(verdict(&ctx, "USERNAME", false), Verdict::Copy);
        assert_eq!(verdict(&ctx, "password", false), Verdict::Omit);
        assert_eq!(verdict(&ctx, "schemas", false), Verdict::Copy);
        assert_eq!(verdict(&ctx, "notInTheSchema", false), Verdict::Copy);
        assert_eq!(verdict(&ctx, ENTERPRISE, true), Verdict::Copy);
        assert_eq!(verdict(&ctx, ENTERPRISE, false), Verdict::Edit);
    }
}
