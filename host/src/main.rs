//! `scimgate`: the command line. Glue only — every piece of logic lives in
//! the `scimgate_host` library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use scimgate_host::config::{Config, Diagnostic, LogFormat};
use scimgate_host::defaults::{binary_dir, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME};
use scimgate_host::loader::{library_names_in, LibraryCache};
use scimgate_host::pipeline::{check_and_assemble, AssembleMode};
use scimgate_host::server::{self, App, ConfigSource};

#[derive(Parser)]
#[command(
    name = "scimgate",
    version,
    about = "A plugin-based SCIM 2.0 gateway for IGA systems"
)]
struct Cli {
    /// Configuration file (TOML). Without it, the embedded default runs.
    #[arg(long, short, global = true, env = "SCIMGATE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Log format (overrides `server.log_format`).
        #[arg(long, value_enum)]
        log_format: Option<LogFormatArg>,
        /// Address to listen on (overrides `server.listen`; port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check the configuration and the plugins it names, print every problem, and exit.
    Validate,
    /// List plugin libraries: path, ABI epoch, components with kind and version.
    Plugins {
        /// Folder to scan instead of the configured plugin folder.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let source = match &cli.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => ConfigSource::Embedded {
            name: DEFAULT_CONFIG_NAME.to_string(),
            text: DEFAULT_CONFIG.to_string(),
        },
    };
    match cli.command {
        Command::Serve { log_format, listen } => serve(source, log_format, listen),
        Command::Validate => validate(&source),
        Command::Plugins { dir } => plugins(&source, dir),
    }
}

/// The config with its own diagnostics (plugins not consulted yet).
fn load_or_report(source: &ConfigSource) -> Result<(Config, Vec<Diagnostic>), ExitCode> {
    source.load().map_err(|report| {
        eprintln!("{report}");
        ExitCode::from(2)
    })
}

fn plugin_dir(config: &Config) -> PathBuf {
    config.server.plugin_dir.clone().unwrap_or_else(binary_dir)
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SCIMGATE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder.with_ansi(false).init(),
    }
}

fn serve(
    source: ConfigSource,
    log_format: Option<LogFormatArg>,
    listen: Option<std::net::SocketAddr>,
) -> ExitCode {
    let (mut config, config_diags) = match load_or_report(&source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    init_logging(match log_format {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Human) => LogFormat::Human,
        None => config.server.log_format,
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.server.blocking_threads)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plugin_dir = plugin_dir(&config);
    let app = match App::start(source.clone(), &config, config_diags, plugin_dir) {
        Ok(app) => app,
        Err(report) => {
            eprintln!("{report}");
            return ExitCode::from(2);
        }
    };
    let listen = config.server.listen;
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot listen on {listen}: {e}. Is another process using the port? Change `server.listen`.");
                return ExitCode::FAILURE;
            }
        };
        let bound = listener.local_addr().unwrap_or(listen);
        print_banner(&source, &app, bound);
        tokio::spawn(server::reload_on_sighup(app.clone()));
        match server::serve(app, listener, server::shutdown_signal()).await {
            Ok(()) => {
                tracing::info!("stopped");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: the server stopped: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn print_banner(source: &ConfigSource, app: &App, bound: std::net::SocketAddr) {
    let runtime = app.runtime();
    let from = match source {
        ConfigSource::File(p) => p.display().to_string(),
        ConfigSource::Embedded { .. } => "the embedded default configuration".to_string(),
    };
    println!(
        "scimgate {} listening on http://{bound} ({from})",
        env!("CARGO_PKG_VERSION")
    );
    println!("  health:    http://{bound}/healthz");
    for route in &runtime.routes {
        println!(
            "  route:     http://{bound}{} → {}",
            route.mount, route.endpoint.uses
        );
    }
    if runtime.routes.is_empty() {
        println!("  no routes: write a configuration (see examples/) and run `scimgate serve --config FILE`");
    }
}

fn validate(source: &ConfigSource) -> ExitCode {
    let (config, config_diags) = match load_or_report(source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut cache = LibraryCache::default();
    match check_and_assemble(
        &config,
        config_diags,
        &plugin_dir(&config),
        &mut cache,
        AssembleMode::ValidateOnly,
    ) {
        Ok(_) => {
            println!(
                "{}: ok ({} stages, {} routes, {} providers)",
                config.source.path.display(),
                config.stages.len(),
                config.routes.len(),
                config.providers.len()
            );
            ExitCode::SUCCESS
        }
        Err(diags) => {
            eprintln!(
                "{}",
                scimgate_host::config::render_diagnostics(&config.source, &diags)
            );
            ExitCode::from(2)
        }
    }
}

fn plugins(source: &ConfigSource, dir: Option<PathBuf>) -> ExitCode {
    let (dir, names) = match dir {
        Some(dir) => {
            let names = library_names_in(&dir);
            (dir, names)
        }
        None => {
            let (config, _) = match load_or_report(source) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let dir = plugin_dir(&config);
            let mut names: Vec<String> = config.stages.iter().map(|s| s.library.clone()).collect();
            if names.is_empty() {
                names = library_names_in(&dir);
            }
            names.sort();
            names.dedup();
            (dir, names)
        }
    };
    list_plugins(&dir, &names)
}

fn list_plugins(dir: &Path, names: &[String]) -> ExitCode {
    let mut cache = LibraryCache::default();
    let mut failed = false;
    if names.is_empty() {
        println!("no plugin libraries in {}", dir.display());
    }
    for name in names {
        match cache.load(dir, name) {
            Ok(lib) => {
                println!(
                    "{} {} — {} (ABI epoch {})",
                    lib.name,
                    lib.version,
                    lib.path.display(),
                    lib.abi_epoch
                );
                for c in &lib.components {
                    println!(
                        "  {}/{:<22} {:<13} {}  {}",
                        lib.name,
                        c.name,
                        c.kind.as_str(),
                        c.version,
                        c.description
                    );
                }
            }
            Err(message) => {
                failed = true;
                eprintln!("error: {message}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
