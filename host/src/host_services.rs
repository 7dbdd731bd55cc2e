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
        match level {
            LogLevel::Error => {
                tracing::error!(target: "scimgate::plugin", plugin = target, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "scimgate::plugin", plugin = target, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "scimgate::plugin", plugin = target, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "scimgate::plugin", plugin = target, "{message}")
            }
            LogLevel::Trace => {
                tracing::trace!(target: "scimgate::plugin", plugin = target, "{message}")
            }
        }
    }
}
