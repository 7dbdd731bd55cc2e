//! The embedded default configuration that `scimgate serve` runs when no
//! config file is given, and where plugins are looked for by default.

use std::path::PathBuf;

/// The name diagnostics use for the embedded configuration.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default config>";

/// The data folder of the embedded configuration (relative to the working
/// directory).
pub const DEFAULT_DATA_DIR: &str = "scimgate-data";

/// The embedded default configuration: safe (nothing but `/healthz` is
/// reachable without credentials).
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The folder of the running binary: where `cargo build` puts the plugins.
pub fn binary_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("."))
}
