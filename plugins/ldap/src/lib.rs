//! `ldap`: SCIM 2.0 in front of an LDAP directory, as one endpoint
//! component, `ldap/directory`. The SCIM protocol is the shared engine's
//! (`scimgate-scim-service`); this crate is its [`backend::LdapBackend`]:
//! Users as `inetOrgPerson`, Groups as `groupOfNames`, filters pushed down
//! as LDAP filters, paged reads, directory errors as SCIM errors.

pub mod backend;
pub mod config;
pub mod conn;
pub mod endpoint;
pub mod filter;
pub mod mapping;

use scimgate_abi::sdk::{Component, CreateContext};

pub use backend::LdapBackend;
pub use config::LdapConfig;

fn components() -> Vec<Component> {
    vec![Component::endpoint_with_config(
        "directory",
        "SCIM 2.0 service provider in front of an LDAP directory: Users as inetOrgPerson, Groups as groupOfNames",
        |config: LdapConfig, ctx: &CreateContext| endpoint::create(config, ctx),
    )
    .with_validate(|ctx: &CreateContext| match ctx.deserialize_checked::<LdapConfig>() {
        Ok(config) => config.check(),
        Err(_) => Vec::new(),
    })
    .with_example(serde_json::json!({
        "url": "ldap://ldap.example.com:389",
        "starttls": true,
        "bind_dn": "cn=scimgate,ou=services,dc=example,dc=com",
        "bind_password": "${LDAP_BIND_PASSWORD}",
        "users_base": "ou=people,dc=example,dc=com",
        "groups_base": "ou=groups,dc=example,dc=com",
        "connect_timeout": "5s",
        "operation_timeout": "30s",
        "max_results": 200
    }))]
}

scimgate_abi::export_plugin!("ldap", components);
