//! The agent's hands on chain: what the executor's on-chain effects do
//! (`executor::Chain`), and the chain read that every settle step starts
//! from. The steps themselves, and in what order, are the machine's
//! (`machine::settle_seen`); here each one is a single transaction, sent
//! while the gateway's nonce lock is held, and each read turns the
//! Market's answer into a `ChainView` with the contract's own time rules
//! (read once from the deployed contract, never assumed).

use std::sync::{Mutex, OnceLock};

use alloy_primitives::U256;

use super::executor::Chain;
use super::lease::Lease;
use super::machine::ChainView;
use super::{Error, Result};
use crate::chain::bindings::IChannelManager;
use crate::chain::tx::{TxSender, view};
use crate::chain::{Deployment, Rpc};
use crate::channel::{Receiver, onchain};
use crate::market::{self, Rules};
use crate::units::Edg;

pub struct MarketHands<'a> {
    pub rpc: &'a Rpc,
    pub deployment: &'a Deployment,
    pub receiver: &'a Receiver,
    /// The Market's time rules, read from the contract when first needed
    /// (a node down at start must not stop enforcement, which needs none).
    pub rules: &'a OnceLock<Rules>,
    /// Sends the gateway's transactions.
    pub seller: TxSender<'a>,
    /// Held while a transaction is sent: one nonce sequence.
    pub lock: &'a Mutex<()>,
}

fn on_chain(l: &Lease, step: &'static str) -> impl FnOnce(market::Error) -> Error {
    let id = l.id;
    move |source| Error::Chain {
        id,
        step,
        source: Box::new(source),
    }
}

impl MarketHands<'_> {
    fn rules(&self, l: &Lease) -> Result<Rules> {
        if let Some(r) = self.rules.get() {
            return Ok(*r);
        }
        let r = market::rules(self.rpc, self.deployment)
            .map_err(on_chain(l, "reading the Market's rules"))?;
        Ok(*self.rules.get_or_init(|| r))
    }

    fn sending<T>(&self, f: impl FnOnce() -> T) -> T {
        let _nonce = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        f()
    }

    /// The lease's channel as the chain holds it: whether its newest proof
    /// is above what was claimed, and whether its sender started closing
    /// it. A settled channel is deleted (all zeros): nothing to claim.
    fn channel(&self, l: &Lease) -> Result<Channel> {
        let Some(channel) = l.channel else {
            return Ok(Channel::default());
        };
        let ch: IChannelManager::Channel = view(
            self.rpc,
            self.deployment.channels,
            &IChannelManager::channelOfCall {
                channelId: channel.b256(),
            },
        )
        .map_err(|e| on_chain(l, "reading the channel")(e.into()))?;
        if ch.sender.is_zero() {
            return Ok(Channel {
                gone: true,
                ..Channel::default()
            });
        }
        let newest = self
            .receiver
            .newest(channel.b256())
            .map_err(|source| Error::Channel { channel, source })?;
        let newest = newest.map_or(U256::ZERO, |p| p.amount);
        Ok(Channel {
            newest: Edg(newest.saturating_to::<u128>()),
            claimable: newest > U256::from(ch.claimed.to::<u128>()),
            closing: !ch.settleAfter.is_zero(),
            gone: false,
        })
    }
}

/// What a chain read says of the lease's channel.
#[derive(Default)]
struct Channel {
    claimable: bool,
    newest: Edg,
    closing: bool,
    gone: bool,
}

impl Chain for MarketHands<'_> {
    fn read(&self, l: &Lease) -> Result<ChainView> {
        let rules = self.rules(l)?;
        let oc = market::lease_on_chain(self.rpc, self.deployment, l.id.b256())
            .map_err(on_chain(l, "reading the lease"))?;
        let chain_time =
            market::chain_time(self.rpc).map_err(on_chain(l, "reading the chain's time"))?;
        // Read in every state: a closing channel must be claimed before
        // its challenge period ends, whatever the Market says.
        let channel = self.channel(l)?;
        Ok(ChainView {
            state: oc.state,
            seller_reported: oc.flags.seller_terminated(),
            start: oc.start,
            end: oc.end,
            offer_expiry: oc.offer_expiry,
            chain_time,
            termination_timeout: rules.termination_timeout,
            funding_window: rules.funding_window,
            claimable: channel.claimable,
            newest: channel.newest,
            channel_closing: channel.closing,
            channel_gone: channel.gone,
        })
    }

    fn accept(&self, l: &Lease) -> Result<()> {
        self.sending(|| market::accept(&self.seller, self.deployment, l.id.b256()))
            .map_err(on_chain(l, "accepting"))?;
        log::info!("lease {} accepted for buyer {}", l.id, l.terms.buyer());
        Ok(())
    }

    fn report(&self, l: &Lease, paid: Edg) -> Result<()> {
        self.sending(|| {
            market::terminate(
                &self.seller,
                self.deployment,
                l.id.b256(),
                U256::from(paid.wei()),
            )
        })
        .map_err(on_chain(l, "terminating"))?;
        Ok(())
    }

    fn finalize(&self, l: &Lease) -> Result<()> {
        self.sending(|| market::finalize(&self.seller, self.deployment, l.id.b256()))
            .map_err(on_chain(l, "finalizing"))?;
        Ok(())
    }

    fn cancel(&self, l: &Lease) -> Result<()> {
        self.sending(|| market::cancel(&self.seller, self.deployment, l.id.b256()))
            .map_err(on_chain(l, "cancelling"))?;
        log::info!("lease {}: cancelled on chain (never funded)", l.id);
        Ok(())
    }

    fn claim(&self, l: &Lease) -> Result<()> {
        let Some(channel) = l.channel else {
            return Ok(());
        };
        let newest = self
            .receiver
            .newest(channel.b256())
            .map_err(|source| Error::Channel { channel, source })?;
        let Some(proof) = newest else {
            return Ok(());
        };
        self.sending(|| onchain::claim(&self.seller, self.deployment, &proof))
            .map_err(|e| on_chain(l, "claiming the channel")(e.into()))?;
        log::info!(
            "lease {}: channel {channel} claimed up to {}",
            l.id,
            proof.amount
        );
        Ok(())
    }
}
