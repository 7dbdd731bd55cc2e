//! The `[[provider]]` registry as this library reads it: id, client id,
//! scopes and the method-specific `[provider.auth]` fields.

use serde_json::{Map, Value};

use crate::secret::SecretHash;

/// One provider from `CreateContext.providers`.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub method: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub auth: Map<String, Value>,
}

impl Provider {
    /// A string field of `[provider.auth]`, when set and non-empty.
    pub fn auth_str(&self, key: &str) -> Option<&str> {
        self.auth
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// The secret hash under `auth.<key>`, or the problem to report (the
    /// provider named, the key, and what is wrong).
    pub fn secret_hash(&self, key: &str) -> Result<SecretHash, String> {
        match self.auth_str(key).map(SecretHash::parse) {
            Some(Ok(hash)) => Ok(hash),
            Some(Err(e)) => Err(format!("provider `{}`: auth.{key}: {e}", self.id)),
            None => Err(format!("provider `{}`: auth.{key} is missing", self.id)),
        }
    }

    /// A list-of-strings field of `[provider.auth]`.
    pub fn auth_list(&self, key: &str) -> Option<Vec<String>> {
        let items = self.auth.get(key)?.as_array()?;
        Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    }
}

/// Every provider with an `id`; records without one are skipped (the host
/// validates the registry itself).
pub fn parse(records: &[Value]) -> Vec<Provider> {
    records
        .iter()
        .filter_map(|record| {
            let id = record.get("id")?.as_str()?.to_string();
            let auth = record
                .get("auth")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let method = auth
                .get("method")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let client_id = auth
                .get("client_id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string);
            let scopes = auth
                .get("scopes")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            Some(Provider {
                id,
                method,
                client_id,
                scopes,
                auth,
            })
        })
        .collect()
}
