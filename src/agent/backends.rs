//! A buyer's backend endpoints, wired into its container. Containers have
//! only loopback; for each backend `HOST:PORT` the buyer names at deploy,
//! the agent listens on 127.0.0.1:PORT inside the container's network
//! namespace and relays each connection to HOST:PORT from its own
//! (`runtime::net::Forward`). `DEDGE_BACKENDS` in the container lists them
//! as the buyer wrote them. The board's `[agent] backends` decides which
//! addresses are allowed: none, public ones (never the gateway itself, its
//! LAN or link-local neighbours), or any (development). A name is resolved
//! once, at deploy, and checked as resolved.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use crate::board::BackendPolicy;
use crate::edgex::bridge;
use crate::runtime::net::Forward;

/// Backends per lease.
pub const MAX: usize = 4;
pub const ENV: &str = "DEDGE_BACKENDS";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// As the buyer wrote it.
    pub name: String,
    pub target: SocketAddr,
}

impl Backend {
    /// The port the container connects to on its loopback.
    pub fn port(&self) -> u16 {
        self.target.port()
    }
}

/// Is `ip` routable on the public internet (not this host, a private or
/// shared network, link-local, multicast or reserved)?
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64/10
                || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18/15
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4
            // address: judge that one.
            let embedded = |hi: u16, lo: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                ))
            };
            if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(embedded(seg[6], seg[7]));
            }
            if seg[0] == 0x2002 {
                return is_public(embedded(seg[1], seg[2]));
            }
            let first = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8) // documentation
        }
    }
}

/// Where the policy a lease's backends were checked under at its deploy
/// is kept, beside their names (the names' key is the lease id alone).
pub(crate) fn policy_key(lease: &[u8; 32]) -> Vec<u8> {
    [lease.as_slice(), b"/policy"].concat()
}

/// A policy as stored (`policy_key`).
pub(crate) fn policy_code(p: BackendPolicy) -> u8 {
    match p {
        BackendPolicy::None => 0,
        BackendPolicy::Public => 1,
        BackendPolicy::Any => 2,
    }
}

pub(crate) fn policy_of_code(code: u8) -> Option<BackendPolicy> {
    match code {
        0 => Some(BackendPolicy::None),
        1 => Some(BackendPolicy::Public),
        2 => Some(BackendPolicy::Any),
        _ => None,
    }
}

/// The wider of two policies (`None` < `Public` < `Any`).
pub(crate) fn wider(a: BackendPolicy, b: BackendPolicy) -> BackendPolicy {
    if policy_code(a) >= policy_code(b) {
        a
    } else {
        b
    }
}

/// The backends `requested` names, resolved and checked against `policy`;
/// the first problem as a message for the buyer.
pub fn check(requested: &[String], policy: BackendPolicy) -> Result<Vec<Backend>, String> {
    if requested.is_empty() {
        return Ok(Vec::new());
    }
    check_against(requested, policy, &own_addresses())
}

/// [`check`], with this machine's addresses given.
fn check_against(
    requested: &[String],
    policy: BackendPolicy,
    own: &[IpAddr],
) -> Result<Vec<Backend>, String> {
    if requested.is_empty() {
        return Ok(Vec::new());
    }
    if policy == BackendPolicy::None {
        return Err("this gateway wires no backends into containers".into());
    }
    if requested.len() > MAX {
        return Err(format!(
            "{} backends asked, a lease may have {MAX}",
            requested.len()
        ));
    }
    let mut out: Vec<Backend> = Vec::new();
    for name in requested {
        let target = name
            .to_socket_addrs()
            .map_err(|e| format!("backend {name}: {e} (HOST:PORT expected)"))?
            .next()
            .ok_or_else(|| format!("backend {name}: resolves to no address"))?;
        if target.port() == 0 || target.port() == bridge::PORT {
            return Err(format!(
                "backend {name}: port {} is not available in a container",
                target.port()
            ));
        }
        if out.iter().any(|b| b.port() == target.port()) {
            return Err(format!(
                "backend {name}: another backend already uses port {}",
                target.port()
            ));
        }
        if policy == BackendPolicy::Public && !is_public(target.ip()) {
            return Err(format!(
                "backend {name}: {} is not a public address, and this gateway allows only public ones",
                target.ip()
            ));
        }
        if policy == BackendPolicy::Public && own.contains(&target.ip()) {
            return Err(format!(
                "backend {name}: {} is this gateway's own address",
                target.ip()
            ));
        }
        out.push(Backend {
            name: name.clone(),
            target,
        });
    }
    Ok(out)
}

/// The addresses of this machine's interfaces (a public one too: a backend
/// there would reach the gateway's own services).
fn own_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

/// The container's `DEDGE_BACKENDS=...` entry, if it has backends.
pub fn env(backends: &[Backend]) -> Option<String> {
    (!backends.is_empty()).then(|| {
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        format!("{ENV}={}", names.join(","))
    })
}

/// Opens each backend's port in the network namespace of `pid`.
pub fn open(pid: i32, backends: &[Backend]) -> Result<Vec<Forward>, String> {
    backends
        .iter()
        .map(|b| {
            Forward::open(pid, b.port(), b.target).map_err(|e| format!("backend {}: {e}", b.name))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_deploys_policy_is_kept_apart_from_its_names_and_read_back() {
        use BackendPolicy::*;
        for p in [None, Public, Any] {
            assert_eq!(policy_of_code(policy_code(p)), Some(p));
        }
        assert_eq!(
            policy_of_code(3),
            Option::None,
            "an unknown code is no policy"
        );
        assert_ne!(policy_key(&[7; 32]).as_slice(), [7u8; 32].as_slice());
        assert_eq!(wider(None, Public), Public);
        assert_eq!(wider(Any, Public), Any);
        assert_eq!(wider(None, None), None);
    }

    #[test]
    fn backends_are_resolved_and_checked_against_the_board() {
        let ok = check(
            &names(&["8.8.8.8:53", "[2606:4700::1111]:443"]),
            BackendPolicy::Public,
        )
        .unwrap();
        assert_eq!(ok[0].port(), 53);
        assert_eq!(
            env(&ok).unwrap(),
            "DEDGE_BACKENDS=8.8.8.8:53,[2606:4700::1111]:443"
        );
        assert_eq!(env(&[]), None);
        let refused = |v: &[&str], policy, why: &str| {
            let e = check(&names(v), policy).unwrap_err();
            assert!(e.contains(why), "{e} lacks {why}");
        };
        use BackendPolicy::{Any, Public};
        for private in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "192.168.1.10:502",
            "172.16.0.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:192.168.0.1]:80",
            "[64:ff9b::a00:1]:80",
            "[2002:c0a8:101::1]:80",
        ] {
            refused(&[private], Public, "not a public address");
        }
        assert!(check(&names(&["127.0.0.1:80", "192.168.1.10:502"]), Any).is_ok());
        assert!(is_public("64:ff9b::808:808".parse().unwrap()));
        // The gateway's own public address is not a way out.
        let own = ["8.8.4.4".parse().unwrap()];
        let e = check_against(&names(&["8.8.4.4:22"]), Public, &own).unwrap_err();
        assert!(e.contains("this gateway's own address"), "{e}");
        assert!(check_against(&names(&["8.8.8.8:22"]), Public, &own).is_ok());
        // This machine's own addresses, public or not.
        for ip in own_addresses() {
            let name = match ip {
                IpAddr::V4(v4) => format!("{v4}:80"),
                IpAddr::V6(v6) => format!("[{v6}]:80"),
            };
            assert!(check(&names(&[&name]), Public).is_err(), "{name}");
        }
        refused(&["8.8.8.8:53"], BackendPolicy::None, "no backends");
        refused(&["8.8.8.8"], Any, "HOST:PORT");
        refused(&["8.8.8.8:0"], Any, "not available");
        refused(&["127.0.0.1:59882"], Any, "not available");
        refused(
            &["127.0.0.1:80", "127.0.0.2:80"],
            Any,
            "already uses port 80",
        );
        refused(
            &[
                "1.1.1.1:1",
                "1.1.1.1:2",
                "1.1.1.1:3",
                "1.1.1.1:4",
                "1.1.1.1:5",
            ],
            Any,
            "may have 4",
        );
    }
}
