//! Unit tests of `tls/client-cert`: what a request with (or without) the
//! host's `tls.client_cert.*` attributes gets, how fingerprints and
//! subjectAltNames are read, and the configuration errors.

use super::*;
use scimgate_abi::testing::{self, provider, Pipeline, ProviderSpec};
use scimgate_abi::Header;
use serde_json::json;

const FP_A: &str = "3b5d2f0a9c1e4b7d8f6a0c2e4b6d8f0a1c3e5b7d9f1a3c5e7b9d1f3a5c7e9b1d";
const FP_B: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const FP_UNKNOWN: &str = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";

fn component() -> Component {
    components().remove(0)
}

fn cert_provider(id: &str) -> ProviderSpec {
    provider(id).method(METHOD).without_client_id()
}

/// A request as the host passes it for a verified client certificate.
fn with_cert(fingerprint: &str, sans: &[&str]) -> Request {
    let mut req = Request::new("GET", "/Users");
    req.attributes.push(Header::new("tls.version", "TLSv1.3"));
    req.attributes.push(Header::new(ATTR_SHA256, fingerprint));
    req.attributes
        .push(Header::new("tls.client_cert.subject", "CN=oim,O=Example"));
    for san in sans {
        req.attributes.push(Header::new(ATTR_SAN, *san));
    }
    req.attributes
        .push(Header::new("tls.client_cert.not_after", "1830297599"));
    req
}

fn authenticator(providers: &[ProviderSpec]) -> ClientCert {
    let ctx = testing::create_context("mtls", json!({}), providers);
    ClientCert::build(ClientCertConfig::default(), &ctx).expect("built")
}

fn who(outcome: AuthOutcome) -> (String, String, Vec<String>) {
    match outcome {
        AuthOutcome::Authenticated(p) => {
            assert_eq!(p.auth_method.as_str(), METHOD);
            (
                p.provider_id.to_string(),
                p.client_id.to_string(),
                p.scopes.iter().map(|s| s.to_string()).collect(),
            )
        }
        other => panic!("not authenticated: {other:?}"),
    }
}

fn rejected(outcome: AuthOutcome) -> PluginError {
    match outcome {
        AuthOutcome::Rejected(e) => e,
        other => panic!("not rejected: {other:?}"),
    }
}

fn sample() -> ClientCert {
    authenticator(&[
        cert_provider("oim")
            .auth_key(KEY_SHA256, json!([FP_A.to_uppercase()]))
            .scopes(["scim:read"]),
        cert_provider("okta").auth_key(KEY_SAN, json!(["DNS:Okta.Example.COM", "ip:2001:db8::1"])),
        cert_provider("both")
            .auth_key(KEY_SHA256, FP_B)
            .auth_key(KEY_SAN, "uri:spiffe://example.org/iga"),
        // Another method's provider with the same fingerprint: not ours.
        provider("bearer-one").auth_key(KEY_SHA256, FP_UNKNOWN),
    ])
}

#[test]
fn without_client_certificate_attributes_the_request_is_passed_on() {
    let auth = sample();
    assert!(matches!(
        auth.authenticate(&Request::new("GET", "/Users")),
        AuthOutcome::NotMine
    ));
    let mut tls_only = Request::new("GET", "/Users").with_header("authorization", "Bearer x");
    tls_only
        .attributes
        .push(Header::new("tls.version", "TLSv1.3"));
    assert!(matches!(auth.authenticate(&tls_only), AuthOutcome::NotMine));
}

#[test]
fn a_registered_fingerprint_names_its_provider_with_its_scopes() {
    let (provider, client_id, scopes) = who(sample().authenticate(&with_cert(FP_A, &[])));
    assert_eq!(provider, "oim");
    assert_eq!(client_id, FP_A);
    assert_eq!(scopes, ["scim:read"]);
}

#[test]
fn an_unregistered_certificate_is_refused_with_401() {
    let auth = sample();
    // Only another method's provider lists this fingerprint.
    let e = rejected(auth.authenticate(&with_cert(FP_UNKNOWN, &["dns:other.example.com"])));
    assert_eq!(e.status, 401);
    assert_eq!(e.message.as_str(), "client certificate not registered");
    // A certificate without a usable fingerprint and no SAN is no one.
    let mut odd = Request::new("GET", "/Users");
    odd.attributes
        .push(Header::new("tls.client_cert.subject", "CN=x"));
    assert_eq!(rejected(auth.authenticate(&odd)).status, 401);
}

#[test]
fn fingerprints_are_read_in_every_usual_spelling() {
    let colons = FP_A
        .as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap().to_uppercase())
        .collect::<Vec<_>>()
        .join(":");
    for spelling in [
        FP_A.to_string(),
        FP_A.to_uppercase(),
        colons.clone(),
        colons.to_lowercase(),
        format!("sha256 Fingerprint={colons}"),
        format!("SHA256 Fingerprint={colons}"),
        format!("  {FP_A}\n"),
    ] {
        assert_eq!(
            normalise_fingerprint(&spelling).as_deref(),
            Ok(FP_A),
            "{spelling}"
        );
    }
    for wrong in [
        "",
        &FP_A[..62],               // 31 bytes
        &format!("{FP_A}00"),      // 33 bytes
        &FP_A.replace('3', "g"),   // not hex
        &colons[1..],              // a pair cut in half
        &format!("{}:", &colons),  // an empty pair
        &colons.replace(':', "-"), // other separators
        &format!("sha1 Digest={colons}"),
    ] {
        let err = normalise_fingerprint(wrong).unwrap_err();
        assert!(err.contains("not a SHA-256 fingerprint"), "{wrong}: {err}");
    }
    // The provider's own spelling and the host's lowercase hex meet.
    let auth = authenticator(&[cert_provider("p").auth_key(KEY_SHA256, colons)]);
    assert_eq!(who(auth.authenticate(&with_cert(FP_A, &[]))).0, "p");
}

#[test]
fn subject_alt_names_match_exactly_and_dns_names_in_any_case() {
    let auth = sample();
    let (provider, client_id, scopes) = who(auth.authenticate(&with_cert(
        FP_UNKNOWN,
        &["email:a@b.c", "dns:okta.EXAMPLE.com"],
    )));
    assert_eq!(provider, "okta");
    assert_eq!(client_id, "dns:okta.example.com");
    assert!(scopes.is_empty());
    // IP addresses compare as addresses, not as text.
    let (provider, client_id, _) =
        who(auth.authenticate(&with_cert(FP_UNKNOWN, &["ip:2001:0db8:0:0::1"])));
    assert_eq!(
        (provider.as_str(), client_id.as_str()),
        ("okta", "ip:2001:db8::1")
    );
    assert_eq!(
        who(auth.authenticate(&with_cert(FP_UNKNOWN, &["uri:spiffe://example.org/iga"]))).0,
        "both"
    );
    // URIs match exactly: case, a suffix or another kind are not the same name.
    for near in [
        "uri:SPIFFE://example.org/IGA",
        "uri:spiffe://example.org/iga/x",
        "dns:okta.example.com.evil",
        "email:okta.example.com",
        "dns:spiffe://example.org/iga",
    ] {
        let e = rejected(auth.authenticate(&with_cert(FP_UNKNOWN, &[near])));
        assert_eq!(e.status, 401, "{near}");
    }
    assert_eq!(
        normalise_san("Email:Ops@Example.com").unwrap(),
        "email:Ops@Example.com"
    );
    for wrong in [
        "okta.example.com",
        "dns:",
        "dns:a b",
        "ip:10.0.0.300",
        "x500:CN=a",
    ] {
        assert!(normalise_san(wrong).is_err(), "{wrong}");
    }
}

#[test]
fn the_fingerprint_wins_over_subject_alt_names() {
    // FP_A is `oim`'s; the SAN is `okta`'s.
    let (provider, client_id, _) =
        who(sample().authenticate(&with_cert(FP_A, &["dns:okta.example.com"])));
    assert_eq!((provider.as_str(), client_id.as_str()), ("oim", FP_A));
}

#[test]
fn subject_alt_names_of_two_providers_are_refused() {
    let auth = sample();
    let e = rejected(auth.authenticate(&with_cert(
        FP_UNKNOWN,
        &["dns:okta.example.com", "uri:spiffe://example.org/iga"],
    )));
    assert_eq!(e.status, 401);
    assert_eq!(
        e.message.as_str(),
        "client certificate matches more than one provider"
    );
    // Two SANs of one provider are one match.
    let (provider, _, _) = who(auth.authenticate(&with_cert(
        FP_UNKNOWN,
        &["dns:okta.example.com", "ip:2001:db8::1"],
    )));
    assert_eq!(provider, "okta");
}

#[test]
fn a_certificate_claimed_by_two_providers_is_a_config_error() {
    let providers = [
        cert_provider("a").auth_key(KEY_SHA256, FP_A),
        cert_provider("b").auth_key(KEY_SHA256, FP_A.to_uppercase()),
        cert_provider("c").auth_key(KEY_SAN, json!(["dns:iga.example.com", "dns:x.example.com"])),
        cert_provider("d").auth_key(KEY_SAN, "DNS:IGA.example.com"),
        // One provider naming its own certificate twice is no conflict.
        cert_provider("e").auth_key(
            KEY_SAN,
            json!(["email:e@example.com", "email:e@example.com"]),
        ),
    ];
    let err = match testing::create(&component(), json!({}), &providers) {
        Ok(_) => panic!("created with a certificate claimed twice"),
        Err(err) => err,
    };
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains(&format!("provider `b` registers the certificate fingerprint `{FP_A}` that provider `a` registers already")),
        "{err}"
    );
    assert!(
        lines[1].contains("provider `d` registers the subjectAltName `dns:iga.example.com` that provider `c` registers already"),
        "{err}"
    );
    // A create that validation did not run before refuses as well.
    let ctx = testing::create_context("mtls", json!({}), &providers);
    let Err(e) = ClientCert::build(ClientCertConfig::default(), &ctx) else {
        panic!("built with a certificate claimed twice");
    };
    assert!(e.message.contains("provider `b`"), "{}", e.message);
    // Without the duplicates it is fine.
    assert!(testing::create(&component(), json!({}), &providers[..1]).is_ok());
    assert!(testing::create(&component(), json!({}), &providers[2..3]).is_ok());
    assert!(testing::create(&component(), json!({}), &providers[4..]).is_ok());
}

fn provider_issues(auth: Value) -> Vec<(String, String)> {
    component()
        .validate_provider(METHOD, auth.as_object().unwrap())
        .into_iter()
        .map(|i| (i.path.to_string(), i.message.to_string()))
        .collect()
}

#[test]
fn the_method_needs_a_fingerprint_or_a_subject_alt_name() {
    let issues = provider_issues(json!({"method": METHOD, "client_id": null, "scopes": []}));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].0, "");
    assert!(issues[0].1.contains("needs `cert_sha256`"), "{issues:?}");
    assert!(provider_issues(json!({"method": METHOD, "cert_sha256": FP_A})).is_empty());
    assert!(provider_issues(json!({"method": METHOD, "cert_san": ["dns:a.example"]})).is_empty());
    assert!(provider_issues(
        json!({"method": METHOD, "cert_sha256": [FP_A, FP_B], "cert_san": "uri:urn:x"})
    )
    .is_empty());
}

#[test]
fn the_method_values_are_checked_one_by_one() {
    let issues = provider_issues(json!({
        "method": METHOD,
        "cert_sha256": [FP_A, "AB:CD"],
        "cert_san": ["dns:ok.example", "host:iga", 7],
    }));
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["cert_sha256", "cert_san"], "{issues:?}");
    assert!(
        issues[0].1.contains("`AB:CD` is not a SHA-256 fingerprint"),
        "{issues:?}"
    );
    assert!(
        issues[1].1.contains("a string or a list of strings"),
        "{issues:?}"
    );
    let issues = provider_issues(json!({"method": METHOD, "cert_san": ["host:iga"]}));
    assert_eq!(issues.len(), 1);
    assert!(
        issues[0].1.contains("`host:iga` is not a subjectAltName"),
        "{issues:?}"
    );
    let issues = provider_issues(json!({"method": METHOD, "cert_sha256": [], "cert_san": 1}));
    let paths: Vec<&str> = issues.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["cert_sha256", "cert_san"], "{issues:?}");
    assert!(issues[0].1.contains("the list is empty"), "{issues:?}");
    // The declaration: the host checks these keys and no client_id is needed.
    let declared = &component().declarations.provider_methods[0];
    assert_eq!(declared.name, METHOD);
    assert_eq!(declared.keys, [KEY_SHA256, KEY_SAN]);
    assert!(!declared.requires_client_id);
    assert!(declared.secrets.is_empty());
}

#[test]
fn the_stage_takes_no_settings_and_its_schema_is_derived() {
    testing::assert_schema_is_derived::<ClientCertConfig>(&component());
    let issues = testing::issues(&component(), json!({"header": "x-client-cert"}));
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert!(issues[0].1.contains("header"), "{issues:?}");
    let lib = __scimgate_plugin_export::library();
    assert_eq!(lib.name, "tls");
    assert_eq!(lib.components.len(), 1);
    assert_eq!(
        lib.components[0].kind,
        scimgate_abi::ComponentKind::Authenticator
    );
}

#[test]
fn in_a_pipeline_the_provider_record_is_attached_and_others_go_on() {
    let pipeline = Pipeline::builder(components())
        .provider(cert_provider("oim").auth_key(KEY_SHA256, FP_A).inactive())
        .stage("client-cert", json!({}))
        .build()
        .expect("built");
    let decision = pipeline.run(with_cert(FP_A, &[]));
    assert!(decision.is_allowed(), "{:?}", decision.denial());
    let principal = decision.principal().expect("a principal");
    assert_eq!(principal.provider_id.as_str(), "oim");
    // An inactive provider still authenticates: the policies refuse it.
    let refused = pipeline.run(with_cert(FP_B, &[]));
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.denied_by(), Some("client-cert"));
    // Nobody recognised the request: the host's 401 with no principal.
    let nobody = pipeline.run(Request::new("GET", "/Users"));
    assert_eq!(nobody.status(), 401);
    assert!(nobody.principal().is_none());
}
