//! The ureq agent every HTTP client in the crate uses (chain RPC, IPFS
//! gateways, EdgeX). One difference from ureq's default: a host that is an
//! IP address is used as is. ureq's resolver runs on every request, pooled
//! connection or not, and with a timeout set it spawns a thread per lookup
//! to enforce it; for `127.0.0.1` that thread was most of a request's cost
//! (benches/edgex_bridge.rs). Names still go through ureq's resolver.

use std::net::{IpAddr, SocketAddr};

use ureq::config::{Config, ConfigBuilder};
use ureq::http::Uri;
use ureq::typestate::AgentScope;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

#[derive(Debug, Default)]
struct LiteralFirst(DefaultResolver);

impl Resolver for LiteralFirst {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        if let Some(addr) = literal(uri) {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        self.0.resolve(uri, config, timeout)
    }
}

/// The socket address of a URI whose host is an IP address.
fn literal(uri: &Uri) -> Option<SocketAddr> {
    let authority = uri.authority()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let port = authority.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some(SocketAddr::new(ip, port))
}

/// An agent from `config` with the resolver above.
pub fn agent(config: ConfigBuilder<AgentScope>) -> ureq::Agent {
    ureq::Agent::with_parts(
        config.build(),
        DefaultConnector::default(),
        LiteralFirst::default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_resolve_without_a_lookup() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        assert_eq!(
            literal(&u("http://127.0.0.1:59882/api/v3/ping")),
            Some("127.0.0.1:59882".parse().unwrap())
        );
        assert_eq!(
            literal(&u("https://[::1]/x")),
            Some("[::1]:443".parse().unwrap())
        );
        assert_eq!(
            literal(&u("http://10.0.0.2/")),
            Some("10.0.0.2:80".parse().unwrap())
        );
        assert_eq!(literal(&u("http://localhost:8545/")), None);
    }

    /// A request to an IP address through the agent works end to end.
    #[test]
    fn the_agent_talks_to_an_ip_address() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
            }
        });
        let a = agent(ureq::Agent::config_builder());
        let body = a
            .get(&format!("http://{addr}/"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        assert_eq!(body, "ok");
    }
}
