//! Filter and PATCH-path parsing at its edges: the length and depth bounds
//! exactly at and one past the limit, nesting that closes again, attribute
//! path matching (`AttrPath::names`), lexing corner cases and the text of
//! parse errors. Written so that each bound and branch has a test that
//! fails when it moves (mutation testing of `filter.rs`).

use scimgate_scim::filter::{
    parse_filter, AttrPath, CompValue, CompareOp, Filter, PatchPath, MAX_FILTER_DEPTH,
    MAX_FILTER_LENGTH,
};
use scimgate_scim::ScimType;

/// `userName eq "aaa…"` exactly `length` bytes long.
fn filter_of_length(length: usize) -> String {
    let frame = r#"userName eq """#.len();
    format!("userName eq \"{}\"", "a".repeat(length - frame))
}

/// `emails[value eq "aaa…"]` exactly `length` bytes long.
fn path_of_length(length: usize) -> String {
    let frame = r#"emails[value eq ""]"#.len();
    format!("emails[value eq \"{}\"]", "a".repeat(length - frame))
}

#[test]
fn the_length_limit_is_64_kib_inclusive() {
    assert_eq!(MAX_FILTER_LENGTH, 65_536);
    let at = filter_of_length(MAX_FILTER_LENGTH);
    assert_eq!(at.len(), MAX_FILTER_LENGTH);
    assert!(parse_filter(&at).is_ok(), "a filter of exactly the limit");
    let past = filter_of_length(MAX_FILTER_LENGTH + 1);
    let error = parse_filter(&past).expect_err("one byte past the limit");
    assert_eq!(error.scim_type, Some(ScimType::InvalidFilter));
    assert!(
        error.detail.contains("65537 bytes long"),
        "{}",
        error.detail
    );
    // Far past the limit, and short filters, are measured the same way.
    assert!(parse_filter(&filter_of_length(2 * MAX_FILTER_LENGTH)).is_err());
    assert!(parse_filter(&filter_of_length(20)).is_ok());
}

#[test]
fn the_patch_path_length_limit_is_the_filter_limit() {
    let at = path_of_length(MAX_FILTER_LENGTH);
    assert_eq!(at.len(), MAX_FILTER_LENGTH);
    assert!(PatchPath::parse(&at).is_ok(), "a path of exactly the limit");
    let error = PatchPath::parse(&path_of_length(MAX_FILTER_LENGTH + 1))
        .expect_err("one byte past the limit");
    assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    assert!(
        error.detail.contains("65537 bytes long"),
        "{}",
        error.detail
    );
    assert!(PatchPath::parse(&path_of_length(2 * MAX_FILTER_LENGTH)).is_err());
    assert!(PatchPath::parse("userName").is_ok());
}

fn parens(depth: usize) -> String {
    format!("{}userName pr{}", "(".repeat(depth), ")".repeat(depth))
}

fn nots(depth: usize) -> String {
    format!("{}userName pr{}", "not (".repeat(depth), ")".repeat(depth))
}

fn assert_too_deep(text: &str) {
    let error = parse_filter(text).expect_err("one level past the limit");
    assert_eq!(error.scim_type, Some(ScimType::InvalidFilter));
    assert!(
        error.detail.contains("nested deeper than 64 levels"),
        "{}",
        error.detail
    );
}

#[test]
fn the_depth_limit_is_64_levels_inclusive() {
    assert_eq!(MAX_FILTER_DEPTH, 64);
    assert!(parse_filter(&parens(MAX_FILTER_DEPTH)).is_ok());
    assert_too_deep(&parens(MAX_FILTER_DEPTH + 1));
    assert!(parse_filter(&nots(MAX_FILTER_DEPTH)).is_ok());
    assert_too_deep(&nots(MAX_FILTER_DEPTH + 1));
    // A value path is one level: 63 groups inside it are the limit.
    let inside = |groups: usize| {
        format!(
            "emails[{}type pr{}]",
            "(".repeat(groups),
            ")".repeat(groups)
        )
    };
    assert!(parse_filter(&inside(MAX_FILTER_DEPTH - 1)).is_ok());
    assert_too_deep(&inside(MAX_FILTER_DEPTH));
    // The position of the level that is one too many.
    let error = parse_filter(&parens(MAX_FILTER_DEPTH + 1)).unwrap_err();
    assert!(error.detail.contains("at byte 64"), "{}", error.detail);
}

#[test]
fn the_patch_path_depth_limit_counts_its_brackets() {
    let path = |groups: usize| {
        format!(
            "emails[{}type pr{}].value",
            "(".repeat(groups),
            ")".repeat(groups)
        )
    };
    assert!(PatchPath::parse(&path(MAX_FILTER_DEPTH - 1)).is_ok());
    let error = PatchPath::parse(&path(MAX_FILTER_DEPTH)).expect_err("too deep");
    assert_eq!(error.scim_type, Some(ScimType::InvalidPath));
    assert!(error.detail.contains("nested deeper"), "{}", error.detail);
}

/// Depth is nesting, not a count of groups: closing a group, a `not` or a
/// value path gives its level back.
#[test]
fn closed_groups_give_their_level_back() {
    let siblings = |one: String| vec![one; 3].join(" and ");
    assert!(parse_filter(&siblings(parens(MAX_FILTER_DEPTH))).is_ok());
    assert!(parse_filter(&siblings(nots(MAX_FILTER_DEPTH))).is_ok());
    let many = vec!["emails[type pr]"; 2 * MAX_FILTER_DEPTH].join(" or ");
    assert!(parse_filter(&many).is_ok());
    let many_groups = vec!["(userName pr)"; 2 * MAX_FILTER_DEPTH].join(" and ");
    assert!(parse_filter(&many_groups).is_ok());
    let many_nots = vec!["not (userName pr)"; 2 * MAX_FILTER_DEPTH].join(" and ");
    assert!(parse_filter(&many_nots).is_ok());
}

#[test]
fn attr_path_names_ignores_case_and_urn_but_not_the_sub_attribute() {
    let plain = AttrPath::new("userName");
    assert!(plain.names("userName", None));
    assert!(plain.names("USERNAME", None));
    assert!(!plain.names("displayName", None));
    assert!(!plain.names("userName", Some("value")), "no sub-attribute");

    let sub = AttrPath::new("name").with_sub("givenName");
    assert!(sub.names("name", Some("givenName")));
    assert!(sub.names("NAME", Some("GIVENNAME")));
    assert!(
        !sub.names("name", None),
        "a sub-attribute path is not its parent"
    );
    assert!(!sub.names("name", Some("familyName")));
    assert!(!sub.names("title", Some("givenName")));

    let qualified = AttrPath::new("manager")
        .with_urn("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
        .with_sub("value");
    assert!(qualified.names("manager", Some("value")));
    assert!(!qualified.names("manager", None));
    assert!(!qualified.names("employeeNumber", Some("value")));
}

#[test]
fn attr_path_parse_and_print() {
    let path = AttrPath::parse(" urn:ietf:params:scim:schemas:core:2.0:User:name.givenName ")
        .expect("a qualified path");
    assert_eq!(
        path,
        AttrPath::new("name")
            .with_urn("urn:ietf:params:scim:schemas:core:2.0:User")
            .with_sub("givenName")
    );
    assert_eq!(
        path.to_string(),
        "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName"
    );
    for bad in ["urn:a:", "1abc", "name.1x", "", "a.b.c"] {
        let error = AttrPath::parse(bad).expect_err(bad);
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath), "{bad}");
        assert!(error.detail.contains("invalid attribute path"), "{bad}");
    }
    // A URN needs more than `urn:`; shorter words starting like one are plain names.
    assert_eq!(
        AttrPath::parse("urn:x").unwrap(),
        AttrPath::new("x").with_urn("urn")
    );
    let error = AttrPath::parse("urn:").unwrap_err();
    assert!(
        error
            .detail
            .contains("'urn:' is not a valid attribute name"),
        "{}",
        error.detail
    );
    let error = AttrPath::parse("urn:a:").unwrap_err();
    assert!(
        error
            .detail
            .contains("has a schema URN but no attribute name"),
        "{}",
        error.detail
    );
    assert_eq!(AttrPath::parse("urn").unwrap(), AttrPath::new("urn"));
    assert_eq!(
        AttrPath::parse("urnx.y").unwrap(),
        AttrPath::new("urnx").with_sub("y")
    );
    assert_eq!(
        AttrPath::parse("URN:a:b").unwrap(),
        AttrPath::new("b").with_urn("URN:a")
    );
    assert_eq!(AttrPath::parse("_a$-1").unwrap(), AttrPath::new("_a$-1"));
    assert_eq!(AttrPath::parse("$ref").unwrap(), AttrPath::new("$ref"));
    assert!(AttrPath::parse("-a").is_err());
    assert!(AttrPath::parse("a+").is_err());
    assert!(AttrPath::parse("a.-b").is_err());
}

#[test]
fn whitespace_words_and_numbers_lex_as_rfc_7644_says() {
    let compare = |path: &str, op, value| Filter::Compare {
        path: AttrPath::new(path),
        op,
        value,
    };
    assert_eq!(
        parse_filter("  userName pr \t\n "),
        Ok(Filter::Present(AttrPath::new("userName")))
    );
    assert_eq!(
        parse_filter("x eq -1.5e+2"),
        Ok(compare(
            "x",
            CompareOp::Eq,
            CompValue::Number(serde_json::Number::from_f64(-150.0).unwrap())
        ))
    );
    assert_eq!(
        parse_filter("x gt 18446744073709551615"),
        Ok(compare(
            "x",
            CompareOp::Gt,
            CompValue::Number(u64::MAX.into())
        ))
    );
    assert_eq!(
        parse_filter("x lt -9"),
        Ok(compare("x", CompareOp::Lt, CompValue::Number((-9).into())))
    );
    for bad in ["x eq -", "x eq 1e", "x eq --1", "x eq 1.2.3", "x eq -e5"] {
        let error = parse_filter(bad).expect_err(bad);
        assert!(
            error.detail.contains("not a valid number"),
            "{bad}: {}",
            error.detail
        );
    }
    assert_eq!(
        parse_filter("x eq NULL"),
        Ok(compare("x", CompareOp::Eq, CompValue::Null))
    );
    assert_eq!(
        parse_filter("x eq False"),
        Ok(compare("x", CompareOp::Eq, CompValue::Bool(false)))
    );
    assert_eq!(
        parse_filter("x ne TRUE"),
        Ok(compare("x", CompareOp::Ne, CompValue::Bool(true)))
    );
    assert!(parse_filter("x eq nothing").is_err());
    assert!(parse_filter("x eq (").is_err());
    // Words may start with `_` or `$`; `pr` ends a comparison in any case.
    assert_eq!(
        parse_filter("_x PR"),
        Ok(Filter::Present(AttrPath::new("_x")))
    );
    assert_eq!(
        parse_filter("$ref pr"),
        Ok(Filter::Present(AttrPath::new("$ref")))
    );
    let error = parse_filter("x eq 1 # y").unwrap_err();
    assert!(
        error.detail.contains("unexpected character '#'"),
        "{}",
        error.detail
    );
    let error = parse_filter("x pr and é pr").unwrap_err();
    assert!(
        error.detail.contains("unexpected character 'é'"),
        "{}",
        error.detail
    );
}

#[test]
fn string_escapes_decode_and_bad_ones_are_refused() {
    let literal = |text: &str| match parse_filter(&format!("x eq {text}")) {
        Ok(Filter::Compare {
            value: CompValue::String(value),
            ..
        }) => value,
        other => panic!("{text}: {other:?}"),
    };
    assert_eq!(literal(r#""a\"b""#), "a\"b");
    assert_eq!(literal(r#""a\\b""#), "a\\b");
    assert_eq!(literal(r#""a\/b""#), "a/b");
    assert_eq!(literal(r#""\b\f\n\r\t""#), "\u{8}\u{c}\n\r\t");
    assert_eq!(literal(r#""\u00e9x""#), "éx");
    assert_eq!(literal(r#""\uD83D\uDE00!""#), "😀!");
    assert_eq!(literal(r#""x\u0041""#), "xA");
    assert_eq!(literal(r#""""#), "");
    assert_eq!(literal(r#""é""#), "é");
    for bad in [
        r#""\x""#,
        r#""\"#,
        r#""\u12""#,
        r#""\u12G4""#,
        r#""\uD83D""#,
        r#""\uD83Dx\u0041""#,
        r#""\uD83D\u0041""#,
        r#""\uDE00""#,
        r#""\uD83D\uE000""#,
        r#""\u+123""#,
    ] {
        let error = parse_filter(&format!("x eq {bad}")).expect_err(bad);
        assert!(
            error.detail.contains("escape") || error.detail.contains("unterminated"),
            "{bad}: {}",
            error.detail
        );
        assert!(
            error.detail.contains("at byte 6"),
            "{bad}: {}",
            error.detail
        );
    }
    let error = parse_filter(r#"x eq "abc"#).unwrap_err();
    assert!(
        error.detail.contains("at byte 5: unterminated"),
        "{}",
        error.detail
    );
    let error = parse_filter(r#"x eq "ab\q""#).unwrap_err();
    assert!(error.detail.contains("at byte 8"), "{}", error.detail);
    let error = parse_filter(r#"x eq "a\u0041\u12""#).unwrap_err();
    assert!(error.detail.contains("at byte 13"), "{}", error.detail);
}

#[test]
fn errors_quote_what_was_found_shortened_to_40_characters() {
    let forty = "a".repeat(40);
    let error = parse_filter(&format!("x eq {forty}")).unwrap_err();
    assert!(
        error.detail.contains(&format!("found '{forty}'")),
        "{}",
        error.detail
    );
    let error = parse_filter(&format!("x eq {forty}b")).unwrap_err();
    assert!(
        error.detail.contains(&format!("found '{forty}…'")),
        "{}",
        error.detail
    );
    let error = parse_filter(&format!("x eq {}", "é".repeat(41))).unwrap_err();
    assert!(error.detail.contains("unexpected character 'é'"));
    let error = parse_filter("x eq \"s\" \"t\"").unwrap_err();
    assert!(
        error.detail.contains("found string \"t\""),
        "{}",
        error.detail
    );
    let error = parse_filter("x pr 7").unwrap_err();
    assert!(error.detail.contains("found number 7"), "{}", error.detail);
    for (text, found) in [
        ("x pr (", "'('"),
        ("x pr )", "')'"),
        ("x pr [", "'['"),
        ("x pr ]", "']'"),
        ("x eq", "end of input"),
    ] {
        let error = parse_filter(text).expect_err(text);
        assert!(
            error.detail.contains(&format!("found {found}")),
            "{text}: {}",
            error.detail
        );
    }
}

#[test]
fn patch_paths_parse_their_sub_attribute_after_the_filter() {
    let path = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
    assert_eq!(path.attr, AttrPath::new("emails"));
    assert_eq!(path.sub_attr.as_deref(), Some("value"));
    assert_eq!(path.to_string(), r#"emails[type eq "work"].value"#);
    let path = PatchPath::parse(r#"emails[type eq "work"]"#).unwrap();
    assert_eq!(path.sub_attr, None);
    assert!(path.filter.is_some());
    let path = PatchPath::parse("name.givenName").unwrap();
    assert_eq!(path.attr, AttrPath::new("name").with_sub("givenName"));
    assert_eq!(path.filter, None);
    for (bad, needle) in [
        (r#"emails[type eq "work"]."#, "sub-attribute name after '.'"),
        (r#"emails[type eq "work"].1x"#, "at byte"),
        (r#"emails[type eq "work"]."x""#, "at byte 23"),
        (r#"emails[type eq "work"].a.b"#, "sub-attribute name"),
        (r#"name.givenName[type pr]"#, "not a sub-attribute"),
        (r#"emails[type pr] x"#, "end of path"),
        (r#"emails[type pr"#, "']'"),
        ("(a)", "attribute path"),
        ("1", "attribute path"),
    ] {
        let error = PatchPath::parse(bad).expect_err(bad);
        assert_eq!(error.scim_type, Some(ScimType::InvalidPath), "{bad}");
        assert!(error.detail.contains(needle), "{bad}: {}", error.detail);
    }
}

#[test]
fn filters_refuse_misplaced_tokens_with_positions() {
    for (bad, needle) in [
        ("name.givenName[type pr]", "not a sub-attribute"),
        ("emails[type pr", "']'"),
        ("emails[type pr)", "found ')'"),
        ("(userName pr]", "found ']'"),
        ("not userName pr", "comparison operator"),
        ("userName", "comparison operator, 'pr' or '['"),
        ("userName pr userName pr", "'and', 'or' or end of filter"),
    ] {
        let error = parse_filter(bad).expect_err(bad);
        assert_eq!(error.scim_type, Some(ScimType::InvalidFilter), "{bad}");
        assert!(error.detail.contains(needle), "{bad}: {}", error.detail);
    }
    // `not` not followed by `(` is an attribute named `not`.
    assert_eq!(
        parse_filter("not pr"),
        Ok(Filter::Present(AttrPath::new("not")))
    );
    assert_eq!(
        parse_filter("x pr OR y pr AND z pr").map(|f| f.to_string()),
        Ok("x pr or y pr and z pr".to_string())
    );
}
