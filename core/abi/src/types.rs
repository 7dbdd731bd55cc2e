//! FFI-safe data that crosses the plugin boundary: the request and response,
//! the authenticated principal, the provider record and the outcome enums.
//!
//! All of them are `#[repr(C)]` + `StableAbi`, built from `RString`/`RVec`, so
//! the host can hand a plugin a plain reference: no copy per stage.

use abi_stable::std_types::{ROption, RString, RVec};
use abi_stable::StableAbi;

use crate::error::PluginError;

/// One HTTP header. Request header names are lower-case (the host folds them).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: RString,
    pub value: RString,
}

impl Header {
    pub fn new(name: impl Into<RString>, value: impl Into<RString>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// How errors are rendered on the route the request came in on.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `urn:ietf:params:scim:api:messages:2.0:Error` bodies (SCIM routes).
    Scim,
    /// RFC 6749 §5.2 `{"error": …}` bodies (token routes).
    OAuth,
}

/// A request as the pipeline sees it. Built once by the host; authenticators,
/// policies and endpoints borrow it, profiles may rewrite it inbound.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct Request {
    /// Upper-case HTTP method.
    pub method: RString,
    /// Path below the route's mount path, always starting with `/` (or empty
    /// for the mount path itself), in the canonical form of
    /// [`crate::path::canonicalize`]: percent-decoded once with path rules,
    /// no trailing slash, no dot or empty segments. Stages never decode it
    /// again. Profiles must not change it (the host refuses a request whose
    /// path or method a profile changed: policies decided on this one).
    pub path: RString,
    /// Raw query string without the `?`.
    pub query: RString,
    /// Headers with lower-case names, in arrival order.
    pub headers: RVec<Header>,
    pub body: RVec<u8>,
    /// TCP peer as `ip:port`.
    pub peer_addr: RString,
    /// The client's address: the peer, or the right-most untrusted
    /// `X-Forwarded-For`/`Forwarded` hop when the peer is a trusted proxy.
    pub client_ip: RString,
    pub request_id: RString,
    /// The route's mount path, e.g. `/iso/scim/v2`.
    pub mount: RString,
    /// Absolute URL of the mount point (`https://host/iso/scim/v2`), for
    /// `Location` headers and `meta.location`.
    pub base_url: RString,
    /// When the host received the request, in Unix milliseconds. Policies
    /// use this as "now" so that their decisions are pure functions.
    pub received_at_unix_ms: i64,
    pub error_style: ErrorStyle,
    /// Room to grow without an ABI epoch: extra facts as key/value pairs
    /// (read one with [`Request::attribute`]). A name may repeat.
    ///
    /// Set by the host when the request came over TLS (`[server.tls]`):
    ///
    /// * `tls.version`: `TLSv1.2` or `TLSv1.3`;
    /// * `tls.alpn`: the ALPN protocol negotiated, `h2` or `http/1.1`
    ///   (absent when the client offered none);
    ///
    /// and for a client certificate that the host verified against
    /// `client_ca_file` (never for an unverified one):
    ///
    /// * `tls.client_cert.sha256`: lowercase hex SHA-256 of the leaf
    ///   certificate's DER (64 characters, no separators);
    /// * `tls.client_cert.subject`: the subject as RFC 4514 text
    ///   (`CN=alice,O=Example`, last RDN first);
    /// * `tls.client_cert.san`: one attribute per subjectAltName, written
    ///   `dns:NAME`, `uri:URI`, `email:ADDR` or `ip:ADDR` (other kinds are
    ///   left out), in certificate order;
    /// * `tls.client_cert.not_after`: the end of its validity, Unix seconds.
    ///
    /// Behind a TLS-terminating proxy none of these are set: the host only
    /// reports what its own listener negotiated.
    ///
    /// `scimgate.inline` (value `1`) marks an inline call: the host runs
    /// the stage on an async worker, where it must not block
    /// ([`Request::is_inline`]).
    pub attributes: RVec<Header>,
}

/// The attribute that marks an inline call ([`Request::is_inline`]).
pub const INLINE_ATTRIBUTE: &str = "scimgate.inline";

impl Request {
    /// A request with everything but method and path defaulted (loopback
    /// client, no headers or body, received at the Unix epoch, SCIM error
    /// style): for tests, benchmarks and in-process calls. Chain the `with_*`
    /// methods for the rest.
    pub fn new(method: &str, path: &str) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: RString::new(),
            headers: RVec::new(),
            body: RVec::new(),
            peer_addr: "127.0.0.1:0".into(),
            client_ip: "127.0.0.1".into(),
            request_id: RString::new(),
            mount: RString::new(),
            base_url: "http://localhost".into(),
            received_at_unix_ms: 0,
            error_style: ErrorStyle::Scim,
            attributes: RVec::new(),
        }
    }

    /// Whether the host calls the stage inline, on one of its async
    /// workers: a stage that declares the `inline-calls` capability (every
    /// component built with the SDK does) must then not block (no network,
    /// no disk write, no long lock, no argon2) and answers
    /// [`PluginError::would_block`] instead, before doing anything; the
    /// host calls it again on its blocking pool. Only the host sets it.
    ///
    /// [`PluginError::would_block`]: crate::PluginError::would_block
    pub fn is_inline(&self) -> bool {
        self.attributes
            .iter()
            .any(|a| a.name.as_str() == INLINE_ATTRIBUTE)
    }

    /// Marks or unmarks the request as an inline call (the host's runner).
    pub fn set_inline(&mut self, inline: bool) {
        self.attributes
            .retain(|a| a.name.as_str() != INLINE_ATTRIBUTE);
        if inline {
            self.attributes.push(Header::new(INLINE_ATTRIBUTE, "1"));
        }
    }

    pub fn with_query(mut self, query: &str) -> Request {
        self.query = query.into();
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Request {
        self.set_header(name, value);
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into().into();
        self
    }

    /// Sets the mount path and the absolute base URL it is reached at.
    pub fn with_mount(mut self, mount: &str, base_url: &str) -> Request {
        self.mount = mount.into();
        self.base_url = base_url.into();
        self
    }

    pub fn with_client_ip(mut self, ip: &str) -> Request {
        self.client_ip = ip.into();
        self
    }

    pub fn with_time(mut self, received_at_unix_ms: i64) -> Request {
        self.received_at_unix_ms = received_at_unix_ms;
        self
    }

    pub fn with_error_style(mut self, style: ErrorStyle) -> Request {
        self.error_style = style;
        self
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Every value of a header (case-insensitive), in arrival order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| h.name.as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// Replaces (or adds) a header.
    pub fn set_header(&mut self, name: &str, value: &str) {
        let lower = name.to_ascii_lowercase();
        self.headers.retain(|h| h.name.as_str() != lower);
        self.headers.push(Header::new(lower, value));
    }

    /// Decoded query parameters (`application/x-www-form-urlencoded`).
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        crate::sdk::form_decode(self.query.as_str())
    }

    /// The first decoded query parameter of this name (case-sensitive).
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// An extra attribute set by the host (see [`Request::attributes`]).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|h| h.name.as_str() == name)
            .map(|h| h.value.as_str())
    }
}

/// A response produced by an endpoint (or a rejection rendered by the host).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: RVec<Header>,
    pub body: RVec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: RVec::new(),
            body: RVec::new(),
        }
    }

    /// A response with a JSON body and the given content type.
    pub fn json(status: u16, content_type: &str, body: &serde_json::Value) -> Self {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        Response {
            status,
            headers: vec![Header::new("content-type", content_type)].into(),
            body: bytes.into(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.set_header(name, value);
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers
            .retain(|h| !h.name.as_str().eq_ignore_ascii_case(name));
        self.headers.push(Header::new(name, value));
    }
}

/// Who is calling, as established by an authenticator.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The `[[provider]]` id this caller belongs to.
    pub provider_id: RString,
    pub client_id: RString,
    /// Subject of the credential (a token's `sub`, a username).
    pub subject: RString,
    pub scopes: RVec<RString>,
    /// `oauth2-client-credentials`, `bearer`, `static-bearer`, `basic`, `jwks`, …
    pub auth_method: RString,
    /// Room to grow: extra claims as key/value pairs.
    pub attributes: RVec<Header>,
}

impl Principal {
    pub fn new(provider_id: &str, client_id: &str, auth_method: &str) -> Self {
        Principal {
            provider_id: provider_id.into(),
            client_id: client_id.into(),
            subject: client_id.into(),
            scopes: RVec::new(),
            auth_method: auth_method.into(),
            attributes: RVec::new(),
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s.as_str() == scope)
    }
}

/// A registered IGA provider: every field of the vendor's "new provider" form
/// (docs/architecture.md). Times are Unix seconds (UTC).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ProviderRecord {
    pub id: RString,
    pub name: RString,
    pub active: bool,
    pub protocol: RString,
    pub description: RString,
    pub tags: RVec<RString>,
    /// `[provider.auth] method`.
    pub auth_method: RString,
    pub client_id: RString,
    pub valid_from: ROption<i64>,
    pub valid_until: ROption<i64>,
    pub allowed_ips: RVec<RString>,
    pub allowed_referrers: RVec<RString>,
    /// `read-only` or `read-write`.
    pub access: RString,
    pub scopes: RVec<RString>,
    /// The whole `[provider.auth]` table as JSON, after `${VAR}` expansion and
    /// with plaintext secrets replaced by their hashes; for authenticators
    /// that need method-specific fields.
    pub auth_json: RString,
}

impl ProviderRecord {
    pub fn is_read_only(&self) -> bool {
        self.access.as_str() == "read-only"
    }
}

/// The caller of a stage: the principal once an authenticator has run, and
/// the current record of its provider (re-read on every request).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub principal: ROption<&'a Principal>,
    pub provider: ROption<&'a ProviderRecord>,
}

impl<'a> Caller<'a> {
    pub const ANONYMOUS: Caller<'static> = Caller {
        principal: ROption::RNone,
        provider: ROption::RNone,
    };

    pub fn principal(&self) -> Option<&'a Principal> {
        self.principal.into_option()
    }

    pub fn provider(&self) -> Option<&'a ProviderRecord> {
        self.provider.into_option()
    }
}

/// What an authenticator says about a request.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum AuthOutcome {
    /// These credentials are not of my kind (or there are none): ask the next.
    NotMine,
    Authenticated(Principal),
    /// My kind of credentials, and they are wrong: stop here.
    Rejected(PluginError),
}

/// What a policy decides.
#[repr(C, u8)]
#[derive(StableAbi, Debug, Clone)]
pub enum PolicyDecision {
    Allow,
    Deny(PluginError),
}

/// The four component kinds (docs/architecture.md, "The plugin contract").
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ComponentKind {
    Authenticator,
    Policy,
    Profile,
    Endpoint,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::Authenticator => "authenticator",
            ComponentKind::Policy => "policy",
            ComponentKind::Profile => "profile",
            ComponentKind::Endpoint => "endpoint",
        }
    }
}

/// Log levels of [`crate::ffi::FfiHostServices::log`].
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}
