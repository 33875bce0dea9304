//! Which addresses hookplane may call (SPEC §11): the policy half of the
//! SSRF guard, shared by every outbound path (lookup, perform, OAuth token
//! requests, platform webhooks).
//!
//! This module decides; it does no I/O. The HTTP client ([`client`])
//! applies it twice:
//! to every address the resolver returns and again to the address a socket
//! actually connects to, so neither DNS rebinding nor an IP literal slips
//! past. Only `http` and `https` are allowed. Addresses that are not on the
//! public internet are refused — private, loopback, link-local, CGNAT,
//! multicast, unspecified, broadcast, documentation, benchmarking and
//! reserved ranges, in IPv4 and IPv6, including IPv6 forms that embed an
//! IPv4 address (mapped, compatible, NAT64, 6to4) — unless an allow-list of
//! networks opens them (`hookplane dev` opens loopback).

pub mod client;
pub mod destination;
pub mod resolver;
pub mod retry;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a destination is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    /// Only `http` and `https` URLs may be called.
    #[error("only http and https URLs may be called, not `{0}:`")]
    Scheme(String),
    /// The URL has no host.
    #[error("the URL has no host")]
    NoHost,
    /// The address is not on the public internet and not allowed.
    #[error("{address} is a {class} address; hookplane only calls public addresses unless the network is allowed")]
    Forbidden { address: IpAddr, class: &'static str },
    /// An allow-list entry is not a network.
    #[error("`{0}` is not a network such as 10.0.0.0/8 or fd00::/8")]
    BadNetwork(String),
}

/// The egress policy: public addresses, plus the allowed networks.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    allowed: Vec<IpNet>,
}

impl EgressPolicy {
    /// Public addresses only: the production default.
    pub fn public_only() -> EgressPolicy {
        EgressPolicy::default()
    }

    /// Public addresses and the given networks (CIDR, or a single address).
    pub fn allowing(networks: &[impl AsRef<str>]) -> Result<EgressPolicy, EgressError> {
        let allowed = networks
            .iter()
            .map(|n| {
                let text = n.as_ref().trim();
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| EgressError::BadNetwork(text.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(EgressPolicy { allowed })
    }

    /// The loopback networks, for `hookplane dev` on a laptop.
    pub fn with_loopback(mut self) -> EgressPolicy {
        self.allowed.push("127.0.0.0/8".parse().expect("valid network"));
        self.allowed.push("::1/128".parse().expect("valid network"));
        self
    }

    /// Checks a URL's scheme and, when its host is an IP literal, the
    /// address. Names are checked after resolution with [`Self::check_ip`].
    pub fn check_url(&self, url: &url::Url) -> Result<(), EgressError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Scheme(url.scheme().to_owned()));
        }
        match url.host() {
            None => Err(EgressError::NoHost),
            Some(url::Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => Ok(()),
        }
    }

    /// Checks one address (from the resolver, or the connected socket).
    pub fn check_ip(&self, address: IpAddr) -> Result<(), EgressError> {
        match classify(address) {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|net| net.contains(&address) || net.contains(&canonical(address))) => {
                Ok(())
            }
            Some(class) => Err(EgressError::Forbidden { address, class }),
        }
    }
}

/// An IPv6 address that embeds an IPv4 one, as the IPv4 address.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(address, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address inside mapped (`::ffff:a.b.c.d`), compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`)
/// addresses.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail()),
        [0, 0, 0, 0, 0, 0, _, _] if v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST => Some(tail()),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail()),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// The kind of non-public address this is, or `None` for a public one.
pub fn classify(address: IpAddr) -> Option<&'static str> {
    match address {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            // Judged by the IPv4 address it reaches.
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        (100, 64..=127, _) => "carrier-grade NAT",
        _ if ip.is_broadcast() => "broadcast",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_documentation() => "documentation",
        (192, 0, 0) => "IETF protocol assignment",
        (198, 18..=19, _) => "benchmarking",
        (240..=255, _, _) => "reserved",
        _ => return None,
    })
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        0xfc00..=0xfdff => "unique local (private)",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] == 0 => "Teredo",
        0x0100 if s[1..4] == [0, 0, 0] => "discard",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(address: &str) -> bool {
        EgressPolicy::public_only().check_ip(address.parse().unwrap()).is_err()
    }

    #[test]
    fn non_public_addresses_are_refused_in_every_form() {
        for address in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "192.0.2.10",
            "198.51.100.1",
            "203.0.113.7",
            "192.0.0.8",
            "198.18.0.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2001:db8::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
        ] {
            assert!(refused(address), "{address} must be refused");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:0808:0808::1",
        ] {
            assert!(!refused(address), "{address} is public");
        }
    }

    #[test]
    fn urls_need_http_and_a_public_literal() {
        let policy = EgressPolicy::public_only();
        let check = |url: &str| policy.check_url(&url.parse().unwrap());
        assert!(check("https://api.example.com/x").is_ok());
        assert_eq!(check("ftp://example.com/"), Err(EgressError::Scheme("ftp".into())));
        assert_eq!(check("file:///etc/passwd"), Err(EgressError::Scheme("file".into())));
        assert!(matches!(
            check("http://[::ffff:127.0.0.1]:8080/"),
            Err(EgressError::Forbidden { class: "loopback", .. })
        ));
        assert!(matches!(
            check("http://169.254.169.254/latest/meta-data"),
            Err(EgressError::Forbidden { class: "link-local", .. })
        ));
        // The URL parser normalises odd IPv4 spellings before the check.
        assert!(check("http://2130706433/").is_err(), "decimal 127.0.0.1");
        assert!(check("http://0x7f.1/").is_err(), "hex 127.0.0.1");
    }

    #[test]
    fn allowed_networks_open_exactly_themselves() {
        let policy = EgressPolicy::allowing(&["10.20.0.0/16", "fd00::1"]).unwrap().with_loopback();
        assert!(policy.check_ip("10.20.3.4".parse().unwrap()).is_ok());
        assert!(policy.check_ip("10.21.3.4".parse().unwrap()).is_err());
        assert!(policy.check_ip("fd00::1".parse().unwrap()).is_ok());
        assert!(policy.check_ip("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check_ip("::ffff:127.0.0.1".parse().unwrap()).is_ok(), "mapped loopback is loopback");
        assert!(policy.check_ip("169.254.169.254".parse().unwrap()).is_err());
        assert_eq!(
            EgressPolicy::allowing(&["10.0.0.0/33"]).unwrap_err(),
            EgressError::BadNetwork("10.0.0.0/33".into())
        );
    }

    #[test]
    fn messages_name_the_address_and_class_only() {
        let err = EgressPolicy::public_only().check_ip("10.0.0.1".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "10.0.0.1 is a private address; hookplane only calls public addresses unless the network is allowed"
        );
    }
}
