//! Stored secret hashes (`sha256:<hex>` and `$argon2id$…`), verified in
//! constant time, with a small cache of successful argon2 verifications so
//! that a client repeating the same credentials pays the argon2 cost once.

use std::sync::Mutex;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::cache::BoundedCache;

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// A stored secret as the host hands it over (plaintext never reaches us).
#[derive(Clone)]
pub enum SecretHash {
    /// `sha256:<64 hex>`: for high-entropy generated secrets and tokens.
    Sha256([u8; 32]),
    /// A PHC string `$argon2id$v=19$m=…,t=…,p=…$salt$hash`: for human passwords.
    Argon2id(String),
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(**REDACTED**)")
    }
}

impl SecretHash {
    pub fn parse(text: &str) -> Result<SecretHash, String> {
        if let Some(hex_part) = text.strip_prefix("sha256:") {
            return parse_sha256_hex(hex_part).map(SecretHash::Sha256);
        }
        if text.starts_with("$argon2id$") {
            let parsed =
                PasswordHash::new(text).map_err(|e| format!("invalid argon2id hash: {e}"))?;
            argon2::Params::try_from(&parsed)
                .map_err(|e| format!("invalid argon2id parameters: {e}"))?;
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("invalid argon2id hash: salt or hash missing".into());
            }
            return Ok(SecretHash::Argon2id(text.to_string()));
        }
        Err("a secret hash must be `sha256:<64 hex digits>` or `$argon2id$…`".into())
    }

    /// Whether `secret` matches, in constant time for `sha256:` (argon2's
    /// own comparison is constant-time too).
    pub fn verify(&self, secret: &[u8]) -> bool {
        match self {
            SecretHash::Sha256(expected) => bool::from(sha256(secret).ct_eq(expected)),
            SecretHash::Argon2id(phc) => match PasswordHash::new(phc) {
                Ok(parsed) => Argon2::default().verify_password(secret, &parsed).is_ok(),
                Err(_) => false,
            },
        }
    }
}

fn parse_sha256_hex(hex_part: &str) -> Result<[u8; 32], String> {
    let bytes = hex_part.as_bytes();
    if bytes.len() != 64 {
        return Err("a `sha256:` hash needs exactly 64 hex digits".into());
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        match (digit(pair[0]), digit(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h * 16 + l) as u8,
            _ => return Err("a `sha256:` hash must be hexadecimal".into()),
        }
    }
    Ok(out)
}

/// Makes refusing an unknown identity cost what checking a known one costs,
/// so response times do not tell which usernames or client ids exist: holds
/// one of the configured argon2id hashes (when there is one) and verifies the
/// presented secret against it, discarding the answer. With only `sha256:`
/// hashes every check is already cheap and constant-time, and it does nothing.
pub struct DecoyHash(Option<SecretHash>);

impl DecoyHash {
    pub fn from_hashes<'a>(mut hashes: impl Iterator<Item = &'a SecretHash>) -> DecoyHash {
        DecoyHash(
            hashes
                .find(|h| matches!(h, SecretHash::Argon2id(_)))
                .cloned(),
        )
    }

    /// Spends the time of one argon2id verification (if any are configured).
    pub fn spend(&self, secret: &str) {
        if let Some(hash) = &self.0 {
            let _ = std::hint::black_box(hash.verify(secret.as_bytes()));
        }
    }

    /// Whether an argon2id hash is configured (the decoy spends time).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn is_armed(&self) -> bool {
        self.0.is_some()
    }
}

/// Verifies secrets against [`SecretHash`]es, remembering successful
/// argon2 verifications for a short time (keyed by SHA-256 of identity,
/// secret and stored hash, so nothing reversible is kept).
pub struct SecretVerifier {
    ttl_ms: i64,
    verified: Mutex<BoundedCache<[u8; 32], ()>>,
}

impl SecretVerifier {
    pub fn new(ttl_ms: i64, cap: usize) -> Self {
        SecretVerifier {
            ttl_ms,
            verified: Mutex::new(BoundedCache::new(cap)),
        }
    }

    pub fn verify(&self, hash: &SecretHash, identity: &str, secret: &str, now_ms: i64) -> bool {
        let SecretHash::Argon2id(phc) = hash else {
            return hash.verify(secret.as_bytes());
        };
        if self.ttl_ms <= 0 {
            return hash.verify(secret.as_bytes());
        }
        let mut hasher = Sha256::new();
        for part in [identity.as_bytes(), secret.as_bytes(), phc.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        let key: [u8; 32] = hasher.finalize().into();
        if let Ok(mut cache) = self.verified.lock() {
            if cache.get(&key, now_ms).is_some() {
                return true;
            }
        }
        let ok = hash.verify(secret.as_bytes());
        if ok {
            if let Ok(mut cache) = self.verified.lock() {
                cache.insert(key, (), now_ms.saturating_add(self.ttl_ms));
            }
        }
        ok
    }

    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.verified.lock().map(|c| c.len()).unwrap_or(0)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, SaltString};

    pub fn sha256_ref(secret: &str) -> String {
        format!("sha256:{}", hex(&sha256(secret.as_bytes())))
    }

    pub fn argon2id_ref(secret: &str) -> String {
        // Cheap parameters keep the tests fast; production hashes come from
        // the host with its own parameters, carried in the PHC string.
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        argon
            .hash_password(secret.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    #[test]
    fn sha256_hashes_verify_and_reject() {
        let h = SecretHash::parse(&sha256_ref("s3cret")).unwrap();
        assert!(h.verify(b"s3cret"));
        assert!(!h.verify(b"s3cret "));
        assert!(SecretHash::parse("sha256:abc").is_err());
        assert!(SecretHash::parse(&format!("sha256:{}", "g".repeat(64))).is_err());
        assert!(SecretHash::parse("plain").is_err());
        assert_eq!(format!("{h:?}"), "SecretHash(**REDACTED**)");
    }

    #[test]
    fn argon2id_hashes_verify_and_successes_are_cached() {
        let h = SecretHash::parse(&argon2id_ref("pw")).unwrap();
        assert!(matches!(h, SecretHash::Argon2id(_)));
        let v = SecretVerifier::new(1000, 10);
        assert!(!v.verify(&h, "u", "nope", 0));
        assert_eq!(v.cached(), 0);
        assert!(v.verify(&h, "u", "pw", 0));
        assert_eq!(v.cached(), 1);
        assert!(v.verify(&h, "u", "pw", 500));
        assert!(!v.verify(&h, "u", "nope", 500));
        assert!(SecretHash::parse("$argon2id$garbage").is_err());
    }

    #[test]
    fn the_decoy_is_armed_only_by_argon2id_hashes() {
        let sha = SecretHash::parse(&sha256_ref("x")).unwrap();
        let argon = SecretHash::parse(&argon2id_ref("y")).unwrap();
        assert!(!DecoyHash::from_hashes([&sha].into_iter()).is_armed());
        assert!(DecoyHash::from_hashes([&sha, &argon].into_iter()).is_armed());
        DecoyHash::from_hashes(std::iter::empty()).spend("anything");
    }
}
