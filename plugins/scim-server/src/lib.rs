//! `scim-server`: the SCIM 2.0 service provider of scimgate (RFC 7643/7644,
//! RFC 9865 cursor paging) as one endpoint component, `scim-server/scim`,
//! with an embedded SQLite store or a shared PostgreSQL store (several
//! nodes).
//!
//! The protocol (routing, validation, PATCH, filters, sorting, paging and
//! cursors, Bulk, ETags, discovery, `/Me`, derived attributes) is the
//! engine of `scimgate-scim-service`; this crate maps its configuration to
//! the engine's settings and implements the engine's `Backend` contract
//! with SQL ([`store`]), pushing filters down as SQL conditions. Push
//! delivery of the change log to webhooks is [`push`]; its keys are served
//! by the second component, `scim-server/change-keys`.

pub mod config;
#[cfg(test)]
mod differential;
pub mod endpoint;
pub mod push;
#[cfg(test)]
mod quick_reads;
#[cfg(test)]
mod ready_reads;
pub mod store;

use scimgate_abi::sdk::{Component, CreateContext};

pub use config::ScimConfig;

fn components() -> Vec<Component> {
    vec![Component::endpoint_with_config(
        "scim",
        "SCIM 2.0 service provider: Users, Groups, custom resource types, Bulk, /Me, ETags, cursors; SQLite or PostgreSQL store",
        |config: ScimConfig, ctx: &CreateContext| endpoint::create(config, ctx),
    )
    // Creating the stage opens its store and brings its schema up to date.
    .with_capability(scimgate_abi::declare::Capability::Migrates)
    .with_validate(|ctx: &CreateContext| match ctx.deserialize_checked::<ScimConfig>() {
        Ok(config) => config.check(&ctx.data_dir),
        Err(_) => Vec::new(),
    })
    .with_example(serde_json::json!({
        "store": "sqlite:scim.db",
        "max_results": 200,
        "bulk": {"max_operations": 1000, "max_payload_size": "1MiB"},
        "cursor_timeout": "10m",
        "password_storage": "hash"
    })),
    Component::endpoint_with_config(
        "change-keys",
        "The public keys (JWKS) of the change events' signing key; meant for an anonymous route such as /.well-known/scimgate/change-keys",
        |config: endpoint::ChangeKeysConfig, ctx: &CreateContext| endpoint::ChangeKeys::create(config, ctx),
    )
    .with_example(serde_json::json!({}))]
}

scimgate_abi::export_plugin!("scim-server", components);
