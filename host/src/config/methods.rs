//! Provider authentication methods, owned by the authenticators that declare
//! them. Once the configuration's plugins are loaded, each provider's
//! `[provider.auth] method` is looked up among the methods they declare
//! (`scimgate_abi::declare::ProviderMethod`), and the method's keys are
//! checked here generically — unknown keys, required `client_id`, one of a
//! secret's hash or plaintext, the hash's form, duplicate unique secrets,
//! relative paths — then by the declaring component's own check. Plaintext
//! secrets are hashed with the one shared helper before any plugin sees
//! them. Every issue points at the provider's own line and column.

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use scimgate_abi::declare::{Capability, Declarations, ProviderMethod, GENERIC_AUTH_KEYS};
use scimgate_abi::secret::{sha256_secret, SecretHash};
use scimgate_abi::std_types::RStr;
use scimgate_abi::ConfigIssue;
use serde_json::{Map, Value};

use super::check::did_you_mean;
use super::{Config, Diagnostic, ProviderConfig, StageConfig};
use crate::loader::{LibraryCache, LoadedLibrary, PluginPath};
use crate::registry::ProviderRegistry;

type Validate<'a> = Box<dyn Fn(&Map<String, Value>) -> Vec<ConfigIssue> + 'a>;

/// One declared method, its owner and its check.
pub struct DeclaredMethod<'a> {
    pub method: ProviderMethod,
    /// `library/component`.
    pub owner: String,
    validate: Validate<'a>,
}

/// The methods the loaded plugins declare, by name.
#[derive(Default)]
pub struct MethodTable<'a> {
    methods: Vec<DeclaredMethod<'a>>,
}

impl<'a> MethodTable<'a> {
    /// Adds a method; the first declaration of a name wins.
    pub fn declare(
        &mut self,
        method: ProviderMethod,
        owner: String,
        validate: impl Fn(&Map<String, Value>) -> Vec<ConfigIssue> + 'a,
    ) {
        if self.get(&method.name).is_none() {
            self.methods.push(DeclaredMethod {
                method,
                owner,
                validate: Box::new(validate),
            });
        }
    }

    pub fn get(&self, name: &str) -> Option<&DeclaredMethod<'a>> {
        self.methods.iter().find(|m| m.method.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .methods
            .iter()
            .map(|m| m.method.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// Every method declared by the components of `libraries`.
    pub fn from_libraries(libraries: impl IntoIterator<Item = &'a LoadedLibrary>) -> Self {
        let mut table = MethodTable::default();
        let mut libraries: Vec<&LoadedLibrary> = libraries.into_iter().collect();
        libraries.sort_by(|a, b| a.name.cmp(&b.name));
        for lib in libraries {
            for component in &lib.components {
                let component = component.name.as_str();
                for method in declarations_of(lib, component).provider_methods {
                    let name = method.name.clone();
                    table.declare(
                        method,
                        format!("{}/{component}", lib.name),
                        move |auth: &Map<String, Value>| {
                            let Some(validate) = lib.module.validate_provider() else {
                                return Vec::new();
                            };
                            let json = Value::Object(auth.clone()).to_string();
                            validate(
                                RStr::from(component),
                                RStr::from(name.as_str()),
                                RStr::from(json.as_str()),
                            )
                            .into_iter()
                            .collect()
                        },
                    );
                }
            }
        }
        table
    }
}

/// What one component of a loaded library declares (nothing for a library
/// built before declarations existed).
pub fn declarations_of(lib: &LoadedLibrary, component: &str) -> Declarations {
    match lib.module.declarations() {
        Some(declarations) => Declarations::from_json(declarations(RStr::from(component)).as_str()),
        None => Declarations::default(),
    }
}

/// Whether `stage`'s component declares `capability` (false when its
/// library cannot be loaded: the assembly reports that).
pub fn stage_declares(
    cache: &mut LibraryCache,
    plugin_dir: &PluginPath,
    stage: &StageConfig,
    capability: Capability,
) -> bool {
    cache
        .load(plugin_dir, &stage.library)
        .is_ok_and(|lib| declarations_of(lib, &stage.component).has(capability))
}

/// The provider registry of a configuration, with every provider's method
/// resolved by the plugins its stages load (see [`resolve_config`]), and
/// the problems found.
pub fn registry(
    config: &Config,
    plugin_dir: &PluginPath,
    cache: &mut LibraryCache,
) -> (ProviderRegistry, Vec<Diagnostic>) {
    let mut config = config.clone();
    let diags = resolve_config(&mut config, plugin_dir, cache);
    (ProviderRegistry::from_config(&config.providers), diags)
}

/// Loads the libraries the configuration's stages name (failures are
/// reported by the assembly, not here) and resolves every provider's method
/// with what they declare. A method none of them declares is looked up in
/// the other libraries of the plugin folder (a provider may be served by an
/// authenticator that does not check its method, or only on some nodes).
/// Returns the problems found.
pub fn resolve_config(
    config: &mut Config,
    plugin_dir: &PluginPath,
    cache: &mut LibraryCache,
) -> Vec<Diagnostic> {
    let mut names: Vec<String> = config.stages.iter().map(|s| s.library.clone()).collect();
    names.sort_unstable();
    names.dedup();
    for name in &names {
        let _ = cache.load(plugin_dir, name);
    }
    let undeclared = {
        let table =
            MethodTable::from_libraries(cache.libraries().filter(|lib| names.contains(&lib.name)));
        config
            .providers
            .iter()
            .any(|p| table.get(&p.auth.method).is_none())
    };
    if undeclared {
        for name in plugin_dir.library_names() {
            if !names.contains(&name) && cache.load(plugin_dir, &name).is_ok() {
                names.push(name);
            }
        }
    }
    let table =
        MethodTable::from_libraries(cache.libraries().filter(|lib| names.contains(&lib.name)));
    let base = config.source.path.parent().map(Path::to_path_buf);
    resolve(&mut config.providers, &table, base.as_deref())
}

/// Checks each provider's method keys against its declaration and fills
/// `auth.table` (declared keys, secrets hashed, paths resolved).
pub fn resolve(
    providers: &mut [ProviderConfig],
    methods: &MethodTable<'_>,
    base: Option<&Path>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    // (hash key, hash) → provider id, for secrets that must tell providers apart.
    let mut unique: HashMap<(String, String), String> = HashMap::new();
    for provider in providers.iter_mut() {
        let auth = &provider.auth;
        let Some(declared) = methods.get(&auth.method) else {
            diags.push(unknown_method(
                &auth.method,
                auth.method_span.clone(),
                methods,
            ));
            continue;
        };
        let method = &declared.method;
        let mut table = Map::new();
        let mut ok = true;
        let mut push = |d: Diagnostic, diags: &mut Vec<Diagnostic>| {
            ok = false;
            diags.push(d);
        };

        for entry in &auth.method_keys {
            if method.all_keys().any(|k| k == entry.key) {
                continue;
            }
            push(
                misplaced_key(&entry.key, entry.key_span.clone(), method, methods),
                &mut diags,
            );
        }
        if method.requires_client_id && auth.client_id.is_none() {
            push(
                Diagnostic::error(
                    format!(
                        "missing `client_id` in [provider.auth] of provider `{}`",
                        provider.id
                    ),
                    auth.header_span.clone(),
                )
                .with_label(format!("method {} needs a client_id", method.name)),
                &mut diags,
            );
        }
        let find = |key: &str| auth.method_keys.iter().find(|e| e.key == key);

        for secret in &method.secrets {
            let hash = find(&secret.hash_key);
            let plain = find(&secret.plain_key);
            let stored = match (hash, plain) {
                (Some(_), Some(plain)) => {
                    push(
                        Diagnostic::error(
                            format!(
                                "give either `{}` or `{}`, not both",
                                secret.hash_key, secret.plain_key
                            ),
                            plain.key_span.clone(),
                        )
                        .with_label(format!("`{}` is set too", secret.hash_key)),
                        &mut diags,
                    );
                    None
                }
                (None, None) => {
                    push(
                        Diagnostic::error(
                            format!(
                                "missing `{}` (or `{}`) in [provider.auth]",
                                secret.hash_key, secret.plain_key
                            ),
                            auth.header_span.clone(),
                        )
                        .with_label("no secret given")
                        .with_help(format!(
                            "`scimgate provider new` prints a `{}`; or write {} = \"${{VARIABLE}}\" or \"${{file:/run/secrets/NAME}}\"",
                            secret.hash_key, secret.plain_key
                        )),
                        &mut diags,
                    );
                    None
                }
                (Some(hash), None) => match hash.value.as_str() {
                    Some(text) => match SecretHash::parse(text) {
                        Ok(_) => Some(text.to_string()),
                        Err(why) => {
                            push(
                                Diagnostic::error(
                                    format!("invalid `{}`", secret.hash_key),
                                    hash.value_span.clone(),
                                )
                                .with_label(why),
                                &mut diags,
                            );
                            None
                        }
                    },
                    None => {
                        push(
                            not_a_string(&secret.hash_key, hash.value_span.clone()),
                            &mut diags,
                        );
                        None
                    }
                },
                (None, Some(plain)) => match plain.value.as_str() {
                    Some("") => {
                        push(
                            Diagnostic::error(
                                format!("`{}` is empty", secret.plain_key),
                                plain.value_span.clone(),
                            )
                            .with_label("an empty secret would let anyone in"),
                            &mut diags,
                        );
                        None
                    }
                    Some(text) => Some(sha256_secret(text)),
                    None => {
                        push(
                            not_a_string(&secret.plain_key, plain.value_span.clone()),
                            &mut diags,
                        );
                        None
                    }
                },
            };
            if let Some(stored) = stored {
                if secret.unique {
                    let key = (secret.hash_key.clone(), stored.clone());
                    if let Some(first) = unique.get(&key) {
                        let span = hash.or(plain).and_then(|e| e.value_span.clone());
                        push(
                            Diagnostic::error(
                                format!(
                                    "provider `{}` has the same `{}` as provider `{first}`",
                                    provider.id, secret.hash_key
                                ),
                                span,
                            )
                            .with_label("this secret must tell providers apart"),
                            &mut diags,
                        );
                    } else {
                        unique.insert(key, provider.id.clone());
                    }
                }
                table.insert(secret.hash_key.clone(), Value::String(stored));
            }
        }

        for key in &method.path_keys {
            let Some(entry) = find(key) else { continue };
            match entry.value.as_str() {
                Some(text) if text.contains("://") || Path::new(text).is_absolute() => {
                    table.insert(key.clone(), Value::String(text.to_string()));
                }
                Some(text) => {
                    let path = match base {
                        Some(base) => base.join(text).display().to_string(),
                        None => text.to_string(),
                    };
                    table.insert(key.clone(), Value::String(path));
                }
                None => push(not_a_string(key, entry.value_span.clone()), &mut diags),
            }
        }
        for key in &method.keys {
            if let Some(entry) = find(key) {
                table.insert(key.clone(), entry.value.clone());
            }
        }
        provider.auth.table = Value::Object(table);
        if !ok {
            continue;
        }

        // The declaring component's own check, on the record as plugins see it.
        let record = provider.to_json();
        let auth_json = record["auth"].as_object().cloned().unwrap_or_default();
        for issue in (declared.validate)(&auth_json) {
            let key = issue.path.as_str().split('.').next().unwrap_or("");
            let auth = &provider.auth;
            let span = auth
                .method_keys
                .iter()
                .find(|e| e.key == key)
                .and_then(|e| e.value_span.clone().or_else(|| e.key_span.clone()))
                .or_else(|| auth.header_span.clone());
            let message = if issue.path.is_empty() {
                format!(
                    "provider `{}` ({}): {}",
                    provider.id, declared.owner, issue.message
                )
            } else {
                format!(
                    "provider `{}` ({}): `{}`: {}",
                    provider.id, declared.owner, issue.path, issue.message
                )
            };
            diags.push(Diagnostic::error(message, span));
        }
    }
    diags
}

fn not_a_string(key: &str, span: Option<Range<usize>>) -> Diagnostic {
    Diagnostic::error(format!("`{key}` must be a string"), span).with_label("expected a string")
}

fn unknown_method(name: &str, span: Option<Range<usize>>, methods: &MethodTable<'_>) -> Diagnostic {
    let names = methods.names();
    let mut help = if names.is_empty() {
        "the plugins in the plugin folder declare no authentication method; put the library \
         of the authenticator that declares it into `server.plugin_dir`"
            .to_string()
    } else {
        format!(
            "methods declared by the plugins in the plugin folder: {}",
            names.join(", ")
        )
    };
    if let Some(close) = did_you_mean(name, names.iter().copied()) {
        help = format!("did you mean `{close}`? {help}");
    }
    Diagnostic::error(format!("unknown authentication method `{name}`"), span)
        .with_label("no loaded plugin declares this method")
        .with_help(help)
}

/// A key the chosen method does not take: another method's, or unknown.
fn misplaced_key(
    key: &str,
    span: Option<Range<usize>>,
    method: &ProviderMethod,
    methods: &MethodTable<'_>,
) -> Diagnostic {
    let owner = methods
        .methods
        .iter()
        .find(|m| m.method.all_keys().any(|k| k == key));
    let takes: Vec<&str> = method.all_keys().collect();
    match owner {
        Some(owner) => Diagnostic::error(
            format!("`{key}` belongs to method {}", owner.method.name),
            span,
        )
        .with_label(format!("not a key of method {}", method.name))
        .with_help(format!(
            "method {} takes: {}",
            method.name,
            takes.join(", ")
        )),
        None => {
            let allowed: Vec<&str> = GENERIC_AUTH_KEYS.iter().copied().chain(takes).collect();
            let mut help = format!("keys of [provider.auth] here: {}", allowed.join(", "));
            if let Some(close) = did_you_mean(key, allowed.iter().copied()) {
                help = format!("did you mean `{close}`? {help}");
            }
            Diagnostic::error(format!("unknown key `{key}` in provider.auth"), span)
                .with_label("unknown key")
                .with_help(help)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_str, SourceFile};

    fn methods() -> MethodTable<'static> {
        let mut table = MethodTable::default();
        table.declare(
            ProviderMethod::new("oauth2-client-credentials", "")
                .secret("client_secret_hash", "client_secret")
                .requires_client_id(),
            "oauth2/client-credentials".into(),
            |_| Vec::new(),
        );
        table.declare(
            ProviderMethod::new("static-bearer", "").unique_secret("token_hash", "token"),
            "oauth2/static-bearer".into(),
            |_| Vec::new(),
        );
        table.declare(
            ProviderMethod::new("api-key", "")
                .key("header")
                .path_key("key_file")
                .unique_secret("key_hash", "key"),
            "api-key/api-key".into(),
            |auth| match auth.get("header").and_then(Value::as_str) {
                Some(h) if h.starts_with("x-") => Vec::new(),
                _ => vec![ConfigIssue::new("header", "must start with `x-`")],
            },
        );
        table
    }

    /// Parses `text` as a file in /etc/scimgate and resolves its providers.
    fn resolved(text: &str) -> (Vec<ProviderConfig>, Vec<String>) {
        let source = SourceFile::new("/etc/scimgate/scimgate.toml", text);
        let mut config = match parse_str(source.clone(), &|_| None) {
            Ok(config) => config,
            Err((_, diags)) => panic!("config errors: {diags:?}"),
        };
        let diags = resolve(
            &mut config.providers,
            &methods(),
            Some(Path::new("/etc/scimgate")),
        );
        let shown = diags
            .iter()
            .map(|d| {
                let at = d.span.clone().map(|s| &text[s]).unwrap_or("<none>");
                format!("{} @ {at}", d.message)
            })
            .collect();
        (config.providers, shown)
    }

    const PROVIDER: &str = "[[provider]]\nid = \"p\"\n[provider.auth]\n";

    #[test]
    fn plaintext_secrets_are_hashed_and_dropped() {
        let (providers, diags) = resolved(&format!(
            "{PROVIDER}method = \"oauth2-client-credentials\"\nclient_id = \"c\"\nclient_secret = \"s3cret\"\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        let table = &providers[0].auth.table;
        assert_eq!(table["client_secret_hash"], sha256_secret("s3cret"));
        assert!(table.get("client_secret").is_none());
        let json = providers[0].to_json().to_string();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!format!("{:?}", providers[0]).contains("s3cret"));
    }

    #[test]
    fn every_problem_points_at_the_provider_line() {
        let (_, diags) = resolved(&format!(
            "{PROVIDER}method = \"oauth2-client-credentials\"\nclient_secret = \"a\"\nclient_secret_hash = \"sha256:00\"\ntoken_hash = \"x\"\nscops = [\"a\"]\n"
        ));
        let joined = diags.join("\n");
        assert!(
            joined.contains(
                "missing `client_id` in [provider.auth] of provider `p` @ [provider.auth]"
            ),
            "{joined}"
        );
        assert!(
            joined.contains(
                "give either `client_secret_hash` or `client_secret`, not both @ client_secret"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("`token_hash` belongs to method static-bearer @ token_hash"),
            "{joined}"
        );
        assert!(
            joined.contains("unknown key `scops` in provider.auth @ scops"),
            "{joined}"
        );
        assert_eq!(diags.len(), 4, "{joined}");
    }

    #[test]
    fn hashes_are_checked_and_unique_secrets_tell_providers_apart() {
        let hash = sha256_secret("t");
        let (_, diags) = resolved(&format!(
            "{PROVIDER}method = \"static-bearer\"\ntoken_hash = \"{hash}\"\n\
             [[provider]]\nid = \"q\"\n[provider.auth]\nmethod = \"static-bearer\"\ntoken = \"t\"\n\
             [[provider]]\nid = \"r\"\n[provider.auth]\nmethod = \"static-bearer\"\ntoken_hash = \"plain\"\n"
        ));
        let joined = diags.join("\n");
        assert!(
            joined.contains("provider `q` has the same `token_hash` as provider `p` @ \"t\""),
            "{joined}"
        );
        assert!(
            joined.contains("invalid `token_hash` @ \"plain\""),
            "{joined}"
        );
        assert_eq!(diags.len(), 2, "{joined}");
    }

    #[test]
    fn unknown_methods_name_what_the_plugins_declare() {
        let (_, diags) = resolved(&format!("{PROVIDER}method = \"api-kye\"\n"));
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].starts_with("unknown authentication method `api-kye` @ \"api-kye\""));
        let source = SourceFile::new("x.toml", format!("{PROVIDER}method = \"api-kye\"\n"));
        let mut config = parse_str(source, &|_| None).unwrap();
        let diag = &resolve(&mut config.providers, &methods(), None)[0];
        let help = diag.help.clone().unwrap_or_default();
        assert!(help.contains("did you mean `api-key`?"), "{help}");
        assert!(
            help.contains("api-key, oauth2-client-credentials, static-bearer"),
            "{help}"
        );
    }

    #[test]
    fn the_declaring_component_checks_values_and_paths_resolve() {
        let (providers, diags) = resolved(&format!(
            "{PROVIDER}method = \"api-key\"\nkey = \"k\"\nheader = \"authorization\"\nkey_file = \"keys/p.txt\"\n"
        ));
        assert_eq!(
            diags,
            ["provider `p` (api-key/api-key): `header`: must start with `x-` @ \"authorization\""]
        );
        assert_eq!(
            providers[0].auth.table["key_file"],
            "/etc/scimgate/keys/p.txt"
        );
        let (providers, diags) = resolved(&format!(
            "{PROVIDER}method = \"api-key\"\nkey = \"k\"\nheader = \"x-api-key\"\nkey_file = \"https://k.example/p\"\n"
        ));
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(providers[0].auth.table["key_file"], "https://k.example/p");
        assert_eq!(providers[0].auth.table["header"], "x-api-key");
    }
}
