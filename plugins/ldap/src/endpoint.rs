//! The `ldap/directory` endpoint: builds the [`LdapBackend`] from the stage
//! config and hands every request to the shared SCIM engine
//! ([`ScimService`]), which does the protocol.

use std::sync::Arc;

use scimgate_abi::sdk::CreateContext;
use scimgate_abi::PluginError;
use scimgate_scim::Registry;
use scimgate_scim_service::{Backend, ScimService};

use crate::backend::LdapBackend;
use crate::config::LdapConfig;

/// Builds the endpoint (no connection is opened: an unreachable
/// directory makes requests 503 and `/readyz` not ready, not a failed start).
pub fn create(config: LdapConfig, ctx: &CreateContext) -> Result<ScimService, PluginError> {
    let issues = config.check();
    if !issues.is_empty() {
        let text: Vec<String> = issues
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        return Err(PluginError::internal(format!(
            "config: {}",
            text.join("; ")
        )));
    }
    let backend = LdapBackend::new(&config).map_err(PluginError::internal)?;
    tracing::info!(
        stage = %ctx.stage,
        url = %config.url,
        users_base = %config.users_base,
        groups_base = %config.groups_base,
        pool_size = config.pool_size,
        "SCIM over LDAP"
    );
    Ok(ScimService::new(
        config.settings(),
        Registry::core(),
        Arc::new(backend) as Arc<dyn Backend>,
    ))
}
