//! EIP-712 typed data, byte-identical to the contracts' hashing: the offer
//! (Market), the balance proof (ChannelManager) and the gateway binding
//! (Registry). Domains bind every signature to chain id and contract.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::{Eip712Domain, SolStruct, sol};

pub use super::bindings::IMarket::Offer;

sol! {
    /// A cumulative payment on a channel, for one lease.
    #[derive(Debug, PartialEq, Eq)]
    struct BalanceProof {
        bytes32 channelId;
        uint256 amount;
        bytes32 leaseId;
    }

    /// A gateway's consent to be bound to an operator.
    #[derive(Debug, PartialEq, Eq)]
    struct GatewayBinding {
        address gateway;
        address operator;
        uint256 nonce;
        uint256 deadline;
    }
}

fn domain(name: &'static str, chain_id: u64, contract: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(name.into()),
        Some("1".into()),
        Some(U256::from(chain_id)),
        Some(contract),
        None,
    )
}

pub fn market_domain(chain_id: u64, market: Address) -> Eip712Domain {
    domain("dEdge Market", chain_id, market)
}

pub fn channels_domain(chain_id: u64, channels: Address) -> Eip712Domain {
    domain("dEdge Channels", chain_id, channels)
}

pub fn registry_domain(chain_id: u64, registry: Address) -> Eip712Domain {
    domain("dEdge Registry", chain_id, registry)
}

/// The lease id: the digest the buyer signs and both parties write on chain.
pub fn offer_hash(offer: &Offer, domain: &Eip712Domain) -> B256 {
    offer.eip712_signing_hash(domain)
}

pub fn balance_proof_digest(
    channel: B256,
    amount: U256,
    lease: B256,
    domain: &Eip712Domain,
) -> B256 {
    BalanceProof {
        channelId: channel,
        amount,
        leaseId: lease,
    }
    .eip712_signing_hash(domain)
}

pub fn binding_digest(
    gateway: Address,
    operator: Address,
    nonce: U256,
    deadline: U256,
    domain: &Eip712Domain,
) -> B256 {
    GatewayBinding {
        gateway,
        operator,
        nonce,
        deadline,
    }
    .eip712_signing_hash(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, keccak256};

    #[test]
    fn type_strings_match_the_contracts() {
        // The contracts' typehash constants, as written in Solidity.
        assert_eq!(
            BalanceProof::eip712_type_hash(&BalanceProof {
                channelId: B256::ZERO,
                amount: U256::ZERO,
                leaseId: B256::ZERO
            }),
            keccak256("BalanceProof(bytes32 channelId,uint256 amount,bytes32 leaseId)")
        );
        assert_eq!(
            Offer::eip712_root_type(),
            "Offer(address buyer,address gateway,uint32 cpuMillicores,uint64 memoryBytes,uint64 diskBytes,string[] devices,uint96 pricePerSecond,uint32 maxDuration,uint32 paymentInterval,string image,uint40 expiry,uint64 nonce)"
        );
        assert_eq!(
            GatewayBinding::eip712_root_type(),
            "GatewayBinding(address gateway,address operator,uint256 nonce,uint256 deadline)"
        );
    }

    #[test]
    fn domains_separate_chains_and_contracts() {
        let c = address!("Cf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9");
        let d1 = balance_proof_digest(
            B256::ZERO,
            U256::from(1),
            B256::ZERO,
            &channels_domain(1, c),
        );
        let d2 = balance_proof_digest(
            B256::ZERO,
            U256::from(1),
            B256::ZERO,
            &channels_domain(2, c),
        );
        let d3 = balance_proof_digest(
            B256::ZERO,
            U256::from(1),
            B256::ZERO,
            &channels_domain(1, Address::ZERO),
        );
        assert!(d1 != d2 && d1 != d3 && d2 != d3);
    }
}
