//! Typed accessors over the spanned tree that report, rather than return,
//! their errors: every problem lands in one list, each with its place.

use std::ops::Range;

use super::diagnostic::Diagnostic;
use super::tree::{Entry, Kind, Table, Val};

/// Collects diagnostics while the walkers read the tree.
pub(crate) struct Checker<'s> {
    pub diags: Vec<Diagnostic>,
    /// The file's text, to name lines in help messages.
    pub text: &'s str,
}

impl Checker<'_> {
    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text
            .get(..offset)
            .map_or(0, |t| t.matches('\n').count())
            + 1
    }

    pub fn push(&mut self, diag: Diagnostic) {
        self.diags.push(diag);
    }

    /// Reports every key of `table` not in `allowed`, at the key.
    pub fn unknown_keys(&mut self, table: &Table, path: &str, allowed: &[&str]) {
        for entry in &table.entries {
            if !allowed.contains(&entry.key.as_str()) {
                self.push(unknown_key(entry, path, allowed));
            }
        }
    }

    /// A required key; a missing one is reported at the table's header.
    pub fn required<'t>(&mut self, table: &'t Table, key: &str, path: &str) -> Option<&'t Entry> {
        let entry = table.get(key);
        if entry.is_none() {
            self.push(
                Diagnostic::error(
                    format!("missing required key `{key}` in [{path}]"),
                    table.header_span.clone(),
                )
                .with_label(format!("`{key}` is required here")),
            );
        }
        entry
    }

    /// Reports a type mismatch unless the value was already reported.
    pub fn wrong_type(&mut self, val: &Val, path: &str, expected: &str) {
        if matches!(val.kind, Kind::Poisoned) {
            return;
        }
        self.push(
            Diagnostic::error(
                format!(
                    "expected {expected} for `{path}`, found {}",
                    val.kind.type_name()
                ),
                val.span.clone(),
            )
            .with_label(format!("expected {expected}")),
        );
    }

    pub fn str<'v>(&mut self, val: &'v Val, path: &str) -> Option<&'v str> {
        match &val.kind {
            Kind::Str(s) => Some(s),
            _ => {
                self.wrong_type(val, path, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, val: &Val, path: &str) -> Option<bool> {
        match val.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.wrong_type(val, path, "a boolean");
                None
            }
        }
    }

    pub fn int(&mut self, val: &Val, path: &str) -> Option<i64> {
        match val.kind {
            Kind::Int(i) => Some(i),
            _ => {
                self.wrong_type(val, path, "an integer");
                None
            }
        }
    }

    pub fn table<'v>(&mut self, val: &'v Val, path: &str) -> Option<&'v Table> {
        match &val.kind {
            Kind::Table(t) => Some(t),
            _ => {
                self.wrong_type(val, path, "a table");
                None
            }
        }
    }

    pub fn array<'v>(&mut self, val: &'v Val, path: &str) -> Option<&'v [Val]> {
        match &val.kind {
            Kind::Array(items) => Some(items),
            _ => {
                self.wrong_type(val, path, "an array");
                None
            }
        }
    }

    /// An array of strings; bad elements are reported and skipped.
    pub fn str_array<'v>(&mut self, val: &'v Val, path: &str) -> Vec<(&'v str, &'v Val)> {
        let Some(items) = self.array(val, path) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| self.str(item, &format!("{path}[]")).map(|s| (s, item)))
            .collect()
    }

    /// Optional string key.
    pub fn opt_str<'t>(
        &mut self,
        table: &'t Table,
        key: &str,
        path: &str,
    ) -> Option<(&'t str, &'t Val)> {
        let entry = table.get(key)?;
        self.str(&entry.val, &format!("{path}.{key}"))
            .map(|s| (s, &entry.val))
    }

    /// Required string key.
    pub fn req_str<'t>(
        &mut self,
        table: &'t Table,
        key: &str,
        path: &str,
    ) -> Option<(&'t str, &'t Val)> {
        let entry = self.required(table, key, path)?;
        self.str(&entry.val, &format!("{path}.{key}"))
            .map(|s| (s, &entry.val))
    }
}

/// The "unknown key" diagnostic, with a suggestion when a close name exists.
pub(crate) fn unknown_key(entry: &Entry, path: &str, allowed: &[&str]) -> Diagnostic {
    let mut help = format!("allowed keys in [{path}]: {}", allowed.join(", "));
    if let Some(close) = did_you_mean(&entry.key, allowed.iter().copied()) {
        help = format!("did you mean `{close}`? {help}");
    }
    Diagnostic::error(
        format!("unknown key `{}` in [{path}]", entry.key),
        entry.key_span.clone(),
    )
    .with_label("unknown key")
    .with_help(help)
}

/// The closest candidate within a small edit distance, if any.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over chars.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let best = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(best);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Span helper: the value's span, or an empty range when unknown.
pub(crate) fn span_or_empty(span: &Option<Range<usize>>) -> Range<usize> {
    span.clone().unwrap_or(0..0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(edit_distance("bearr", "bearer"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(did_you_mean("bearr", ["bearer", "scim"]), Some("bearer"));
        assert_eq!(
            did_you_mean("lisen", ["listen", "data_dir"]),
            Some("listen")
        );
        assert_eq!(did_you_mean("zzzzzz", ["bearer", "scim"]), None);
    }
}
