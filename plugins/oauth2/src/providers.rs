//! The `[[provider]]` registry as this library reads it: id, client id,
//! scopes, the address list and the method-specific `[provider.auth]`
//! fields.

use scimgate_abi::net::IpList;
use serde_json::{Map, Value};

use crate::secret::SecretHash;

/// One provider from `CreateContext.providers`.
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    pub method: String,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// `auth.allowed_ips`, parsed.
    pub allowed: Allowed,
    pub auth: Map<String, Value>,
}

/// Where a provider's credentials may be presented from (`allowed_ips`,
/// the grammar of [`scimgate_abi::net`]). Authenticators that verify a
/// secret check it first, so that an address the provider does not allow
/// can neither guess the secret nor run up its failure count.
#[derive(Debug, Clone)]
pub enum Allowed {
    /// No list (or one holding `*`).
    Anyone,
    Only(IpList),
    /// The list does not parse (the host validates it, so this is a record
    /// changed behind its back): refuse everyone, like `allowed-ips` does.
    Invalid(String),
}

impl Allowed {
    fn from_value(list: Option<&Value>) -> Allowed {
        let items = match list {
            None | Some(Value::Null) => return Allowed::Anyone,
            Some(Value::Array(items)) => items,
            Some(_) => return Allowed::Invalid("allowed_ips is not a list".into()),
        };
        let Some(entries) = items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()
        else {
            return Allowed::Invalid("allowed_ips holds a value that is not a string".into());
        };
        match IpList::parse(&entries) {
            Ok(list) if list.is_any() => Allowed::Anyone,
            Ok(list) => Allowed::Only(list),
            Err(e) => Allowed::Invalid(e),
        }
    }

    /// Why `client_ip` may not present this provider's credentials, or
    /// `None` when it may. The reason is for the log and audit trail only.
    pub fn refusal(&self, provider_id: &str, client_ip: &str) -> Option<String> {
        match self {
            Allowed::Anyone => None,
            Allowed::Only(list) if list.permits_text(client_ip) => None,
            Allowed::Only(_) => Some(format!(
                "client address {} is not in the allowed_ips of provider `{provider_id}`; credentials not checked",
                crate::errors::shown(client_ip)
            )),
            Allowed::Invalid(e) => Some(format!(
                "provider `{provider_id}` has an invalid allowed_ips list ({e}); refusing"
            )),
        }
    }
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
            let allowed = Allowed::from_value(
                auth.get("allowed_ips")
                    .or_else(|| record.get("allowed_ips")),
            );
            Some(Provider {
                id,
                method,
                client_id,
                scopes,
                allowed,
                auth,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed(record: Value) -> Allowed {
        parse(&[record]).remove(0).allowed
    }

    #[test]
    fn allowed_ips_are_parsed_once_and_fail_closed() {
        let a = allowed(json!({"id": "p", "auth": {"allowed_ips": ["10.0.0.0/8", "::1"]}}));
        assert_eq!(a.refusal("p", "10.1.2.3"), None);
        assert_eq!(a.refusal("p", "::ffff:10.1.2.3"), None);
        assert_eq!(a.refusal("p", "::1"), None);
        let why = a.refusal("p", "192.0.2.1").unwrap();
        assert!(why.contains("192.0.2.1") && why.contains("`p`"), "{why}");
        assert!(a.refusal("p", "not-an-ip").is_some());
        // A forged address is shown escaped.
        let why = a.refusal("p", "x\nforged").unwrap();
        assert!(why.contains("x\\nforged"), "{why}");
        for open in [
            json!({"id": "p"}),
            json!({"id": "p", "auth": {"allowed_ips": []}}),
            json!({"id": "p", "auth": {"allowed_ips": ["*"]}}),
        ] {
            assert_eq!(allowed(open).refusal("p", "192.0.2.1"), None);
        }
        let top = allowed(json!({"id": "p", "allowed_ips": ["10.0.0.1"]}));
        assert!(top.refusal("p", "10.0.0.2").is_some());
        for bad in [json!(["10.0.0.0/33"]), json!([1]), json!("10.0.0.1")] {
            let a = allowed(json!({"id": "p", "auth": {"allowed_ips": bad}}));
            assert!(a
                .refusal("p", "10.0.0.1")
                .unwrap()
                .contains("invalid allowed_ips"));
        }
    }
}
