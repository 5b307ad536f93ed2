//! The on-chain end of a terminating lease, one idempotent step at a time:
//! report the seller's termination with what the lease was paid (which
//! settles it if the buyer has reported, or starts the termination
//! timeout), finalize once that timeout has passed, then claim the
//! channel up to the newest proof, and mark the lease settled. Each step
//! reads the chain first, so a step repeated after a crash or a lost
//! receipt does nothing twice. The container is torn down before this
//! (`deploy::teardown`).

use alloy_primitives::{B256, U256};

use super::lease::{LeaseBook, State};
use super::{Error, Result};
use crate::chain::bindings::{IChannelManager, IMarket};
use crate::chain::tx::{TxSender, view};
use crate::chain::{Deployment, Rpc};
use crate::channel::{Receiver, onchain};
use crate::market;

// The Market contract's states and flags.
const ACCEPTED: u8 = 2;
const ACTIVE: u8 = 3;
const TERMINATING: u8 = 4;
const SETTLED: u8 = 5;
const SELLER_TERMINATED: u8 = 4;
/// `Market.TERMINATION_TIMEOUT`.
const TERMINATION_TIMEOUT: u64 = 86_400;

pub struct Settler<'a> {
    pub book: &'a LeaseBook,
    pub receiver: &'a Receiver,
    pub rpc: &'a Rpc,
    pub deployment: &'a Deployment,
    pub seller: &'a TxSender<'a>,
}

/// Where a terminating lease stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The seller reported; the buyer has not, and the timeout runs.
    Waiting,
    Settled,
}

fn chain(e: impl std::fmt::Display) -> Error {
    Error::Lease(format!("chain: {e}"))
}

impl Settler<'_> {
    pub fn step(&self, lease: &[u8; 32], now: u64) -> Result<Progress> {
        let l = self
            .book
            .get(lease)?
            .ok_or_else(|| Error::Lease(format!("no lease {}", B256::from(*lease))))?;
        if l.state == State::Settled {
            return Ok(Progress::Settled);
        }
        if l.state != State::Terminating {
            return Err(Error::Lease(format!(
                "lease {} is {}, not terminating",
                l.id_hex(),
                l.state.name()
            )));
        }
        let id = B256::from(*lease);
        let mut on_chain: IMarket::Lease =
            market::lease(self.rpc, self.deployment, id).map_err(chain)?;
        if on_chain.state == ACCEPTED {
            // Never funded: nothing to report or claim.
            self.book
                .transition(lease, State::Settled, now, None, |_| {})?;
            return Ok(Progress::Settled);
        }
        if on_chain.state == ACTIVE
            || (on_chain.state == TERMINATING && on_chain.flags & SELLER_TERMINATED == 0)
        {
            market::terminate(self.seller, self.deployment, id, U256::from(l.paid))
                .map_err(chain)?;
            on_chain = market::lease(self.rpc, self.deployment, id).map_err(chain)?;
        }
        if on_chain.state == TERMINATING {
            // The contract counts the timeout in block time, so do we.
            let end = on_chain.end.to::<u64>();
            if self.chain_time()? < end.saturating_add(TERMINATION_TIMEOUT) {
                return Ok(Progress::Waiting);
            }
            self.seller
                .execute(
                    self.deployment.market,
                    &IMarket::finalizeCall { leaseId: id },
                )
                .map_err(chain)?;
            on_chain = market::lease(self.rpc, self.deployment, id).map_err(chain)?;
        }
        if on_chain.state != SETTLED {
            return Err(Error::Lease(format!(
                "lease {id} is in market state {} after terminating",
                on_chain.state
            )));
        }
        self.claim(&l.channel)?;
        self.book
            .transition(lease, State::Settled, now, None, |_| {})?;
        log::info!("lease {id} settled, paid {}", l.paid);
        Ok(Progress::Settled)
    }

    /// The latest block's timestamp.
    fn chain_time(&self) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Head {
            timestamp: alloy_primitives::U64,
        }
        let head: Head = self
            .rpc
            .call("eth_getBlockByNumber", serde_json::json!(["latest", false]))
            .map_err(chain)?;
        Ok(head.timestamp.to::<u64>())
    }

    /// Claims the channel up to its newest proof, if that is above what was
    /// claimed already.
    fn claim(&self, channel: &Option<[u8; 32]>) -> Result<()> {
        let Some(channel) = channel else {
            return Ok(());
        };
        let id = B256::from(*channel);
        let Some(proof) = self
            .receiver
            .newest(id)
            .map_err(|e| Error::Lease(e.to_string()))?
        else {
            return Ok(());
        };
        let ch: IChannelManager::Channel = view(
            self.rpc,
            self.deployment.channels,
            &IChannelManager::channelOfCall { channelId: id },
        )
        .map_err(chain)?;
        if proof.amount > U256::from(ch.claimed.to::<u128>()) {
            onchain::claim(self.seller, self.deployment, &proof).map_err(chain)?;
        }
        Ok(())
    }
}
