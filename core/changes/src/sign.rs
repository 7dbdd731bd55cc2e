//! JWS compact serialisation (RFC 7515) of SETs, `typ: "secevent+jwt"`
//! (RFC 8417 §2.3): EdDSA (RFC 8037) with the instance's Ed25519 key,
//! `kid` = the RFC 7638 thumbprint of its public JWK, or HS256 with a
//! per-subscriber shared secret. Also the JWKS document for the public
//! keys, and the verification a receiver does (alg, typ, kid, signature;
//! the MAC compared in constant time).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{KeyInit, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// The JOSE `typ` of a SET.
pub const TYP: &str = "secevent+jwt";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7638 thumbprint of an Ed25519 public key: SHA-256 over
/// `{"crv":"Ed25519","kty":"OKP","x":"…"}` (required members, sorted, no
/// whitespace), Base64url.
pub fn thumbprint(key: &VerifyingKey) -> String {
    let canonical = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64(key.as_bytes())
    );
    b64(&Sha256::digest(canonical.as_bytes()))
}

/// The public JWK of `key`, with `kid`, `alg` and `use`.
pub fn jwk(key: &VerifyingKey) -> Value {
    json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64(key.as_bytes()),
        "kid": thumbprint(key),
        "alg": "EdDSA",
        "use": "sig",
    })
}

/// The JWKS document (RFC 7517 §5) a receiver fetches to verify EdDSA SETs.
pub fn jwks(keys: &[VerifyingKey]) -> Value {
    json!({ "keys": keys.iter().map(jwk).collect::<Vec<_>>() })
}

fn signing_input(header: &Value, claims: &Value) -> String {
    // Serialising a `Value` cannot fail.
    let header = serde_json::to_vec(header).unwrap_or_default();
    let claims = serde_json::to_vec(claims).unwrap_or_default();
    format!("{}.{}", b64(&header), b64(&claims))
}

/// Signs `claims` with EdDSA: `{"alg":"EdDSA","typ":"secevent+jwt","kid":<thumbprint>}`.
pub fn sign_eddsa(claims: &Value, key: &SigningKey) -> String {
    let header = json!({"alg": "EdDSA", "typ": TYP, "kid": thumbprint(&key.verifying_key())});
    let input = signing_input(&header, claims);
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64(&signature.to_bytes()))
}

fn hs256(secret: &[u8], input: &str) -> HmacSha256 {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(input.as_bytes());
    mac
}

/// Signs `claims` with HS256 and the subscriber's shared secret:
/// `{"alg":"HS256","typ":"secevent+jwt"}`.
pub fn sign_hs256(claims: &Value, secret: &[u8]) -> String {
    let header = json!({"alg": "HS256", "typ": TYP});
    let input = signing_input(&header, claims);
    let tag = hs256(secret, &input).finalize().into_bytes();
    format!("{input}.{}", b64(&tag))
}

/// Why a SET was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// Not three Base64url parts with a JSON header and payload.
    Malformed,
    /// `alg` is not the one expected.
    Alg(String),
    /// `typ` is not `secevent+jwt` (or `application/secevent+jwt`).
    Typ,
    /// No `kid`, or no key with that `kid` in the JWKS.
    UnknownKid,
    /// The signature does not verify.
    Signature,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyError::Malformed => f.write_str("not a compact JWS"),
            VerifyError::Alg(a) => write!(f, "unexpected alg {a:?}"),
            VerifyError::Typ => f.write_str("typ is not secevent+jwt"),
            VerifyError::UnknownKid => f.write_str("no key with this kid"),
            VerifyError::Signature => f.write_str("bad signature"),
        }
    }
}

impl std::error::Error for VerifyError {}

struct Parts<'a> {
    header: Value,
    input: &'a str,
    payload: Value,
    signature: Vec<u8>,
}

fn parse(token: &str) -> Result<Parts<'_>, VerifyError> {
    let (input, sig) = token.rsplit_once('.').ok_or(VerifyError::Malformed)?;
    let (h, p) = input.split_once('.').ok_or(VerifyError::Malformed)?;
    if p.contains('.') || h.is_empty() || p.is_empty() {
        return Err(VerifyError::Malformed);
    }
    let json = |part: &str| -> Result<Value, VerifyError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| VerifyError::Malformed)?;
        serde_json::from_slice(&bytes).map_err(|_| VerifyError::Malformed)
    };
    let header = json(h)?;
    let payload = json(p)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| VerifyError::Malformed)?;
    if !header.is_object() || !payload.is_object() {
        return Err(VerifyError::Malformed);
    }
    Ok(Parts {
        header,
        input,
        payload,
        signature,
    })
}

fn check_header(header: &Value, alg: &str) -> Result<(), VerifyError> {
    let got = header["alg"].as_str().unwrap_or_default();
    if got != alg {
        return Err(VerifyError::Alg(got.to_owned()));
    }
    let typ = header["typ"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if typ != TYP && typ != "application/secevent+jwt" {
        return Err(VerifyError::Typ);
    }
    // Extensions we would have to understand.
    if header.get("crit").is_some() {
        return Err(VerifyError::Malformed);
    }
    Ok(())
}

/// Verifies an EdDSA SET against a JWKS document: `alg` must be `EdDSA`,
/// `typ` `secevent+jwt`, `kid` must name an Ed25519 key of `jwks`, the
/// signature must verify (strictly). Returns the claims.
pub fn verify_eddsa(token: &str, jwks: &Value) -> Result<Value, VerifyError> {
    let parts = parse(token)?;
    check_header(&parts.header, "EdDSA")?;
    let kid = parts.header["kid"]
        .as_str()
        .ok_or(VerifyError::UnknownKid)?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| {
            keys.iter().find(|k| {
                k["kid"].as_str() == Some(kid) && k["kty"] == "OKP" && k["crv"] == "Ed25519"
            })
        })
        .ok_or(VerifyError::UnknownKid)?;
    let x = jwk["x"]
        .as_str()
        .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
        .and_then(|x| <[u8; 32]>::try_from(x).ok())
        .ok_or(VerifyError::UnknownKid)?;
    let key = VerifyingKey::from_bytes(&x).map_err(|_| VerifyError::UnknownKid)?;
    let signature = Signature::from_slice(&parts.signature).map_err(|_| VerifyError::Signature)?;
    key.verify_strict(parts.input.as_bytes(), &signature)
        .map_err(|_| VerifyError::Signature)?;
    Ok(parts.payload)
}

/// Verifies an HS256 SET with the shared secret: `alg` must be `HS256`,
/// `typ` `secevent+jwt`; the MAC is compared in constant time. Returns the
/// claims.
pub fn verify_hs256(token: &str, secret: &[u8]) -> Result<Value, VerifyError> {
    let parts = parse(token)?;
    check_header(&parts.header, "HS256")?;
    hs256(secret, parts.input)
        .verify_slice(&parts.signature)
        .map_err(|_| VerifyError::Signature)?;
    Ok(parts.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn thumbprint_matches_rfc_8037_appendix_a3() {
        // RFC 8037 A.3: the thumbprint of the A.2 public key.
        let x = URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(
            thumbprint(&key),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    #[test]
    fn eddsa_round_trip_and_header() {
        let claims = json!({"jti": "a-1", "txn": "1"});
        let token = sign_eddsa(&claims, &key());
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["typ"], "secevent+jwt");
        assert_eq!(header["kid"], thumbprint(&key().verifying_key()));
        let set = jwks(&[key().verifying_key()]);
        assert_eq!(set["keys"][0]["kid"], header["kid"]);
        assert_eq!(verify_eddsa(&token, &set).unwrap(), claims);
    }

    #[test]
    fn eddsa_refuses_tampering_and_other_keys() {
        let token = sign_eddsa(&json!({"txn": "1"}), &key());
        let set = jwks(&[key().verifying_key()]);
        let (h, rest) = token.split_once('.').unwrap();
        let (_, s) = rest.split_once('.').unwrap();
        let forged = format!("{h}.{}.{s}", b64(br#"{"txn":"2"}"#));
        assert_eq!(verify_eddsa(&forged, &set), Err(VerifyError::Signature));
        let other = jwks(&[SigningKey::from_bytes(&[8u8; 32]).verifying_key()]);
        assert_eq!(verify_eddsa(&token, &other), Err(VerifyError::UnknownKid));
        assert_eq!(verify_eddsa("a.b", &set), Err(VerifyError::Malformed));
        // An HS256 token is not accepted where EdDSA is expected.
        let hs = sign_hs256(&json!({"txn": "1"}), b"s");
        assert_eq!(
            verify_eddsa(&hs, &set),
            Err(VerifyError::Alg("HS256".into()))
        );
    }

    #[test]
    fn wrong_typ_is_refused() {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let input = signing_input(&header, &json!({}));
        let tag = hs256(b"s", &input).finalize().into_bytes();
        let token = format!("{input}.{}", b64(&tag));
        assert_eq!(verify_hs256(&token, b"s"), Err(VerifyError::Typ));
    }

    #[test]
    fn hs256_round_trip_and_tampering() {
        let claims = json!({"txn": "5"});
        let token = sign_hs256(&claims, b"shared-secret");
        assert_eq!(verify_hs256(&token, b"shared-secret").unwrap(), claims);
        assert_eq!(verify_hs256(&token, b"other"), Err(VerifyError::Signature));
        let (input, sig) = token.rsplit_once('.').unwrap();
        let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
        let bad = format!("{input}.{flipped}{}", &sig[1..]);
        assert_eq!(
            verify_hs256(&bad, b"shared-secret"),
            Err(VerifyError::Signature)
        );
        let set = jwks(&[key().verifying_key()]);
        assert_eq!(
            verify_eddsa(&token, &set),
            Err(VerifyError::Alg("HS256".into()))
        );
        let eddsa = sign_eddsa(&claims, &key());
        assert_eq!(
            verify_hs256(&eddsa, b"shared-secret"),
            Err(VerifyError::Alg("EdDSA".into()))
        );
    }
}
