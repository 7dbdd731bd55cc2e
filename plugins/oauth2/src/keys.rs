//! The Ed25519 keys of our own access tokens, loaded the same way by the
//! token endpoint and the bearer authenticator: a configured PKCS#8 PEM
//! file, or `<data_dir>/oauth2-signing-key.pem`, generated once (mode 0600)
//! and reused, plus older public keys still accepted during a rotation.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::secret::{hex, sha256};

/// The file a key is generated into when no `signing_key` is configured.
pub use scimgate_keys::DEFAULT_KEY_FILE;

/// Where the keys come from (the `signing_key` / `verification_keys` stage
/// options).
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    pub signing_key: Option<PathBuf>,
    pub verification_keys: Vec<PathBuf>,
}

/// The signing key and every key a token may be verified with, by `kid`.
pub struct KeySet {
    pub signing: SigningKey,
    pub signing_kid: String,
    pub verifying: HashMap<String, VerifyingKey>,
}

/// `kid` of a public key: the first 16 hex digits of SHA-256 of its 32 bytes.
pub fn kid_of(key: &VerifyingKey) -> String {
    let mut h = hex(&sha256(key.as_bytes()));
    h.truncate(16);
    h
}

/// Loads (or, for the default file, creates) the keys. One function for the
/// token endpoint and the bearer authenticator, so both always agree.
pub fn load(data_dir: &Path, sources: &KeySources) -> Result<KeySet, String> {
    let signing = match &sources.signing_key {
        Some(path) => read_signing_key(path)?,
        None => load_or_generate(&data_dir.join(DEFAULT_KEY_FILE))?,
    };
    let signing_kid = kid_of(&signing.verifying_key());
    let mut verifying = HashMap::new();
    verifying.insert(signing_kid.clone(), signing.verifying_key());
    for path in &sources.verification_keys {
        let key = read_verifying_key(path)?;
        verifying.insert(kid_of(&key), key);
    }
    Ok(KeySet {
        signing,
        signing_kid,
        verifying,
    })
}

fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    warn_if_readable_by_others(path);
    scimgate_keys::read_signing_key(path)
}

/// A public key file (`-----BEGIN PUBLIC KEY-----`), or a private key file
/// whose public half is used.
fn read_verifying_key(path: &Path) -> Result<VerifyingKey, String> {
    let pem = fs::read_to_string(path)
        .map_err(|e| format!("cannot read verification key {}: {e}", path.display()))?;
    VerifyingKey::from_public_key_pem(&pem)
        .or_else(|_| SigningKey::from_pkcs8_pem(&pem).map(|k| k.verifying_key()))
        .map_err(|_| {
            format!(
                "{} is neither an Ed25519 public key PEM nor a PKCS#8 private key PEM",
                path.display()
            )
        })
}

/// Reads the key at `path`, or generates it there (`scimgate_keys`, shared
/// with the SCIM server's change events).
fn load_or_generate(path: &Path) -> Result<SigningKey, String> {
    let loaded = scimgate_keys::load_or_generate(path)?;
    if loaded.generated {
        tracing::info!(path = %path.display(), kid = %kid_of(&loaded.key.verifying_key()), "generated a new token signing key");
    } else {
        warn_if_readable_by_others(path);
    }
    Ok(loaded.key)
}

fn warn_if_readable_by_others(path: &Path) {
    if scimgate_keys::readable_by_others(path) {
        tracing::warn!(path = %path.display(), "the token signing key is readable by group or others; chmod 600 it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::temp_dir;

    #[test]
    fn generated_once_with_mode_0600_and_reused() {
        let dir = temp_dir("keys");
        let data = dir.join("data");
        let a = load(&data, &KeySources::default()).unwrap();
        let path = data.join(DEFAULT_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let b = load(&data, &KeySources::default()).unwrap();
        assert_eq!(a.signing_kid, b.signing_kid);
        assert_eq!(a.signing.to_bytes(), b.signing.to_bytes());
        assert_eq!(a.signing_kid.len(), 16);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        // A configured file gives the same key as the generated one.
        let c = load(
            Path::new("/nonexistent"),
            &KeySources {
                signing_key: Some(path.clone()),
                verification_keys: vec![],
            },
        )
        .unwrap();
        assert_eq!(c.signing_kid, a.signing_kid);
    }

    #[test]
    fn concurrent_generation_agrees_on_one_key() {
        let dir = temp_dir("keys-race");
        let kids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| load(&dir, &KeySources::default()).unwrap().signing_kid))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(kids.windows(2).all(|w| w[0] == w[1]), "{kids:?}");
    }

    #[test]
    fn bad_files_are_reported() {
        let dir = temp_dir("keys-bad");
        let bad = dir.join("bad.pem");
        fs::write(&bad, "not a key").unwrap();
        let err = load(
            &dir,
            &KeySources {
                signing_key: Some(bad.clone()),
                verification_keys: vec![],
            },
        )
        .err()
        .unwrap();
        assert!(err.contains("PKCS#8"), "{err}");
        let err = load(
            &dir,
            &KeySources {
                signing_key: None,
                verification_keys: vec![bad],
            },
        )
        .err()
        .unwrap();
        assert!(err.contains("public key"), "{err}");
    }
}
