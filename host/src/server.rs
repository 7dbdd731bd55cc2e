//! The HTTP server, by concern:
//!
//! * [`app`]: the running state ([`App`]: configuration source, current
//!   runtime, plugin cache), reload on SIGHUP, shutdown on SIGTERM/SIGINT;
//! * [`http`]: routing a request to its pipeline, the body limit, the
//!   request timeout, the audit event, `/healthz` and `/readyz`;
//! * [`forwarding`]: what forwarding headers may say (client address, base
//!   URL) and request ids.
//!
//! Connections (limits, header and keep-alive timeouts) are
//! [`crate::conn`]'s; the stage order of a pipeline is
//! [`crate::pipeline::Route::run`]'s.
//!
//! `server.request_timeout` covers reading the body and running the
//! pipeline. Pipelines run on the blocking pool and cannot be cancelled, so
//! at most twice `server.blocking_threads` of them may be in flight (running
//! or queued, timed out or not); past that a request is answered 503 with
//! `Retry-After` at once.

pub mod app;
pub mod forwarding;
pub mod http;

pub use app::{
    pipeline_capacity, reload_on_sighup, shutdown_signal, App, ConfigSource, ReloadSignal,
    ShutdownSignal, Signals,
};
pub use forwarding::resolve_client_ip;
pub use http::serve;
