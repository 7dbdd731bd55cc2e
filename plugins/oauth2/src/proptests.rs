//! Never-panic properties over generated inputs for everything here that
//! reads client bytes: JWS compact parsing and bearer/JWKS verification,
//! JWKS documents, the token endpoint's form and JSON bodies, Basic
//! headers, and the SDK's form decoding. Each property feeds arbitrary or
//! mutated valid inputs and checks that the function answers (Ok/Err)
//! without panicking, and that an authenticator never says Authenticated.
//!
//! 256 cases per property by default; `SCIMGATE_PROPTEST_CASES=100000`
//! runs a longer search.

use std::sync::OnceLock;

use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use scimgate_abi::sdk::{form_decode, percent_decode, Authenticator, Endpoint};
use scimgate_abi::std_types::ROption;
use scimgate_abi::{AuthOutcome, Caller, Principal, Request};
use serde_json::{json, Value};

use crate::bearer::tests::{bearer_in, mint_in};
use crate::bearer::Bearer;
use crate::client_credentials::ClientCredentials;
use crate::credentials::{basic_credentials, Params};
use crate::jwks::{parse_jwks, Jwks};
use crate::jwt::{b64url, decode_json, Compact};
use crate::secret::tests::sha256_ref;
use crate::testutil::{ctx, ctx_in, provider_record, request, temp_dir};
use crate::token::TokenEndpoint;

const NOW: i64 = 1_700_000_000_000;
const ISS: &str = "https://issuer.example.com";
const CLIENT_SECRET: &str = "6Qm1x0Jf3vZr9LkTq2Wc8yHn4BdPs7Ue";

/// Cases per property: `SCIMGATE_PROPTEST_CASES`, else 256.
fn cases() -> u32 {
    std::env::var("SCIMGATE_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(256)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn with_header(name: &str, value: &str) -> Request {
    request("GET", &[(name, value)], "", NOW)
}

fn is_authenticated(outcome: &AuthOutcome) -> bool {
    matches!(outcome, AuthOutcome::Authenticated(_))
}

/// A bearer stage and a valid token it accepts, built once.
fn bearer() -> &'static (Bearer, String) {
    static B: OnceLock<(Bearer, String)> = OnceLock::new();
    B.get_or_init(|| {
        let dir = temp_dir("prop-bearer");
        let token = mint_in(&dir, json!({}), NOW);
        (bearer_in(&dir, json!({})), token)
    })
}

fn jwks_key() -> SigningKey {
    SigningKey::from_bytes(&[9u8; 32])
}

/// A JWKS stage trusting one Ed25519 key of [`ISS`], and a valid token.
fn jwks() -> &'static (Jwks, String) {
    static J: OnceLock<(Jwks, String)> = OnceLock::new();
    J.get_or_init(|| {
        let dir = temp_dir("prop-jwks");
        let file = dir.join("jwks.json");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1",
            "x": b64url(jwks_key().verifying_key().as_bytes())});
        std::fs::write(&file, json!({ "keys": [jwk] }).to_string()).unwrap();
        let c = ctx(
            json!({}),
            vec![
                json!({"id": "ext", "auth": {"method": "jwks", "issuer": ISS,
                "audience": "scimgate", "jwks": file, "subject_claim": "sub"}}),
            ],
        );
        let stage = Jwks::build(c.deserialize().unwrap(), &c).unwrap();
        let claims = json!({"iss": ISS, "aud": "scimgate", "sub": "app",
            "exp": NOW / 1000 + 3600, "nbf": NOW / 1000 - 10});
        (
            stage,
            sign_ed25519(&json!({"alg": "EdDSA", "kid": "k1"}), &claims),
        )
    })
}

fn sign_ed25519(header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = jwks_key().sign(input.as_bytes()).to_bytes();
    format!("{input}.{}", b64url(&sig))
}

fn client_credentials() -> &'static ClientCredentials {
    static C: OnceLock<ClientCredentials> = OnceLock::new();
    C.get_or_init(|| {
        let c = ctx(
            json!({"max_failures": 0}),
            vec![
                json!({"id": "oim", "auth": {"method": "oauth2-client-credentials",
                "client_id": "oim", "client_secret_hash": sha256_ref(CLIENT_SECRET)}}),
            ],
        );
        ClientCredentials::build(c.deserialize().unwrap(), &c).unwrap()
    })
}

fn token_endpoint() -> &'static TokenEndpoint {
    static T: OnceLock<TokenEndpoint> = OnceLock::new();
    T.get_or_init(|| {
        let c = ctx_in(json!({}), vec![], temp_dir("prop-token"));
        TokenEndpoint::build(c.deserialize().unwrap(), &c).unwrap()
    })
}

/// `token` with the character at `at` replaced by a different one from the
/// Base64url alphabet or a dot.
fn mutate(token: &str, at: Index, with: Index) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
    let mut bytes = token.as_bytes().to_vec();
    let i = at.index(bytes.len());
    let mut c = ALPHABET[with.index(ALPHABET.len())];
    if c == bytes[i] {
        c = if c == b'A' { b'B' } else { b'A' };
    }
    bytes[i] = c;
    String::from_utf8(bytes).unwrap()
}

/// JSON values of a few levels, strings biased towards the names the
/// parsers look at.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "\\PC{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("client_credentials"),
            Just("client_id"),
            Just("oim"),
            Just("scope"),
            Just("RSA"),
            Just("EC"),
            Just("OKP"),
            Just("P-256"),
            Just("Ed25519"),
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            vec(
                (
                    prop_oneof![
                        Just("grant_type".to_string()),
                        Just("client_id".to_string()),
                        Just("client_secret".to_string()),
                        Just("scope".to_string()),
                        Just("keys".to_string()),
                        Just("kty".to_string()),
                        Just("crv".to_string()),
                        Just("x".to_string()),
                        Just("y".to_string()),
                        Just("n".to_string()),
                        Just("e".to_string()),
                        Just("use".to_string()),
                        "\\PC{0,8}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

/// One JWK-shaped object: known key types and curves with Base64url
/// members of plausible and implausible lengths.
fn arb_jwk() -> impl Strategy<Value = Value> {
    let b64 = prop_oneof![
        vec(any::<u8>(), 0..70).prop_map(|b| Value::from(b64url(&b))),
        "\\PC{0,20}".prop_map(Value::from),
        arb_json(),
    ];
    (
        prop_oneof![Just("RSA"), Just("EC"), Just("OKP"), Just("oct"), Just("")],
        prop_oneof![
            Just("P-256"),
            Just("P-384"),
            Just("Ed25519"),
            Just("X25519")
        ],
        prop_oneof![Just("sig"), Just("enc")],
        b64.clone(),
        b64.clone(),
        b64.clone(),
        b64,
    )
        .prop_map(|(kty, crv, use_, x, y, n, e)| {
            json!({"kty": kty, "crv": crv, "use": use_, "x": x, "y": y, "n": n, "e": e, "kid": "k"})
        })
}

fn content_type() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("application/json".to_string()),
        Just("application/x-www-form-urlencoded".to_string()),
        "\\PC{0,30}",
    ]
}

/// Bodies: arbitrary bytes, arbitrary text, generated JSON, or form text
/// built from the token request's own parameter names.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..200),
        "\\PC{0,200}".prop_map(String::into_bytes),
        arb_json().prop_map(|v| v.to_string().into_bytes()),
        vec(
            (
                prop_oneof![
                    Just("grant_type"),
                    Just("client_id"),
                    Just("client_secret"),
                    Just("scope"),
                    Just("%"),
                    Just("")
                ],
                "[%+=&a-z0-9:_ ]{0,16}"
            ),
            0..6
        )
        .prop_map(|pairs| {
            pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes()
        }),
    ]
}

fn raw_request(method: &str, headers: &[(String, String)], body: &[u8]) -> Request {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut req = request(method, &pairs, "", NOW);
    req.body = body.to_vec().into();
    req
}

/// `Authorization` values: arbitrary, or Basic/Bearer with arbitrary or
/// Base64 payloads.
fn authorization() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,80}",
        vec(any::<u8>(), 0..80).prop_map(|b| format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )),
        "\\PC{0,40}".prop_map(|t| format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(t)
        )),
        "[A-Za-z0-9+/=%!]{0,60}".prop_map(|t| format!("basic {t}")),
        "[A-Za-z0-9_.-]{0,120}".prop_map(|t| format!("Bearer {t}")),
    ]
}

#[test]
fn the_valid_inputs_the_properties_mutate_are_accepted() {
    let (stage, token) = bearer();
    assert!(is_authenticated(&stage.authenticate(&with_header(
        "authorization",
        &format!("Bearer {token}")
    ))));
    let (stage, token) = jwks();
    assert!(is_authenticated(&stage.authenticate(&with_header(
        "authorization",
        &format!("Bearer {token}")
    ))));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("oim:{CLIENT_SECRET}"))
    );
    let req = raw_request(
        "POST",
        &[("authorization".into(), basic)],
        b"grant_type=client_credentials",
    );
    assert!(is_authenticated(&client_credentials().authenticate(&req)));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn compact_jws_parsing_never_panics(text in "\\PC{0,200}", bytes in vec(any::<u8>(), 0..120)) {
        let _ = Compact::parse(&text);
        let _ = decode_json::<Value>(&text);
        let lossy = String::from_utf8_lossy(&bytes);
        if let Some(c) = Compact::parse(&lossy) {
            let _ = c.claims::<Value>();
        }
    }

    #[test]
    fn jws_shaped_tokens_with_arbitrary_parts_never_panic(
        header in prop_oneof![arb_json().prop_map(|v| v.to_string().into_bytes()), vec(any::<u8>(), 0..60)],
        payload in prop_oneof![arb_json().prop_map(|v| v.to_string().into_bytes()), vec(any::<u8>(), 0..60)],
        signature in vec(any::<u8>(), 0..80),
    ) {
        let token = format!("{}.{}.{}", b64url(&header), b64url(&payload), b64url(&signature));
        if let Some(c) = Compact::parse(&token) {
            let _ = c.claims::<Value>();
        }
        let req = with_header("authorization", &format!("Bearer {token}"));
        prop_assert!(!is_authenticated(&bearer().0.authenticate(&req)));
        prop_assert!(!is_authenticated(&jwks().0.authenticate(&req)));
    }

    #[test]
    fn mutated_bearer_tokens_never_authenticate(at in any::<Index>(), with in any::<Index>()) {
        let (stage, token) = bearer();
        let forged = mutate(token, at, with);
        let req = with_header("authorization", &format!("Bearer {forged}"));
        prop_assert!(!is_authenticated(&stage.authenticate(&req)), "{}", forged);
    }

    #[test]
    fn mutated_jwks_tokens_never_authenticate(at in any::<Index>(), with in any::<Index>()) {
        let (stage, token) = jwks();
        let forged = mutate(token, at, with);
        let req = with_header("authorization", &format!("Bearer {forged}"));
        prop_assert!(!is_authenticated(&stage.authenticate(&req)), "{}", forged);
    }

    #[test]
    fn authenticators_never_accept_arbitrary_authorization(value in authorization()) {
        let req = with_header("authorization", &value);
        prop_assert!(!is_authenticated(&bearer().0.authenticate(&req)));
        prop_assert!(!is_authenticated(&jwks().0.authenticate(&req)));
        prop_assert!(!is_authenticated(&client_credentials().authenticate(&req)));
    }

    #[test]
    fn jwks_documents_never_panic(bytes in vec(any::<u8>(), 0..400), doc in arb_json(),
                                  keys in vec(arb_jwk(), 0..5)) {
        let _ = parse_jwks(&bytes);
        let _ = parse_jwks(doc.to_string().as_bytes());
        let parsed = parse_jwks(json!({ "keys": keys }).to_string().as_bytes());
        prop_assert!(parsed.is_ok());
        prop_assert!(parsed.unwrap().len() <= keys.len());
    }

    #[test]
    fn basic_headers_never_panic(value in authorization()) {
        let req = with_header("authorization", &value);
        if let Some(Ok((user, password))) = basic_credentials(&req) {
            // A decoded pair is exactly what was encoded around the first colon.
            let encoded = value.split_once(' ').map(|(_, b)| b.trim()).unwrap_or("");
            let raw = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
                .unwrap();
            prop_assert_eq!(format!("{user}:{password}").into_bytes(), raw);
            prop_assert!(!user.contains(':'));
        }
    }

    #[test]
    fn token_request_bodies_never_panic(ct in content_type(), body in body(), auth in authorization()) {
        let headers = vec![("content-type".to_string(), ct.clone()), ("authorization".to_string(), auth)];
        let req = raw_request("POST", &headers, &body);
        if let Ok(params) = Params::from_body(&req) {
            for name in ["grant_type", "client_id", "client_secret", "scope"] {
                let _ = params.get(name);
            }
        }
        prop_assert!(!is_authenticated(&client_credentials().authenticate(&req)));
        // The endpoint itself, behind an authenticated client.
        let principal = {
            let mut p = Principal::new("oim", "oim", "oauth2-client-credentials");
            p.scopes = vec!["scim:read".into()].into();
            p
        };
        let provider = provider_record("oim", &["scim:read"]);
        let caller = Caller { principal: ROption::RSome(&principal), provider: ROption::RSome(&provider) };
        if let Ok(response) = token_endpoint().handle(&req, caller) {
            prop_assert_eq!(response.status, 200);
            let params = Params::from_body(&req).unwrap();
            prop_assert_eq!(params.get("grant_type").unwrap(), Some("client_credentials"));
        }
    }

    #[test]
    fn form_decoding_never_panics_and_round_trips(text in "\\PC{0,200}", bytes in vec(any::<u8>(), 0..100),
                                                  key in "\\PC{1,20}", value in "\\PC{0,20}") {
        let _ = form_decode(&text);
        let _ = percent_decode(&text, false);
        let _ = form_decode(&String::from_utf8_lossy(&bytes));
        // Percent-encoding every byte decodes back to the original pair.
        let enc = |s: &str| s.bytes().map(|b| format!("%{b:02X}")).collect::<String>();
        let pairs = form_decode(&format!("{}={}", enc(&key), enc(&value)));
        prop_assert_eq!(pairs, vec![(key.clone(), value.clone())]);
    }
}
