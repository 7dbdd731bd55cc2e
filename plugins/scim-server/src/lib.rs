//! `scim-server`: the SCIM 2.0 service provider of scimgate (RFC 7643/7644,
//! RFC 9865 cursor paging) as one endpoint component, `scim-server/scim`,
//! with an embedded SQLite store or a shared PostgreSQL store (several
//! nodes).
//!
//! The protocol (routing, validation, PATCH, filters, sorting, paging and
//! cursors, Bulk, ETags, discovery, `/Me`, derived attributes) is the
//! engine of `scimgate-scim-service`; this crate maps its configuration to
//! the engine's settings and implements the engine's `Backend` contract
//! with SQL ([`store`]), pushing filters down as SQL conditions.

pub mod config;
#[cfg(test)]
mod differential;
pub mod endpoint;
pub mod store;

use scimgate_abi::sdk::{Component, CreateContext};

pub use config::ScimConfig;

fn components() -> Vec<Component> {
    vec![Component::endpoint_with_config(
        "scim",
        "SCIM 2.0 service provider: Users, Groups, custom resource types, Bulk, /Me, ETags, cursors; SQLite or PostgreSQL store",
        |config: ScimConfig, ctx: &CreateContext| endpoint::create(config, ctx),
    )
    .with_validate(|ctx: &CreateContext| match ctx.deserialize::<ScimConfig>() {
        Ok(config) => config.check(&ctx.data_dir),
        Err(_) => Vec::new(),
    })
    .with_schema(CONFIG_SCHEMA)]
}

scimgate_abi::export_plugin!("scim-server", components);

const CONFIG_SCHEMA: &str = r#"{"type":"object","additionalProperties":false,"properties":{
"store":{"type":"string","default":"sqlite:scim.db"},
"store_password":{"type":"string"},
"pool_size":{"type":"integer","minimum":1,"maximum":1000,"default":8},
"max_results":{"type":"integer","minimum":1,"default":200},
"default_page_size":{"type":"integer","minimum":1,"default":100},
"bulk":{"type":"object","properties":{"enabled":{"type":"boolean","default":true},"max_operations":{"type":"integer","default":1000},"max_payload_size":{"type":["integer","string"],"default":"1MiB"}}},
"patch_response":{"enum":["resource","no-content"],"default":"resource"},
"unique_group_names":{"type":"boolean","default":true},
"me":{"type":"boolean","default":false},
"cursor_timeout":{"type":["integer","string"],"default":"10m"},
"users":{"type":"boolean","default":true},
"groups":{"type":"boolean","default":true},
"enterprise_user":{"type":"boolean","default":true},
"schemas":{"type":"array","items":{"type":["string","object"]}},
"resource_types":{"type":"array","items":{"type":["string","object"]}},
"authentication_schemes":{"type":"array","items":{"type":"object"}},
"documentation_uri":{"type":"string"},
"password_storage":{"enum":["hash","drop","refuse"],"default":"hash"},
"max_scan":{"type":"integer","minimum":1,"default":100000}}}"#;
