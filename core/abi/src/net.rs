//! IP address lists as providers and stages write them (`allowed_ips`, a
//! route's `allow`): single addresses, CIDR blocks and `*`, one grammar for
//! every plugin that checks a client address. IPv4-mapped IPv6 addresses
//! (`::ffff:10.1.2.3`, also as blocks of prefix 96 or longer) are the IPv4
//! address they carry, on both sides. Plain Rust: nothing here crosses the
//! plugin boundary or is part of the FFI layout.

use crate::text::shown;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A parsed list of addresses and CIDR blocks. Empty or containing `*`:
/// any address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpList {
    any: bool,
    v4: Vec<Ipv4Net>,
    v6: Vec<Ipv6Net>,
}

impl IpList {
    /// Parses a whole list; the error names the first bad entry.
    pub fn parse(entries: &[&str]) -> Result<IpList, String> {
        let mut list = IpList::default();
        for entry in entries {
            list.push(entry)?;
        }
        Ok(list)
    }

    /// Adds one entry (see [`parse_entry`]).
    pub fn push(&mut self, entry: &str) -> Result<(), String> {
        match parse_entry(entry)? {
            None => self.any = true,
            Some(IpNet::V4(net)) => self.v4.push(net),
            Some(IpNet::V6(net)) => self.v6.push(net),
        }
        Ok(())
    }

    /// Whether the list lets every address in (empty, or holds `*`).
    pub fn is_any(&self) -> bool {
        self.any || (self.v4.is_empty() && self.v6.is_empty())
    }

    /// Whether `ip` is in the list. IPv4-mapped IPv6 addresses are unwrapped
    /// first, so `::ffff:10.0.0.1` and `10.0.0.1` are the same client.
    pub fn permits(&self, ip: IpAddr) -> bool {
        if self.is_any() {
            return true;
        }
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                self.v4.iter().any(|net| net.contains(&v4))
                    // An IPv6 block wider than /96 (e.g. `::/0`) holds the
                    // whole IPv4-mapped range.
                    || self
                        .v6
                        .iter()
                        .any(|net| net.prefix_len() < 96 && net.contains(&v4.to_ipv6_mapped()))
            }
            IpAddr::V6(v6) => self.v6.iter().any(|net| net.contains(&v6)),
        }
    }

    /// Whether the client address `text` (any form [`parse_client_ip`]
    /// reads) is in the list. An address that does not parse is only let in
    /// by a list that lets everyone in.
    pub fn permits_text(&self, text: &str) -> bool {
        self.is_any() || parse_client_ip(text).is_some_and(|ip| self.permits(ip))
    }
}

/// One list entry: `*` (`None`), an address or a CIDR block (host bits
/// dropped), canonicalised. Surrounding whitespace is ignored.
pub fn parse_entry(entry: &str) -> Result<Option<IpNet>, String> {
    let text = entry.trim();
    if text == "*" {
        return Ok(None);
    }
    let bad = || {
        format!(
            "`{}` is not an IP address, a CIDR block (10.0.0.0/8, 2001:db8::/32) or `*`",
            shown(entry)
        )
    };
    let net = if text.contains('/') {
        text.parse::<IpNet>().map_err(|_| bad())?
    } else {
        IpNet::from(text.parse::<IpAddr>().map_err(|_| bad())?)
    };
    Ok(Some(canonical_net(net.trunc())))
}

/// `::ffff:a.b.c.d/p` with `p >= 96` is the IPv4 block `a.b.c.d/(p-96)`.
pub fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96)
                .map(|n| IpNet::V4(n.trunc()))
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// The client address as an `IpAddr`, IPv4-mapped addresses unwrapped.
/// Tolerates `[v6]`, `ip:port` and `[v6]:port` forms and surrounding
/// whitespace.
pub fn parse_client_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    let ip = text
        .parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<Ipv6Addr>().ok())
                .map(IpAddr::V6)
        })?;
    Some(ip.to_canonical())
}

/// The network an address belongs to for per-client counting: an IPv4
/// address is itself (after unwrapping IPv4-mapped forms), an IPv6 address
/// is cut to its first `v6_prefix` bits (e.g. 64: one host usually holds a
/// whole /64 and can rotate through it at will).
pub fn client_network(ip: IpAddr, v6_prefix: u8) -> IpNet {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => Ipv6Net::new(v6, v6_prefix.min(128))
            .map(|n| IpNet::V6(n.trunc()))
            .unwrap_or(IpNet::V6(Ipv6Net::from(v6))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> IpList {
        IpList::parse(entries).unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn addresses_blocks_and_star() {
        let l = list(&["10.20.0.0/16", "192.0.2.7", "2001:db8:abcd::/48", "::1"]);
        assert!(l.permits(ip("10.20.255.1")));
        assert!(l.permits(ip("192.0.2.7")));
        assert!(!l.permits(ip("192.0.2.8")));
        assert!(!l.permits(ip("10.21.0.1")));
        assert!(l.permits(ip("2001:db8:abcd:12::5")));
        assert!(!l.permits(ip("2001:db8:abce::1")));
        assert!(l.permits(ip("::1")));
        assert!(!l.permits(ip("127.0.0.1")));
        assert!(list(&[]).permits(ip("203.0.113.9")));
        assert!(list(&["10.0.0.0/8", "*"]).permits(ip("2001:db8::1")));
        assert!(list(&[" 10.0.0.1 "]).permits(ip("10.0.0.1")));
        assert!(!list(&["10.0.0.1"]).is_any());
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4_on_both_sides() {
        assert!(list(&["127.0.0.2"]).permits(ip("::ffff:127.0.0.2")));
        assert!(!list(&["127.0.0.1"]).permits(ip("::ffff:127.0.0.2")));
        assert!(list(&["::ffff:127.0.0.2"]).permits(ip("127.0.0.2")));
        assert!(list(&["::ffff:10.0.0.0/104"]).permits(ip("10.200.0.1")));
        assert!(!list(&["::ffff:10.0.0.0/104"]).permits(ip("11.0.0.1")));
        // Wide IPv6 blocks hold the mapped range; narrower ones do not.
        assert!(list(&["::/0"]).permits(ip("198.51.100.1")));
        assert!(!list(&["2001:db8::/32"]).permits(ip("198.51.100.1")));
        assert_eq!(
            parse_entry("::ffff:10.1.2.3/120").unwrap(),
            Some("10.1.2.0/24".parse().unwrap())
        );
    }

    #[test]
    fn host_bits_are_dropped() {
        assert_eq!(
            parse_entry("10.1.2.3/8").unwrap(),
            Some("10.0.0.0/8".parse().unwrap())
        );
        assert!(list(&["10.1.2.3/8"]).permits(ip("10.200.0.1")));
    }

    #[test]
    fn bad_entries_name_the_entry_escaped() {
        let e = IpList::parse(&["10.0.0.0/8", "10.0.0.0/33", "nope"]).unwrap_err();
        assert_eq!(
            e,
            "`10.0.0.0/33` is not an IP address, a CIDR block (10.0.0.0/8, 2001:db8::/32) or `*`"
        );
        let e = parse_entry("a\nb").unwrap_err();
        assert!(e.starts_with("`a\\nb` is not"), "{e}");
        let long = "x".repeat(500);
        assert!(parse_entry(&long).unwrap_err().len() < 250);
        assert!(parse_entry("").is_err());
        assert!(parse_entry("10.0.0.0/").is_err());
        assert!(parse_entry("**").is_err());
    }

    #[test]
    fn client_addresses_in_every_form() {
        assert_eq!(parse_client_ip("10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_client_ip(" 10.0.0.1:443 "), Some(ip("10.0.0.1")));
        assert_eq!(parse_client_ip("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(
            parse_client_ip("[2001:db8::1]:8443"),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(parse_client_ip("::ffff:10.0.0.1"), Some(ip("10.0.0.1")));
        assert_eq!(parse_client_ip("not-an-ip"), None);
        assert_eq!(parse_client_ip(""), None);
        let l = list(&["10.0.0.0/8"]);
        assert!(l.permits_text("10.1.1.1"));
        assert!(!l.permits_text("11.1.1.1"));
        assert!(!l.permits_text("garbage"));
        assert!(list(&["*"]).permits_text("garbage"));
    }

    #[test]
    fn client_networks_cut_ipv6_to_the_prefix() {
        assert_eq!(
            client_network(ip("192.0.2.7"), 64),
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            client_network(ip("::ffff:192.0.2.7"), 64),
            "192.0.2.7/32".parse::<IpNet>().unwrap()
        );
        let a = client_network(ip("2001:db8:1:2:aaaa::1"), 64);
        let b = client_network(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64);
        let c = client_network(ip("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            client_network(ip("2001:db8::1"), 200).to_string(),
            "2001:db8::1/128"
        );
    }

    #[test]
    fn mapped_blocks_become_ipv4_from_prefix_96_on() {
        let net = |t: &str| t.parse::<IpNet>().unwrap();
        assert_eq!(canonical_net(net("::ffff:0.0.0.0/96")), net("0.0.0.0/0"));
        assert_eq!(
            canonical_net(net("::ffff:10.1.2.3/128")),
            net("10.1.2.3/32")
        );
        assert_eq!(canonical_net(net("::ffff:10.1.2.3/104")), net("10.0.0.0/8"));
        // Below /96 the block is wider than the mapped range: it stays IPv6,
        // even with the host bits of a mapped address still set.
        assert_eq!(
            canonical_net(net("::ffff:10.1.2.3/95")),
            net("::ffff:10.1.2.3/95")
        );
        assert_eq!(
            canonical_net(net("::ffff:10.1.2.3/80")),
            net("::ffff:10.1.2.3/80")
        );
        assert_eq!(canonical_net(net("2001:db8::/96")), net("2001:db8::/96"));
        assert_eq!(canonical_net(net("10.1.2.3/8")), net("10.1.2.3/8"));
        // The whole mapped range as an entry lets every IPv4 client in, and
        // no IPv6 one.
        let l = list(&["::ffff:0:0/96"]);
        assert!(l.permits(ip("198.51.100.1")));
        assert!(l.permits(ip("::ffff:198.51.100.1")));
        assert!(!l.permits(ip("2001:db8::1")));
    }

    #[test]
    fn ipv6_blocks_of_prefix_96_and_longer_hold_no_ipv4_client() {
        // `::/96` (the old IPv4-compatible range) is not the mapped range.
        let l = list(&["::/96", "64:ff9b::/96", "2001:db8::/127"]);
        assert!(!l.permits(ip("10.0.0.1")));
        assert!(!l.permits(ip("0.0.0.1")));
        assert!(l.permits(ip("::a00:1")));
        assert!(l.permits(ip("64:ff9b::a00:1")));
        // /95 and wider do hold it when they cover `::ffff:0:0/96`.
        assert!(list(&["::ffff:0:0/95"]).permits(ip("10.0.0.1")));
        assert!(list(&["::/64"]).permits(ip("10.0.0.1")));
        assert!(!list(&["0:0:0:1::/64"]).permits(ip("10.0.0.1")));
    }

    #[test]
    fn single_family_lists_refuse_the_other_family() {
        let v4 = list(&["10.0.0.0/8"]);
        assert!(!v4.is_any());
        assert!(!v4.permits(ip("2001:db8::1")));
        let v6 = list(&["2001:db8::/32"]);
        assert!(!v6.is_any());
        assert!(!v6.permits(ip("10.0.0.1")));
        assert!(v6.permits(ip("2001:db8::1")));
        assert!(!v6.permits_text("10.0.0.1"));
        assert!(v6.permits_text("[2001:db8::1]:443"));
        let mut star = list(&["10.0.0.0/8"]);
        star.push(" * ").unwrap();
        assert!(star.is_any());
        assert!(star.permits(ip("2001:db8::1")));
        assert!(IpList::default().is_any());
        assert_eq!(parse_entry("*").unwrap(), None);
        assert_eq!(parse_entry(" * ").unwrap(), None);
    }

    fn cases() -> u32 {
        std::env::var("SCIMGATE_PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: cases(),
            failure_persistence: None,
            ..Default::default()
        })]

        /// Whatever the text, parsing answers without panicking, and an
        /// address that parses is permitted by a list holding exactly it.
        #[test]
        fn parsing_never_panics(text in "\\PC{0,60}", v6 in proptest::prelude::any::<[u16; 8]>(),
                                prefix in 0u8..=255) {
            let _ = parse_entry(&text);
            let _ = IpList::parse(&[text.as_str(), "10.0.0.0/8"]);
            if let Some(addr) = parse_client_ip(&text) {
                proptest::prop_assert!(list(&[&addr.to_string()]).permits(addr));
            }
            let addr = IpAddr::V6(Ipv6Addr::from(v6));
            let net = client_network(addr, prefix);
            proptest::prop_assert!(net.contains(&addr.to_canonical()));
            proptest::prop_assert!(list(&[&net.to_string()]).permits(addr));
        }
    }
}
