//! The off-chain half of a payment channel.
//!
//! The buyer (sender) signs cumulative EIP-712 balance proofs; the gateway
//! (receiver) checks each one and makes it durable *before* acknowledging
//! it, so an acknowledged payment survives a crash. Only the newest proof
//! per channel matters: it is what `ChannelManager.claim/close` cashes.

use alloy_primitives::{Address, B256, Signature, U256};
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

use crate::chain::{Signer, eip712, signer};
use crate::store::{Store, Tree};

pub mod onchain;

/// A payment channel: `ChannelManager`'s key for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChannelId(pub [u8; 32]);

impl ChannelId {
    pub fn b256(self) -> B256 {
        B256::from(self.0)
    }
}

impl From<B256> for ChannelId {
    fn from(b: B256) -> Self {
        ChannelId(b.0)
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.b256())
    }
}

/// A channel as the chain knows it (`ChannelOpened`, `channelOf`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub id: B256,
    pub sender: Address,
    pub receiver: Address,
    pub deposit: U256,
}

/// One balance proof as it travels between buyer and gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub channel: B256,
    /// Cumulative over the channel's life, in EDG base units.
    pub amount: U256,
    pub lease: B256,
    /// 65 bytes: r, s, v.
    pub signature: Vec<u8>,
}

/// Why a proof was refused; each names the numbers involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("unknown channel {0}")]
    UnknownChannel(B256),
    #[error("channel {channel} pays {receiver}, not this gateway")]
    NotOurs { channel: B256, receiver: Address },
    #[error("proof is for lease {got}, the channel is paying lease {expected}")]
    WrongLease { expected: B256, got: B256 },
    #[error("malformed signature ({0} bytes, want 65)")]
    MalformedSignature(usize),
    #[error(
        "non-canonical signature ({0}): the contract would refuse it; sign with v = 27/28 and low s"
    )]
    NonCanonical(&'static str),
    #[error(
        "signature is from {signer}, not the channel's sender {sender} under this chain and contract (forged, or signed for another domain)"
    )]
    BadSignature { signer: Address, sender: Address },
    #[error("amount {amount} exceeds the deposit {deposit}")]
    OverDeposit { amount: U256, deposit: U256 },
    #[error("stale proof: amount {amount} is not above the newest accepted {newest}")]
    Stale { amount: U256, newest: U256 },
    #[error("state: {0}")]
    Store(String),
}

impl From<crate::store::Error> for Rejected {
    fn from(e: crate::store::Error) -> Self {
        Rejected::Store(e.to_string())
    }
}

/// What the receiver keeps per channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    info: ChannelInfo,
    lease: B256,
    newest: Option<Proof>,
}

/// The gateway's side: verifies and persists incoming proofs.
pub struct Receiver {
    store: Store,
    channels: Tree,
    domain: Eip712Domain,
    me: Address,
    /// Serialises read-modify-write of channel records: two accepts (or an
    /// accept and a deposit change) must not interleave and lose a proof.
    lock: std::sync::Mutex<()>,
}

impl Receiver {
    pub fn new(
        store: Store,
        chain_id: u64,
        manager: Address,
        me: Address,
    ) -> Result<Receiver, Rejected> {
        Ok(Receiver {
            channels: store.tree("channel.receiver")?,
            store,
            domain: eip712::channels_domain(chain_id, manager),
            me,
            lock: std::sync::Mutex::new(()),
        })
    }

    /// Starts (or moves) `info`'s channel to paying for `lease`. The channel
    /// keeps its newest proof: amounts are cumulative across leases, and
    /// what it returns (the newest amount when the move happened, read
    /// under the same lock as the write) is where the lease's payments
    /// start. Durable on return.
    pub fn watch(&self, info: ChannelInfo, lease: B256) -> Result<U256, Rejected> {
        if info.receiver != self.me {
            return Err(Rejected::NotOurs {
                channel: info.id,
                receiver: info.receiver,
            });
        }
        let _guard = self.guard();
        let newest = self.channels.get::<Record>(info.id)?.and_then(|r| r.newest);
        let base = newest.as_ref().map_or(U256::ZERO, |p| p.amount);
        self.channels.put(
            info.id,
            &Record {
                info,
                lease,
                newest,
            },
        )?;
        self.store.flush()?;
        Ok(base)
    }

    /// A top-up seen on chain raises the deposit proofs may reach.
    pub fn set_deposit(&self, channel: B256, deposit: U256) -> Result<(), Rejected> {
        let _guard = self.guard();
        let mut r = self.record(channel)?;
        r.info.deposit = deposit;
        self.channels.put(channel, &r)?;
        self.store.flush()?;
        Ok(())
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic while holding the lock leaves no half-written record
        // (writes are single puts), so a poisoned lock is safe to take.
        self.lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, channel: B256) -> Result<Record, Rejected> {
        self.channels
            .get::<Record>(channel)?
            .ok_or(Rejected::UnknownChannel(channel))
    }

    /// Checks a proof against the channel's lease, deposit and newest
    /// amount, and its signer (recovered by `signer_of`) against the
    /// channel's sender. Returns the increment it pays.
    fn check(&self, r: &Record, p: &Proof, signer: Address) -> Result<U256, Rejected> {
        if p.lease != r.lease {
            return Err(Rejected::WrongLease {
                expected: r.lease,
                got: p.lease,
            });
        }
        if p.amount > r.info.deposit {
            return Err(Rejected::OverDeposit {
                amount: p.amount,
                deposit: r.info.deposit,
            });
        }
        let newest = r.newest.as_ref().map_or(U256::ZERO, |n| n.amount);
        if p.amount <= newest {
            return Err(Rejected::Stale {
                amount: p.amount,
                newest,
            });
        }
        if signer != r.info.sender {
            return Err(Rejected::BadSignature {
                signer,
                sender: r.info.sender,
            });
        }
        Ok(p.amount - newest)
    }

    /// Who signed a proof under this chain and contract: the expensive
    /// part of a check (EIP-712 digest, secp256k1 recovery), needing no
    /// record, so it runs outside the lock and proofs of different
    /// channels verify on all cores at once.
    fn signer_of(&self, p: &Proof) -> Result<Address, Rejected> {
        // Accept exactly what ChannelManager (OpenZeppelin ECDSA) accepts, or
        // the gateway would acknowledge a proof it can never cash.
        if p.signature.len() != 65 {
            return Err(Rejected::MalformedSignature(p.signature.len()));
        }
        if !matches!(p.signature[64], 27 | 28) {
            return Err(Rejected::NonCanonical("v is not 27 or 28"));
        }
        let sig = Signature::try_from(p.signature.as_slice())
            .map_err(|_| Rejected::MalformedSignature(p.signature.len()))?;
        if sig.normalize_s().is_some() {
            return Err(Rejected::NonCanonical(
                "s is in the upper half of the curve order",
            ));
        }
        let digest = eip712::balance_proof_digest(p.channel, p.amount, p.lease, &self.domain);
        signer::recover(&digest, &sig).map_err(|_| Rejected::MalformedSignature(p.signature.len()))
    }

    /// A proof checked against the channel's record as it is under the
    /// lock, and written; not yet durable. A record read before the lock
    /// may be stale (another proof, a move to another lease): only the one
    /// read under it counts.
    fn put_checked(&self, p: Proof, signer: Address) -> Result<U256, Rejected> {
        let _guard = self.guard();
        let mut r = self.record(p.channel)?;
        let paid = self.check(&r, &p, signer)?;
        r.newest = Some(p);
        self.channels.put(r.info.id, &r)?;
        Ok(paid)
    }

    /// Accepts one proof: verified, written and fsynced before it returns Ok.
    pub fn accept(&self, p: Proof) -> Result<U256, Rejected> {
        self.accept_batch(vec![p])
            .pop()
            .unwrap_or(Err(Rejected::Store("empty batch".into())))
    }

    /// Verifies and writes one proof, not yet durable: the caller writes
    /// what else the proof changes (the lease it pays) and then flushes the
    /// store once for all of it, before acknowledging anything. Returns the
    /// channel's new cumulative amount.
    pub(crate) fn stage(&self, p: Proof) -> Result<U256, Rejected> {
        // A proof that fails the cheap checks on the record as it is now
        // is refused before any curve arithmetic (the checks run again
        // under the lock).
        let r = self.record(p.channel)?;
        self.check(&r, &p, r.info.sender)?;
        let signer = self.signer_of(&p)?;
        let amount = p.amount;
        self.put_checked(p, signer)?;
        Ok(amount)
    }

    /// Makes staged proofs (and every other write to the store) durable.
    pub fn flush(&self) -> Result<(), Rejected> {
        self.store.flush()?;
        Ok(())
    }

    /// Accepts several proofs with one fsync (group commit). Results are in
    /// input order; none is Ok until all accepted ones are durable, and if
    /// the fsync fails every one of them is refused.
    pub fn accept_batch(&self, proofs: Vec<Proof>) -> Vec<Result<U256, Rejected>> {
        let mut results = Vec::with_capacity(proofs.len());
        let mut any = false;
        for p in proofs {
            let outcome = self
                .record(p.channel)
                .and_then(|r| self.check(&r, &p, r.info.sender))
                .and_then(|_| self.signer_of(&p))
                .and_then(|signer| self.put_checked(p, signer));
            any |= outcome.is_ok();
            results.push(outcome);
        }
        if any {
            if let Err(e) = self.store.flush() {
                let why = Rejected::Store(format!("not durable: {e}"));
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(why.clone());
                }
            }
        }
        results
    }

    /// The newest accepted proof of a channel: what to claim on chain.
    pub fn newest(&self, channel: B256) -> Result<Option<Proof>, Rejected> {
        Ok(self.record(channel)?.newest)
    }
}

/// The buyer's side: issues cumulative proofs and remembers what it sent.
pub struct Sender {
    store: Store,
    sent: Tree,
    domain: Eip712Domain,
    signer: Signer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SentRecord {
    info: ChannelInfo,
    total: U256,
}

impl Sender {
    pub fn new(
        store: Store,
        chain_id: u64,
        manager: Address,
        signer: Signer,
    ) -> Result<Sender, Rejected> {
        Ok(Sender {
            sent: store.tree("channel.sender")?,
            store,
            domain: eip712::channels_domain(chain_id, manager),
            signer,
        })
    }

    pub fn open(&self, info: ChannelInfo) -> Result<(), Rejected> {
        if self.sent.get::<SentRecord>(info.id)?.is_none() {
            self.sent.put(
                info.id,
                &SentRecord {
                    info,
                    total: U256::ZERO,
                },
            )?;
            self.store.flush()?;
        }
        Ok(())
    }

    /// Signs a proof paying `increment` more for `lease`. The new total is
    /// durable before the proof is returned, so a restart never re-signs a
    /// lower amount.
    pub fn pay(&self, channel: B256, lease: B256, increment: U256) -> Result<Proof, Rejected> {
        let mut r = self.record(channel)?;
        let amount = r
            .total
            .checked_add(increment)
            .ok_or(Rejected::OverDeposit {
                amount: U256::MAX,
                deposit: r.info.deposit,
            })?;
        if amount > r.info.deposit {
            return Err(Rejected::OverDeposit {
                amount,
                deposit: r.info.deposit,
            });
        }
        let digest = eip712::balance_proof_digest(channel, amount, lease, &self.domain);
        let sig = self
            .signer
            .sign_hash(&digest)
            .map_err(|e| Rejected::Store(e.to_string()))?;
        r.total = amount;
        self.sent.put(channel, &r)?;
        self.store.flush()?;
        Ok(Proof {
            channel,
            amount,
            lease,
            signature: sig.as_bytes().to_vec(),
        })
    }

    fn record(&self, channel: B256) -> Result<SentRecord, Rejected> {
        self.sent
            .get::<SentRecord>(channel)?
            .ok_or(Rejected::UnknownChannel(channel))
    }

    /// The channel as it was opened.
    pub fn info(&self, channel: B256) -> Result<ChannelInfo, Rejected> {
        Ok(self.record(channel)?.info)
    }

    pub fn total(&self, channel: B256) -> Result<U256, Rejected> {
        Ok(self.record(channel)?.total)
    }
}

#[cfg(test)]
mod tests;
