//! The few pieces of JWS compact serialization (RFC 7515) this library
//! needs: split and decode, and sign with Ed25519 (RFC 8037 `EdDSA`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A compact JWS split into its parts (nothing verified yet).
pub struct Compact<'a> {
    pub header: Header,
    pub payload_b64: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// The JOSE header fields we look at.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub kid: Option<String>,
    /// Extensions we would have to understand: their presence is refused.
    #[serde(default)]
    pub crit: Option<Value>,
}

impl<'a> Compact<'a> {
    /// Splits `token` into three Base64url parts and decodes the header and
    /// signature. `None` when it is not a compact JWS.
    pub fn parse(token: &'a str) -> Option<Compact<'a>> {
        let (signing_input, signature_b64) = token.rsplit_once('.')?;
        let (header_b64, payload_b64) = signing_input.split_once('.')?;
        if payload_b64.contains('.') || header_b64.is_empty() || payload_b64.is_empty() {
            return None;
        }
        let header: Header = decode_json(header_b64)?;
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).ok()?;
        Some(Compact {
            header,
            payload_b64,
            signing_input,
            signature,
        })
    }

    pub fn claims<T: DeserializeOwned>(&self) -> Option<T> {
        decode_json(self.payload_b64)
    }
}

/// Base64url-decodes and parses one JSON part.
pub fn decode_json<T: DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs `claims` as an RFC 9068 access token: `{"alg":"EdDSA","typ":"at+jwt","kid":…}`.
pub fn sign_eddsa<C: Serialize>(claims: &C, kid: &str, key: &SigningKey) -> Result<String, String> {
    let header = serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
    let header = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let payload = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
    let mut token = String::with_capacity(header.len() * 2 + payload.len() * 2 + 100);
    token.push_str(&b64url(&header));
    token.push('.');
    token.push_str(&b64url(&payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64url(&signature.to_bytes()));
    Ok(token)
}

/// `aud` may be one string or an array of strings (RFC 7519 §4.1.3).
pub fn audience_contains(aud: &Value, expected: &str) -> bool {
    match aud {
        Value::String(s) => s == expected,
        Value::Array(items) => items.iter().any(|v| v.as_str() == Some(expected)),
        _ => false,
    }
}

/// `typ` of an access token: `at+jwt`, or the full `application/at+jwt`.
pub fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == "at+jwt" || t == "application/at+jwt"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_parse_round_trips() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let token = sign_eddsa(&serde_json::json!({"sub": "x"}), "k1", &key).unwrap();
        let c = Compact::parse(&token).unwrap();
        assert_eq!(c.header.alg, "EdDSA");
        assert_eq!(c.header.kid.as_deref(), Some("k1"));
        assert!(is_access_token_type(c.header.typ.as_deref()));
        let claims: Value = c.claims().unwrap();
        assert_eq!(claims["sub"], "x");
        assert_eq!(c.signature.len(), 64);
        assert!(Compact::parse("a.b").is_none());
        assert!(Compact::parse("a.b.c.d").is_none());
        assert!(Compact::parse("..").is_none());
    }

    #[test]
    fn a_compact_jws_has_exactly_three_non_empty_leading_parts() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let token = sign_eddsa(&serde_json::json!({"sub": "x"}), "k1", &key).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let (h, p, s) = (parts[0], parts[1], parts[2]);
        assert!(Compact::parse(&format!("{h}.{p}.{s}")).is_some());
        // A well-formed header does not make four parts acceptable.
        assert!(Compact::parse(&format!("{h}.{p}.{p}.{s}")).is_none());
        assert!(Compact::parse(&format!("{h}..{s}")).is_none());
        assert!(Compact::parse(&format!(".{p}.{s}")).is_none());
        assert!(Compact::parse(&format!("{h}.{p}.!!")).is_none());
        // An empty signature part parses (and then fails verification).
        assert!(Compact::parse(&format!("{h}.{p}.")).is_some_and(|c| c.signature.is_empty()));
        assert!(is_access_token_type(Some("application/AT+JWT")));
        assert!(!is_access_token_type(Some("JWT")));
        assert!(!is_access_token_type(None));
    }

    #[test]
    fn audience_forms() {
        assert!(audience_contains(&serde_json::json!("a"), "a"));
        assert!(audience_contains(&serde_json::json!(["b", "a"]), "a"));
        assert!(!audience_contains(&serde_json::json!(["b"]), "a"));
        assert!(!audience_contains(&Value::Null, "a"));
    }
}
