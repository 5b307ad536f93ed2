// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {Registry} from "./Registry.sol";

/// @title dEdge market: offers, leases, fee escrow, termination, invoices
/// @notice The paper's contract steps. The buyer writes its offer on chain
/// (the lease is keyed by the offer's EIP-712 hash); the gateway accepts the same hash and the two are *in contract*;
/// the buyer escrows the platform fee (`dedge_fee`), and only then is the
/// lease valid; at the end both call `termination` and the contract emits the
/// invoice and moves the fee to the treasury, once.
///
/// The offer (resources, price, duration, image) is EIP-712 data the buyer
/// signs and sends the gateway; on chain it is hashed, never stored: the
/// chain keeps its hash, so a lease costs O(1) transactions and storage
/// however many payments flow through its channel.
///
/// Fee rule: a flat `leaseFee` per lease, snapshotted when deposited, owner-
/// settable up to MAX_LEASE_FEE. Reported amounts: each side reports what
/// the channel paid; the contract does not arbitrate (the signed balance
/// proofs in ChannelManager are what moves money). The invoice carries both
/// figures; `disputed` in the flags marks a mismatch for off-chain follow-up,
/// and neither figure changes the fee.
contract Market is Ownable2Step, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;

    /// What a buyer offers a gateway, signed off chain as EIP-712 typed data
    /// under this contract's domain; its digest (`hashOffer`) is the offer
    /// hash both parties write on chain.
    struct Offer {
        address buyer;
        address gateway;
        uint32 cpuMillicores;
        uint64 memoryBytes;
        uint64 diskBytes;
        /// EdgeX grants, each "device:command:r" or "device:command:rw".
        string[] devices;
        uint96 pricePerSecond;
        uint32 maxDuration;
        uint32 paymentInterval;
        /// Image reference: the CID of the OCI image.
        string image;
        uint40 expiry;
        uint64 nonce;
    }

    bytes32 public constant OFFER_TYPEHASH = keccak256(
        "Offer(address buyer,address gateway,uint32 cpuMillicores,uint64 memoryBytes,uint64 diskBytes,string[] devices,uint96 pricePerSecond,uint32 maxDuration,uint32 paymentInterval,string image,uint40 expiry,uint64 nonce)"
    );

    enum State {
        None,
        Proposed,
        Accepted,
        Active,
        Terminating,
        Settled,
        Cancelled
    }

    /// Flag bits of Lease.flags and of the Invoice event.
    uint8 public constant FUNDED = 1;
    uint8 public constant BUYER_TERMINATED = 2;
    uint8 public constant SELLER_TERMINATED = 4;
    uint8 public constant DISPUTED = 8;

    uint256 public constant MAX_LEASE_FEE = 1_000 ether;
    /// A gateway may drop an accepted offer the buyer has not funded after this.
    uint256 public constant FUNDING_WINDOW = 1 hours;
    /// After one side terminates, anyone may settle once this has passed.
    uint256 public constant TERMINATION_TIMEOUT = 1 days;

    struct Lease {
        // slot 0
        address buyer;
        uint40 offerExpiry;
        /// Acceptance time until funded, then the lease start.
        uint40 start;
        State state;
        uint8 flags;
        // slot 1
        address gateway;
        uint96 fee;
        // slot 2, written at the first termination
        uint40 end;
        uint96 buyerReported;
        uint96 sellerReported;
    }

    IERC20 public immutable token;
    Registry public immutable registry;
    address public treasury;
    uint256 public leaseFee;

    mapping(bytes32 leaseId => Lease) private _leases;

    event OfferProposed(bytes32 indexed leaseId, address indexed buyer, address indexed gateway, uint40 expiry);
    event OfferAccepted(bytes32 indexed leaseId, address indexed buyer, address indexed gateway);
    event FeeDeposited(bytes32 indexed leaseId, uint256 fee);
    event LeaseStarted(bytes32 indexed leaseId, uint40 start);
    event OfferCancelled(bytes32 indexed leaseId, address indexed by, uint256 refund);
    event Terminated(bytes32 indexed leaseId, address indexed by, uint96 reportedPaid);
    event Invoice(
        bytes32 indexed leaseId,
        address indexed buyer,
        address indexed seller,
        uint40 start,
        uint40 end,
        uint96 buyerReported,
        uint96 sellerReported,
        uint96 fee,
        uint8 flags
    );
    event LeaseFeeChanged(uint256 fee);
    event TreasuryChanged(address treasury);

    error ZeroAddress();
    error OfferExists(bytes32 leaseId);
    error NotRegistered(address gateway);
    error BadExpiry(uint256 expiry);
    error OfferExpired(bytes32 leaseId, uint256 expiry);
    error WrongState(bytes32 leaseId, State state);
    error NotBuyer(bytes32 leaseId, address caller);
    error NotGateway(bytes32 leaseId, address caller);
    error NotParty(bytes32 leaseId, address caller);
    error AlreadyFunded(bytes32 leaseId);
    error AlreadyTerminated(bytes32 leaseId, address caller);
    error TooEarly(bytes32 leaseId, uint256 notBefore);
    error FeeTooHigh(uint256 fee, uint256 max);

    constructor(IERC20 token_, Registry registry_, address treasury_, uint256 leaseFee_, address owner_)
        Ownable(owner_)
        EIP712("dEdge Market", "1")
    {
        if (address(token_) == address(0) || address(registry_) == address(0) || treasury_ == address(0)) {
            revert ZeroAddress();
        }
        if (leaseFee_ > MAX_LEASE_FEE) revert FeeTooHigh(leaseFee_, MAX_LEASE_FEE);
        token = token_;
        registry = registry_;
        treasury = treasury_;
        leaseFee = leaseFee_;
    }

    /// @notice The buyer writes its offer on chain; the lease is keyed by the
    /// offer's EIP-712 hash. The hash is computed here from the offer, which
    /// names the buyer: nobody else can take a buyer's lease id first.
    function proposeOffer(Offer calldata offer) external returns (bytes32 offerHash) {
        if (offer.buyer != msg.sender) revert NotBuyer(bytes32(0), msg.sender);
        offerHash = _hashOffer(offer);
        Lease storage l = _leases[offerHash];
        if (l.state != State.None) revert OfferExists(offerHash);
        if (registry.operatorOf(offer.gateway) == address(0)) revert NotRegistered(offer.gateway);
        if (offer.expiry <= block.timestamp) revert BadExpiry(offer.expiry);
        l.buyer = msg.sender;
        l.offerExpiry = offer.expiry;
        l.state = State.Proposed;
        l.gateway = offer.gateway;
        emit OfferProposed(offerHash, msg.sender, offer.gateway, offer.expiry);
    }

    /// @notice The gateway writes the same hash: buyer and seller are in
    /// contract. The lease starts now if the fee is already escrowed.
    function acceptOffer(bytes32 offerHash) external {
        Lease storage l = _leases[offerHash];
        if (l.state != State.Proposed) revert WrongState(offerHash, l.state);
        if (msg.sender != l.gateway) revert NotGateway(offerHash, msg.sender);
        if (block.timestamp > l.offerExpiry) revert OfferExpired(offerHash, l.offerExpiry);
        if (registry.operatorOf(msg.sender) == address(0)) revert NotRegistered(msg.sender);
        l.start = uint40(block.timestamp);
        emit OfferAccepted(offerHash, l.buyer, msg.sender);
        if (l.flags & FUNDED != 0) {
            l.state = State.Active;
            emit LeaseStarted(offerHash, l.start);
        } else {
            l.state = State.Accepted;
        }
    }

    /// @notice `dedge_fee`: the buyer escrows the lease fee (before or after
    /// acceptance); an accepted lease becomes valid with it.
    function depositFee(bytes32 leaseId) public nonReentrant {
        Lease storage l = _leases[leaseId];
        if (msg.sender != l.buyer) revert NotBuyer(leaseId, msg.sender);
        if (l.state != State.Proposed && l.state != State.Accepted) revert WrongState(leaseId, l.state);
        if (l.flags & FUNDED != 0) revert AlreadyFunded(leaseId);
        // forge-lint: disable-next-line(unsafe-typecast) leaseFee <= MAX_LEASE_FEE < 2^96
        uint96 fee = uint96(leaseFee);
        l.fee = fee;
        l.flags |= FUNDED;
        if (l.state == State.Accepted) {
            l.state = State.Active;
            l.start = uint40(block.timestamp);
            emit LeaseStarted(leaseId, l.start);
        }
        emit FeeDeposited(leaseId, fee);
        if (fee != 0) token.safeTransferFrom(msg.sender, address(this), fee);
    }

    /// @notice `depositFee` with an EIP-2612 permit, in one transaction. A
    /// permit already used (front-run) is fine if the allowance is there.
    function depositFeeWithPermit(bytes32 leaseId, uint256 deadline, uint8 v, bytes32 r, bytes32 s) external {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), leaseFee, deadline, v, r, s) {} catch {}
        depositFee(leaseId);
    }

    /// @notice Withdraws an offer that never became a lease. The buyer may
    /// cancel a proposed or an accepted-but-unfunded offer at any time; the
    /// gateway may drop an accepted offer left unfunded past FUNDING_WINDOW.
    /// An escrowed fee goes back to the buyer.
    function cancel(bytes32 leaseId) external nonReentrant {
        Lease storage l = _leases[leaseId];
        if (l.state == State.Proposed) {
            if (msg.sender != l.buyer) revert NotBuyer(leaseId, msg.sender);
        } else if (l.state == State.Accepted) {
            if (msg.sender != l.buyer) {
                if (msg.sender != l.gateway) revert NotParty(leaseId, msg.sender);
                uint256 notBefore = uint256(l.start) + FUNDING_WINDOW;
                if (block.timestamp < notBefore) revert TooEarly(leaseId, notBefore);
            }
        } else {
            revert WrongState(leaseId, l.state);
        }
        uint96 refund = l.fee;
        l.fee = 0;
        l.state = State.Cancelled;
        emit OfferCancelled(leaseId, msg.sender, refund);
        if (refund != 0) token.safeTransfer(l.buyer, refund);
    }

    /// @notice `termination`: each party ends the lease once, reporting what
    /// the payment channel paid for it. The second call settles; if the other
    /// side never calls, anyone may `finalize` after TERMINATION_TIMEOUT.
    /// The seller side is the gateway key or, if the gateway is gone, its
    /// current operator.
    function terminate(bytes32 leaseId, uint96 reportedPaid) external nonReentrant {
        Lease storage l = _leases[leaseId];
        if (l.state != State.Active && l.state != State.Terminating) revert WrongState(leaseId, l.state);
        uint8 side;
        if (msg.sender == l.buyer) {
            side = BUYER_TERMINATED;
        } else if (msg.sender == l.gateway || msg.sender == registry.operatorOf(l.gateway)) {
            side = SELLER_TERMINATED;
        } else {
            revert NotParty(leaseId, msg.sender);
        }
        if (l.flags & side != 0) revert AlreadyTerminated(leaseId, msg.sender);
        l.flags |= side;
        if (side == BUYER_TERMINATED) l.buyerReported = reportedPaid;
        else l.sellerReported = reportedPaid;
        emit Terminated(leaseId, msg.sender, reportedPaid);
        if (l.state == State.Active) {
            l.state = State.Terminating;
            l.end = uint40(block.timestamp);
        } else {
            _settle(leaseId, l);
        }
    }

    /// @notice Settles a lease one side terminated and the other abandoned.
    function finalize(bytes32 leaseId) external nonReentrant {
        Lease storage l = _leases[leaseId];
        if (l.state != State.Terminating) revert WrongState(leaseId, l.state);
        uint256 notBefore = uint256(l.end) + TERMINATION_TIMEOUT;
        if (block.timestamp < notBefore) revert TooEarly(leaseId, notBefore);
        _settle(leaseId, l);
    }

    function setLeaseFee(uint256 fee) external onlyOwner {
        if (fee > MAX_LEASE_FEE) revert FeeTooHigh(fee, MAX_LEASE_FEE);
        leaseFee = fee;
        emit LeaseFeeChanged(fee);
    }

    function setTreasury(address treasury_) external onlyOwner {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    function leaseOf(bytes32 leaseId) external view returns (Lease memory) {
        return _leases[leaseId];
    }

    /// @notice The EIP-712 digest of an offer: the lease id both parties use.
    function hashOffer(Offer calldata o) external view returns (bytes32) {
        return _hashOffer(o);
    }

    function _hashOffer(Offer calldata o) private view returns (bytes32) {
        bytes32[] memory deviceHashes = new bytes32[](o.devices.length);
        for (uint256 i; i < o.devices.length; ++i) {
            deviceHashes[i] = keccak256(bytes(o.devices[i]));
        }
        // Two halves: every encoded member is one word, so concatenating is
        // the same as one abi.encode, without a too-deep stack.
        bytes memory head = abi.encode(OFFER_TYPEHASH, o.buyer, o.gateway, o.cpuMillicores, o.memoryBytes, o.diskBytes);
        bytes memory tail = abi.encode(
            keccak256(abi.encodePacked(deviceHashes)),
            o.pricePerSecond,
            o.maxDuration,
            o.paymentInterval,
            keccak256(bytes(o.image)),
            o.expiry,
            o.nonce
        );
        return _hashTypedDataV4(keccak256(bytes.concat(head, tail)));
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// Moves the escrowed fee to the treasury and emits the invoice. Reached
    /// only from Terminating, which it leaves for good: the fee moves once.
    function _settle(bytes32 leaseId, Lease storage l) private {
        uint8 flags = l.flags;
        bool both = flags & (BUYER_TERMINATED | SELLER_TERMINATED) == (BUYER_TERMINATED | SELLER_TERMINATED);
        if (both && l.buyerReported != l.sellerReported) flags |= DISPUTED;
        l.flags = flags;
        l.state = State.Settled;
        uint96 fee = l.fee;
        emit Invoice(leaseId, l.buyer, l.gateway, l.start, l.end, l.buyerReported, l.sellerReported, fee, flags);
        if (fee != 0) token.safeTransfer(treasury, fee);
    }
}
