//! Sending transactions: nonces that survive restarts, gas estimated with a
//! margin, EIP-1559 fees, a stuck transaction re-sent with bumped fees under
//! the same nonce, receipts awaited to the board's confirmations, reverts
//! surfaced with their reason.

use std::time::{Duration, Instant};

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, U64, U256};
use serde::Deserialize;
use serde_json::json;

use super::{Error, Result, Rpc, Signer};
use crate::store::Tree;

#[derive(Debug, Clone)]
pub struct TxPolicy {
    /// Percent added to the node's gas estimate.
    pub gas_margin_percent: u64,
    /// How long a transaction may stay unmined before its fees are bumped.
    pub bump_after: Duration,
    /// Fee bumps before giving up (each +20%, above the 10% nodes require).
    pub max_bumps: u32,
    pub poll: Duration,
    /// Blocks on top of the receipt's block before it counts (as the event
    /// follower counts them).
    pub confirmations: u64,
}

impl Default for TxPolicy {
    fn default() -> Self {
        TxPolicy {
            gas_margin_percent: 20,
            bump_after: Duration::from_secs(60),
            max_bumps: 5,
            poll: Duration::from_secs(2),
            confirmations: 2,
        }
    }
}

/// The parts of a receipt the agent uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub transaction_hash: B256,
    block_hash: B256,
    pub block_number: U64,
    pub status: U64,
    pub gas_used: U64,
    #[serde(default)]
    pub logs: Vec<Log>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Log {
    pub address: Address,
    pub topics: Vec<B256>,
    pub data: Bytes,
    #[serde(default)]
    pub block_number: Option<U64>,
    #[serde(default)]
    pub(crate) block_hash: Option<B256>,
    #[serde(default)]
    pub transaction_hash: Option<B256>,
    #[serde(default)]
    pub(crate) log_index: Option<U64>,
    #[serde(default)]
    pub(crate) transaction_index: Option<U64>,
}

fn pending_key(from: Address) -> Vec<u8> {
    [b"pending/".as_slice(), from.as_slice()].concat()
}

/// Calls a view function on the latest block; no key needed.
pub fn view<C: alloy_sol_types::SolCall>(rpc: &Rpc, to: Address, call: &C) -> Result<C::Return> {
    let out: Bytes = rpc.call(
        "eth_call",
        json!([{"to": to, "data": Bytes::from(call.abi_encode())}, "latest"]),
    )?;
    C::abi_decode_returns(&out).map_err(|e| Error::BadResponse {
        method: C::SIGNATURE.to_string(),
        message: e.to_string(),
    })
}

/// Sends one account's transactions.
pub struct TxSender<'a> {
    rpc: &'a Rpc,
    signer: &'a Signer,
    chain_id: u64,
    nonces: Tree,
    policy: TxPolicy,
}

impl<'a> TxSender<'a> {
    /// `nonces` is the sled tree holding the next nonce per account.
    pub fn new(
        rpc: &'a Rpc,
        signer: &'a Signer,
        chain_id: u64,
        nonces: Tree,
        policy: TxPolicy,
    ) -> Self {
        TxSender {
            rpc,
            signer,
            chain_id,
            nonces,
            policy,
        }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    pub fn rpc(&self) -> &Rpc {
        self.rpc
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Read-only call against the latest block.
    pub fn call(&self, to: Address, data: &[u8]) -> Result<Bytes> {
        self.rpc.call(
            "eth_call",
            json!([{"from": self.address(), "to": to, "data": Bytes::copy_from_slice(data)}, "latest"]),
        )
    }

    /// Calls a view function and decodes its return value.
    pub fn view<C: alloy_sol_types::SolCall>(&self, to: Address, call: &C) -> Result<C::Return> {
        view(self.rpc, to, call)
    }

    /// Sends a typed contract call (no value) and waits for its receipt.
    pub fn execute<C: alloy_sol_types::SolCall>(&self, to: Address, call: &C) -> Result<Receipt> {
        self.send(to, call.abi_encode().into(), U256::ZERO)
    }

    /// The next nonce. The node's pending count is the truth; ours can only
    /// be ahead if our last transaction left the node's pool (a restarted
    /// node, another endpoint, an eviction): then its saved bytes are sent
    /// again, and if we have none the gap is closed by reusing the nonce.
    fn next_nonce(&self) -> Result<u64> {
        let from = self.address();
        let node: U64 = self
            .rpc
            .call("eth_getTransactionCount", json!([from, "pending"]))?;
        let node = node.to::<u64>();
        let stored: u64 = self.nonces.get(from)?.unwrap_or(0);
        if stored <= node {
            return Ok(node);
        }
        if let Some((n, raw)) = self.nonces.get::<(u64, Vec<u8>)>(pending_key(from))? {
            if n == node {
                log::warn!("nonce {n} is missing from the node's pool: re-sending its transaction");
                match self
                    .rpc
                    .call::<B256>("eth_sendRawTransaction", json!([Bytes::from(raw)]))
                {
                    Ok(_) => return Ok(stored),
                    Err(e) => log::warn!("re-sending nonce {n} failed ({e}); reusing the nonce"),
                }
            }
        }
        log::warn!("stored nonce {stored} is ahead of the node's {node}: reusing {node}");
        Ok(node)
    }

    fn fees(&self) -> Result<(u128, u128)> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Head {
            base_fee_per_gas: Option<U256>,
        }
        let head: Head = self
            .rpc
            .call("eth_getBlockByNumber", json!(["latest", false]))?;
        let tip: U256 = self
            .rpc
            .call("eth_maxPriorityFeePerGas", json!([]))
            .unwrap_or(U256::from(1_000_000_000u64));
        let base = head.base_fee_per_gas.unwrap_or_default();
        let tip = u128::try_from(tip).unwrap_or(u128::MAX / 4);
        let base = u128::try_from(base).unwrap_or(u128::MAX / 4);
        // Room for the base fee to double before the transaction is priced out.
        Ok((base.saturating_mul(2).saturating_add(tip), tip))
    }

    /// Sends a call to `to` and waits until it is mined and confirmed.
    /// A revert, whether at estimation or on chain, comes back with its reason.
    pub fn send(&self, to: Address, data: Bytes, value: U256) -> Result<Receipt> {
        let from = self.address();
        let estimate: U64 = self.rpc.call(
            "eth_estimateGas",
            json!([{"from": from, "to": to, "data": data, "value": value}]),
        )?;
        let gas_limit = estimate
            .to::<u64>()
            .saturating_mul(100 + self.policy.gas_margin_percent)
            / 100;
        let nonce = self.next_nonce()?;
        let (mut max_fee, mut tip) = self.fees()?;
        let mut sent: Vec<B256> = Vec::new();
        for bump in 0..=self.policy.max_bumps {
            let tx = TxEip1559 {
                chain_id: self.chain_id,
                nonce,
                gas_limit,
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: tip,
                to: to.into(),
                value,
                input: data.clone(),
                ..Default::default()
            };
            let (raw, hash) = self.signer.sign_tx(tx)?;
            match self
                .rpc
                .call::<B256>("eth_sendRawTransaction", json!([raw]))
            {
                Ok(_) => {}
                // A replacement racing the original's inclusion: keep waiting.
                Err(Error::Rpc { ref message, .. })
                    if bump > 0 && message.to_lowercase().contains("nonce") => {}
                Err(e) => return Err(e),
            }
            // Persist before waiting: a restart must not hand this nonce to
            // another transaction, and keeps the signed bytes to re-send.
            self.nonces.put(from, &(nonce + 1))?;
            self.nonces.put(pending_key(from), &(nonce, raw.to_vec()))?;
            self.nonces.flush()?;
            sent.push(hash);
            log::debug!("sent {hash} nonce {nonce} max fee {max_fee} tip {tip} (bump {bump})");
            if let Some(receipt) = self.wait_any(&sent, self.policy.bump_after)? {
                return self.finish(receipt, to, &data, value);
            }
            log::warn!(
                "transaction {hash} unmined after {:?}: bumping fees",
                self.policy.bump_after
            );
            max_fee = max_fee.saturating_mul(6) / 5 + 1;
            tip = tip.saturating_mul(6) / 5 + 1;
        }
        Err(Error::NotMined {
            hash: sent.last().map(|h| h.to_string()).unwrap_or_default(),
            attempts: self.policy.max_bumps,
        })
    }

    /// Polls until one of `hashes` has a receipt, or `patience` runs out.
    fn wait_any(&self, hashes: &[B256], patience: Duration) -> Result<Option<Receipt>> {
        let deadline = Instant::now() + patience;
        let mut pause = Backoff::new(self.policy.poll);
        loop {
            for h in hashes.iter().rev() {
                let r: Option<Receipt> = self.rpc.call("eth_getTransactionReceipt", json!([h]))?;
                if r.is_some() {
                    return Ok(r);
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            pause.sleep();
        }
    }

    /// Waits for confirmations, then checks the receipt is still the same
    /// block's (a reorg would have moved or dropped it) and succeeded.
    fn finish(&self, receipt: Receipt, to: Address, data: &Bytes, value: U256) -> Result<Receipt> {
        let mined_at = receipt.block_number.to::<u64>();
        // A chain that stops making blocks must not hang us forever.
        let deadline = Instant::now() + self.policy.bump_after.saturating_mul(4);
        let mut pause = Backoff::new(self.policy.poll);
        loop {
            let head: U64 = self.rpc.call("eth_blockNumber", json!([]))?;
            if head.to::<u64>() >= mined_at.saturating_add(self.policy.confirmations) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::NotConfirmed {
                    hash: receipt.transaction_hash.to_string(),
                    confirmations: self.policy.confirmations,
                });
            }
            pause.sleep();
        }
        let hash = receipt.transaction_hash;
        let again: Option<Receipt> = self.rpc.call("eth_getTransactionReceipt", json!([hash]))?;
        let receipt = match again {
            Some(r) if r.block_hash == receipt.block_hash => r,
            // Reorged: wait for it to be mined again (the node re-queues it).
            _ => match self.wait_any(&[hash], self.policy.bump_after)? {
                Some(r) => return self.finish(r, to, data, value),
                None => {
                    return Err(Error::NotMined {
                        hash: hash.to_string(),
                        attempts: 0,
                    });
                }
            },
        };
        if receipt.status.to::<u64>() != 1 {
            return Err(Error::Reverted {
                hash: hash.to_string(),
                reason: self.revert_reason(to, data, value, receipt.block_number),
            });
        }
        Ok(receipt)
    }

    /// Replays a reverted transaction as a call on its block's parent state
    /// to learn why it reverted.
    fn revert_reason(&self, to: Address, data: &Bytes, value: U256, block: U64) -> String {
        let parent = U64::from(block.to::<u64>().saturating_sub(1));
        let call =
            json!([{"from": self.address(), "to": to, "data": data, "value": value}, parent]);
        match self.rpc.call::<Bytes>("eth_call", call) {
            Err(Error::Rpc {
                revert: Some(reason),
                ..
            }) => reason,
            Err(e) => format!("unknown ({e})"),
            Ok(_) => "unknown (the call succeeds when replayed)".into(),
        }
    }
}

/// Pauses between polls: 50 ms at first, doubling up to the policy's
/// interval. A node that mines at once (a dev chain, a rollup sequencer)
/// answers within the first pauses; a 12 s chain costs a few extra calls.
struct Backoff {
    next: Duration,
    most: Duration,
}

impl Backoff {
    fn new(most: Duration) -> Backoff {
        Backoff {
            next: Duration::from_millis(50).min(most),
            most,
        }
    }

    fn sleep(&mut self) {
        std::thread::sleep(self.next);
        self.next = (self.next * 2).min(self.most);
    }
}
