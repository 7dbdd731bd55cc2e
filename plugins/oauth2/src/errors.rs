//! How this library's rejections look on the wire: RFC 6749 §5.2 codes on
//! token routes, RFC 6750 §3 challenges for bearer tokens, and an empty
//! `scimType` for 401s on SCIM routes; and how client-supplied text is
//! shown in log lines.

pub use scimgate_abi::text::shown;
use scimgate_abi::{ErrorStyle, PluginError, Request};

pub const REALM: &str = "scimgate";

/// An OAuth error (`code` is the RFC 6749 `error`).
pub fn oauth(status: u16, code: &str, message: impl Into<String>) -> PluginError {
    PluginError::new(status, message).with_code(code)
}

/// An authentication failure: the OAuth code on token routes, no code on
/// SCIM routes (a 401 has no `scimType`).
pub fn unauthenticated(req: &Request, oauth_code: &str, message: impl Into<String>) -> PluginError {
    let err = PluginError::new(401, message);
    match req.error_style {
        ErrorStyle::OAuth => err.with_code(oauth_code),
        ErrorStyle::Scim => err,
    }
}

/// RFC 6750 §3.1 `invalid_token`: 401 with the challenge naming the reason.
pub fn invalid_token(req: &Request, description: &str) -> PluginError {
    let clean: String = description
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect();
    unauthenticated(req, "invalid_token", description).with_header(
        "www-authenticate",
        &format!(
            "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{clean}\""
        ),
    )
}

/// The challenge of Basic-speaking authenticators.
pub fn basic_challenge() -> String {
    format!("Basic realm=\"{REALM}\", charset=\"UTF-8\"")
}

/// The challenge of Bearer-speaking authenticators.
pub fn bearer_challenge() -> String {
    format!("Bearer realm=\"{REALM}\"")
}

/// Joins creation problems into one error naming every problem.
pub fn config_error(stage: &str, problems: &[String]) -> PluginError {
    PluginError::internal(format!("stage `{stage}`: {}", problems.join("; "))).with_code("config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_escapes_control_characters_and_cuts() {
        assert_eq!(shown("a\r\nb\u{1b}[31m"), "a\\r\\nb\\u{1b}[31m");
        let long = "é".repeat(500);
        let s = shown(&long);
        assert_eq!(s.chars().count(), 121);
        assert!(s.ends_with('…'));
        assert_eq!(shown("client:id"), "client:id");
    }
}
