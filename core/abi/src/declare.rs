//! What a component declares beyond its kind, so that the host can find it
//! by what it offers instead of by name: capabilities (`scimgate migrate`,
//! `scimgate token`) and the provider authentication methods an
//! authenticator owns (`[provider.auth] method = "…"` and its keys).
//!
//! Declarations cross the boundary as one JSON document per component
//! (`PluginLib::declarations`), read with unknown fields ignored: a newer
//! plugin may declare things an older host does not know, and the reverse.

use serde::{Deserialize, Serialize};

/// Everything one component declares.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declarations {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub provider_methods: Vec<ProviderMethod>,
}

impl Declarations {
    pub fn is_empty(&self) -> bool {
        self.capabilities.is_empty() && self.provider_methods.is_empty()
    }

    /// The JSON sent across the boundary.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".into())
    }

    /// Reads what a library sent; anything unreadable declares nothing.
    pub fn from_json(text: &str) -> Declarations {
        serde_json::from_str(text).unwrap_or_default()
    }

    pub fn has(&self, capability: Capability) -> bool {
        self.capabilities.contains(&capability)
    }
}

/// A service a component offers to the host's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Creating the component opens its store and brings its schema up to
    /// date: `scimgate migrate` creates every stage that declares it.
    Migrates,
    /// An endpoint that answers a client-credentials token request
    /// (`POST`, form body `grant_type=client_credentials[&scope=…]`, the
    /// provider as caller) with an RFC 6749 token response: `scimgate token`
    /// mints with it.
    MintsTokens,
    /// The component knows inline calls ([`crate::Request::is_inline`]):
    /// called on one of the host's async workers, it answers
    /// [`crate::PluginError::would_block`] for a request it could only
    /// serve by blocking, before doing anything, instead of blocking. The
    /// host then runs the routes it is on inline, resuming a request on
    /// the blocking pool at the stage that said so. Every component built
    /// with this SDK declares it.
    InlineCalls,
    /// A capability this build of the contract does not know (declared by a
    /// newer plugin); ignored.
    #[serde(other)]
    Unknown,
}

impl Capability {
    /// The name shown by `scimgate plugins`.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Migrates => "migrates",
            Capability::MintsTokens => "mints-tokens",
            Capability::InlineCalls => "inline-calls",
            Capability::Unknown => "unknown",
        }
    }
}

/// A provider authentication method an authenticator owns: the value of
/// `[provider.auth] method` and the keys it adds to the generic provider
/// record (id, validity, addresses, referrers, access, scopes stay the
/// host's).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderMethod {
    /// `method = "<name>"`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Plain keys of the method (the host reports any other key as unknown).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Secrets: given either as a hash or in plaintext, which the host
    /// hashes before any plugin sees it.
    #[serde(default)]
    pub secrets: Vec<SecretKey>,
    /// Keys holding a file path, resolved against the configuration file's
    /// folder when relative (URLs are kept as written).
    #[serde(default)]
    pub path_keys: Vec<String>,
    /// `client_id` must be set (it is optional otherwise).
    #[serde(default)]
    pub requires_client_id: bool,
}

/// One secret of a method: exactly one of `hash_key` and `plain_key` is
/// given; the host hashes `plain_key` with
/// [`crate::secret::sha256_secret`] and checks `hash_key` with
/// [`crate::secret::SecretHash::parse`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretKey {
    /// e.g. `client_secret_hash`.
    pub hash_key: String,
    /// e.g. `client_secret`.
    pub plain_key: String,
    /// No two providers may share the secret (it alone tells them apart,
    /// like a static bearer token).
    #[serde(default)]
    pub unique: bool,
}

impl ProviderMethod {
    pub fn new(name: &str, description: &str) -> ProviderMethod {
        ProviderMethod {
            name: name.into(),
            description: description.into(),
            ..ProviderMethod::default()
        }
    }

    /// A plain key of the method.
    pub fn key(mut self, key: &str) -> ProviderMethod {
        self.keys.push(key.into());
        self
    }

    /// A secret given as `hash_key` or as `plain_key`.
    pub fn secret(mut self, hash_key: &str, plain_key: &str) -> ProviderMethod {
        self.secrets.push(SecretKey {
            hash_key: hash_key.into(),
            plain_key: plain_key.into(),
            unique: false,
        });
        self
    }

    /// A secret that must differ between providers.
    pub fn unique_secret(mut self, hash_key: &str, plain_key: &str) -> ProviderMethod {
        self.secrets.push(SecretKey {
            hash_key: hash_key.into(),
            plain_key: plain_key.into(),
            unique: true,
        });
        self
    }

    /// A key holding a file path (or a URL).
    pub fn path_key(mut self, key: &str) -> ProviderMethod {
        self.path_keys.push(key.into());
        self
    }

    pub fn requires_client_id(mut self) -> ProviderMethod {
        self.requires_client_id = true;
        self
    }

    /// Every key the method accepts.
    pub fn all_keys(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .chain(&self.path_keys)
            .map(String::as_str)
            .chain(
                self.secrets
                    .iter()
                    .flat_map(|s| [s.hash_key.as_str(), s.plain_key.as_str()]),
            )
    }
}

/// The keys of `[provider.auth]` that belong to the host's generic provider
/// record, for every method.
pub const GENERIC_AUTH_KEYS: &[&str] = &[
    "method",
    "client_id",
    "valid_from",
    "valid_until",
    "allowed_ips",
    "allowed_referrers",
    "access",
    "scopes",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_round_trip_and_ignore_what_they_do_not_know() {
        let declared = Declarations {
            capabilities: vec![Capability::MintsTokens],
            provider_methods: vec![ProviderMethod::new("api-key", "a static key")
                .key("header")
                .unique_secret("key_hash", "key")],
        };
        assert_eq!(Declarations::from_json(&declared.to_json()), declared);
        let newer = r#"{"capabilities":["migrates","teleports"],"future":{"x":1}}"#;
        assert!(Declarations::from_json(newer).has(Capability::Migrates));
        assert!(Declarations::from_json("not json").is_empty());
        let keys: Vec<&str> = declared.provider_methods[0].all_keys().collect();
        assert_eq!(keys, ["header", "key_hash", "key"]);
    }
}
