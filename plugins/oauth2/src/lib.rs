//! `oauth2`: scimgate's OAuth2 library. A token endpoint for the
//! client-credentials grant issuing Ed25519-signed RFC 9068 JWTs, the
//! client authenticator in front of it, and the authenticators of SCIM
//! routes: our own JWTs (`bearer`), hashed long-lived tokens
//! (`static-bearer`), HTTP Basic (`basic`) and external issuers (`jwks`).

mod basic;
mod bearer;
mod cache;
mod client_credentials;
mod credentials;
mod duration;
mod errors;
mod jwks;
mod jwt;
mod keys;
mod methods;
#[cfg(test)]
mod proptests;
mod providers;
mod secret;
mod static_bearer;
#[cfg(test)]
mod testutil;
mod throttle;
mod token;

use scimgate_abi::declare::Capability;
use scimgate_abi::sdk::Component;
use scimgate_abi::ErrorStyle;

/// The components this library exports, in `use = "oauth2/<name>"` form.
pub fn components() -> Vec<Component> {
    vec![
        Component::authenticator_with_config(
            "client-credentials",
            "OAuth2 client authentication at the token endpoint: client_secret_basic (RFC 6749 §2.3.1 URL-decoded), client_secret_post, JSON body; lockout after repeated failures",
            client_credentials::ClientCredentials::build,
        )
        .with_example(serde_json::json!({"max_failures": 10, "failure_window": "5m", "cache_ttl": "5m"}))
        .with_provider_method(methods::client_credentials(), |_| Vec::new())
        // `$argon2id$` client secrets are verified inline.
        .may_block(),
        Component::endpoint_with_config(
            "token",
            "OAuth2 token endpoint, client_credentials grant (RFC 6749 §4.4), RFC 9068 JWT access tokens signed with Ed25519",
            token::TokenEndpoint::build,
        )
        .with_example(serde_json::json!({"ttl": "1h", "issuer": "scimgate", "audience": "scimgate"}))
        .with_capability(Capability::MintsTokens)
        .with_error_style(ErrorStyle::OAuth),
        Component::authenticator_with_config(
            "bearer",
            "verifies the access tokens issued by oauth2/token (EdDSA, typ at+jwt, iss, aud, exp/nbf, kid), with a cache of verified tokens",
            bearer::Bearer::build,
        )
        .with_example(serde_json::json!({"issuer": "scimgate", "audience": "scimgate", "leeway": "30s"})),
        Component::authenticator_with_config(
            "static-bearer",
            "long-lived bearer tokens stored as sha256 hashes per provider (auth.method = \"static-bearer\")",
            static_bearer::StaticBearer::build,
        )
        .with_example(serde_json::json!({"reject_unknown": true}))
        .with_provider_method(methods::static_bearer(), methods::check_static_bearer),
        Component::authenticator_with_config(
            "basic",
            "HTTP Basic provider credentials (auth.method = \"basic\"), argon2id or sha256 password hashes, verified-login cache",
            basic::Basic::build,
        )
        .with_example(serde_json::json!({"cache_ttl": "5m", "max_failures": 10, "reject_unknown": true}))
        .with_provider_method(methods::basic(), methods::check_basic)
        // argon2id verification of human-chosen passwords.
        .may_block(),
        Component::authenticator_with_config(
            "jwks",
            "JWTs of an external issuer (auth.method = \"jwks\") verified against its JWKS (file, https URL, or http URL on loopback); RS*/PS*/ES256/ES384/EdDSA",
            jwks::Jwks::build,
        )
        .with_example(serde_json::json!({"refresh": "10m", "leeway": "30s", "fetch_timeout": "5s"}))
        .with_provider_method(methods::jwks(), methods::check_jwks)
        // JWKS refreshes fetch over the network.
        .may_block()
        .with_validate(jwks::Jwks::validate),
    ]
}

scimgate_abi::export_plugin!("oauth2", components);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::tests::sha256_ref;
    use crate::testutil::{basic, ctx_in, provider_record, request, temp_dir};
    use scimgate_abi::ffi::ComponentInstance;
    use scimgate_abi::std_types::ROption;
    use scimgate_abi::{AuthOutcome, Caller, ComponentKind};
    use serde_json::json;

    #[test]
    fn components_have_names_kinds_and_valid_schemas() {
        let names: Vec<(String, ComponentKind)> = components()
            .iter()
            .map(|c| (c.name.clone(), c.kind))
            .collect();
        assert_eq!(
            names,
            vec![
                ("client-credentials".into(), ComponentKind::Authenticator),
                ("token".into(), ComponentKind::Endpoint),
                ("bearer".into(), ComponentKind::Authenticator),
                ("static-bearer".into(), ComponentKind::Authenticator),
                ("basic".into(), ComponentKind::Authenticator),
                ("jwks".into(), ComponentKind::Authenticator),
            ]
        );
        for c in components() {
            let schema: serde_json::Value = serde_json::from_str(&c.config_schema)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(schema["additionalProperties"], false, "{}", c.name);
        }
        let token = components()
            .into_iter()
            .find(|c| c.name == "token")
            .unwrap();
        assert_eq!(token.error_style, ErrorStyle::OAuth);
    }

    #[test]
    fn unknown_config_keys_are_located_issues() {
        let dir = temp_dir("lib-validate");
        for c in components() {
            let issues = c.validate(&ctx_in(json!({"no_such_key": 1}), vec![], dir.clone()));
            assert_eq!(issues.len(), 1, "{}", c.name);
            assert!(
                issues[0].message.contains("no_such_key"),
                "{}: {}",
                c.name,
                issues[0].message
            );
            assert!(
                c.validate(&ctx_in(json!({}), vec![], dir.clone()))
                    .is_empty(),
                "{}",
                c.name
            );
        }
        let token = components()
            .into_iter()
            .find(|c| c.name == "token")
            .unwrap();
        let issues = token.validate(&ctx_in(json!({"ttl": "1 hour"}), vec![], dir));
        assert_eq!(issues[0].path.as_str(), "ttl");
    }

    /// The reference scenario through the ABI objects: client authentication,
    /// token endpoint, then the bearer stage on a SCIM route.
    #[test]
    fn token_route_then_scim_route_through_the_abi() {
        let dir = temp_dir("lib-e2e");
        let providers = vec![json!({"id": "oim-prod", "active": true, "auth": {
            "method": "oauth2-client-credentials", "client_id": "oim-prod",
            "client_secret_hash": sha256_ref("s3cret"), "scopes": ["scim:read"]}})];
        let create = |name: &str, config: serde_json::Value| {
            let c = components().into_iter().find(|c| c.name == name).unwrap();
            c.create(&ctx_in(config, providers.clone(), dir.clone()))
                .unwrap()
        };
        let ComponentInstance::Authenticator(client_auth) = create("client-credentials", json!({}))
        else {
            panic!("kind")
        };
        let ComponentInstance::Endpoint(token) = create("token", json!({"ttl": "15m"})) else {
            panic!("kind")
        };
        let ComponentInstance::Authenticator(bearer) = create("bearer", json!({})) else {
            panic!("kind")
        };
        let now = 1_700_000_000_000;
        let req = request(
            "POST",
            &[basic("oim-prod", "s3cret")],
            "grant_type=client_credentials",
            now,
        );
        let AuthOutcome::Authenticated(principal) = client_auth.authenticate(&req) else {
            panic!("client authentication failed")
        };
        let record = provider_record("oim-prod", &["scim:read"]);
        let caller = Caller {
            principal: ROption::RSome(&principal),
            provider: ROption::RSome(&record),
        };
        let response = token.handle(&req, caller).unwrap();
        assert_eq!(response.status, 200);
        let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        let access = body["access_token"].as_str().unwrap();
        let scim = request(
            "GET",
            &[("authorization", &format!("Bearer {access}"))],
            "",
            now + 5_000,
        );
        match bearer.authenticate(&scim) {
            AuthOutcome::Authenticated(p) => {
                assert_eq!(p.provider_id.as_str(), "oim-prod");
                assert_eq!(p.scopes.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(bearer.challenge().as_str(), "Bearer realm=\"scimgate\"");
    }
}
