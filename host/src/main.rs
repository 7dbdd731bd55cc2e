//! `scimgate`: the command line. Glue only — every piece of logic lives in
//! the `scimgate_host` library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use scimgate_host::config::{Config, Diagnostic, LogFormat};
use scimgate_host::defaults::{binary_dir, DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, DEFAULT_DATA_DIR};
use scimgate_host::loader::{LibraryCache, PluginPath};
use scimgate_host::pipeline::{check_and_assemble, AssembleMode};
use scimgate_host::server::{self, App, ConfigSource};
use scimgate_host::{credentials, quickstart};

/// The host's allocator: mimalloc (see docs/performance.md). Plugins keep
/// their own; values cross the boundary as abi_stable types, each freed by
/// the allocator that made it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod plugin_new;
mod schema_cmd;

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
        /// Log level or filter directives, e.g. `debug` or
        /// `info,scimgate::audit=warn` (overrides `SCIMGATE_LOG` and
        /// `server.log_level`).
        #[arg(long, value_parser = parse_log_level)]
        log_level: Option<String>,
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
    /// Start a plugin crate (`scimgate plugin new NAME --kind KIND`).
    Plugin {
        #[command(subcommand)]
        command: plugin_new::PluginCommand,
    },
    /// Configuration tools: `config schema` prints its JSON Schema.
    Config {
        #[command(subcommand)]
        command: schema_cmd::ConfigCommand,
    },
    /// Register IGA providers.
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Hash secrets for the configuration.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Create (and so migrate) the store of every stage whose component
    /// declares `migrates` (e.g. `scim-server/scim`), print which stages
    /// were migrated, and exit. Serving migrates on start
    /// too; this runs it explicitly, e.g. before rolling out new nodes.
    Migrate,
    /// Explain why a provider's request would be allowed or refused: runs the
    /// route's authenticators and policies (not the endpoint) and names the
    /// stage that decides. Exit 0 allowed, 1 refused, 2 configuration error.
    Explain(scimgate_host::explain::ExplainArgs),
    /// Test a SCIM service as One Identity Manager's "Test" button does: a
    /// client-credentials token, then ServiceProviderConfig, ResourceTypes,
    /// Schemas and Users?count=1. Exit 0 when every step passed.
    CheckConnection(scimgate_host::check_connection::CheckConnectionArgs),
    /// Operate the change feed's webhook delivery through a SCIM route:
    /// `status`, `replay`, `skip` (needs the scope `scim:changes:admin`).
    /// Exit 0 done, 1 refused by the service, 2 usage error.
    Changes {
        #[command(subcommand)]
        command: scimgate_host::changes_cmd::ChangesCommand,
    },
    /// Mint an access token for a provider with the configuration's token
    /// stage — a component declaring `mints-tokens`, e.g. `oauth2/token` —
    /// (for tests and first steps; clients use the token route).
    Token {
        /// The provider id.
        #[arg(long)]
        provider: String,
        /// Space-separated scopes (default: all the provider's scopes).
        #[arg(long)]
        scope: Option<String>,
    },
}

#[derive(Subcommand)]
enum ProviderCommand {
    /// Print a fresh client ID, a 256-bit client secret (shown once) and a ready
    /// `[[provider]]` block holding only the secret's hash.
    New {
        /// Display name (the vendor form's "Name").
        #[arg(long)]
        name: String,
        /// Provider id; also the client ID. Default: derived from the name.
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Allowed client address or CIDR (repeatable; none: any).
        #[arg(long = "allowed-ip")]
        allowed_ips: Vec<String>,
        /// Allowed referrer (repeatable; none: any).
        #[arg(long = "allowed-referrer")]
        allowed_referrers: Vec<String>,
        /// Start of the validity window (RFC 3339).
        #[arg(long)]
        valid_from: Option<String>,
        /// End of the validity window (RFC 3339).
        #[arg(long)]
        valid_until: Option<String>,
        /// `read-only` or `read-write`.
        #[arg(long, default_value = "read-write")]
        access: String,
        /// Scopes tokens of this provider may carry (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Read a secret from standard input and print its hash: `sha256:…` for
    /// generated secrets, `--argon2id` for human-chosen passwords.
    Hash {
        #[arg(long)]
        argon2id: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Human,
    Json,
}

fn main() -> ExitCode {
    disable_transparent_huge_pages();
    let code = run();
    // Log lines still buffered (see `logging::BufferedStderr`).
    scimgate_host::logging::flush();
    code
}

/// Transparent huge pages off for this process (`PR_SET_THP_DISABLE`).
/// mimalloc advises huge pages on its arenas (`MADV_HUGEPAGE`), and with one
/// heap per plugin library each sparsely used 2 MiB page counted whole in
/// the resident memory: 137 MiB instead of 57 MiB while bulk-loading a
/// million users (docs/performance.md). Set before any thread starts; the
/// kernel checks it at every page fault, so it also covers the plugins'
/// heaps, whatever they advise.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        // An old kernel or a seccomp filter: huge pages stay as the system
        // sets them; only memory is at stake.
        eprintln!("note: transparent huge pages stay on: prctl: {e}");
    }
}

fn run() -> ExitCode {
    // `--version` also names the plugin contract this binary loads.
    let version = format!(
        "{} (plugin ABI: scimgate-abi {}, epoch {})",
        env!("CARGO_PKG_VERSION"),
        scimgate_abi::ABI_VERSION,
        scimgate_abi::ABI_EPOCH
    );
    let version: &'static str = Box::leak(version.into_boxed_str());
    let matches = Cli::command().version(version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let source = match &cli.config {
        Some(path) => ConfigSource::File(path.clone()),
        None => match embedded_source(matches!(cli.command, Command::Serve { .. })) {
            Ok(source) => source,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::FAILURE;
            }
        },
    };
    if !matches!(cli.command, Command::Serve { .. }) {
        // Other commands log warnings only, unless SCIMGATE_LOG/RUST_LOG says more
        // (e.g. `SCIMGATE_LOG=debug scimgate plugins` shows abi_stable's layout reports).
        init_logging(LogFormat::Human, None, "warn");
    }
    match cli.command {
        Command::Serve {
            log_format,
            log_level,
            listen,
        } => serve(source, log_format, log_level, listen),
        Command::Validate => validate(&source),
        Command::Plugins { dir } => plugins(&source, dir),
        Command::Provider {
            command:
                ProviderCommand::New {
                    name,
                    id,
                    description,
                    tags,
                    allowed_ips,
                    allowed_referrers,
                    valid_from,
                    valid_until,
                    access,
                    scopes,
                },
        } => provider_new(NewProviderArgs {
            name,
            id,
            description,
            tags,
            allowed_ips,
            allowed_referrers,
            valid_from,
            valid_until,
            access,
            scopes,
        }),
        Command::Secret {
            command: SecretCommand::Hash { argon2id },
        } => secret_hash(argon2id),
        Command::Token { provider, scope } => token(&source, &provider, scope.as_deref()),
        Command::Migrate => migrate(&source),
        Command::Config { command } => schema_cmd::run(cli.config.as_deref(), command),
        Command::Plugin { command } => plugin_new::run(command),
        Command::Explain(args) => scimgate_host::explain::run(&source, args),
        Command::CheckConnection(args) => scimgate_host::check_connection::run(args),
        Command::Changes { command } => scimgate_host::changes_cmd::run(command),
    }
}

/// The config with its own diagnostics (plugins not consulted yet).
fn load_or_report(source: &ConfigSource) -> Result<(Config, Vec<Diagnostic>), ExitCode> {
    source.load().map_err(|report| {
        eprintln!("{report}");
        ExitCode::from(2)
    })
}

fn plugin_dir(config: &Config) -> PluginPath {
    PluginPath::or_default(&config.server.plugin_dir, binary_dir)
}

fn init_logging(format: LogFormat, forced: Option<&str>, default_filter: &str) {
    scimgate_host::logging::init(format, forced, default_filter);
}

/// `--log-level`: the same grammar as `SCIMGATE_LOG`.
fn parse_log_level(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map(|_| text.to_string())
        .map_err(|e| {
            format!("{e} (a level such as `debug`, or directives like `info,scimgate::audit=warn`)")
        })
}

fn serve(
    source: ConfigSource,
    log_format: Option<LogFormatArg>,
    log_level: Option<String>,
    listen: Option<std::net::SocketAddr>,
) -> ExitCode {
    let (mut config, config_diags) = match load_or_report(&source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(listen) = listen {
        config.server.listen = listen;
    }
    init_logging(
        match log_format {
            Some(LogFormatArg::Json) => LogFormat::Json,
            Some(LogFormatArg::Human) => LogFormat::Human,
            None => config.server.log_format,
        },
        log_level.as_deref(),
        config.server.log_level.as_deref().unwrap_or("info"),
    );
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
        // Handlers first: a signal right after the banner must not kill us.
        let (reload, shutdown) = server::Signals::install().split();
        print_banner(&source, &app, bound);
        scimgate_host::notify::notify("READY=1");
        tokio::spawn(server::reload_on_sighup(app.clone(), reload));
        match server::serve(app, listener, server::shutdown_signal(shutdown)).await {
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
    let scheme = if runtime.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!(
        "scimgate {} listening on {scheme}://{bound} ({from})",
        env!("CARGO_PKG_VERSION")
    );
    println!("  health:    {scheme}://{bound}/healthz");
    for route in &runtime.routes {
        println!(
            "  route:     {scheme}://{bound}{} → {}",
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
            let warnings =
                scimgate_host::pipeline::route_warnings(&config, &plugin_dir(&config), &mut cache);
            if !warnings.is_empty() {
                eprint!(
                    "{}",
                    scimgate_host::config::render_warnings(&config.source, &warnings)
                );
            }
            println!(
                "{}: ok ({}, {}, {}{})",
                config.source.path.display(),
                count(config.stages.len(), "stage"),
                count(config.routes.len(), "route"),
                count(config.providers.len(), "provider"),
                match warnings.len() {
                    0 => String::new(),
                    n => format!(", {}", count(n, "warning")),
                }
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
            let dir = PluginPath::single(dir);
            let names = dir.library_names();
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
                names = dir.library_names();
            }
            names.sort();
            names.dedup();
            (dir, names)
        }
    };
    list_plugins(&dir, &names)
}

fn list_plugins(dir: &PluginPath, names: &[String]) -> ExitCode {
    let mut cache = LibraryCache::default();
    let mut failed = false;
    if names.is_empty() {
        println!("no plugin libraries in {dir}");
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
                    let kind = if c.may_block {
                        format!("{} (may block)", c.kind.as_str())
                    } else {
                        c.kind.as_str().to_string()
                    };
                    println!(
                        "  {}/{:<22} {:<28} {}  {}",
                        lib.name, c.name, kind, c.version, c.description
                    );
                    let declared =
                        scimgate_host::config::methods::declarations_of(lib, c.name.as_str());
                    for capability in &declared.capabilities {
                        println!("      capability {}", capability.as_str());
                    }
                    for method in &declared.provider_methods {
                        let keys: Vec<&str> = method.all_keys().collect();
                        println!(
                            "      provider method \"{}\" ({}): {}",
                            method.name,
                            keys.join(", "),
                            method.description
                        );
                    }
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

/// The embedded quickstart configuration. Serving creates the quickstart
/// provider on first start (and prints its secret once); other commands use
/// a stored one, or a placeholder.
fn embedded_source(serving: bool) -> Result<ConfigSource, String> {
    let data_dir = Path::new(DEFAULT_DATA_DIR);
    let vars = if serving || data_dir.join(quickstart::QUICKSTART_FILE).is_file() {
        let qs = quickstart::ensure(data_dir)?;
        if let Some(secret) = &qs.new_secret {
            print_quickstart(&qs.client_id, secret, &qs.file);
        }
        qs.variables()
    } else {
        std::collections::HashMap::from([
            (
                "SCIMGATE_QUICKSTART_CLIENT_ID".to_string(),
                "quickstart-not-created-yet".to_string(),
            ),
            (
                "SCIMGATE_QUICKSTART_SECRET_HASH".to_string(),
                format!("sha256:{}", "0".repeat(64)),
            ),
        ])
    };
    Ok(ConfigSource::Embedded {
        name: DEFAULT_CONFIG_NAME.to_string(),
        text: DEFAULT_CONFIG.to_string(),
        vars,
    })
}

fn print_quickstart(client_id: &str, secret: &str, file: &Path) {
    println!("First start: created the quickstart provider (read-write).");
    println!("  client ID:     {client_id}");
    println!("  client secret: {secret}");
    println!(
        "  The secret is shown only now; {} keeps only its hash.",
        file.display()
    );
    println!("  Get a token (then call SCIM with `Authorization: Bearer <access_token>`):");
    println!("    curl -s -u '{client_id}:{secret}' -d grant_type=client_credentials http://127.0.0.1:8080/oauth2/token");
}

struct NewProviderArgs {
    name: String,
    id: Option<String>,
    description: String,
    tags: Vec<String>,
    allowed_ips: Vec<String>,
    allowed_referrers: Vec<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
    access: String,
    scopes: Vec<String>,
}

fn provider_new(args: NewProviderArgs) -> ExitCode {
    let id = args.id.unwrap_or_else(|| {
        let slug: String = args
            .name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let slug = slug
            .split('-')
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("-");
        if slug.is_empty() {
            "provider".to_string()
        } else {
            slug
        }
    });
    let secret = match credentials::new_secret() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let block = credentials::NewProvider {
        id: id.clone(),
        name: args.name,
        description: args.description,
        tags: args.tags,
        client_id: id.clone(),
        secret_hash: credentials::sha256_hash(&secret),
        allowed_ips: args.allowed_ips,
        allowed_referrers: args.allowed_referrers,
        valid_from: args.valid_from,
        valid_until: args.valid_until,
        access: args.access,
        scopes: if args.scopes.is_empty() {
            vec!["scim:read".into(), "scim:write".into()]
        } else {
            args.scopes
        },
    }
    .to_toml();
    // Check the block the way `serve` will, before handing it out.
    let source = scimgate_host::config::SourceFile::new("<provider new>", block.clone());
    if let Err((source, diags)) = scimgate_host::config::parse_str(source, &|_| None) {
        eprintln!(
            "{}",
            scimgate_host::config::render_diagnostics(&source, &diags)
        );
        return ExitCode::from(2);
    }
    println!("Client ID:     {id}");
    println!("Client secret: {secret}");
    println!("  (shown once: enter it in the IGA system now; the block below holds only its hash)");
    println!();
    println!("{block}");
    ExitCode::SUCCESS
}

fn secret_hash(argon2id: bool) -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut input) {
        eprintln!("error: cannot read standard input: {e}");
        return ExitCode::FAILURE;
    }
    let secret = input
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&input);
    if secret.is_empty() {
        eprintln!("error: the secret read from standard input is empty");
        return ExitCode::from(2);
    }
    let hashed = if argon2id {
        credentials::argon2id_hash(secret)
    } else {
        Ok(credentials::sha256_hash(secret))
    };
    match hashed {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn token(source: &ConfigSource, provider: &str, scope: Option<&str>) -> ExitCode {
    let (config, diags) = match load_or_report(source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if !diags.is_empty() {
        eprintln!(
            "{}",
            scimgate_host::config::render_diagnostics(&config.source, &diags)
        );
        return ExitCode::from(2);
    }
    match scimgate_host::mint::mint_token(&config, &plugin_dir(&config), provider, scope) {
        Ok(value) => {
            println!("{}", value["access_token"].as_str().unwrap_or_default());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn migrate(source: &ConfigSource) -> ExitCode {
    let (config, config_diags) = match load_or_report(source) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Logging is already set up (warnings; SCIMGATE_LOG for more).
    let dir = plugin_dir(&config);
    let mut cache = LibraryCache::default();
    // Every problem at once, exactly as `validate` reports them.
    if let Err(diags) = check_and_assemble(
        &config,
        config_diags,
        &dir,
        &mut cache,
        AssembleMode::ValidateOnly,
    ) {
        eprintln!(
            "{}",
            scimgate_host::config::render_diagnostics(&config.source, &diags)
        );
        return ExitCode::from(2);
    }
    let (providers, _) = scimgate_host::config::methods::registry(&config, &dir, &mut cache);
    let factory = scimgate_host::pipeline::StageFactory::new(&config, &providers);
    let (mut migrated, mut failed) = (0, 0);
    // The stages whose component declares that creating it migrates a store.
    let migrating: Vec<_> = config
        .stages
        .iter()
        .filter(|stage| {
            scimgate_host::config::methods::stage_declares(
                &mut cache,
                &dir,
                stage,
                scimgate_abi::declare::Capability::Migrates,
            )
        })
        .collect();
    for stage in migrating {
        let created = cache
            .load(&dir, &stage.library)
            .and_then(|lib| factory.create(lib, stage).map_err(|e| e.to_string()));
        match created {
            Ok(_) => {
                migrated += 1;
                println!(
                    "stage `{}` ({}/{}): store migrated",
                    stage.name, stage.library, stage.component
                );
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "error: stage `{}` ({}/{}): {e}",
                    stage.name, stage.library, stage.component
                );
            }
        }
    }
    println!(
        "{}: {migrated} stage(s) migrated, {failed} failed",
        config.source.path.display()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `1 route`, `2 routes`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
