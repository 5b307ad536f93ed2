//! The endpoint the gateway advertises: TCP connections from buyers, each
//! a p2p session (handshake, then messages), served by one thread each up
//! to a cap. What a message means is the handler's business; the endpoint
//! only runs sessions: one answer per message at most, and any error ends
//! the session (and is logged, never sent back: the peer may be hostile).

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::Address;

use crate::chain::Signer;
use crate::p2p::{self, Body, ReplayGuard};
use crate::tcp_server::{Connections, TcpServer};

/// Answers a message from `peer` (whose chain address the handshake
/// proved), or says nothing.
pub type Handler = dyn Fn(Address, Body) -> Option<Body> + Send + Sync;

/// Connections a gateway serves at once, and how long one may idle.
const MAX_SESSIONS: usize = 32;
const IDLE: Duration = Duration::from_secs(300);

struct Sessions {
    signer: Signer,
    chain_id: u64,
    guard: ReplayGuard,
    handler: Arc<Handler>,
}

impl Connections for Sessions {
    fn serve(&self, conn: TcpStream) {
        let from = conn.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        if conn.set_read_timeout(Some(IDLE)).is_err() || conn.set_nodelay(true).is_err() {
            return;
        }
        let mut session = match p2p::accept(conn, &self.signer, self.chain_id, &self.guard) {
            Ok(s) => s,
            Err(e) => {
                log::info!("p2p {from}: handshake refused: {e}");
                return;
            }
        };
        let peer = session.peer();
        log::debug!("p2p {from}: session with {peer}");
        loop {
            let body = match session.recv() {
                Ok(b) => b,
                Err(p2p::Error::Io(_)) => return,
                Err(e) => {
                    log::info!("p2p {peer}: {e}; closing");
                    return;
                }
            };
            let Some(reply) = (self.handler)(peer, body) else {
                continue;
            };
            if let Err(e) = session.send(reply) {
                log::info!("p2p {peer}: {e}; closing");
                return;
            }
        }
    }

    fn busy(&self, _conn: TcpStream, cap: usize) {
        log::warn!("p2p: more than {cap} sessions at once; connection dropped");
    }
}

/// Serves buyers on `listener` as `signer` until dropped.
pub fn serve(
    listener: TcpListener,
    signer: Signer,
    chain_id: u64,
    handler: Arc<Handler>,
) -> TcpServer {
    TcpServer::spawn(
        listener,
        MAX_SESSIONS,
        "p2p-session",
        Arc::new(Sessions {
            signer,
            chain_id,
            guard: ReplayGuard::default(),
            handler,
        }),
    )
}
