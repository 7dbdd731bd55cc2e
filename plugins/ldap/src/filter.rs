//! SCIM filter → LDAP filter (RFC 4515) for the mapped attributes.
//!
//! The result always selects a superset of what the SCIM filter matches;
//! it is *exact* only when LDAP matching agrees with SCIM matching:
//! - `co` on an attribute SCIM compares ignoring case and LDAP matches
//!   with `caseIgnoreMatch`/`caseIgnoreIA5Match` (known list below) and an
//!   ASCII value without whitespace. `eq`, `sw`, `ew` push down too but are
//!   never exact: LDAP ignores leading, trailing and repeated spaces of the
//!   stored value (`eq "dev"` finds "dev "), SCIM does not. Non-ASCII
//!   values are not pushed down at all: slapd's case folding differs from
//!   Rust's `to_lowercase` (final sigma), so LDAP could select less;
//! - `pr` (LDAP presence); `id eq` on `entryUUID`; `active` without an
//!   attribute (always true);
//! - `and`/`or` of exact parts; `not` only of an exact presence test (LDAP's
//!   three-valued logic makes `(!(a=x))` skip entries without `a`).
//!
//! Anything else (`ne`, `gt`…`le`, case-exact SCIM attributes, unmapped
//! attributes, `meta.*`) drops that branch: an `and` keeps its other side,
//! an `or` widens to everything, and the result is not exact.

use scimgate_scim::{AttrPath, CompValue, CompareOp, Filter};

use crate::mapping::{Shape, TypeMap};

/// LDAP attributes whose equality and substring matching is plain
/// case-insensitive string matching (core, cosine, inetOrgPerson schemas).
const CASE_IGNORE: &[&str] = &[
    "uid",
    "cn",
    "sn",
    "givenname",
    "displayname",
    "mail",
    "title",
    "employeetype",
    "employeenumber",
    "preferredlanguage",
    "departmentnumber",
    "o",
    "ou",
    "businesscategory",
    "description",
    "initials",
    "roomnumber",
];

/// A translated filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ldap {
    /// Everything (the branch could not be pushed down, or is always true).
    All,
    /// Nothing.
    None,
    Expr(String),
}

/// The translation and whether it selects exactly what the SCIM filter matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    pub ldap: Ldap,
    pub exact: bool,
}

impl Translated {
    fn approx(ldap: Ldap) -> Self {
        Translated { ldap, exact: false }
    }
    fn exact(ldap: Ldap) -> Self {
        Translated { ldap, exact: true }
    }

    /// The full LDAP filter with the type's selector.
    pub fn with_selector(&self, selector: &str) -> Option<String> {
        match &self.ldap {
            Ldap::All => Some(selector.to_string()),
            Ldap::None => None,
            Ldap::Expr(expr) => Some(format!("(&{selector}{expr})")),
        }
    }
}

/// RFC 4515 §3 escaping of an assertion value.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            _ => out.push(c),
        }
    }
    out
}

/// Translates `filter` for resources of `map`.
pub fn translate(filter: &Filter, map: &TypeMap) -> Translated {
    match filter {
        Filter::And(left, right) => {
            let (l, r) = (translate(left, map), translate(right, map));
            let exact = l.exact && r.exact;
            let ldap = match (l.ldap, r.ldap) {
                (Ldap::None, _) | (_, Ldap::None) => Ldap::None,
                (Ldap::All, other) | (other, Ldap::All) => other,
                (Ldap::Expr(a), Ldap::Expr(b)) => Ldap::Expr(format!("(&{a}{b})")),
            };
            Translated { ldap, exact }
        }
        Filter::Or(left, right) => {
            let (l, r) = (translate(left, map), translate(right, map));
            let exact = l.exact && r.exact;
            let ldap = match (l.ldap, r.ldap) {
                (Ldap::All, _) | (_, Ldap::All) => Ldap::All,
                (Ldap::None, other) | (other, Ldap::None) => other,
                (Ldap::Expr(a), Ldap::Expr(b)) => Ldap::Expr(format!("(|{a}{b})")),
            };
            Translated { ldap, exact }
        }
        Filter::Not(inner) => match inner.as_ref() {
            Filter::Present(_) => {
                let t = translate(inner, map);
                match t.ldap {
                    Ldap::Expr(e) if t.exact => Translated::exact(Ldap::Expr(format!("(!{e})"))),
                    Ldap::All if t.exact => Translated::exact(Ldap::None),
                    Ldap::None if t.exact => Translated::exact(Ldap::All),
                    _ => Translated::approx(Ldap::All),
                }
            }
            _ => Translated::approx(Ldap::All),
        },
        Filter::Present(path) => present(path, map),
        Filter::Compare { path, op, value } => compare(path, *op, value, map),
        Filter::ValuePath { attr, filter } => {
            // `emails[value co "x"]`: the `value` parts narrow; other
            // sub-attributes (`type`, `primary`) are not kept in LDAP.
            let t = translate_element(attr, filter, map);
            Translated::approx(t)
        }
    }
}

/// Inside `attr[…]`: only comparisons of `value` push down.
fn translate_element(attr: &AttrPath, filter: &Filter, map: &TypeMap) -> Ldap {
    match filter {
        Filter::And(l, r) => match (
            translate_element(attr, l, map),
            translate_element(attr, r, map),
        ) {
            (Ldap::None, _) | (_, Ldap::None) => Ldap::None,
            (Ldap::All, other) | (other, Ldap::All) => other,
            (Ldap::Expr(a), Ldap::Expr(b)) => Ldap::Expr(format!("(&{a}{b})")),
        },
        Filter::Or(l, r) => match (
            translate_element(attr, l, map),
            translate_element(attr, r, map),
        ) {
            (Ldap::All, _) | (_, Ldap::All) => Ldap::All,
            (Ldap::None, other) | (other, Ldap::None) => other,
            (Ldap::Expr(a), Ldap::Expr(b)) => Ldap::Expr(format!("(|{a}{b})")),
        },
        Filter::Compare { path, op, value } if path.sub_attr.is_none() => {
            let full = AttrPath {
                urn: attr.urn.clone(),
                attr: attr.attr.clone(),
                sub_attr: Some(path.attr.clone()),
            };
            compare(&full, *op, value, map).ldap
        }
        Filter::Present(path) if path.sub_attr.is_none() => {
            let full = AttrPath {
                urn: attr.urn.clone(),
                attr: attr.attr.clone(),
                sub_attr: Some(path.attr.clone()),
            };
            present(&full, map).ldap
        }
        _ => Ldap::All,
    }
}

fn is_id(path: &AttrPath) -> bool {
    path.sub_attr.is_none() && path.attr.eq_ignore_ascii_case("id")
}

fn present(path: &AttrPath, map: &TypeMap) -> Translated {
    if is_id(path) {
        return Translated::exact(Ldap::All);
    }
    match map.field_for_path(path) {
        Some(field) if field.sub.is_none() || field.shape != Shape::Values => {
            // A `sn` holding the placeholder reads back as absent.
            let exact = !(map.resource_type == crate::mapping::USER
                && field.ldap.eq_ignore_ascii_case("sn"));
            Translated {
                ldap: Ldap::Expr(format!("({}=*)", field.ldap)),
                exact,
            }
        }
        _ => Translated::approx(Ldap::All),
    }
}

fn compare(path: &AttrPath, op: CompareOp, value: &CompValue, map: &TypeMap) -> Translated {
    if is_id(path) {
        return match (op, value) {
            (CompareOp::Eq, CompValue::String(id)) => {
                let exact = map.id_attr.eq_ignore_ascii_case("entryUUID");
                Translated {
                    ldap: Ldap::Expr(format!("({}={})", map.id_attr, escape(id))),
                    exact,
                }
            }
            _ => Translated::approx(Ldap::All),
        };
    }
    if path.sub_attr.is_none()
        && path.attr.eq_ignore_ascii_case("active")
        && map.field_for_path(path).is_none()
        && !map.is_group()
    {
        // No `active` attribute: every User is active.
        return match (op, value) {
            (CompareOp::Eq, CompValue::Bool(true)) | (CompareOp::Ne, CompValue::Bool(false)) => {
                Translated::exact(Ldap::All)
            }
            (CompareOp::Eq, CompValue::Bool(false)) | (CompareOp::Ne, CompValue::Bool(true)) => {
                Translated::exact(Ldap::None)
            }
            _ => Translated::approx(Ldap::All),
        };
    }
    let Some(field) = map.field_for_path(path) else {
        return Translated::approx(Ldap::All);
    };
    let attr = &field.ldap;
    match (field.shape, value) {
        (Shape::Bool, CompValue::Bool(flag)) if op == CompareOp::Eq => {
            let text = if *flag { "TRUE" } else { "FALSE" };
            Translated::exact(Ldap::Expr(format!("({attr}={text})")))
        }
        (Shape::Text | Shape::Values, CompValue::String(text)) => {
            let known = CASE_IGNORE.contains(&attr.to_ascii_lowercase().as_str());
            if !known {
                // Unknown matching rule: it might be case-exact, which would
                // select less than SCIM matches. Not pushed down.
                return Translated::approx(Ldap::All);
            }
            let v = escape(text);
            let expr = match op {
                CompareOp::Eq => format!("({attr}={v})"),
                CompareOp::Sw => format!("({attr}={v}*)"),
                CompareOp::Ew => format!("({attr}=*{v})"),
                CompareOp::Co => format!("({attr}=*{v}*)"),
                _ => return Translated::approx(Ldap::All),
            };
            if text.is_empty() || !text.is_ascii() {
                // Non-ASCII: slapd's case folding is not Rust's
                // `to_lowercase` (final sigma: SCIM finds "σας" with
                // `co "ΣΑΣ"`, slapd does not), so even a superset is not
                // guaranteed. Not pushed down.
                return Translated::approx(Ldap::All);
            }
            let is_surname =
                map.resource_type == crate::mapping::USER && attr.eq_ignore_ascii_case("sn");
            // LDAP also ignores leading and trailing spaces of the stored
            // value (RFC 4518 insignificant space handling): `eq "dev"`,
            // `sw "dev"`, `ew "dev"` find "dev " or " dev", SCIM does not.
            // Only `co` of a value without whitespace agrees exactly (a
            // run of non-spaces is the same either way).
            let exact = op == CompareOp::Co
                && !field.case_exact
                && !text.chars().any(char::is_whitespace)
                && !is_surname;
            Translated {
                ldap: Ldap::Expr(expr),
                exact,
            }
        }
        _ => Translated::approx(Ldap::All),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LdapConfig;
    use scimgate_scim::parse_filter;

    fn users() -> TypeMap {
        TypeMap::build(&LdapConfig::default(), false).expect("users")
    }

    fn t(text: &str) -> Translated {
        translate(&parse_filter(text).expect("parses"), &users())
    }

    fn expr(text: &str) -> (String, bool) {
        let out = t(text);
        match out.ldap {
            Ldap::Expr(e) => (e, out.exact),
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn case_insensitive_attributes_push_down_exactly() {
        // `eq`/`sw`/`ew` narrow but LDAP ignores the stored value's
        // leading and trailing spaces: never exact.
        assert_eq!(
            expr(r#"userName eq "bjensen""#),
            ("(uid=bjensen)".into(), false)
        );
        assert_eq!(expr(r#"userName sw "bj""#), ("(uid=bj*)".into(), false));
        assert_eq!(expr(r#"userName ew "en""#), ("(uid=*en)".into(), false));
        assert_eq!(expr(r#"userName co "jen""#), ("(uid=*jen*)".into(), true));
        assert_eq!(expr(r#"name.familyName ew "sen""#).0, "(sn=*sen)");
        assert_eq!(
            expr(r#"emails.value co "@example""#),
            ("(mail=*@example*)".into(), true)
        );
        assert_eq!(expr(r#"emails pr"#), ("(mail=*)".into(), true));
        assert_eq!(expr(r#"displayName pr"#), ("(displayName=*)".into(), true));
    }

    #[test]
    fn non_ascii_values_are_not_pushed_down() {
        // slapd folds final sigma differently from Rust's `to_lowercase`.
        let out = t(r#"userName co "ΣΑΣ""#);
        assert_eq!((out.ldap, out.exact), (Ldap::All, false));
        let out = t(r#"displayName eq "Ärger""#);
        assert_eq!((out.ldap, out.exact), (Ldap::All, false));
    }

    #[test]
    fn values_are_escaped_per_rfc_4515() {
        assert_eq!(
            expr(r#"userName eq "a*b(c)\\d""#).0,
            "(uid=a\\2ab\\28c\\29\\5cd)"
        );
    }

    #[test]
    fn boolean_logic_combines_and_drops_unmappable_branches() {
        assert_eq!(
            expr(r#"userName co "a" and title co "x""#),
            ("(&(uid=*a*)(title=*x*))".into(), true)
        );
        assert_eq!(
            expr(r#"userName co "a" or title co "b""#),
            ("(|(uid=*a*)(title=*b*))".into(), true)
        );
        assert_eq!(
            expr(r#"userName eq "a" or title eq "b""#),
            ("(|(uid=a)(title=b))".into(), false)
        );
        // `nickName` is not mapped: the `and` keeps the other side, inexact.
        assert_eq!(
            expr(r#"userName eq "a" and nickName eq "b""#),
            ("(uid=a)".into(), false)
        );
        assert_eq!(t(r#"userName eq "a" or nickName eq "b""#).ldap, Ldap::All);
        assert!(!t(r#"userName eq "a" or nickName eq "b""#).exact);
        assert_eq!(expr("not (title pr)"), ("(!(title=*))".into(), true));
        let not_eq = t(r#"not (userName eq "a")"#);
        assert_eq!((not_eq.ldap, not_eq.exact), (Ldap::All, false));
    }

    #[test]
    fn case_and_space_rules_decide_exactness() {
        // externalId is case-exact in SCIM, employeeNumber is caseIgnore in LDAP.
        assert_eq!(
            expr(r#"externalId eq "E1""#),
            ("(employeeNumber=E1)".into(), false)
        );
        // LDAP folds insignificant spaces.
        assert!(!expr(r#"displayName eq "Babs  Jensen""#).1);
        // Ordering and `ne` are never pushed down.
        assert_eq!(t(r#"userName gt "a""#).ldap, Ldap::All);
        assert_eq!(t(r#"userName ne "a""#).ldap, Ldap::All);
        assert_eq!(
            t(r#"meta.lastModified gt "2026-01-01T00:00:00Z""#).ldap,
            Ldap::All
        );
    }

    #[test]
    fn ids_active_and_value_paths() {
        assert_eq!(
            expr(r#"id eq "0b1f0c1e-8f41-4c5a-9a55-3f6a0f7c2d11""#),
            (
                "(entryUUID=0b1f0c1e-8f41-4c5a-9a55-3f6a0f7c2d11)".into(),
                true
            )
        );
        assert_eq!(t("active eq true"), Translated::exact(Ldap::All));
        assert_eq!(t("active eq false"), Translated::exact(Ldap::None));
        assert_eq!(
            expr(r#"emails[type eq "work" and value ew "@example.com"]"#),
            ("(mail=*@example.com)".into(), false)
        );
        let with_selector = t(r#"userName eq "a""#).with_selector("(objectClass=inetOrgPerson)");
        assert_eq!(
            with_selector.as_deref(),
            Some("(&(objectClass=inetOrgPerson)(uid=a))")
        );
        assert_eq!(t("active eq false").with_selector("(x=y)"), None);
    }
}
