//! The `ldap/directory` endpoint: builds the [`LdapBackend`] from the stage
//! config and hands every request to the shared SCIM engine
//! ([`ScimService`]), which does the protocol.

use std::sync::Arc;

use scimgate_abi::sdk::{CreateContext, Endpoint};
use scimgate_abi::{Caller, PluginError, Request, Response};
use scimgate_scim::Registry;
use scimgate_scim_service::{Backend, ScimService};

use crate::backend::LdapBackend;
use crate::config::LdapConfig;

/// The SCIM service provider over a directory.
pub struct DirectoryEndpoint {
    service: ScimService,
}

impl DirectoryEndpoint {
    /// Builds the endpoint (no connection is opened: an unreachable
    /// directory makes requests 503 and `/readyz` not ready, not a failed start).
    pub fn from_config(
        config: LdapConfig,
        ctx: &CreateContext,
    ) -> Result<DirectoryEndpoint, PluginError> {
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
        Ok(DirectoryEndpoint::new(&config, Arc::new(backend)))
    }

    pub fn new(config: &LdapConfig, backend: Arc<dyn Backend>) -> DirectoryEndpoint {
        DirectoryEndpoint {
            service: ScimService::new(config.settings(), Registry::core(), backend),
        }
    }

    /// The engine behind this endpoint.
    pub fn service(&self) -> &ScimService {
        &self.service
    }
}

impl Endpoint for DirectoryEndpoint {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        self.service.handle(req, caller)
    }

    fn ready(&self) -> Result<(), String> {
        self.service.ready()
    }
}
