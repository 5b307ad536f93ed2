//! The channel's on-chain steps: open (with an allowance top-up if needed),
//! claim and close with the newest proof, the sender's uncooperative close
//! and settle.

use alloy_primitives::{Address, B256, Bytes, U256, Uint};
use alloy_sol_types::SolEvent;

use super::{ChannelInfo, Proof};
use crate::chain::bindings::{IChannelManager, IEDGToken};
use crate::chain::tx::{Receipt, TxSender};
use crate::chain::{Deployment, Error, Result};

fn u96(v: U256) -> Result<Uint<96, 2>> {
    u128::try_from(v)
        .ok()
        .and_then(|x| Uint::<96, 2>::try_from(x).ok())
        .ok_or_else(|| Error::Sign(format!("amount {v} exceeds 2^96")))
}

/// Opens a channel from the sender to `receiver` with `deposit`.
pub fn open(
    sender: &TxSender,
    d: &Deployment,
    receiver: Address,
    deposit: U256,
) -> Result<ChannelInfo> {
    let have: U256 = sender.view(
        d.token,
        &IEDGToken::allowanceCall {
            owner: sender.address(),
            spender: d.channels,
        },
    )?;
    if have < deposit {
        sender.execute(
            d.token,
            &IEDGToken::approveCall {
                spender: d.channels,
                value: deposit,
            },
        )?;
    }
    let receipt = sender.execute(
        d.channels,
        &IChannelManager::openCall {
            receiver,
            deposit: u96(deposit)?,
        },
    )?;
    let opened = receipt
        .logs
        .iter()
        .filter(|l| l.address == d.channels)
        .find_map(|l| {
            IChannelManager::ChannelOpened::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
        })
        .ok_or_else(|| Error::BadResponse {
            method: "open".into(),
            message: "no ChannelOpened event".into(),
        })?;
    Ok(ChannelInfo {
        id: opened.channelId,
        sender: opened.sender,
        receiver: opened.receiver,
        deposit: U256::from(opened.deposit),
    })
}

fn sig(p: &Proof) -> Bytes {
    Bytes::from(p.signature.clone())
}

/// The receiver takes payment up to `proof`; the channel stays open.
pub fn claim(receiver: &TxSender, d: &Deployment, proof: &Proof) -> Result<Receipt> {
    receiver.execute(
        d.channels,
        &IChannelManager::claimCall {
            channelId: proof.channel,
            amount: proof.amount,
            leaseId: proof.lease,
            signature: sig(proof),
        },
    )
}

/// The receiver closes with `proof`: paid at once, the rest refunded.
pub fn close(receiver: &TxSender, d: &Deployment, proof: &Proof) -> Result<Receipt> {
    receiver.execute(
        d.channels,
        &IChannelManager::closeCall {
            channelId: proof.channel,
            amount: proof.amount,
            leaseId: proof.lease,
            signature: sig(proof),
        },
    )
}

/// The sender starts an uncooperative close, stating what it owes.
pub fn start_close(
    sender: &TxSender,
    d: &Deployment,
    channel: B256,
    owed: U256,
) -> Result<Receipt> {
    sender.execute(
        d.channels,
        &IChannelManager::startCloseCall {
            channelId: channel,
            balance: u96(owed)?,
        },
    )
}

pub fn settle(anyone: &TxSender, d: &Deployment, channel: B256) -> Result<Receipt> {
    anyone.execute(
        d.channels,
        &IChannelManager::settleCall { channelId: channel },
    )
}
