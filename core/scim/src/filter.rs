//! RFC 7644 §3.4.2.2 filters: the public AST ([`Filter`], [`AttrPath`]), a bounded
//! recursive-descent parser ([`parse_filter`]), a printer (`Display`, which parses back
//! to the same AST) and a schema-aware evaluator ([`Filter::matches`]).
//!
//! Stores may translate the indexable part of the AST to SQL and evaluate the rest here.

use serde_json::{Number, Value};
use std::cmp::Ordering;
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ScimError;
use crate::object_keys;
use crate::registry::{Location, SchemaCtx};
use crate::schema::{AttrType, Attribute, Returned};

/// Longest filter text accepted, in bytes.
pub const MAX_FILTER_LENGTH: usize = 64 * 1024;
/// Deepest nesting of parentheses, `not` and value paths accepted.
pub const MAX_FILTER_DEPTH: usize = 64;

/// An attribute path: `[urn ":"] attr ["." sub_attr]`.
///
/// `urn` is the schema URN when the path is fully qualified, e.g. for
/// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value`
/// `urn` is `…:enterprise:2.0:User`, `attr` is `manager`, `sub_attr` is `value`.
/// Names keep the client's spelling; comparisons with the schema ignore case.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrPath {
    /// Schema URN qualifying the attribute, if any.
    pub urn: Option<String>,
    /// Attribute name.
    pub attr: String,
    /// Sub-attribute name, if any.
    pub sub_attr: Option<String>,
}

impl AttrPath {
    /// An unqualified path to a top-level attribute.
    pub fn new(attr: &str) -> Self {
        AttrPath {
            urn: None,
            attr: attr.to_string(),
            sub_attr: None,
        }
    }
    /// Qualifies the path with a schema URN.
    pub fn with_urn(mut self, urn: &str) -> Self {
        self.urn = Some(urn.to_string());
        self
    }
    /// Adds a sub-attribute.
    pub fn with_sub(mut self, sub_attr: &str) -> Self {
        self.sub_attr = Some(sub_attr.to_string());
        self
    }

    /// Parses `name`, `name.sub`, `urn:…:name` or `urn:…:name.sub` (errors are `invalidPath`).
    pub fn parse(text: &str) -> Result<AttrPath, ScimError> {
        split_attr_path(text.trim()).map_err(|why| {
            ScimError::invalid_path(format!("invalid attribute path '{text}': {why}"))
        })
    }

    /// Whether this path names `attr` (and `sub_attr`) ignoring case and ignoring the URN.
    pub fn names(&self, attr: &str, sub_attr: Option<&str>) -> bool {
        self.attr.eq_ignore_ascii_case(attr)
            && match (&self.sub_attr, sub_attr) {
                (None, None) => true,
                (Some(mine), Some(theirs)) => mine.eq_ignore_ascii_case(theirs),
                _ => false,
            }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.attr)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

/// A comparison operator (RFC 7644 Table 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareOp {
    /// equal
    Eq,
    /// not equal
    Ne,
    /// contains
    Co,
    /// starts with
    Sw,
    /// ends with
    Ew,
    /// greater than
    Gt,
    /// greater than or equal to
    Ge,
    /// less than
    Lt,
    /// less than or equal to
    Le,
}

impl CompareOp {
    /// The lowercase keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }

    /// Parses a keyword, case-insensitively.
    pub fn parse(keyword: &str) -> Option<CompareOp> {
        [
            CompareOp::Eq,
            CompareOp::Ne,
            CompareOp::Co,
            CompareOp::Sw,
            CompareOp::Ew,
            CompareOp::Gt,
            CompareOp::Ge,
            CompareOp::Lt,
            CompareOp::Le,
        ]
        .into_iter()
        .find(|op| op.as_str().eq_ignore_ascii_case(keyword))
    }

    fn is_ordering(self) -> bool {
        matches!(
            self,
            CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
        )
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A literal on the right of a comparison. Dates are strings; the attribute type
/// decides how they compare.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A JSON number.
    Number(Number),
    /// A JSON string (escapes decoded).
    String(String),
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Null => f.write_str("null"),
            CompValue::Bool(flag) => write!(f, "{flag}"),
            CompValue::Number(number) => write!(f, "{number}"),
            CompValue::String(text) => write!(f, "{}", Value::String(text.clone())),
        }
    }
}

/// A parsed filter.
///
/// `And`/`Or` are binary and left-associative as parsed (`a and b and c` is
/// `And(And(a, b), c)`); grouping parentheses leave no node. Inside `ValuePath`,
/// paths are relative to the elements of `attr` (`emails[type eq "work"]` has an
/// inner path `type`), and value paths do not nest.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `path op value`
    Compare {
        /// The attribute compared.
        path: AttrPath,
        /// The operator.
        op: CompareOp,
        /// The literal.
        value: CompValue,
    },
    /// `path pr`
    Present(AttrPath),
    /// `left and right`
    And(Box<Filter>, Box<Filter>),
    /// `left or right`
    Or(Box<Filter>, Box<Filter>),
    /// `not (inner)`
    Not(Box<Filter>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches `filter`.
    ValuePath {
        /// The (multi-valued, complex) attribute.
        attr: AttrPath,
        /// The filter applied to each element.
        filter: Box<Filter>,
    },
}

/// Parses a filter (RFC 7644 §3.4.2.2). Errors are `invalidFilter` with the byte
/// position and what was expected. Input longer than [`MAX_FILTER_LENGTH`] or nested
/// deeper than [`MAX_FILTER_DEPTH`] is refused.
pub fn parse_filter(text: &str) -> Result<Filter, ScimError> {
    if text.len() > MAX_FILTER_LENGTH {
        return Err(ScimError::invalid_filter(format!(
            "filter is {} bytes long; at most {MAX_FILTER_LENGTH} are accepted",
            text.len()
        )));
    }
    let mut parser = Parser::new(text, ErrorKind::Filter);
    let filter = parser.filter(false)?;
    parser.expect_end("'and', 'or' or end of filter")?;
    Ok(filter)
}

/// A PATCH `path` (RFC 7644 §3.5.2): `attrPath` or `valuePath ["." subAttr]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (with its sub-attribute when there is no filter).
    pub attr: AttrPath,
    /// The value selection filter of `attr[filter]`.
    pub filter: Option<Filter>,
    /// The sub-attribute after a value filter: `emails[type eq "work"].value`.
    pub sub_attr: Option<String>,
}

impl PatchPath {
    /// Parses a PATCH path; errors are `invalidPath`.
    pub fn parse(text: &str) -> Result<PatchPath, ScimError> {
        if text.len() > MAX_FILTER_LENGTH {
            return Err(ScimError::invalid_path(format!(
                "path is {} bytes long",
                text.len()
            )));
        }
        let mut parser = Parser::new(text, ErrorKind::Path);
        let path = parser.patch_path()?;
        parser.expect_end("end of path")?;
        Ok(path)
    }
}

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Printer

#[derive(Clone, Copy, PartialEq, PartialOrd)]
enum Precedence {
    Or,
    And,
    Atom,
}

impl Filter {
    fn precedence(&self) -> Precedence {
        match self {
            Filter::Or(..) => Precedence::Or,
            Filter::And(..) => Precedence::And,
            _ => Precedence::Atom,
        }
    }

    fn write_at(&self, f: &mut fmt::Formatter<'_>, minimum: Precedence) -> fmt::Result {
        if self.precedence() < minimum {
            write!(f, "(")?;
            self.write_at(f, Precedence::Or)?;
            return write!(f, ")");
        }
        match self {
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::And(left, right) => {
                left.write_at(f, Precedence::And)?;
                write!(f, " and ")?;
                right.write_at(f, Precedence::Atom)
            }
            Filter::Or(left, right) => {
                left.write_at(f, Precedence::Or)?;
                write!(f, " or ")?;
                right.write_at(f, Precedence::And)
            }
            Filter::Not(inner) => {
                write!(f, "not (")?;
                inner.write_at(f, Precedence::Or)?;
                write!(f, ")")
            }
            Filter::ValuePath { attr, filter } => {
                write!(f, "{attr}[")?;
                filter.write_at(f, Precedence::Or)?;
                write!(f, "]")
            }
        }
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_at(f, Precedence::Or)
    }
}

// ---------------------------------------------------------------------------
// Lexer and parser

#[derive(Clone, Copy)]
enum ErrorKind {
    Filter,
    Path,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    OpenParen,
    CloseParen,
    OpenBracket,
    CloseBracket,
    Word(String),
    Str(String),
    Num(Number),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::OpenParen => "'('".into(),
            Token::CloseParen => "')'".into(),
            Token::OpenBracket => "'['".into(),
            Token::CloseBracket => "']'".into(),
            Token::Word(word) => format!("'{}'", shorten(word)),
            Token::Str(text) => format!("string \"{}\"", shorten(text)),
            Token::Num(number) => format!("number {number}"),
            Token::End => "end of input".into(),
        }
    }
}

fn shorten(text: &str) -> String {
    if text.chars().count() > 40 {
        let mut short: String = text.chars().take(40).collect();
        short.push('…');
        short
    } else {
        text.to_string()
    }
}

struct Parser<'t> {
    text: &'t str,
    position: usize,
    peeked: Option<(usize, Token, usize)>,
    depth: usize,
    kind: ErrorKind,
}

impl<'t> Parser<'t> {
    fn new(text: &'t str, kind: ErrorKind) -> Self {
        Parser {
            text,
            position: 0,
            peeked: None,
            depth: 0,
            kind,
        }
    }

    fn error_at(&self, position: usize, message: String) -> ScimError {
        match self.kind {
            ErrorKind::Filter => {
                ScimError::invalid_filter(format!("invalid filter at byte {position}: {message}"))
            }
            ErrorKind::Path => {
                ScimError::invalid_path(format!("invalid path at byte {position}: {message}"))
            }
        }
    }

    fn expected(&self, position: usize, expected: &str, found: &Token) -> ScimError {
        self.error_at(
            position,
            format!("expected {expected}, found {}", found.describe()),
        )
    }

    /// Start position, token, end position of the next token, without consuming it.
    fn peek(&mut self) -> Result<(usize, Token), ScimError> {
        if let Some((start, token, _)) = &self.peeked {
            return Ok((*start, token.clone()));
        }
        let (start, token, end) = self.lex()?;
        self.peeked = Some((start, token.clone(), end));
        Ok((start, token))
    }

    fn next(&mut self) -> Result<(usize, Token), ScimError> {
        if let Some((start, token, end)) = self.peeked.take() {
            self.position = end;
            return Ok((start, token));
        }
        let (start, token, end) = self.lex()?;
        self.position = end;
        Ok((start, token))
    }

    fn lex(&self) -> Result<(usize, Token, usize), ScimError> {
        let bytes = self.text.as_bytes();
        let mut at = self.position;
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        let Some(&first) = bytes.get(at) else {
            return Ok((start, Token::End, start));
        };
        let single = |token| Ok((start, token, start + 1));
        match first {
            b'(' => single(Token::OpenParen),
            b')' => single(Token::CloseParen),
            b'[' => single(Token::OpenBracket),
            b']' => single(Token::CloseBracket),
            b'"' => self.lex_string(start),
            b'-' | b'0'..=b'9' => {
                // mutants: equivalent — `start * 1`: the first byte (`-` or a
                // digit) is one the loop below accepts, so starting at it ends
                // at the same place.
                let mut end = start + 1;
                while end < bytes.len()
                    && matches!(bytes[end], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    end += 1;
                }
                let literal = &self.text[start..end];
                match parse_number(literal) {
                    Some(number) => Ok((start, Token::Num(number), end)),
                    None => Err(self.error_at(
                        start,
                        format!("'{}' is not a valid number", shorten(literal)),
                    )),
                }
            }
            byte if is_word_start(byte) => {
                // mutants: equivalent — `start * 1`: every word start is also
                // a word byte, so starting the loop at it ends at the same place.
                let mut end = start + 1;
                while end < bytes.len() && is_word_byte(bytes[end]) {
                    end += 1;
                }
                Ok((start, Token::Word(self.text[start..end].to_string()), end))
            }
            _ => {
                let found = self.text[start..].chars().next().unwrap_or('?');
                Err(self.error_at(start, format!("unexpected character '{found}'")))
            }
        }
    }

    fn lex_string(&self, start: usize) -> Result<(usize, Token, usize), ScimError> {
        let bytes = self.text.as_bytes();
        let mut out = String::new();
        let mut at = start + 1;
        let mut run_start = at;
        loop {
            let Some(&byte) = bytes.get(at) else {
                return Err(self.error_at(start, "unterminated string literal".into()));
            };
            match byte {
                b'"' => {
                    out.push_str(&self.text[run_start..at]);
                    return Ok((start, Token::Str(out), at + 1));
                }
                b'\\' => {
                    out.push_str(&self.text[run_start..at]);
                    let escape = bytes.get(at + 1).copied();
                    at += 2;
                    match escape {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let (character, next) = self.lex_unicode_escape(at - 2)?;
                            out.push(character);
                            at = next;
                        }
                        _ => {
                            return Err(
                                self.error_at(at - 2, "invalid escape sequence in string".into())
                            )
                        }
                    }
                    run_start = at;
                }
                _ => at += 1,
            }
        }
    }

    /// Decodes `\uXXXX` (with a surrogate pair when needed) starting at the backslash.
    fn lex_unicode_escape(&self, backslash: usize) -> Result<(char, usize), ScimError> {
        let hex = |from: usize| -> Option<u32> {
            let digits = self.text.get(from..from + 4)?;
            if !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(digits, 16).ok()
        };
        let invalid = || self.error_at(backslash, "invalid \\u escape in string".into());
        let high = hex(backslash + 2).ok_or_else(invalid)?;
        let mut next = backslash + 6;
        let code = if (0xD800..0xDC00).contains(&high) {
            if self.text.get(next..next + 2) != Some("\\u") {
                return Err(invalid());
            }
            let low = hex(next + 2).ok_or_else(invalid)?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(invalid());
            }
            next += 6;
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code)
            .map(|character| (character, next))
            .ok_or_else(invalid)
    }

    fn expect_end(&mut self, expected: &str) -> Result<(), ScimError> {
        match self.next()? {
            (_, Token::End) => Ok(()),
            (position, token) => Err(self.expected(position, expected, &token)),
        }
    }

    fn descend(&mut self, position: usize) -> Result<(), ScimError> {
        self.depth += 1;
        if self.depth > MAX_FILTER_DEPTH {
            return Err(self.error_at(
                position,
                format!("filter nested deeper than {MAX_FILTER_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    /// `filter := and_expr ("or" and_expr)*`
    fn filter(&mut self, in_value_path: bool) -> Result<Filter, ScimError> {
        let mut left = self.and_expression(in_value_path)?;
        while self.next_is_keyword("or")? {
            self.next()?;
            let right = self.and_expression(in_value_path)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// `and_expr := unary ("and" unary)*`
    fn and_expression(&mut self, in_value_path: bool) -> Result<Filter, ScimError> {
        let mut left = self.unary(in_value_path)?;
        while self.next_is_keyword("and")? {
            self.next()?;
            let right = self.unary(in_value_path)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn next_is_keyword(&mut self, keyword: &str) -> Result<bool, ScimError> {
        Ok(matches!(self.peek()?, (_, Token::Word(word)) if word.eq_ignore_ascii_case(keyword)))
    }

    /// `unary := "not" "(" filter ")" | "(" filter ")" | attrExp | valuePath`
    fn unary(&mut self, in_value_path: bool) -> Result<Filter, ScimError> {
        let (position, token) = self.next()?;
        match token {
            Token::OpenParen => {
                self.descend(position)?;
                let inner = self.filter(in_value_path)?;
                self.close(Token::CloseParen, "')'")?;
                self.depth -= 1;
                Ok(inner)
            }
            Token::Word(word) => {
                if word.eq_ignore_ascii_case("not") && matches!(self.peek()?, (_, Token::OpenParen))
                {
                    self.next()?;
                    self.descend(position)?;
                    let inner = self.filter(in_value_path)?;
                    self.close(Token::CloseParen, "')'")?;
                    self.depth -= 1;
                    return Ok(Filter::Not(Box::new(inner)));
                }
                let path = split_attr_path(&word).map_err(|why| self.error_at(position, why))?;
                self.after_path(path, position, in_value_path)
            }
            other => Err(self.expected(position, "attribute path, '(' or 'not'", &other)),
        }
    }

    fn close(&mut self, wanted: Token, description: &str) -> Result<(), ScimError> {
        let (position, token) = self.next()?;
        if token == wanted {
            Ok(())
        } else {
            let expected = format!("'and', 'or' or {description}");
            Err(self.expected(position, &expected, &token))
        }
    }

    fn after_path(
        &mut self,
        path: AttrPath,
        path_position: usize,
        in_value_path: bool,
    ) -> Result<Filter, ScimError> {
        let (position, token) = self.next()?;
        match token {
            Token::OpenBracket => {
                if in_value_path {
                    return Err(self.error_at(position, "value paths cannot be nested".into()));
                }
                if path.sub_attr.is_some() {
                    return Err(self.error_at(
                        path_position,
                        "a value path must name an attribute, not a sub-attribute".into(),
                    ));
                }
                self.descend(position)?;
                let inner = self.filter(true)?;
                self.close(Token::CloseBracket, "']'")?;
                self.depth -= 1;
                Ok(Filter::ValuePath {
                    attr: path,
                    filter: Box::new(inner),
                })
            }
            Token::Word(word) if word.eq_ignore_ascii_case("pr") => Ok(Filter::Present(path)),
            Token::Word(word) => {
                let op = CompareOp::parse(&word).ok_or_else(|| {
                    self.expected(
                        position,
                        "comparison operator (eq, ne, co, sw, ew, gt, ge, lt, le, pr)",
                        &Token::Word(word.clone()),
                    )
                })?;
                let (value_position, literal) = self.next()?;
                let value = match literal {
                    Token::Str(text) => CompValue::String(text),
                    Token::Num(number) => CompValue::Number(number),
                    Token::Word(word) if word.eq_ignore_ascii_case("true") => CompValue::Bool(true),
                    Token::Word(word) if word.eq_ignore_ascii_case("false") => {
                        CompValue::Bool(false)
                    }
                    Token::Word(word) if word.eq_ignore_ascii_case("null") => CompValue::Null,
                    other => {
                        return Err(self.expected(
                            value_position,
                            "a value (string, number, true, false or null)",
                            &other,
                        ))
                    }
                };
                Ok(Filter::Compare { path, op, value })
            }
            other => Err(self.expected(position, "comparison operator, 'pr' or '['", &other)),
        }
    }

    /// `patchPath := attrPath | attrPath "[" valFilter "]" ["." subAttr]`
    fn patch_path(&mut self) -> Result<PatchPath, ScimError> {
        let (position, token) = self.next()?;
        let Token::Word(word) = token else {
            return Err(self.expected(position, "attribute path", &token));
        };
        let attr = split_attr_path(&word).map_err(|why| self.error_at(position, why))?;
        let (bracket, token) = self.peek()?;
        if token != Token::OpenBracket {
            return Ok(PatchPath {
                attr,
                filter: None,
                sub_attr: None,
            });
        }
        self.next()?;
        if attr.sub_attr.is_some() {
            return Err(self.error_at(
                position,
                "a value path must name an attribute, not a sub-attribute".into(),
            ));
        }
        self.descend(bracket)?;
        let filter = self.filter(true)?;
        self.close(Token::CloseBracket, "']'")?;
        let mut sub_attr = None;
        if self.text.as_bytes().get(self.position) == Some(&b'.') {
            let dot = self.position;
            self.position += 1;
            match self.next()? {
                (at, Token::Word(word)) if is_attr_name(&word) => {
                    let _ = at;
                    sub_attr = Some(word);
                }
                (at, token) => {
                    return Err(self.expected(at.max(dot), "sub-attribute name after '.'", &token))
                }
            }
        }
        Ok(PatchPath {
            attr,
            filter: Some(filter),
            sub_attr,
        })
    }
}

/// Parses a number literal exactly (integers stay integers; floats round-trip).
fn parse_number(literal: &str) -> Option<Number> {
    if !literal
        .bytes()
        .any(|byte| matches!(byte, b'.' | b'e' | b'E'))
    {
        if let Ok(integer) = literal.parse::<i64>() {
            return Some(Number::from(integer));
        }
        if let Ok(integer) = literal.parse::<u64>() {
            return Some(Number::from(integer));
        }
    }
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    if !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    literal.parse::<f64>().ok().and_then(Number::from_f64)
}

fn is_word_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte == b'$'
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'$' | b':' | b'.')
}

/// `ATTRNAME = ALPHA *(nameChar)`; `$ref` is allowed as RFC 7643 uses it.
fn is_attr_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(first) if first.is_ascii_alphabetic() || first == b'$' || first == b'_' => {}
        _ => return false,
    }
    bytes.all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'$'))
}

/// Splits `[urn:]attr[.sub]` into an [`AttrPath`]; the error says why not.
fn split_attr_path(word: &str) -> Result<AttrPath, String> {
    let (urn, rest) = if word.len() > 4
        && word
            .get(..4)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("urn:"))
    {
        match word.rfind(':') {
            Some(colon) if colon + 1 < word.len() => {
                (Some(word[..colon].to_string()), &word[colon + 1..])
            }
            _ => {
                return Err(format!(
                    "'{}' has a schema URN but no attribute name",
                    shorten(word)
                ))
            }
        }
    } else {
        (None, word)
    };
    let (attr, sub_attr) = match rest.split_once('.') {
        Some((attr, sub)) => (attr, Some(sub)),
        None => (rest, None),
    };
    if !is_attr_name(attr) {
        return Err(format!("'{}' is not a valid attribute name", shorten(attr)));
    }
    if let Some(sub) = sub_attr {
        if !is_attr_name(sub) {
            return Err(format!(
                "'{}' is not a valid sub-attribute name",
                shorten(sub)
            ));
        }
    }
    Ok(AttrPath {
        urn,
        attr: attr.to_string(),
        sub_attr: sub_attr.map(str::to_string),
    })
}

// ---------------------------------------------------------------------------
// Attributes that cannot be filtered on

/// Whether `path` names an attribute, or a sub-attribute, that the schema never
/// returns (`returned: never`, e.g. `password`). Such attributes can be neither
/// filtered nor sorted on: an answer that depends on a value nobody may read
/// would leak it one comparison at a time. Unknown attributes are not hidden.
pub fn is_never_returned(context: &SchemaCtx<'_>, path: &AttrPath) -> bool {
    let Some((_, attribute)) = context.resolve_name(path.urn.as_deref(), &path.attr) else {
        return false;
    };
    attribute.returned == Returned::Never
        || path
            .sub_attr
            .as_deref()
            .and_then(|sub| attribute.sub_attribute(sub))
            .is_some_and(|sub| sub.returned == Returned::Never)
}

impl Filter {
    /// Refuses, with `invalidFilter`, a filter that names a `returned: never`
    /// attribute anywhere: a plain comparison or `pr`, inside `and`/`or`/`not`,
    /// the attribute of a value path, or a sub-attribute inside one
    /// (`x[secret pr]`). Call it on every filter a client sends, before
    /// evaluating it.
    pub fn check_filterable(&self, context: &SchemaCtx<'_>) -> Result<(), ScimError> {
        match self.first_hidden(context) {
            None => Ok(()),
            Some(path) => Err(ScimError::invalid_filter(format!(
                "'{path}' cannot be used in a filter: the attribute is never returned"
            ))),
        }
    }

    /// The first path of the filter that names a `returned: never` attribute.
    fn first_hidden(&self, context: &SchemaCtx<'_>) -> Option<String> {
        match self {
            Filter::Compare { path, .. } | Filter::Present(path) => {
                is_never_returned(context, path).then(|| path.to_string())
            }
            Filter::And(left, right) | Filter::Or(left, right) => left
                .first_hidden(context)
                .or_else(|| right.first_hidden(context)),
            Filter::Not(inner) => inner.first_hidden(context),
            Filter::ValuePath { attr, filter } => {
                if is_never_returned(context, attr) {
                    return Some(attr.to_string());
                }
                let parent = context
                    .resolve_name(attr.urn.as_deref(), &attr.attr)
                    .map(|(_, attribute)| attribute);
                filter
                    .first_hidden_element(parent)
                    .map(|inner| format!("{attr}[{inner}]"))
            }
        }
    }

    /// Like [`Filter::first_hidden`] inside a value path, whose paths are
    /// sub-attributes of `parent`.
    fn first_hidden_element(&self, parent: Option<&Attribute>) -> Option<String> {
        let hidden = |name: &str| {
            parent
                .and_then(|parent| parent.sub_attribute(name))
                .is_some_and(|sub| sub.returned == Returned::Never)
        };
        match self {
            Filter::Compare { path, .. } | Filter::Present(path) => {
                let sub_hidden = path.sub_attr.as_deref().is_some_and(hidden);
                (hidden(&path.attr) || sub_hidden).then(|| path.to_string())
            }
            Filter::And(left, right) | Filter::Or(left, right) => left
                .first_hidden_element(parent)
                .or_else(|| right.first_hidden_element(parent)),
            Filter::Not(inner) => inner.first_hidden_element(parent),
            Filter::ValuePath { attr, filter } => {
                if hidden(&attr.attr) {
                    return Some(attr.to_string());
                }
                filter.first_hidden_element(parent)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Evaluation

impl Filter {
    /// Whether `resource` matches this filter, following the schema's types and
    /// `caseExact` (RFC 7644 §3.4.2.2).
    ///
    /// Rules: a multi-valued attribute matches when any value does; a complex
    /// multi-valued attribute without sub-attribute compares its `value`
    /// sub-attribute; `ne` is the negation of `eq` (a missing attribute is "not
    /// equal"); `eq null`/`ne null` test absence/presence; dateTime values compare
    /// as instants; ordering operators on booleans, and any operator on a complex
    /// attribute, are `invalidFilter` errors. Unknown attributes have no values.
    pub fn matches(&self, resource: &Value, context: &SchemaCtx<'_>) -> Result<bool, ScimError> {
        match self {
            Filter::And(left, right) => {
                Ok(left.matches(resource, context)? && right.matches(resource, context)?)
            }
            Filter::Or(left, right) => {
                Ok(left.matches(resource, context)? || right.matches(resource, context)?)
            }
            Filter::Not(inner) => Ok(!inner.matches(resource, context)?),
            Filter::Present(path) => {
                let target = Target::resolve(resource, context, path);
                Ok(target.values(false).iter().any(|value| is_present(value)))
            }
            Filter::Compare { path, op, value } => {
                let target = Target::resolve(resource, context, path);
                compare_values(&target.values(true), target.leaf, *op, value, path)
            }
            Filter::ValuePath { attr, filter } => {
                let target = Target::resolve(resource, context, attr);
                let parent = target.attribute;
                for element in target.values(false) {
                    if filter.matches_element(element, parent)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }

    /// Whether one element of a multi-valued complex attribute matches this
    /// value-path filter; paths are sub-attribute names of `parent`.
    pub fn matches_element(
        &self,
        element: &Value,
        parent: Option<&Attribute>,
    ) -> Result<bool, ScimError> {
        match self {
            Filter::And(left, right) => {
                Ok(left.matches_element(element, parent)?
                    && right.matches_element(element, parent)?)
            }
            Filter::Or(left, right) => {
                Ok(left.matches_element(element, parent)?
                    || right.matches_element(element, parent)?)
            }
            Filter::Not(inner) => Ok(!inner.matches_element(element, parent)?),
            Filter::Present(path) => Ok(element_values(element, path)?
                .iter()
                .any(|value| is_present(value))),
            Filter::Compare { path, op, value } => {
                let leaf = parent.and_then(|parent| parent.sub_attribute(&path.attr));
                compare_values(&element_values(element, path)?, leaf, *op, value, path)
            }
            Filter::ValuePath { attr, .. } => Err(ScimError::invalid_filter(format!(
                "value path '{attr}[…]' cannot be nested in another value path"
            ))),
        }
    }

    /// The `sub-attribute = literal` pairs of a filter made only of `eq` comparisons
    /// joined by `and` (e.g. `type eq "work" and primary eq true`); `None` otherwise.
    pub fn equality_assignments(&self) -> Option<Vec<(&AttrPath, &CompValue)>> {
        match self {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if !matches!(value, CompValue::Null) => Some(vec![(path, value)]),
            Filter::And(left, right) => {
                let mut pairs = left.equality_assignments()?;
                pairs.extend(right.equality_assignments()?);
                Some(pairs)
            }
            _ => None,
        }
    }
}

/// Where a path points in a resource, with the definitions that apply.
struct Target<'v, 'a> {
    /// The attribute's raw value, if present.
    raw: Option<&'v Value>,
    /// The attribute definition.
    attribute: Option<&'a Attribute>,
    /// The definition of the compared leaf (sub-attribute, or `value` of a multi-valued complex).
    leaf: Option<&'a Attribute>,
    sub_attr: Option<&'v str>,
}

impl<'v, 'a> Target<'v, 'a> {
    fn resolve(resource: &'v Value, context: &SchemaCtx<'a>, path: &'v AttrPath) -> Self {
        let resolved = context.resolve(path);
        let container = match resolved.map(|resolved| resolved.location) {
            Some(Location::Extension(schema)) => resource
                .as_object()
                .and_then(|object| object_keys::get(object, &schema.id)),
            Some(Location::Core) => Some(resource),
            None => match &path.urn {
                Some(urn) if !context.is_core(urn) => resource
                    .as_object()
                    .and_then(|object| object_keys::get(object, urn))
                    .or(Some(resource)),
                _ => Some(resource),
            },
        };
        let raw = container
            .and_then(Value::as_object)
            .and_then(|object| object_keys::get(object, &path.attr));
        let attribute = resolved.map(|resolved| resolved.attribute);
        let leaf = match resolved {
            Some(resolved) => match resolved.sub_attribute {
                Some(sub) => Some(sub),
                None if resolved.attribute.attr_type == AttrType::Complex
                    && resolved.attribute.multi_valued =>
                {
                    resolved.attribute.sub_attribute("value")
                }
                None => Some(resolved.attribute),
            },
            None => None,
        };
        Target {
            raw,
            attribute,
            leaf,
            sub_attr: path.sub_attr.as_deref(),
        }
    }

    /// The values at the path, flattened; with `use_value_member`, elements of a
    /// multi-valued complex attribute are replaced by their `value` member.
    fn values(&self, use_value_member: bool) -> Vec<&'v Value> {
        let mut out = Vec::new();
        let Some(raw) = self.raw else { return out };
        let elements: &[Value] = match raw {
            Value::Array(items) => items,
            other => std::slice::from_ref(other),
        };
        for element in elements {
            let picked = match (self.sub_attr, element) {
                (Some(sub), Value::Object(object)) => object_keys::get(object, sub),
                (Some(_), _) => None,
                (None, Value::Object(object))
                    if use_value_member && matches!(raw, Value::Array(_)) =>
                {
                    object_keys::get(object, "value")
                }
                (None, other) => Some(other),
            };
            match picked {
                Some(Value::Array(items)) => {
                    out.extend(items.iter().filter(|item| !item.is_null()))
                }
                Some(Value::Null) | None => {}
                Some(value) => out.push(value),
            }
        }
        out
    }
}

fn element_values<'v>(element: &'v Value, path: &AttrPath) -> Result<Vec<&'v Value>, ScimError> {
    if path.urn.is_some() || path.sub_attr.is_some() {
        return Err(ScimError::invalid_filter(format!(
            "'{path}' inside a value path must be a plain sub-attribute name"
        )));
    }
    let found = element
        .as_object()
        .and_then(|object| object_keys::get(object, &path.attr));
    Ok(match found {
        Some(Value::Array(items)) => items.iter().filter(|item| !item.is_null()).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(value) => vec![value],
    })
}

/// RFC 7644: "pr" matches a non-empty value, or a complex value with a non-empty node.
fn is_present(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::String(text) => !text.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(object) => object.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare_values(
    values: &[&Value],
    leaf: Option<&Attribute>,
    op: CompareOp,
    literal: &CompValue,
    path: &AttrPath,
) -> Result<bool, ScimError> {
    if matches!(literal, CompValue::Null) {
        return match op {
            CompareOp::Eq => Ok(values.is_empty()),
            CompareOp::Ne => Ok(!values.is_empty()),
            _ => Err(ScimError::invalid_filter(format!(
                "operator '{op}' cannot compare '{path}' with null"
            ))),
        };
    }
    if let Some(attribute) = leaf {
        check_operator(attribute.attr_type, op, literal, path)?;
    }
    let eq_op = if op == CompareOp::Ne {
        CompareOp::Eq
    } else {
        op
    };
    let mut any = false;
    for value in values {
        let attr_type = match leaf {
            Some(attribute) => attribute.attr_type,
            None => {
                let inferred = infer_type(value);
                check_operator(inferred, op, literal, path)?;
                inferred
            }
        };
        let case_exact = leaf.is_some_and(|attribute| attribute.case_exact);
        if compare_one(value, attr_type, case_exact, eq_op, literal) {
            any = true;
            break;
        }
    }
    Ok(if op == CompareOp::Ne { !any } else { any })
}

fn infer_type(value: &Value) -> AttrType {
    match value {
        Value::Bool(_) => AttrType::Boolean,
        Value::Number(_) => AttrType::Decimal,
        Value::String(_) => AttrType::String,
        _ => AttrType::Complex,
    }
}

/// Refuses operator/literal combinations the attribute type does not support.
fn check_operator(
    attr_type: AttrType,
    op: CompareOp,
    literal: &CompValue,
    path: &AttrPath,
) -> Result<(), ScimError> {
    let refuse = |why: &str| {
        Err(ScimError::invalid_filter(format!(
            "'{path} {op} {literal}': {why}"
        )))
    };
    match attr_type {
        AttrType::Complex => refuse("a complex attribute cannot be compared; name a sub-attribute"),
        AttrType::Boolean => match literal {
            CompValue::Bool(_) if matches!(op, CompareOp::Eq | CompareOp::Ne) => Ok(()),
            CompValue::Bool(_) => refuse("only eq, ne and pr apply to a boolean attribute"),
            _ => refuse("a boolean attribute compares with true or false"),
        },
        AttrType::Integer | AttrType::Decimal => match literal {
            CompValue::Number(_)
                if !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew) =>
            {
                Ok(())
            }
            CompValue::Number(_) => refuse("co, sw and ew do not apply to numbers"),
            _ => refuse("a numeric attribute compares with a number"),
        },
        AttrType::DateTime => match literal {
            CompValue::String(text)
                if op.is_ordering() || matches!(op, CompareOp::Eq | CompareOp::Ne) =>
            {
                match OffsetDateTime::parse(text, &Rfc3339) {
                    Ok(_) => Ok(()),
                    Err(_) => refuse("the value is not an RFC 3339 date-time"),
                }
            }
            CompValue::String(_) => Ok(()),
            _ => refuse("a dateTime attribute compares with a date-time string"),
        },
        AttrType::String | AttrType::Reference | AttrType::Binary => match literal {
            CompValue::String(_) => Ok(()),
            _ => refuse("a string attribute compares with a string"),
        },
    }
}

fn compare_one(
    value: &Value,
    attr_type: AttrType,
    case_exact: bool,
    op: CompareOp,
    literal: &CompValue,
) -> bool {
    match (attr_type, literal) {
        (AttrType::Boolean, CompValue::Bool(wanted)) => value.as_bool() == Some(*wanted),
        (AttrType::Integer | AttrType::Decimal, CompValue::Number(wanted)) => {
            let Value::Number(actual) = value else {
                return false;
            };
            order_matches(op, compare_numbers(actual, wanted))
        }
        (AttrType::DateTime, CompValue::String(wanted))
            if op.is_ordering() || op == CompareOp::Eq =>
        {
            let actual = value
                .as_str()
                .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok());
            let wanted = OffsetDateTime::parse(wanted, &Rfc3339).ok();
            match (actual, wanted) {
                (Some(actual), Some(wanted)) => order_matches(op, Some(actual.cmp(&wanted))),
                _ => false,
            }
        }
        (_, CompValue::String(wanted)) => {
            let Some(actual) = value.as_str() else {
                return false;
            };
            let case_exact = case_exact || attr_type == AttrType::DateTime;
            compare_strings(actual, wanted, case_exact, op)
        }
        _ => false,
    }
}

fn compare_numbers(actual: &Number, wanted: &Number) -> Option<Ordering> {
    if let (Some(actual), Some(wanted)) = (actual.as_i64(), wanted.as_i64()) {
        return Some(actual.cmp(&wanted));
    }
    if let (Some(actual), Some(wanted)) = (actual.as_u64(), wanted.as_u64()) {
        return Some(actual.cmp(&wanted));
    }
    actual.as_f64()?.partial_cmp(&wanted.as_f64()?)
}

fn order_matches(op: CompareOp, ordering: Option<Ordering>) -> bool {
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        CompareOp::Eq => ordering == Ordering::Equal,
        CompareOp::Ne => ordering != Ordering::Equal,
        CompareOp::Gt => ordering == Ordering::Greater,
        CompareOp::Ge => ordering != Ordering::Less,
        CompareOp::Lt => ordering == Ordering::Less,
        CompareOp::Le => ordering != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

/// Compares two strings with the SCIM case rule.
pub(crate) fn compare_strings(actual: &str, wanted: &str, case_exact: bool, op: CompareOp) -> bool {
    if case_exact {
        return string_op(actual, wanted, op);
    }
    if actual.is_ascii() && wanted.is_ascii() {
        // For ASCII, `to_lowercase` is byte-wise: compare without building copies.
        return ascii_caseless_op(actual.as_bytes(), wanted.as_bytes(), op);
    }
    string_op(&actual.to_lowercase(), &wanted.to_lowercase(), op)
}

/// [`string_op`] on the ASCII-lower-cased forms of `actual` and `wanted`.
fn ascii_caseless_op(actual: &[u8], wanted: &[u8], op: CompareOp) -> bool {
    let ordering = || {
        actual
            .iter()
            .map(u8::to_ascii_lowercase)
            .cmp(wanted.iter().map(u8::to_ascii_lowercase))
    };
    match op {
        CompareOp::Eq => actual.eq_ignore_ascii_case(wanted),
        CompareOp::Ne => !actual.eq_ignore_ascii_case(wanted),
        CompareOp::Co => {
            wanted.is_empty()
                || actual
                    .windows(wanted.len())
                    .any(|window| window.eq_ignore_ascii_case(wanted))
        }
        CompareOp::Sw => actual
            .get(..wanted.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(wanted)),
        CompareOp::Ew => actual
            .len()
            .checked_sub(wanted.len())
            .and_then(|start| actual.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(wanted)),
        CompareOp::Gt => ordering() == Ordering::Greater,
        CompareOp::Ge => ordering() != Ordering::Less,
        CompareOp::Lt => ordering() == Ordering::Less,
        CompareOp::Le => ordering() != Ordering::Greater,
    }
}

fn string_op(actual: &str, wanted: &str, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => actual == wanted,
        CompareOp::Ne => actual != wanted,
        CompareOp::Co => actual.contains(wanted),
        CompareOp::Sw => actual.starts_with(wanted),
        CompareOp::Ew => actual.ends_with(wanted),
        CompareOp::Gt => actual > wanted,
        CompareOp::Ge => actual >= wanted,
        CompareOp::Lt => actual < wanted,
        CompareOp::Le => actual <= wanted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [CompareOp; 9] = [
        CompareOp::Eq,
        CompareOp::Ne,
        CompareOp::Co,
        CompareOp::Sw,
        CompareOp::Ew,
        CompareOp::Gt,
        CompareOp::Ge,
        CompareOp::Lt,
        CompareOp::Le,
    ];

    /// The string helpers implement all nine operators, `ne` included,
    /// although evaluation asks them only for `eq` and negates it itself.
    #[test]
    fn string_helpers_answer_every_operator() {
        // (actual, wanted, [eq, ne, co, sw, ew, gt, ge, lt, le])
        let cases: [(&str, &str, [bool; 9]); 4] = [
            (
                "abc",
                "abc",
                [true, false, true, true, true, false, true, false, true],
            ),
            (
                "abc",
                "abd",
                [false, true, false, false, false, false, false, true, true],
            ),
            (
                "abd",
                "abc",
                [false, true, false, false, false, true, true, false, false],
            ),
            (
                "xabcx",
                "abc",
                [false, true, true, false, false, true, true, false, false],
            ),
        ];
        for (actual, wanted, answers) in cases {
            for (op, want) in ALL.into_iter().zip(answers) {
                assert_eq!(
                    string_op(actual, wanted, op),
                    want,
                    "{actual} {op} {wanted}"
                );
                let upper = wanted.to_ascii_uppercase();
                assert_eq!(
                    ascii_caseless_op(actual.as_bytes(), upper.as_bytes(), op),
                    want,
                    "{actual} {op} {upper} ignoring case"
                );
                assert_eq!(
                    compare_strings(actual, &upper, false, op),
                    want,
                    "{actual} {op} {upper}"
                );
            }
        }
    }

    #[test]
    fn order_matches_answers_every_operator() {
        use Ordering::{Equal, Greater, Less};
        // [eq, ne, co, sw, ew, gt, ge, lt, le]
        for (ordering, answers) in [
            (
                Less,
                [false, true, false, false, false, false, false, true, true],
            ),
            (
                Equal,
                [true, false, false, false, false, false, true, false, true],
            ),
            (
                Greater,
                [false, true, false, false, false, true, true, false, false],
            ),
        ] {
            for (op, want) in ALL.into_iter().zip(answers) {
                assert_eq!(order_matches(op, Some(ordering)), want, "{ordering:?} {op}");
                assert!(!order_matches(op, None), "{op} without an order");
            }
        }
    }
}
