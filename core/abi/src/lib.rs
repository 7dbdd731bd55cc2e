//! The stable plugin contract of scimgate.
//!
//! Everything that crosses the boundary between the `scimgate` host and a
//! plugin library (`.so`) is defined here, and only here: the FFI-safe request,
//! response, principal and provider types ([`types`]), structured errors and
//! config issues ([`error`]), the four component kinds as `#[sabi_trait]`
//! objects and the root module a library exports ([`ffi`]), and the SDK that
//! plugin authors write against ([`sdk`]): plain Rust traits with default
//! methods, a `catch_unwind` guard around every call and the
//! [`export_plugin!`] macro.
//!
//! `abi_stable` is pinned to `=0.11.3` and no other crate of the workspace
//! names it: a later move to another ABI crate changes this crate and the
//! host's loader, not every plugin.
//!
//! # Writing a plugin
//!
//! ```
//! use scimgate_abi::sdk::{self, Component, CreateContext, Policy};
//! use scimgate_abi::{Caller, PluginError, PolicyDecision, Request};
//!
//! struct RequireHeader { name: String }
//!
//! impl Policy for RequireHeader {
//!     fn check(&self, req: &Request, _caller: Caller<'_>) -> PolicyDecision {
//!         match req.header(&self.name) {
//!             Some(_) => PolicyDecision::Allow,
//!             None => PolicyDecision::Deny(PluginError::new(403, "missing header")),
//!         }
//!     }
//! }
//!
//! fn components() -> Vec<Component> {
//!     vec![Component::policy("require-header", "requires a request header", |ctx: &CreateContext| {
//!         let name = ctx.config_str("header").unwrap_or("x-demo").to_string();
//!         Ok(RequireHeader { name })
//!     })]
//! }
//! scimgate_abi::export_plugin!("demo", components);
//! # fn main() {}
//! ```

// abi_stable's derive and `#[sabi_trait]` macros expand to `unsafe` impls and
// blocks; these modules hold no hand-written `unsafe`.
pub mod declare;
#[allow(unsafe_code)]
pub mod error;
#[allow(unsafe_code, non_local_definitions)]
pub mod ffi;
pub mod net;
pub mod path;
pub mod referrer;
pub mod run;
pub mod schema;
pub mod sdk;
pub mod secret;
pub mod testing;
pub mod text;
mod trace_bridge;
#[allow(unsafe_code)]
pub mod types;
pub mod units;

pub use error::{ConfigIssue, PluginError};
pub use types::{
    AuthOutcome, Caller, ComponentKind, ErrorStyle, Header, LogLevel, PolicyDecision, Principal,
    ProviderRecord, Request, Response,
};

/// Re-exports the FFI-safe std types plugins see in the contract, so that
/// plugin crates never depend on `abi_stable` themselves.
pub mod std_types {
    pub use abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString, RVec};
}

/// scimgate's own ABI epoch, checked by the host on top of abi_stable's
/// version and layout checks. It is raised on every change an older host
/// cannot read (a new variant in an outcome enum, a new field in a plain
/// struct) and on every change that makes the host refuse older plugins (a
/// field added to the root module: abi_stable refuses a plugin whose root
/// module has fewer fields than the host's). Epoch 2 added the root module's
/// `declarations` and `validate_provider` (docs/architecture.md,
/// "Versioning rules"). Epoch 3 added the host service
/// `FfiHostServices::report_store_op` (and, before its release,
/// `report_change_lag`): abi_stable checks the host services'
/// method table inside the root module's layout and refuses a plugin whose
/// table is shorter than the host's, so epoch-2 plugins no longer load
/// (`MIN_SUPPORTED_EPOCH` is 3 too).
pub const ABI_EPOCH: u32 = 3;

/// This contract's crate version; abi_stable refuses plugins built against
/// an incompatible one.
pub const ABI_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The oldest plugin epoch this build of the contract still loads.
pub const MIN_SUPPORTED_EPOCH: u32 = 3;

/// Hidden items the export macro needs; not part of the public contract.
#[doc(hidden)]
pub mod __private {
    pub use abi_stable;
    pub use abi_stable::library::{LibHeader, RootModuleResult};
    #[cfg(feature = "mimalloc")]
    pub use mimalloc::MiMalloc;
}

/// The plugin library's global allocator, declared by `export_plugin!`:
/// mimalloc with the default feature `mimalloc` (glibc's malloc was a fifth
/// of a plugin's time under load), none without it. Each library has its
/// own heap; values cross the boundary as abi_stable types, which carry
/// the functions that free them.
#[cfg(feature = "mimalloc")]
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_allocator {
    () => {
        #[global_allocator]
        static SCIMGATE_PLUGIN_ALLOCATOR: $crate::__private::MiMalloc = $crate::__private::MiMalloc;
    };
}

#[cfg(not(feature = "mimalloc"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_allocator {
    () => {};
}
