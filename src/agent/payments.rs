//! The payments desk: a buyer names the channel that pays for its lease
//! (`ChannelProof`), then sends balance proofs (`Payment`). The fee must be
//! deposited on chain and the channel must be the buyer's, pay this
//! gateway and not be closing; proofs go through the channel receiver,
//! which verifies and fsyncs them before the agent acknowledges anything.
//! What a lease has been paid is the newest proof minus the channel's
//! amount when it started paying for the lease.

use alloy_primitives::{Address, B256, U256};

use super::lease::{LeaseBook, State};
use crate::chain::bindings::IChannelManager;
use crate::chain::tx::view;
use crate::chain::{Deployment, Rpc};
use crate::channel::{ChannelInfo, Proof, Receiver};
use crate::market;
use crate::p2p::Body;

/// The Market contract's `State.Active`: fee deposited, lease valid.
const ACTIVE: u8 = 3;

pub struct PaymentDesk<'a> {
    pub book: &'a LeaseBook,
    pub receiver: &'a Receiver,
    pub rpc: &'a Rpc,
    pub deployment: &'a Deployment,
    pub gateway: Address,
}

fn status(lease: [u8; 32], state: State, detail: &str) -> Body {
    Body::Status {
        lease,
        state: state.name().into(),
        detail: detail.into(),
    }
}

fn error(message: impl Into<String>) -> Body {
    Body::Error {
        message: message.into(),
    }
}

impl PaymentDesk<'_> {
    pub fn channel_proof(
        &self,
        peer: Address,
        lease: [u8; 32],
        channel: [u8; 32],
        now: u64,
    ) -> Body {
        match self.prove_channel(peer, lease, channel, now) {
            Ok(body) => body,
            Err(why) => error(why),
        }
    }

    fn prove_channel(
        &self,
        peer: Address,
        lease: [u8; 32],
        channel: [u8; 32],
        now: u64,
    ) -> Result<Body, String> {
        let id = B256::from(lease);
        let l = self.own_lease(peer, &lease)?;
        let mut state = l.state;
        if state == State::Accepted {
            let on_chain =
                market::lease(self.rpc, self.deployment, id).map_err(|e| e.to_string())?;
            if on_chain.state != ACTIVE {
                return Err(format!(
                    "lease {id}: the fee is not deposited on chain yet (dedge_fee)"
                ));
            }
            self.book
                .transition(&lease, State::FeePaid, now, None, |_| {})
                .map_err(|e| e.to_string())?;
            state = State::FeePaid;
        }
        if state != State::FeePaid {
            return Ok(status(lease, state, "a channel is already proven"));
        }
        let ch: IChannelManager::Channel = view(
            self.rpc,
            self.deployment.channels,
            &IChannelManager::channelOfCall {
                channelId: B256::from(channel),
            },
        )
        .map_err(|e| format!("cannot read channel on chain: {e}"))?;
        if ch.sender != peer || ch.receiver != self.gateway {
            return Err(format!(
                "channel {} is from {} to {}, not from the buyer {peer} to this gateway",
                B256::from(channel),
                ch.sender,
                ch.receiver
            ));
        }
        if ch.settleAfter.to::<u64>() != 0 {
            return Err(format!("channel {} is closing", B256::from(channel)));
        }
        let deposit = U256::from(ch.deposit.to::<u128>());
        if deposit.is_zero() {
            return Err("the channel holds no deposit".into());
        }
        let info = ChannelInfo {
            id: B256::from(channel),
            sender: ch.sender,
            receiver: ch.receiver,
            deposit,
        };
        self.receiver.watch(info, id).map_err(|e| e.to_string())?;
        let base = self
            .receiver
            .newest(info.id)
            .map_err(|e| e.to_string())?
            .map_or(0, |p| u128::try_from(p.amount).unwrap_or(u128::MAX));
        self.book
            .transition(&lease, State::ChannelProven, now, None, |l| {
                l.channel = Some(channel);
                l.channel_base = base;
            })
            .map_err(|e| e.to_string())?;
        Ok(status(
            lease,
            State::ChannelProven,
            "send the image (Deploy)",
        ))
    }

    pub fn payment(
        &self,
        peer: Address,
        lease: [u8; 32],
        channel: [u8; 32],
        amount: [u8; 32],
        signature: Vec<u8>,
    ) -> Body {
        let l = match self.own_lease(peer, &lease) {
            Ok(l) => l,
            Err(why) => return error(why),
        };
        if l.channel != Some(channel) {
            return error(format!(
                "lease {} is not paid through channel {}",
                l.id_hex(),
                B256::from(channel)
            ));
        }
        let proof = Proof {
            channel: B256::from(channel),
            amount: U256::from_be_bytes(amount),
            lease: B256::from(lease),
            signature,
        };
        if let Err(why) = self.receiver.accept(proof) {
            return error(format!("payment refused: {why}"));
        }
        // Durable in the receiver: from here on the proof counts.
        // Accepted proofs are within a uint96 deposit; saturate anyway.
        let cumulative = u128::try_from(U256::from_be_bytes(amount)).unwrap_or(u128::MAX);
        let paid = cumulative.saturating_sub(l.channel_base);
        if let Err(e) = self.book.record_payment(&lease, paid) {
            log::error!(
                "lease {}: payment stored, lease not updated: {e}",
                l.id_hex()
            );
        }
        Body::PaymentAck { lease, amount }
    }

    /// The lease, if `peer` is its buyer.
    fn own_lease(&self, peer: Address, lease: &[u8; 32]) -> Result<super::lease::Lease, String> {
        let l = self
            .book
            .get(lease)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown lease {}", B256::from(*lease)))?;
        if Address::from(l.terms.buyer) != peer {
            return Err(format!("lease {} is not yours", l.id_hex()));
        }
        Ok(l)
    }
}
