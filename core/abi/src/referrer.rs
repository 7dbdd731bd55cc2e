//! Referrer patterns, one grammar for the whole project: the entries of a
//! provider's `allowed_referrers` (checked by the host's config loader) and
//! the matching of a request's `Referer` and `Origin` against them (by the
//! `allowed-referrers` policy). An entry is `*`, an origin
//! `scheme://host[:port]`, or a bare host (any scheme); the host may start
//! with `*.` (one or more labels before the rest). Only the origin is ever
//! compared: scheme, host and port, with default ports normalised.

use crate::text::shown;

/// A provider's parsed `allowed_referrers`.
#[derive(Debug, Default)]
pub struct ReferrerList {
    any: bool,
    patterns: Vec<OriginPattern>,
}

/// One entry: `https://app.example.com`, `https://app.example.com:8443`,
/// `app.example.com` (any scheme), `*.example.com`, `https://*.example.com`.
#[derive(Debug)]
pub struct OriginPattern {
    /// Lower-case; `None` for a bare host entry (any scheme).
    scheme: Option<String>,
    host: HostPattern,
    /// `None`: the default port of the request's scheme.
    port: Option<u16>,
}

#[derive(Debug)]
enum HostPattern {
    /// Lower-case host, no trailing dot.
    Exact(String),
    /// `*.example.com` as `.example.com`: one or more labels before it.
    Subdomains(String),
}

impl ReferrerList {
    /// Parses every entry; the first invalid one is the error.
    pub fn parse(entries: &[&str]) -> Result<ReferrerList, String> {
        let mut list = ReferrerList::default();
        for entry in entries {
            match parse_pattern(entry)? {
                None => list.any = true,
                Some(pattern) => list.patterns.push(pattern),
            }
        }
        Ok(list)
    }

    /// Whether any referrer passes (`*` is one of the entries).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Whether a `Referer` or `Origin` value names an allowed origin.
    pub fn permits(&self, value: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(origin) = parse_url(value) else {
            return false;
        };
        let Some(scheme) = origin.scheme else {
            return false;
        };
        let port = origin.port.or_else(|| default_port(scheme));
        self.patterns.iter().any(|p| {
            p.scheme
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(scheme))
                && p.port.or_else(|| default_port(scheme)) == port
                && match &p.host {
                    HostPattern::Exact(host) => host.eq_ignore_ascii_case(origin.host),
                    HostPattern::Subdomains(suffix) => {
                        origin.host.len() > suffix.len()
                            && origin
                                .host
                                .is_char_boundary(origin.host.len() - suffix.len())
                            && origin.host[origin.host.len() - suffix.len()..]
                                .eq_ignore_ascii_case(suffix)
                    }
                }
        })
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    if scheme.eq_ignore_ascii_case("https") {
        Some(443)
    } else if scheme.eq_ignore_ascii_case("http") {
        Some(80)
    } else {
        None
    }
}

/// One `allowed_referrers` entry: `Ok(None)` for `*`. An entry names an
/// origin only: no path, query, fragment or user.
pub fn parse_pattern(entry: &str) -> Result<Option<OriginPattern>, String> {
    let text = entry.trim();
    if text == "*" {
        return Ok(None);
    }
    let bad = |why: &str| format!("allowed referrer `{}` {why}", shown(entry));
    let url = parse_url(text)
        .ok_or_else(|| bad("is not an origin such as https://app.example.com or *.example.com"))?;
    let after_scheme = url.scheme.map_or(text, |s| &text[s.len() + 3..]);
    // A lone trailing `/` (as browsers show an origin) is no path.
    let after_scheme = after_scheme.strip_suffix('/').unwrap_or(after_scheme);
    if after_scheme.contains(['/', '?', '#', '@']) {
        return Err(bad("has a path, query or user: an origin has none"));
    }
    if url.port == Some(0) {
        return Err(bad("has port 0"));
    }
    let host = url.host.to_ascii_lowercase();
    let host = if let Some(v6) = host.strip_prefix('[') {
        let literal = v6.strip_suffix(']').unwrap_or(v6);
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("has an invalid IPv6 address"));
        }
        HostPattern::Exact(host)
    } else {
        let (wild, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host.clone()),
        };
        if name.contains('*') {
            return Err(bad("may use `*` only as its first label (`*.example.com`)"));
        }
        let labels_ok = name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !labels_ok {
            return Err(bad("has an invalid host name"));
        }
        if wild {
            HostPattern::Subdomains(format!(".{name}"))
        } else {
            HostPattern::Exact(name)
        }
    };
    Ok(Some(OriginPattern {
        scheme: url.scheme.map(str::to_ascii_lowercase),
        host,
        port: url.port,
    }))
}

/// The origin parts of a URL (or of a bare `host[:port][/path]`).
struct Url<'a> {
    scheme: Option<&'a str>,
    /// As written (IPv6 literals keep their brackets), without a trailing dot.
    host: &'a str,
    port: Option<u16>,
}

fn parse_url(text: &str) -> Option<Url<'_>> {
    let split = text
        .find(':')
        .filter(|i| text[i + 1..].starts_with("//"))
        .map(|i| (&text[..i], &text[i + 3..]));
    let (scheme, rest) = match split {
        Some((scheme, rest)) => {
            let mut chars = scheme.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
            if !valid {
                return None;
            }
            (Some(scheme), rest)
        }
        None => (None, text),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().ok()?)
        }
        Some(_) => return None,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid_host = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*')));
    valid_host.then_some(Url { scheme, host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_name_origins_only() {
        for ok in [
            "*",
            "https://iga.example.com",
            "https://*.example.com:8443",
            "example.com",
            "*.example.com",
            "http://[::1]:8080",
            "10.0.0.1",
            "HTTPS://IGA.example.com",
            "https://app.example.com:8443/",
        ] {
            assert!(parse_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://example.com/path",
            "https://example.com//",
            "https://example.com?x",
            "https://",
            "ex ample.com",
            "https://a.com:0",
            "https://a.com:99999",
            "a.*.com",
            "user@a.com",
            "https://-a.com",
            "http://[::g]",
            "1http://a.com",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_match_on_scheme_host_and_port() {
        let list = ReferrerList::parse(&[
            "https://app.example.com",
            "*.example.org",
            "http://[::1]:8080",
        ])
        .unwrap();
        assert!(list.permits("https://app.example.com/some/page?x=1"));
        assert!(list.permits("https://app.example.com:443"));
        assert!(!list.permits("https://app.example.com:8443"));
        assert!(!list.permits("http://app.example.com"));
        assert!(list.permits("http://a.b.example.org/x"));
        assert!(!list.permits("https://example.org"));
        assert!(list.permits("http://[::1]:8080/"));
        assert!(!list.permits("null"));
        assert!(!list.allows_any());
        assert!(ReferrerList::parse(&["*"]).unwrap().allows_any());
    }

    #[test]
    fn host_labels_may_hold_hyphens_and_underscores_inside() {
        for ok in [
            "https://my-app.example.com",
            "a_b.example.com",
            "*.x-y.example.com",
        ] {
            assert!(parse_pattern(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://a-.example.com",
            "a..example.com",
            ".example.com",
            "*.-a.com",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
        let list = ReferrerList::parse(&["https://my-app.example.com"]).unwrap();
        assert!(list.permits("https://MY-APP.example.com./x"));
        assert!(!list.permits("https://my_app.example.com"));
    }

    #[test]
    fn ports_are_digits_only() {
        // `u16::from_str` takes a leading `+`: the grammar does not.
        for bad in [
            "https://a.com:+443",
            "https://a.com:",
            "https://a.com:44 3",
            "a.com:-1",
        ] {
            assert!(parse_pattern(bad).is_err(), "{bad}");
        }
        let list = ReferrerList::parse(&["https://a.com"]).unwrap();
        assert!(!list.permits("https://a.com:+443"));
        assert!(!list.permits("https://a.com:"));
        assert!(list.permits("https://a.com:443"));
        assert!(list.permits("https://a.com:0443"));
    }

    #[test]
    fn ipv6_literals_take_only_a_port_after_the_bracket() {
        assert!(parse_pattern("http://[::1]").is_ok());
        assert!(parse_pattern("http://[::1]x").is_err());
        assert!(parse_pattern("http://[::1]8080").is_err());
        assert!(parse_pattern("http://[::1").is_err());
        let list = ReferrerList::parse(&["http://[::1]"]).unwrap();
        assert!(list.permits("http://[::1]/page"));
        assert!(list.permits("http://[::1]:80"));
        assert!(!list.permits("http://[::1]x/page"));
        assert!(!list.permits("http://[::1]:8080"));
    }

    #[test]
    fn wildcards_need_at_least_one_label_before_the_suffix() {
        let list = ReferrerList::parse(&["*.example.org"]).unwrap();
        assert!(list.permits("https://a.example.org"));
        assert!(list.permits("https://A.EXAMPLE.ORG"));
        // The suffix alone, with or without its leading dot, is not a subdomain.
        assert!(!list.permits("https://example.org"));
        assert!(!list.permits("https://.example.org"));
        assert!(!list.permits("https://xexample.org"));
        assert!(!list.permits("https://org"));
    }

    #[test]
    fn invalid_hosts_in_a_value_match_no_wildcard() {
        let list = ReferrerList::parse(&["*.example.org"]).unwrap();
        for bad in [
            "https://a b.example.org",
            "https://a%2F.example.org",
            "https://evil\\.example.org",
            "https://",
            "https://:443",
        ] {
            assert!(!list.permits(bad), "{bad}");
        }
        // Non-ASCII inside brackets: refused, never a slice inside a
        // character (a panic on a crafted header).
        assert!(!list.permits("https://[\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}]"));
        assert!(!list.permits("https://[\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}.example.org]"));
        assert!(!list.permits("https://[a\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}.example.org"));
    }

    #[test]
    fn scheme_and_port_are_compared_together() {
        let list =
            ReferrerList::parse(&["https://app.example.com:8443", "app.example.net"]).unwrap();
        assert!(list.permits("https://app.example.com:8443/x"));
        assert!(!list.permits("https://app.example.com"));
        assert!(!list.permits("http://app.example.com:8443"));
        assert!(!list.permits("https://other.example.com:8443"));
        // A bare host: any scheme, on that scheme's default port.
        assert!(list.permits("http://app.example.net"));
        assert!(list.permits("https://app.example.net:443"));
        assert!(!list.permits("https://app.example.net:80"));
        assert!(!list.permits("app.example.net"));
        // An unknown scheme has no default port: only an explicit one matches.
        let ftp = ReferrerList::parse(&["ftp://files.example.com:21"]).unwrap();
        assert!(ftp.permits("ftp://files.example.com:21"));
        assert!(!ftp.permits("ftp://files.example.com"));
        let any_port = ReferrerList::parse(&["files.example.com"]).unwrap();
        assert!(!any_port.permits("ftp://files.example.com:1"));
        assert!(!any_port.permits("ftp://files.example.com:0"));
    }
}
