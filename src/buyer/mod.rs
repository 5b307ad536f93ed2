//! The buyer's side of a lease, from the gateway's advert to the invoice.
//!
//! - `record`: what the buyer remembers about each lease, one JSON file per
//!   lease, readable while a payer runs;
//! - `wallet`: the buyer's payment channels, one sled database per channel,
//!   held by one process at a time (a payer, or a terminate);
//! - `link`: the gateway's advertised endpoint and the p2p session to it;
//! - `offer`: the offer built from the buyer's request and the gateway's
//!   capability document;
//! - `create`: offer → on chain → accepted → fee → channel → proof →
//!   image published → deployed;
//! - `pay`: the foreground payer, one interval ahead of what is owed;
//! - `end`: terminate (the buyer's report on chain, the gateway told) and
//!   the invoice.

pub mod create;
pub mod end;
pub mod link;
pub mod offer;
pub mod pay;
pub mod record;
pub mod wallet;

use std::path::{Path, PathBuf};

use crate::chain::tx::{TxPolicy, TxSender};
use crate::chain::{Deployment, Rpc, Signer};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request cannot be made of this gateway's offer.
    #[error("{0}")]
    Request(String),
    #[error("chain: {0}")]
    Chain(String),
    /// The gateway could not be reached or answered out of protocol.
    #[error("gateway {gateway}: {why}")]
    Gateway { gateway: String, why: String },
    /// The gateway answered with a refusal or an error message.
    #[error("the gateway refused: {0}")]
    Refused(String),
    #[error("payment channel: {0}")]
    Channel(String),
    #[error("image: {0}")]
    Image(String),
    /// Another process (a payer, a terminate) holds the lease's channel.
    #[error("{0}")]
    Busy(String),
    #[error("buyer state {path}: {why}")]
    State { path: PathBuf, why: String },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn chain(e: impl std::fmt::Display) -> Error {
    Error::Chain(e.to_string())
}

/// The Market's state for `lease` (3 active, 4 terminating, 5 settled).
pub(crate) fn market_state(buyer: &Buyer, lease: alloy_primitives::B256) -> Result<u8> {
    Ok(crate::market::lease(&buyer.rpc, &buyer.d, lease)
        .map_err(chain)?
        .state)
}

/// Who the buyer is and where it keeps its state.
pub struct Buyer {
    pub signer: Signer,
    pub rpc: Rpc,
    pub d: Deployment,
    pub policy: TxPolicy,
    /// `leases/` (records) and `channels/` (one database each) live here.
    pub data: PathBuf,
    /// Transaction nonces, in memory.
    nonces: Store,
}

impl Buyer {
    pub fn open(
        signer: Signer,
        rpc: Rpc,
        d: Deployment,
        policy: TxPolicy,
        data: &Path,
    ) -> Result<Buyer> {
        let state = |e: &dyn std::fmt::Display, p: &Path| Error::State {
            path: p.to_path_buf(),
            why: e.to_string(),
        };
        for sub in ["leases", "channels"] {
            let dir = data.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| state(&e, &dir))?;
        }
        // Nonces in memory: the node's pending count is the truth, and two
        // buyer commands may run at once (sled is one process per database).
        let nonces = Store::temporary().map_err(|e| state(&e, data))?;
        Ok(Buyer {
            signer,
            rpc,
            d,
            policy,
            data: data.to_path_buf(),
            nonces,
        })
    }

    pub fn tx(&self) -> Result<TxSender<'_>> {
        let tree = self.nonces.tree("nonces").map_err(chain)?;
        Ok(TxSender::new(
            &self.rpc,
            &self.signer,
            self.d.chain_id,
            tree,
            self.policy.clone(),
        ))
    }
}
