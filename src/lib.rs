//! dEdge: a decentralized marketplace for time on ARM edge gateways and the
//! EdgeX sensors attached to them. One crate, one binary: the seller agent
//! that runs on gateways and the buyer CLI. ARCHITECTURE.md maps the modules.

pub mod agent;
pub mod board;
pub mod buyer;
pub mod chain;
pub mod channel;
pub mod cli;
pub mod edgex;
pub mod http_agent;
pub mod ipfs;
pub mod logger;
pub mod market;
pub mod p2p;
pub mod runtime;
pub mod store;
pub mod tcp_server;
pub mod units;
