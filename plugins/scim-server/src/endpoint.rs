//! The `scim-server/scim` endpoint: opens the configured SQL store (SQLite
//! or PostgreSQL) and hands every request to the engine,
//! [`scimgate_scim_service::ScimService`], which does the protocol.

use std::sync::Arc;

use scimgate_abi::sdk::{CreateContext, Endpoint};
use scimgate_abi::{Caller, PluginError, Request, Response};
use scimgate_scim::Registry;
use scimgate_scim_service::{Backend, ScimService};

use crate::config::{ScimConfig, StoreLocation};
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;

/// The SCIM service provider over an SQL store.
pub struct ScimEndpoint {
    service: ScimService,
}

impl ScimEndpoint {
    /// Builds the endpoint from its config (the SDK has already type-checked it).
    pub fn from_config(
        config: ScimConfig,
        ctx: &CreateContext,
    ) -> Result<ScimEndpoint, PluginError> {
        let issues = config.check(&ctx.data_dir);
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
        let registry = config
            .registry(&ctx.data_dir)
            .map_err(|_| PluginError::internal("config: invalid schemas"))?;
        let store: Arc<dyn Backend> = match config.store_location(&ctx.data_dir) {
            Ok(StoreLocation::Sqlite(path)) => SqliteStore::open(&path).map_err(|e| {
                PluginError::internal(format!(
                    "cannot open the SQLite store {}: {e}",
                    path.display()
                ))
            })?,
            Ok(StoreLocation::Postgres(settings)) => {
                let store = PostgresStore::open(&settings).map_err(|e| {
                    PluginError::internal(format!(
                        "cannot open the PostgreSQL store {}: {e}",
                        settings.label()
                    ))
                })?;
                tracing::info!(
                    stage = %ctx.stage,
                    store = %store.label(),
                    schema_version = store.schema_version(),
                    pool_size = settings.pool_size,
                    "SCIM store: PostgreSQL, migrated"
                );
                store
            }
            Err(issue) => return Err(PluginError::internal(issue.message.to_string())),
        };
        Ok(ScimEndpoint::new(config, registry, store))
    }

    pub fn new(config: ScimConfig, registry: Registry, store: Arc<dyn Backend>) -> ScimEndpoint {
        ScimEndpoint {
            service: ScimService::new(config.settings(), registry, store),
        }
    }

    /// The engine behind this endpoint.
    pub fn service(&self) -> &ScimService {
        &self.service
    }
}

impl Endpoint for ScimEndpoint {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError> {
        self.service.handle(req, caller)
    }

    fn ready(&self) -> Result<(), String> {
        self.service.ready()
    }
}
