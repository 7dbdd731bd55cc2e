//! The host's log output (stderr): human lines or JSON objects.
//!
//! Log lines carry values clients chose (paths, client ids, reasons quoting
//! them) and messages plugins wrote. In the human format every field value
//! and every message passes through [`EscapedFields`], which writes control
//! characters (`\n`, `\r`, ESC, …) and Unicode line separators as escapes, so
//! one event is always one line and nobody can forge a line. The formatter
//! does it, not each call site, so a new field or a new plugin cannot forget
//! it. The JSON format keeps each value a JSON string (serde escapes it).
//!
//! Each request's audit line ([`write_audit`]) is, in the human format,
//! written straight into the log buffer: the bytes the subscriber would
//! write (tested), without its field visitors, once its filter has let the
//! line through.

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormatFields;

use crate::config::LogFormat;

/// Installs the global subscriber. The filter is, first found: `forced`
/// (`--log-level`), `SCIMGATE_LOG`, `RUST_LOG`, `default_filter`
/// (`[server] log_level`, else the command's default).
pub fn init(format: LogFormat, forced: Option<&str>, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match forced {
        Some(directives) => EnvFilter::new(directives),
        None => EnvFilter::try_from_env("SCIMGATE_LOG")
            .or_else(|_| EnvFilter::try_from_default_env())
            .unwrap_or_else(|_| EnvFilter::new(default_filter)),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(BufferedStderr::install());
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => {
            builder.with_ansi(false).fmt_fields(EscapedFields).init();
            let _ = HUMAN.set(BufferedStderr::install());
        }
    }
}

/// Set when the installed subscriber writes human lines to the buffer:
/// then [`write_audit`] may write the audit line itself.
static HUMAN: std::sync::OnceLock<BufferedStderr> = std::sync::OnceLock::new();

/// One request's audit event (target `scimgate::audit`): its message is
/// `request`, or `request failed` (at error level) for a 5xx.
pub struct AuditLine<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub provider: &'a str,
    pub client_id: &'a str,
    pub client_ip: &'a str,
    pub decision: &'a str,
    pub stage: &'a str,
    pub reason: &'a str,
    pub latency_us: u64,
}

impl AuditLine<'_> {
    fn failed(&self) -> bool {
        self.status >= 500
    }

    /// The tracing event, as the subscriber formats it.
    fn emit(&self) {
        let AuditLine {
            request_id,
            route,
            method,
            path,
            status,
            provider,
            client_id,
            client_ip,
            decision,
            stage,
            reason,
            latency_us,
        } = self;
        if self.failed() {
            tracing::error!(target: "scimgate::audit", request_id = %request_id, route = %route, method = %method, path = %path,
                status, provider = %provider, client_id = %client_id, client_ip = %client_ip,
                decision, stage = %stage, reason = %reason, latency_us, "request failed");
        } else {
            tracing::info!(target: "scimgate::audit", request_id = %request_id, route = %route, method = %method, path = %path,
                status, provider = %provider, client_id = %client_id, client_ip = %client_ip,
                decision, stage = %stage, reason = %reason, latency_us, "request");
        }
    }

    /// The human line the subscriber writes for [`AuditLine::emit`], byte
    /// for byte (tested), after the timestamp and its space.
    fn write_human(&self, out: &mut String) -> fmt::Result {
        use fmt::Write;
        let (level, message) = if self.failed() {
            ("ERROR", "request failed")
        } else {
            (" INFO", "request")
        };
        out.push_str(level);
        out.push_str(" scimgate::audit: ");
        out.push_str(message);
        displayed(out, "request_id", self.request_id)?;
        displayed(out, "route", self.route)?;
        displayed(out, "method", self.method)?;
        displayed(out, "path", self.path)?;
        write!(out, " status={}", self.status)?;
        displayed(out, "provider", self.provider)?;
        displayed(out, "client_id", self.client_id)?;
        displayed(out, "client_ip", self.client_ip)?;
        out.push_str(" decision=");
        write_debug_str(&mut Escaping(&mut *out), self.decision)?;
        displayed(out, "stage", self.stage)?;
        displayed(out, "reason", self.reason)?;
        write!(out, " latency_us={}", self.latency_us)?;
        out.push('\n');
        Ok(())
    }
}

/// ` name=value`, as a `%` field: the value's text, control characters
/// escaped.
fn displayed(out: &mut String, name: &str, value: &str) -> fmt::Result {
    out.push(' ');
    out.push_str(name);
    out.push('=');
    escape_into(value, out)
}

/// Logs `line`: written straight into the log buffer when the installed
/// subscriber writes human lines and would write this one (its filter lets
/// it through, no span is entered), else as a tracing event. The line is
/// the subscriber's byte for byte; writing it directly skips the
/// subscriber's field visitors and its formatting of the time (a sixth of
/// a GET's CPU before, with the audit line's share).
pub fn write_audit(line: &AuditLine<'_>) {
    let direct = HUMAN.get().filter(|_| {
        let enabled = if line.failed() {
            tracing::enabled!(target: "scimgate::audit", tracing::Level::ERROR)
        } else {
            tracing::enabled!(target: "scimgate::audit", tracing::Level::INFO)
        };
        enabled && tracing::Span::current().is_none()
    });
    let Some(buffer) = direct else {
        return line.emit();
    };
    LINE.with(|text| {
        let Ok(mut text) = text.try_borrow_mut() else {
            return line.emit();
        };
        text.clear();
        timestamp(std::time::SystemTime::now(), &mut text);
        if line.write_human(&mut text).is_ok() {
            buffer.append(text.as_bytes(), line.failed());
        } else {
            line.emit();
        }
    });
}

thread_local! {
    /// The audit line being written (its capacity kept between requests).
    static LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// The last second written, and its text up to the fraction.
    static SECOND: std::cell::Cell<(u64, [u8; 20])> = const { std::cell::Cell::new((u64::MAX, [0; 20])) };
}

/// Writes `now` and a space as `tracing_subscriber`'s default timer does
/// (`2026-12-04T21:41:01.322040Z `, UTC, microseconds); the text up to the
/// seconds is made once per second.
fn timestamp(now: std::time::SystemTime, out: &mut String) {
    let since = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (cached, mut prefix) = SECOND.get();
    if cached != secs {
        let date = i64::try_from(secs)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
            date.year(),
            u8::from(date.month()),
            date.day(),
            date.hour(),
            date.minute(),
            date.second()
        );
        if text.len() == prefix.len() {
            prefix.copy_from_slice(text.as_bytes());
            SECOND.set((secs, prefix));
        } else {
            // Beyond year 9999: not cached.
            out.push_str(&text);
            push_micros(since.subsec_micros(), out);
            return;
        }
    }
    out.push_str(std::str::from_utf8(&prefix).unwrap_or_default());
    push_micros(since.subsec_micros(), out);
}

/// Six digits, then `Z `.
fn push_micros(micros: u32, out: &mut String) {
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_str(std::str::from_utf8(&digits).unwrap_or("000000"));
    out.push_str("Z ");
}

/// How long an info or debug line may wait in the buffer before it is
/// written out, unless `SCIMGATE_LOG_FLUSH` says otherwise.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);
/// The environment variable that sets the flush interval (`"0"`: every
/// line at once).
pub const FLUSH_VAR: &str = "SCIMGATE_LOG_FLUSH";
/// The longest flush interval `SCIMGATE_LOG_FLUSH` may set.
const MAX_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
/// A buffer this full is written out at once.
const FLUSH_BYTES: usize = 32 * 1024;

/// The log's way to stderr: lines are gathered in memory and written out by
/// a background thread every [`FLUSH_INTERVAL`] (`SCIMGATE_LOG_FLUSH`), or
/// at once when the buffer passes 32 KiB, when a line is a warning or an
/// error, and at exit ([`flush`], also from the panic hook). One `write`
/// per batch instead of one per request: under load the audit line was a
/// system call per request on the async workers. Like Envoy's access-log
/// flush interval, an info line may be that late; a warning or error never
/// is.
#[derive(Clone)]
pub struct BufferedStderr(std::sync::Arc<LogBuffer>);

/// The bytes waiting to be written.
pub struct LogBuffer {
    pending: std::sync::Mutex<Vec<u8>>,
    /// Held while a batch is written out, taken before `pending` is let
    /// go: the lines go on being gathered meanwhile, and batches leave in
    /// the order they were taken.
    writing: std::sync::Mutex<()>,
    /// Zero: no buffering.
    interval: std::time::Duration,
    /// Where the bytes go: stderr (tests capture them).
    out: fn(&[u8]),
}

/// Writes to stderr; there is nowhere to report a failing stderr.
fn to_stderr(bytes: &[u8]) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(bytes);
}

/// The flush interval `SCIMGATE_LOG_FLUSH` sets (a duration such as `50ms`,
/// or `0`), else [`FLUSH_INTERVAL`]; a value that is not a duration up to
/// 10 s is refused with the reason.
pub fn flush_interval(value: Option<&str>) -> Result<std::time::Duration, String> {
    let Some(text) = value.map(str::trim) else {
        return Ok(FLUSH_INTERVAL);
    };
    if text == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let interval =
        scimgate_abi::units::parse_duration(text).map_err(|e| format!("{FLUSH_VAR}: {e}"))?;
    if interval > MAX_FLUSH_INTERVAL {
        return Err(format!(
            "{FLUSH_VAR}: `{text}` is longer than the longest flush interval, 10s"
        ));
    }
    Ok(interval)
}

static INSTALLED: std::sync::OnceLock<BufferedStderr> = std::sync::OnceLock::new();

impl BufferedStderr {
    /// The process's buffered stderr, with its flushing thread started on
    /// first use and the panic hook made to flush first.
    pub fn install() -> BufferedStderr {
        INSTALLED
            .get_or_init(|| {
                let variable = std::env::var(FLUSH_VAR).ok();
                let interval = flush_interval(variable.as_deref()).unwrap_or_else(|reason| {
                    eprintln!("warning: {reason}; flushing the log every 50ms");
                    FLUSH_INTERVAL
                });
                let writer = BufferedStderr(std::sync::Arc::new(LogBuffer {
                    pending: std::sync::Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
                    writing: std::sync::Mutex::new(()),
                    interval,
                    out: to_stderr,
                }));
                if !interval.is_zero() {
                    let flusher = writer.clone();
                    let started = std::thread::Builder::new()
                        .name("scimgate-log".into())
                        .spawn(move || loop {
                            std::thread::sleep(interval);
                            flusher.flush_now();
                        });
                    if started.is_err() {
                        eprintln!("warning: no log flushing thread; lines are written at 32 KiB");
                    }
                }
                let previous = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    flush();
                    previous(info);
                }));
                writer
            })
            .clone()
    }

    /// Writes out whatever is pending.
    pub fn flush_now(&self) {
        let pending = lock(&self.0.pending);
        if !pending.is_empty() {
            self.write_out(pending);
        }
    }

    fn append(&self, bytes: &[u8], urgent: bool) {
        let mut pending = lock(&self.0.pending);
        pending.extend_from_slice(bytes);
        if urgent || self.0.interval.is_zero() || pending.len() >= FLUSH_BYTES {
            self.write_out(pending);
        }
    }

    /// Takes the pending lines and writes them out, letting others gather
    /// new ones while the write lasts.
    fn write_out(&self, mut pending: std::sync::MutexGuard<'_, Vec<u8>>) {
        let batch = std::mem::replace(&mut *pending, Vec::with_capacity(FLUSH_BYTES));
        let writing = lock(&self.0.writing);
        drop(pending);
        (self.0.out)(&batch);
        drop(writing);
    }
}

/// The guard, poisoned or not: a panic while holding it leaves bytes, not
/// a broken invariant.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Writes out the log lines still in the buffer (before the process ends).
pub fn flush() {
    if let Some(writer) = INSTALLED.get() {
        writer.flush_now();
    }
}

/// One event's line, handed to the buffer whole.
pub struct LineWriter {
    buffer: BufferedStderr,
    urgent: bool,
}

impl std::io::Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.append(bytes, self.urgent);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        LineWriter {
            buffer: self.clone(),
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LineWriter {
        LineWriter {
            buffer: self.clone(),
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// The default `key=value` field formatter, with every control character
/// escaped on its way out.
///
/// Its lines are `tracing_subscriber`'s `DefaultFields` lines, byte for
/// byte (tested): a field whose value is a number, a boolean, a string or
/// a `%`/`?` value is written here directly (`name=value`, a string as its
/// `Debug`, quoted), without the colour styles `DefaultFields` wraps every
/// name and `=` in even when colours are off (a sixth of an audit line's
/// cost); the message, errors and raw (`r#`) names are left to
/// `DefaultFields`' own visitor.
#[derive(Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut escaping = Escaping(&mut writer);
        let mut visitor = FieldWriter {
            writer: Writer::new(&mut escaping),
            is_empty: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Writes fields as `DefaultFields`' visitor does: separated by a space,
/// `name=value`.
struct FieldWriter<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl FieldWriter<'_> {
    /// Whether `field` is written by `DefaultFields`' visitor instead.
    fn delegated(field: &tracing::field::Field) -> bool {
        field.name() == "message" || field.name().starts_with("r#")
    }

    /// Hands one field to `DefaultFields`' visitor, continuing the line.
    fn delegate(&mut self, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        use tracing_subscriber::field::VisitOutput;
        let mut visitor = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }

    /// Writes `name=` after a space if a field came before.
    fn name(&mut self, field: &tracing::field::Field) -> fmt::Result {
        if self.is_empty {
            self.is_empty = false;
        } else {
            self.writer.write_char(' ')?;
        }
        self.writer.write_str(field.name())?;
        self.writer.write_char('=')
    }

    fn write(
        &mut self,
        field: &tracing::field::Field,
        value: impl FnOnce(&mut Writer<'_>) -> fmt::Result,
    ) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(&mut self.writer));
        }
    }
}

/// Numbers and booleans reach `record_debug` by the trait's defaults, as in
/// `DefaultFields`' visitor.
impl tracing::field::Visit for FieldWriter<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if Self::delegated(field) {
            return self.delegate(|v| v.record_str(field, value));
        }
        self.write(field, |w| write_debug_str(w, value));
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.delegate(|v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if Self::delegated(field) {
            return self.delegate(|v| v.record_debug(field, value));
        }
        self.write(field, |w| write!(w, "{value:?}"));
    }
}

/// `Debug` of a string: quoted, with `"`, a backslash and anything not
/// printable ASCII escaped; a plain value needs none.
fn write_debug_str(w: &mut impl fmt::Write, value: &str) -> fmt::Result {
    if value
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        w.write_char('"')?;
        w.write_str(value)?;
        w.write_char('"')
    } else {
        write!(w, "{value:?}")
    }
}

/// Passes text through, control characters escaped.
struct Escaping<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaping<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape_into(s, self.0)
    }
}

/// Writes `s` with `\n`, `\r`, `\t` and every other control character (and
/// U+2028/U+2029) escaped; everything else unchanged.
pub fn escape_into(s: &str, out: &mut impl fmt::Write) -> fmt::Result {
    // Nearly every value is printable ASCII: nothing to look for char by char.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return out.write_str(s);
    }
    let mut rest = s;
    while let Some(i) = rest.find(needs_escape) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or_default();
        // `\n`, `\r`, `\t`, else `\u{…}`: every character escaped here is
        // a control character or a line separator.
        write!(out, "{}", c.escape_default())?;
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(s: &str) -> String {
        let mut out = String::new();
        escape_into(s, &mut out).unwrap();
        out
    }
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(json: bool, emit: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false);
        if json {
            let subscriber = builder.json().flatten_event(true).finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            let subscriber = builder.fmt_fields(EscapedFields).finish();
            tracing::subscriber::with_default(subscriber, emit);
        }
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn the_flush_interval_is_a_bounded_duration_or_zero() {
        assert_eq!(flush_interval(None), Ok(FLUSH_INTERVAL));
        assert_eq!(flush_interval(Some("0")), Ok(std::time::Duration::ZERO));
        assert_eq!(
            flush_interval(Some(" 200ms ")),
            Ok(std::time::Duration::from_millis(200))
        );
        let soon = flush_interval(Some("soon")).unwrap_err();
        assert!(soon.starts_with("SCIMGATE_LOG_FLUSH: "), "{soon}");
        let long = flush_interval(Some("1m")).unwrap_err();
        assert!(long.contains("longest flush interval, 10s"), "{long}");
    }

    #[test]
    fn warnings_reach_stderr_at_once_and_infos_wait_for_the_flush() {
        use std::io::Write;
        thread_local! {
            static WRITTEN: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        fn capture(bytes: &[u8]) {
            WRITTEN.with(|w| w.borrow_mut().extend_from_slice(bytes));
        }
        let written = || WRITTEN.with(|w| String::from_utf8_lossy(&w.borrow()).into_owned());
        let buffer = BufferedStderr(std::sync::Arc::new(LogBuffer {
            pending: std::sync::Mutex::new(Vec::new()),
            writing: std::sync::Mutex::new(()),
            interval: FLUSH_INTERVAL,
            out: capture,
        }));
        let pending = |b: &BufferedStderr| b.0.pending.lock().map(|p| p.len()).unwrap_or(0);
        let writer = |urgent| LineWriter {
            buffer: buffer.clone(),
            urgent,
        };
        writer(false).write_all(b"an info line\n").unwrap();
        assert_eq!(pending(&buffer), 13, "an info line waits");
        assert_eq!(written(), "");
        buffer.flush_now();
        assert_eq!(
            (pending(&buffer), written()),
            (0, "an info line\n".to_string())
        );
        // A warning writes out what waits, and itself, in order.
        writer(false).write_all(b"queued\n").unwrap();
        writer(true).write_all(b"a warning\n").unwrap();
        assert_eq!(pending(&buffer), 0, "a warning is written at once");
        assert!(written().ends_with("queued\na warning\n"), "{}", written());
        // A full buffer is written at once too.
        writer(false).write_all(&[b'x'; FLUSH_BYTES]).unwrap();
        assert_eq!(pending(&buffer), 0, "32 KiB are written at once");
        assert_eq!(written().len(), 13 + 17 + FLUSH_BYTES);
    }

    const FORGED: &str =
        "x\n2026-01-01T00:00:00Z  INFO scimgate::audit: request decision=\"allow\"\r\x1b[2K";

    #[test]
    fn human_lines_cannot_be_forged_through_values_or_messages() {
        let out = capture(false, || {
            tracing::info!(target: "scimgate::audit", client_id = %FORGED, path = FORGED, "request");
            tracing::warn!("{FORGED}");
            let _span = tracing::info_span!("conn", peer = %FORGED).entered();
            tracing::info!("inside");
        });
        assert_eq!(out.lines().count(), 3, "{out}");
        assert!(!out.contains('\r') && !out.contains('\x1b'), "{out:?}");
        assert!(!out.lines().any(|l| l.starts_with("2026-01-01")), "{out}");
        assert!(
            out.contains("client_id=x\\n2026-01-01T00:00:00Z  INFO"),
            "{out}"
        );
        assert!(out.contains("\\r\\u{1b}[2K"), "{out}");
    }

    /// What `EscapedFields` replaced: `DefaultFields` behind `Escaping`.
    struct EscapedDefault(tracing_subscriber::fmt::format::DefaultFields);

    impl<'writer> FormatFields<'writer> for EscapedDefault {
        fn format_fields<R: RecordFields>(
            &self,
            mut writer: Writer<'writer>,
            fields: R,
        ) -> fmt::Result {
            let mut escaping = Escaping(&mut writer);
            self.0.format_fields(Writer::new(&mut escaping), fields)
        }
    }

    /// The human lines of `emit` with `fields` as the field formatter.
    fn lines_with<N>(fields: N, emit: impl FnOnce()) -> String
    where
        N: for<'w> FormatFields<'w> + Send + Sync + 'static,
    {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn fields_are_written_as_the_default_formatter_writes_them() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Shape {
            name: &'static str,
        }
        let emit = || {
            let error = std::io::Error::other("disk \"full\"");
            let path = "/iso/scim/v2/Users/2819c223";
            tracing::info!(target: "scimgate::audit", request_id = %"r-1", route = %"oim", method = %"GET",
                path = %path, status = 200u64, provider = %"", client_id = %"oim-prod",
                client_ip = %"127.0.0.1", decision = "allow", stage = %"", reason = %"", latency_us = 41u64, "request");
            for text in [
                "plain",
                "quote \" inside",
                "back\\slash",
                "tab\there",
                "é ✓",
                "esc\u{1b}[2K",
                "",
                "it's",
            ] {
                tracing::warn!(value = text, shown = %text, debugged = ?text, "text {text}");
            }
            tracing::info!(
                n = -3i64,
                big = u64::MAX,
                yes = true,
                no = false,
                ratio = 1.5f64,
                huge = 7u128
            );
            tracing::error!(error = &error as &(dyn std::error::Error + 'static), r#type = "x", shape = ?Shape { name: "s" });
            tracing::info!("only a message \u{1b}[31m");
            tracing::info!(alone = 1u64);
            let _span = tracing::info_span!("conn", peer = %"10.0.0.1:5", n = 3u64).entered();
            tracing::info!(inner = "yes", "inside");
        };
        let expected = lines_with(EscapedDefault(Default::default()), emit);
        let written = lines_with(EscapedFields, emit);
        assert_eq!(written.lines().count(), 14, "{written}");
        assert_eq!(written, expected);
    }

    #[test]
    fn audit_lines_written_directly_are_the_subscribers() {
        let line =
            |status: u16, path: &'static str, reason: &'static str, decision: &'static str| {
                AuditLine {
                    request_id: "4e8e9ec7-094f-4f6a-b9c9-02823f24e825",
                    route: "/iso/scim/v2",
                    method: "GET",
                    path,
                    status,
                    provider: "oim-prod",
                    client_id: "oim-prod",
                    client_ip: "127.0.0.1",
                    decision,
                    stage: "",
                    reason,
                    latency_us: 27,
                }
            };
        let lines = [
            line(200, "/iso/scim/v2/Users/2819c223", "", "allow"),
            line(
                503,
                "/iso/scim/v2/Users",
                "request timed out after 30s",
                "error",
            ),
            line(
                403,
                "/iso/scim/v2/Us\ners\r\u{1b}[2K",
                "é \"quoted\" \u{2028}",
                "deny",
            ),
            line(401, "", "", "a \"strange\" decision\n"),
        ];
        for line in &lines {
            let by_subscriber = capture(false, || line.emit());
            // The subscriber's line after its timestamp and space.
            let (stamp, rest) = by_subscriber.split_at(28);
            assert!(stamp.ends_with("Z "), "{by_subscriber}");
            let mut direct = String::new();
            line.write_human(&mut direct).unwrap();
            assert_eq!(direct, rest);
            assert_eq!(direct.lines().count(), 1, "{direct}");
        }
    }

    #[test]
    fn timestamps_are_the_default_timers() {
        let at = |secs: u64, micros: u64| {
            let time = std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(secs)
                + std::time::Duration::from_micros(micros);
            let mut text = String::new();
            timestamp(time, &mut text);
            text
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z ");
        assert_eq!(at(1_796_420_368, 42), "2026-12-04T21:39:28.000042Z ");
        // The same second again (cached), then the next one.
        assert_eq!(at(1_796_420_368, 999_999), "2026-12-04T21:39:28.999999Z ");
        assert_eq!(at(1_796_420_369, 1), "2026-12-04T21:39:29.000001Z ");
        assert_eq!(at(951_782_400, 500_000), "2000-02-29T00:00:00.500000Z ");
        // The subscriber's own timer writes the same shape.
        let by_subscriber = capture(false, || tracing::info!("x"));
        let mut now = String::new();
        timestamp(std::time::SystemTime::now(), &mut now);
        for text in [&by_subscriber, &now] {
            let shape: String = text[..28]
                .chars()
                .map(|c| if c.is_ascii_digit() { '0' } else { c })
                .collect();
            assert_eq!(shape, "0000-00-00T00:00:00.000000Z ", "{text}");
        }
        assert_eq!(
            by_subscriber[..10],
            now[..10],
            "the same day, barring midnight"
        );
    }

    #[test]
    fn json_keeps_each_value_one_field() {
        let out = capture(true, || {
            tracing::info!(target: "scimgate::audit", client_id = %FORGED, "request");
        });
        assert_eq!(out.lines().count(), 1, "{out}");
        let value: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert_eq!(value["client_id"], FORGED);
    }

    #[test]
    fn escapes() {
        assert_eq!(escape("plain é"), "plain é");
        assert_eq!(escape("GET /Users/2819c223 ~ok"), "GET /Users/2819c223 ~ok");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(escape("del\u{7f}"), "del\\u{7f}");
        assert_eq!(
            escape("a\nb\r\tc\u{7f}\u{85}\u{2028}"),
            "a\\nb\\r\\tc\\u{7f}\\u{85}\\u{2028}"
        );
    }
}
