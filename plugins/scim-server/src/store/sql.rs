//! The dialect-independent half of the SQL stores: a [`Scan`] becomes a
//! `WHERE … LIMIT … OFFSET …` text with bound parameters only (no value from
//! a client ever enters the SQL text); each store names its [`Dialect`].

use super::{Cmp, Cond, Scan};

/// What differs between the SQL dialects for a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// `$1, $2, …` (PostgreSQL) instead of `?` (SQLite).
    pub numbered: bool,
    /// The expression the case-insensitive `userName` is compared with (it
    /// must match the unique index so that the index answers it).
    pub user_name: &'static str,
}

pub const SQLITE: Dialect = Dialect {
    numbered: false,
    user_name: "user_name",
};

pub const POSTGRES: Dialect = Dialect {
    numbered: true,
    user_name: "lower(user_name)",
};

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
            self.sql.push('$');
            self.sql.push_str(&self.params.len().to_string());
        } else {
            self.sql.push('?');
        }
    }

    fn text(&mut self, dialect: Dialect, before: &str, value: &str) {
        self.sql.push_str(before);
        self.bind(dialect, Param::Text(value.to_string()));
    }
}

/// ` WHERE …` for a scan: resource types, the condition and (with
/// `with_keys`) the keyset bounds `after`/`before`.
pub fn where_clause(dialect: Dialect, scan: &Scan, with_keys: bool) -> Clause {
    let mut clause = Clause {
        sql: String::from(" WHERE resource_type IN ("),
        params: Vec::new(),
    };
    for (i, rt) in scan.resource_types.iter().enumerate() {
        if i > 0 {
            clause.sql.push(',');
        }
        clause.bind(dialect, Param::Text(rt.clone()));
    }
    clause.sql.push(')');
    if let Some(cond) = &scan.cond {
        clause.sql.push_str(" AND ");
        cond_sql(dialect, cond, &mut clause);
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
    clause
}

/// The whole row query of a scan, in `seq` order, selecting `columns`.
pub fn scan_query(dialect: Dialect, scan: &Scan, columns: &str) -> Clause {
    let mut clause = where_clause(dialect, scan, true);
    let order = if scan.descending { "DESC" } else { "ASC" };
    clause.sql = format!("SELECT {columns} FROM resources{}", clause.sql);
    clause.sql.push_str(" ORDER BY seq ");
    clause.sql.push_str(order);
    clause.sql.push_str(" LIMIT ");
    let limit = scan.limit.map_or(i64::MAX, clamp);
    clause.bind(dialect, Param::Int(limit));
    clause.sql.push_str(" OFFSET ");
    clause.bind(dialect, Param::Int(clamp(scan.offset)));
    clause
}

/// `SELECT COUNT(*)` of a scan (offset, limit and keys ignored).
pub fn count_query(dialect: Dialect, scan: &Scan) -> Clause {
    let mut clause = where_clause(dialect, scan, false);
    clause.sql = format!("SELECT COUNT(*) FROM resources{}", clause.sql);
    clause
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

fn cond_sql(dialect: Dialect, cond: &Cond, clause: &mut Clause) {
    match cond {
        Cond::Id(v) => clause.text(dialect, "id = ", v),
        Cond::UserName(v) => clause.text(dialect, &format!("{} = ", dialect.user_name), v),
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
            clause.text(dialect, &format!("last_modified {op} "), v)
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

    fn sample() -> Scan {
        Scan {
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
            ..Scan::default()
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
    fn counts_ignore_keys_and_paging() {
        let count = count_query(POSTGRES, &sample());
        assert!(count
            .sql
            .starts_with("SELECT COUNT(*) FROM resources WHERE"));
        assert!(!count.sql.contains("seq >") && !count.sql.contains("LIMIT"));
        assert_eq!(count.params.len(), 5);
    }
}
