//! Signatures as a receiver sees them: the SETs POSTed to a real receiver
//! verify against the JWKS (EdDSA) or the shared secret (HS256), and fail
//! once tampered with.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use ed25519_dalek::SigningKey;
use scimgate_changes::sign::{jwks, thumbprint, verify_eddsa, verify_hs256, VerifyError};
use scimgate_changes::{Op, SignatureKind, StepOutcome};

const T0: i64 = 1_700_000_000_000;

/// Replaces the payload with a modified one, keeping header and signature.
fn tamper(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = claims_of(token);
    claims["sub_id"]["uri"] = "/Users/someone-else".into();
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[test]
fn eddsa_sets_verify_against_the_jwks_and_fail_when_tampered() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Replace));
    let d = deliverer(subscriber(&rx.url), "n1", &log, store, &clock);
    assert!(matches!(
        d.step(T0),
        StepOutcome::Delivered { count: 1, .. }
    ));
    let token = rx.requests()[0].body.clone();
    // What the JWKS route publishes: the current key and an older one.
    let old = SigningKey::from_bytes(&[1u8; 32]).verifying_key();
    let published = jwks(&[old, key().verifying_key()]);
    assert_eq!(
        published["keys"][1]["kid"],
        thumbprint(&key().verifying_key())
    );
    let claims = verify_eddsa(&token, &published).unwrap();
    assert_eq!(
        claims["events"]["urn:ietf:params:scim:event:prov:put:notice"]["attributes"],
        serde_json::json!(["userName"])
    );
    assert_eq!(
        verify_eddsa(&tamper(&token), &published),
        Err(VerifyError::Signature)
    );
    // Signed by a key that is not published.
    assert_eq!(
        verify_eddsa(&token, &jwks(&[old])),
        Err(VerifyError::UnknownKid)
    );
}

#[test]
fn hmac_sets_verify_with_the_secret_and_fail_when_tampered() {
    let rx = Receiver::start();
    let (log, store) = memory();
    let clock = ManualClock::at(T0);
    log.append(change("a", Op::Create));
    let secret = b"0123456789abcdef0123456789abcdef".to_vec();
    let mut sub = subscriber(&rx.url);
    sub.signature = SignatureKind::Hmac {
        secret: secret.clone(),
    };
    let d = deliverer(sub, "n1", &log, store, &clock);
    assert!(matches!(
        d.step(T0),
        StepOutcome::Delivered { count: 1, .. }
    ));
    let token = rx.requests()[0].body.clone();
    let claims = verify_hs256(&token, &secret).unwrap();
    assert_eq!(claims["txn"], "1");
    assert_eq!(
        verify_hs256(&tamper(&token), &secret),
        Err(VerifyError::Signature)
    );
    assert_eq!(
        verify_hs256(&token, b"another-secret-another-secret-xx"),
        Err(VerifyError::Signature)
    );
    // Not an EdDSA token: a JWKS verifier refuses it on alg.
    let published = jwks(&[key().verifying_key()]);
    assert_eq!(
        verify_eddsa(&token, &published),
        Err(VerifyError::Alg("HS256".into()))
    );
}
