//! `scimgate config schema [--config F] [--dir D]`: prints the JSON Schema
//! of a whole configuration (the host's tables and every component's stage
//! table) for editor completion. With `--config`, the components the
//! configuration's stages `use`, each `[stage.NAME]` mapped to its
//! component's schema; without, every library in the plugin folder, matched
//! by `use` value. The schema itself is built by
//! `scimgate_host::config::schema`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use scimgate_host::config::methods::declarations_of;
use scimgate_host::config::schema::{config_schema, ComponentSchema};
use scimgate_host::defaults::binary_dir;
use scimgate_host::loader::{LibraryCache, PluginPath};
use scimgate_host::server::ConfigSource;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the JSON Schema of a configuration (for taplo / Even Better
    /// TOML and other editors): with --config, of that file's stages; without,
    /// of every plugin library in the plugin folder.
    Schema {
        /// Plugin folder to read instead of the configured one.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs `scimgate config …`; `config` is the global `--config` file.
pub fn run(config: Option<&Path>, command: ConfigCommand) -> ExitCode {
    match command {
        ConfigCommand::Schema { dir } => schema(config, dir),
    }
}

fn schema(config: Option<&Path>, dir: Option<PathBuf>) -> ExitCode {
    let (dir, names, stages) = match config {
        Some(path) => {
            let source = ConfigSource::File(path.to_path_buf());
            let (config, _) = match source.load() {
                Ok(loaded) => loaded,
                Err(report) => {
                    eprintln!("{report}");
                    return ExitCode::from(2);
                }
            };
            let dir = match dir {
                Some(dir) => PluginPath::single(dir),
                None => PluginPath::or_default(&config.server.plugin_dir, binary_dir),
            };
            let mut names: Vec<String> = config.stages.iter().map(|s| s.library.clone()).collect();
            names.sort();
            names.dedup();
            let stages: Vec<(String, String)> = config
                .stages
                .iter()
                .map(|s| (s.name.clone(), format!("{}/{}", s.library, s.component)))
                .collect();
            (dir, names, Some(stages))
        }
        None => {
            let dir = PluginPath::single(dir.unwrap_or_else(binary_dir));
            let names = dir.library_names();
            (dir, names, None)
        }
    };
    let mut cache = LibraryCache::default();
    let mut components = Vec::new();
    let mut methods = Vec::new();
    let mut failed = false;
    for name in &names {
        let lib = match cache.load(&dir, name) {
            Ok(lib) => lib,
            Err(message) => {
                eprintln!("error: {message}");
                failed = true;
                continue;
            }
        };
        for c in &lib.components {
            let uses = format!("{}/{}", lib.name, c.name);
            let schema = match serde_json::from_str(c.config_schema.as_str()) {
                Ok(schema) => schema,
                Err(e) => {
                    eprintln!("warning: {uses} publishes an unreadable config schema ({e}); any keys allowed");
                    serde_json::json!({})
                }
            };
            methods.extend(declarations_of(lib, c.name.as_str()).provider_methods);
            components.push(ComponentSchema {
                uses,
                description: c.description.to_string(),
                schema,
            });
        }
    }
    let schema = config_schema(&components, stages.as_deref(), &methods);
    match serde_json::to_string_pretty(&schema) {
        Ok(text) => println!("{text}"),
        Err(e) => {
            eprintln!("error: cannot write the schema: {e}");
            return ExitCode::FAILURE;
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
