//! The dialect-independent half of the SQL stores: the engine's filter
//! becomes a [`Cond`] ([`translate`]: the indexable part, and whether it is
//! exact), and a [`SqlScan`] becomes a `WHERE … LIMIT … OFFSET …` text with
//! bound parameters only (no value from a client ever enters the SQL text);
//! each store names its [`Dialect`].

use std::fmt::Write as _;

use scimgate_scim::registry::Location;
use scimgate_scim::schema::AttrType;
use scimgate_scim::{AttrPath, CompValue, CompareOp, Filter, SchemaCtx};
use scimgate_scim_service::timestamp;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{Cmp, Cond, SortKey, SqlScan};

/// The indexable part of `filter` as a store condition, and whether it
/// selects exactly what the filter does (then counts and pages can be
/// answered by the store alone: `Backend::filter_is_exact`).
pub fn translate(filter: &Filter, ctx: &SchemaCtx<'_>) -> (Option<Cond>, bool) {
    match filter {
        Filter::Compare { path, op, value } => compare_cond(path, *op, value, ctx),
        Filter::ValuePath { attr, filter } => match filter.as_ref() {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(v),
            } if path.sub_attr.is_none() && path.attr.eq_ignore_ascii_case("value") => {
                let p = AttrPath {
                    urn: attr.urn.clone(),
                    attr: attr.attr.clone(),
                    sub_attr: Some("value".into()),
                };
                compare_cond(&p, CompareOp::Eq, &CompValue::String(v.clone()), ctx)
            }
            _ => (None, false),
        },
        Filter::And(a, b) => match (translate(a, ctx), translate(b, ctx)) {
            ((Some(x), ex), (Some(y), ey)) => (Some(Cond::And(Box::new(x), Box::new(y))), ex && ey),
            ((Some(x), _), (None, _)) | ((None, _), (Some(x), _)) => (Some(x), false),
            _ => (None, false),
        },
        Filter::Or(a, b) => match (translate(a, ctx), translate(b, ctx)) {
            ((Some(x), ex), (Some(y), ey)) => (Some(Cond::Or(Box::new(x), Box::new(y))), ex && ey),
            _ => (None, false),
        },
        _ => (None, false),
    }
}

fn compare_cond(
    path: &AttrPath,
    op: CompareOp,
    value: &CompValue,
    ctx: &SchemaCtx<'_>,
) -> (Option<Cond>, bool) {
    let Some(resolved) = ctx.resolve(path) else {
        return (None, false);
    };
    if resolved.location != Location::Core {
        return (None, false);
    }
    let attr = resolved.attribute;
    let CompValue::String(text) = value else {
        return (None, false);
    };
    let sub = resolved.sub_attribute;
    match (attr.name.as_str(), sub.map(|s| s.name.as_str()), op) {
        ("id", None, CompareOp::Eq) => (Some(Cond::Id(text.clone())), attr.case_exact),
        ("externalId", None, CompareOp::Eq) if attr.case_exact => {
            (Some(Cond::ExternalId(text.clone())), true)
        }
        ("userName", None, CompareOp::Eq) => {
            (Some(Cond::UserName(text.to_lowercase())), !attr.case_exact)
        }
        ("displayName", None, CompareOp::Eq) => (
            Some(Cond::DisplayName(text.to_lowercase())),
            !attr.case_exact,
        ),
        ("emails", Some("value"), CompareOp::Eq) => {
            let exact = sub.is_some_and(|s| !s.case_exact);
            (Some(Cond::Email(text.to_lowercase())), exact)
        }
        ("meta", Some("lastModified"), op) => last_modified_cond(op, text),
        _ => (None, false),
    }
}

fn last_modified_cond(op: CompareOp, text: &str) -> (Option<Cond>, bool) {
    let Ok(instant) = OffsetDateTime::parse(text, &Rfc3339) else {
        return (None, false);
    };
    let nanos = instant.unix_timestamp_nanos();
    if !(0..=253_402_300_799_999_999_999).contains(&nanos) {
        return (None, false);
    }
    let floor_ms = (nanos / 1_000_000) as i64;
    let whole = nanos % 1_000_000 == 0;
    let ceil_ms = if whole { floor_ms } else { floor_ms + 1 };
    let (floor, ceil) = (timestamp(floor_ms), timestamp(ceil_ms));
    let cond = match (op, whole) {
        (CompareOp::Gt, true) => Cond::LastModified(Cmp::Gt, floor),
        (CompareOp::Ge, true) => Cond::LastModified(Cmp::Ge, floor),
        (CompareOp::Lt, true) => Cond::LastModified(Cmp::Lt, floor),
        (CompareOp::Le, true) => Cond::LastModified(Cmp::Le, floor),
        (CompareOp::Gt | CompareOp::Ge, false) => Cond::LastModified(Cmp::Ge, floor),
        (CompareOp::Lt | CompareOp::Le, false) => Cond::LastModified(Cmp::Le, ceil),
        (CompareOp::Eq, _) => Cond::And(
            Box::new(Cond::LastModified(Cmp::Ge, floor)),
            Box::new(Cond::LastModified(Cmp::Le, ceil)),
        ),
        _ => return (None, false),
    };
    (Some(cond), whole)
}

/// The column `path` sorts by, when its order is exactly the engine's
/// (`scimgate_scim::sort::compare`): `userName`/`displayName` when they are
/// case-insensitive single-valued core strings (the column holds Rust's
/// `to_lowercase` of the value and compares bytewise, which is the order of
/// `compare`; ties are broken by the value itself, as `compare` does),
/// `meta.created`/`meta.lastModified` (fixed-width RFC 3339 ms UTC text).
pub fn sort_key(path: &AttrPath, ctx: &SchemaCtx<'_>) -> Option<SortKey> {
    let resolved = ctx.resolve(path)?;
    if resolved.location != Location::Core {
        return None;
    }
    let attr = resolved.attribute;
    match (attr.name.as_str(), resolved.sub_attribute) {
        ("userName" | "displayName", None)
            if attr.attr_type == AttrType::String && !attr.case_exact && !attr.multi_valued =>
        {
            sort_key_by_name(path)
        }
        ("meta", Some(sub)) if sub.attr_type == AttrType::DateTime => sort_key_by_name(path),
        _ => None,
    }
}

/// The column of a path [`sort_key`] accepted, by name alone (a scan's
/// `sort` is only set after `can_sort`).
pub fn sort_key_by_name(path: &AttrPath) -> Option<SortKey> {
    let attr = path.attr.to_ascii_lowercase();
    let sub = path.sub_attr.as_deref().map(str::to_ascii_lowercase);
    match (attr.as_str(), sub.as_deref()) {
        ("username", None) => Some(SortKey::UserName),
        ("displayname", None) => Some(SortKey::DisplayName),
        ("meta", Some("created")) => Some(SortKey::Created),
        ("meta", Some("lastmodified")) => Some(SortKey::LastModified),
        _ => None,
    }
}

/// What differs between the SQL dialects for a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `$1, $2, …` (PostgreSQL) instead of `?` (SQLite).
    pub numbered: bool,
    /// The expression the case-insensitive `userName` is compared with (it
    /// must match the unique index so that the index answers it).
    pub user_name: &'static str,
    /// Bytewise (code point) order of text, as Rust compares strings.
    pub binary: &'static str,
    /// The JSON text of a body's top-level key `{}`.
    pub body_text: &'static str,
}

pub const SQLITE: Dialect = Dialect {
    numbered: false,
    user_name: "user_name",
    binary: "",
    body_text: "json_extract(body, '$.{}')",
};

pub const POSTGRES: Dialect = Dialect {
    numbered: true,
    user_name: "lower(user_name)",
    binary: " COLLATE \"C\"",
    body_text: "(body->>'{}')",
};

/// ` ORDER BY …` of a scan: `seq`, or a sort key with missing values last
/// ascending (first descending) and ties in `seq` order.
fn push_order_by(dialect: Dialect, scan: &SqlScan, sql: &mut String) {
    let Some((key, descending)) = scan.sort else {
        sql.push_str(if scan.descending {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq ASC"
        });
        return;
    };
    let dir = if descending { "DESC" } else { "ASC" };
    let c = dialect.binary;
    let (column, raw) = match key {
        SortKey::UserName => ("user_name", Some("userName")),
        SortKey::DisplayName => ("display_name", Some("displayName")),
        SortKey::Created => ("created", None),
        SortKey::LastModified => ("last_modified", None),
    };
    let _ = write!(sql, " ORDER BY ({column} IS NULL) {dir}, {column}{c} {dir}");
    if let Some(raw) = raw {
        let raw = dialect.body_text.replace("{}", raw);
        let _ = write!(sql, ", {raw}{c} {dir}");
    }
    sql.push_str(", seq ASC");
}

/// A bound parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Text(String),
    Int(i64),
}

/// SQL text and its parameters, in placeholder order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clause {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Clause {
    fn bind(&mut self, dialect: Dialect, param: Param) {
        self.params.push(param);
        if dialect.numbered {
            let _ = write!(self.sql, "${}", self.params.len());
        } else {
            self.sql.push('?');
        }
    }

    fn text(&mut self, dialect: Dialect, before: &str, value: &str) {
        self.sql.push_str(before);
        self.bind(dialect, Param::Text(value.to_string()));
    }
}

/// ` WHERE …` for a scan, written at the end of `clause` (made for every
/// list request: one `String`, no `format!`): resource types, the
/// condition and (with `with_keys`) the keyset bounds `after`/`before`.
fn push_where(dialect: Dialect, scan: &SqlScan, with_keys: bool, clause: &mut Clause) {
    clause.sql.push_str(" WHERE resource_type IN (");
    for (i, rt) in scan.resource_types.iter().enumerate() {
        if i > 0 {
            clause.sql.push(',');
        }
        clause.bind(dialect, Param::Text(rt.clone()));
    }
    clause.sql.push(')');
    if let Some(cond) = &scan.cond {
        clause.sql.push_str(" AND ");
        cond_sql(dialect, cond, clause);
    }
    if with_keys {
        if let Some(after) = scan.after {
            clause.sql.push_str(" AND seq > ");
            clause.bind(dialect, Param::Int(after));
        }
        if let Some(before) = scan.before {
            clause.sql.push_str(" AND seq < ");
            clause.bind(dialect, Param::Int(before));
        }
    }
}

/// The whole row query of a scan, in `seq` order, selecting `columns`.
pub fn scan_query(dialect: Dialect, scan: &SqlScan, columns: &str) -> Clause {
    let mut clause = Clause {
        sql: String::with_capacity(256),
        params: Vec::with_capacity(4),
    };
    clause.sql.push_str("SELECT ");
    clause.sql.push_str(columns);
    clause.sql.push_str(" FROM resources");
    push_where(dialect, scan, scan.sort.is_none(), &mut clause);
    push_order_by(dialect, scan, &mut clause.sql);
    clause.sql.push_str(" LIMIT ");
    let limit = scan.limit.map_or(i64::MAX, clamp);
    clause.bind(dialect, Param::Int(limit));
    clause.sql.push_str(" OFFSET ");
    clause.bind(dialect, Param::Int(clamp(scan.offset)));
    clause
}

/// `SELECT COUNT(*)` of a scan (offset, limit and keys ignored).
pub fn count_query(dialect: Dialect, scan: &SqlScan) -> Clause {
    let mut clause = Clause {
        sql: String::from("SELECT COUNT(*) FROM resources"),
        params: Vec::new(),
    };
    push_where(dialect, scan, false, &mut clause);
    clause
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

fn cond_sql(dialect: Dialect, cond: &Cond, clause: &mut Clause) {
    match cond {
        Cond::Id(v) => clause.text(dialect, "id = ", v),
        Cond::UserName(v) => {
            clause.sql.push_str(dialect.user_name);
            clause.text(dialect, " = ", v)
        }
        Cond::ExternalId(v) => clause.text(dialect, "external_id = ", v),
        Cond::DisplayName(v) => clause.text(dialect, "display_name = ", v),
        Cond::Email(v) => {
            clause.text(dialect, "seq IN (SELECT seq FROM emails WHERE value = ", v);
            clause.sql.push(')');
        }
        Cond::LastModified(cmp, v) => {
            let op = match cmp {
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
                Cmp::Lt => "<",
                Cmp::Le => "<=",
            };
            clause.sql.push_str("last_modified ");
            clause.sql.push_str(op);
            clause.text(dialect, " ", v)
        }
        Cond::And(a, b) | Cond::Or(a, b) => {
            let joiner = if matches!(cond, Cond::And(..)) {
                " AND "
            } else {
                " OR "
            };
            clause.sql.push('(');
            cond_sql(dialect, a, clause);
            clause.sql.push_str(joiner);
            cond_sql(dialect, b, clause);
            clause.sql.push(')');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scimgate_scim::{parse_filter, Registry};

    fn cond(text: &str) -> (Option<Cond>, bool) {
        let registry = Registry::core();
        let ctx = registry.context_for("User").expect("User");
        translate(&parse_filter(text).expect("filter"), &ctx)
    }

    #[test]
    fn indexable_filters_become_conditions() {
        assert_eq!(
            cond(r#"userName eq "BJensen""#),
            (Some(Cond::UserName("bjensen".into())), true)
        );
        assert_eq!(cond(r#"id eq "A""#), (Some(Cond::Id("A".into())), true));
        assert_eq!(
            cond(r#"externalId eq "X""#),
            (Some(Cond::ExternalId("X".into())), true)
        );
        assert_eq!(
            cond(r#"emails.value eq "A@B""#),
            (Some(Cond::Email("a@b".into())), true)
        );
        assert_eq!(
            cond(r#"emails[value eq "A@B"]"#),
            (Some(Cond::Email("a@b".into())), true)
        );
        let (c, exact) = cond(r#"userName eq "a" or userName eq "b""#);
        assert!(exact && matches!(c, Some(Cond::Or(..))));
        let (c, exact) = cond(r#"userName eq "a" and title co "x""#);
        assert_eq!((c, exact), (Some(Cond::UserName("a".into())), false));
        assert_eq!(cond(r#"userName eq "a" or title co "x""#), (None, false));
        assert_eq!(cond(r#"not (userName eq "a")"#), (None, false));
        assert_eq!(cond(r#"userName sw "a""#), (None, false));
        assert_eq!(
            cond(r#"meta.lastModified gt "2024-01-01T00:00:00Z""#),
            (
                Some(Cond::LastModified(
                    Cmp::Gt,
                    "2024-01-01T00:00:00.000Z".into()
                )),
                true
            )
        );
        assert_eq!(
            cond(r#"meta.lastModified gt "2024-01-01T00:00:00.0005Z""#),
            (
                Some(Cond::LastModified(
                    Cmp::Ge,
                    "2024-01-01T00:00:00.000Z".into()
                )),
                false
            )
        );
    }

    fn sample() -> SqlScan {
        SqlScan {
            resource_types: vec!["User".into(), "Group".into()],
            cond: Some(Cond::Or(
                Box::new(Cond::UserName("a'; DROP TABLE resources; --".into())),
                Box::new(Cond::And(
                    Box::new(Cond::Email("x@example.com".into())),
                    Box::new(Cond::LastModified(Cmp::Ge, "2024".into())),
                )),
            )),
            after: Some(7),
            limit: Some(10),
            offset: 3,
            ..SqlScan::default()
        }
    }

    #[test]
    fn both_dialects_bind_every_value_in_order() {
        let pg = scan_query(POSTGRES, &sample(), "id");
        assert_eq!(
            pg.sql,
            "SELECT id FROM resources WHERE resource_type IN ($1,$2) AND (lower(user_name) = $3 OR \
             (seq IN (SELECT seq FROM emails WHERE value = $4) AND last_modified >= $5)) \
             AND seq > $6 ORDER BY seq ASC LIMIT $7 OFFSET $8"
        );
        assert_eq!(pg.params.len(), 8);
        assert_eq!(
            pg.params[2],
            Param::Text("a'; DROP TABLE resources; --".into())
        );
        assert_eq!(pg.params[5], Param::Int(7));
        assert_eq!(pg.params[7], Param::Int(3));
        let lite = scan_query(SQLITE, &sample(), "id");
        assert_eq!(
            lite.params, pg.params,
            "the same parameters, the same order"
        );
        assert!(lite.sql.contains("user_name = ?") && !lite.sql.contains('$'));
        assert!(
            !lite.sql.contains("DROP"),
            "values never enter the SQL text"
        );
    }

    #[test]
    fn only_columns_in_the_engines_order_are_sortable() {
        let registry = Registry::core();
        let users = registry.context_for("User").expect("User");
        let groups = registry.context_for("Group").expect("Group");
        let key =
            |ctx: &SchemaCtx<'_>, path: &str| sort_key(&AttrPath::parse(path).expect("path"), ctx);
        assert_eq!(key(&users, "userName"), Some(SortKey::UserName));
        assert_eq!(
            key(
                &users,
                "urn:ietf:params:scim:schemas:core:2.0:User:USERNAME"
            ),
            Some(SortKey::UserName)
        );
        assert_eq!(key(&groups, "displayName"), Some(SortKey::DisplayName));
        assert_eq!(
            key(&users, "meta.lastModified"),
            Some(SortKey::LastModified)
        );
        assert_eq!(key(&users, "meta.created"), Some(SortKey::Created));
        // Case-exact, other columns, multi-valued, strings of `meta`, unknown.
        for path in [
            "externalId",
            "title",
            "emails.value",
            "emails",
            "meta.resourceType",
            "nope",
        ] {
            assert_eq!(key(&users, path), None, "{path}");
        }
        assert_eq!(key(&groups, "userName"), None);
    }

    #[test]
    fn sorted_scans_order_by_the_column_then_the_value_then_seq() {
        let scan = |key, descending| SqlScan {
            resource_types: vec!["User".into()],
            sort: Some((key, descending)),
            after: Some(9),
            ..SqlScan::default()
        };
        let pg = scan_query(POSTGRES, &scan(SortKey::DisplayName, false), "id");
        assert!(
            pg.sql.ends_with(
                "ORDER BY (display_name IS NULL) ASC, display_name COLLATE \"C\" ASC, \
                 (body->>'displayName') COLLATE \"C\" ASC, seq ASC LIMIT $2 OFFSET $3"
            ),
            "{}",
            pg.sql
        );
        assert!(
            !pg.sql.contains("seq >"),
            "no keyset bound in a sorted scan"
        );
        let lite = scan_query(SQLITE, &scan(SortKey::LastModified, true), "id");
        assert!(
            lite.sql
                .contains("ORDER BY (last_modified IS NULL) DESC, last_modified DESC, seq ASC"),
            "{}",
            lite.sql
        );
        let lite = scan_query(SQLITE, &scan(SortKey::UserName, true), "id");
        assert!(lite
            .sql
            .contains("json_extract(body, '$.userName') DESC, seq ASC"));
    }

    #[test]
    fn counts_ignore_keys_and_paging() {
        let count = count_query(POSTGRES, &sample());
        assert!(count
            .sql
            .starts_with("SELECT COUNT(*) FROM resources WHERE"));
        assert!(!count.sql.contains("seq >") && !count.sql.contains("LIMIT"));
        assert_eq!(count.params.len(), 5);
    }
}
