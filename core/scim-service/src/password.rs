//! `password` is never stored in clear. Every write of a resource passes
//! [`protect`] (called from the one place that stores resources,
//! `resources::store_in`, which POST, PUT, PATCH, `/Me` and every Bulk
//! operation go through), which applies the stage's `password_storage`:
//! a one-way argon2id PHC string, nothing at all, or a 400. The stores hash
//! clear values left by older builds when they open ([`hash_if_clear`]).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::PasswordHasher;
use argon2::Argon2;
use scimgate_abi::PluginError;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::errors::invalid_value;

/// The attribute this module guards (RFC 7643 §4.1.1, a top-level member).
pub const PASSWORD: &str = "password";

/// What a write does with a `password` the client sends.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordStorage {
    /// Store an argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`);
    /// a value that already is one is stored as is.
    #[default]
    Hash,
    /// Store nothing: the value is silently ignored.
    Drop,
    /// Answer 400 `invalidValue`.
    Refuse,
    /// Hand the clear value to the backend, which stores it the way the
    /// target system expects (the LDAP backend: the Password Modify
    /// extended operation, RFC 3062, so the directory hashes it with its
    /// own scheme). Only for backends that declare
    /// `Backend::stores_passwords`; with any other backend the engine
    /// hashes as with [`PasswordStorage::Hash`].
    Backend,
}

/// Whether `text` is a well-formed argon2id PHC string (with salt and hash).
pub fn is_argon2id_phc(text: &str) -> bool {
    if !text.starts_with("$argon2id$") {
        return false;
    }
    match PasswordHash::new(text) {
        Ok(parsed) => {
            parsed.salt.is_some()
                && parsed.hash.is_some()
                && argon2::Params::try_from(&parsed).is_ok()
        }
        Err(_) => false,
    }
}

/// The argon2id PHC string of `clear`, with a fresh 16-byte salt and the
/// OWASP minimum parameters (m = 19 MiB, t = 2, p = 1: argon2's defaults).
pub fn hash(clear: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    Argon2::default()
        .hash_password_with_salt(clear.as_bytes(), &salt)
        .map(|phc| phc.to_string())
        .map_err(|e| format!("argon2id hashing failed: {e}"))
}

/// For the stores' startup pass: the PHC string to store instead of a
/// clear `password` member of `body`, or `None` when there is nothing to do.
pub fn hash_if_clear(body: &Value) -> Result<Option<String>, String> {
    match body.get(PASSWORD) {
        Some(Value::String(text)) if !is_argon2id_phc(text) => hash(text).map(Some),
        _ => Ok(None),
    }
}

/// Applies `storage` to the `password` member of a resource about to be
/// stored. `previous` is the stored body it replaces (PUT, PATCH): a value
/// equal to the stored one is left alone, so writes that do not touch the
/// password (and `refuse` mode) keep working on resources that have one.
pub fn protect(
    storage: PasswordStorage,
    body: &mut Map<String, Value>,
    previous: Option<&Value>,
) -> Result<(), PluginError> {
    let stored = previous.and_then(|old| old.get(PASSWORD));
    let spelled: Vec<String> = body
        .keys()
        .filter(|key| key.eq_ignore_ascii_case(PASSWORD) && key.as_str() != PASSWORD)
        .cloned()
        .collect();
    for key in spelled {
        if let Some(value) = body.remove(&key) {
            body.insert(PASSWORD.to_string(), value);
        }
    }
    let Some(sent) = body.get(PASSWORD) else {
        return Ok(());
    };
    if sent.is_null() {
        body.remove(PASSWORD);
        return Ok(());
    }
    if Some(sent) == stored {
        return Ok(());
    }
    match storage {
        PasswordStorage::Refuse => Err(invalid_value(
            "this server does not accept passwords (password_storage = \"refuse\")",
        )),
        PasswordStorage::Drop => {
            match stored {
                Some(old) => body.insert(PASSWORD.to_string(), old.clone()),
                None => body.remove(PASSWORD),
            };
            Ok(())
        }
        PasswordStorage::Backend => match sent {
            Value::String(_) => Ok(()),
            _ => Err(invalid_value("'password' must be a string")),
        },
        PasswordStorage::Hash => {
            let Value::String(clear) = sent else {
                return Err(invalid_value("'password' must be a string"));
            };
            if !is_argon2id_phc(clear) {
                let phc = hash(clear).map_err(PluginError::internal)?;
                body.insert(PASSWORD.to_string(), Value::String(phc));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("an object literal"),
        }
    }

    #[test]
    fn hash_mode_stores_a_verifiable_argon2id_phc_string_once() {
        let mut body = object(json!({"userName": "a", "password": "correct horse"}));
        protect(PasswordStorage::Hash, &mut body, None).expect("hashed");
        let phc = body["password"].as_str().expect("a string").to_string();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        let parsed = PasswordHash::new(&phc).expect("PHC");
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        // Idempotent: a PHC string is stored as is.
        let mut again = object(json!({"password": phc.clone()}));
        protect(PasswordStorage::Hash, &mut again, None).expect("kept");
        assert_eq!(again["password"], json!(phc));
        // Unchanged on a later write, even in refuse mode.
        let previous = json!({"password": phc.clone()});
        let mut later = object(json!({"userName": "b", "password": phc.clone()}));
        protect(PasswordStorage::Refuse, &mut later, Some(&previous)).expect("unchanged");
        assert_eq!(later["password"], json!(phc));
        // A malformed "PHC" is hashed like any other text.
        let mut fake = object(json!({"password": "$argon2id$not-really"}));
        protect(PasswordStorage::Hash, &mut fake, None).expect("hashed");
        assert_ne!(fake["password"], json!("$argon2id$not-really"));
        assert!(is_argon2id_phc(
            fake["password"].as_str().unwrap_or_default()
        ));
    }

    #[test]
    fn drop_and_refuse_modes() {
        let mut body = object(json!({"userName": "a", "password": "pw"}));
        protect(PasswordStorage::Drop, &mut body, None).expect("dropped");
        assert!(!body.contains_key("password"));
        let previous = json!({"password": "$argon2id$old"});
        let mut body = object(json!({"password": "new"}));
        protect(PasswordStorage::Drop, &mut body, Some(&previous)).expect("ignored");
        assert_eq!(body["password"], json!("$argon2id$old"));

        let mut body = object(json!({"password": "pw"}));
        let error = protect(PasswordStorage::Refuse, &mut body, None).expect_err("refused");
        assert_eq!((error.status, error.code()), (400, Some("invalidValue")));
        let mut body = object(json!({"userName": "no password"}));
        protect(PasswordStorage::Refuse, &mut body, None).expect("nothing to refuse");
    }

    #[test]
    fn startup_pass_hashes_only_clear_values() {
        assert_eq!(hash_if_clear(&json!({"userName": "a"})), Ok(None));
        let phc = hash("x").expect("hash");
        assert_eq!(hash_if_clear(&json!({"password": phc})), Ok(None));
        let fresh = hash_if_clear(&json!({"password": "clear"}))
            .expect("hash")
            .expect("something to do");
        assert!(is_argon2id_phc(&fresh));
    }
}
