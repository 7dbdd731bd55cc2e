//! Filter evaluation operator by operator: every comparison operator just
//! below, at and above the attribute's value, case-exact and caseless,
//! ASCII and not, numbers of each JSON kind, date-times, booleans, `pr` and
//! value paths — so that a changed comparison fails a test (mutation
//! testing of `filter.rs`).

use scimgate_scim::filter::parse_filter;
use scimgate_scim::{Registry, SchemaCtx, ScimType};
use serde_json::{json, Value};

fn check_all(resource: &Value, context: &SchemaCtx<'_>, cases: &[(&str, bool)]) {
    for (text, want) in cases {
        let filter = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(
            filter.matches(resource, context),
            Ok(*want),
            "{text} on {resource}"
        );
    }
}

fn refused_all(resource: &Value, context: &SchemaCtx<'_>, cases: &[&str]) {
    for text in cases {
        let filter = parse_filter(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let error = filter.matches(resource, context).expect_err(text);
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{text}");
    }
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "Mmm",
        "userName": "Mmm",
        "displayName": "Émile",
        "title": "",
        "nickName": null,
        "active": true,
        "name": {"givenName": "", "familyName": null},
        "emails": [{"value": "a@example.com", "type": "work"}, {"value": null, "type": "home"}, null],
        "phoneNumbers": [],
        "meta": {"lastModified": "2011-05-13T04:42:34Z"}
    })
}

#[test]
fn caseless_ascii_strings() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    check_all(
        &user(),
        &context,
        &[
            (r#"userName eq "mMM""#, true),
            (r#"userName eq "mm""#, false),
            (r#"userName ne "MMM""#, false),
            (r#"userName ne "m""#, true),
            (r#"userName co "MM""#, true),
            (r#"userName co "x""#, false),
            (r#"userName co """#, true),
            (r#"userName co "mmmm""#, false),
            (r#"userName sw "mM""#, true),
            (r#"userName sw "mmmm""#, false),
            (r#"userName sw "x""#, false),
            (r#"userName ew "MM""#, true),
            (r#"userName ew "xmmm""#, false),
            (r#"userName ew "a""#, false),
            (r#"userName gt "mml""#, true),
            (r#"userName gt "MMM""#, false),
            (r#"userName gt "mmn""#, false),
            (r#"userName ge "MMM""#, true),
            (r#"userName ge "mml""#, true),
            (r#"userName ge "mmn""#, false),
            (r#"userName lt "mmn""#, true),
            (r#"userName lt "MMM""#, false),
            (r#"userName lt "mml""#, false),
            (r#"userName le "MMM""#, true),
            (r#"userName le "MMN""#, true),
            (r#"userName le "mml""#, false),
        ],
    );
}

#[test]
fn case_exact_strings() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    check_all(
        &user(),
        &context,
        &[
            (r#"id eq "Mmm""#, true),
            (r#"id eq "mmm""#, false),
            (r#"id ne "mmm""#, true),
            (r#"id ne "Mmm""#, false),
            (r#"id co "mm""#, true),
            (r#"id co "MM""#, false),
            (r#"id sw "Mm""#, true),
            (r#"id sw "mm""#, false),
            (r#"id ew "mm""#, true),
            (r#"id ew "Mm""#, false),
            (r#"id gt "Mml""#, true),
            (r#"id gt "Mmm""#, false),
            (r#"id gt "Mmn""#, false),
            (r#"id ge "Mmm""#, true),
            (r#"id ge "Mml""#, true),
            (r#"id ge "Mmn""#, false),
            (r#"id lt "Mmn""#, true),
            (r#"id lt "Mmm""#, false),
            (r#"id lt "Mml""#, false),
            (r#"id le "Mmm""#, true),
            (r#"id le "Mmn""#, true),
            (r#"id le "Mml""#, false),
        ],
    );
}

#[test]
fn caseless_non_ascii_strings() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    check_all(
        &user(),
        &context,
        &[
            (r#"displayName eq "éMILE""#, true),
            (r#"displayName eq "émil""#, false),
            (r#"displayName ne "ÉMILE""#, false),
            (r#"displayName co "MIL""#, true),
            (r#"displayName sw "éM""#, true),
            (r#"displayName ew "LE""#, true),
            (r#"displayName ew "É""#, false),
            (r#"displayName gt "émild""#, true),
            (r#"displayName gt "émilf""#, false),
            (r#"displayName ge "ÉMILE""#, true),
            (r#"displayName lt "émilf""#, true),
            (r#"displayName lt "émild""#, false),
            (r#"displayName le "ÉMILE""#, true),
            (r#"displayName le "émild""#, false),
            // ASCII against non-ASCII goes the same way.
            (r#"userName eq "Mmm""#, true),
            (r#"userName eq "Mmé""#, false),
        ],
    );
}

#[test]
fn numbers_of_each_json_kind() {
    let resource = json!({"n": 5, "big": 18446744073709551615u64, "f": 2.5, "neg": -3, "s": "5"});
    let context = SchemaCtx::schemaless();
    check_all(
        &resource,
        &context,
        &[
            ("n eq 5", true),
            ("n eq 5.0", true),
            ("n ne 5", false),
            ("n ne 4", true),
            ("n gt 4", true),
            ("n gt 5", false),
            ("n ge 5", true),
            ("n ge 6", false),
            ("n lt 6", true),
            ("n lt 5", false),
            ("n le 5", true),
            ("n le 4", false),
            ("big gt 18446744073709551614", true),
            ("big eq 18446744073709551615", true),
            ("big lt 18446744073709551615", false),
            ("big gt -1", true),
            ("f gt 2", true),
            ("f lt 3", true),
            ("f eq 2.5", true),
            ("f le 2.4", false),
            ("neg lt 0", true),
            ("neg gt -4", true),
            ("neg ge -3", true),
            ("neg gt -3", false),
        ],
    );
    // Types inferred from the values: no string operators on numbers, no
    // strings compared with numbers.
    refused_all(
        &resource,
        &context,
        &["n co 5", "n sw 5", "n ew 5", "s gt 5", r#"n eq "5""#],
    );
}

#[test]
fn date_times_booleans_and_null() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    check_all(
        &user(),
        &context,
        &[
            (r#"meta.lastModified eq "2011-05-13T06:42:34+02:00""#, true),
            (r#"meta.lastModified ne "2011-05-13T06:42:34+02:00""#, false),
            (r#"meta.lastModified ne "2011-05-13T04:42:35Z""#, true),
            (r#"meta.lastModified gt "2011-05-13T04:42:33Z""#, true),
            (r#"meta.lastModified lt "2011-05-13T04:42:35Z""#, true),
            // co/sw/ew compare the text, case-exactly.
            (r#"meta.lastModified sw "2011-05""#, true),
            (r#"meta.lastModified co "t04""#, false),
            (r#"meta.lastModified co "T04""#, true),
            (r#"meta.lastModified ew "34Z""#, true),
            ("active eq true", true),
            ("active eq false", false),
            ("active ne false", true),
            ("active ne true", false),
            ("nickName eq null", true),
            ("title ne null", true),
            ("locale ne null", false),
        ],
    );
    refused_all(
        &user(),
        &context,
        &[
            "active gt true",
            "active co true",
            "active eq 1",
            r#"meta.lastModified gt "yesterday""#,
            "meta.lastModified eq 5",
            "userName eq 5",
            "userName eq true",
            "userName gt null",
            "userName co null",
            "name eq \"x\"",
        ],
    );
    // Why a comparison is refused is part of the answer.
    for (text, why) in [
        (
            "active gt true",
            "only eq, ne and pr apply to a boolean attribute",
        ),
        (
            "active eq 1",
            "a boolean attribute compares with true or false",
        ),
        (
            "meta.lastModified eq 5",
            "a dateTime attribute compares with a date-time string",
        ),
        (r#"meta.lastModified gt "x""#, "not an RFC 3339 date-time"),
        ("userName eq 5", "a string attribute compares with a string"),
        ("name eq \"x\"", "a complex attribute cannot be compared"),
        (
            "userName gt null",
            "operator 'gt' cannot compare 'userName' with null",
        ),
    ] {
        let error = parse_filter(text)
            .and_then(|filter| filter.matches(&user(), &context))
            .expect_err(text);
        assert!(error.detail.contains(why), "{text}: {}", error.detail);
    }
    // Without a schema a boolean is a boolean.
    let context = SchemaCtx::schemaless();
    check_all(
        &json!({"b": false}),
        &context,
        &[("b eq false", true), ("b ne false", false)],
    );
    refused_all(&json!({"b": false}), &context, &["b lt true", "b eq \"x\""]);
}

#[test]
fn presence_needs_a_non_empty_value() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    check_all(
        &user(),
        &context,
        &[
            ("userName pr", true),
            ("title pr", false),
            ("nickName pr", false),
            ("name pr", false),
            ("name.givenName pr", false),
            ("phoneNumbers pr", false),
            ("emails pr", true),
            ("active pr", true),
            ("emails[type pr]", true),
            ("emails[value pr and type eq \"home\"]", false),
            ("emails[value pr and type eq \"work\"]", true),
            ("emails[not (value pr)]", true),
            ("emails[type eq \"home\" or type eq \"x\"]", true),
            ("emails[type eq \"x\" or type eq \"y\"]", false),
            ("emails[type eq \"home\" and value eq null]", true),
            ("emails eq \"a@example.com\"", true),
            ("emails.value eq \"A@EXAMPLE.COM\"", true),
            ("emails.type eq \"home\"", true),
            ("emails.type ne \"home\"", false),
            ("not (emails.type eq \"home\")", false),
            ("userName pr and title pr", false),
            ("userName pr or title pr", true),
            ("title pr or userName pr", true),
            ("title pr and userName pr", false),
        ],
    );
    // Value paths compare the element's own members, in the sub-attribute's type.
    let resource = json!({"emails": [{"value": "A@x", "primary": true}]});
    check_all(
        &resource,
        &context,
        &[
            ("emails[value eq \"a@X\"]", true),
            ("emails[primary eq true]", true),
            ("emails[primary ne true]", false),
        ],
    );
    refused_all(
        &resource,
        &context,
        &["emails[primary gt true]", "emails[value.x eq 1]"],
    );
}

/// A registry with the core schemas and a `Tagged` resource whose attributes
/// the core schemas lack: a case-exact multi-valued string and a
/// multi-valued complex attribute with a multi-valued sub-attribute.
fn tagged_registry() -> Registry {
    let mut registry = Registry::core();
    registry
        .add_schema_json(&json!({
            "id": "urn:example:Tagged",
            "name": "Tagged",
            "attributes": [
                {"name": "tags", "type": "string", "multiValued": true, "caseExact": true},
                {"name": "boxes", "type": "complex", "multiValued": true, "subAttributes": [
                    {"name": "labels", "type": "string", "multiValued": true}
                ]}
            ]
        }))
        .expect("schema");
    registry
        .add_resource_type(scimgate_scim::ResourceType::new(
            "Tagged",
            "/Tagged",
            "urn:example:Tagged",
        ))
        .expect("resource type");
    registry
}

#[test]
fn a_multi_valued_simple_attribute_compares_with_its_own_definition() {
    // `tags` is case-exact: its own definition decides, not the default
    // caseless rule of an attribute without a definition.
    let registry = tagged_registry();
    let context = registry.context_for("Tagged").expect("Tagged");
    let resource = json!({"schemas": ["urn:example:Tagged"], "tags": ["Blue", "red"]});
    check_all(
        &resource,
        &context,
        &[
            (r#"tags eq "Blue""#, true),
            (r#"tags eq "blue""#, false),
            (r#"tags eq "RED""#, false),
            (r#"tags sw "Bl""#, true),
            (r#"tags sw "bl""#, false),
        ],
    );
}

#[test]
fn null_elements_of_nested_arrays_are_skipped_not_kept() {
    // A multi-valued sub-attribute holding a null among its values: the
    // values compared are the non-null ones, on both the dotted path and
    // the value-path form.
    let registry = tagged_registry();
    let context = registry.context_for("Tagged").expect("Tagged");
    let resource = json!({"schemas": ["urn:example:Tagged"],
                          "boxes": [{"labels": [null, "fragile"]}]});
    check_all(
        &resource,
        &context,
        &[
            (r#"boxes.labels eq "fragile""#, true),
            (r#"boxes[labels eq "fragile"]"#, true),
            (r#"boxes[labels pr]"#, true),
            (r#"boxes.labels eq "other""#, false),
        ],
    );
    // Without any schema the same holds.
    let schemaless = SchemaCtx::schemaless();
    let single =
        json!({"box": {"labels": [null, "fragile"]}, "boxes": [{"labels": [null, "fragile"]}]});
    check_all(
        &single,
        &schemaless,
        &[
            (r#"box.labels eq "fragile""#, true),
            (r#"boxes[labels eq "fragile"]"#, true),
        ],
    );
}

#[test]
fn not_inside_a_value_path_negates_per_element() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    check_all(
        &user(),
        &context,
        &[
            // The work address is not "other": some element matches.
            (r#"emails[not (type eq "other")]"#, true),
            // Every element with a type is "work" or "home".
            (
                r#"emails[not (type eq "work") and not (type eq "home")]"#,
                false,
            ),
            (r#"emails[not (value pr)]"#, true),
        ],
    );
}

#[test]
fn urn_qualified_names_outside_the_schemas_look_in_their_own_place() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let resource = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "u",
        "costCenter": "top-level",
        // An extension this registry does not know: its attributes are
        // found under its URN.
        "urn:example:ext:1.0": {"costCenter": "42"},
        // A core URN is the top level, never an object of that name.
        "urn:ietf:params:scim:schemas:core:2.0:User": {"nosuch": "nested"}
    });
    check_all(
        &resource,
        &context,
        &[
            (r#"urn:example:ext:1.0:costCenter eq "42""#, true),
            (r#"urn:example:ext:1.0:costCenter eq "top-level""#, false),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:nosuch eq "nested""#,
                false,
            ),
            (
                r#"urn:ietf:params:scim:schemas:core:2.0:User:nosuch pr"#,
                false,
            ),
        ],
    );
}

#[test]
fn caseless_comparison_folds_non_ascii_to_ascii() {
    // The Kelvin sign (U+212A) lower-cases to an ASCII `k`: one side ASCII,
    // the other not, still compared by Unicode lower case.
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let resource =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "kelvin"});
    check_all(
        &resource,
        &context,
        &[
            ("userName eq \"\u{212A}elvin\"", true),
            ("userName sw \"\u{212A}\"", true),
        ],
    );
    let resource = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "\u{212A}elvin"});
    check_all(&resource, &context, &[(r#"userName eq "KELVIN""#, true)]);
}

#[test]
fn string_operators_on_numbers_say_so() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let resource = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "u",
                          "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}});
    for (text, needle) in [
        (
            "meta.version co 1",
            "a string attribute compares with a string",
        ),
        (
            "active gt true",
            "only eq, ne and pr apply to a boolean attribute",
        ),
        (
            r#"active eq "x""#,
            "a boolean attribute compares with true or false",
        ),
    ] {
        let filter = parse_filter(text).expect(text);
        let error = filter.matches(&resource, &context).expect_err(text);
        assert!(error.detail.contains(needle), "{text}: {}", error.detail);
    }
    let schemaless = SchemaCtx::schemaless();
    let numbers = json!({"n": 5});
    for (text, needle) in [
        ("n co 5", "co, sw and ew do not apply to numbers"),
        (r#"n eq "5""#, "a numeric attribute compares with a number"),
    ] {
        let filter = parse_filter(text).expect(text);
        let error = filter.matches(&numbers, &schemaless).expect_err(text);
        assert!(error.detail.contains(needle), "{text}: {}", error.detail);
    }
}
