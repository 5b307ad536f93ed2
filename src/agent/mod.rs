//! The seller agent: what it decides about leases, kept apart from how it
//! talks (p2p, chain) so each rule is testable on its own.
//!
//! - `lease`: the lease record, its storage formats, and the book that
//!   owns the records in sled (compare-and-swap on every write);
//! - `admission`: whether an offer fits the board's capacity, devices and
//!   prices;
//! - `machine`: the lease state machine, `(lease, event) -> (lease,
//!   effects)`, pure: what a buyer owes, freeze / thaw / stop, the accept
//!   and settle steps as recorded intents;
//! - `executor`: carries out the machine's effects on containers and on
//!   chain, and feeds what happened back in as events;
//! - `offers`: the offer desk (signature, on-chain proposal, admission,
//!   accept on chain);
//! - `payments`: the payments desk (the channel that pays for a lease,
//!   balance proofs stored durably before they are acknowledged);
//! - `settle`: the executor's hands on chain (accept, terminate,
//!   finalize, cancel, claim) and the chain read each step starts from;
//! - `deploy`: the lease's image by CID, verified, unpacked, run with its
//!   limits and its EdgeX bridge;
//! - `endpoint`: the advertised endpoint, p2p sessions with buyers;
//! - `advert`: the gateway's advert on chain, made and renewed;
//! - `backends`: a buyer's backend endpoints, checked and wired into its
//!   container;
//! - `holder`: the process of `dedge-leases.service`, which holds the
//!   delegated cgroup leases run in (systemd).
//!
//! `daemon` puts them together: `handle` answers buyers, `tick` runs the
//! executor over every lease.

pub mod admission;
pub mod advert;
pub mod backends;
pub(crate) mod control;
pub mod daemon;
pub mod deploy;
pub mod endpoint;
pub mod executor;
pub(crate) mod holder;
pub mod lease;
pub mod machine;
pub mod offers;
pub mod payments;
pub mod settle;

use crate::market::LeaseId;

/// The agent's errors: each names the step that failed and keeps its
/// cause; they become text only where they leave the agent (an answer to a
/// buyer, a log line: `crate::logger::chain`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("setting up {what}")]
    Setup {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("lease store")]
    Store(#[source] crate::store::Error),
    #[error("lease {id}: cannot encode its record")]
    Encode {
        id: LeaseId,
        #[source]
        source: postcard::Error,
    },
    #[error("a lease record of format {format} does not decode")]
    Decode {
        format: u8,
        #[source]
        source: postcard::Error,
    },
    #[error("a lease record is in format {}, this agent reads 1 to {reads}", found.map_or("(empty)".to_string(), |f| f.to_string()))]
    Format { found: Option<u8>, reads: u8 },
    /// An unknown lease and another buyer's get this same answer.
    #[error("no lease {0} of yours")]
    NotYours(LeaseId),
    #[error("no lease {0}")]
    Unknown(LeaseId),
    #[error("lease {0} is already known")]
    Known(LeaseId),
    #[error("lease {id} is {state}: `{event}` does not apply")]
    NotNow {
        id: LeaseId,
        state: &'static str,
        event: &'static str,
    },
    #[error("container {id}")]
    Container {
        id: String,
        #[source]
        source: crate::runtime::Error,
    },
    #[error("channel {channel}")]
    Channel {
        channel: crate::channel::ChannelId,
        #[source]
        source: crate::channel::Rejected,
    },
    /// Boxed: chain errors are large, and every agent result carries
    /// this type.
    #[error("lease {id}: {step} on chain")]
    Chain {
        id: LeaseId,
        step: &'static str,
        #[source]
        source: Box<crate::market::Error>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;
