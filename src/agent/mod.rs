//! The seller agent: what it decides about leases, kept apart from how it
//! talks (p2p, chain) so each rule is testable on its own.
//!
//! - `lease`: the lease state machine and its durable record in sled;
//! - `admission`: whether an offer fits the board's capacity, devices and
//!   prices;
//! - `payment`: what a buyer owes, and freeze / thaw / stop;
//! - `enforce`: those decisions carried out on containers and recorded;
//! - `offers`: the offer desk (signature, on-chain proposal, admission,
//!   accept on chain);
//! - `payments`: the payments desk (the channel that pays for a lease,
//!   balance proofs stored durably before they are acknowledged);
//! - `settle`: the on-chain end of a lease (terminate, finalize, claim);
//! - `deploy`: the lease's image by CID, verified, unpacked, run with its
//!   limits and its EdgeX bridge;
//! - `endpoint`: the advertised endpoint, p2p sessions with buyers;
//! - `advert`: the gateway's advert on chain, made and renewed;
//! - `backends`: a buyer's backend endpoints, checked and wired into its
//!   container;
//! - `holder`: the process of `dedge-leases.service`, which holds the
//!   delegated cgroup leases run in (systemd).
//!
//! `daemon` puts them together: `handle` answers buyers, `tick` enforces
//! and settles.

pub mod admission;
pub mod advert;
pub mod backends;
pub mod daemon;
pub mod deploy;
pub mod endpoint;
pub mod enforce;
pub mod holder;
pub mod lease;
pub mod offers;
pub mod payment;
pub mod payments;
pub mod settle;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("lease store: {0}")]
    Store(String),
    #[error("{0}")]
    Lease(String),
}

pub type Result<T> = std::result::Result<T, Error>;
