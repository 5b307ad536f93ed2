//! Typed bindings for the contract functions, events and errors the agent
//! and the buyer use, declared with `sol!`. A test checks every signature
//! here against the ABI forge builds (contracts/out), so a contract change
//! cannot silently break them.

use alloy_sol_types::{SolError, SolInterface, sol};

// Generated constructors mirror the contracts' argument lists (permit has seven).
#[allow(clippy::too_many_arguments)]
mod generated {
    use super::sol;
    sol! {
        #[derive(Debug, PartialEq, Eq)]
        interface IEDGToken {
            function totalSupply() external view returns (uint256);
            function balanceOf(address account) external view returns (uint256);
            function transfer(address to, uint256 value) external returns (bool);
            function approve(address spender, uint256 value) external returns (bool);
            function allowance(address owner, address spender) external view returns (uint256);
            function nonces(address owner) external view returns (uint256);
            function DOMAIN_SEPARATOR() external view returns (bytes32);
            function permit(address owner, address spender, uint256 value, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
            event Transfer(address indexed from, address indexed to, uint256 value);
            error ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed);
            error ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed);
            error ERC2612ExpiredSignature(uint256 deadline);
            error ERC2612InvalidSigner(address signer, address owner);
        }

        #[derive(Debug, PartialEq, Eq)]
        interface IRegistry {
            struct Advert {
                uint96 pricePerSecond;
                uint40 expiry;
                uint64 advertisedAt;
                uint32 listPosition;
                bytes32 capabilitiesHash;
            }
            function BINDING_TYPEHASH() external view returns (bytes32);
            function registerGateway(address gateway, uint256 deadline, bytes signature) external;
            function transferGateway(address gateway, address to) external;
            function acceptGateway(address gateway) external;
            function revokeGateway(address gateway) external;
            function advertise(address gateway, string endpoint, bytes32 capabilitiesHash, string capabilitiesURI, uint96 pricePerSecond, uint40 expiry) external;
            function renew(address gateway, uint40 expiry) external;
            function withdraw(address gateway) external;
            function operatorOf(address gateway) external view returns (address);
            function revoked(address gateway) external view returns (bool);
            function bindingNonce(address gateway) external view returns (uint256);
            function advertOf(address gateway) external view returns (Advert memory);
            function isLive(address gateway) external view returns (bool);
            function advertCount() external view returns (uint256);
            function liveAdverts(uint256 offset, uint256 limit) external view returns (address[] memory gateways, Advert[] memory adverts);
            function advertFee() external view returns (uint256);
            function domainSeparator() external view returns (bytes32);
            event GatewayRegistered(address indexed gateway, address indexed operator);
            event GatewayRevoked(address indexed gateway, address indexed operator);
            event GatewayTransferred(address indexed gateway, address indexed from, address indexed to);
            event Advertised(address indexed gateway, address indexed operator, string endpoint, bytes32 capabilitiesHash, string capabilitiesURI, uint96 pricePerSecond, uint40 expiry, uint256 fee);
            event AdvertRenewed(address indexed gateway, uint40 expiry, uint256 fee);
            event AdvertWithdrawn(address indexed gateway);
            error ZeroAddress();
            error AlreadyRegistered(address gateway);
            error Revoked(address gateway);
            error NotRegistered(address gateway);
            error NotOperator(address gateway, address caller);
            error NotPendingOperator(address gateway, address caller);
            error NotGatewayOrOperator(address gateway, address caller);
            error SignatureExpired(uint256 deadline);
            error BadGatewaySignature(address gateway, address signer);
            error BadExpiry(uint256 expiry);
            error BadText(uint256 length);
            error ZeroPrice();
            error NoAdvert(address gateway);
            error FeeTooHigh(uint256 fee, uint256 max);
        }

        #[derive(Debug, PartialEq, Eq)]
        interface IMarket {
            struct Offer {
                address buyer;
                address gateway;
                uint32 cpuMillicores;
                uint64 memoryBytes;
                uint64 diskBytes;
                string[] devices;
                uint96 pricePerSecond;
                uint32 maxDuration;
                uint32 paymentInterval;
                string image;
                uint40 expiry;
                uint64 nonce;
            }
            struct Lease {
                address buyer;
                uint40 offerExpiry;
                uint40 start;
                uint8 state;
                uint8 flags;
                address gateway;
                uint96 fee;
                uint40 end;
                uint96 buyerReported;
                uint96 sellerReported;
            }
            function proposeOffer(Offer offer) external returns (bytes32 offerHash);
            function acceptOffer(bytes32 offerHash) external;
            function depositFee(bytes32 leaseId) external;
            function depositFeeWithPermit(bytes32 leaseId, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external;
            function cancel(bytes32 leaseId) external;
            function terminate(bytes32 leaseId, uint96 reportedPaid) external;
            function finalize(bytes32 leaseId) external;
            function leaseOf(bytes32 leaseId) external view returns (Lease memory);
            function hashOffer(Offer offer) external view returns (bytes32);
            function leaseFee() external view returns (uint256);
            function TERMINATION_TIMEOUT() external view returns (uint256);
            function FUNDING_WINDOW() external view returns (uint256);
            function domainSeparator() external view returns (bytes32);
            event OfferProposed(bytes32 indexed leaseId, address indexed buyer, address indexed gateway, uint40 expiry);
            event OfferAccepted(bytes32 indexed leaseId, address indexed buyer, address indexed gateway);
            event FeeDeposited(bytes32 indexed leaseId, uint256 fee);
            event LeaseStarted(bytes32 indexed leaseId, uint40 start);
            event OfferCancelled(bytes32 indexed leaseId, address indexed by, uint256 refund);
            event Terminated(bytes32 indexed leaseId, address indexed by, uint96 reportedPaid);
            event Invoice(bytes32 indexed leaseId, address indexed buyer, address indexed seller, uint40 start, uint40 end, uint96 buyerReported, uint96 sellerReported, uint96 fee, uint8 flags);
            error OfferExists(bytes32 leaseId);
            error NotRegistered(address gateway);
            error BadExpiry(uint256 expiry);
            error OfferExpired(bytes32 leaseId, uint256 expiry);
            error WrongState(bytes32 leaseId, uint8 state);
            error NotBuyer(bytes32 leaseId, address caller);
            error NotGateway(bytes32 leaseId, address caller);
            error NotParty(bytes32 leaseId, address caller);
            error AlreadyFunded(bytes32 leaseId);
            error AlreadyTerminated(bytes32 leaseId, address caller);
            error TooEarly(bytes32 leaseId, uint256 notBefore);
        }

        #[derive(Debug, PartialEq, Eq)]
        interface IChannelManager {
            struct Channel {
                address sender;
                uint96 deposit;
                address receiver;
                uint96 claimed;
                uint96 closingBalance;
                uint40 settleAfter;
            }
            function open(address receiver, uint96 deposit) external returns (bytes32 channelId);
            function openWithPermit(address receiver, uint96 deposit, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external returns (bytes32);
            function topUp(bytes32 channelId, uint96 amount) external;
            function startClose(bytes32 channelId, uint96 balance) external;
            function settle(bytes32 channelId) external;
            function claim(bytes32 channelId, uint256 amount, bytes32 leaseId, bytes signature) external;
            function close(bytes32 channelId, uint256 amount, bytes32 leaseId, bytes signature) external;
            function channelOf(bytes32 channelId) external view returns (Channel memory);
            function balanceProofDigest(bytes32 channelId, uint256 amount, bytes32 leaseId) external view returns (bytes32);
            function challengePeriod() external view returns (uint256);
            function domainSeparator() external view returns (bytes32);
            event ChannelOpened(bytes32 indexed channelId, address indexed sender, address indexed receiver, uint96 deposit);
            event ChannelToppedUp(bytes32 indexed channelId, uint96 added, uint96 deposit);
            event ChannelClaimed(bytes32 indexed channelId, bytes32 indexed leaseId, uint96 amount, uint96 paid);
            event ChannelCloseRequested(bytes32 indexed channelId, uint96 balance, uint40 settleAfter);
            event ChannelClosed(bytes32 indexed channelId, uint96 paidToReceiver, uint96 refundedToSender);
            error NoChannel(bytes32 channelId);
            error NotSender(bytes32 channelId, address caller);
            error NotReceiver(bytes32 channelId, address caller);
            error BadSignature(bytes32 channelId, address signer);
            error OverDeposit(bytes32 channelId, uint256 amount, uint96 deposit);
            error StaleProof(bytes32 channelId, uint256 amount, uint96 claimed);
            error Closing(bytes32 channelId);
            error NotClosing(bytes32 channelId);
            error TooEarly(bytes32 channelId, uint40 settleAfter);
        }

        #[derive(Debug, PartialEq, Eq)]
        interface IAgentControl {
            function post(address gateway, bytes command) external returns (uint64 seq);
            function report(uint64 seq, uint8 outcome, uint64 configVersion, uint256 commandBlock, bytes32 commandBlockHash, string agent, string detail) external;
            function sequence(address gateway) external view returns (uint64);
            function reported(address gateway) external view returns (uint64);
            event Command(address indexed gateway, uint64 indexed seq, address indexed operator, bytes command);
            event Reported(address indexed gateway, uint64 indexed seq, uint8 outcome, uint64 configVersion, bytes32 commandBlockHash, string agent, string detail);
            error NotOperator(address gateway, address caller);
            error BadCommand(uint256 length);
            error OutOfOrder(address gateway, uint64 seq, uint64 expected, uint64 posted);
            error NoOutcome();
            error TextTooLong(uint256 length, uint256 max);
            error NotThatBlock(uint256 number, bytes32 claimed, bytes32 actual);
        }

        error Error(string message);
        error Panic(uint256 code);
    }
}
pub use generated::*;

/// A revert's data as a person can read it: `Error(string)`'s message, a
/// panic code, or one of our contracts' custom errors with its arguments.
pub(crate) fn decode_revert(data: &[u8]) -> String {
    if data.is_empty() {
        return "no reason given".into();
    }
    if let Ok(e) = Error::abi_decode(data) {
        return e.message;
    }
    if let Ok(p) = Panic::abi_decode(data) {
        return format!("panic 0x{:x}", p.code);
    }
    macro_rules! try_errors {
        ($($errors:ty),*) => {$(
            if let Ok(e) = <$errors>::abi_decode(data) {
                return format!("{e:?}");
            }
        )*};
    }
    try_errors!(
        IMarket::IMarketErrors,
        IChannelManager::IChannelManagerErrors,
        IRegistry::IRegistryErrors,
        IAgentControl::IAgentControlErrors,
        IEDGToken::IEDGTokenErrors
    );
    format!("unknown error 0x{}", alloy_primitives::hex::encode(data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;
    use alloy_sol_types::SolCall;
    use std::collections::BTreeSet;

    /// Signatures of every function, event and error in forge's ABI output.
    fn built_abi(contract: &str) -> BTreeSet<String> {
        let path = format!(
            "{}/contracts/out/{contract}.sol/{contract}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{path}: {e}; build the contracts first (cd contracts && npm ci && npm run build)"
            )
        });
        let artifact: serde_json::Value = serde_json::from_str(&text).unwrap();
        let abi: alloy_json_abi::JsonAbi = serde_json::from_value(artifact["abi"].clone()).unwrap();
        let mut sigs = BTreeSet::new();
        sigs.extend(abi.functions().map(|f| f.signature()));
        sigs.extend(abi.events().map(|e| e.signature()));
        sigs.extend(abi.errors().map(|e| e.signature()));
        sigs
    }

    fn assert_subset(contract: &str, ours: &[&str]) {
        let built = built_abi(contract);
        for sig in ours {
            assert!(
                built.contains(*sig),
                "{contract}: binding `{sig}` is not in the built ABI"
            );
        }
    }

    #[test]
    fn bindings_match_the_built_contracts() {
        let all = |calls: &[&'static str], events: &[&'static str], errors: &[&'static str]| {
            [calls, events, errors].concat()
        };
        assert_subset(
            "EDGToken",
            &all(
                IEDGToken::IEDGTokenCalls::SIGNATURES,
                IEDGToken::IEDGTokenEvents::SIGNATURES,
                IEDGToken::IEDGTokenErrors::SIGNATURES,
            ),
        );
        assert_subset(
            "Registry",
            &all(
                IRegistry::IRegistryCalls::SIGNATURES,
                IRegistry::IRegistryEvents::SIGNATURES,
                IRegistry::IRegistryErrors::SIGNATURES,
            ),
        );
        assert_subset(
            "Market",
            &all(
                IMarket::IMarketCalls::SIGNATURES,
                IMarket::IMarketEvents::SIGNATURES,
                IMarket::IMarketErrors::SIGNATURES,
            ),
        );
        assert_subset(
            "ChannelManager",
            &all(
                IChannelManager::IChannelManagerCalls::SIGNATURES,
                IChannelManager::IChannelManagerEvents::SIGNATURES,
                IChannelManager::IChannelManagerErrors::SIGNATURES,
            ),
        );
        assert_subset(
            "AgentControl",
            &all(
                IAgentControl::IAgentControlCalls::SIGNATURES,
                IAgentControl::IAgentControlEvents::SIGNATURES,
                IAgentControl::IAgentControlErrors::SIGNATURES,
            ),
        );
    }

    /// "Lease(address buyer,uint40 start)" -> "(address,uint40)"
    fn shape(root_type: &str) -> String {
        let fields = root_type.split_once('(').unwrap().1.trim_end_matches(')');
        let types: Vec<&str> = fields
            .split(',')
            .map(|f| f.split(' ').next().unwrap())
            .collect();
        format!("({})", types.join(","))
    }

    #[test]
    fn struct_shapes_match_the_built_abi() {
        use alloy_sol_types::SolStruct;
        let cases = [
            (
                "Market",
                "leaseOf",
                shape(&IMarket::Lease::eip712_root_type()),
            ),
            (
                "Registry",
                "advertOf",
                shape(&IRegistry::Advert::eip712_root_type()),
            ),
            (
                "ChannelManager",
                "channelOf",
                shape(&IChannelManager::Channel::eip712_root_type()),
            ),
        ];
        for (contract, function, ours) in cases {
            let path = format!(
                "{}/contracts/out/{contract}.sol/{contract}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            let artifact: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let abi: alloy_json_abi::JsonAbi =
                serde_json::from_value(artifact["abi"].clone()).unwrap();
            let f = &abi.function(function).unwrap()[0];
            assert_eq!(
                f.outputs[0].selector_type(),
                ours,
                "{contract}.{function} return struct"
            );
        }
        let hash_offer = IMarket::hashOfferCall::SIGNATURE;
        assert!(
            hash_offer.contains(&shape(&IMarket::Offer::eip712_root_type())),
            "{hash_offer}"
        );
    }

    #[test]
    fn reverts_decode_to_names() {
        let err = IMarket::WrongState {
            leaseId: B256::repeat_byte(1),
            state: 5,
        };
        let text = decode_revert(&SolError::abi_encode(&err));
        assert!(text.contains("WrongState"), "{text}");
        assert_eq!(
            decode_revert(
                &Error {
                    message: "boom".into()
                }
                .abi_encode()
            ),
            "boom"
        );
        assert_eq!(decode_revert(&[]), "no reason given");
        assert!(decode_revert(&[1, 2, 3, 4]).starts_with("unknown error 0x01020304"));
    }
}
