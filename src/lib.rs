//! dEdge: a decentralized marketplace for time on ARM edge gateways and the
//! EdgeX sensors attached to them. One crate, one binary: the seller agent
//! that runs on gateways and the buyer CLI. ARCHITECTURE.md maps the modules.

#[forbid(unsafe_code)]
pub mod agent;
#[forbid(unsafe_code)]
pub mod board;
#[forbid(unsafe_code)]
pub mod buyer;
#[forbid(unsafe_code)]
pub mod chain;
#[forbid(unsafe_code)]
pub mod channel;
pub mod cli;
#[forbid(unsafe_code)]
pub mod control;
#[forbid(unsafe_code)]
pub mod edgex;
#[forbid(unsafe_code)]
pub mod fleet;
#[forbid(unsafe_code)]
pub mod http_agent;
#[forbid(unsafe_code)]
pub mod ipfs;
#[forbid(unsafe_code)]
pub mod logger;
#[forbid(unsafe_code)]
pub mod market;
#[forbid(unsafe_code)]
pub mod p2p;
pub mod runtime;
#[forbid(unsafe_code)]
pub mod store;
pub mod tcp_server;
#[forbid(unsafe_code)]
pub mod units;
