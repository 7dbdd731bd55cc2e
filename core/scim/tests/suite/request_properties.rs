//! Generated-input properties of the request model: path canonicalisation,
//! the target resolver, the strict body reader and the Bulk reader never
//! panic, and a path built from a known meaning, however it is encoded,
//! resolves back to that meaning. `SCIMGATE_PROPTEST_CASES` sets the case
//! count (default 512) for a longer run.

use proptest::prelude::*;
use scimgate_abi::path::canonicalize;
use scimgate_scim::{parse_body, BulkRequest, Target};
use serde_json::{json, Value};

fn cases() -> u32 {
    std::env::var("SCIMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

/// A segment's text: anything but `/`, control characters and dot-only names.
fn segment() -> impl Strategy<Value = String> {
    // No `%`, `?` or `#`: encoded, they have no single meaning (a second
    // decoding or a URL parser would read them as syntax) and are refused.
    "[A-Za-z0-9 ._~!$&'()*+,;=:@é\u{4e2d}-]{1,12}"
        .prop_filter("dot segments have no single meaning", |s| {
            s != "." && s != ".."
        })
}

/// Percent-encodes each byte of `text` whose choice bit says so; `%`, `?`
/// and `#` always (they cannot appear raw in a URI path with this meaning).
fn encode(text: &str, choices: &[bool]) -> String {
    let mut out = String::new();
    for (i, b) in text.bytes().enumerate() {
        let forced = matches!(b, b'%' | b'?' | b'#') || !b.is_ascii();
        if forced
            || choices
                .get(i % choices.len().max(1))
                .copied()
                .unwrap_or(false)
        {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn canonicalisation_never_panics_and_its_output_is_plain(raw in "\\PC{0,40}|[/%.a-zA-Z0-9\\\\]{0,40}") {
        if let Ok(path) = canonicalize(&raw) {
            prop_assert!(path.starts_with('/'));
            prop_assert!(path == "/" || !path.ends_with('/'));
            prop_assert!(!path.contains("//"), "{path}");
            for segment in path.split('/').skip(1) {
                prop_assert!(segment != "." && segment != "..", "{path}");
            }
            prop_assert!(!path.chars().any(char::is_control), "{path:?}");
            prop_assert!(!path.contains('\\'), "{path}");
            let _ = Target::resolve(&path);
        }
    }

    #[test]
    fn any_encoding_of_a_path_means_the_same(
        segments in prop::collection::vec(segment(), 1..5),
        choices in prop::collection::vec(any::<bool>(), 1..16),
        trailing_slash in any::<bool>(),
    ) {
        let plain = format!("/{}", segments.join("/"));
        let mut raw = format!(
            "/{}",
            segments.iter().map(|s| encode(s, &choices)).collect::<Vec<_>>().join("/")
        );
        if trailing_slash {
            raw.push('/');
        }
        prop_assert_eq!(canonicalize(&raw), Ok(plain.clone()), "raw {}", raw);
        // The same meaning with an encoded slash, a doubled slash or a dot
        // segment inserted has none.
        let with_slash = format!("{raw}%2Fx");
        prop_assert!(canonicalize(&with_slash).is_err());
        for delimiter in ["%25", "%3F", "%23"] {
            let with_delimiter = format!("{}{delimiter}x", raw.trim_end_matches('/'));
            prop_assert!(canonicalize(&with_delimiter).is_err(), "{}", with_delimiter);
        }
        let doubled = format!("/{}//x", raw.trim_matches('/'));
        prop_assert!(canonicalize(&doubled).is_err());
        let dotted = format!("{}/../x", raw.trim_end_matches('/'));
        prop_assert!(canonicalize(&dotted).is_err());
    }

    #[test]
    fn fixed_names_resolve_in_any_case(
        which in 0usize..6,
        upper in prop::collection::vec(any::<bool>(), 1..24),
        id in "[A-Za-z0-9-]{1,20}",
    ) {
        let names = ["ServiceProviderConfig", "ResourceTypes", "Schemas", "Bulk", "Me", ".search"];
        let name: String = names[which]
            .chars()
            .zip(upper.iter().cycle())
            .map(|(c, up)| if *up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        let path = canonicalize(&format!("/{name}/")).unwrap();
        let target = Target::resolve(&path);
        prop_assert_eq!(target.type_name(), Some(names[which]));
        let item = format!("/{name}/{id}");
        let nested = Target::resolve(&item);
        match which {
            1 => prop_assert_eq!(nested, Target::ResourceTypes(Some(id.as_str()))),
            2 => prop_assert_eq!(nested, Target::Schemas(Some(id.as_str()))),
            _ => prop_assert!(matches!(nested, Target::Nothing(_)), "{:?}", nested),
        }
    }

    #[test]
    fn resource_paths_resolve_to_their_endpoint_and_id(
        endpoint in "[A-Za-z][A-Za-z0-9]{0,10}",
        id in "[A-Za-z0-9 &=+;:@-]{1,20}",
        choices in prop::collection::vec(any::<bool>(), 1..8),
    ) {
        let fixed = ["ServiceProviderConfig", "ResourceTypes", "Schemas", "Bulk", "Me"];
        prop_assume!(!fixed.iter().any(|f| f.eq_ignore_ascii_case(&endpoint)));
        prop_assume!(!id.eq_ignore_ascii_case(".search"));
        let path = canonicalize(&format!("/{}/{}", encode(&endpoint, &choices), encode(&id, &choices))).unwrap();
        prop_assert_eq!(Target::resolve(&path), Target::Resource(&endpoint, &id));
    }

    #[test]
    fn the_body_reader_agrees_with_serde_json_or_refuses(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(value) = parse_body(&bytes) {
            prop_assert_eq!(Some(value), serde_json::from_slice::<Value>(&bytes).ok());
        }
    }

    #[test]
    fn the_body_reader_refuses_exactly_the_case_duplicates(
        keys in prop::collection::vec("[a-cA-C]{1,2}", 0..6),
    ) {
        let text = format!(
            "{{{}}}",
            keys.iter().enumerate().map(|(i, k)| format!("\"{k}\": {i}")).collect::<Vec<_>>().join(",")
        );
        let mut lower: Vec<String> = keys.iter().map(|k| k.to_ascii_lowercase()).collect();
        lower.sort();
        let unique = lower.windows(2).all(|w| w[0] != w[1]);
        prop_assert_eq!(parse_body(text.as_bytes()).is_ok(), unique, "{}", text);
    }

    #[test]
    fn the_bulk_reader_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = BulkRequest::from_slice(&bytes);
    }

    #[test]
    fn the_bulk_reader_never_panics_on_bulk_shaped_values(
        ops in prop::collection::vec(
            (
                prop_oneof![Just(json!("POST")), Just(json!("delete")), Just(json!(7)), Just(Value::Null), "[a-zA-Z]{0,6}".prop_map(Value::from)],
                prop_oneof![Just(json!("/Users")), Just(json!("Groups/1")), Just(json!("/a/../b")), Just(json!(["x"])), "[/%a-zA-Z0-9.]{0,12}".prop_map(Value::from)],
                prop::option::of("[a-z]{0,4}"),
            ),
            0..6,
        ),
        fail in prop_oneof![Just(Value::Null), Just(json!(0)), Just(json!(2)), Just(json!("x"))],
    ) {
        let operations: Vec<Value> = ops
            .into_iter()
            .map(|(method, path, bulk_id)| json!({"method": method, "path": path, "bulkId": bulk_id, "data": {}}))
            .collect();
        let body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"],
            "Operations": operations,
            "failOnErrors": fail,
        });
        if let Ok(request) = BulkRequest::parse(&body) {
            for op in request.operations.iter().flatten() {
                prop_assert_eq!(canonicalize(&op.path), Ok(op.path.clone()));
                let _ = op.target();
            }
        }
    }
}
