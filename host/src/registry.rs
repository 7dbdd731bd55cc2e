//! The provider registry: every `[[provider]]` of the config as the
//! FFI-safe [`ProviderRecord`] policies read on each request, and as the JSON
//! array handed to plugins when they are created. One place builds both.

use std::collections::HashMap;
use std::sync::Arc;

use abi_stable::std_types::{ROption, RString, RVec};
use scimgate_abi::ProviderRecord;

use crate::config::{Access, ProviderConfig};

/// Providers by id.
#[derive(Default)]
pub struct ProviderRegistry {
    by_id: HashMap<String, Arc<ProviderRecord>>,
    json: String,
}

impl ProviderRegistry {
    pub fn from_config(providers: &[ProviderConfig]) -> Self {
        let by_id = providers
            .iter()
            .map(|p| (p.id.clone(), Arc::new(record(p))))
            .collect();
        let json =
            serde_json::Value::Array(providers.iter().map(ProviderConfig::to_json).collect());
        ProviderRegistry {
            by_id,
            json: json.to_string(),
        }
    }

    pub fn get(&self, id: &str) -> Option<&Arc<ProviderRecord>> {
        self.by_id.get(id)
    }

    /// The JSON array passed to plugins in the create envelope.
    pub fn json(&self) -> &str {
        &self.json
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

fn strings(items: &[String]) -> RVec<RString> {
    items.iter().map(|s| RString::from(s.as_str())).collect()
}

fn record(p: &ProviderConfig) -> ProviderRecord {
    let auth = &p.auth;
    ProviderRecord {
        id: p.id.as_str().into(),
        name: p.name.as_str().into(),
        active: p.active,
        protocol: p.protocol.as_str().into(),
        description: p.description.as_str().into(),
        tags: strings(&p.tags),
        auth_method: auth.method.as_str().into(),
        client_id: auth.client_id.clone().unwrap_or_default().into(),
        valid_from: auth.valid_from.map(|t| t.unix_timestamp()).into(),
        valid_until: auth
            .valid_until
            .map(|t| t.unix_timestamp())
            .map_or(ROption::RNone, ROption::RSome),
        allowed_ips: strings(&auth.allowed_ips),
        allowed_referrers: strings(&auth.allowed_referrers),
        access: match auth.access {
            Access::ReadOnly => "read-only",
            Access::ReadWrite => "read-write",
        }
        .into(),
        scopes: strings(&auth.scopes),
        auth_json: auth.table.to_string().into(),
    }
}
