//! The `scim-server/scim` endpoint: opens the configured SQL store (SQLite
//! or PostgreSQL) and hands every request to the engine,
//! [`scimgate_scim_service::ScimService`], which does the protocol; with
//! `[[stage.NAME.subscriber]]`s, also starts push delivery ([`crate::push`]).
//! And `scim-server/change-keys`, the JWKS of the change signing key.

use std::sync::Arc;

use scimgate_abi::sdk::{CreateContext, Endpoint};
use scimgate_abi::{Caller, PluginError, Request, Response};
use scimgate_changes::{Issuer, PositionStore};
use scimgate_scim_service::{Backend, ScimService};

use crate::config::{ScimConfig, StoreLocation};
use crate::push::{Push, StoreSource};
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
    let positions: Arc<dyn PositionStore>;
    let store: Arc<dyn Backend> = match config.store_location(&ctx.data_dir) {
        Ok(StoreLocation::Sqlite(path)) => {
            let store = SqliteStore::open(&path).map_err(|e| {
                PluginError::internal(format!(
                    "cannot open the SQLite store {}: {e}",
                    path.display()
                ))
            })?;
            positions = store.clone();
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
            positions = store.clone();
            let pool = store.clone();
            Arc::new(
                Metered::new(store)
                    .with_pool(Box::new(move || pool.pool_state()))
                    .with_generation_queries(),
            )
        }
        Err(issue) => return Err(PluginError::internal(issue.message.to_string())),
    };
    let service = ScimService::new(config.settings(), registry, store.clone());
    if config.subscriber.is_empty() {
        return Ok(service);
    }
    let key_path = config.change_signing_key_path(&ctx.data_dir);
    let key = crate::push::load_or_generate_key(&key_path).map_err(PluginError::internal)?;
    let issuer = Issuer {
        iss: config
            .change_issuer
            .clone()
            .unwrap_or_else(|| format!("urn:scimgate:stage:{}", ctx.stage)),
        instance: ctx.stage.clone(),
    };
    let subscribers = config.subscriber.iter().map(|s| s.subscriber()).collect();
    let push = Push::start(
        &ctx.stage,
        subscribers,
        issuer,
        key,
        Arc::new(StoreSource(store)),
        positions,
    )
    .map_err(PluginError::internal)?;
    Ok(service.with_push(Arc::new(push)))
}

/// `scim-server/change-keys`: the stage table.
#[derive(Debug, Clone, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeKeysConfig {
    /// The signing key whose public half is served: the same file as the
    /// scim stage's `change_signing_key` (relative to `data_dir`). Default
    /// `<data_dir>/oauth2-signing-key.pem`, generated when missing.
    #[serde(default)]
    pub signing_key: Option<String>,
}

/// Serves `{"keys":[…]}` (`application/jwk-set+json`): the public JWK of
/// the change signing key, `kid` = its RFC 7638 thumbprint, the `kid` of
/// every EdDSA-signed change event.
pub struct ChangeKeys {
    jwks: serde_json::Value,
}

impl ChangeKeys {
    pub fn create(
        config: ChangeKeysConfig,
        ctx: &CreateContext,
    ) -> Result<ChangeKeys, PluginError> {
        let path = match &config.signing_key {
            Some(p) if std::path::Path::new(p).is_absolute() => std::path::PathBuf::from(p),
            Some(p) => ctx.data_dir.join(p),
            None => ctx.data_dir.join(crate::push::DEFAULT_KEY_FILE),
        };
        let key = crate::push::load_or_generate_key(&path).map_err(PluginError::internal)?;
        let jwks = scimgate_changes::sign::jwks(&[key.verifying_key()]);
        Ok(ChangeKeys { jwks })
    }
}

impl Endpoint for ChangeKeys {
    fn handle(&self, req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
        match req.method.as_str() {
            "GET" | "HEAD" => Ok(Response::json(200, "application/jwk-set+json", &self.jwks)
                .with_header("cache-control", "public, max-age=300")),
            method => Err(PluginError::new(
                405,
                format!("{method} is not allowed here; allowed: GET"),
            )
            .with_header("allow", "GET, HEAD")),
        }
    }
}
