//! What the host offers plugins: logging through the host's `tracing`
//! subscriber (a `.so` cannot see it directly).

use abi_stable::std_types::RStr;
use scimgate_abi::ffi::FfiHostServices;
use scimgate_abi::LogLevel;
use tracing::level_filters::LevelFilter;

/// Forwards plugin log events to `tracing`, under the target
/// `scimgate::plugin` with the plugin's own target as a field.
#[derive(Clone)]
pub struct TracingHostServices;

impl FfiHostServices for TracingHostServices {
    fn max_level(&self) -> LogLevel {
        match LevelFilter::current() {
            LevelFilter::OFF | LevelFilter::ERROR => LogLevel::Error,
            LevelFilter::WARN => LogLevel::Warn,
            LevelFilter::INFO => LogLevel::Info,
            LevelFilter::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    fn log(&self, level: LogLevel, target: RStr<'_>, message: RStr<'_>) {
        let target = target.as_str();
        let message = message.as_str();
        CURRENT_REQUEST.with(|current| {
            let current = current.borrow();
            // Empty outside a request (creation, validation, background work).
            let request_id = current.as_deref().unwrap_or("");
            match level {
                LogLevel::Error => {
                    tracing::error!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Warn => {
                    tracing::warn!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Info => {
                    tracing::info!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Debug => {
                    tracing::debug!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
                LogLevel::Trace => {
                    tracing::trace!(target: "scimgate::plugin", plugin = target, request_id, "{message}")
                }
            }
        })
    }
}

thread_local! {
    static CURRENT_REQUEST: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// While alive, plugin log lines written on this thread carry `request_id`
/// (a plugin calls the host synchronously from the pipeline's thread).
pub struct RequestScope {
    previous: Option<String>,
}

impl RequestScope {
    pub fn enter(request_id: &str) -> RequestScope {
        let previous = CURRENT_REQUEST.with(|c| c.borrow_mut().replace(request_id.to_string()));
        RequestScope { previous }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT_REQUEST.with(|c| *c.borrow_mut() = previous);
    }
}
