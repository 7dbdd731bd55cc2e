//! `[server]`: where to listen, where plugins and data live, request limits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::check::Checker;
use super::diagnostic::Diagnostic;
use super::tree::{Kind, Table, Val};
use super::units::{parse_duration, parse_size};
use super::{ClientAuth, ForwardedHeader, LogFormat, ServerConfig, TlsConfig, TlsMinVersion};

const KEYS: &[&str] = &[
    "listen",
    "plugin_dir",
    "data_dir",
    "trusted_proxies",
    "max_body_size",
    "request_timeout",
    "blocking_threads",
    "public_url",
    "log_format",
    "log_level",
    "header_read_timeout",
    "keep_alive_timeout",
    "max_connections",
    "forwarded_header",
    "metrics",
    "metrics_listen",
    "tls",
];

const TLS_KEYS: &[&str] = &[
    "cert_file",
    "key_file",
    "client_ca_file",
    "client_auth",
    "min_version",
    "http2",
];

/// Reads `[server]`; anything missing or wrong keeps its default (and is reported).
pub(crate) fn server(ck: &mut Checker, table: &Table, base: Option<&Path>) -> ServerConfig {
    ck.unknown_keys(table, "server", KEYS);
    let mut server = ServerConfig {
        data_dir: resolve(base, Path::new("scimgate-data")),
        ..ServerConfig::default()
    };

    if let Some((text, val)) = ck.opt_str(table, "listen", "server") {
        match text.parse::<SocketAddr>() {
            Ok(addr) => server.listen = addr,
            Err(_) => ck.push(
                Diagnostic::error(
                    format!("invalid listen address {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected IP:port")
                .with_help(
                    "write an IP address and a port, e.g. \"127.0.0.1:8080\" or \"[::]:8443\"",
                ),
            ),
        }
    }
    if let Some(entry) = table.get("metrics") {
        if let Some(on) = ck.bool(&entry.val, "server.metrics") {
            server.metrics = on;
        }
    }
    if let Some((text, val)) = ck.opt_str(table, "metrics_listen", "server") {
        match text.parse::<SocketAddr>() {
            Ok(addr) if addr == server.listen && addr.port() != 0 => ck.push(
                Diagnostic::error(
                    format!("`server.metrics_listen` is the same address as `server.listen` ({addr})"),
                    val.span.clone(),
                )
                .with_label("already the main listener")
                .with_help(
                    "leave `metrics_listen` out to serve /metrics on the main listener, or give it an address of its own",
                ),
            ),
            Ok(addr) => server.metrics_listen = Some(addr),
            Err(_) => ck.push(
                Diagnostic::error(
                    format!("invalid `server.metrics_listen` address {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected IP:port")
                .with_help("write an IP address and a port, e.g. \"127.0.0.1:9100\""),
            ),
        }
    }
    // One folder, or a list searched in order.
    if let Some(entry) = table.get("plugin_dir") {
        let folders: Vec<(&str, &Val)> = match &entry.val.kind {
            Kind::Array(_) => ck.str_array(&entry.val, "server.plugin_dir"),
            _ => ck
                .str(&entry.val, "server.plugin_dir")
                .map(|text| (text, &entry.val))
                .into_iter()
                .collect(),
        };
        if matches!(&entry.val.kind, Kind::Array(items) if items.is_empty()) {
            ck.push(
                Diagnostic::error(
                    "`server.plugin_dir` is an empty list",
                    entry.val.span.clone(),
                )
                .with_label("expected at least one folder"),
            );
        }
        for (text, val) in folders {
            if non_empty_path(ck, text, val, "server.plugin_dir") {
                server.plugin_dir.push(resolve(base, Path::new(text)));
            }
        }
    }
    if let Some((text, val)) = ck.opt_str(table, "data_dir", "server") {
        if non_empty_path(ck, text, val, "server.data_dir") {
            server.data_dir = resolve(base, Path::new(text));
        }
    }
    if let Some(entry) = table.get("trusted_proxies") {
        for (text, val) in ck.str_array(&entry.val, "server.trusted_proxies") {
            match parse_net(text) {
                Some(net) => server.trusted_proxies.push(net),
                None => ck.push(
                    Diagnostic::error(
                        format!("invalid trusted proxy {}", val.shown()),
                        val.span.clone(),
                    )
                    .with_label("expected an IP address or CIDR")
                    .with_help("e.g. \"10.0.0.1\", \"10.0.0.0/8\" or \"fd00::/8\""),
                ),
            }
        }
    }
    if let Some(entry) = table.get("max_body_size") {
        let val = &entry.val;
        let parsed = match &val.kind {
            Kind::Str(s) => Some(parse_size(s)),
            Kind::Int(i) => {
                Some(usize::try_from(*i).map_err(|_| "a size cannot be negative".to_string()))
            }
            _ => {
                ck.wrong_type(
                    val,
                    "server.max_body_size",
                    "a size (\"2MiB\") or a number of bytes",
                );
                None
            }
        };
        match parsed {
            Some(Ok(0)) => ck.push(
                Diagnostic::error(
                    "`server.max_body_size` must be greater than zero",
                    val.span.clone(),
                )
                .with_label("zero bytes"),
            ),
            Some(Ok(size)) => server.max_body_size = size,
            Some(Err(msg)) => ck.push(invalid(val, "server.max_body_size", &msg)),
            None => {}
        }
    }
    for (key, slot) in [
        ("request_timeout", &mut server.request_timeout),
        ("header_read_timeout", &mut server.header_read_timeout),
        ("keep_alive_timeout", &mut server.keep_alive_timeout),
    ] {
        if let Some(d) = duration(ck, table, key) {
            *slot = d;
        }
    }
    if let Some(entry) = table.get("max_connections") {
        if let Some(n) = ck.int(&entry.val, "server.max_connections") {
            match usize::try_from(n) {
                Ok(n @ 1..=MAX_CONNECTIONS) => server.max_connections = n,
                _ => ck.push(
                    Diagnostic::error(
                        format!(
                            "`server.max_connections` must be between 1 and {MAX_CONNECTIONS}, found {n}"
                        ),
                        entry.val.span.clone(),
                    )
                    .with_label("out of range"),
                ),
            }
        }
    }
    if let Some((text, val)) = ck.opt_str(table, "forwarded_header", "server") {
        match text {
            "x-forwarded-for" => server.forwarded_header = ForwardedHeader::XForwardedFor,
            "forwarded" => server.forwarded_header = ForwardedHeader::Forwarded,
            _ => ck.push(
                Diagnostic::error(
                    format!("unknown forwarded header {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected \"x-forwarded-for\" or \"forwarded\"")
                .with_help(
                    "name the one header your trusted proxy sets: X-Forwarded-For or RFC 7239 Forwarded",
                ),
            ),
        }
    }
    if let Some(entry) = table.get("blocking_threads") {
        if let Some(n) = ck.int(&entry.val, "server.blocking_threads") {
            match usize::try_from(n) {
                Ok(n @ 1..=1024) => server.blocking_threads = n,
                _ => ck.push(
                    Diagnostic::error(
                        format!("`server.blocking_threads` must be between 1 and 1024, found {n}"),
                        entry.val.span.clone(),
                    )
                    .with_label("out of range"),
                ),
            }
        }
    }
    if let Some((text, val)) = ck.opt_str(table, "public_url", "server") {
        match check_public_url(text) {
            Ok(url) => server.public_url = Some(url),
            Err(msg) => ck.push(
                Diagnostic::error(
                    format!("invalid `server.public_url` {}", val.shown()),
                    val.span.clone(),
                )
                .with_label(msg)
                .with_help("e.g. \"https://vault.example.com\" or \"https://example.com/gateway\""),
            ),
        }
    }
    if let Some((text, val)) = ck.opt_str(table, "log_level", "server") {
        // `SCIMGATE_LOG`'s grammar: a level, or directives like
        // "info,scimgate::audit=warn".
        match tracing_subscriber::EnvFilter::builder().parse(text) {
            Ok(_) => server.log_level = Some(text.to_string()),
            Err(e) => ck.push(
                Diagnostic::error(
                    format!("invalid log level {}", val.shown()),
                    val.span.clone(),
                )
                .with_label(e.to_string())
                .with_help("a level (error, warn, info, debug, trace) or directives like \"info,scimgate::audit=warn\""),
            ),
        }
    }
    if let Some((text, val)) = ck.opt_str(table, "log_format", "server") {
        match text {
            "human" => server.log_format = LogFormat::Human,
            "json" => server.log_format = LogFormat::Json,
            _ => ck.push(
                Diagnostic::error(
                    format!("unknown log format {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected \"human\" or \"json\""),
            ),
        }
    }
    if let Some(entry) = table.get("tls") {
        if let Some(tls_table) = ck.table(&entry.val, "server.tls") {
            server.tls = tls(ck, tls_table, base);
        }
    }
    server
}

/// `[server.tls]`: the settings, then the files themselves (read and
/// checked now, so that `scimgate validate` and a reload report a bad
/// certificate or key at its key).
fn tls(ck: &mut Checker, table: &Table, base: Option<&Path>) -> Option<TlsConfig> {
    ck.unknown_keys(table, "server.tls", TLS_KEYS);
    let file = |ck: &mut Checker, key: &str, required: bool| -> Option<(PathBuf, &Val)> {
        if required && table.get(key).is_none() {
            let example = if key == "cert_file" {
                "server.pem"
            } else {
                "server.key"
            };
            ck.push(
                Diagnostic::error(
                    format!("missing required key `{key}` in [server.tls]"),
                    table.header_span.clone(),
                )
                .with_label(format!("`{key}` is required here"))
                .with_help(format!(
                    "[server.tls] needs `cert_file` (PEM certificate chain) and `key_file` (PEM private key), relative to this file's folder; e.g. {key} = \"tls/{example}\""
                )),
            );
            return None;
        }
        let (text, val) = ck.opt_str(table, key, "server.tls")?;
        if text.trim().is_empty() {
            ck.push(
                Diagnostic::error(format!("`server.tls.{key}` is empty"), val.span.clone())
                    .with_label("expected a file path")
                    .with_help("a path to a PEM file, relative to this file's folder or absolute"),
            );
            return None;
        }
        Some((resolve(base, Path::new(text)), val))
    };
    let cert = file(ck, "cert_file", true);
    let key = file(ck, "key_file", true);
    let client_ca = file(ck, "client_ca_file", false);
    let mut client_auth = ClientAuth::Optional;
    if let Some((text, val)) = ck.opt_str(table, "client_auth", "server.tls") {
        match text {
            "optional" => client_auth = ClientAuth::Optional,
            "required" => client_auth = ClientAuth::Required,
            _ => ck.push(
                Diagnostic::error(
                    format!("unknown `server.tls.client_auth` {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected \"optional\" or \"required\"")
                .with_help("\"optional\": a client may present a certificate; \"required\": a client without a verified certificate is refused"),
            ),
        }
        if table.get("client_ca_file").is_none() {
            ck.push(
                Diagnostic::error(
                    "`server.tls.client_auth` without `client_ca_file`",
                    val.span.clone(),
                )
                .with_label("no CA to verify client certificates against")
                .with_help("add `client_ca_file = \"client-ca.pem\"` (the CAs that issue your clients' certificates), or remove `client_auth`"),
            );
        }
    }
    let mut min_version = TlsMinVersion::Tls12;
    if let Some((text, val)) = ck.opt_str(table, "min_version", "server.tls") {
        match text {
            "1.2" => min_version = TlsMinVersion::Tls12,
            "1.3" => min_version = TlsMinVersion::Tls13,
            _ => ck.push(
                Diagnostic::error(
                    format!("unsupported `server.tls.min_version` {}", val.shown()),
                    val.span.clone(),
                )
                .with_label("expected \"1.2\" or \"1.3\"")
                .with_help(
                    "TLS 1.2 and 1.3 are the only versions served; older ones are never accepted",
                ),
            ),
        }
    }
    let mut http2 = true;
    if let Some(entry) = table.get("http2") {
        if let Some(on) = ck.bool(&entry.val, "server.tls.http2") {
            http2 = on;
        }
    }
    let (Some((cert_file, cert_val)), Some((key_file, key_val))) = (cert, key) else {
        return None;
    };
    let settings = TlsConfig {
        cert_file,
        key_file,
        client_ca_file: client_ca.as_ref().map(|(p, _)| p.clone()),
        client_auth,
        min_version,
        http2,
    };
    if let Err(error) = crate::tls::load(&settings) {
        let val = match error.file {
            crate::tls::TlsFile::Cert => cert_val,
            crate::tls::TlsFile::Key => key_val,
            crate::tls::TlsFile::ClientCa => client_ca.as_ref().map_or(cert_val, |(_, v)| v),
        };
        let help = match error.file {
            crate::tls::TlsFile::Cert => "a PEM file with the server certificate first, then its intermediates (`-----BEGIN CERTIFICATE-----` blocks)",
            crate::tls::TlsFile::Key => "a PEM private key, unencrypted (`BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` or `BEGIN EC PRIVATE KEY`), the key of `cert_file`'s first certificate; readable by the server's user",
            crate::tls::TlsFile::ClientCa => "a PEM bundle of the CA certificates that issue the client certificates",
        };
        // A path from `${VAR}` is not echoed, like any expanded value.
        let message = if val.expanded {
            format!(
                "cannot use `server.tls.{}` (the expanded value)",
                error.file.key()
            )
        } else {
            format!(
                "cannot use `server.tls.{}` {}",
                error.file.key(),
                error.path.display()
            )
        };
        ck.push(
            Diagnostic::error(message, val.span.clone())
                .with_label(error.reason)
                .with_help(help),
        );
        return None;
    }
    Some(settings)
}

/// The largest `server.max_connections`.
const MAX_CONNECTIONS: usize = 1 << 20;

/// A positive duration under `[server]` (`"30s"`, `"500ms"`, `"2m"`).
fn duration(ck: &mut Checker, table: &Table, key: &str) -> Option<std::time::Duration> {
    let path = format!("server.{key}");
    let (text, val) = ck.opt_str(table, key, "server")?;
    match parse_duration(text) {
        Ok(d) if d.is_zero() => {
            ck.push(
                Diagnostic::error(
                    format!("`{path}` must be greater than zero"),
                    val.span.clone(),
                )
                .with_label("zero duration"),
            );
            None
        }
        Ok(d) => Some(d),
        Err(msg) => {
            ck.push(invalid(val, &path, &msg));
            None
        }
    }
}

/// A trusted proxy: a CIDR or a single address (as a /32 or /128), read
/// with the IP-list grammar of `scimgate_abi::net` (IPv4-mapped blocks
/// become IPv4, as the peer addresses they are compared with do); `*` is
/// not a proxy.
pub(crate) fn parse_net(text: &str) -> Option<ipnet::IpNet> {
    scimgate_abi::net::parse_entry(text).ok().flatten()
}

/// Relative paths are taken from the config file's folder.
fn resolve(base: Option<&Path>, path: &Path) -> PathBuf {
    match base {
        Some(base) if path.is_relative() => base.join(path),
        _ => path.to_path_buf(),
    }
}

fn non_empty_path(ck: &mut Checker, text: &str, val: &Val, path: &str) -> bool {
    if text.trim().is_empty() {
        ck.push(
            Diagnostic::error(format!("`{path}` is empty"), val.span.clone())
                .with_label("expected a folder"),
        );
        return false;
    }
    true
}

fn invalid(val: &Val, path: &str, msg: &str) -> Diagnostic {
    // `msg` quotes the text; hide it when it came from the environment.
    let label = if val.expanded {
        "invalid expanded value".to_string()
    } else {
        msg.to_string()
    };
    Diagnostic::error(format!("invalid `{path}`"), val.span.clone()).with_label(label)
}

/// `http(s)://host[:port][/path]`, no query or fragment; the trailing `/` is dropped.
fn check_public_url(text: &str) -> Result<String, &'static str> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if text.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces");
    }
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.contains('@') {
        return Err("missing host");
    }
    Ok(text.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(
            check_public_url("https://vault.example.com/"),
            Ok("https://vault.example.com".into())
        );
        assert_eq!(
            check_public_url("http://h:8080/x"),
            Ok("http://h:8080/x".into())
        );
        assert!(check_public_url("ftp://h").is_err());
        assert!(check_public_url("https://").is_err());
        assert!(check_public_url("https://h/?a").is_err());
    }

    #[test]
    fn nets() {
        assert_eq!(
            parse_net("10.0.0.1").map(|n| n.to_string()),
            Some("10.0.0.1/32".into())
        );
        assert_eq!(
            parse_net("fd00::/8").map(|n| n.to_string()),
            Some("fd00::/8".into())
        );
        assert!(parse_net("10.0.0.0/33").is_none());
        assert!(parse_net("*").is_none());
    }
}
