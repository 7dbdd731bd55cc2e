//! The running server's state: where the configuration comes from, the
//! current [`Runtime`] (swapped whole on reload), the plugin cache, the bound
//! on pipelines in flight, the readiness probe's memory and the metrics
//! (with the metrics listener, when `server.metrics_listen` names one) and
//! the TLS configuration of `[server.tls]` (its files re-read on reload).
//! Also reload on SIGHUP and the shutdown signal.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Semaphore;

use crate::config::{self, Config};
use crate::loader::{LibraryCache, PluginPath};
use crate::metrics::{Metrics, ReloadResult, Snapshot};
use crate::pipeline::{check_and_assemble, AssembleMode, Runtime};

/// Where the configuration comes from, so that a reload reads it again.
#[derive(Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// A configuration compiled into the binary, with variables of its own
    /// (looked up before the environment).
    Embedded {
        name: String,
        text: String,
        vars: std::collections::HashMap<String, String>,
    },
}

impl ConfigSource {
    /// Reads and checks the configuration (no plugins yet). A file that is
    /// TOML yields a possibly partial config next to its diagnostics; see
    /// [`config::load_partial`]. `Err` is a printable report.
    pub fn load(&self) -> Result<(Config, Vec<config::Diagnostic>), String> {
        let result = match self {
            ConfigSource::File(path) => {
                config::load_partial(path, &|name: &str| std::env::var(name).ok())
            }
            ConfigSource::Embedded { name, text, vars } => config::parse_partial(
                config::SourceFile {
                    path: PathBuf::from(name),
                    text: text.clone(),
                },
                &|name: &str| vars.get(name).cloned().or_else(|| std::env::var(name).ok()),
            ),
        };
        result.map_err(|(source, diags)| config::render_diagnostics(&source, &diags))
    }
}

/// The running server's state.
pub struct App {
    runtime: RwLock<Arc<Runtime>>,
    source: ConfigSource,
    plugin_dir: PluginPath,
    cache: Mutex<LibraryCache>,
    /// Pipelines in flight (see the module doc of [`crate::server`]).
    pub(super) pipelines: Arc<Semaphore>,
    pub(super) pipeline_capacity: usize,
    /// One readiness probe at a time; the others answer the last result.
    pub(super) probe: Arc<tokio::sync::Mutex<()>>,
    pub(super) last_ready: AtomicBool,
    /// Why the server was last not ready (empty when ready), to log changes only.
    pub(super) last_reasons: Mutex<Option<String>>,
    /// The Prometheus series of this server.
    pub metrics: Arc<Metrics>,
    /// `server.metrics_listen`'s socket, bound at start (so that a busy
    /// port is a start-up error); taken by [`super::serve`].
    pub(super) metrics_listener: Mutex<Option<std::net::TcpListener>>,
    /// `[server.tls]` as started (on or off until a restart); its
    /// certificate, key and client CAs are swapped on reload.
    pub(super) tls: Option<Arc<crate::tls::Tls>>,
}

/// Pipelines that may be in flight for a pool of `blocking_threads`: as many
/// running as the pool has threads, as many again queued.
pub fn pipeline_capacity(blocking_threads: usize) -> usize {
    blocking_threads.max(1).saturating_mul(2)
}

impl App {
    /// Loads plugins and creates every stage; the error is printable as is.
    pub fn start(
        source: ConfigSource,
        config: &Config,
        config_diags: Vec<config::Diagnostic>,
        plugin_dir: PluginPath,
    ) -> Result<Arc<App>, String> {
        let mut cache = LibraryCache::default();
        let runtime = build_runtime(config, config_diags, &plugin_dir, &mut cache)?;
        let pipeline_capacity = pipeline_capacity(config.server.blocking_threads);
        let metrics_listener = match config.server.metrics_listen {
            Some(addr) if config.server.metrics => {
                let listener = std::net::TcpListener::bind(addr)
                    .and_then(|l| l.set_nonblocking(true).map(|()| l))
                    .map_err(|e| {
                        format!(
                            "error: cannot listen on {addr} for the metrics (`server.metrics_listen`): {e}"
                        )
                    })?;
                Some(listener)
            }
            _ => None,
        };
        let tls = match &config.server.tls {
            Some(settings) => Some(Arc::new(
                crate::tls::Tls::new(settings).map_err(|e| format!("error: {e}"))?,
            )),
            None => None,
        };
        Ok(Arc::new(App {
            runtime: RwLock::new(Arc::new(runtime)),
            source,
            plugin_dir,
            cache: Mutex::new(cache),
            pipelines: Arc::new(Semaphore::new(pipeline_capacity)),
            pipeline_capacity,
            probe: Arc::new(tokio::sync::Mutex::new(())),
            last_ready: AtomicBool::new(true),
            last_reasons: Mutex::new(None),
            metrics: Arc::new(Metrics::default()),
            metrics_listener: Mutex::new(metrics_listener),
            tls,
        }))
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        match self.runtime.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The metrics exposition, as `GET /metrics` answers it.
    pub fn render_metrics(&self) -> String {
        let free = self.pipelines.available_permits();
        self.metrics.render(Snapshot {
            pipelines_in_flight: self.pipeline_capacity.saturating_sub(free),
            pipeline_capacity: self.pipeline_capacity,
        })
    }

    /// Reads the configuration again and swaps in new stages. On any error
    /// the running configuration stays. Counted in
    /// `scimgate_config_reloads_total`.
    pub fn reload(&self) -> Result<(), String> {
        let result = self.swap_config();
        self.metrics.reloaded(match result {
            Ok(()) => ReloadResult::Success,
            Err(_) => ReloadResult::Failure,
        });
        result
    }

    fn swap_config(&self) -> Result<(), String> {
        let (config, config_diags) = self.source.load()?;
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "plugin cache lock poisoned".to_string())?;
        let runtime = build_runtime(&config, config_diags, &self.plugin_dir, &mut cache)?;
        let current = self.runtime();
        if current.server.listen != runtime.server.listen {
            tracing::warn!(
                "server.listen changed to {}; a restart is needed for that, the server keeps listening on {}",
                runtime.server.listen,
                current.server.listen
            );
        }
        for (key, changed) in [
            (
                "max_connections",
                current.server.max_connections != runtime.server.max_connections,
            ),
            (
                "blocking_threads",
                current.server.blocking_threads != runtime.server.blocking_threads,
            ),
            ("metrics", current.server.metrics != runtime.server.metrics),
            (
                "metrics_listen",
                current.server.metrics_listen != runtime.server.metrics_listen,
            ),
        ] {
            if changed {
                tracing::warn!("server.{key} changed; a restart is needed for that");
            }
        }
        // The new certificate, key and client CAs, before anything is
        // swapped: bad files keep the whole previous configuration.
        match (&self.tls, &runtime.server.tls) {
            (Some(tls), Some(settings)) => tls.reload(settings).map_err(|e| {
                format!("error: {e}; the previous certificate stays in use")
            })?,
            (None, Some(_)) => tracing::warn!(
                "[server.tls] was added; a restart is needed to serve TLS, the server keeps serving plain HTTP"
            ),
            (Some(_), None) => tracing::warn!(
                "[server.tls] was removed; a restart is needed for that, the server keeps serving TLS with the previous certificate"
            ),
            (None, None) => {}
        }
        match self.runtime.write() {
            Ok(mut guard) => *guard = Arc::new(runtime),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(runtime),
        }
        Ok(())
    }
}

fn build_runtime(
    config: &Config,
    config_diags: Vec<config::Diagnostic>,
    plugin_dir: &PluginPath,
    cache: &mut LibraryCache,
) -> Result<Runtime, String> {
    match check_and_assemble(
        config,
        config_diags,
        plugin_dir,
        cache,
        AssembleMode::Create,
    ) {
        Ok(Some(runtime)) => {
            for warning in crate::pipeline::route_warnings(config, plugin_dir, cache) {
                tracing::warn!(
                    "{}: {} ({})",
                    warning.location(&config.source),
                    warning.message,
                    warning.help.as_deref().unwrap_or_default()
                );
            }
            Ok(runtime)
        }
        Ok(None) => Err("internal: assembly created nothing".to_string()),
        Err(diags) => Err(config::render_diagnostics(&config.source, &diags)),
    }
}

/// The process signals the server reacts to, installed before the
/// listening banner is printed: a SIGHUP or SIGTERM that arrives right
/// after the banner is handled, never the default action (which kills the
/// process).
pub struct Signals {
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers now (inside a tokio runtime).
    pub fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                hangup: signal(SignalKind::hangup()).ok(),
                terminate: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Splits into the SIGHUP reloader's part and the shutdown part.
    pub fn split(self) -> (ReloadSignal, ShutdownSignal) {
        #[cfg(unix)]
        {
            (
                ReloadSignal(self.hangup),
                ShutdownSignal {
                    terminate: self.terminate,
                    interrupt: self.interrupt,
                },
            )
        }
        #[cfg(not(unix))]
        (ReloadSignal(), ShutdownSignal {})
    }
}

/// SIGHUP, for [`reload_on_sighup`].
pub struct ReloadSignal(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

/// SIGTERM and SIGINT, for [`shutdown_signal`].
pub struct ShutdownSignal {
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal(signals: ShutdownSignal) {
    #[cfg(unix)]
    {
        async fn next(signal: Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        tokio::select! {
            _ = next(signals.terminate) => {},
            _ = next(signals.interrupt) => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = signals;
        let _ = tokio::signal::ctrl_c().await;
    }
    crate::notify::notify("STOPPING=1");
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Reloads the configuration on every SIGHUP.
pub async fn reload_on_sighup(app: Arc<App>, signal: ReloadSignal) {
    #[cfg(unix)]
    {
        let Some(mut hup) = signal.0 else {
            return;
        };
        while hup.recv().await.is_some() {
            crate::notify::notify("RELOADING=1");
            let app = app.clone();
            let result = tokio::task::spawn_blocking(move || app.reload()).await;
            // Ready again, with the new configuration or the previous one.
            crate::notify::notify("READY=1");
            match result {
                Ok(Ok(())) => tracing::info!("configuration reloaded"),
                Ok(Err(report)) => {
                    // One event per line: log lines never carry line breaks.
                    tracing::error!("reload failed; the previous configuration stays in force:");
                    for line in report.lines().filter(|l| !l.trim().is_empty()) {
                        tracing::error!("reload failed: {line}");
                    }
                }
                Err(e) => tracing::error!("reload failed: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (app, signal);
}
