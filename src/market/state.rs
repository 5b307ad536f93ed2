//! The Market contract's vocabulary as Rust types: a lease's id, its
//! on-chain state (the contract's `enum State`, in the contract's order;
//! a test reads `contracts/src/Market.sol` to keep them equal), its flag
//! bits, and the time rules the contract fixes.

use std::fmt;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

/// A lease: the EIP-712 digest of the buyer's offer, which the Market also
/// uses as the lease's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(pub [u8; 32]);

impl LeaseId {
    pub fn b256(self) -> B256 {
        B256::from(self.0)
    }
}

impl From<B256> for LeaseId {
    fn from(b: B256) -> Self {
        LeaseId(b.0)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", alloy_primitives::hex::encode(self.0))
    }
}

/// `Market.State`, in the contract's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MarketState {
    None,
    Proposed,
    Accepted,
    Active,
    Terminating,
    Settled,
    Cancelled,
}

impl MarketState {
    const ALL: [MarketState; 7] = [
        MarketState::None,
        MarketState::Proposed,
        MarketState::Accepted,
        MarketState::Active,
        MarketState::Terminating,
        MarketState::Settled,
        MarketState::Cancelled,
    ];

    /// The contract's name for the state, lower-cased (what the CLI shows).
    pub fn name(self) -> &'static str {
        match self {
            MarketState::None => "none",
            MarketState::Proposed => "proposed",
            MarketState::Accepted => "accepted",
            MarketState::Active => "active",
            MarketState::Terminating => "terminating",
            MarketState::Settled => "settled",
            MarketState::Cancelled => "cancelled",
        }
    }
}

impl TryFrom<u8> for MarketState {
    type Error = u8;
    /// A value past the contract's enum is the RPC node's or the ABI's
    /// fault; it is refused, never read as some state.
    fn try_from(v: u8) -> Result<Self, u8> {
        MarketState::ALL.get(usize::from(v)).copied().ok_or(v)
    }
}

impl fmt::Display for MarketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `Lease.flags` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags(pub(crate) u8);

impl Flags {
    const FUNDED: u8 = 1;
    const BUYER_TERMINATED: u8 = 2;
    const SELLER_TERMINATED: u8 = 4;
    pub const DISPUTED: u8 = 8;

    pub fn funded(self) -> bool {
        self.0 & Self::FUNDED != 0
    }
    pub(crate) fn buyer_terminated(self) -> bool {
        self.0 & Self::BUYER_TERMINATED != 0
    }
    pub(crate) fn seller_terminated(self) -> bool {
        self.0 & Self::SELLER_TERMINATED != 0
    }
    pub fn disputed(self) -> bool {
        self.0 & Self::DISPUTED != 0
    }
}

/// The contract's time rules, read from the deployed contract (a market
/// deployed with other constants is followed, not second-guessed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// `TERMINATION_TIMEOUT`: after one side terminates, anyone may
    /// finalize once this many seconds of block time have passed.
    pub(crate) termination_timeout: u64,
    /// `FUNDING_WINDOW`: a gateway may cancel an accepted offer left
    /// unfunded this long.
    pub(crate) funding_window: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_states_are_the_contracts_enum_in_its_order() {
        let src = include_str!("../../contracts/src/Market.sol");
        let start = src
            .find("enum State {")
            .expect("Market.sol declares enum State");
        let body = &src[start + "enum State {".len()..];
        let body = &body[..body.find('}').expect("enum State ends")];
        let names: Vec<String> = body
            .split(',')
            .map(|s| s.trim().to_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        let ours: Vec<&str> = MarketState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names, ours);
        for (i, s) in MarketState::ALL.iter().enumerate() {
            assert_eq!(MarketState::try_from(i as u8), Ok(*s));
        }
        assert_eq!(MarketState::try_from(7), Err(7));
    }

    #[test]
    fn the_flags_are_the_contracts() {
        let src = include_str!("../../contracts/src/Market.sol");
        for (name, bit) in [
            ("FUNDED", Flags::FUNDED),
            ("BUYER_TERMINATED", Flags::BUYER_TERMINATED),
            ("SELLER_TERMINATED", Flags::SELLER_TERMINATED),
            ("DISPUTED", Flags::DISPUTED),
        ] {
            let decl = format!("uint8 public constant {name} = {bit};");
            assert!(src.contains(&decl), "Market.sol lacks `{decl}`");
        }
    }
}
