//! The gateway as the buyer reaches it: its live advert (endpoint and
//! capability document) from the chain, and a p2p session to the endpoint
//! in which every question gets one answer.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use alloy_primitives::Address;

use super::{Buyer, Error, Result, chain};
use crate::market::{self, Capabilities};
use crate::p2p::{self, Body, Session};

const CONNECT: Duration = Duration::from_secs(10);
/// How long an answer may take: most questions are quick; a deploy is
/// answered once the image is fetched, verified and started.
const ANSWER: Duration = Duration::from_secs(30);
pub(crate) const DEPLOY_ANSWER: Duration = Duration::from_secs(600);

/// The gateway's advertised endpoint and capability document.
pub fn advert(buyer: &Buyer, gateway: Address) -> Result<(String, Capabilities)> {
    let listing = market::live_adverts(&buyer.rpc, &buyer.d)
        .map_err(chain)?
        .into_iter()
        .find(|l| l.gateway == gateway)
        .ok_or_else(|| Error::Request(format!("gateway {gateway} has no live advert")))?;
    let caps = listing.capabilities.map_err(|why| Error::Gateway {
        gateway: gateway.to_string(),
        why: format!("its capability document: {why}"),
    })?;
    Ok((listing.endpoint, caps))
}

pub struct Link {
    session: Session<TcpStream>,
    gateway: Address,
}

impl Link {
    /// Connects to `endpoint` and proves both ends' chain identities.
    pub fn connect(buyer: &Buyer, gateway: Address, endpoint: &str) -> Result<Link> {
        let fail = |why: String| Error::Gateway {
            gateway: format!("{gateway} at {endpoint}"),
            why,
        };
        let addrs: Vec<_> = endpoint
            .to_socket_addrs()
            .map_err(|e| fail(format!("endpoint: {e}")))?
            .collect();
        let mut last = format!("endpoint {endpoint} resolves to no address");
        for addr in addrs {
            let stream = match TcpStream::connect_timeout(&addr, CONNECT) {
                Ok(s) => s,
                Err(e) => {
                    last = e.to_string();
                    continue;
                }
            };
            stream
                .set_read_timeout(Some(ANSWER))
                .and_then(|()| stream.set_write_timeout(Some(CONNECT)))
                .and_then(|()| stream.set_nodelay(true))
                .map_err(|e| fail(e.to_string()))?;
            let session = p2p::connect(stream, &buyer.signer, buyer.d.chain_id, gateway)
                .map_err(|e| fail(e.to_string()))?;
            return Ok(Link { session, gateway });
        }
        Err(fail(last))
    }

    /// How long the next answers may take.
    pub(crate) fn patience(&mut self, wait: Duration) -> Result<()> {
        self.session
            .stream()
            .set_read_timeout(Some(wait))
            .map_err(|e| Error::Gateway {
                gateway: self.gateway.to_string(),
                why: e.to_string(),
            })
    }

    /// Sends `body`, returns the answer; an `Error` answer is an error.
    pub fn ask(&mut self, body: Body) -> Result<Body> {
        let fail = |e: p2p::Error| Error::Gateway {
            gateway: self.gateway.to_string(),
            why: e.to_string(),
        };
        self.session.send(body).map_err(fail)?;
        match self.session.recv().map_err(fail)? {
            Body::Error { message } => Err(Error::Refused(message)),
            answer => Ok(answer),
        }
    }

    /// The lease's state and detail as the gateway sees them.
    pub fn status(&mut self, lease: [u8; 32]) -> Result<(String, String)> {
        match self.ask(Body::Status {
            lease,
            state: String::new(),
            detail: String::new(),
        })? {
            Body::Status { state, detail, .. } => Ok((state, detail)),
            other => Err(self.unexpected(&other, "Status")),
        }
    }

    pub fn unexpected(&self, got: &Body, wanted: &str) -> Error {
        Error::Gateway {
            gateway: self.gateway.to_string(),
            why: format!("answered {} where {wanted} was due", got.name()),
        }
    }
}
