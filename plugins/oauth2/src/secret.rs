//! Stored secret hashes (`sha256:<hex>` and `$argon2id$…`), verified in
//! constant time, with a small cache of successful argon2 verifications so
//! that a client repeating the same credentials pays the argon2 cost once.

use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::cache::BoundedCache;

// One grammar and one verifier for stored secrets, shared with the host.
pub use scimgate_abi::secret::{hex, sha256, SecretHash};

/// Makes refusing an unknown identity cost what checking a known one costs,
/// so response times do not tell which usernames or client ids exist: holds
/// one of the configured argon2id hashes (when there is one) and verifies the
/// presented secret against it, discarding the answer. With only `sha256:`
/// hashes every check is already cheap and constant-time, and it does nothing.
pub struct DecoyHash(Option<SecretHash>, std::sync::atomic::AtomicU64);

impl DecoyHash {
    pub fn from_hashes<'a>(mut hashes: impl Iterator<Item = &'a SecretHash>) -> DecoyHash {
        DecoyHash(
            hashes
                .find(|h| matches!(h, SecretHash::Argon2id(_)))
                .cloned(),
            Default::default(),
        )
    }

    /// Spends the time of one argon2id verification (if any are configured).
    pub fn spend(&self, secret: &str) {
        if let Some(hash) = &self.0 {
            let _ = std::hint::black_box(hash.verify(secret.as_bytes()));
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How many argon2id verifications the decoy has run (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn spent(&self) -> u64 {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Whether [`SecretVerifier::verify`] of these would run argon2 (a
    /// slow hash not remembered as verified): the caller should not be on
    /// an async worker then.
    pub fn would_hash(&self, hash: &SecretHash, identity: &str, secret: &str, now_ms: i64) -> bool {
        let SecretHash::Argon2id(phc) = hash else {
            return false;
        };
        if self.ttl_ms <= 0 {
            return true;
        }
        let key = cache_key(identity, secret, phc);
        match self.verified.lock() {
            Ok(mut cache) => cache.get(&key, now_ms).is_none(),
            Err(_) => true,
        }
    }

    pub fn verify(&self, hash: &SecretHash, identity: &str, secret: &str, now_ms: i64) -> bool {
        let SecretHash::Argon2id(phc) = hash else {
            return hash.verify(secret.as_bytes());
        };
        if self.ttl_ms <= 0 {
            return hash.verify(secret.as_bytes());
        }
        let key = cache_key(identity, secret, phc);
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

/// The verified-secret cache's key: SHA-256 over identity, secret and
/// stored hash, each length-prefixed.
fn cache_key(identity: &str, secret: &str, phc: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in [identity.as_bytes(), secret.as_bytes(), phc.as_bytes()] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use argon2::password_hash::PasswordHasher;

    pub fn sha256_ref(secret: &str) -> String {
        format!("sha256:{}", hex(&sha256(secret.as_bytes())))
    }

    pub fn argon2id_ref(secret: &str) -> String {
        // Cheap parameters keep the tests fast; production hashes come from
        // the host with its own parameters, carried in the PHC string.
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon
            .hash_password_with_salt(secret.as_bytes(), b"0123456789abcdef")
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
