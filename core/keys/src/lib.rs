//! The instance's Ed25519 signing key file: a PKCS#8 PEM private key, read
//! from a configured path or generated once into the data folder (mode 0600)
//! and reused. The oauth2 plugin signs its access tokens with it and the
//! SCIM server signs its change events with it, so both read and create the
//! file with these functions and never disagree on its form.
//!
//! Generation is safe against a concurrent process (or a second stage of the
//! same process): the key is written to a temporary file, then hard-linked
//! into place; the loser of the race reads the winner's complete key.

use std::fs;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
pub use ed25519_dalek::SigningKey;

/// The file a key is generated into in the data folder when no key is
/// configured.
pub const DEFAULT_KEY_FILE: &str = "oauth2-signing-key.pem";

/// A key read or created by [`load_or_generate`].
pub struct Loaded {
    pub key: SigningKey,
    /// Whether this call created the file (callers log it).
    pub generated: bool,
}

/// Reads the PKCS#8 PEM Ed25519 private key at `path`.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, String> {
    let pem = fs::read_to_string(path)
        .map_err(|e| format!("cannot read signing key {}: {e}", path.display()))?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        format!(
            "{} is not a PKCS#8 PEM Ed25519 private key: {e}",
            path.display()
        )
    })
}

/// Reads the key at `path`, or generates it there (see the module docs).
pub fn load_or_generate(path: &Path) -> Result<Loaded, String> {
    if path.exists() {
        return read_signing_key(path).map(|key| Loaded {
            key,
            generated: false,
        });
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| format!("no system randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| format!("cannot encode the signing key: {e}"))?;
    let mut suffix = [0u8; 8];
    getrandom::getrandom(&mut suffix).map_err(|e| format!("no system randomness: {e}"))?;
    let file_name = path
        .file_name()
        .map_or_else(|| "key".into(), |n| n.to_string_lossy().into_owned());
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{file_name}.{}.{suffix}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = private_file(&tmp)?;
        file.write_all(pem.as_bytes())?;
        file.sync_all()
    };
    let result = write().and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match result {
        Ok(()) => Ok(Loaded {
            key,
            generated: true,
        }),
        // Another process (or stage) created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read_signing_key(path).map(|key| Loaded {
                key,
                generated: false,
            })
        }
        Err(e) => Err(format!("cannot write signing key {}: {e}", path.display())),
    }
}

/// Whether group or others may read the file at `path` (a key file should
/// be 0600); `false` when that cannot be told.
pub fn readable_by_others(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o077 != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "scimgate-keys-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_once_private_and_then_read_back() {
        let dir = temp_dir("once");
        let path = dir.join("data").join(DEFAULT_KEY_FILE);
        let first = load_or_generate(&path).unwrap();
        assert!(first.generated);
        assert!(!readable_by_others(&path));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = load_or_generate(&path).unwrap();
        assert!(!second.generated);
        assert_eq!(first.key.to_bytes(), second.key.to_bytes());
        assert_eq!(
            read_signing_key(&path).unwrap().to_bytes(),
            first.key.to_bytes()
        );
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from(DEFAULT_KEY_FILE)]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn racing_generators_all_get_the_same_key() {
        let dir = temp_dir("race");
        let path = dir.join(DEFAULT_KEY_FILE);
        let keys: Vec<Loaded> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| load_or_generate(&path).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(keys.iter().filter(|k| k.generated).count(), 1);
        assert!(keys
            .iter()
            .all(|k| k.key.to_bytes() == keys[0].key.to_bytes()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_is_not_a_key_is_named_in_the_error() {
        let dir = temp_dir("bad");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.pem");
        fs::write(&path, "not a key").unwrap();
        let error = load_or_generate(&path).err().unwrap();
        assert!(
            error.contains("is not a PKCS#8 PEM Ed25519 private key"),
            "{error}"
        );
        assert!(error.contains("k.pem"), "{error}");
        let missing = read_signing_key(&dir.join("none.pem")).err().unwrap();
        assert!(missing.starts_with("cannot read signing key"), "{missing}");
        let _ = fs::remove_dir_all(&dir);
    }
}
