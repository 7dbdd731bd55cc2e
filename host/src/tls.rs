//! TLS on the main listener (`[server.tls]`): building the rustls server
//! configuration from the PEM files (ring provider, TLS 1.2/1.3 only, ALPN
//! `h2` then `http/1.1`, optional or required client certificates), keeping
//! the current one swappable so that a SIGHUP reload gives new handshakes the
//! new certificate while open connections keep theirs, and reading the facts
//! of a finished handshake that reach plugins as `tls.*` request attributes.
//!
//! Error messages name the file and the reason, never the file's contents.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{InconsistentKeys, ProtocolVersion, RootCertStore, ServerConfig, ServerConnection};

use crate::config::{ClientAuth, TlsConfig, TlsMinVersion};

/// Which file of `[server.tls]` a [`LoadError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    Cert,
    Key,
    ClientCa,
}

impl TlsFile {
    /// The key under `[server.tls]` naming the file.
    pub fn key(self) -> &'static str {
        match self {
            TlsFile::Cert => "cert_file",
            TlsFile::Key => "key_file",
            TlsFile::ClientCa => "client_ca_file",
        }
    }
}

/// Why the TLS files could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: TlsFile,
    pub path: PathBuf,
    /// Why, without any of the file's contents.
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`server.tls.{}` {}: {}",
            self.file.key(),
            self.path.display(),
            self.reason
        )
    }
}

impl std::error::Error for LoadError {}

/// The one crypto provider: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the files and builds the server configuration.
pub fn load(settings: &TlsConfig) -> Result<Arc<ServerConfig>, LoadError> {
    load_described(settings).map(|(config, _)| config)
}

/// [`load`], with a one-line description of the certificate for the log:
/// its subject, SHA-256 and end of validity (no secret in it).
fn load_described(settings: &TlsConfig) -> Result<(Arc<ServerConfig>, String), LoadError> {
    let provider = provider();
    let fail = |file: TlsFile, path: &Path, reason: String| LoadError {
        file,
        path: path.to_path_buf(),
        reason,
    };
    let chain = read_certs(&settings.cert_file, TlsFile::Cert)?;
    let key = read_key(&settings.key_file)?;
    let signing = provider.key_provider.load_private_key(key).map_err(|_| {
        fail(
            TlsFile::Key,
            &settings.key_file,
            "the private key is not usable (supported: RSA of 2048 bits or more, ECDSA P-256 or P-384, Ed25519)".into(),
        )
    })?;
    let described = describe(chain[0].as_ref());
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(fail(
                TlsFile::Key,
                &settings.key_file,
                format!(
                    "the private key does not match the certificate in {}",
                    settings.cert_file.display()
                ),
            ))
        }
        Err(error) => {
            return Err(fail(
                TlsFile::Cert,
                &settings.cert_file,
                format!("the first certificate is not a valid X.509 certificate: {error}"),
            ))
        }
    }
    let verifier = match &settings.client_ca_file {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for (i, cert) in read_certs(path, TlsFile::ClientCa)?.into_iter().enumerate() {
                roots.add(cert).map_err(|e| {
                    fail(
                        TlsFile::ClientCa,
                        path,
                        format!("certificate {} is not a usable CA certificate: {e}", i + 1),
                    )
                })?;
            }
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let builder = match settings.client_auth {
                ClientAuth::Optional => builder.allow_unauthenticated(),
                ClientAuth::Required => builder,
            };
            builder
                .build()
                .map_err(|e| fail(TlsFile::ClientCa, path, e.to_string()))?
        }
    };
    let versions: &[&'static rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| fail(TlsFile::Cert, &settings.cert_file, e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = if settings.http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok((Arc::new(config), described))
}

/// Lowercase hex SHA-256 of a certificate's DER: its fingerprint in logs
/// and in `tls.client_cert.sha256`.
fn fingerprint(der: &[u8]) -> String {
    scimgate_abi::secret::hex(&scimgate_abi::secret::sha256(der))
}

/// `subject=…, sha256=…, not_after=…` of a certificate's DER.
fn describe(der: &[u8]) -> String {
    let sha256 = fingerprint(der);
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => {
            let not_after = cert
                .validity()
                .not_after
                .to_datetime()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            format!(
                "subject=\"{}\" sha256={sha256} not_after={not_after}",
                rfc4514(cert.subject())
            )
        }
        Err(_) => format!("sha256={sha256}"),
    }
}

fn read_file(path: &Path, file: TlsFile) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| LoadError {
        file,
        path: path.to_path_buf(),
        reason: format!("cannot read the file: {e}"),
    })
}

/// Every `CERTIFICATE` block of a PEM file, at least one.
fn read_certs(path: &Path, file: TlsFile) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let bytes = read_file(path, file)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError {
            file,
            path: path.to_path_buf(),
            reason: format!("not a valid PEM file: {}", pem_reason(&e)),
        })?;
    if certs.is_empty() {
        return Err(LoadError {
            file,
            path: path.to_path_buf(),
            reason: "no PEM certificate (`-----BEGIN CERTIFICATE-----`) in the file".into(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    let bytes = read_file(path, TlsFile::Key)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| LoadError {
        file: TlsFile::Key,
        path: path.to_path_buf(),
        reason: match e {
            pem::Error::NoItemsFound => "no PEM private key in the file (expected `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`; an encrypted key must be decrypted first)".into(),
            other => format!("not a valid PEM file: {}", pem_reason(&other)),
        },
    })
}

/// A PEM error in words, without quoting the file (a key's base64 must
/// never reach a log).
fn pem_reason(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no END line",
        pem::Error::IllegalSectionStart { .. } => "a BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::Io(_) => "the file could not be read",
        pem::Error::NoItemsFound => "nothing found",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "unreadable",
    }
}

/// The server configuration new handshakes use; replaced on reload.
pub struct Tls {
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    pub fn new(settings: &TlsConfig) -> Result<Tls, LoadError> {
        let (config, described) = load_described(settings)?;
        tracing::info!("TLS: serving the certificate {described}");
        Ok(Tls {
            current: RwLock::new(config),
        })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again; on success new handshakes use them, on error
    /// the previous configuration stays.
    pub fn reload(&self, settings: &TlsConfig) -> Result<(), LoadError> {
        let (config, described) = load_described(settings)?;
        tracing::info!("TLS: new handshakes use the certificate {described}");
        match self.current.write() {
            Ok(mut guard) => *guard = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }
}

/// What a finished handshake tells about the peer, as the `tls.*` request
/// attributes (documented on `scimgate_abi::Request::attributes`). Carried
/// to the handler in each request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerTls {
    pub attributes: Vec<(&'static str, String)>,
}

impl PeerTls {
    /// Reads the negotiated version, ALPN protocol and the verified client
    /// certificate (rustls only keeps a certificate it verified).
    pub fn of(conn: &ServerConnection) -> PeerTls {
        let mut attributes = Vec::new();
        match conn.protocol_version() {
            Some(ProtocolVersion::TLSv1_3) => attributes.push(("tls.version", "TLSv1.3".into())),
            Some(ProtocolVersion::TLSv1_2) => attributes.push(("tls.version", "TLSv1.2".into())),
            _ => {}
        }
        if let Some(alpn) = conn.alpn_protocol() {
            attributes.push(("tls.alpn", String::from_utf8_lossy(alpn).into_owned()));
        }
        if let Some(leaf) = conn.peer_certificates().and_then(|c| c.first()) {
            client_cert_attributes(leaf.as_ref(), &mut attributes);
        }
        PeerTls { attributes }
    }
}

/// `tls.client_cert.*` of a leaf certificate's DER.
fn client_cert_attributes(der: &[u8], out: &mut Vec<(&'static str, String)>) {
    out.push(("tls.client_cert.sha256", fingerprint(der)));
    let cert = match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => cert,
        Err(error) => {
            tracing::debug!("the client certificate's fields cannot be read: {error}");
            return;
        }
    };
    out.push(("tls.client_cert.subject", rfc4514(cert.subject())));
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        use x509_parser::extensions::GeneralName;
        for name in &san.value.general_names {
            let text = match name {
                GeneralName::DNSName(n) => format!("dns:{n}"),
                GeneralName::URI(u) => format!("uri:{u}"),
                GeneralName::RFC822Name(e) => format!("email:{e}"),
                GeneralName::IPAddress(bytes) => match ip_of(bytes) {
                    Some(ip) => format!("ip:{ip}"),
                    None => continue,
                },
                _ => continue,
            };
            out.push(("tls.client_cert.san", text));
        }
    }
    out.push((
        "tls.client_cert.not_after",
        cert.validity().not_after.timestamp().to_string(),
    ));
}

fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// A distinguished name as RFC 4514 text: the last RDN first, `,` between
/// RDNs, `+` inside a multi-valued one, the standard short names (CN, L, ST,
/// O, OU, C, STREET, DC, UID) and dotted OIDs with `#`-hex values otherwise.
fn rfc4514(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|atv| {
                    let oid = atv.attr_type().to_id_string();
                    let short = match oid.as_str() {
                        "2.5.4.3" => Some("CN"),
                        "2.5.4.7" => Some("L"),
                        "2.5.4.8" => Some("ST"),
                        "2.5.4.10" => Some("O"),
                        "2.5.4.11" => Some("OU"),
                        "2.5.4.6" => Some("C"),
                        "2.5.4.9" => Some("STREET"),
                        "0.9.2342.19200300.100.1.25" => Some("DC"),
                        "0.9.2342.19200300.100.1.1" => Some("UID"),
                        _ => None,
                    };
                    let value = atv.attr_value();
                    let text = attribute_text(value.tag().0, value.data);
                    match (short, text) {
                        (Some(short), Some(text)) => format!("{short}={}", escape_rfc4514(&text)),
                        (short, _) => format!(
                            "{}=#{}",
                            short.map(str::to_string).unwrap_or(oid),
                            hex::encode(der_tlv(value.tag().0, value.data))
                        ),
                    }
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// The text of a directory string (UTF8, Printable, IA5, Numeric, Visible,
/// Teletex as Latin-1, BMP as UTF-16BE); `None` for anything else.
fn attribute_text(tag: u32, data: &[u8]) -> Option<String> {
    match tag {
        12 | 18 | 19 | 22 | 26 => std::str::from_utf8(data).ok().map(str::to_string),
        20 => Some(data.iter().map(|&b| char::from(b)).collect()),
        30 if data.len().is_multiple_of(2) => {
            let units: Vec<u16> = data
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// A primitive universal-class DER encoding of `data` with `tag`.
fn der_tlv(tag: u32, data: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(tag).unwrap_or(0) & 0x1f];
    let len = data.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|&b| b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(data);
    out
}

/// RFC 4514 section 2.4 escaping of an attribute value.
fn escape_rfc4514(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4514_escapes_the_special_characters() {
        assert_eq!(escape_rfc4514("alice"), "alice");
        assert_eq!(escape_rfc4514("Doe, John"), "Doe\\, John");
        assert_eq!(escape_rfc4514("#1 a+b"), "\\#1 a\\+b");
        assert_eq!(escape_rfc4514(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc4514("a\"b\\c<d>;"), "a\\\"b\\\\c\\<d\\>\\;");
        assert_eq!(escape_rfc4514("nul\0"), "nul\\00");
    }

    #[test]
    fn directory_strings_are_read_as_text() {
        assert_eq!(attribute_text(12, "Zoë".as_bytes()).as_deref(), Some("Zoë"));
        assert_eq!(attribute_text(19, b"ACME").as_deref(), Some("ACME"));
        assert_eq!(
            attribute_text(30, &[0, b'h', 0, b'i']).as_deref(),
            Some("hi")
        );
        assert_eq!(attribute_text(20, &[0xe9]).as_deref(), Some("é"));
        assert_eq!(attribute_text(4, b"raw"), None);
        assert_eq!(der_tlv(4, b"ab"), vec![4, 2, b'a', b'b']);
        assert_eq!(&der_tlv(4, &[0; 200])[..3], &[4, 0x81, 200]);
    }

    #[test]
    fn ip_sans_are_four_or_sixteen_bytes() {
        assert_eq!(
            ip_of(&[10, 0, 0, 1]).map(|i| i.to_string()),
            Some("10.0.0.1".into())
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(ip_of(&v6).map(|i| i.to_string()), Some("::1".into()));
        assert_eq!(ip_of(&[1, 2, 3]), None);
    }

    #[test]
    fn a_missing_file_is_named_with_its_key() {
        let settings = TlsConfig {
            cert_file: PathBuf::from("/nonexistent/scimgate-test/cert.pem"),
            key_file: PathBuf::from("/nonexistent/scimgate-test/key.pem"),
            client_ca_file: None,
            client_auth: ClientAuth::Optional,
            min_version: TlsMinVersion::Tls12,
            http2: true,
        };
        let error = load(&settings).unwrap_err();
        assert_eq!(error.file, TlsFile::Cert);
        assert!(
            error.to_string().starts_with(
                "`server.tls.cert_file` /nonexistent/scimgate-test/cert.pem: cannot read the file"
            ),
            "{error}"
        );
    }
}
