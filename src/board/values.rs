//! Typed values of the board file. Each parses from the text a person writes
//! and says what it expected when that text is wrong; the TOML layer adds the
//! file, line and column.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use alloy_primitives::Address;
use serde::Deserialize;
use serde::de::{Deserializer, Error as _};

// Defined where they are used; named here too, as the board's values.
pub(crate) use crate::logger::LogFormat;
pub use crate::runtime::cgroup::CgroupMode;
pub use crate::runtime::image::Arch;

/// How the agent authenticates to EdgeX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgexAuth {
    /// EdgeX in non-secure mode (`EDGEX_SECURITY_SECRET_STORE=false`).
    None,
    /// Secure mode: a bearer JWT from the secret store's login flow.
    Jwt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Implements `Deserialize` through `FromStr`, so the parse error (which
/// names the problem) becomes the TOML error at the value's position.
macro_rules! deserialize_via_from_str {
    ($ty:ty, $what:literal) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)
                    .map_err(|e| D::Error::custom(format!("expected {}: {e}", $what)))?;
                text.parse().map_err(D::Error::custom)
            }
        }
    };
}

/// A host as written in a URL or endpoint: DNS name or IP literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Parses `example.net`, `192.0.2.1` or `[2001:db8::1]`.
    fn parse(text: &str) -> Result<Host, String> {
        if let Some(inner) = text.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or_else(|| format!("`{text}`: IPv6 address is missing its closing `]`"))?;
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| format!("`{inner}` is not an IPv6 address"));
        }
        if let Ok(ip) = text.parse::<Ipv4Addr>() {
            return Ok(Host::Ip(IpAddr::V4(ip)));
        }
        if text.is_empty() {
            return Err("the host is empty".into());
        }
        if text.len() > 253 {
            return Err(format!("host name `{text}` is longer than 253 characters"));
        }
        for label in text.trim_end_matches('.').split('.') {
            let valid = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !valid {
                return Err(format!(
                    "`{text}` is not a host name (letters, digits and `-` in dot-separated labels) nor an IP address"
                ));
            }
        }
        // All-digit dotted names that failed IPv4 parsing are typos, not hosts.
        if text
            .split('.')
            .all(|l| l.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(format!("`{text}` is not a valid IPv4 address"));
        }
        Ok(Host::Name(text.to_ascii_lowercase()))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// Splits `host:port` where host may be a bracketed IPv6 literal.
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if text.starts_with('[') {
        let close = text.find(']')?;
        let (host, rest) = text.split_at(close + 1);
        return Some((host, rest.strip_prefix(':')?));
    }
    text.rsplit_once(':')
}

fn parse_port(text: &str, context: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(0) => Err(format!("`{context}`: port 0 cannot be dialled")),
        Ok(p) => Ok(p),
        Err(_) => Err(format!(
            "`{context}`: port `{text}` is not a number 1-65535"
        )),
    }
}

/// An `http://` or `https://` URL the agent connects to.
///
/// Kept as text for the HTTP client, after checking the parts a config
/// typo breaks: scheme, host, port. Credentials in the URL are refused so
/// secrets stay in their own files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    text: String,
    https: bool,
    pub host: Host,
    pub port: u16,
}

impl HttpUrl {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for HttpUrl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(format!(
                "`{text}` is not an http:// or https:// URL (e.g. \"http://127.0.0.1:8545\")"
            ));
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if authority.contains('@') {
            return Err(format!(
                "`{text}` carries credentials; keep secrets out of the board file"
            ));
        }
        let default_port = if https { 443 } else { 80 };
        let bracketed_v6 = authority.starts_with('[') && authority.ends_with(']');
        let (host, port) = match split_host_port(authority) {
            Some((h, p)) if !bracketed_v6 => (h, parse_port(p, text)?),
            _ => (authority, default_port),
        };
        let host = Host::parse(host).map_err(|e| format!("`{text}`: {e}"))?;
        Ok(HttpUrl {
            text: text.to_string(),
            https,
            host,
            port,
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

deserialize_via_from_str!(HttpUrl, "a URL such as \"http://127.0.0.1:8545\"");

/// `host:port` that buyers dial to reach the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicEndpoint {
    host: Host,
    port: u16,
}

impl FromStr for PublicEndpoint {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (host, port) = split_host_port(text).ok_or_else(|| {
            format!("`{text}` is not host:port (e.g. \"gw-17.example.net:7300\")")
        })?;
        Ok(PublicEndpoint {
            port: parse_port(port, text)?,
            host: Host::parse(host).map_err(|e| format!("`{text}`: {e}"))?,
        })
    }
}

impl fmt::Display for PublicEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

deserialize_via_from_str!(PublicEndpoint, "host:port");

/// `[agent] cgroup_parent`: the absolute cgroup path (in the unified
/// hierarchy, or in each v1 hierarchy) the agent makes its leases' cgroups
/// under. Components are plain names, so no value can climb out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupParent(String);

impl CgroupParent {
    /// The path without its leading `/`, as the runtime joins it.
    pub(crate) fn relative(&self) -> &str {
        &self.0
    }

    /// The parent when someone else owns it (any value but the default):
    /// the runtime must find it, never make it.
    pub fn delegated(&self) -> Option<&str> {
        (*self != CgroupParent::default()).then_some(self.relative())
    }
}

impl Default for CgroupParent {
    /// `/dedge`, beside the init system's own cgroups: for machines without
    /// systemd. Under systemd, the delegated `dedge-leases.service`.
    fn default() -> Self {
        CgroupParent("dedge".into())
    }
}

impl FromStr for CgroupParent {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let rel = text.strip_prefix('/').ok_or_else(|| {
            format!("`{text}` is not an absolute cgroup path (e.g. \"/system.slice/dedge-leases.service\")")
        })?;
        let plain = |c: &str| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if rel.is_empty() || !rel.split('/').all(plain) {
            return Err(format!(
                "`{text}`: every component of a cgroup path must be a plain name \
                 (letters, digits, `-`, `_`, `.`; not `.` or `..`), and the root itself is refused"
            ));
        }
        Ok(CgroupParent(rel.to_string()))
    }
}

impl fmt::Display for CgroupParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.0)
    }
}

deserialize_via_from_str!(CgroupParent, "an absolute cgroup path");

/// A deployed contract's address. Mixed-case text must carry a valid EIP-55
/// checksum, which catches a mistyped character; the zero address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ContractAddress(pub(crate) Address);

impl FromStr for ContractAddress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let hex = text.strip_prefix("0x").ok_or_else(|| {
            format!("`{text}` is not an address: expected 0x followed by 40 hex digits")
        })?;
        if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "`{text}` is not an address: expected 0x followed by 40 hex digits"
            ));
        }
        let mixed_case = hex.bytes().any(|b| b.is_ascii_lowercase())
            && hex.bytes().any(|b| b.is_ascii_uppercase());
        let address = if mixed_case {
            Address::parse_checksummed(text, None).map_err(|_| {
                format!("`{text}` fails its EIP-55 checksum: a character is mistyped")
            })?
        } else {
            text.parse::<Address>()
                .map_err(|e| format!("`{text}` is not an address: {e}"))?
        };
        if address.is_zero() {
            return Err("the zero address is not a deployed contract".into());
        }
        Ok(ContractAddress(address))
    }
}

impl fmt::Display for ContractAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.to_checksum(None))
    }
}

deserialize_via_from_str!(ContractAddress, "a 0x-prefixed contract address");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_accept_what_nodes_serve() {
        let u: HttpUrl = "http://127.0.0.1:8545".parse().unwrap();
        assert_eq!((u.https, u.port), (false, 8545));
        let u: HttpUrl = "https://eth.example.net/v3/abc".parse().unwrap();
        assert_eq!((u.https, u.port), (true, 443));
        assert_eq!(u.host, Host::Name("eth.example.net".into()));
        let u: HttpUrl = "http://[::1]:8080".parse().unwrap();
        assert_eq!(u.host, Host::Ip("::1".parse().unwrap()));
        let u: HttpUrl = "http://localhost".parse().unwrap();
        assert_eq!(u.port, 80);
    }

    #[test]
    fn urls_refuse_typos_with_a_reason() {
        for (bad, why) in [
            ("127.0.0.1:8545", "http://"),
            ("ftp://host", "http://"),
            ("http://host:99999", "port"),
            ("http://host:0", "port 0"),
            ("http://user:pw@host", "credentials"),
            ("http://bad_host", "host name"),
            ("http://-x.net", "host name"),
            ("http://", "empty"),
            ("http://[::1", "closing"),
            ("http://256.1.1.1", "IPv4"),
        ] {
            let err = bad.parse::<HttpUrl>().unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn cgroup_parents_are_absolute_plain_paths() {
        let p: CgroupParent = "/system.slice/dedge-leases.service".parse().unwrap();
        assert_eq!(p.relative(), "system.slice/dedge-leases.service");
        assert_eq!(p.to_string(), "/system.slice/dedge-leases.service");
        assert_eq!(CgroupParent::default().to_string(), "/dedge");
        assert_eq!(CgroupParent::default().delegated(), None);
        assert_eq!(p.delegated(), Some("system.slice/dedge-leases.service"));
        for bad in [
            "", "/", "dedge", "/a/../b", "/a//b", "/a/./b", "/a b", "/a\n", "/x/",
        ] {
            assert!(bad.parse::<CgroupParent>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn endpoints_need_a_port() {
        let e: PublicEndpoint = "gw.example.net:7300".parse().unwrap();
        assert_eq!(e.to_string(), "gw.example.net:7300");
        let e: PublicEndpoint = "[2001:db8::7]:7300".parse().unwrap();
        assert_eq!(e.to_string(), "[2001:db8::7]:7300");
        assert!("gw.example.net".parse::<PublicEndpoint>().is_err());
        assert!("gw.example.net:".parse::<PublicEndpoint>().is_err());
        assert!(":7300".parse::<PublicEndpoint>().is_err());
    }

    #[test]
    fn addresses_check_eip55_and_refuse_zero() {
        let good = "0x5FbDB2315678afecb367f032d93F642f64180aa3";
        assert!(good.parse::<ContractAddress>().is_ok());
        assert!(good.to_lowercase().parse::<ContractAddress>().is_ok());
        // One letter's case flipped: the checksum must catch it.
        let typo = "0x5FbDB2315678afecb367f032d93F642f64180aA3";
        assert!(
            typo.parse::<ContractAddress>()
                .unwrap_err()
                .contains("EIP-55")
        );
        assert!(
            "0x0000000000000000000000000000000000000000"
                .parse::<ContractAddress>()
                .unwrap_err()
                .contains("zero")
        );
        assert!("0x1234".parse::<ContractAddress>().is_err());
        assert!(
            "5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse::<ContractAddress>()
                .is_err()
        );
    }
}
