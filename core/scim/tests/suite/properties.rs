//! Property tests: filter print/parse round trip, and no panics, no half-applied
//! PATCH, bounded time on arbitrary input to the parser, validation and PATCH.

use super::fixtures::{bjensen, group};
use proptest::prelude::*;
use scimgate_scim::filter::{parse_filter, AttrPath, CompValue, CompareOp, Filter, PatchPath};
use scimgate_scim::patch::{apply_patch, PatchRequest};
use scimgate_scim::{validate_create, Registry};
use serde_json::{json, Number, Value};

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("userName".to_string()),
        Just("emails".to_string()),
        Just("name".to_string()),
        Just("$ref".to_string()),
        Just("not".to_string()),
        Just("and".to_string()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        prop::option::of(prop_oneof![
            Just("urn:ietf:params:scim:schemas:core:2.0:User".to_string()),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
        ]),
        attr_name(),
        prop::option::of(attr_name()),
    )
        .prop_map(|(urn, attr, sub_attr)| AttrPath {
            urn,
            attr,
            sub_attr,
        })
}

fn simple_path() -> impl Strategy<Value = AttrPath> {
    attr_name().prop_map(|attr| AttrPath::new(&attr))
}

fn literal() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(Number::from(n))),
        any::<u64>().prop_map(|n| CompValue::Number(Number::from(n))),
        (-1.0e300f64..1.0e300)
            .prop_filter_map("finite", |f| Number::from_f64(f).map(CompValue::Number)),
        any::<String>().prop_map(CompValue::String),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

fn filter_over(path: BoxedStrategy<AttrPath>, allow_value_path: bool) -> BoxedStrategy<Filter> {
    let leaf = prop_oneof![
        (path.clone(), op(), literal()).prop_map(|(path, op, value)| Filter::Compare {
            path,
            op,
            value
        }),
        path.clone().prop_map(Filter::Present),
    ];
    let leaf = if allow_value_path {
        prop_oneof![
            3 => leaf,
            1 => (attr_name(), filter_over(simple_path().boxed(), false))
                .prop_map(|(attr, filter)| Filter::ValuePath { attr: AttrPath::new(&attr), filter: Box::new(filter) }),
        ]
        .boxed()
    } else {
        leaf.boxed()
    };
    leaf.prop_recursive(5, 32, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::And(Box::new(l), Box::new(r))),
            (inner.clone(), inner.clone()).prop_map(|(l, r)| Filter::Or(Box::new(l), Box::new(r))),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
    .boxed()
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        prop_oneof![
            Just("work".to_string()),
            Just("2011-05-13T04:42:34Z".to_string()),
            ".{0,8}"
        ]
        .prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..4)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn json_key() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("value".to_string()),
        Just("type".to_string()),
        Just("primary".to_string()),
        Just("emails".to_string()),
        Just("name".to_string()),
        Just("givenName".to_string()),
        Just("members".to_string()),
        Just("active".to_string()),
        Just("userName".to_string()),
        Just("displayName".to_string()),
        Just("id".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
        Just("employeeNumber".to_string()),
        Just("manager".to_string()),
        "[a-z]{1,6}",
    ]
}

fn patch_path_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("emails".to_string()),
        Just("emails[type eq \"work\"]".to_string()),
        Just("emails[type eq \"work\"].value".to_string()),
        Just("name.givenName".to_string()),
        Just("name".to_string()),
        Just("userName".to_string()),
        Just("active".to_string()),
        Just("members".to_string()),
        Just("members[value eq \"2819c223-7f76-453a-919d-413861904646\"]".to_string()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".to_string()),
        Just(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber".to_string()
        ),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_string()),
        Just("id".to_string()),
        Just("emails[primary eq true]".to_string()),
        ".{0,12}",
    ]
}

fn operation() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just("add"),
            Just("remove"),
            Just("replace"),
            Just("Replace")
        ],
        prop::option::of(patch_path_text()),
        prop::option::of(arbitrary_json()),
    )
        .prop_map(|(op, path, value)| {
            let mut operation = json!({"op": op});
            if let Some(path) = path {
                operation["path"] = json!(path);
            }
            if let Some(value) = value {
                operation["value"] = value;
            }
            operation
        })
}

/// An operation that fails on any User or Group, whatever came before it.
fn failing_operation() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"op": "remove"})),
        Just(json!({"op": "add", "path": "noSuchAttribute", "value": "x"})),
        Just(json!({"op": "add", "path": "displayName"})),
        Just(json!({"op": "replace", "path": "schemas", "value": []})),
        Just(json!({"op": "add", "value": {"noSuchAttribute": 1}})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn filter_print_parse_round_trip(filter in filter_over(attr_path().boxed(), true)) {
        let printed = filter.to_string();
        let reparsed = parse_filter(&printed);
        prop_assert_eq!(reparsed.as_ref(), Ok(&filter), "printed: {}", printed);
    }

    #[test]
    fn parser_never_panics(text in ".{0,200}") {
        let _ = parse_filter(&text);
        let _ = PatchPath::parse(&text);
    }

    #[test]
    fn parser_never_panics_on_filter_like_text(
        parts in prop::collection::vec(prop_oneof![
            Just("("), Just(")"), Just("["), Just("]"), Just(" and "), Just(" or "), Just("not"), Just(" eq "),
            Just(" pr"), Just("\"x\""), Just("\"\\u"), Just("1e"), Just("-"), Just("emails"), Just("."), Just(":"),
            Just("urn:a:b"), Just(" "), Just("\\"), Just("é"), Just("true"),
        ], 0..40)
    ) {
        let text: String = parts.concat();
        let registry = Registry::core();
        let context = registry.context_for("User").map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Ok(filter) = parse_filter(&text) {
            let _ = filter.matches(&bjensen(), &context);
            prop_assert_eq!(parse_filter(&filter.to_string()), Ok(filter));
        }
    }

    #[test]
    fn validation_never_panics(resource in arbitrary_json()) {
        let registry = Registry::core();
        let context = registry.context_for("User").map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut resource = resource;
        if let Some(object) = resource.as_object_mut() {
            object.insert("schemas".into(), json!(["urn:ietf:params:scim:schemas:core:2.0:User"]));
        }
        let _ = validate_create(&context, &resource);
    }

    /// `apply_patch` takes the resource by reference, so it cannot change
    /// it; what "all or nothing" means for its callers is that a request with
    /// a failing operation anywhere returns an error and no resource at all
    /// (never the state before, or after skipping, the failing operation),
    /// so that the copy-then-commit the service does (store only on `Ok`)
    /// leaves the stored resource as it was.
    #[test]
    fn patch_is_all_or_nothing(
        operations in prop::collection::vec(operation(), 0..6),
        failing in failing_operation(),
        at in any::<prop::sample::Index>(),
        use_group in any::<bool>(),
    ) {
        let registry = Registry::core();
        let (name, original) = if use_group { ("Group", group()) } else { ("User", bjensen()) };
        let context = registry.context_for(name).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let position = at.index(operations.len() + 1);
        let mut with_failure = operations.clone();
        with_failure.insert(position, failing);
        let request = |operations: &[Value]| {
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations});
            let body = scimgate_scim::dialect::normalize_patch_request(&body, &context);
            PatchRequest::parse(&body)
        };
        if let Ok(request) = request(&with_failure) {
            // The service's path: patch the stored value, commit only on Ok.
            let mut stored = original.clone();
            let result = apply_patch(&context, &stored, &request);
            let error = result.as_ref().err().cloned();
            if let Ok(patched) = result {
                stored = patched;
            }
            let error = error.ok_or_else(|| TestCaseError::fail(format!(
                "operation {position} always fails, yet the request succeeded: {with_failure:?}"
            )))?;
            // The error is that of the failing operation or of one before it.
            let index: usize = error.detail.strip_prefix("Operations[")
                .and_then(|rest| rest.split(']').next())
                .and_then(|index| index.parse().ok())
                .ok_or_else(|| TestCaseError::fail(format!("no operation index in '{}'", error.detail)))?;
            prop_assert!(index <= position, "error at {} after the failing {}: {}", index, position, error.detail);
            prop_assert_eq!(&stored, &original);
        }
        if let Ok(request) = request(&operations) {
            if let Ok(patched) = apply_patch(&context, &original, &request) {
                // the result is itself a valid stored resource, the same every time
                prop_assert!(scimgate_scim::validate::validate_stored(&context, &patched).is_ok());
                prop_assert_eq!(apply_patch(&context, &original, &request), Ok(patched));
            }
        }
    }
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for text in [
        "(".repeat(10_000),
        "not(".repeat(10_000),
        format!("a[{}", "(".repeat(10_000)),
        "[".repeat(10_000),
    ] {
        assert!(parse_filter(&text).is_err());
        assert!(PatchPath::parse(&text).is_err());
    }
}
