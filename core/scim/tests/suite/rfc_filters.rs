//! Every filter example of RFC 7644 §3.4.2.2, parsed, printed, re-parsed and evaluated.

use super::fixtures::{bjensen, jsmith};
use scimgate_scim::filter::{parse_filter, AttrPath, CompValue, CompareOp, Filter};
use scimgate_scim::{Registry, SchemaCtx, ScimType};
use serde_json::json;

/// (filter, matches bjensen, matches jsmith)
const RFC_EXAMPLES: &[(&str, bool, bool)] = &[
    (r#"userName eq "bjensen@example.com""#, true, false),
    (r#"name.familyName co "O'Malley""#, false, true),
    (r#"userName sw "J""#, false, true),
    (
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        false,
        true,
    ),
    ("title pr", true, false),
    (
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        false,
        false,
    ),
    (r#"meta.lastModified ge "2011-05-13T04:42:34Z""#, true, true),
    (
        r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
        false,
        false,
    ),
    (r#"meta.lastModified le "2011-05-13T04:42:34Z""#, true, true),
    (r#"title pr and userType eq "Employee""#, true, false),
    (r#"title pr or userType eq "Intern""#, true, true),
    (
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        true,
        false,
    ),
    (
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        true,
        false,
    ),
    (
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        false,
        false,
    ),
    (
        r#"userType eq "Employee" and (emails.type eq "work")"#,
        true,
        false,
    ),
    (
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        true,
        false,
    ),
    (
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        true,
        true,
    ),
];

#[test]
fn rfc_examples_parse_print_and_reparse() {
    for (text, _, _) in RFC_EXAMPLES {
        let parsed = parse_filter(text).unwrap_or_else(|error| panic!("{text}: {error}"));
        let printed = parsed.to_string();
        assert_eq!(
            parse_filter(&printed).as_ref(),
            Ok(&parsed),
            "{text} printed as {printed}"
        );
    }
}

#[test]
fn rfc_examples_evaluate_against_rfc_users() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let (babs, john) = (bjensen(), jsmith());
    for (text, want_babs, want_john) in RFC_EXAMPLES {
        let filter = parse_filter(text).expect("parses");
        assert_eq!(
            filter.matches(&babs, &context),
            Ok(*want_babs),
            "bjensen vs {text}"
        );
        assert_eq!(
            filter.matches(&john, &context),
            Ok(*want_john),
            "jsmith vs {text}"
        );
    }
}

#[test]
fn ast_shape_of_rfc_examples() {
    let filter = parse_filter(r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#)
        .expect("parses");
    assert_eq!(
        filter,
        Filter::Compare {
            path: AttrPath::new("userName").with_urn("urn:ietf:params:scim:schemas:core:2.0:User"),
            op: CompareOp::Sw,
            value: CompValue::String("J".into()),
        }
    );
    let manager = parse_filter(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#,
    )
    .expect("parses");
    let Filter::Compare { path, .. } = manager else {
        panic!("compare expected")
    };
    assert_eq!(
        path.urn.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(
        (path.attr.as_str(), path.sub_attr.as_deref()),
        ("manager", Some("value"))
    );

    // and binds tighter than or
    let precedence = parse_filter("a pr or b pr and c pr").expect("parses");
    assert!(matches!(precedence, Filter::Or(_, right) if matches!(*right, Filter::And(..))));
    let grouped = parse_filter("(a pr or b pr) and c pr").expect("parses");
    assert!(matches!(&grouped, Filter::And(left, _) if matches!(**left, Filter::Or(..))));
    assert_eq!(grouped.to_string(), "(a pr or b pr) and c pr");
}

#[test]
fn keywords_and_operators_ignore_case() {
    let filter =
        parse_filter(r#"userName EQ "x" AND NOT (title PR) Or active Eq TRUE"#).expect("parses");
    assert_eq!(
        filter.to_string(),
        r#"userName eq "x" and not (title pr) or active eq true"#
    );
}

#[test]
fn literals_and_escapes() {
    let filter = parse_filter(r#"displayName eq "a\"b\\c\u00e9\ud83d\ude00\n" and x eq -1.5e3 and y eq null and z eq false"#)
        .expect("parses");
    let Filter::And(left, _) = &filter else {
        panic!()
    };
    let Filter::And(left, _) = &**left else {
        panic!()
    };
    let Filter::And(first, _) = &**left else {
        panic!()
    };
    assert!(
        matches!(&**first, Filter::Compare { value: CompValue::String(text), .. } if text == "a\"b\\cé😀\n")
    );
    assert_eq!(parse_filter(&filter.to_string()), Ok(filter));
}

#[test]
fn errors_name_position_and_expectation() {
    let cases = [
        (r#"userName eq"#, "byte 11"),
        (r#"userName xx "a""#, "byte 9"),
        (r#"userName eq "a" and"#, "byte 19"),
        (r#"(userName eq "a""#, "byte 16"),
        (r#"userName eq "unterminated"#, "byte 12"),
        (r#"emails[type eq "work""#, "byte 21"),
        (r#"emails[type[x eq 1]]"#, "nested"),
        (r#"userName eq "a" )"#, "byte 16"),
        (r#"12 eq 1"#, "byte 0"),
        ("", "byte 0"),
    ];
    for (text, needle) in cases {
        let error = parse_filter(text).expect_err(text);
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{text}");
        assert!(error.detail.contains(needle), "{text}: {}", error.detail);
        assert!(
            error.detail.contains("expected")
                || error.detail.contains("nested")
                || error.detail.contains("unterminated"),
            "{text}: {}",
            error.detail
        );
    }
}

#[test]
fn hostile_nesting_and_length_are_refused() {
    let deep = "(".repeat(10_000);
    assert!(parse_filter(&deep).is_err());
    let deep_not = "not (".repeat(10_000);
    assert!(parse_filter(&deep_not).is_err());
    let long = format!("userName eq \"{}\"", "a".repeat(70 * 1024));
    assert!(parse_filter(&long).is_err());
    let ok_depth = format!("{}a pr{}", "(".repeat(60), ")".repeat(60));
    assert!(parse_filter(&ok_depth).is_ok());
}

#[test]
fn evaluation_follows_types_and_case_rules() {
    let registry = Registry::core();
    let context = registry.context_for("User").expect("User");
    let user = bjensen();
    let check = |text: &str| parse_filter(text).and_then(|filter| filter.matches(&user, &context));
    // caseExact false: userName is case-insensitive; id is caseExact.
    assert_eq!(check(r#"USERNAME eq "BJENSEN@example.com""#), Ok(true));
    assert_eq!(
        check(r#"id eq "2819C223-7F76-453A-919D-413861904646""#),
        Ok(false)
    );
    assert_eq!(check(r#"externalId eq "701984""#), Ok(true));
    // booleans
    assert_eq!(check("active eq true"), Ok(true));
    assert_eq!(
        check("active gt true").map_err(|e| e.scim_type),
        Err(Some(ScimType::InvalidFilter))
    );
    assert_eq!(
        check(r#"active eq "true""#).map_err(|e| e.scim_type),
        Err(Some(ScimType::InvalidFilter))
    );
    // dateTime as instants (offsets differ, same instant)
    assert_eq!(
        check(r#"meta.created eq "2010-01-23T05:56:22+01:00""#),
        Ok(true)
    );
    assert_eq!(
        check(r#"meta.created gt "not a date""#).map_err(|e| e.scim_type),
        Err(Some(ScimType::InvalidFilter))
    );
    // complex without sub-attribute cannot be compared; multi-valued complex uses value
    assert_eq!(
        check(r#"name eq "x""#).map_err(|e| e.scim_type),
        Err(Some(ScimType::InvalidFilter))
    );
    assert_eq!(check(r#"emails eq "babs@jensen.org""#), Ok(true));
    // extension attributes, qualified and not
    assert_eq!(
        check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
        ),
        Ok(true)
    );
    assert_eq!(
        check(
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
        ),
        Ok(true)
    );
    assert_eq!(check(r#"department eq "tour operations""#), Ok(true));
    // null, ne on missing, unknown attributes
    assert_eq!(check("nickName ne null"), Ok(true));
    assert_eq!(check("locale eq null"), Ok(false));
    assert_eq!(check(r#"nonsense eq "x""#), Ok(false));
    assert_eq!(check(r#"nonsense ne "x""#), Ok(true));
    assert_eq!(
        check("emails[primary eq true and type eq \"work\"]"),
        Ok(true)
    );
    assert_eq!(
        check("emails pr and name.givenName pr and password pr"),
        Ok(true)
    );
}

#[test]
fn schemaless_evaluation_infers_types() {
    let resource = json!({"n": 5, "s": "Hello", "list": [{"value": "a"}, {"value": "b"}]});
    let context = SchemaCtx::schemaless();
    let check =
        |text: &str| parse_filter(text).and_then(|filter| filter.matches(&resource, &context));
    assert_eq!(check("n gt 4"), Ok(true));
    assert_eq!(check("n le 4.5"), Ok(false));
    assert_eq!(check(r#"s eq "hello""#), Ok(true));
    assert_eq!(check(r#"list eq "b""#), Ok(true));
    assert_eq!(check(r#"list[value sw "a"]"#), Ok(true));
}
