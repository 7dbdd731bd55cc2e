//! The raw FFI side of the contract: the four component kinds and the host
//! services as `#[sabi_trait]` objects, and the root module every plugin
//! library exports. Plugin authors use [`crate::sdk`] instead; the host's
//! loader uses these types directly.

use abi_stable::library::RootModule;
use abi_stable::sabi_trait;
use abi_stable::std_types::{RArc, RBox, ROption, RResult, RStr, RString, RVec};
use abi_stable::{declare_root_module_statics, package_version_strings, StableAbi};

use crate::error::{ConfigIssue, PluginError};
use crate::types::{
    AuthOutcome, Caller, ComponentKind, ErrorStyle, LogLevel, PolicyDecision, Request, Response,
};

/// Establishes who is calling.
#[sabi_trait]
pub trait FfiAuthenticator: Send + Sync {
    fn authenticate(&self, req: &Request) -> AuthOutcome;
    /// The `WWW-Authenticate` challenge for a 401 when no authenticator
    /// recognised the request (`Bearer realm="scim"`); empty for none.
    #[sabi(last_prefix_field)]
    fn challenge(&self) -> RString;
}

/// Decides whether a request may go on.
#[sabi_trait]
pub trait FfiPolicy: Send + Sync {
    #[sabi(last_prefix_field)]
    fn check(&self, req: &Request, caller: Caller<'_>) -> PolicyDecision;
}

/// Rewrites a request on its way in and the response on its way out.
#[sabi_trait]
pub trait FfiProfile: Send + Sync {
    fn inbound(&self, req: &mut Request, caller: Caller<'_>) -> RResult<(), PluginError>;
    #[sabi(last_prefix_field)]
    fn outbound(
        &self,
        req: &Request,
        caller: Caller<'_>,
        resp: &mut Response,
    ) -> RResult<(), PluginError>;
}

/// Produces the response; may block (the host runs it on its blocking pool).
#[sabi_trait]
pub trait FfiEndpoint: Send + Sync {
    /// An `RErr` is rendered by the host in the route's error style.
    fn handle(&self, req: &Request, caller: Caller<'_>) -> RResult<Response, PluginError>;
    /// Readiness of what the endpoint depends on (a database): `ROk` when
    /// ready, else the reason. Used by `/readyz`.
    #[sabi(last_prefix_field)]
    fn ready(&self) -> RResult<(), RString>;
}

/// What the host offers to plugins.
#[sabi_trait]
pub trait FfiHostServices: Send + Sync + Clone {
    /// The most verbose level the host will record; plugins skip the rest.
    fn max_level(&self) -> LogLevel;
    /// Writes one log event through the host's `tracing` subscriber.
    #[sabi(last_prefix_field)]
    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>);
    // Methods after `log` were added in epoch 3 (scimgate-abi 0.3). The
    // host hands this table to the plugin, but abi_stable checks it like
    // every type of the root module: a plugin that knows fewer methods than
    // the host is refused (a field-count mismatch), so adding one raised
    // the crate version, the epoch and `MIN_SUPPORTED_EPOCH`.
    /// Reports one store operation of the request in progress on this
    /// thread: `operation` (`get`, `search`, `create`, …), how long it took,
    /// `error_kind` (empty when it succeeded; else `unavailable`,
    /// `internal`, `conflict` or `client`) and, when the store has a
    /// connection pool, its state after the operation. The host counts it
    /// under the request's route (`scimgate_store_*` metrics).
    fn report_store_op(
        &self,
        operation: RStr<'_>,
        duration_nanos: u64,
        error_kind: RStr<'_>,
        pool: ROption<StorePool>,
    );
    /// Reports the state of one change-feed subscriber (the SCIM endpoint's
    /// webhook delivery): `lag`, the change-log entries it has not yet
    /// acknowledged, and whether its delivery is dead-lettered (stopped
    /// until an operator replays or skips). The host exports it as the
    /// gauges `scimgate_change_subscriber_lag` and
    /// `scimgate_change_subscriber_dead_lettered`, under the route of the
    /// request in progress on this thread (`(none)` outside one).
    fn report_change_lag(
        &self,
        // The subscriber's name as configured.
        subscriber: RStr<'_>,
        // Change-log entries not yet acknowledged.
        lag: u64,
        dead_lettered: bool,
    );
}

/// The state of a store's connection pool, as a plugin reports it with a
/// store operation.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StorePool {
    /// Connections lent out to operations.
    pub in_use: u32,
    /// Connections open and waiting.
    pub idle: u32,
    /// The most connections the pool opens (`pool_size`).
    pub size: u32,
}

pub type AuthenticatorBox = FfiAuthenticator_TO<'static, RBox<()>>;
pub type PolicyBox = FfiPolicy_TO<'static, RBox<()>>;
pub type ProfileBox = FfiProfile_TO<'static, RBox<()>>;
pub type EndpointBox = FfiEndpoint_TO<'static, RBox<()>>;
pub type HostServicesBox = FfiHostServices_TO<'static, RArc<()>>;

/// A component instance built by `create`.
#[repr(C, u8)]
#[derive(StableAbi)]
pub enum ComponentInstance {
    Authenticator(AuthenticatorBox),
    Policy(PolicyBox),
    Profile(ProfileBox),
    Endpoint(EndpointBox),
}

impl ComponentInstance {
    pub fn kind(&self) -> ComponentKind {
        match self {
            ComponentInstance::Authenticator(_) => ComponentKind::Authenticator,
            ComponentInstance::Policy(_) => ComponentKind::Policy,
            ComponentInstance::Profile(_) => ComponentKind::Profile,
            ComponentInstance::Endpoint(_) => ComponentKind::Endpoint,
        }
    }
}

/// What a library says about one of its components.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct ComponentDescriptor {
    pub name: RString,
    pub kind: ComponentKind,
    pub version: RString,
    pub description: RString,
    /// JSON Schema of the stage config (informational; `validate` decides).
    pub config_schema: RString,
    /// For endpoints: how errors are rendered on routes they end.
    pub error_style: ErrorStyle,
    /// For authenticators, policies and profiles: the component may block
    /// (argon2 hashing, a JWKS fetch). The host then runs the routes that use
    /// it on its blocking pool instead of the async workers.
    pub may_block: bool,
}

/// Everything a component is created from. Config crosses the boundary once,
/// as JSON.
#[repr(C)]
#[derive(StableAbi, Debug, Clone)]
pub struct CreateEnvelope {
    /// The stage's name in the TOML (`[stage.NAME]`).
    pub stage: RString,
    /// The stage table without `use`, as JSON.
    pub config_json: RString,
    /// All `[[provider]]` records, as a JSON array of the same shape as
    /// [`crate::ProviderRecord`] plus the `auth` table.
    pub providers_json: RString,
    pub data_dir: RString,
    /// `[server]` facts plugins may need (`trusted_proxies`, `listen`), JSON.
    pub server_json: RString,
}

/// The root module of a plugin library.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginLibRef)))]
#[sabi(missing_field(panic))]
pub struct PluginLib {
    /// scimgate's own ABI epoch the library was built with.
    pub abi_epoch: extern "C" fn() -> u32,
    /// The library's name as used in `use = "library/component"`.
    pub library_name: extern "C" fn() -> RString,
    /// Version of the plugin crate.
    pub library_version: extern "C" fn() -> RString,
    pub components: extern "C" fn() -> RVec<ComponentDescriptor>,
    pub validate: extern "C" fn(component: RStr<'_>, env: &CreateEnvelope) -> RVec<ConfigIssue>,
    #[sabi(last_prefix_field)]
    pub create: extern "C" fn(
        component: RStr<'_>,
        env: &CreateEnvelope,
        host: HostServicesBox,
    ) -> RResult<ComponentInstance, PluginError>,
    // Fields after `create` were added in epoch 2 (scimgate-abi 0.2): abi_stable
    // refuses libraries whose root module has fewer fields than the host's,
    // so adding one raises the crate version and the epoch. A newer library
    // with more fields still loads into an older host.
    /// What a component declares ([`crate::declare::Declarations`]), as JSON.
    #[sabi(missing_field(option))]
    pub declarations: extern "C" fn(component: RStr<'_>) -> RString,
    /// Checks the method-specific keys of one `[provider.auth]` table (JSON,
    /// secrets already hashed) for a method the component declares. Issue
    /// paths are keys of that table.
    #[sabi(missing_field(option))]
    pub validate_provider: extern "C" fn(
        component: RStr<'_>,
        method: RStr<'_>,
        auth_json: RStr<'_>,
    ) -> RVec<ConfigIssue>,
}

impl RootModule for PluginLibRef {
    declare_root_module_statics! {PluginLibRef}
    const BASE_NAME: &'static str = "scimgate_plugin";
    const NAME: &'static str = "scimgate plugin";
    const VERSION_STRINGS: abi_stable::sabi_types::VersionStrings = package_version_strings!();
}

/// The exported symbol name of a library's header; the export macro uses it
/// literally (checked against abi_stable in the tests below).
pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_module_symbol_matches_abi_stable() {
        assert_eq!(
            ROOT_MODULE_SYMBOL,
            abi_stable::library::ROOT_MODULE_LOADER_NAME
        );
    }
}
