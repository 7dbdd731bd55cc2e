//! Stored secrets, one grammar for the whole project: `sha256:<64 hex>` for
//! high-entropy machine secrets and tokens, an argon2id PHC string for
//! human-chosen passwords. The host hashes plaintext from the config with
//! [`sha256_secret`] before any plugin sees it; authenticators verify with
//! [`SecretHash::verify`], in constant time.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::PasswordVerifier;
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// `sha256:<lowercase hex>` of a secret: the form stored in `*_hash` keys.
pub fn sha256_secret(secret: &str) -> String {
    format!("sha256:{}", hex(&sha256(secret.as_bytes())))
}

/// A stored secret hash (plaintext never reaches a plugin).
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
    /// Reads a stored hash; the error says what the form should be.
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

    /// Whether verifying costs real CPU time (argon2id).
    pub fn is_slow(&self) -> bool {
        matches!(self, SecretHash::Argon2id(_))
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
            _ => return Err("a `sha256:` hash needs exactly 64 hex digits".into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_secrets_round_trip_and_bad_forms_are_refused() {
        let stored = sha256_secret("abc");
        assert_eq!(
            stored,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let hash = SecretHash::parse(&stored).unwrap();
        assert!(hash.verify(b"abc"));
        assert!(!hash.verify(b"abd"));
        assert!(!hash.is_slow());
        for bad in [
            "sha256:abc",
            "hunter2",
            "$argon2id$",
            &stored[..70],
            "sha256:zz",
        ] {
            assert!(SecretHash::parse(bad).is_err(), "{bad}");
        }
        let upper = stored.to_uppercase().replace("SHA256:", "sha256:");
        assert!(SecretHash::parse(&upper).unwrap().verify(b"abc"));
    }

    #[test]
    fn hex_is_lower_case_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xf0, 0xff]), "000fa5f0ff");
        assert_eq!(hex(&[]), "");
        let stored = format!("sha256:{}", hex(&sha256(b"x")));
        assert_eq!(stored, sha256_secret("x"));
    }

    /// A PHC string of `password` with cheap parameters.
    fn argon2id(password: &str, salt: &str) -> String {
        use argon2::password_hash::PasswordHasher;
        let params = argon2::Params::new(8, 1, 1, None).unwrap();
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon
            .hash_password_with_salt(password.as_bytes(), salt.as_bytes())
            .unwrap()
            .to_string()
    }

    #[test]
    fn argon2id_hashes_verify_and_are_slow() {
        let phc = argon2id("hunter2", "c29tZXNhbHQ");
        let hash = SecretHash::parse(&phc).unwrap();
        assert!(hash.verify(b"hunter2"));
        assert!(!hash.verify(b"hunter3"));
        assert!(hash.is_slow());
        // Salt and hash are both required.
        let salt_only = phc.rsplit_once('$').unwrap().0;
        assert!(SecretHash::parse(salt_only).is_err(), "{salt_only}");
        assert!(SecretHash::parse("$argon2id$v=19$m=8,t=1,p=1").is_err());
        // A stored argon2i (not id) or garbage parameters are refused.
        assert!(SecretHash::parse(&phc.replace("$argon2id$", "$argon2i$")).is_err());
        assert!(SecretHash::parse(&phc.replace("m=8", "m=zz")).is_err());
    }

    #[test]
    fn debug_output_never_shows_the_hash() {
        let hash = SecretHash::parse(&sha256_secret("abc")).unwrap();
        assert_eq!(format!("{hash:?}"), "SecretHash(**REDACTED**)");
        let phc = argon2id("hunter2", "c29tZXNhbHQ");
        let text = format!("{:?}", SecretHash::parse(&phc).unwrap());
        assert_eq!(text, "SecretHash(**REDACTED**)");
    }
}
