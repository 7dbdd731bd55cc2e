//! Structured errors that cross the boundary: [`PluginError`] for requests
//! (an HTTP status plus a machine code the host renders as SCIM `scimType` or
//! OAuth `error`), and [`ConfigIssue`] for configuration problems, located by
//! a key path that the host maps back to `file:line:col`.

use std::fmt;

use abi_stable::std_types::{RString, RVec};
use abi_stable::StableAbi;

use crate::types::Header;

/// An error a stage returns for one request. The host renders it as a SCIM
/// error body on SCIM routes (`code` becomes `scimType`) and as an RFC 6749
/// §5.2 body on token routes (`code` becomes `error`).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub status: u16,
    /// `scimType` (SCIM) or `error` (OAuth); empty when there is none.
    pub code: RString,
    /// Human-readable reason; goes to the client and to the audit log.
    pub message: RString,
    /// Outer-to-inner context, e.g. `["stage scim", "store sqlite"]`.
    pub context: RVec<RString>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, …).
    pub headers: RVec<Header>,
}

impl PluginError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        PluginError {
            status,
            code: RString::new(),
            message: RString::from(message.into()),
            context: RVec::new(),
            headers: RVec::new(),
        }
    }

    /// An internal error (HTTP 500).
    pub fn internal(message: impl Into<String>) -> Self {
        PluginError::new(500, message)
    }

    pub fn with_code(mut self, code: &str) -> Self {
        self.code = code.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header::new(name, value));
        self
    }

    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.context.insert(0, RString::from(context.into()));
        self
    }

    pub fn code(&self) -> Option<&str> {
        (!self.code.is_empty()).then_some(self.code.as_str())
    }

    /// The answer of a stage to an inline call ([`Request::is_inline`])
    /// that it could only serve by blocking: "call me again where I may
    /// block". Nothing was done; the host resumes the request at this
    /// stage on its blocking pool. Status 0 (never an HTTP status) and code
    /// `would-block`; the SDK sends it for you (see
    /// [`crate::sdk::Endpoint::blocks_on`]).
    ///
    /// [`Request::is_inline`]: crate::Request::is_inline
    pub fn would_block() -> Self {
        PluginError::new(0, "the stage would block").with_code(WOULD_BLOCK)
    }

    /// Whether this is [`PluginError::would_block`].
    pub fn is_would_block(&self) -> bool {
        self.status == 0 && self.code.as_str() == WOULD_BLOCK
    }
}

const WOULD_BLOCK: &str = "would-block";

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.context.iter() {
            write!(f, "{c}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for PluginError {}

/// A problem in a component's configuration, found by `validate`.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path inside the stage table, e.g. `bulk.max_operations`;
    /// empty for the stage as a whole.
    pub path: RString,
    pub message: RString,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            path: RString::from(path.into()),
            message: RString::from(message.into()),
        }
    }
}
