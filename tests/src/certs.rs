//! Throwaway X.509 material for the TLS tests, made with the `openssl` CLI in
//! a temporary folder: one test CA, a server certificate for `localhost` and
//! 127.0.0.1 signed by it, and on demand more server certificates, client
//! certificates with chosen subjectAltNames (signed by the CA, by another CA,
//! or self-signed) and other key encodings. Every certificate comes with its
//! SHA-256 fingerprint (lowercase hex of the DER), the value the host reports
//! as `tls.client_cert.sha256`.
//!
//! ```ignore
//! let certs = Certs::new();
//! let alice = certs.client("alice", &["DNS:alice.example", "URI:spiffe://corp/alice"]);
//! // certs.ca, certs.server.cert, certs.server.key, alice.cert, alice.key, alice.sha256
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TempDir;

/// One certificate and its private key on disk.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// PEM certificate (the leaf only; its issuer is in [`Certs::ca`]).
    pub cert: PathBuf,
    /// PEM private key, PKCS#8 (`BEGIN PRIVATE KEY`).
    pub key: PathBuf,
    /// Lowercase hex SHA-256 of the certificate's DER, no separators.
    pub sha256: String,
    /// The subject as RFC 4514 text; always `CN=<name>` here.
    pub subject: String,
    /// notAfter in Unix seconds.
    pub not_after: i64,
}

/// A test CA and a server certificate signed by it, in a temporary folder
/// removed on drop.
pub struct Certs {
    dir: TempDir,
    /// The CA certificate (PEM): the `--cacert` for clients, the
    /// `client_ca_file` for the server.
    pub ca: PathBuf,
    ca_key: PathBuf,
    /// Server certificate for DNS `localhost` and IP 127.0.0.1, signed by
    /// [`Certs::ca`].
    pub server: CertFiles,
}

/// Which key algorithm a new certificate gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlg {
    /// ECDSA P-256 (the default everywhere in this module).
    EcP256,
    /// RSA 2048.
    Rsa2048,
}

impl Default for Certs {
    fn default() -> Self {
        Certs::new()
    }
}

impl Certs {
    /// Creates the CA ("CN=scimgate test CA") and the `localhost` server
    /// certificate. Panics with openssl's message when openssl fails or is
    /// missing (tests/run installs it).
    pub fn new() -> Certs {
        let dir = TempDir::new("certs");
        let ca = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca.key");
        make_ca(&ca, &ca_key, "scimgate test CA");
        let mut certs = Certs {
            dir,
            ca,
            ca_key,
            server: placeholder(),
        };
        certs.server = certs.new_server("server");
        certs
    }

    /// The folder holding every file (write configs next to them if useful).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Another server certificate for `localhost` + 127.0.0.1 signed by the
    /// CA (files `<name>.pem`, `<name>.key`): a different fingerprint for
    /// reload tests.
    pub fn new_server(&self, name: &str) -> CertFiles {
        self.new_server_with(name, KeyAlg::EcP256)
    }

    /// [`Certs::new_server`] with a chosen key algorithm.
    pub fn new_server_with(&self, name: &str, alg: KeyAlg) -> CertFiles {
        self.leaf(
            name,
            "localhost",
            &["DNS:localhost", "IP:127.0.0.1"],
            "serverAuth",
            alg,
            Issuer::Ca(&self.ca, &self.ca_key),
        )
    }

    /// A client certificate with subject `CN=<name>` and the given
    /// subjectAltNames in openssl syntax (`DNS:host.example`,
    /// `URI:spiffe://corp/x`, `email:a@example.com`, `IP:10.0.0.1`), signed
    /// by the CA, extendedKeyUsage clientAuth.
    pub fn client(&self, name: &str, sans: &[&str]) -> CertFiles {
        self.leaf(
            name,
            name,
            sans,
            "clientAuth",
            KeyAlg::EcP256,
            Issuer::Ca(&self.ca, &self.ca_key),
        )
    }

    /// Like [`Certs::client`] with a subject of several RDNs in openssl's
    /// `-subj` syntax, most significant first (`/C=DE/O=Example/CN=bob`);
    /// [`CertFiles::subject`] is then its RFC 4514 text (`CN=bob,O=Example,C=DE`).
    pub fn client_with_subject(&self, name: &str, subject: &str, sans: &[&str]) -> CertFiles {
        let mut files = self.leaf_subject(
            name,
            subject,
            sans,
            "clientAuth",
            KeyAlg::EcP256,
            Issuer::Ca(&self.ca, &self.ca_key),
        );
        files.subject = rfc4514_of_subj(subject);
        files
    }

    /// Like [`Certs::client`] but self-signed: no CA vouches for it.
    pub fn self_signed_client(&self, name: &str, sans: &[&str]) -> CertFiles {
        self.leaf(name, name, sans, "clientAuth", KeyAlg::EcP256, Issuer::Own)
    }

    /// Like [`Certs::client`] but signed by a second CA of this folder
    /// ([`Certs::other_ca`]), which the server does not trust.
    pub fn other_ca_client(&self, name: &str, sans: &[&str]) -> CertFiles {
        let (ca, key) = self.other_ca();
        self.leaf(
            name,
            name,
            sans,
            "clientAuth",
            KeyAlg::EcP256,
            Issuer::Ca(&ca, &key),
        )
    }

    /// A second CA ("CN=another test CA"), created on first use: (cert, key).
    pub fn other_ca(&self) -> (PathBuf, PathBuf) {
        let ca = self.path().join("other-ca.pem");
        let key = self.path().join("other-ca.key");
        if !ca.is_file() {
            make_ca(&ca, &key, "another test CA");
        }
        (ca, key)
    }

    /// The same key in openssl's "traditional" encoding: SEC1 (`BEGIN EC
    /// PRIVATE KEY`) for an EC key, PKCS#1 (`BEGIN RSA PRIVATE KEY`) for an
    /// RSA key. Written next to the original as `<stem>.trad.key`.
    pub fn traditional_key(&self, files: &CertFiles) -> PathBuf {
        let out = files.key.with_extension("trad.key");
        openssl(
            Command::new("openssl")
                .args(["pkey", "-traditional", "-in"])
                .arg(&files.key)
                .arg("-out")
                .arg(&out),
        );
        out
    }

    fn leaf(
        &self,
        name: &str,
        cn: &str,
        sans: &[&str],
        usage: &str,
        alg: KeyAlg,
        issuer: Issuer<'_>,
    ) -> CertFiles {
        self.leaf_subject(name, &format!("/CN={cn}"), sans, usage, alg, issuer)
    }

    fn leaf_subject(
        &self,
        name: &str,
        subj: &str,
        sans: &[&str],
        usage: &str,
        alg: KeyAlg,
        issuer: Issuer<'_>,
    ) -> CertFiles {
        let dir = self.path();
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        let mut ext = format!(
            "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage={usage}\n\
             subjectKeyIdentifier=hash\n"
        );
        if !sans.is_empty() {
            ext.push_str(&format!("subjectAltName={}\n", sans.join(",")));
        }
        match issuer {
            Issuer::Own => {
                let mut cmd = Command::new("openssl");
                cmd.args(["req", "-x509", "-nodes", "-days", "2", "-subj", subj]);
                key_args(&mut cmd, alg);
                for line in ext.lines() {
                    cmd.arg("-addext").arg(line);
                }
                cmd.arg("-keyout").arg(&key).arg("-out").arg(&cert);
                openssl(&mut cmd);
            }
            Issuer::Ca(ca, ca_key) => {
                let csr = dir.join(format!("{name}.csr"));
                let extfile = dir.join(format!("{name}.ext"));
                ext.push_str("authorityKeyIdentifier=keyid,issuer\n");
                std::fs::write(&extfile, &ext).expect("write the extension file");
                let mut cmd = Command::new("openssl");
                cmd.args(["req", "-new", "-nodes", "-subj", subj]);
                key_args(&mut cmd, alg);
                cmd.arg("-keyout").arg(&key).arg("-out").arg(&csr);
                openssl(&mut cmd);
                openssl(
                    Command::new("openssl")
                        .args(["x509", "-req", "-days", "2", "-set_serial"])
                        .arg(serial())
                        .arg("-in")
                        .arg(&csr)
                        .arg("-CA")
                        .arg(ca)
                        .arg("-CAkey")
                        .arg(ca_key)
                        .arg("-extfile")
                        .arg(&extfile)
                        .arg("-out")
                        .arg(&cert),
                );
            }
        }
        CertFiles {
            sha256: sha256_of(&cert),
            not_after: not_after_of(&cert),
            subject: rfc4514_of_subj(subj),
            cert,
            key,
        }
    }
}

/// `/C=DE/O=Example, Inc./CN=bob` → `CN=bob,O=Example\, Inc.,C=DE`.
fn rfc4514_of_subj(subj: &str) -> String {
    subj.split('/')
        .filter(|rdn| !rdn.is_empty())
        .rev()
        .map(|rdn| {
            let (attr, value) = rdn.split_once('=').unwrap_or((rdn, ""));
            let mut escaped = String::new();
            for c in value.chars() {
                if "\"+,;<>\\".contains(c) {
                    escaped.push('\\');
                }
                escaped.push(c);
            }
            format!("{attr}={escaped}")
        })
        .collect::<Vec<_>>()
        .join(",")
}

enum Issuer<'a> {
    Own,
    Ca(&'a Path, &'a Path),
}

fn placeholder() -> CertFiles {
    CertFiles {
        cert: PathBuf::new(),
        key: PathBuf::new(),
        sha256: String::new(),
        subject: String::new(),
        not_after: 0,
    }
}

fn key_args(cmd: &mut Command, alg: KeyAlg) {
    match alg {
        KeyAlg::EcP256 => cmd.args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]),
        KeyAlg::Rsa2048 => cmd.args(["-newkey", "rsa:2048"]),
    };
}

fn make_ca(cert: &Path, key: &Path, cn: &str) {
    let mut cmd = Command::new("openssl");
    cmd.args(["req", "-x509", "-nodes", "-days", "2", "-subj"])
        .arg(format!("/CN={cn}"));
    key_args(&mut cmd, KeyAlg::EcP256);
    cmd.args([
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
    ])
    .arg(key)
    .arg("-out")
    .arg(cert);
    openssl(&mut cmd);
}

/// A serial number unique within this process run.
fn serial() -> String {
    static N: AtomicU64 = AtomicU64::new(1);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{}", (nanos >> 8) + N.fetch_add(1, Ordering::SeqCst))
}

fn openssl(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .expect("run openssl (tests/run installs it when missing)");
    assert!(
        out.status.success(),
        "openssl failed: {:?}\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lowercase hex SHA-256 of a PEM certificate's DER (no separators).
pub fn sha256_of(cert: &Path) -> String {
    let out = openssl(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(cert),
    );
    let hex = out
        .trim()
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("unexpected openssl fingerprint output: {out}"));
    hex.replace(':', "").to_ascii_lowercase()
}

/// notAfter of a PEM certificate, Unix seconds.
pub fn not_after_of(cert: &Path) -> i64 {
    let out = openssl(
        Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601", "-in"])
            .arg(cert),
    );
    // notAfter=2026-12-05 14:19:39Z
    let text = out
        .trim()
        .strip_prefix("notAfter=")
        .unwrap_or_else(|| panic!("unexpected openssl enddate output: {out}"))
        .replacen(' ', "T", 1);
    crate::unix_ms(&text) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifies(ca: &Path, cert: &Path, purpose: &str) -> bool {
        Command::new("openssl")
            .args(["verify", "-purpose", purpose, "-CAfile"])
            .arg(ca)
            .arg(cert)
            .output()
            .expect("run openssl")
            .status
            .success()
    }

    #[test]
    fn the_ca_vouches_for_its_certificates_and_no_other() {
        let certs = Certs::new();
        assert!(verifies(&certs.ca, &certs.server.cert, "sslserver"));
        let alice = certs.client("alice", &["DNS:alice.example", "email:alice@example.com"]);
        assert!(verifies(&certs.ca, &alice.cert, "sslclient"));
        assert!(!verifies(&certs.ca, &alice.cert, "sslserver"));
        let mallory = certs.self_signed_client("mallory", &["DNS:alice.example"]);
        assert!(!verifies(&certs.ca, &mallory.cert, "sslclient"));
        let eve = certs.other_ca_client("eve", &[]);
        assert!(!verifies(&certs.ca, &eve.cert, "sslclient"));
        assert!(verifies(&certs.other_ca().0, &eve.cert, "sslclient"));
        assert_eq!(alice.subject, "CN=alice");
    }

    #[test]
    fn fingerprints_are_lowercase_hex_and_distinct() {
        let certs = Certs::new();
        let second = certs.new_server("second");
        for fp in [&certs.server.sha256, &second.sha256] {
            assert_eq!(fp.len(), 64, "{fp}");
            assert!(
                fp.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{fp}"
            );
        }
        assert_ne!(certs.server.sha256, second.sha256);
        // The fingerprint is the digest of the DER, as `openssl dgst` sees it.
        let der = certs.path().join("server.der");
        openssl(
            Command::new("openssl")
                .args(["x509", "-outform", "DER", "-in"])
                .arg(&certs.server.cert)
                .arg("-out")
                .arg(&der),
        );
        let digest = openssl(
            Command::new("openssl")
                .args(["dgst", "-sha256", "-r"])
                .arg(&der),
        );
        assert!(digest.starts_with(&certs.server.sha256), "{digest}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!(certs.server.not_after > now && certs.server.not_after < now + 3 * 86_400);
    }

    #[test]
    fn traditional_keys_are_sec1_and_pkcs1() {
        let certs = Certs::new();
        let ec = std::fs::read_to_string(certs.traditional_key(&certs.server)).unwrap();
        assert!(ec.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{ec}");
        let rsa = certs.new_server_with("rsa", KeyAlg::Rsa2048);
        let pkcs8 = std::fs::read_to_string(&rsa.key).unwrap();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        let pkcs1 = std::fs::read_to_string(certs.traditional_key(&rsa)).unwrap();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    }
}
