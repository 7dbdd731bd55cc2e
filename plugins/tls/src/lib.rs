//! `tls/client-cert`: an authenticator that maps the TLS client certificate
//! the host verified (`[server.tls] client_ca_file`) to a registered IGA
//! provider. A provider says `[provider.auth] method = "client-cert"` and
//! names its certificate by `cert_sha256` (SHA-256 fingerprints of the leaf
//! certificate) and/or `cert_san` (subjectAltNames such as
//! `dns:iga.example.com`). The host hands the certificate's facts to the
//! plugin as `tls.client_cert.*` request attributes; a request without them
//! is passed on to the next authenticator. The generic provider rules
//! (active, validity, addresses, referrers, access) stay with the policies.

use std::collections::HashMap;
use std::net::IpAddr;

use scimgate_abi::declare::ProviderMethod;
use scimgate_abi::sdk::{Authenticator, Component, CreateContext};
use scimgate_abi::text::shown;
use scimgate_abi::{AuthOutcome, ConfigIssue, PluginError, Principal, Request};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The provider authentication method this library owns.
pub const METHOD: &str = "client-cert";
/// Provider key: SHA-256 fingerprints of the leaf certificate.
pub const KEY_SHA256: &str = "cert_sha256";
/// Provider key: subjectAltNames (`dns:`, `uri:`, `email:`, `ip:`).
pub const KEY_SAN: &str = "cert_san";

/// Every attribute the host sets for a verified client certificate starts
/// with this; none of them: no client certificate.
pub const ATTR_PREFIX: &str = "tls.client_cert.";
/// Lowercase hex SHA-256 of the leaf certificate's DER.
pub const ATTR_SHA256: &str = "tls.client_cert.sha256";
/// One attribute per subjectAltName, `dns:NAME`, `uri:URI`, `email:ADDR`
/// or `ip:ADDR`.
pub const ATTR_SAN: &str = "tls.client_cert.san";

/// `[stage.NAME] use = "tls/client-cert"` takes no settings: the TLS
/// handshake is configured in `[server.tls]`, the certificates per provider.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {}

/// A provider registered with [`METHOD`].
#[derive(Debug)]
struct Registered {
    id: String,
    scopes: Vec<String>,
}

/// Which provider each fingerprint and subjectAltName names.
#[derive(Debug, Default)]
struct Registry {
    providers: Vec<Registered>,
    /// Normalised fingerprint → index into `providers`.
    by_sha256: HashMap<String, usize>,
    /// Normalised subjectAltName → index into `providers`.
    by_san: HashMap<String, usize>,
}

/// What reading the providers found wrong: values the provider check
/// reports on its own (`invalid`), and certificates two providers claim
/// (`conflicts`), which only a view of every provider can see.
#[derive(Debug, Default)]
struct Problems {
    invalid: Vec<String>,
    conflicts: Vec<String>,
}

impl Registry {
    fn from_providers(providers: &[Value]) -> (Registry, Problems) {
        let mut registry = Registry::default();
        let mut problems = Problems::default();
        for provider in providers {
            let auth = &provider["auth"];
            if auth["method"] != METHOD {
                continue;
            }
            let id = provider["id"].as_str().unwrap_or_default().to_string();
            let index = registry.providers.len();
            let empty = Map::new();
            let table = auth.as_object().unwrap_or(&empty);
            for (key, normalise, map, what) in [
                (
                    KEY_SHA256,
                    normalise_fingerprint as fn(&str) -> Result<String, String>,
                    &mut registry.by_sha256,
                    "certificate fingerprint",
                ),
                (
                    KEY_SAN,
                    normalise_san,
                    &mut registry.by_san,
                    "subjectAltName",
                ),
            ] {
                let Some(values) = entries(table, key) else {
                    continue;
                };
                let values = match values {
                    Ok(values) => values,
                    Err(issue) => {
                        problems
                            .invalid
                            .push(format!("provider `{id}`: `{key}`: {}", issue.message));
                        continue;
                    }
                };
                for value in values {
                    let normalised = match normalise(value) {
                        Ok(n) => n,
                        Err(why) => {
                            problems
                                .invalid
                                .push(format!("provider `{id}`: `{key}`: {why}"));
                            continue;
                        }
                    };
                    match map.get(&normalised) {
                        Some(&other) if other == index => {}
                        Some(&other) => problems.conflicts.push(format!(
                            "provider `{id}` registers the {what} `{}` that provider `{}` \
                             registers already: a client certificate must name one provider",
                            shown(&normalised),
                            registry.providers[other].id
                        )),
                        None => {
                            map.insert(normalised, index);
                        }
                    }
                }
            }
            registry.providers.push(Registered {
                id,
                scopes: auth["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect(),
            });
        }
        (registry, problems)
    }
}

/// The values of `key` in a `[provider.auth]` table: `None` when absent,
/// one string or a non-empty list of strings, or the issue.
fn entries<'a>(
    auth: &'a Map<String, Value>,
    key: &str,
) -> Option<Result<Vec<&'a str>, ConfigIssue>> {
    let value = auth.get(key)?;
    let not_a_list = || ConfigIssue::new(key, "expected a string or a list of strings".to_string());
    Some(match value {
        Value::String(one) => Ok(vec![one.as_str()]),
        Value::Array(items) if items.is_empty() => Err(ConfigIssue::new(
            key,
            "the list is empty: give at least one value, or leave the key out",
        )),
        Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().ok_or_else(not_a_list))
            .collect(),
        _ => Err(not_a_list()),
    })
}

/// A SHA-256 fingerprint as lowercase hex: accepts 64 hex digits, plain or
/// as colon-separated pairs (`AB:CD:…`), in any case, optionally behind
/// the `sha256 Fingerprint=` that `openssl x509 -noout -fingerprint
/// -sha256` prints.
pub fn normalise_fingerprint(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    let value = match trimmed.split_once('=') {
        Some((label, rest)) if label.to_ascii_lowercase().ends_with("fingerprint") => rest,
        _ => trimmed,
    };
    let hex = if value.contains(':') {
        let pairs: Vec<&str> = value.split(':').collect();
        if pairs.iter().any(|pair| pair.len() != 2) {
            return Err(fingerprint_error(text));
        }
        pairs.concat()
    } else {
        value.to_string()
    };
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(fingerprint_error(text));
    }
    Ok(hex.to_ascii_lowercase())
}

fn fingerprint_error(text: &str) -> String {
    format!(
        "`{}` is not a SHA-256 fingerprint: give the 32 bytes as 64 hex digits, plain or \
         colon-separated (`openssl x509 -noout -fingerprint -sha256 -in CERT.pem` prints it)",
        shown(text)
    )
}

/// A subjectAltName as matched: `dns:` names in lower case, `ip:`
/// addresses in their canonical text form, `uri:` and `email:` exactly as
/// written. The kind is case-insensitive.
pub fn normalise_san(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "`{}` is not a subjectAltName: {why} (write `dns:NAME`, `uri:URI`, `email:ADDRESS` \
             or `ip:ADDRESS`)",
            shown(text)
        )
    };
    let Some((kind, value)) = text.split_once(':') else {
        return Err(bad("no kind"));
    };
    if value.is_empty() {
        return Err(bad("the value is empty"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("the value contains white space"));
    }
    match kind.to_ascii_lowercase().as_str() {
        "dns" => Ok(format!("dns:{}", value.to_ascii_lowercase())),
        "uri" => Ok(format!("uri:{value}")),
        "email" => Ok(format!("email:{value}")),
        "ip" => match value.parse::<IpAddr>() {
            Ok(ip) => Ok(format!("ip:{ip}")),
            Err(_) => Err(bad("not an IP address")),
        },
        _ => Err(bad("unknown kind")),
    }
}

/// `tls/client-cert`.
pub struct ClientCert {
    registry: Registry,
}

impl ClientCert {
    pub fn build(
        _config: ClientCertConfig,
        ctx: &CreateContext,
    ) -> Result<ClientCert, PluginError> {
        let (registry, problems) = Registry::from_providers(&ctx.providers);
        // Validation reports both kinds at their lines; a create that
        // validation did not run before must not pick a provider at random.
        let all: Vec<String> = problems
            .invalid
            .into_iter()
            .chain(problems.conflicts)
            .collect();
        if !all.is_empty() {
            return Err(PluginError::internal(format!(
                "stage `{}`: {}",
                ctx.stage,
                all.join("; ")
            )));
        }
        Ok(ClientCert { registry })
    }

    fn principal(&self, index: usize, client_id: &str) -> AuthOutcome {
        let provider = &self.registry.providers[index];
        let mut principal = Principal::new(&provider.id, client_id, METHOD);
        principal.scopes = provider.scopes.iter().map(|s| s.as_str().into()).collect();
        AuthOutcome::Authenticated(principal)
    }
}

impl Authenticator for ClientCert {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        let mut present = false;
        let mut fingerprint = None;
        let mut sans = Vec::new();
        for attribute in req.attributes.iter() {
            let name = attribute.name.as_str();
            if !name.starts_with(ATTR_PREFIX) {
                continue;
            }
            present = true;
            if name == ATTR_SHA256 && fingerprint.is_none() {
                fingerprint = Some(attribute.value.as_str());
            } else if name == ATTR_SAN {
                sans.push(attribute.value.as_str());
            }
        }
        if !present {
            return AuthOutcome::NotMine;
        }
        let fingerprint = fingerprint.and_then(|f| normalise_fingerprint(f).ok());
        if let Some(fp) = &fingerprint {
            if let Some(&index) = self.registry.by_sha256.get(fp) {
                return self.principal(index, fp);
            }
        }
        let mut matched: Option<(usize, String)> = None;
        for san in sans {
            let Ok(san) = normalise_san(san) else {
                continue;
            };
            let Some(&index) = self.registry.by_san.get(&san) else {
                continue;
            };
            match &matched {
                None => matched = Some((index, san)),
                Some((first, _)) if *first == index => {}
                Some((first, _)) => {
                    tracing::warn!(
                        first = %self.registry.providers[*first].id,
                        second = %self.registry.providers[index].id,
                        "client certificate refused: its subjectAltNames name two providers"
                    );
                    return AuthOutcome::Rejected(PluginError::new(
                        401,
                        "client certificate matches more than one provider",
                    ));
                }
            }
        }
        match matched {
            Some((index, san)) => self.principal(index, &san),
            None => {
                tracing::debug!(
                    sha256 = fingerprint.as_deref().unwrap_or("-"),
                    "client certificate not registered"
                );
                AuthOutcome::Rejected(PluginError::new(401, "client certificate not registered"))
            }
        }
    }
}

/// The method's values, one provider at a time (certificates claimed by
/// two providers are the stage validation's: see [`conflicts`]).
fn check_provider(auth: &Map<String, Value>) -> Vec<ConfigIssue> {
    let mut issues = Vec::new();
    let sha256 = entries(auth, KEY_SHA256);
    let san = entries(auth, KEY_SAN);
    if sha256.is_none() && san.is_none() {
        issues.push(ConfigIssue::new(
            "",
            "method client-cert needs `cert_sha256` (the certificate's SHA-256 fingerprint) \
             or `cert_san` (a subjectAltName such as \"dns:iga.example.com\"), or both",
        ));
    }
    for (key, values, normalise) in [
        (
            KEY_SHA256,
            sha256,
            normalise_fingerprint as fn(&str) -> Result<String, String>,
        ),
        (KEY_SAN, san, normalise_san),
    ] {
        match values {
            None => {}
            Some(Err(issue)) => issues.push(issue),
            Some(Ok(values)) => {
                for value in values {
                    if let Err(why) = normalise(value) {
                        issues.push(ConfigIssue::new(key, why));
                    }
                }
            }
        }
    }
    issues
}

/// Certificates two providers claim, found from every provider the stage
/// is validated with.
fn conflicts(ctx: &CreateContext) -> Vec<ConfigIssue> {
    let (_, problems) = Registry::from_providers(&ctx.providers);
    problems
        .conflicts
        .into_iter()
        .map(|message| ConfigIssue::new("", message))
        .collect()
}

fn components() -> Vec<Component> {
    vec![Component::authenticator_with_config(
        "client-cert",
        "TLS client certificates, per provider (`[provider.auth] method = \"client-cert\"`)",
        ClientCert::build,
    )
    .with_example(serde_json::json!({}))
    .with_validate(conflicts)
    .with_provider_method(
        ProviderMethod::new(
            METHOD,
            "a TLS client certificate, by SHA-256 fingerprint (`cert_sha256`) or subjectAltName (`cert_san`)",
        )
        .key(KEY_SHA256)
        .key(KEY_SAN),
        check_provider,
    )]
}

scimgate_abi::export_plugin!("tls", components);

#[cfg(test)]
mod tests;
