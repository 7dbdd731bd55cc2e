//! Located configuration problems and their rustc-style rendering.
//!
//! A [`Diagnostic`] points at a byte range of a [`SourceFile`]; rendering turns
//! that into `file:line:col`, the offending line and a caret underline.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

/// A configuration file as read from disk.
#[derive(Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as given on the command line, for display.
    pub path: PathBuf,
    /// The full text of the file.
    pub text: String,
}

impl SourceFile {
    /// A source file from a path (for display) and its text.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (counted in chars) of a byte offset.
    ///
    /// Offsets past the end, or inside a multi-byte char, are clamped.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = clamp_to_char_boundary(&self.text, offset);
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        (line, col)
    }
}

/// The text may hold plaintext secrets written by hand: `Debug` shows its size only.
impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile")
            .field("path", &self.path)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .finish()
    }
}

/// A located problem. `span` is a byte range into [`SourceFile::text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The headline, after `error: `.
    pub message: String,
    /// Where the problem is, if it has a place in the file.
    pub span: Option<Range<usize>>,
    /// Short text printed under the caret; may be empty.
    pub label: String,
    /// A hint printed as `= help: …`.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with a message and an optional location.
    pub fn error(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Self {
            message: message.into(),
            span,
            label: String::new(),
            help: None,
        }
    }

    /// Sets the text printed under the caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sets the `= help:` line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Renders every diagnostic like rustc/cargo do, a blank line between them,
/// and a final `error: could not load `file` due to N previous errors` line.
pub fn render_diagnostics(source: &SourceFile, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        render_one(source, diag, &mut out);
        out.push('\n');
    }
    let plural = if diags.len() == 1 { "" } else { "s" };
    out.push_str(&format!(
        "error: could not load `{}` due to {} previous error{plural}\n",
        source.path.display(),
        diags.len()
    ));
    out
}

/// Renders warnings like [`render_diagnostics`] renders errors (`warning:`
/// headlines, no closing line): the configuration still loads.
pub fn render_warnings(source: &SourceFile, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        render_one_as(source, diag, "warning", &mut out);
        out.push('\n');
    }
    out
}

impl Diagnostic {
    /// `file:line:col` of the diagnostic (just `file` without a span), for
    /// one-line log messages.
    pub fn location(&self, source: &SourceFile) -> String {
        match &self.span {
            Some(span) => {
                let (line, col) = source.line_col(span.start);
                format!("{}:{line}:{col}", source.path.display())
            }
            None => source.path.display().to_string(),
        }
    }
}

fn render_one(source: &SourceFile, diag: &Diagnostic, out: &mut String) {
    render_one_as(source, diag, "error", out)
}

fn render_one_as(source: &SourceFile, diag: &Diagnostic, severity: &str, out: &mut String) {
    out.push_str(&format!("{severity}: {}\n", diag.message));
    let Some(span) = diag.span.clone() else {
        out.push_str(&format!(" --> {}\n", source.path.display()));
        if let Some(help) = &diag.help {
            out.push_str(&format!("  = help: {help}\n"));
        }
        return;
    };
    let text = &source.text;
    let start = clamp_to_char_boundary(text, span.start);
    let end = clamp_to_char_boundary(text, span.end.max(start));
    let (line, col) = source.line_col(start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');

    let width = line.to_string().len();
    let pad = " ".repeat(width);
    out.push_str(&format!(
        "{pad}--> {}:{line}:{col}\n",
        source.path.display()
    ));
    out.push_str(&format!("{pad} |\n"));
    out.push_str(&format!("{line} | {line_text}\n"));

    // Keep tabs as tabs so the caret lines up under the same characters.
    let indent: String = text[line_start..start]
        .chars()
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let underlined = text[start..end.min(line_end)].chars().count().max(1);
    let mut caret_line = format!("{pad} | {indent}{}", "^".repeat(underlined));
    if !diag.label.is_empty() {
        caret_line.push(' ');
        caret_line.push_str(&diag.label);
    }
    out.push_str(caret_line.trim_end());
    out.push('\n');
    if let Some(help) = &diag.help {
        out.push_str(&format!("{pad} = help: {help}\n"));
    }
}

fn clamp_to_char_boundary(text: &str, offset: usize) -> usize {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let text = "[server]\n\n\n\n\n\n\n\n\n\n\npipeline = [\"bearr\", \"scim\"]\n";
        let src = SourceFile::new("examples/x.toml", text);
        let start = text.find("\"bearr\"").unwrap_or(0);
        let diag = Diagnostic::error("unknown stage `bearr` in pipeline", Some(start..start + 7))
            .with_label("no [stage.bearr] table")
            .with_help("defined stages: bearer, scim");
        let out = render_diagnostics(&src, &[diag]);
        let expected = "error: unknown stage `bearr` in pipeline\n\
                        \x20 --> examples/x.toml:12:13\n\
                        \x20  |\n\
                        12 | pipeline = [\"bearr\", \"scim\"]\n\
                        \x20  |             ^^^^^^^ no [stage.bearr] table\n\
                        \x20  = help: defined stages: bearer, scim\n\
                        \n\
                        error: could not load `examples/x.toml` due to 1 previous error\n";
        assert_eq!(out, expected);
    }

    #[test]
    fn spanless_and_plural() {
        let src = SourceFile::new("a.toml", "");
        let diags = [
            Diagnostic::error("cannot read", None),
            Diagnostic::error("eof", Some(0..0)),
        ];
        let out = render_diagnostics(&src, &diags);
        assert!(
            out.starts_with("error: cannot read\n --> a.toml\n"),
            "{out}"
        );
        assert!(out.contains(" --> a.toml:1:1\n"), "{out}");
        assert!(out.ends_with("due to 2 previous errors\n"), "{out}");
    }

    #[test]
    fn columns_count_chars_and_clamp() {
        let src = SourceFile::new("a.toml", "x = \"é\" # ü\ny");
        let y = src.text.find('y').unwrap_or(0);
        assert_eq!(src.line_col(y), (2, 1));
        let u = src.text.find('ü').unwrap_or(0);
        assert_eq!(src.line_col(u), (1, 11));
        assert_eq!(src.line_col(u + 1), (1, 11));
        assert_eq!(src.line_col(10_000), (2, 2));
    }

    #[test]
    fn debug_hides_text() {
        let src = SourceFile::new("a.toml", "token = \"hunter2\"");
        assert!(!format!("{src:?}").contains("hunter2"));
    }
}
