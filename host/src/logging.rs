//! The host's log output (stderr): human lines or JSON objects.
//!
//! Log lines carry values clients chose (paths, client ids, reasons quoting
//! them) and messages plugins wrote. In the human format every field value
//! and every message passes through [`EscapedFields`], which writes control
//! characters (`\n`, `\r`, ESC, …) and Unicode line separators as escapes, so
//! one event is always one line and nobody can forge a line. The formatter
//! does it, not each call site, so a new field or a new plugin cannot forget
//! it. The JSON format keeps each value a JSON string (serde escapes it).

use std::fmt;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
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
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Human => builder
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .init(),
    }
}

/// The default `key=value` field formatter, with every control character
/// escaped on its way out.
#[derive(Default)]
pub struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut escaping = Escaping(&mut writer);
        self.0.format_fields(Writer::new(&mut escaping), fields)
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
            let subscriber = builder.fmt_fields(EscapedFields::default()).finish();
            tracing::subscriber::with_default(subscriber, emit);
        }
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
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
        assert_eq!(
            escape("a\nb\r\tc\u{7f}\u{85}\u{2028}"),
            "a\\nb\\r\\tc\\u{7f}\\u{85}\\u{2028}"
        );
    }
}
