//! The one canonical form of a request path.
//!
//! The host canonicalises every request path once, before any stage runs,
//! and every stage sees only the result ([`crate::Request::path`]); the SCIM
//! library applies the same function to the paths inside a Bulk request. A
//! path that has no single meaning is refused rather than guessed at, so
//! that whatever decides access and whatever executes cannot read one path
//! two ways.
//!
//! Rules: segments are percent-decoded with path rules (`+` stays `+`, never
//! a form's `&` or `=` split); an encoded `/`, an encoded `%`, `?` or `#`
//! (decoded, they would read differently if the path were decoded again:
//! the canonical form is a fixed point), a `\`, NUL or another control
//! character, a dot segment (`.`, `..`, also encoded), an empty segment (a
//! doubled slash), a broken escape, bytes that are not UTF-8, and a raw `?`
//! or `#` are refused. One trailing slash is allowed and dropped
//! (`/ResourceTypes/` is `/ResourceTypes`), so the canonical form has none,
//! except for the root `/`.

use std::fmt;

/// Why a path has no single meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/`.
    NotAbsolute,
    /// `//` somewhere, or a trailing `//`.
    EmptySegment,
    /// A `.` or `..` segment, literal or percent-encoded.
    DotSegment,
    /// `%2F` inside a segment.
    EncodedSlash,
    /// `%25`, `%3F` or `%23`: a `%`, `?` or `#` that a second decoding or
    /// a URL parser would read as an escape, a query or a fragment.
    EncodedDelimiter,
    /// `\`, literal or encoded.
    Backslash,
    /// NUL or another control character, literal or encoded.
    ControlCharacter,
    /// `%` not followed by two hex digits.
    BrokenEscape,
    /// Decoded bytes that are not UTF-8.
    NotUtf8,
    /// A raw `?` or `#` (only possible where the path is not from a URI).
    QueryOrFragment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::NotAbsolute => "the path must start with `/`",
            PathError::EmptySegment => "the path has an empty segment (`//`)",
            PathError::DotSegment => "the path has a `.` or `..` segment",
            PathError::EncodedSlash => "the path has an encoded `/` (`%2F`) inside a segment",
            PathError::EncodedDelimiter => {
                "the path has an encoded `%`, `?` or `#` (`%25`, `%3F`, `%23`), which would read differently if decoded again"
            }
            PathError::Backslash => "the path has a `\\`",
            PathError::ControlCharacter => "the path has a control character",
            PathError::BrokenEscape => "the path has a `%` not followed by two hex digits",
            PathError::NotUtf8 => "the path's percent-decoded bytes are not UTF-8",
            PathError::QueryOrFragment => "the path has a raw `?` or `#`",
        })
    }
}

impl std::error::Error for PathError {}

/// The canonical form of `raw` (see the module docs), or why there is none.
///
/// ```
/// use scimgate_abi::path::{canonicalize, PathError};
/// assert_eq!(canonicalize("/iso/scim/v2/%47roups/").unwrap(), "/iso/scim/v2/Groups");
/// assert_eq!(canonicalize("/Users/a+b%20c").unwrap(), "/Users/a+b c");
/// assert_eq!(canonicalize("/Users/..").unwrap_err(), PathError::DotSegment);
/// assert_eq!(canonicalize("/Users/a%2Fb").unwrap_err(), PathError::EncodedSlash);
/// ```
pub fn canonicalize(raw: &str) -> Result<String, PathError> {
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    if rest.is_empty() {
        return Ok("/".to_string());
    }
    // One trailing slash is allowed and dropped; a second one is an empty segment.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let mut out = String::with_capacity(raw.len());
    for segment in rest.split('/') {
        out.push('/');
        push_segment(&mut out, segment)?;
    }
    Ok(out)
}

/// Decodes one segment onto `out`, refusing what has no single meaning.
fn push_segment(out: &mut String, segment: &str) -> Result<(), PathError> {
    if segment.is_empty() {
        return Err(PathError::EmptySegment);
    }
    let bytes = segment.as_bytes();
    let start = out.len();
    // Fast path: nothing to decode.
    if !bytes.contains(&b'%') {
        check_raw(bytes)?;
        out.push_str(segment);
    } else {
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b == b'%' {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    return Err(PathError::BrokenEscape);
                };
                let byte = (h * 16 + l) as u8;
                match byte {
                    b'/' => return Err(PathError::EncodedSlash),
                    b'%' | b'?' | b'#' => return Err(PathError::EncodedDelimiter),
                    b'\\' => return Err(PathError::Backslash),
                    b if b < 0x20 || b == 0x7f => return Err(PathError::ControlCharacter),
                    _ => decoded.push(byte),
                }
                i += 3;
            } else {
                check_raw(&bytes[i..=i])?;
                decoded.push(b);
                i += 1;
            }
        }
        let text = std::str::from_utf8(&decoded).map_err(|_| PathError::NotUtf8)?;
        if text.chars().any(char::is_control) {
            return Err(PathError::ControlCharacter);
        }
        out.push_str(text);
    }
    match &out[start..] {
        "." | ".." => Err(PathError::DotSegment),
        _ => Ok(()),
    }
}

fn check_raw(bytes: &[u8]) -> Result<(), PathError> {
    for &b in bytes {
        match b {
            b'\\' => return Err(PathError::Backslash),
            b'?' | b'#' => return Err(PathError::QueryOrFragment),
            b if b < 0x20 || b == 0x7f => return Err(PathError::ControlCharacter),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_with_path_rules() {
        assert_eq!(canonicalize("/").unwrap(), "/");
        assert_eq!(canonicalize("/Users").unwrap(), "/Users");
        assert_eq!(canonicalize("/%47roups").unwrap(), "/Groups");
        assert_eq!(canonicalize("/Groups&x").unwrap(), "/Groups&x");
        assert_eq!(canonicalize("/Users/a%26b=c").unwrap(), "/Users/a&b=c");
        assert_eq!(canonicalize("/Users/a+b").unwrap(), "/Users/a+b");
        assert_eq!(
            canonicalize("/Users/100%25").unwrap_err(),
            PathError::EncodedDelimiter
        );
        assert_eq!(canonicalize("/Users/%C3%A9").unwrap(), "/Users/é");
        assert_eq!(canonicalize("/Users/é").unwrap(), "/Users/é");
    }

    #[test]
    fn one_trailing_slash_is_dropped() {
        assert_eq!(canonicalize("/resourcetypes/").unwrap(), "/resourcetypes");
        assert_eq!(canonicalize("/a/b/").unwrap(), "/a/b");
        assert_eq!(canonicalize("/a/b//").unwrap_err(), PathError::EmptySegment);
        assert_eq!(canonicalize("//").unwrap_err(), PathError::EmptySegment);
    }

    #[test]
    fn refuses_what_has_no_single_meaning() {
        let cases = [
            ("Users", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("/a//b", PathError::EmptySegment),
            ("//Users", PathError::EmptySegment),
            ("/a/./b", PathError::DotSegment),
            ("/a/../b", PathError::DotSegment),
            ("/a/%2e%2E/b", PathError::DotSegment),
            ("/a/%2E", PathError::DotSegment),
            ("/..", PathError::DotSegment),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%25b", PathError::EncodedDelimiter),
            ("/%2541", PathError::EncodedDelimiter),
            ("/a%3Fb", PathError::EncodedDelimiter),
            ("/a%23b", PathError::EncodedDelimiter),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a\\b", PathError::Backslash),
            ("/a%5cb", PathError::Backslash),
            ("/a%00b", PathError::ControlCharacter),
            ("/a%0Ab", PathError::ControlCharacter),
            ("/a\nb", PathError::ControlCharacter),
            ("/a%7F", PathError::ControlCharacter),
            ("/a%C2%85", PathError::ControlCharacter),
            ("/a%zz", PathError::BrokenEscape),
            ("/a%4", PathError::BrokenEscape),
            ("/a%", PathError::BrokenEscape),
            ("/a%FF", PathError::NotUtf8),
            ("/a?b", PathError::QueryOrFragment),
            ("/a#b", PathError::QueryOrFragment),
        ];
        for (raw, want) in cases {
            assert_eq!(canonicalize(raw), Err(want.clone()), "{raw:?}");
        }
    }

    #[test]
    fn spaces_and_high_bytes_are_not_control_characters() {
        assert_eq!(canonicalize("/Users/a%20b").unwrap(), "/Users/a b");
        assert_eq!(canonicalize("/Users/a b").unwrap(), "/Users/a b");
        assert_eq!(canonicalize("/Users/%21%7E").unwrap(), "/Users/!~");
        assert_eq!(
            canonicalize("/Users/%1F").unwrap_err(),
            PathError::ControlCharacter
        );
        assert_eq!(
            canonicalize("/Users/a\x7f").unwrap_err(),
            PathError::ControlCharacter
        );
        assert_eq!(
            canonicalize("/Users/a\x1fb").unwrap_err(),
            PathError::ControlCharacter
        );
        assert_eq!(
            canonicalize("/%41\x7f").unwrap_err(),
            PathError::ControlCharacter
        );
    }

    #[test]
    fn an_encoded_control_character_is_refused_as_soon_as_it_is_read() {
        // Refused at the escape, before the segment's UTF-8 is judged.
        assert_eq!(
            canonicalize("/a%00%FF").unwrap_err(),
            PathError::ControlCharacter
        );
        assert_eq!(
            canonicalize("/a%7f%FF").unwrap_err(),
            PathError::ControlCharacter
        );
        assert_eq!(
            canonicalize("/a%1F%FF").unwrap_err(),
            PathError::ControlCharacter
        );
        assert_eq!(
            canonicalize("/a%2F%FF").unwrap_err(),
            PathError::EncodedSlash
        );
        assert_eq!(canonicalize("/a%5C%FF").unwrap_err(), PathError::Backslash);
        assert_eq!(canonicalize("/a%20%FF").unwrap_err(), PathError::NotUtf8);
    }

    #[test]
    fn escapes_decode_anywhere_in_a_segment() {
        assert_eq!(
            canonicalize("/%47roups/%41%42c%44").unwrap(),
            "/Groups/ABcD"
        );
        assert_eq!(canonicalize("/x%4A%4a").unwrap(), "/xJJ");
        assert_eq!(canonicalize("/%2e%2e%2e").unwrap(), "/...");
        assert_eq!(canonicalize("/a%2").unwrap_err(), PathError::BrokenEscape);
        assert_eq!(canonicalize("/%g1").unwrap_err(), PathError::BrokenEscape);
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            PathError::DotSegment.to_string(),
            "the path has a `.` or `..` segment"
        );
        assert_eq!(
            PathError::EncodedSlash.to_string(),
            "the path has an encoded `/` (`%2F`) inside a segment"
        );
    }

    #[test]
    fn a_canonical_path_is_its_own_canonical_form_when_it_has_no_percent() {
        for raw in ["/", "/Users", "/Users/abc", "/Groups/.search", "/a+b&c=d"] {
            let once = canonicalize(raw).unwrap();
            assert_eq!(canonicalize(&once).unwrap(), once);
        }
    }

    proptest::proptest! {
        /// Whatever decides access and whatever executes may each
        /// canonicalise: the canonical form must be a fixed point, escapes
        /// and all.
        #[test]
        fn the_canonical_form_is_a_fixed_point(raw in "(/[%a-zA-Z0-9.?#+ 23F5]{0,8}){1,4}") {
            if let Ok(once) = canonicalize(&raw) {
                proptest::prop_assert_eq!(canonicalize(&once), Ok(once.clone()));
            }
        }
    }
}
