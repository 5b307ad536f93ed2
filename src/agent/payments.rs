//! The payments desk: a buyer names the channel that pays for its lease
//! (`ChannelProof`), then sends balance proofs (`Payment`). The fee must be
//! deposited on chain and the channel must be the buyer's, pay this
//! gateway and not be closing. A proof is verified and written by the
//! channel receiver, the lease's new total is written by the book, and one
//! flush makes both durable before the agent acknowledges anything (one
//! fsync per proof, shared with whatever else flushed at the same time).
//! What a lease has been paid is the newest proof minus the channel's
//! amount when it started paying for the lease.

use alloy_primitives::{Address, U256};

use super::lease::{LeaseBook, State, UnixTime};
use super::machine::Event;
use crate::chain::bindings::IChannelManager;
use crate::chain::tx::view;
use crate::chain::{Deployment, Rpc};
use crate::channel::{ChannelId, ChannelInfo, Proof, Receiver};
use crate::market::{self, LeaseId, MarketState};
use crate::p2p::Body;
use crate::units::Edg;

pub struct PaymentDesk<'a> {
    pub book: &'a LeaseBook,
    pub receiver: &'a Receiver,
    pub rpc: &'a Rpc,
    pub deployment: &'a Deployment,
    pub gateway: Address,
}

fn status(lease: LeaseId, state: State, detail: &str) -> Body {
    Body::Status {
        lease: lease.0,
        state: state.name().into(),
        detail: detail.into(),
    }
}

fn error(message: impl Into<String>) -> Body {
    Body::Error {
        message: message.into(),
    }
}

/// An on-chain amount as EDG (proofs are within a uint96 deposit; saturate
/// anyway rather than wrap).
fn edg(v: U256) -> Edg {
    Edg(u128::try_from(v).unwrap_or(u128::MAX))
}

impl PaymentDesk<'_> {
    pub fn channel_proof(
        &self,
        peer: Address,
        lease: LeaseId,
        channel: ChannelId,
        now: UnixTime,
    ) -> Body {
        match self.prove_channel(peer, lease, channel, now) {
            Ok(body) => body,
            Err(why) => error(why),
        }
    }

    fn prove_channel(
        &self,
        peer: Address,
        lease: LeaseId,
        channel: ChannelId,
        now: UnixTime,
    ) -> Result<Body, String> {
        let mut l = self
            .book
            .of_buyer(&lease, peer)
            .map_err(|e| e.to_string())?;
        if l.state == State::Accepted {
            let on_chain = market::lease_on_chain(self.rpc, self.deployment, lease.b256())
                .map_err(|e| format!("cannot read lease {lease} on chain: {e}"))?;
            if on_chain.state != MarketState::Active {
                return Err(format!(
                    "lease {lease}: the fee is not deposited on chain yet (dedge_fee)"
                ));
            }
            l = self
                .book
                .apply(&lease, &Event::FeeSeen, now)
                .map_err(|e| e.to_string())?
                .lease;
        }
        if l.state != State::FeePaid {
            return Ok(status(lease, l.state, "a channel is already proven"));
        }
        let ch: IChannelManager::Channel = view(
            self.rpc,
            self.deployment.channels,
            &IChannelManager::channelOfCall {
                channelId: channel.b256(),
            },
        )
        .map_err(|e| format!("cannot read channel {channel} on chain: {e}"))?;
        if ch.sender != peer || ch.receiver != self.gateway {
            return Err(format!(
                "channel {channel} is from {} to {}, not from the buyer {peer} to this gateway",
                ch.sender, ch.receiver
            ));
        }
        if ch.settleAfter.to::<u64>() != 0 {
            return Err(format!("channel {channel} is closing"));
        }
        let deposit = U256::from(ch.deposit.to::<u128>());
        if deposit.is_zero() {
            return Err(format!("channel {channel} holds no deposit"));
        }
        let info = ChannelInfo {
            id: channel.b256(),
            sender: ch.sender,
            receiver: ch.receiver,
            deposit,
        };
        let base = self
            .receiver
            .watch(info, lease.b256())
            .map_err(|e| e.to_string())?;
        let proven = Event::ChannelProven {
            channel,
            base: edg(base),
        };
        let l = self
            .book
            .apply(&lease, &proven, now)
            .map_err(|e| e.to_string())?
            .lease;
        Ok(status(lease, l.state, "send the image (Deploy)"))
    }

    pub fn payment(
        &self,
        peer: Address,
        lease: LeaseId,
        channel: ChannelId,
        amount: [u8; 32],
        signature: Vec<u8>,
        now: UnixTime,
    ) -> Body {
        let l = match self.book.of_buyer(&lease, peer) {
            Ok(l) => l,
            Err(e) => return error(e.to_string()),
        };
        // Proofs after the container is gone would not be reported or
        // claimed: refused, not acknowledged.
        if l.state.is_terminal() || (l.state == State::Terminating && l.stopped) {
            return error(format!("lease {lease} has ended: no more payments"));
        }
        if l.channel != Some(channel) {
            return error(format!(
                "lease {lease} is not paid through channel {channel}"
            ));
        }
        let proof = Proof {
            channel: channel.b256(),
            amount: U256::from_be_bytes(amount),
            lease: lease.b256(),
            signature,
        };
        let cumulative = match self.receiver.stage(proof) {
            Ok(c) => edg(c),
            Err(why) => return error(format!("payment refused: {why}")),
        };
        // Staged, not yet durable: the lease's total joins the proof in
        // the same flush. A failure here loses no money (the proof is the
        // receiver's, and claims use it); the next proof brings the
        // lease's total up.
        if let Err(e) = self
            .book
            .apply_staged(&lease, &Event::Paid { cumulative }, now)
        {
            log::error!(
                "lease {lease}: payment staged, lease not updated: {}",
                crate::logger::chain(&e)
            );
        }
        if let Err(e) = self.receiver.flush() {
            return error(format!("payment not stored: {e}"));
        }
        Body::PaymentAck {
            lease: lease.0,
            amount,
        }
    }
}
