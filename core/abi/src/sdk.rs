//! The plugin author's side of the contract: one plain Rust trait per
//! component kind (one required method each, the rest defaulted), a
//! [`Component`] table built with typed, validated configs, and the
//! [`export_plugin!`](crate::export_plugin) macro. Every call from the host
//! is wrapped in `catch_unwind`, so a panic in a plugin becomes a 500 for one
//! request and never unwinds across the FFI boundary.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RStr, RString, RVec};
use serde::de::DeserializeOwned;

use crate::declare::{Capability, Declarations, ProviderMethod, GENERIC_AUTH_KEYS};
use crate::error::{ConfigIssue, PluginError};
pub use crate::ffi::StorePool;
use crate::ffi::{
    self, AuthenticatorBox, ComponentDescriptor, ComponentInstance, CreateEnvelope, EndpointBox,
    HostServicesBox, PolicyBox, ProfileBox,
};
use crate::types::{
    AuthOutcome, Caller, ComponentKind, ErrorStyle, LogLevel, PolicyDecision, Request, Response,
};

/// Establishes who is calling. Return [`AuthOutcome::NotMine`] for
/// credentials of another kind so the next authenticator can try.
pub trait Authenticator: Send + Sync + 'static {
    fn authenticate(&self, req: &Request) -> AuthOutcome;
    /// For a component declared [`Component::may_block`]: whether
    /// authenticating this request would block (an argon2 hash not in a
    /// cache, a JWKS fetch). Asked only when the host calls the stage inline
    /// ([`Request::is_inline`]); `true` makes the SDK answer
    /// [`PluginError::would_block`] for you, and the host calls
    /// `authenticate` again on its blocking pool. Decide from memory only,
    /// without side effects. The default: it would.
    fn blocks_on(&self, _req: &Request) -> bool {
        true
    }
    /// Authenticates an inline call: `None` when it would block (the SDK
    /// then answers [`PluginError::would_block`] and the host calls
    /// `authenticate` on its blocking pool). The default asks
    /// [`Authenticator::blocks_on`], then `authenticate`; one that must
    /// read the credentials to decide overrides it to read them once.
    fn authenticate_inline(&self, req: &Request) -> Option<AuthOutcome> {
        (!self.blocks_on(req)).then(|| self.authenticate(req))
    }
    /// The `WWW-Authenticate` challenge sent with a 401 when no authenticator
    /// of the route recognised the request, e.g. `Bearer realm="scim"`.
    fn challenge(&self) -> Option<String> {
        None
    }
}

/// Decides whether a request may go on. Pure: (request, caller, now) in,
/// decision out; `req.received_at_unix_ms` is "now".
pub trait Policy: Send + Sync + 'static {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision;
}

/// Rewrites requests from an IGA client's dialect and responses back.
/// Both directions default to "leave as is": implement the one you need.
pub trait Profile: Send + Sync + 'static {
    fn inbound(&self, _req: &mut Request, _caller: Caller<'_>) -> Result<(), PluginError> {
        Ok(())
    }
    fn outbound(
        &self,
        _req: &Request,
        _caller: Caller<'_>,
        _resp: &mut Response,
    ) -> Result<(), PluginError> {
        Ok(())
    }
}

/// Produces the response. May do blocking I/O: the host runs it on its
/// blocking pool, unless [`Endpoint::blocks_on`] says a request does not
/// block. An `Err` is rendered by the host in the route's style.
pub trait Endpoint: Send + Sync + 'static {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> Result<Response, PluginError>;
    /// Whether handling this request would block (network, disk writes,
    /// long locks, waiting). Asked when the host calls the endpoint inline,
    /// on an async worker ([`Request::is_inline`]): `false` lets it answer
    /// there, without a hand-off to another thread (the fast path of reads
    /// from memory or a local database); `true` makes the SDK answer
    /// [`PluginError::would_block`] and the host calls `handle` again on
    /// its blocking pool. Decide cheaply, without side effects. The
    /// default: it would.
    fn blocks_on(&self, _req: &Request) -> bool {
        true
    }
    /// Answers an inline call: `None` when it would block (the SDK then
    /// answers [`PluginError::would_block`] and the host calls `handle` on
    /// its blocking pool), else the answer. The default asks
    /// [`Endpoint::blocks_on`], then `handle`; an endpoint that must parse
    /// a request to decide overrides it to parse once and run what it
    /// parsed.
    fn handle_inline(
        &self,
        req: &Request,
        caller: Caller<'_>,
    ) -> Option<Result<Response, PluginError>> {
        (!self.blocks_on(req)).then(|| self.handle(req, caller))
    }
    /// Readiness of what the endpoint depends on; `Err(reason)` when not.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// What a component is created from, as plain Rust values.
pub struct CreateContext {
    /// The stage's name in the TOML (`[stage.NAME]`).
    pub stage: String,
    /// The stage table without `use`.
    pub config: serde_json::Value,
    /// All `[[provider]]` records (id, name, active, …, `auth` table).
    pub providers: Vec<serde_json::Value>,
    pub data_dir: PathBuf,
    /// `[server]` facts (`listen`, `trusted_proxies`).
    pub server: serde_json::Value,
    /// Logging towards the host; `None` in validation.
    pub host: Option<HostHandle>,
}

impl CreateContext {
    /// Builds a context from the FFI envelope; malformed JSON becomes an
    /// empty value (the host always sends valid JSON).
    pub fn from_envelope(env: &CreateEnvelope, host: Option<HostHandle>) -> Self {
        let parse =
            |s: &RString| serde_json::from_str(s.as_str()).unwrap_or(serde_json::Value::Null);
        let providers = match parse(&env.providers_json) {
            serde_json::Value::Array(items) => items,
            _ => Vec::new(),
        };
        CreateContext {
            stage: env.stage.to_string(),
            config: parse(&env.config_json),
            providers,
            data_dir: PathBuf::from(env.data_dir.as_str()),
            server: parse(&env.server_json),
            host,
        }
    }

    /// A string value of the stage config, by top-level key.
    pub fn config_str(&self, key: &str) -> Option<&str> {
        self.config.get(key).and_then(|v| v.as_str())
    }

    /// The stage config as a typed value. Use `#[serde(deny_unknown_fields)]`
    /// on the type; errors name the key path. With a derived schema (every
    /// typed constructor has one), prefer [`CreateContext::deserialize_checked`]:
    /// it reports every problem, not only serde's first.
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigIssue> {
        deserialize_config(&self.config)
    }

    /// The stage config as a typed value, checked against the schema
    /// `schemars` derives for `T` first: every problem at once, located.
    pub fn deserialize_checked<T: DeserializeOwned + schemars::JsonSchema>(
        &self,
    ) -> Result<T, Vec<ConfigIssue>> {
        crate::schema::check_config(&crate::schema::schema_of::<T>(), &self.config)
    }
}

/// Config issues as one line of text (`key: message; key: message`), for
/// the error of a create that validation did not run before.
fn config_issues_text(issues: &[ConfigIssue]) -> String {
    let parts: Vec<String> = issues
        .iter()
        .map(|issue| {
            if issue.path.is_empty() {
                issue.message.to_string()
            } else {
                format!("{}: {}", issue.path, issue.message)
            }
        })
        .collect();
    format!("config {}", parts.join("; "))
}

/// Deserializes a config value, turning the first error into a located
/// [`ConfigIssue`] (key path + serde's message). Typed constructors check
/// the derived schema first ([`crate::schema::check_config`]), so this is
/// serde's part: the value checks only serde can do.
pub fn deserialize_config<T: DeserializeOwned>(
    value: &serde_json::Value,
) -> Result<T, ConfigIssue> {
    let value = if value.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        value.clone()
    };
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let message = err.into_inner().to_string();
        ConfigIssue::new(path, message)
    })
}

/// A cloneable handle to the host's services (logging).
#[derive(Clone)]
pub struct HostHandle {
    inner: HostServicesBox,
}

impl HostHandle {
    pub fn new(inner: HostServicesBox) -> Self {
        HostHandle { inner }
    }

    pub fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.inner
            .log(level, RStr::from(target), RStr::from(message));
    }

    pub fn max_level(&self) -> LogLevel {
        self.inner.max_level()
    }

    /// Reports one store operation to the host (see [`report_store_op`]).
    pub fn report_store_op(
        &self,
        operation: &str,
        elapsed: std::time::Duration,
        error_kind: Option<&str>,
        pool: Option<StorePool>,
    ) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.inner.report_store_op(
            RStr::from(operation),
            nanos,
            RStr::from(error_kind.unwrap_or("")),
            pool.into(),
        );
    }

    /// Reports one change-feed subscriber's state to the host (see
    /// [`report_change_lag`]).
    pub fn report_change_lag(&self, subscriber: &str, lag: u64, dead_lettered: bool) {
        self.inner
            .report_change_lag(RStr::from(subscriber), lag, dead_lettered);
    }
}

/// Tells the host about one store operation of the request in progress on
/// this thread, for its `scimgate_store_*` metrics (docs/deployment.md,
/// "Metrics"): `operation` (`get`, `search`, `count`, `members`,
/// `create`, `replace`, `patch`, `delete`, `bulk`, `write`, `migrate`; the
/// host counts other names as `other`), how long it took, `error_kind`
/// (`None` when it succeeded; `unavailable`, `internal`, `conflict` or
/// `client`, else counted as `other`) and the state of the store's
/// connection pool after it (`None` for a store without one).
///
/// A no-op until a component of this library has been created by a host
/// (unit tests, code running outside a plugin). Costs one call into the
/// host: a few atomic adds there, no allocation.
pub fn report_store_op(
    operation: &str,
    elapsed: std::time::Duration,
    error_kind: Option<&str>,
    pool: Option<StorePool>,
) {
    if let Some(host) = crate::trace_bridge::host() {
        host.report_store_op(operation, elapsed, error_kind, pool);
    }
}

/// Tells the host the state of one change-feed subscriber, for its gauges
/// `scimgate_change_subscriber_lag` (`lag`: change-log entries the
/// subscriber has not yet acknowledged) and
/// `scimgate_change_subscriber_dead_lettered` (docs/deployment.md,
/// "Metrics"). Report after every delivery attempt and state change; the
/// host keeps the last value per subscriber. `subscriber` is the name from
/// the configuration (the host keeps at most 256 distinct names).
///
/// Counted under the route of the request in progress on this thread, and
/// under `route="(none)"` when called outside a request (a delivery
/// thread): report a given subscriber from one kind of thread only, so
/// that it has one series.
///
/// A no-op until a component of this library has been created by a host.
pub fn report_change_lag(subscriber: &str, lag: u64, dead_lettered: bool) {
    if let Some(host) = crate::trace_bridge::host() {
        host.report_change_lag(subscriber, lag, dead_lettered);
    }
}

type CreateFn = dyn Fn(&CreateContext) -> Result<ComponentInstance, PluginError> + Send + Sync;
type ValidateFn = dyn Fn(&CreateContext) -> Vec<ConfigIssue> + Send + Sync;
/// Checks the method-specific keys of one `[provider.auth]` table.
type ProviderValidateFn =
    dyn Fn(&serde_json::Map<String, serde_json::Value>) -> Vec<ConfigIssue> + Send + Sync;

/// One component of a library: its descriptor, config validation and
/// constructor.
pub struct Component {
    pub name: String,
    pub kind: ComponentKind,
    pub description: String,
    pub version: String,
    pub config_schema: String,
    pub error_style: ErrorStyle,
    pub may_block: bool,
    /// Capabilities and provider methods (see [`crate::declare`]).
    pub declarations: Declarations,
    validate: Box<ValidateFn>,
    create: Box<CreateFn>,
    provider_validators: Vec<(String, Box<ProviderValidateFn>)>,
}

macro_rules! component_ctor {
    ($(#[$doc:meta])* $fn_name:ident, $typed:ident, $trait:ident, $kind:ident, $wrap:ident) => {
        $(#[$doc])*
        pub fn $fn_name<T, F>(name: &str, description: &str, build: F) -> Component
        where
            T: $trait,
            F: Fn(&CreateContext) -> Result<T, PluginError> + Send + Sync + 'static,
        {
            let stage_name = name.to_string();
            Component::new(name, description, ComponentKind::$kind, move |ctx| {
                let inner = build(ctx)?;
                Ok($wrap(inner, stage_name.clone()))
            })
        }

        /// Like the untyped constructor, with the stage config deserialized
        /// into `C`. The component's `config_schema` is the JSON Schema
        /// `schemars` derives for `C`; validation checks the config against
        /// it first (every problem at once, each located by key path), then
        /// deserializes it (serde's value checks) before anything is created.
        pub fn $typed<C, T, F>(name: &str, description: &str, build: F) -> Component
        where
            C: DeserializeOwned + schemars::JsonSchema + 'static,
            T: $trait,
            F: Fn(C, &CreateContext) -> Result<T, PluginError> + Send + Sync + 'static,
        {
            let stage_name = name.to_string();
            let schema = std::sync::Arc::new(crate::schema::schema_of::<C>());
            let for_create = schema.clone();
            let mut component = Component::new(name, description, ComponentKind::$kind, move |ctx| {
                let config: C = crate::schema::check_config(&for_create, &ctx.config)
                    .map_err(|issues| PluginError::new(500, config_issues_text(&issues)))?;
                let inner = build(config, ctx)?;
                Ok($wrap(inner, stage_name.clone()))
            });
            component.config_schema = schema.to_string();
            component.with_validate(move |ctx| {
                match crate::schema::check_config::<C>(&schema, &ctx.config) {
                    Ok(_) => Vec::new(),
                    Err(issues) => issues,
                }
            })
        }
    };
}

impl Component {
    fn new<F>(name: &str, description: &str, kind: ComponentKind, create: F) -> Component
    where
        F: Fn(&CreateContext) -> Result<ComponentInstance, PluginError> + Send + Sync + 'static,
    {
        Component {
            name: name.to_string(),
            kind,
            description: description.to_string(),
            version: String::new(),
            config_schema: "{}".to_string(),
            error_style: ErrorStyle::Scim,
            may_block: false,
            declarations: Declarations::default(),
            validate: Box::new(|_| Vec::new()),
            create: Box::new(create),
            provider_validators: Vec::new(),
        }
    }

    component_ctor!(
        /// An authenticator component.
        authenticator, authenticator_with_config, Authenticator, Authenticator, wrap_authenticator
    );
    component_ctor!(
        /// A policy component.
        policy, policy_with_config, Policy, Policy, wrap_policy
    );
    component_ctor!(
        /// A profile component.
        profile, profile_with_config, Profile, Profile, wrap_profile
    );
    component_ctor!(
        /// An endpoint component.
        endpoint, endpoint_with_config, Endpoint, Endpoint, wrap_endpoint
    );

    /// Adds a validation step; its issues are reported with the others.
    pub fn with_validate<F>(mut self, validate: F) -> Component
    where
        F: Fn(&CreateContext) -> Vec<ConfigIssue> + Send + Sync + 'static,
    {
        let previous = std::mem::replace(&mut self.validate, Box::new(|_| Vec::new()));
        self.validate = Box::new(move |ctx| {
            let mut issues = previous(ctx);
            issues.extend(validate(ctx));
            issues
        });
        self
    }

    /// The JSON Schema of the stage config, shown by `scimgate plugins`.
    pub fn with_schema(mut self, schema: &str) -> Component {
        self.config_schema = schema.to_string();
        self
    }

    /// A complete, valid example of the stage config (without `use`). It is
    /// published in the config schema as JSON Schema `examples` (editors
    /// offer it; `scimgate config schema` prints it) and the conformance
    /// suite checks that it validates.
    pub fn with_example(mut self, example: serde_json::Value) -> Component {
        let mut schema: serde_json::Value = serde_json::from_str(&self.config_schema)
            .unwrap_or_else(|_| serde_json::Value::Object(Default::default()));
        if let Some(map) = schema.as_object_mut() {
            map.insert("examples".into(), serde_json::Value::Array(vec![example]));
        }
        self.config_schema = schema.to_string();
        self
    }

    /// How the host renders errors on routes this endpoint ends (default:
    /// SCIM error bodies).
    pub fn with_error_style(mut self, style: ErrorStyle) -> Component {
        self.error_style = style;
        self
    }

    /// Declares that calls may block (CPU-heavy hashing, network I/O): the
    /// host then runs routes using this component on its blocking pool.
    pub fn may_block(mut self) -> Component {
        self.may_block = true;
        self
    }

    /// Declares a capability the host's commands look for (`Migrates`:
    /// `scimgate migrate` creates the stage; `MintsTokens`: `scimgate token`
    /// mints with it).
    pub fn with_capability(mut self, capability: Capability) -> Component {
        self.declarations.capabilities.push(capability);
        self
    }

    /// Declares a provider authentication method this authenticator owns:
    /// `[provider.auth] method = "<name>"` with the method's keys. The host
    /// reports unknown keys and checks and hashes the declared secrets;
    /// `validate` checks the values (its issue paths are keys of the table,
    /// which the host locates in the provider's own lines).
    pub fn with_provider_method<F>(mut self, method: ProviderMethod, validate: F) -> Component
    where
        F: Fn(&serde_json::Map<String, serde_json::Value>) -> Vec<ConfigIssue>
            + Send
            + Sync
            + 'static,
    {
        self.provider_validators
            .push((method.name.clone(), Box::new(validate)));
        self.declarations.provider_methods.push(method);
        self
    }

    /// Like [`Component::with_provider_method`], with the method-specific
    /// keys deserialized into `C` (generic keys such as `allowed_ips` are
    /// removed first, so `C` may use `#[serde(deny_unknown_fields)]`).
    pub fn with_provider_method_typed<C: DeserializeOwned + 'static>(
        self,
        method: ProviderMethod,
    ) -> Component {
        self.with_provider_method(method, |auth| {
            match deserialize_config::<C>(&serde_json::Value::Object(method_keys(auth))) {
                Ok(_) => Vec::new(),
                Err(issue) => vec![issue],
            }
        })
    }

    /// Runs the provider method validation (guarded).
    pub fn validate_provider(
        &self,
        method: &str,
        auth: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<ConfigIssue> {
        let Some((_, validate)) = self.provider_validators.iter().find(|(m, _)| m == method) else {
            return vec![ConfigIssue::new(
                "method",
                format!(
                    "component `{}` does not declare the authentication method `{method}`",
                    self.name
                ),
            )];
        };
        match catch_unwind(AssertUnwindSafe(|| validate(auth))) {
            Ok(issues) => issues,
            Err(payload) => vec![ConfigIssue::new(
                "",
                format!(
                    "the plugin panicked while checking the provider: {}",
                    panic_message(&payload)
                ),
            )],
        }
    }

    pub fn with_version(mut self, version: &str) -> Component {
        self.version = version.to_string();
        self
    }

    pub fn descriptor(&self, library_version: &str) -> ComponentDescriptor {
        ComponentDescriptor {
            name: self.name.as_str().into(),
            kind: self.kind,
            version: if self.version.is_empty() {
                library_version
            } else {
                &self.version
            }
            .into(),
            description: self.description.as_str().into(),
            config_schema: self.config_schema.as_str().into(),
            error_style: self.error_style,
            may_block: self.may_block,
        }
    }

    /// What the component declares: its own declarations, and
    /// `inline-calls` for the authenticators and endpoints, whose SDK
    /// wrappers answer inline calls ([`Authenticator::authenticate_inline`],
    /// [`Endpoint::handle_inline`]).
    pub fn all_declarations(&self) -> Declarations {
        let mut declared = self.declarations.clone();
        let knows_inline = matches!(
            self.kind,
            ComponentKind::Authenticator | ComponentKind::Endpoint
        );
        if knows_inline && !declared.has(Capability::InlineCalls) {
            declared.capabilities.push(Capability::InlineCalls);
        }
        declared
    }

    /// Runs validation (guarded).
    pub fn validate(&self, ctx: &CreateContext) -> Vec<ConfigIssue> {
        match catch_unwind(AssertUnwindSafe(|| (self.validate)(ctx))) {
            Ok(issues) => issues,
            Err(payload) => vec![ConfigIssue::new(
                "",
                format!(
                    "the plugin panicked while validating: {}",
                    panic_message(&payload)
                ),
            )],
        }
    }

    /// Creates an instance (guarded).
    pub fn create(&self, ctx: &CreateContext) -> Result<ComponentInstance, PluginError> {
        match catch_unwind(AssertUnwindSafe(|| (self.create)(ctx))) {
            Ok(result) => result,
            Err(payload) => Err(panic_error(&self.name, &payload)),
        }
    }
}

/// The method-specific part of a `[provider.auth]` table: every key but the
/// generic ones of the provider record.
pub fn method_keys(
    auth: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    auth.iter()
        .filter(|(k, _)| !GENERIC_AUTH_KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A library: its name, version and components. The export macro keeps one
/// in a static.
pub struct Library {
    pub name: String,
    pub version: String,
    pub components: Vec<Component>,
}

impl Library {
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn descriptors(&self) -> RVec<ComponentDescriptor> {
        self.components
            .iter()
            .map(|c| c.descriptor(&self.version))
            .collect()
    }

    pub fn validate(&self, component: &str, env: &CreateEnvelope) -> RVec<ConfigIssue> {
        match self.component(component) {
            None => vec![unknown_component(&self.name, component, self)].into(),
            Some(c) => c.validate(&CreateContext::from_envelope(env, None)).into(),
        }
    }

    pub fn create(
        &self,
        component: &str,
        env: &CreateEnvelope,
        host: HostServicesBox,
    ) -> RResult<ComponentInstance, PluginError> {
        let host = HostHandle::new(host);
        crate::trace_bridge::install(&host);
        let result = match self.component(component) {
            None => {
                let issue = unknown_component(&self.name, component, self);
                Err(PluginError::new(500, issue.message.to_string()))
            }
            Some(c) => c.create(&CreateContext::from_envelope(env, Some(host))),
        };
        result.into()
    }
}

impl Library {
    /// A component's declarations as JSON (`{}` for an unknown component).
    pub fn declarations(&self, component: &str) -> RString {
        match self.component(component) {
            Some(c) => c.all_declarations().to_json().into(),
            None => "{}".into(),
        }
    }

    pub fn validate_provider(
        &self,
        component: &str,
        method: &str,
        auth_json: &str,
    ) -> RVec<ConfigIssue> {
        let Some(c) = self.component(component) else {
            return vec![unknown_component(&self.name, component, self)].into();
        };
        let auth = match serde_json::from_str(auth_json) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => {
                return vec![ConfigIssue::new(
                    "",
                    "the host sent an unreadable provider table",
                )]
                .into()
            }
        };
        c.validate_provider(method, &auth).into()
    }
}

fn unknown_component(library: &str, component: &str, lib: &Library) -> ConfigIssue {
    let known: Vec<&str> = lib.components.iter().map(|c| c.name.as_str()).collect();
    ConfigIssue::new(
        "use",
        format!(
            "library `{library}` has no component `{component}` (it has: {})",
            known.join(", ")
        ),
    )
}

/// Runs `f`, turning a panic into `fallback(message)`.
pub fn guard<R>(f: impl FnOnce() -> R, fallback: impl FnOnce(String) -> R) -> R {
    quiet_panics::install();
    let _inside = quiet_panics::Inside::enter();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => fallback(panic_message(&payload)),
    }
}

/// A panic caught by [`guard`] is reported by the host (a 500, a located
/// config error) with its message; the default panic hook would also print
/// it, with a backtrace, straight to the process's stderr, outside the
/// host's log format. This hook sends guarded panics to the host's log (one
/// line with the location) and leaves every other panic to the previous
/// hook, so a plugin linked in-process changes nothing for the host.
mod quiet_panics {
    use std::cell::Cell;
    use std::sync::Once;

    thread_local! {
        static DEPTH: Cell<u32> = const { Cell::new(0) };
    }

    pub(super) struct Inside;

    impl Inside {
        pub(super) fn enter() -> Inside {
            DEPTH.with(|d| d.set(d.get() + 1));
            Inside
        }
    }

    impl Drop for Inside {
        fn drop(&mut self) {
            DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        }
    }

    pub(super) fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if DEPTH.with(Cell::get) == 0 {
                    return previous(info);
                }
                if let Some(host) = crate::trace_bridge::host() {
                    let at = info
                        .location()
                        .map(|l| format!(" at {}:{}", l.file(), l.line()))
                        .unwrap_or_default();
                    host.log(
                        crate::types::LogLevel::Error,
                        "scimgate::plugin",
                        &format!(
                            "a plugin panicked{at} (contained; the host reports it): {}",
                            super::panic_message_of(info.payload())
                        ),
                    );
                }
            }));
        });
    }
}

fn panic_message_of(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

fn panic_message(payload: &Box<dyn Any + Send>) -> String {
    panic_message_of(payload.as_ref())
}

fn panic_error(component: &str, payload: &Box<dyn Any + Send>) -> PluginError {
    panic_error_message(component, panic_message(payload))
}

fn panic_error_message(component: &str, message: String) -> PluginError {
    PluginError::internal(format!("component `{component}` panicked: {message}")).with_code("panic")
}

struct GuardedAuthenticator<T>(Arc<T>, String);
struct GuardedPolicy<T>(Arc<T>, String);
struct GuardedProfile<T>(Arc<T>, String);
struct GuardedEndpoint<T>(Arc<T>, String);

/// Boxes an in-process authenticator as the FFI object a library hands the
/// host, with the same panic guard: for hosts and harnesses that put stages
/// of their own into a pipeline (`scimgate explain`'s stand-ins).
pub fn authenticator_box<T: Authenticator>(inner: T, name: &str) -> AuthenticatorBox {
    ffi::FfiAuthenticator_TO::from_value(
        GuardedAuthenticator(Arc::new(inner), name.to_string()),
        TD_Opaque,
    )
}

/// As [`authenticator_box`], for a policy.
pub fn policy_box<T: Policy>(inner: T, name: &str) -> PolicyBox {
    ffi::FfiPolicy_TO::from_value(GuardedPolicy(Arc::new(inner), name.to_string()), TD_Opaque)
}

fn wrap_authenticator<T: Authenticator>(inner: T, name: String) -> ComponentInstance {
    let boxed: AuthenticatorBox = ffi::FfiAuthenticator_TO::from_value(
        GuardedAuthenticator(Arc::new(inner), name),
        TD_Opaque,
    );
    ComponentInstance::Authenticator(boxed)
}

fn wrap_policy<T: Policy>(inner: T, name: String) -> ComponentInstance {
    let boxed: PolicyBox =
        ffi::FfiPolicy_TO::from_value(GuardedPolicy(Arc::new(inner), name), TD_Opaque);
    ComponentInstance::Policy(boxed)
}

fn wrap_profile<T: Profile>(inner: T, name: String) -> ComponentInstance {
    let boxed: ProfileBox =
        ffi::FfiProfile_TO::from_value(GuardedProfile(Arc::new(inner), name), TD_Opaque);
    ComponentInstance::Profile(boxed)
}

fn wrap_endpoint<T: Endpoint>(inner: T, name: String) -> ComponentInstance {
    let boxed: EndpointBox =
        ffi::FfiEndpoint_TO::from_value(GuardedEndpoint(Arc::new(inner), name), TD_Opaque);
    ComponentInstance::Endpoint(boxed)
}

impl<T: Authenticator> ffi::FfiAuthenticator for GuardedAuthenticator<T> {
    fn authenticate(&self, req: &Request) -> AuthOutcome {
        guard(
            || match req.is_inline() {
                true => self
                    .0
                    .authenticate_inline(req)
                    .unwrap_or_else(|| AuthOutcome::Rejected(PluginError::would_block())),
                false => self.0.authenticate(req),
            },
            |m| AuthOutcome::Rejected(panic_error_message(&self.1, m)),
        )
    }

    fn challenge(&self) -> RString {
        guard(|| self.0.challenge().unwrap_or_default(), |_| String::new()).into()
    }
}

impl<T: Policy> ffi::FfiPolicy for GuardedPolicy<T> {
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision {
        guard(
            || self.0.check(req, caller),
            |m| PolicyDecision::Deny(panic_error_message(&self.1, m)),
        )
    }
}

impl<T: Profile> ffi::FfiProfile for GuardedProfile<T> {
    fn inbound(&self, req: &mut Request, caller: Caller<'_>) -> RResult<(), PluginError> {
        guard(
            || self.0.inbound(req, caller),
            |m| Err(panic_error_message(&self.1, m)),
        )
        .into()
    }

    fn outbound(
        &self,
        req: &Request,
        caller: Caller<'_>,
        resp: &mut Response,
    ) -> RResult<(), PluginError> {
        guard(
            || self.0.outbound(req, caller, resp),
            |m| Err(panic_error_message(&self.1, m)),
        )
        .into()
    }
}

impl<T: Endpoint> ffi::FfiEndpoint for GuardedEndpoint<T> {
    fn handle(&self, req: &Request, caller: Caller<'_>) -> RResult<Response, PluginError> {
        guard(
            || match req.is_inline() {
                true => self
                    .0
                    .handle_inline(req, caller)
                    .unwrap_or_else(|| Err(PluginError::would_block())),
                false => self.0.handle(req, caller),
            },
            |m| Err(panic_error_message(&self.1, m)),
        )
        .into()
    }

    fn ready(&self) -> RResult<(), RString> {
        guard(
            || self.0.ready(),
            |m| Err(format!("readiness check panicked: {m}")),
        )
        .map_err(RString::from)
        .into()
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space,
/// `%XX` bytes; invalid escapes are kept as written).
pub fn form_decode(input: &str) -> Vec<(String, String)> {
    input
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Percent-decodes a string; with `plus_as_space`, `+` becomes a space.
/// Invalid UTF-8 is replaced (U+FFFD).
pub fn percent_decode(input: &str, plus_as_space: bool) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_as_space => out.push(b' '),
            b'%' => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    // Valid UTF-8 (nearly always) is kept as it is, without a copy.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Hidden glue for [`export_plugin!`](crate::export_plugin).
#[doc(hidden)]
pub mod __export {
    use super::*;

    pub fn components(lib: &Library) -> RVec<ComponentDescriptor> {
        guard(|| lib.descriptors(), |_| RVec::new())
    }

    pub fn validate(lib: &Library, component: RStr<'_>, env: &CreateEnvelope) -> RVec<ConfigIssue> {
        guard(
            || lib.validate(component.as_str(), env),
            |m| {
                vec![ConfigIssue::new(
                    "",
                    format!("the plugin panicked while validating: {m}"),
                )]
                .into()
            },
        )
    }

    pub fn create(
        lib: &Library,
        component: RStr<'_>,
        env: &CreateEnvelope,
        host: HostServicesBox,
    ) -> RResult<ComponentInstance, PluginError> {
        guard(
            || lib.create(component.as_str(), env, host),
            |m| RResult::RErr(panic_error_message(component.as_str(), m)),
        )
    }

    pub fn declarations(lib: &Library, component: RStr<'_>) -> RString {
        guard(|| lib.declarations(component.as_str()), |_| "{}".into())
    }

    pub fn validate_provider(
        lib: &Library,
        component: RStr<'_>,
        method: RStr<'_>,
        auth_json: RStr<'_>,
    ) -> RVec<ConfigIssue> {
        guard(
            || lib.validate_provider(component.as_str(), method.as_str(), auth_json.as_str()),
            |m| {
                vec![ConfigIssue::new(
                    "",
                    format!("the plugin panicked while checking the provider: {m}"),
                )]
                .into()
            },
        )
    }
}

/// Exports a plugin library: `export_plugin!("name", components_fn);` where
/// `components_fn: fn() -> Vec<Component>`. Call it once, at the crate root of
/// a `cdylib` crate. It defines the root module abi_stable's loader looks for.
#[macro_export]
macro_rules! export_plugin {
    ($name:expr, $components:ident) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        pub mod __scimgate_plugin_export {
            use abi_stable::prefix_type::PrefixTypeTrait;
            use std::sync::OnceLock;
            use $crate::__private::abi_stable;
            use $crate::ffi::{
                ComponentDescriptor, ComponentInstance, CreateEnvelope, HostServicesBox, PluginLib,
                PluginLibRef,
            };
            use $crate::std_types::{RResult, RStr, RString, RVec};
            use $crate::{ConfigIssue, PluginError};

            static LIBRARY: OnceLock<$crate::sdk::Library> = OnceLock::new();

            $crate::__plugin_allocator!();

            /// The library, built on first use.
            pub fn library() -> &'static $crate::sdk::Library {
                LIBRARY.get_or_init(|| $crate::sdk::Library {
                    name: ($name).to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    components: super::$components(),
                })
            }

            extern "C" fn abi_epoch() -> u32 {
                $crate::ABI_EPOCH
            }
            extern "C" fn library_name() -> RString {
                RString::from($name)
            }
            extern "C" fn library_version() -> RString {
                RString::from(env!("CARGO_PKG_VERSION"))
            }
            extern "C" fn components() -> RVec<ComponentDescriptor> {
                $crate::sdk::guard(
                    || $crate::sdk::__export::components(library()),
                    |_| RVec::new(),
                )
            }
            extern "C" fn validate(component: RStr<'_>, env: &CreateEnvelope) -> RVec<ConfigIssue> {
                $crate::sdk::guard(
                    || $crate::sdk::__export::validate(library(), component, env),
                    |m| vec![ConfigIssue::new("", m)].into(),
                )
            }
            extern "C" fn create(
                component: RStr<'_>,
                env: &CreateEnvelope,
                host: HostServicesBox,
            ) -> RResult<ComponentInstance, PluginError> {
                $crate::sdk::guard(
                    || $crate::sdk::__export::create(library(), component, env, host),
                    |m| RResult::RErr(PluginError::internal(m)),
                )
            }

            extern "C" fn declarations(component: RStr<'_>) -> RString {
                $crate::sdk::guard(
                    || $crate::sdk::__export::declarations(library(), component),
                    |_| RString::from("{}"),
                )
            }
            extern "C" fn validate_provider(
                component: RStr<'_>,
                method: RStr<'_>,
                auth_json: RStr<'_>,
            ) -> RVec<ConfigIssue> {
                $crate::sdk::guard(
                    || {
                        $crate::sdk::__export::validate_provider(
                            library(),
                            component,
                            method,
                            auth_json,
                        )
                    },
                    |m| vec![ConfigIssue::new("", m)].into(),
                )
            }

            /// The root module (also usable in-process, without dlopen).
            pub fn root_module() -> PluginLibRef {
                PluginLib {
                    abi_epoch,
                    library_name,
                    library_version,
                    components,
                    validate,
                    create,
                    declarations,
                    validate_provider,
                }
                .leak_into_prefix()
            }

            #[export_name = "_1as_0lib_1header_0root_bmodule_bloader"]
            pub static SCIMGATE_LIB_HEADER: abi_stable::library::LibHeader = {
                extern "C" fn erased() -> abi_stable::library::RootModuleResult {
                    abi_stable::library::__call_root_module_loader(root_module)
                }
                // SAFETY: `PluginLibRef` is the module type `root_module` returns, and
                // the layout constant is included, so the loader checks it.
                unsafe {
                    abi_stable::library::LibHeader::from_constructor::<PluginLibRef>(
                        erased,
                        abi_stable::library::CheckTypeLayout::Yes,
                    )
                }
            };
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reader;
    impl Endpoint for Reader {
        fn handle(&self, _req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
            Ok(Response::new(200))
        }
        fn blocks_on(&self, req: &Request) -> bool {
            req.method.as_str() != "GET"
        }
    }

    #[test]
    fn an_inline_call_the_endpoint_would_block_on_is_answered_would_block_unrun() {
        let guarded = GuardedEndpoint(Arc::new(Reader), "reader".into());
        let mut get = Request::new("GET", "/Users/1");
        get.set_inline(true);
        let mut post = Request::new("POST", "/Users");
        post.set_inline(true);
        let answer = |req: &Request| ffi::FfiEndpoint::handle(&guarded, req, Caller::ANONYMOUS);
        assert!(matches!(answer(&get), RResult::ROk(r) if r.status == 200));
        match answer(&post) {
            RResult::RErr(e) => assert!(e.is_would_block(), "{e:?}"),
            RResult::ROk(r) => panic!("a blocking write ran inline: {}", r.status),
        }
        // Not inline, the same request is simply handled.
        post.set_inline(false);
        assert!(!post.is_inline());
        assert!(matches!(answer(&post), RResult::ROk(r) if r.status == 200));
    }

    /// Decides and answers in one step, as an endpoint that parses a
    /// request to decide does: its `handle` must not run for an inline call.
    struct ParsesOnce;
    impl Endpoint for ParsesOnce {
        fn handle(&self, _req: &Request, _caller: Caller<'_>) -> Result<Response, PluginError> {
            Ok(Response::new(200))
        }
        fn handle_inline(
            &self,
            req: &Request,
            _caller: Caller<'_>,
        ) -> Option<Result<Response, PluginError>> {
            (req.method.as_str() == "GET").then(|| Ok(Response::new(203)))
        }
    }

    #[test]
    fn an_inline_call_is_answered_by_handle_inline_and_none_is_would_block() {
        let guarded = GuardedEndpoint(Arc::new(ParsesOnce), "parses-once".into());
        let answer = |req: &Request| ffi::FfiEndpoint::handle(&guarded, req, Caller::ANONYMOUS);
        let mut get = Request::new("GET", "/Users?filter=x");
        get.set_inline(true);
        assert!(matches!(answer(&get), RResult::ROk(r) if r.status == 203));
        let mut post = Request::new("POST", "/Users");
        post.set_inline(true);
        assert!(matches!(answer(&post), RResult::RErr(e) if e.is_would_block()));
        // On the blocking pool, `handle` answers.
        get.set_inline(false);
        assert!(matches!(answer(&get), RResult::ROk(r) if r.status == 200));
    }

    #[test]
    fn authenticators_and_endpoints_declare_inline_calls_and_policies_do_not() {
        let endpoint = Component::endpoint("e", "test", |_| Ok(Reader));
        let policy = Component::policy("p", "test", |_| Ok(AllowAll));
        assert!(endpoint.all_declarations().has(Capability::InlineCalls));
        assert!(!policy.all_declarations().has(Capability::InlineCalls));
        // Declared once, even when a component declares it itself.
        let twice = Component::endpoint("e", "test", |_| Ok(Reader))
            .with_capability(Capability::InlineCalls)
            .all_declarations();
        let count = twice
            .capabilities
            .iter()
            .filter(|c| **c == Capability::InlineCalls)
            .count();
        assert_eq!(count, 1);
    }

    struct AllowAll;
    impl Policy for AllowAll {
        fn check(&self, _req: &Request, _caller: Caller<'_>) -> PolicyDecision {
            PolicyDecision::Allow
        }
    }

    #[test]
    fn form_decode_handles_plus_and_escapes() {
        let pairs = form_decode("a=b+c&client%5Fid=x%3Ay&empty=&flag&bad=%zz%4");
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "b c".into()),
                ("client_id".into(), "x:y".into()),
                ("empty".into(), "".into()),
                ("flag".into(), "".into()),
                ("bad".into(), "%zz%4".into()),
            ]
        );
        // Bytes that are no UTF-8 are replaced, the rest kept.
        assert_eq!(percent_decode("%C3%A9t%C3%A9%FF!", false), "été\u{FFFD}!");
    }

    #[test]
    fn typed_config_errors_name_the_key_path() {
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Cfg {
            bulk: Bulk,
        }
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Bulk {
            max_operations: u32,
        }
        let value = serde_json::json!({"bulk": {"max_operations": "many"}});
        let issue = deserialize_config::<Cfg>(&value).unwrap_err();
        assert_eq!(issue.path.as_str(), "bulk.max_operations");
        assert!(issue.message.contains("invalid type"), "{}", issue.message);
    }

    #[test]
    fn a_panicking_policy_becomes_a_500_denial() {
        struct Boom;
        impl Policy for Boom {
            fn check(&self, _req: &Request, _caller: Caller<'_>) -> PolicyDecision {
                panic!("kaboom")
            }
        }
        let guarded = GuardedPolicy(Arc::new(Boom), "boom".into());
        let req = test_request();
        let decision = ffi::FfiPolicy::check(&guarded, &req, Caller::ANONYMOUS);
        match decision {
            PolicyDecision::Deny(e) => {
                assert_eq!(e.status, 500);
                assert!(e.message.contains("kaboom"));
                assert!(e.message.contains("boom"));
            }
            PolicyDecision::Allow => panic!("a panic must not allow"),
        }
    }

    fn test_request() -> Request {
        Request::new("GET", "/")
    }
}
