//! The `scim-server/scim` endpoint: opens the configured SQL store (SQLite
//! or PostgreSQL) and hands every request to the engine,
//! [`scimgate_scim_service::ScimService`], which does the protocol.

use std::sync::Arc;

use scimgate_abi::sdk::CreateContext;
use scimgate_abi::PluginError;
use scimgate_scim_service::{Backend, ScimService};

use crate::config::{ScimConfig, StoreLocation};
use crate::store::metered::Metered;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;

/// The engine over the configured store (the SDK has already type-checked
/// the config).
pub fn create(config: ScimConfig, ctx: &CreateContext) -> Result<ScimService, PluginError> {
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
    // Every store call goes through `Metered`: timed and reported to the
    // host's metrics (`scimgate_store_*`), with the pool's state for
    // PostgreSQL.
    let store: Arc<dyn Backend> = match config.store_location(&ctx.data_dir) {
        Ok(StoreLocation::Sqlite(path)) => {
            let store = SqliteStore::open(&path).map_err(|e| {
                PluginError::internal(format!(
                    "cannot open the SQLite store {}: {e}",
                    path.display()
                ))
            })?;
            Arc::new(Metered::new(store))
        }
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
            let pool = store.clone();
            Arc::new(
                Metered::new(store)
                    .with_pool(Box::new(move || pool.pool_state()))
                    .with_generation_queries(),
            )
        }
        Err(issue) => return Err(PluginError::internal(issue.message.to_string())),
    };
    Ok(ScimService::new(config.settings(), registry, store))
}
