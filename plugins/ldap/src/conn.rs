//! Connections to the directory: a small pool of bound `ldap3` synchronous
//! connections (each drives its own current-thread runtime inside this
//! `.so`), TLS through rustls (`ldaps://`, or StartTLS on `ldap://`) with an
//! optional CA file, timeouts, and the translation of every directory
//! failure into a [`BackendError`].

use std::sync::Arc;
use std::time::Duration;

use ldap3::{LdapConn, LdapConnSettings, LdapError, LdapResult};
use scimgate_scim_service::pool::BoundedPool;
use scimgate_scim_service::BackendError;

use crate::config::LdapConfig;

/// How to open a connection.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub starttls: bool,
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub bind_dn: String,
    pub bind_password: String,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Target")
            .field("url", &self.url)
            .field("starttls", &self.starttls)
            .field("bind_dn", &self.bind_dn)
            .finish_non_exhaustive()
    }
}

impl Target {
    pub fn from_config(config: &LdapConfig) -> Result<Target, String> {
        let tls = match &config.ca_file {
            Some(path) => Some(Arc::new(client_config(path)?)),
            None => None,
        };
        Ok(Target {
            url: config.url.clone(),
            starttls: config.starttls,
            tls,
            bind_dn: config.bind_dn.clone(),
            bind_password: config.bind_password.clone(),
            connect_timeout: config.connect_timeout.0,
            operation_timeout: config.operation_timeout.0,
        })
    }

    /// A new bound connection.
    pub fn connect(&self) -> Result<LdapConn, BackendError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.connect_timeout)
            .set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let mut conn = LdapConn::with_settings(settings, &self.url)
            .map_err(|e| unavailable(&format!("cannot connect to {}", self.url), &e))?;
        let result = conn
            .with_timeout(self.operation_timeout)
            .simple_bind(&self.bind_dn, &self.bind_password)
            .map_err(|e| unavailable(&format!("cannot bind to {}", self.url), &e))?;
        if result.rc != 0 {
            // A wrong bind DN or password is the operator's problem: the
            // directory cannot be used until it is fixed.
            return Err(BackendError::Unavailable(format!(
                "bind as '{}' refused by {} (LDAP result {} {})",
                self.bind_dn,
                self.url,
                result.rc,
                rc_name(result.rc)
            )));
        }
        Ok(conn)
    }
}

/// A rustls client trusting the certificates of the PEM file at `path`.
pub fn client_config(path: &str) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the CA file '{path}': {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("the CA file '{path}': {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA file '{path}': {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("the CA file '{path}' holds no certificate"));
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

/// A failure to reach or use the connection: the directory is unavailable.
pub fn unavailable(what: &str, error: &LdapError) -> BackendError {
    let detail = match error {
        LdapError::Timeout { .. } => "timed out".to_string(),
        other => other.to_string(),
    };
    BackendError::Unavailable(format!("{what}: {detail}"))
}

/// Whether a client error means the connection is unusable.
pub fn is_connection_error(error: &LdapError) -> bool {
    !matches!(
        error,
        LdapError::FilterParsing | LdapError::LdapResult { .. }
    )
}

pub const NO_SUCH_OBJECT: u32 = 32;
pub const ALREADY_EXISTS: u32 = 68;

/// An operation's non-success result as a [`BackendError`].
pub fn result_error(what: &str, result: &LdapResult) -> BackendError {
    let text = if result.text.is_empty() {
        rc_name(result.rc).to_string()
    } else {
        format!("{} ({})", rc_name(result.rc), result.text)
    };
    match result.rc {
        ALREADY_EXISTS => BackendError::Conflict(format!("{what}: the entry")),
        // constraintViolation, invalidAttributeSyntax, attributeOrValueExists,
        // undefinedAttributeType, inappropriateMatching, invalidDNSyntax,
        // namingViolation, objectClassViolation, notAllowedOnNonLeaf,
        // notAllowedOnRDN, objectClassModsProhibited.
        16 | 17 | 18 | 19 | 20 | 21 | 34 | 64 | 65 | 66 | 67 | 69 => BackendError::Invalid(
            format!("the directory refused the {what}: {text}"),
            "invalidValue",
        ),
        // busy, unavailable, timeLimitExceeded, adminLimitExceeded, loopDetect, other transient.
        3 | 11 | 51 | 52 => BackendError::Unavailable(format!("{what}: {text}")),
        _ => BackendError::Backend(format!("{what}: LDAP result {} {text}", result.rc)),
    }
}

fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        11 => "adminLimitExceeded",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        _ => "error",
    }
}

/// A small pool of bound connections: the engine's [`BoundedPool`], with
/// the directory's operation timeout as the longest wait.
pub struct Pool {
    pub target: Target,
    conns: BoundedPool<LdapConn>,
}

impl Pool {
    pub fn new(target: Target, size: usize) -> Pool {
        Pool {
            target,
            conns: BoundedPool::new(size),
        }
    }

    pub fn size(&self) -> usize {
        self.conns.max()
    }

    /// A connection: an idle one, a new one while below the size, or the
    /// next one freed within the operation timeout.
    pub fn get(&self) -> Result<LdapConn, BackendError> {
        self.conns.take(
            self.target.operation_timeout,
            || self.target.connect(),
            || {
                BackendError::Unavailable(format!(
                    "all {} directory connections are busy",
                    self.size()
                ))
            },
        )
    }

    /// Returns a healthy connection.
    pub fn put(&self, conn: LdapConn) {
        self.conns.give_back(conn);
    }

    /// A lent connection was closed (broken or dropped), or kept by a
    /// paging continuation that ended.
    pub fn forget(&self) {
        self.conns.forget_one();
    }

    /// Drops every idle connection (after a failure, they may all be dead).
    pub fn clear_idle(&self) {
        self.conns.clear_idle();
    }
}
