//! The scimgate host as a library: configuration, plugin loading, pipelines
//! and the HTTP server. `main.rs` is the CLI glue around it; end-to-end tests
//! and benchmarks use it in-process.

pub mod changes_cmd;
pub mod check_connection;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod defaults;
pub mod explain;
pub mod host_services;
pub mod loader;
pub mod logging;
pub mod metrics;
pub mod mint;
pub mod notify;
pub mod pipeline;
pub mod quickstart;
pub mod registry;
pub mod render;
pub mod server;
pub mod tls;
