//! Light-client checks of what an RPC node says about a log.
//!
//! Before the agent acts on a log that moves money or starts work, it checks
//! that (1) the block header the node returns hashes to the block hash the
//! log names, (2) the block's receipts, rebuilt into a Merkle-Patricia trie,
//! give the header's `receiptsRoot`, and (3) the log is in those receipts at
//! its index, byte for byte. A lying node therefore cannot invent or alter a
//! log without also forging a header that hashes to the block hash.
//!
//! What this does not do (docs/chain.md has more): it trusts that the block
//! hash belongs to the canonical chain (no consensus verification; several
//! RPC endpoints and confirmations narrow that), and it cannot see a log the
//! node leaves out (omission, Helios issue #329): the agent's protections
//! against a withheld event are timeouts, not proofs.

use alloy_consensus::{Header, ReceiptEnvelope, proofs::calculate_receipt_root};
use alloy_primitives::{B256, Log as PrimLog};
use serde_json::{Value, json};

use super::tx::Log;
use super::{Error, Result, Rpc};

fn unverified(what: impl Into<String>) -> Error {
    Error::Unverified(what.into())
}

/// The header of block `hash`, checked to hash to `hash`.
pub fn header(rpc: &Rpc, hash: B256) -> Result<Header> {
    let v: Value = rpc.call("eth_getBlockByHash", json!([hash, false]))?;
    if v.is_null() {
        return Err(unverified(format!("the node does not know block {hash}")));
    }
    let h: Header = serde_json::from_value(v)
        .map_err(|e| unverified(format!("block {hash}: unreadable header: {e}")))?;
    let computed = h.hash_slow();
    if computed != hash {
        return Err(unverified(format!(
            "header served for block {hash} hashes to {computed}"
        )));
    }
    Ok(h)
}

/// All receipts of block `hash`, checked against its header's receipts root,
/// with the verified header.
pub fn receipts(rpc: &Rpc, hash: B256) -> Result<(Header, Vec<ReceiptEnvelope<PrimLog>>)> {
    let h = header(rpc, hash)?;
    let raw: Vec<Value> = rpc.call("eth_getBlockReceipts", json!([hash]))?;
    let receipts: Vec<ReceiptEnvelope<PrimLog>> = raw
        .into_iter()
        .map(serde_json::from_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| unverified(format!("block {hash}: unreadable receipt: {e}")))?;
    let root = calculate_receipt_root(&receipts);
    if root != h.receipts_root {
        return Err(unverified(format!(
            "block {hash}: receipts give root {root}, the header says {}",
            h.receipts_root
        )));
    }
    Ok((h, receipts))
}

/// Checks that `log` is in its block's verified receipts at its index.
pub fn log(rpc: &Rpc, log: &Log) -> Result<()> {
    let (Some(block), Some(index)) = (log.block_hash, log.log_index) else {
        return Err(unverified(
            "a pending log (no block hash or index) cannot be verified",
        ));
    };
    let index =
        usize::try_from(index.to::<u64>()).map_err(|_| unverified("log index out of range"))?;
    let (header, receipts) = receipts(rpc, block)?;
    // The number and position the node claims must be the block's own: a
    // genuine old log relabelled as new would otherwise pass.
    if log.block_number.map(|n| n.to::<u64>()) != Some(header.number) {
        return Err(unverified(format!(
            "log claims block number {:?}, block {block} is number {} (relabelled)",
            log.block_number, header.number
        )));
    }
    let mut seen = 0usize;
    for (tx_index, r) in receipts.iter().enumerate() {
        let logs = r.logs();
        if index < seen + logs.len() {
            let l = &logs[index - seen];
            if log
                .transaction_index
                .is_some_and(|t| t.to::<u64>() != tx_index as u64)
            {
                return Err(unverified(format!(
                    "block {block}: log {index} is in transaction {tx_index}, not the one claimed (forged)"
                )));
            }
            if l.address == log.address
                && l.data.topics() == log.topics.as_slice()
                && l.data.data == log.data
            {
                return Ok(());
            }
            return Err(unverified(format!(
                "block {block}: log {index} differs from the block's receipts (forged)"
            )));
        }
        seen += logs.len();
    }
    Err(unverified(format!(
        "block {block} has no log {index} (forged)"
    )))
}
