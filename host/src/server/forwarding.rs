//! What the HTTP request says about where it came from, read only as far as
//! the configuration trusts it: the client's address (`server.trusted_proxies`
//! and the one `server.forwarded_header`), the base URL of a mount
//! (`server.public_url`, else forwarded or `Host` headers) and the request id.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

use crate::config::{ForwardedHeader, ServerConfig};

/// `X-Request-Id` if it is sane (≤ 128 visible ASCII characters), else a new
/// UUID.
pub(super) fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id)
}

/// A fresh request id: a version-4 UUID from a per-thread SplitMix64
/// generator seeded once from the OS. Request ids must be unique, not
/// secret; `Uuid::new_v4` made a `getrandom` system call per request.
fn new_request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(uuid::Uuid::new_v4().as_u64_pair().0);
    }
    fn next(state: &Cell<u64>) -> u64 {
        let mut z = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(z);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    let bits = STATE.with(|state| (u128::from(next(state)) << 64) | u128::from(next(state)));
    uuid::Builder::from_random_bytes(bits.to_be_bytes())
        .into_uuid()
        .to_string()
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    trusted.iter().any(|net| net.contains(&ip))
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy;
/// then the right-most untrusted hop of the one configured header
/// (`X-Forwarded-For` or `Forwarded`, `server.forwarded_header`). The other
/// header is ignored: a proxy that sets one of them passes the other through
/// from the client untouched.
pub fn resolve_client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, trusted) {
        return peer;
    }
    let values = headers
        .get_all(header.as_str())
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let hops: Vec<Option<IpAddr>> = match header {
        ForwardedHeader::XForwardedFor => values.map(parse_hop).collect(),
        ForwardedHeader::Forwarded => values
            .filter_map(|element| {
                element.split(';').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    k.trim().eq_ignore_ascii_case("for").then(|| parse_hop(v))
                })
            })
            .collect(),
    };
    let mut nearest = peer;
    for hop in hops.iter().rev() {
        match *hop {
            Some(ip) if is_trusted(ip, trusted) => nearest = ip,
            Some(ip) => return ip,
            // An unreadable hop: nothing to its left can be trusted.
            None => return nearest,
        }
    }
    nearest
}

/// One hop of a forwarding header, in the address grammar every client
/// address is read with (`scimgate_abi::net`): `ip`, `ip:port`, `[v6]`,
/// `[v6]:port`, quoted or not; IPv4-mapped addresses unwrapped.
fn parse_hop(raw: &str) -> Option<IpAddr> {
    scimgate_abi::net::parse_client_ip(raw.trim().trim_matches('"'))
}

/// The absolute URL of the mount point, for `Location` and `meta.location`.
/// The scheme is `https` when the request came over TLS (`[server.tls]`),
/// else `http`, unless a trusted proxy's `X-Forwarded-Proto` says otherwise;
/// the host is a trusted proxy's `X-Forwarded-Host`, else `Host`, else (HTTP/2)
/// the request's `:authority`.
pub(super) fn base_url(
    server: &ServerConfig,
    parts: &axum::http::request::Parts,
    peer: IpAddr,
    mount: &str,
) -> String {
    let headers = &parts.headers;
    let mount = if mount == "/" { "" } else { mount };
    if let Some(public) = &server.public_url {
        return joined(&[public.trim_end_matches('/'), mount]);
    }
    let trusted = is_trusted(peer.to_canonical(), &server.trusted_proxies);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let over_tls = parts
        .extensions
        .get::<std::sync::Arc<crate::tls::PeerTls>>()
        .is_some();
    // Forwarding headers count only from a trusted proxy.
    let scheme = match trusted.then(|| header("x-forwarded-proto")).flatten() {
        Some(p) if p == "https" || p == "http" => p,
        _ if over_tls => "https",
        _ => "http",
    };
    let sane = |h: &&str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    };
    let host = trusted
        .then(|| header("x-forwarded-host"))
        .flatten()
        .filter(sane)
        .or_else(|| header("host").filter(sane))
        .or_else(|| parts.uri.authority().map(|a| a.as_str()).filter(sane));
    match host {
        Some(host) => joined(&[scheme, "://", host, mount]),
        None => joined(&[scheme, "://", &server.listen.to_string(), mount]),
    }
}

/// The pieces one after the other, in one allocation (made for every
/// request: `format!` cost more than the rest of the base URL).
fn joined(pieces: &[&str]) -> String {
    let mut text = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
    for piece in pieces {
        text.push_str(piece);
    }
    text
}

/// An address as `Display` writes it (`10.1.2.3`, `[::1]`), made for
/// every request: IPv4 without the formatter's machinery (padding, width),
/// which cost more than the rest of the request's address handling.
pub(super) fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            push_v4(&mut text, v4);
            text
        }
        IpAddr::V6(_) => ip.to_string(),
    }
}

/// A socket address as `Display` writes it (`10.1.2.3:443`, `[::1]:443`),
/// IPv4 the fast way of [`ip_text`].
pub(super) fn socket_text(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => {
            let mut text = String::with_capacity(21);
            push_v4(&mut text, *v4.ip());
            text.push(':');
            push_decimal(&mut text, v4.port());
            text
        }
        SocketAddr::V6(_) => addr.to_string(),
    }
}

fn push_v4(text: &mut String, ip: std::net::Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        push_decimal(text, u16::from(octet));
    }
}

fn push_decimal(text: &mut String, n: u16) {
    if n >= 10 {
        push_decimal(text, n / 10);
    }
    text.push(char::from(b'0' + (n % 10) as u8));
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};

    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        let samples = [
            "0.0.0.0:0",
            "127.0.0.1:8443",
            "10.20.30.40:65535",
            "255.255.255.255:1",
            "9.99.100.199:10",
            "[::1]:443",
            "[2001:db8::ff00:42:8329]:80",
            "[::ffff:10.1.2.3]:9",
        ];
        for sample in samples {
            let addr: SocketAddr = sample.parse().expect("address");
            assert_eq!(socket_text(addr), addr.to_string(), "{sample}");
            assert_eq!(ip_text(addr.ip()), addr.ip().to_string(), "{sample}");
        }
    }

    const XFF: ForwardedHeader = ForwardedHeader::XForwardedFor;
    const FWD: ForwardedHeader = ForwardedHeader::Forwarded;

    #[test]
    fn only_the_configured_forwarding_header_is_read() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        // The proxy sets Forwarded; the client's own X-Forwarded-For came through.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=203.0.113.7"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            resolve_client_ip(peer, &h, &trusted, FWD),
            ip("203.0.113.7")
        );
        assert_eq!(resolve_client_ip(peer, &h, &trusted, XFF), ip("6.6.6.6"));
        let only_forwarded = headers(&[("forwarded", "for=203.0.113.7")]);
        assert_eq!(
            resolve_client_ip(peer, &only_forwarded, &trusted, XFF),
            peer
        );
        let only_xff = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(resolve_client_ip(peer, &only_xff, &trusted, FWD), peer);
    }

    #[test]
    fn base_urls_follow_forwarding_headers_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let mut server = ServerConfig {
            trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
            listen: "127.0.0.1:8080".parse().unwrap(),
            ..ServerConfig::default()
        };
        let parts = |uri: &str, pairs: &[(&str, &str)]| {
            let mut request = axum::http::Request::builder().uri(uri);
            for (name, value) in pairs {
                request = request.header(*name, *value);
            }
            request.body(()).unwrap().into_parts().0
        };
        let forwarded = parts(
            "/iso/scim/v2/Users",
            &[
                ("host", "inner:8080"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "idp.example.com"),
            ],
        );
        assert_eq!(
            base_url(&server, &forwarded, proxy, "/iso/scim/v2"),
            "https://idp.example.com/iso/scim/v2"
        );
        assert_eq!(
            base_url(&server, &forwarded, stranger, "/iso/scim/v2"),
            "http://inner:8080/iso/scim/v2",
            "a stranger's forwarding headers are ignored"
        );
        let odd = parts(
            "/x",
            &[("host", "bad host/"), ("x-forwarded-proto", "gopher")],
        );
        assert_eq!(base_url(&server, &odd, proxy, "/"), "http://127.0.0.1:8080");
        let absolute = parts("http://abs.example:9/x", &[]);
        assert_eq!(
            base_url(&server, &absolute, stranger, "/a"),
            "http://abs.example:9/a"
        );
        server.public_url = Some("https://public.example/".into());
        assert_eq!(
            base_url(&server, &forwarded, proxy, "/iso"),
            "https://public.example/iso"
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing() {
        let trusted: Vec<IpNet> = vec!["10.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(
            resolve_client_ip("127.0.0.9".parse().unwrap(), &h, &trusted, XFF),
            "127.0.0.9".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn trusted_proxy_yields_rightmost_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 203.0.113.7"),
            ("x-forwarded-for", "10.0.0.5"),
        ]);
        assert_eq!(
            resolve_client_ip("10.0.0.1".parse().unwrap(), &h, &trusted, XFF),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn forwarded_header_and_mapped_addresses() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[::ffff:198.51.100.17]:4711\"",
        )]);
        assert_eq!(
            resolve_client_ip("::ffff:127.0.0.1".parse().unwrap(), &h, &trusted, FWD),
            "198.51.100.17".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn garbage_hop_stops_the_walk_at_the_proxy() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        let h = headers(&[("x-forwarded-for", "1.1.1.1, unknown")]);
        assert_eq!(
            resolve_client_ip("127.0.0.1".parse().unwrap(), &h, &trusted, XFF),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn fresh_request_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_request_id()).collect();
        assert_eq!(ids.len(), 1000);
        for id in ids.iter().take(10) {
            let parsed = uuid::Uuid::parse_str(id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
        }
        let other_thread = std::thread::spawn(new_request_id).join().expect("thread");
        assert!(!ids.contains(&other_thread));
    }

    #[test]
    fn request_ids_are_honoured_only_when_sane() {
        assert_eq!(
            request_id(&headers(&[("x-request-id", "abc-123")])),
            "abc-123"
        );
        let generated = request_id(&headers(&[("x-request-id", "has space")]));
        assert_ne!(generated, "has space");
        assert_eq!(generated.len(), 36);
    }
}
