//! Pipelines: assembling routes from a checked config and loaded libraries
//! (docs/architecture.md, "A request's way through"). Running one request
//! through a route is [`route`]'s: [`Route::run`]. Assembly reports every
//! problem at once as located [`Diagnostic`]s; execution never panics
//! (plugins are guarded on their side of the boundary).

use std::collections::HashMap;
use std::sync::Arc;

use abi_stable::std_types::{RResult, RString};
use scimgate_abi::ffi::{ComponentInstance, CreateEnvelope, FfiHostServices_TO, HostServicesBox};
use scimgate_abi::{ComponentKind, ErrorStyle, PluginError};

use crate::config::{Config, Diagnostic, ServerConfig};
use crate::host_services::TracingHostServices;
use crate::loader::{LibraryCache, PluginPath};
use crate::registry::ProviderRegistry;

pub mod route;

pub use route::{
    AuditRecord, AuthenticatorStage, Decision, EndpointStage, PolicyStage, PreStage, ProfileStage,
    Route, RunMode, Stage, TypedStage,
};

/// A stage as its library created it, before it is sorted by kind
/// ([`TypedStage`]); `scimgate token` calls one directly.
pub struct StageInstance {
    pub name: String,
    /// `library/component`.
    pub uses: String,
    pub instance: ComponentInstance,
}

/// Everything one configuration produces; swapped whole on reload.
pub struct Runtime {
    /// Longest mount first, for prefix matching.
    pub routes: Vec<Arc<Route>>,
    pub providers: ProviderRegistry,
    pub server: ServerConfig,
    /// Mounts of the routes whose endpoint declares
    /// `Capability::MintsTokens` (for the token metrics).
    pub token_routes: Vec<String>,
}

impl Runtime {
    /// The route whose mount is the longest prefix of `path` on a segment
    /// boundary.
    pub fn route_for(&self, path: &str) -> Option<&Arc<Route>> {
        self.routes.iter().find(|r| mount_matches(&r.mount, path))
    }

    /// Whether the route mounted at `mount` ends in an endpoint that mints
    /// tokens.
    pub fn mints_tokens(&self, mount: &str) -> bool {
        self.token_routes.iter().any(|m| m == mount)
    }

    /// Every endpoint stage with its name (for `/readyz`).
    pub fn endpoints(&self) -> Vec<(String, Arc<EndpointStage>)> {
        let mut seen = HashMap::new();
        for r in &self.routes {
            seen.entry(r.endpoint.name.clone())
                .or_insert_with(|| r.endpoint.clone());
        }
        let mut list: Vec<_> = seen.into_iter().collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }
}

pub fn mount_matches(mount: &str, path: &str) -> bool {
    if mount == "/" {
        return true;
    }
    match path.strip_prefix(mount) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// How far [`assemble`] goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum AssembleMode {
    /// Load, check and validate; create nothing (`scimgate validate`).
    ValidateOnly,
    /// Also create every stage and build the routes.
    Create,
}

/// [`assemble`] after the config's own checks: when the config already has
/// problems, the plugins still validate what they can (nothing is created),
/// so that every problem is reported at once.
pub fn check_and_assemble(
    config: &Config,
    config_diags: Vec<Diagnostic>,
    plugin_dir: &PluginPath,
    cache: &mut LibraryCache,
    mode: AssembleMode,
) -> Result<Option<Runtime>, Vec<Diagnostic>> {
    if config_diags.is_empty() {
        return assemble(config, plugin_dir, cache, mode);
    }
    let mut diags = config_diags;
    if let Err(more) = assemble(config, plugin_dir, cache, AssembleMode::ValidateOnly) {
        diags.extend(more);
    }
    crate::config::sort_diagnostics(&mut diags);
    Err(diags)
}

/// Loads the libraries the config names, checks every stage and route, and
/// (in `Create` mode) creates the stages. All problems are returned at once.
pub fn assemble(
    config: &Config,
    plugin_dir: &PluginPath,
    cache: &mut LibraryCache,
    mode: AssembleMode,
) -> Result<Option<Runtime>, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    // Provider methods belong to the authenticators that declare them.
    let (providers, method_diags) = crate::config::methods::registry(config, plugin_dir, cache);
    diags.extend(method_diags);
    let factory = StageFactory::new(config, &providers);

    // 1. Libraries and component descriptors.
    let mut kinds: HashMap<&str, (ComponentKind, ErrorStyle)> = HashMap::new();
    for stage in &config.stages {
        let lib = match cache.load(plugin_dir, &stage.library) {
            Ok(lib) => lib,
            Err(message) => {
                diags.push(Diagnostic::error(message, Some(stage.span.clone())));
                continue;
            }
        };
        let Some(desc) = lib.component(&stage.component) else {
            let known: Vec<&str> = lib.components.iter().map(|c| c.name.as_str()).collect();
            diags.push(
                Diagnostic::error(
                    format!(
                        "library `{}` has no component `{}`",
                        stage.library, stage.component
                    ),
                    Some(stage.span.clone()),
                )
                .with_label("unknown component")
                .with_help(format!(
                    "`{}` exports: {}",
                    stage.library,
                    known.join(", ")
                )),
            );
            continue;
        };
        kinds.insert(stage.name.as_str(), (desc.kind, desc.error_style));
        // 2. The plugin's own validation, mapped back to TOML positions.
        let envelope = factory.envelope(stage);
        for issue in (lib.module.validate())(stage.component.as_str().into(), &envelope) {
            let path = issue.path.as_str();
            let span = config
                .span_of_stage_key(&stage.name, path)
                .or_else(|| Some(stage.header_span.clone()));
            let message = if path.is_empty() {
                format!(
                    "stage `{}` ({}/{}): {}",
                    stage.name, stage.library, stage.component, issue.message
                )
            } else {
                format!(
                    "stage `{}` ({}/{}): `{path}`: {}",
                    stage.name, stage.library, stage.component, issue.message
                )
            };
            diags.push(Diagnostic::error(message, span));
        }
    }

    // 3. Routes: kinds and order.
    for route in &config.routes {
        check_route(route, &kinds, &mut diags);
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    if mode == AssembleMode::ValidateOnly {
        return Ok(None);
    }

    // 4. Create the stages that routes use, once each.
    let mut instances: HashMap<&str, TypedStage> = HashMap::new();
    for stage in &config.stages {
        let used = config
            .routes
            .iter()
            .any(|r| r.pipeline.iter().any(|(name, _)| name == &stage.name));
        if !used {
            tracing::warn!(stage = %stage.name, "stage is defined but no route uses it; not created");
            continue;
        }
        let Ok(lib) = cache.load(plugin_dir, &stage.library) else {
            continue;
        };
        match factory.create(lib, stage) {
            Ok(instance) => {
                instances.insert(stage.name.as_str(), TypedStage::from(instance));
            }
            Err(error) => diags.push(Diagnostic::error(
                format!("stage `{}` could not be created: {error}", stage.name),
                Some(stage.span.clone()),
            )),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }

    // 5. Routes of typed stages, sorted by kind once, here.
    let mut routes = Vec::new();
    let mut token_routes = Vec::new();
    for route in &config.routes {
        let mut pre = Vec::new();
        let mut profiles = Vec::new();
        let mut endpoint = None;
        for (name, _) in &route.pipeline {
            match instances.get(name.as_str()) {
                Some(TypedStage::Pre(stage)) => pre.push(stage.clone()),
                Some(TypedStage::Profile(stage)) => profiles.push(stage.clone()),
                Some(TypedStage::Endpoint(stage)) => endpoint = Some(stage.clone()),
                None => {}
            }
        }
        let Some(endpoint) = endpoint else { continue };
        let error_style = kinds
            .get(endpoint.name.as_str())
            .map_or(ErrorStyle::Scim, |(_, style)| *style);
        let mints_tokens = config.stage(&endpoint.name).is_some_and(|stage| {
            crate::config::methods::stage_declares(
                cache,
                plugin_dir,
                stage,
                scimgate_abi::declare::Capability::MintsTokens,
            )
        });
        if mints_tokens {
            token_routes.push(route.path.clone());
        }
        let inline = inline_plan(config, cache, plugin_dir, &route.pipeline, &pre);
        let mut assembled = Route::new(
            route.path.clone(),
            pre,
            profiles,
            endpoint,
            error_style,
            route
                .providers
                .as_ref()
                .map(|ids| ids.iter().map(|(id, _)| id.clone()).collect()),
        );
        if let Some(marked) = inline {
            assembled = assembled.with_inline(marked);
        }
        routes.push(Arc::new(assembled));
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.mount.len()));
    Ok(Some(Runtime {
        routes,
        providers,
        server: config.server.clone(),
        token_routes,
    }))
}

/// Whether a route may run inline on the async workers, and which of its
/// pre-stages are then called marked as inline: `None` when a stage may
/// block and does not know inline calls (a policy or profile declared
/// `may_block`, a library built before the `inline-calls` capability, an
/// endpoint that does not declare it); else the indexes in `pre` of the
/// authenticators that may block but declare `inline-calls`. Endpoints are
/// always called marked.
fn inline_plan(
    config: &Config,
    cache: &mut LibraryCache,
    plugin_dir: &PluginPath,
    pipeline: &[(String, std::ops::Range<usize>)],
    pre: &[PreStage],
) -> Option<Vec<usize>> {
    use scimgate_abi::declare::Capability;
    let mut marked = Vec::new();
    for (name, _) in pipeline {
        let stage = config.stage(name)?;
        let lib = cache.load(plugin_dir, &stage.library).ok()?;
        let descriptor = lib.component(&stage.component)?;
        let (kind, may_block) = (descriptor.kind, descriptor.may_block);
        let knows_inline = crate::config::methods::declarations_of(lib, &stage.component)
            .has(Capability::InlineCalls);
        match kind {
            ComponentKind::Endpoint if !knows_inline => return None,
            ComponentKind::Endpoint => {}
            _ if !may_block => {}
            ComponentKind::Authenticator if knows_inline => {
                marked.push(pre.iter().position(|p| p.name() == name.as_str())?);
            }
            _ => return None,
        }
    }
    Some(marked)
}

/// What `scimgate validate` (and `serve`, in its log) warns about without
/// refusing the configuration: a route that authenticates but names no
/// `providers` while more than one provider is registered serves every one
/// of them. Libraries that do not load are skipped (they are errors
/// elsewhere).
pub fn route_warnings(
    config: &Config,
    plugin_dir: &PluginPath,
    cache: &mut LibraryCache,
) -> Vec<Diagnostic> {
    if config.providers.len() < 2 {
        return Vec::new();
    }
    let mut warnings = Vec::new();
    for route in config.routes.iter().filter(|r| r.providers.is_none()) {
        let authenticates = route.pipeline.iter().any(|(name, _)| {
            config.stage(name).is_some_and(|stage| {
                cache.load(plugin_dir, &stage.library).is_ok_and(|lib| {
                    lib.component(&stage.component)
                        .is_some_and(|c| c.kind == ComponentKind::Authenticator)
                })
            })
        });
        if !authenticates {
            continue;
        }
        let ids: Vec<&str> = config.providers.iter().map(|p| p.id.as_str()).collect();
        warnings.push(
            Diagnostic::error(
                format!(
                    "route `{}` names no `providers`: any of the {} registered providers ({}) may use it",
                    route.path,
                    ids.len(),
                    ids.join(", ")
                ),
                Some(route.span.clone()),
            )
            .with_label("serves every provider")
            .with_help(format!(
                "bind the route to the providers it is for, e.g. providers = [\"{}\"]",
                ids[0]
            )),
        );
    }
    warnings
}

/// Builds create envelopes and stage instances for one configuration.
pub struct StageFactory {
    providers_json: String,
    data_dir: String,
    server_json: String,
    host: HostServicesBox,
}

impl StageFactory {
    pub fn new(config: &Config, providers: &ProviderRegistry) -> Self {
        let server_json = serde_json::json!({
            "listen": config.server.listen.to_string(),
            "trusted_proxies": config.server.trusted_proxies.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
            "public_url": config.server.public_url,
        })
        .to_string();
        StageFactory {
            providers_json: providers.json().to_string(),
            data_dir: config.server.data_dir.display().to_string(),
            server_json,
            host: FfiHostServices_TO::from_ptr(
                abi_stable::std_types::RArc::new(TracingHostServices),
                abi_stable::sabi_trait::TD_Opaque,
            ),
        }
    }

    pub fn envelope(&self, stage: &crate::config::StageConfig) -> CreateEnvelope {
        CreateEnvelope {
            stage: stage.name.as_str().into(),
            config_json: RString::from(stage.config.to_string()),
            providers_json: self.providers_json.as_str().into(),
            data_dir: self.data_dir.as_str().into(),
            server_json: self.server_json.as_str().into(),
        }
    }

    /// Creates one stage through its library's `create`.
    pub fn create(
        &self,
        lib: &crate::loader::LoadedLibrary,
        stage: &crate::config::StageConfig,
    ) -> Result<StageInstance, PluginError> {
        let envelope = self.envelope(stage);
        match (lib.module.create())(
            stage.component.as_str().into(),
            &envelope,
            self.host.clone(),
        ) {
            RResult::ROk(instance) => Ok(StageInstance {
                name: stage.name.clone(),
                uses: format!("{}/{}", stage.library, stage.component),
                instance,
            }),
            RResult::RErr(error) => Err(error),
        }
    }
}

/// Kind order: authenticators and policies (interleaved), then profiles,
/// then exactly one endpoint, last. Without an authenticator the route must
/// say `anonymous = true`.
fn check_route(
    route: &crate::config::RouteConfig,
    kinds: &HashMap<&str, (ComponentKind, ErrorStyle)>,
    diags: &mut Vec<Diagnostic>,
) {
    let mut endpoints = 0;
    let mut authenticators = Vec::new();
    let mut seen_profile = false;
    let last = route.pipeline.len().saturating_sub(1);
    for (i, (name, span)) in route.pipeline.iter().enumerate() {
        let Some((kind, _)) = kinds.get(name.as_str()) else {
            continue; // unknown stage or component: reported already
        };
        match kind {
            ComponentKind::Authenticator | ComponentKind::Policy => {
                if *kind == ComponentKind::Authenticator {
                    authenticators.push(name.as_str());
                }
                if seen_profile {
                    diags.push(
                        Diagnostic::error(
                            format!(
                                "{} `{name}` comes after a profile in route `{}`",
                                kind.as_str(),
                                route.path
                            ),
                            Some(span.clone()),
                        )
                        .with_label("out of order")
                        .with_help(
                            "order: authenticators and policies, then profiles, then one endpoint",
                        ),
                    );
                }
            }
            ComponentKind::Profile => seen_profile = true,
            ComponentKind::Endpoint => {
                endpoints += 1;
                if endpoints > 1 {
                    diags.push(
                        Diagnostic::error(
                            format!("route `{}` has more than one endpoint", route.path),
                            Some(span.clone()),
                        )
                        .with_label("second endpoint")
                        .with_help("a pipeline ends in exactly one endpoint"),
                    );
                } else if i != last {
                    diags.push(
                        Diagnostic::error(
                            format!(
                                "endpoint `{name}` must be the last stage of route `{}`",
                                route.path
                            ),
                            Some(span.clone()),
                        )
                        .with_label("not last")
                        .with_help(
                            "order: authenticators and policies, then profiles, then one endpoint",
                        ),
                    );
                }
            }
        }
    }
    if endpoints == 0 {
        diags.push(
            Diagnostic::error(
                format!("route `{}` has no endpoint", route.path),
                Some(route.span.clone()),
            )
            .with_help("end the pipeline with an endpoint stage, e.g. `scim-server/scim`"),
        );
    }
    if authenticators.is_empty() && !route.anonymous {
        diags.push(
            Diagnostic::error(
                format!("route `{}` has no authenticator", route.path),
                Some(route.span.clone()),
            )
            .with_label("anyone could call this route")
            .with_help(
                "add an authenticator stage, or say `anonymous = true` if that is what you want",
            ),
        );
    }
    if !authenticators.is_empty() && route.anonymous {
        diags.push(
            Diagnostic::error(
                format!(
                    "route `{}` says `anonymous = true` but authenticates with `{}`",
                    route.path,
                    authenticators.join("`, `")
                ),
                Some(route.span.clone()),
            )
            .with_help("remove `anonymous = true` or the authenticators"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_match_on_segment_boundaries() {
        assert!(mount_matches("/iso/scim/v2", "/iso/scim/v2"));
        assert!(mount_matches("/iso/scim/v2", "/iso/scim/v2/Users"));
        assert!(!mount_matches("/iso/scim/v2", "/iso/scim/v20"));
        assert!(!mount_matches("/iso/scim/v2", "/iso/scim"));
        assert!(mount_matches("/", "/anything"));
    }
}
