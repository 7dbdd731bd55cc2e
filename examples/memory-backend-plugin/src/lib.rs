//! The smallest complete SCIM backend: resources in a map in memory.
//!
//! `memory/scim` is a SCIM 2.0 service provider whose protocol (validation,
//! PATCH, filters, sorting, paging, Bulk, ETags, discovery, `/Me`, group
//! members and `User.groups`) comes entirely from `scimgate-scim-service`;
//! this file only stores and finds. It declares no capability beyond that
//! (`Capabilities::MINIMAL`), so the engine evaluates filters, derives
//! versions and keeps members in the group bodies itself. docs/backends.md
//! walks through it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use scimgate_abi::sdk::{Component, CreateContext};
use scimgate_abi::PluginError;
use scimgate_scim_service::{
    Backend, BackendError, BackendResult, BackendTx, Capabilities, NewRecord, Record, Scan,
    ScimService, UniqueColumn, Visit, Visitor, Work,
};

/// Resources by (resource type, id); `seq` keeps insertion order.
#[derive(Default)]
struct Store {
    resources: BTreeMap<(String, String), Record>,
    next_seq: i64,
}

/// The backend: one map behind a lock.
#[derive(Default)]
pub struct MemoryBackend {
    store: Mutex<Store>,
}

impl MemoryBackend {
    fn lock(&self) -> BackendResult<MutexGuard<'_, Store>> {
        self.store
            .lock()
            .map_err(|_| BackendError::Backend("the store lock is poisoned".into()))
    }
}

impl Backend for MemoryBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities::MINIMAL
    }

    fn get(&self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        let key = (resource_type.to_string(), id.to_string());
        Ok(self.lock()?.resources.get(&key).cloned())
    }

    fn scan(&self, scan: &Scan<'_>, visit: &mut Visitor<'_>) -> Result<(), PluginError> {
        // No filter push-down: every row of the types, in insertion order;
        // the engine evaluates the filter. Copied out so that the visitor
        // may read the backend again.
        let mut rows: Vec<Record> = self
            .lock()?
            .resources
            .values()
            .filter(|r| scan.resource_types.contains(&r.resource_type))
            .cloned()
            .collect();
        rows.sort_by_key(|r| r.seq);
        let skip = usize::try_from(scan.offset).unwrap_or(usize::MAX);
        let take = scan
            .limit
            .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX));
        for row in rows.into_iter().skip(skip).take(take) {
            if visit(row)? == Visit::Stop {
                break;
            }
        }
        Ok(())
    }

    fn write(&self, work: &mut Work<'_>) -> Result<(), PluginError> {
        // No transactions: each step is applied as it runs.
        let mut tx = MemoryTx { backend: self };
        work(&mut tx)
    }
}

/// The write side: the same map, one step at a time.
struct MemoryTx<'b> {
    backend: &'b MemoryBackend,
}

impl BackendTx for MemoryTx<'_> {
    fn get(&mut self, resource_type: &str, id: &str) -> BackendResult<Option<Record>> {
        self.backend.get(resource_type, id)
    }

    fn insert(&mut self, new: &NewRecord) -> BackendResult<Record> {
        let mut store = self.backend.lock()?;
        store.next_seq += 1;
        let record = new.stored(store.next_seq, 0, new.now.clone());
        let key = (new.resource_type.clone(), new.id.clone());
        if store.resources.contains_key(&key) {
            return Err(BackendError::Conflict(format!("id {}", new.id)));
        }
        store.resources.insert(key, record.clone());
        Ok(record)
    }

    fn update(&mut self, new: &NewRecord, _expected_version: i64) -> BackendResult<Record> {
        // No versions: the engine checks its content-derived version first.
        let mut store = self.backend.lock()?;
        let key = (new.resource_type.clone(), new.id.clone());
        let record = store
            .resources
            .get_mut(&key)
            .ok_or(BackendError::VersionMismatch)?;
        record.body = new.body.clone();
        record.last_modified = new.now.clone();
        Ok(record.clone())
    }

    fn delete(
        &mut self,
        resource_type: &str,
        id: &str,
        _expected_version: Option<i64>,
    ) -> BackendResult<bool> {
        let key = (resource_type.to_string(), id.to_string());
        Ok(self.backend.lock()?.resources.remove(&key).is_some())
    }

    fn taken(
        &mut self,
        resource_type: &str,
        column: UniqueColumn,
        value: &str,
        except_id: &str,
    ) -> BackendResult<bool> {
        let attribute = match column {
            UniqueColumn::UserName => "userName",
            UniqueColumn::DisplayName => "displayName",
        };
        Ok(self.backend.lock()?.resources.values().any(|r| {
            r.resource_type == resource_type
                && r.id != except_id
                && r.body[attribute]
                    .as_str()
                    .is_some_and(|v| v.to_lowercase() == value)
        }))
    }

    fn savepoint(&mut self, work: &mut Work<'_>) -> Result<(), PluginError> {
        work(self)
    }
}

fn components() -> Vec<Component> {
    vec![Component::endpoint_with_config(
        "scim",
        "SCIM 2.0 service provider over an in-memory map (example backend)",
        |config: MemoryConfig, _ctx: &CreateContext| {
            let backend = Arc::new(MemoryBackend::default());
            let registry = scimgate_scim::Registry::core();
            // The engine is the endpoint, with the engine keys of the stage.
            Ok(ScimService::new(
                config.engine.settings(),
                registry,
                backend,
            ))
        },
    )
    .with_example(serde_json::json!({"max_results": 50, "bulk": {"enabled": false}}))]
}

/// The stage table: only the engine's own keys (declared once, in
/// `scimgate_scim_service::settings::EngineSettings`).
#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct MemoryConfig {
    #[serde(flatten)]
    engine: scimgate_scim_service::settings::EngineSettings,
}

scimgate_abi::export_plugin!("memory", components);
