//! Client- or config-supplied text as it goes into an error message, an
//! audit reason or a log line: the one helper every plugin and the host use,
//! so that a hostile value can neither flood nor forge a line.

/// `text` cut to 120 characters (then `…`), with control characters escaped
/// (`\n`, `\r`, `\u{1b}`, …).
///
/// ```
/// use scimgate_abi::text::shown;
/// assert_eq!(shown("a\r\nb\u{1b}[31m"), "a\\r\\nb\\u{1b}[31m");
/// assert_eq!(shown(&"x".repeat(500)).chars().count(), 121);
/// ```
pub fn shown(text: &str) -> String {
    const MAX: usize = 120;
    let mut out = String::with_capacity(text.len().min(MAX + 3));
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
