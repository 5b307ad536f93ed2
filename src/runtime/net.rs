//! Ways out of a container's network namespace, which has only loopback.
//!
//! A helper thread enters the namespace (`setns`), binds a listening socket
//! on the container's 127.0.0.1, and exits; the socket stays in that
//! namespace while the agent accepts on it from its own. Each connection is
//! relayed to one host address fixed by the agent (a buyer's declared
//! backend), or served by the agent itself (the EdgeX bridge). No veth, no iptables, no route out other
//! than the ones opened here.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

use nix::sched::{CloneFlags, setns};

use super::{Error, Result};
use crate::tcp_server::{Connections, TcpServer};

/// A listening socket on 127.0.0.1:`port` in the network namespace of
/// process `pid` (a container's init; port 0 picks a free one). The caller
/// accepts on it from the host's namespace: connections come from inside
/// the container only.
pub fn listen_in(pid: i32, port: u16) -> Result<TcpListener> {
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = std::fs::File::open(&ns_path).map_err(|e| Error::Io {
        path: ns_path.clone(),
        source: e,
    })?;
    // Network namespaces are per thread: only this short-lived thread
    // ever changes its own; the agent's threads stay on the host.
    std::thread::spawn(move || -> io::Result<TcpListener> {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        TcpListener::bind(("127.0.0.1", port))
    })
    .join()
    .map_err(|_| Error::Sandbox("port-forward helper thread panicked".into()))?
    .map_err(|e| {
        Error::Sandbox(format!(
            "listen on 127.0.0.1:{port} in pid {pid}'s network: {e}"
        ))
    })
}

/// A listening port inside a container, relayed to a host address. Dropping
/// it closes the port.
pub struct Forward {
    inside: SocketAddr,
    _server: TcpServer,
}

/// Connections relayed at once per forwarded port.
const MAX_RELAYED: usize = 64;

struct Relay {
    target: SocketAddr,
}

impl Connections for Relay {
    fn serve(&self, inside: TcpStream) {
        // Connections are relayed from the agent's namespace (this thread
        // never entered the container's).
        match TcpStream::connect(self.target) {
            Ok(outside) => relay(inside, outside),
            Err(e) => {
                log::warn!("forward to {}: {e}", self.target);
                let _ = inside.shutdown(Shutdown::Both);
            }
        }
    }

    fn busy(&self, conn: TcpStream, cap: usize) {
        log::warn!("forward to {}: more than {cap} connections", self.target);
        let _ = conn.shutdown(Shutdown::Both);
    }
}

impl Forward {
    /// Listens on 127.0.0.1:`port` in the network namespace of process
    /// `pid` (a container's init; 0 picks a free port) and relays every
    /// connection to `target`.
    pub fn open(pid: i32, port: u16, target: SocketAddr) -> Result<Forward> {
        let listener = listen_in(pid, port)?;
        let inside = listener
            .local_addr()
            .map_err(|e| Error::Sandbox(format!("local address: {e}")))?;
        log::debug!("forwarding {inside} in pid {pid}'s network to {target}");
        Ok(Forward {
            inside,
            _server: TcpServer::spawn(listener, MAX_RELAYED, "forward", Arc::new(Relay { target })),
        })
    }

    /// The address the container connects to.
    pub fn inside(&self) -> SocketAddr {
        self.inside
    }
}

/// Copies both ways until either side closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let up = std::thread::spawn(move || {
        let _ = io::copy(&mut &a2, &mut &b2);
        let _ = b2.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut &b, &mut &a);
    let _ = a.shutdown(Shutdown::Write);
    let _ = up.join();
}
