//! Bridges `tracing` inside a plugin to the host's logger. A `.so` has its
//! own copy of `tracing`'s statics, so the host's subscriber is invisible in
//! it; this installs (once per library) a subscriber that forwards each event
//! to `HostServices::log`. Spans are not forwarded.

use std::fmt::{self, Write};
use std::sync::OnceLock;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Dispatch, Event, Level, LevelFilter, Metadata, Subscriber};

use crate::sdk::HostHandle;
use crate::types::LogLevel;

static INSTALLED: OnceLock<()> = OnceLock::new();
static HOST: OnceLock<HostHandle> = OnceLock::new();

/// The host's services, once a component has been created.
pub(crate) fn host() -> Option<&'static HostHandle> {
    HOST.get()
}

/// Installs the bridge as this library's global subscriber. In-process (a
/// plugin linked as an rlib into the host) the host's subscriber is already
/// global and stays.
pub(crate) fn install(host: &HostHandle) {
    let _ = HOST.set(host.clone());
    INSTALLED.get_or_init(|| {
        let bridge = HostBridge {
            host: host.clone(),
            max: to_filter(host.max_level()),
        };
        let _ = tracing_core::dispatcher::set_global_default(Dispatch::new(bridge));
    });
}

struct HostBridge {
    host: HostHandle,
    max: LevelFilter,
}

fn to_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    }
}

fn to_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::Error,
        Level::WARN => LogLevel::Warn,
        Level::INFO => LogLevel::Info,
        Level::DEBUG => LogLevel::Debug,
        _ => LogLevel::Trace,
    }
}

impl Subscriber for HostBridge {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.max >= *metadata.level()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = EventText::default();
        event.record(&mut text);
        let meta = event.metadata();
        self.host
            .log(to_level(meta.level()), meta.target(), &text.finish());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

/// Renders an event as `message key=value …`.
#[derive(Default)]
struct EventText {
    message: String,
    fields: String,
}

impl EventText {
    fn finish(self) -> String {
        if self.fields.is_empty() {
            self.message
        } else if self.message.is_empty() {
            self.fields
        } else {
            format!("{} {}", self.message, self.fields)
        }
    }
}

impl Visit for EventText {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            if !self.fields.is_empty() {
                self.fields.push(' ');
            }
            let _ = write!(self.fields, "{}={value}", field.name());
        }
    }
}
