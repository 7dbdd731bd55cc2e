//! A spanned value tree built from the `toml_edit` document, with `${VAR}`
//! expansion applied to every string value (never to keys or raw text).
//!
//! The typed walkers in the sibling files read this tree instead of
//! `toml_edit` directly, so tables, inline tables and arrays of tables look alike.

use std::ops::Range;

use toml_edit::{Datetime, ImDocument, Item, Value};

use super::diagnostic::Diagnostic;

/// A value with its place in the file.
#[derive(Debug, Clone)]
pub(crate) struct Val {
    pub kind: Kind,
    pub span: Option<Range<usize>>,
    /// The string came out of `${VAR}` expansion: never echo it.
    pub expanded: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime(Datetime),
    Array(Vec<Val>),
    Table(Table),
    /// Already reported (e.g. a missing variable); skip silently.
    Poisoned,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    pub entries: Vec<Entry>,
    /// The `[header]` of a table, or the key that introduced it.
    pub header_span: Option<Range<usize>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    pub key_span: Option<Range<usize>>,
    pub val: Val,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }
}

impl Kind {
    /// What the value is, for "expected …, found …" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Kind::Str(_) => "a string",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a float",
            Kind::Bool(_) => "a boolean",
            Kind::Datetime(_) => "a datetime",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
            Kind::Poisoned => "an invalid value",
        }
    }
}

impl Val {
    /// The value quoted for a message, unless it came from the environment.
    pub fn shown(&self) -> String {
        match (&self.kind, self.expanded) {
            (_, true) => "the expanded value".to_string(),
            (Kind::Str(s), false) => format!("`{s}`"),
            (other, false) => other.type_name().to_string(),
        }
    }

    /// Converts to JSON: datetimes become their RFC 3339 text; a float that
    /// JSON cannot hold (NaN, inf) is reported.
    pub fn to_json(&self, diags: &mut Vec<Diagnostic>) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.kind {
            Kind::Str(s) => J::String(s.clone()),
            Kind::Int(i) => J::from(*i),
            Kind::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => J::Number(n),
                None => {
                    diags.push(
                        Diagnostic::error(
                            "this float cannot be represented in JSON",
                            self.span.clone(),
                        )
                        .with_label("NaN and infinity are not allowed"),
                    );
                    J::Null
                }
            },
            Kind::Bool(b) => J::Bool(*b),
            Kind::Datetime(d) => J::String(d.to_string()),
            Kind::Array(items) => J::Array(items.iter().map(|v| v.to_json(diags)).collect()),
            Kind::Table(t) => J::Object(
                t.entries
                    .iter()
                    .map(|e| (e.key.clone(), e.val.to_json(diags)))
                    .collect(),
            ),
            Kind::Poisoned => J::Null,
        }
    }
}

/// Builds the tree of the whole document, expanding variables on the way.
pub(crate) fn build(
    doc: &ImDocument<&str>,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    diags: &mut Vec<Diagnostic>,
) -> Table {
    let mut builder = Builder { text, env, diags };
    builder.table(doc.as_table(), Some(0..0))
}

struct Builder<'a, 'd> {
    text: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    diags: &'d mut Vec<Diagnostic>,
}

impl Builder<'_, '_> {
    fn table(&mut self, table: &toml_edit::Table, key_span: Option<Range<usize>>) -> Table {
        let header_span = table
            .span()
            .and_then(|s| header_of(self.text, s.start))
            .or(key_span);
        let entries = table
            .iter()
            .map(|(key, item)| {
                let key_span = table.key(key).and_then(|k| k.span());
                Entry {
                    key: key.to_string(),
                    key_span: key_span.clone(),
                    val: self.item(item, key_span),
                }
            })
            .collect();
        Table {
            entries,
            header_span,
        }
    }

    fn item(&mut self, item: &Item, key_span: Option<Range<usize>>) -> Val {
        match item {
            Item::Value(v) => self.value(v, key_span),
            Item::Table(t) => Val {
                span: t.span().or_else(|| key_span.clone()),
                kind: Kind::Table(self.table(t, key_span)),
                expanded: false,
            },
            Item::ArrayOfTables(a) => Val {
                span: a.span().or_else(|| key_span.clone()),
                kind: Kind::Array(
                    a.iter()
                        .map(|t| Val {
                            span: t.span().or_else(|| key_span.clone()),
                            kind: Kind::Table(self.table(t, key_span.clone())),
                            expanded: false,
                        })
                        .collect(),
                ),
                expanded: false,
            },
            Item::None => Val {
                kind: Kind::Poisoned,
                span: key_span,
                expanded: false,
            },
        }
    }

    fn value(&mut self, value: &Value, key_span: Option<Range<usize>>) -> Val {
        let span = value.span();
        let mut expanded = false;
        let kind = match value {
            Value::String(s) => match expand(s.value(), self.env) {
                Ok((text, did_expand)) => {
                    expanded = did_expand;
                    Kind::Str(text)
                }
                Err(problem) => {
                    self.diags.push(problem.into_diagnostic(span.clone()));
                    Kind::Poisoned
                }
            },
            Value::Integer(i) => Kind::Int(*i.value()),
            Value::Float(f) => Kind::Float(*f.value()),
            Value::Boolean(b) => Kind::Bool(*b.value()),
            Value::Datetime(d) => Kind::Datetime(*d.value()),
            Value::Array(a) => Kind::Array(a.iter().map(|v| self.value(v, None)).collect()),
            Value::InlineTable(t) => Kind::Table(Table {
                entries: t
                    .iter()
                    .map(|(key, v)| {
                        let key_span = t.key(key).and_then(|k| k.span());
                        Entry {
                            key: key.to_string(),
                            key_span: key_span.clone(),
                            val: self.value(v, key_span),
                        }
                    })
                    .collect(),
                header_span: key_span.or_else(|| span.clone()),
            }),
        };
        Val {
            kind,
            span,
            expanded,
        }
    }
}

/// The span of a `[table]` or `[[array.of.tables]]` header starting at `start`.
pub(crate) fn header_of(text: &str, start: usize) -> Option<Range<usize>> {
    let rest = text.get(start..)?;
    if !rest.starts_with('[') {
        return None;
    }
    let double = rest.starts_with("[[");
    let mut quote: Option<char> = None;
    for (i, c) in rest.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '\n') => return None,
            (None, ']') => {
                let end = if double && rest[i + 1..].starts_with(']') {
                    i + 2
                } else {
                    i + 1
                };
                return Some(start..start + end);
            }
            _ => {}
        }
    }
    None
}

/// Why a string could not be expanded. Holds names only, never values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ExpandError {
    Missing(String),
    BadName(String),
    Unterminated,
    /// `${file:PATH}` could not be read: the path and the OS's reason.
    File(String, String),
}

impl ExpandError {
    fn into_diagnostic(self, span: Option<Range<usize>>) -> Diagnostic {
        match self {
            ExpandError::Missing(name) => Diagnostic::error(
                format!("environment variable `{name}` is not set"),
                span,
            )
            .with_label(format!("`${{{name}}}` used here"))
            .with_help(format!(
                "set `{name}`, or give a default: `${{{name}:-default}}`; write `$$` for a literal `$`"
            )),
            ExpandError::BadName(name) => Diagnostic::error(
                format!("invalid variable name `{name}` in `${{…}}`"),
                span,
            )
            .with_label("names are [A-Za-z_][A-Za-z0-9_]*")
            .with_help("write `$$` for a literal `$`"),
            ExpandError::File(path, reason) => Diagnostic::error(
                format!("cannot read the secret file `{path}`: {reason}"),
                span,
            )
            .with_label("`${file:…}` used here")
            .with_help("the file's content (one trailing newline trimmed) is the value; check the path and that scimgate may read it"),
            ExpandError::Unterminated => {
                Diagnostic::error("unterminated `${` in string", span)
                    .with_label("missing `}`")
                    .with_help("write `$$` for a literal `$`")
            }
        }
    }
}

/// Expands `${VAR}` and `${VAR:-default}` (default used when unset or empty)
/// and `${file:/path}` (the file's content, one trailing newline trimmed: a
/// Docker or Kubernetes secret, a systemd credential); `$$` is a literal
/// `$`, and any other `$` is kept as is (so argon2 hashes need no escaping).
/// Returns the text and whether a variable was referenced.
pub(crate) fn expand(
    input: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, bool), ExpandError> {
    if !input.contains('$') {
        return Ok((input.to_string(), false));
    }
    let mut out = String::with_capacity(input.len());
    let mut expanded = false;
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let close = body.find('}').ok_or(ExpandError::Unterminated)?;
            let inner = &body[..close];
            if let Some(path) = inner.strip_prefix("file:") {
                out.push_str(&read_secret_file(path)?);
                expanded = true;
                rest = &body[close + 1..];
                continue;
            }
            let (name, default) = match inner.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (inner, None),
            };
            if !is_var_name(name) {
                return Err(ExpandError::BadName(name.to_string()));
            }
            expanded = true;
            match (
                env(name).filter(|v| !v.is_empty() || default.is_none()),
                default,
            ) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(ExpandError::Missing(name.to_string())),
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok((out, expanded))
}

/// The content of a `${file:…}` secret, one trailing newline trimmed; a
/// warning (never the content) when other users may read the file.
fn read_secret_file(path: &str) -> Result<String, ExpandError> {
    let fail = |e: std::io::Error| ExpandError::File(path.to_string(), e.to_string());
    if path.is_empty() {
        return Err(ExpandError::File(String::new(), "no path given".into()));
    }
    let mut text = std::fs::read_to_string(path).map_err(fail)?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o004 != 0 {
                tracing::warn!(
                    path,
                    "the secret file is readable by every user of this machine; chmod o-r it"
                );
            }
        }
    }
    Ok(text)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/x".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expansion() {
        assert_eq!(expand("plain", &env), Ok(("plain".into(), false)));
        let dir = std::env::temp_dir().join(format!("scimgate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret\n").unwrap();
        let reference = format!("${{file:{}}}", file.display());
        assert_eq!(expand(&reference, &env), Ok(("s3cret".into(), true)));
        std::fs::write(&file, "two\nlines\r\n").unwrap();
        assert_eq!(
            expand(&format!("a-{reference}-b"), &env),
            Ok(("a-two\nlines-b".into(), true))
        );
        let missing = format!("${{file:{}/nope}}", dir.display());
        assert!(
            matches!(expand(&missing, &env), Err(ExpandError::File(path, _)) if path.ends_with("/nope"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(expand("${HOME}/a", &env), Ok(("/home/x/a".into(), true)));
        assert_eq!(expand("${NOPE:-dflt}", &env), Ok(("dflt".into(), true)));
        assert_eq!(expand("${EMPTY:-dflt}", &env), Ok(("dflt".into(), true)));
        assert_eq!(expand("${EMPTY}", &env), Ok((String::new(), true)));
        assert_eq!(expand("${NOPE:-}", &env), Ok((String::new(), true)));
        assert_eq!(expand("$${HOME}", &env), Ok(("${HOME}".into(), false)));
        assert_eq!(
            expand("$argon2id$v=19$m=1", &env),
            Ok(("$argon2id$v=19$m=1".into(), false))
        );
        assert_eq!(expand("a$", &env), Ok(("a$".into(), false)));
        assert_eq!(
            expand("${NOPE}", &env),
            Err(ExpandError::Missing("NOPE".into()))
        );
        assert_eq!(
            expand("${1X}", &env),
            Err(ExpandError::BadName("1X".into()))
        );
        assert_eq!(expand("${HOME", &env), Err(ExpandError::Unterminated));
    }

    #[test]
    fn headers() {
        let text = "[a]\nx = 1\n[[b . \"c]\" ]]\n";
        assert_eq!(header_of(text, 0), Some(0..3));
        let b = text.find("[[").unwrap();
        assert_eq!(&text[header_of(text, b).unwrap()], "[[b . \"c]\" ]]");
        assert_eq!(header_of(text, 1), None);
    }

    #[test]
    fn builds_spans_and_expands_in_nested_values() {
        let text = "[s]\na = { b = [\"${HOME}\", 1.5] }\n";
        let doc = ImDocument::parse(text).unwrap();
        let mut diags = Vec::new();
        let root = build(&doc, text, &env, &mut diags);
        assert!(diags.is_empty());
        let s = &root.get("s").unwrap().val;
        let Kind::Table(s) = &s.kind else { panic!() };
        assert_eq!(s.header_span, Some(0..3));
        let json = s.get("a").unwrap().val.to_json(&mut diags);
        assert_eq!(json, serde_json::json!({"b": ["/home/x", 1.5]}));
    }
}
