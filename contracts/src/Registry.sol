// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title dEdge registry: operators, their gateways, and gateways' adverts
/// @notice `dedge_advertise` of the paper. An operator binds gateway keys it
/// controls (the gateway signs its consent), and a gateway or its operator
/// advertises the gateway's endpoint, capabilities and price for an EDG fee
/// paid to the treasury (anti-spam). Endpoint and capability URI live in the
/// `Advertised` event; storage keeps what a buyer filters on, so one view call
/// lists every live advert.
contract Registry is Ownable2Step, EIP712 {
    using SafeERC20 for IERC20;

    /// The gateway's consent to be bound to `operator`.
    bytes32 public constant BINDING_TYPEHASH =
        keccak256("GatewayBinding(address gateway,address operator,uint256 nonce,uint256 deadline)");
    uint256 public constant MAX_ADVERT_FEE = 1_000 ether;
    uint256 public constant MAX_ADVERT_TTL = 90 days;
    uint256 public constant MAX_TEXT = 256;
    /// Room for the capability document inline as a `data:` URI.
    uint256 public constant MAX_URI = 4096;

    struct Gateway {
        address operator;
        /// Bumped at every binding so a consent signature is good once.
        uint96 bindingNonce;
    }

    struct Advert {
        uint96 pricePerSecond;
        uint40 expiry;
        /// Block of the `Advertised` event holding endpoint and capability URI.
        uint64 advertisedAt;
        /// Position in the advert list plus one (0: not listed). Packed here
        /// rather than in a separate set's index mapping: one slot less per advert.
        uint32 listPosition;
        bytes32 capabilitiesHash;
    }

    IERC20 public immutable token;
    address public treasury;
    uint256 public advertFee;

    mapping(address gateway => Gateway) private _gateways;
    mapping(address gateway => address) public pendingOperator;
    /// Revoked gateway keys stay revoked: a leaked key cannot be bound again.
    mapping(address gateway => bool) public revoked;
    mapping(address gateway => Advert) private _adverts;
    /// Gateways with an advert, live or expired-but-unpruned: the list the
    /// `liveAdverts` view pages through.
    address[] private _advertised;

    event GatewayRegistered(address indexed gateway, address indexed operator);
    event GatewayTransferStarted(address indexed gateway, address indexed from, address indexed to);
    event GatewayTransferred(address indexed gateway, address indexed from, address indexed to);
    event GatewayRevoked(address indexed gateway, address indexed operator);
    event Advertised(
        address indexed gateway,
        address indexed operator,
        string endpoint,
        bytes32 capabilitiesHash,
        string capabilitiesURI,
        uint96 pricePerSecond,
        uint40 expiry,
        uint256 fee
    );
    event AdvertRenewed(address indexed gateway, uint40 expiry, uint256 fee);
    event AdvertWithdrawn(address indexed gateway);
    event AdvertFeeChanged(uint256 fee);
    event TreasuryChanged(address treasury);

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

    constructor(IERC20 token_, address treasury_, uint256 advertFee_, address owner_)
        Ownable(owner_)
        EIP712("dEdge Registry", "1")
    {
        if (address(token_) == address(0) || treasury_ == address(0)) revert ZeroAddress();
        if (advertFee_ > MAX_ADVERT_FEE) revert FeeTooHigh(advertFee_, MAX_ADVERT_FEE);
        token = token_;
        treasury = treasury_;
        advertFee = advertFee_;
    }

    // ---- operator <-> gateway binding ----

    /// @notice Binds `gateway` to the caller. `signature` is the gateway's
    /// EIP-712 `GatewayBinding` over (gateway, caller, bindingNonce, deadline).
    function registerGateway(address gateway, uint256 deadline, bytes calldata signature) external {
        Gateway storage g = _gateways[gateway];
        if (g.operator != address(0)) revert AlreadyRegistered(gateway);
        if (revoked[gateway]) revert Revoked(gateway);
        if (block.timestamp > deadline) revert SignatureExpired(deadline);
        bytes32 digest =
            _hashTypedDataV4(keccak256(abi.encode(BINDING_TYPEHASH, gateway, msg.sender, g.bindingNonce, deadline)));
        address signer = ECDSA.recover(digest, signature);
        if (signer != gateway) revert BadGatewaySignature(gateway, signer);
        g.operator = msg.sender;
        g.bindingNonce += 1;
        emit GatewayRegistered(gateway, msg.sender);
    }

    /// @notice First step of handing a gateway to another operator.
    function transferGateway(address gateway, address to) external onlyOperator(gateway) {
        if (to == address(0)) revert ZeroAddress();
        pendingOperator[gateway] = to;
        emit GatewayTransferStarted(gateway, msg.sender, to);
    }

    /// @notice Second step: the new operator takes the gateway, adverts included.
    function acceptGateway(address gateway) external {
        if (pendingOperator[gateway] != msg.sender) revert NotPendingOperator(gateway, msg.sender);
        address from = _gateways[gateway].operator;
        _gateways[gateway].operator = msg.sender;
        delete pendingOperator[gateway];
        emit GatewayTransferred(gateway, from, msg.sender);
    }

    /// @notice Unbinds a gateway for good (a retired or compromised device)
    /// and drops its advert. The key can never be registered again; a
    /// device that returns to service gets a new key.
    function revokeGateway(address gateway) external onlyOperator(gateway) {
        _gateways[gateway].operator = address(0);
        revoked[gateway] = true;
        delete pendingOperator[gateway];
        _dropAdvert(gateway);
        emit GatewayRevoked(gateway, msg.sender);
    }

    // ---- adverts (dedge_advertise) ----

    /// @notice Creates or replaces the gateway's advert; costs `advertFee`,
    /// paid by the caller to the treasury.
    function advertise(
        address gateway,
        string calldata endpoint,
        bytes32 capabilitiesHash,
        string calldata capabilitiesURI,
        uint96 pricePerSecond,
        uint40 expiry
    ) external onlyGatewayOrOperator(gateway) {
        if (bytes(endpoint).length == 0 || bytes(endpoint).length > MAX_TEXT) {
            revert BadText(bytes(endpoint).length);
        }
        if (bytes(capabilitiesURI).length > MAX_URI) revert BadText(bytes(capabilitiesURI).length);
        if (pricePerSecond == 0) revert ZeroPrice();
        _checkExpiry(expiry);
        Advert storage a = _adverts[gateway];
        a.pricePerSecond = pricePerSecond;
        a.expiry = expiry;
        a.advertisedAt = uint64(block.number);
        a.capabilitiesHash = capabilitiesHash;
        if (a.listPosition == 0) {
            _advertised.push(gateway);
            a.listPosition = uint32(_advertised.length);
        }
        uint256 fee = _chargeFee();
        emit Advertised(
            gateway,
            _gateways[gateway].operator,
            endpoint,
            capabilitiesHash,
            capabilitiesURI,
            pricePerSecond,
            expiry,
            fee
        );
    }

    /// @notice Moves a standing advert's expiry; costs `advertFee`.
    function renew(address gateway, uint40 expiry) external onlyGatewayOrOperator(gateway) {
        Advert storage a = _adverts[gateway];
        if (a.pricePerSecond == 0) revert NoAdvert(gateway);
        _checkExpiry(expiry);
        a.expiry = expiry;
        uint256 fee = _chargeFee();
        emit AdvertRenewed(gateway, expiry, fee);
    }

    /// @notice Takes the advert down. Free.
    function withdraw(address gateway) external onlyGatewayOrOperator(gateway) {
        if (_adverts[gateway].pricePerSecond == 0) revert NoAdvert(gateway);
        _dropAdvert(gateway);
    }

    /// @notice Removes expired adverts from the live list; anyone may call.
    function prune(address[] calldata gateways) external {
        for (uint256 i; i < gateways.length; ++i) {
            Advert storage a = _adverts[gateways[i]];
            if (a.pricePerSecond != 0 && a.expiry <= block.timestamp) _dropAdvert(gateways[i]);
        }
    }

    // ---- owner ----

    function setAdvertFee(uint256 fee) external onlyOwner {
        if (fee > MAX_ADVERT_FEE) revert FeeTooHigh(fee, MAX_ADVERT_FEE);
        advertFee = fee;
        emit AdvertFeeChanged(fee);
    }

    function setTreasury(address treasury_) external onlyOwner {
        if (treasury_ == address(0)) revert ZeroAddress();
        treasury = treasury_;
        emit TreasuryChanged(treasury_);
    }

    // ---- views ----

    function operatorOf(address gateway) external view returns (address) {
        return _gateways[gateway].operator;
    }

    function bindingNonce(address gateway) external view returns (uint256) {
        return _gateways[gateway].bindingNonce;
    }

    function advertOf(address gateway) external view returns (Advert memory) {
        return _adverts[gateway];
    }

    function isLive(address gateway) public view returns (bool) {
        return _adverts[gateway].expiry > block.timestamp;
    }

    /// @notice Number of adverts in the list (live or expired but not yet pruned).
    function advertCount() external view returns (uint256) {
        return _advertised.length;
    }

    /// @notice Live adverts among list entries [offset, offset + limit): page
    /// through with growing offsets; expired entries are skipped, so a page
    /// may hold fewer than `limit`.
    function liveAdverts(uint256 offset, uint256 limit)
        external
        view
        returns (address[] memory gateways, Advert[] memory adverts)
    {
        uint256 end = _advertised.length;
        if (offset > end) offset = end;
        if (limit < end - offset) end = offset + limit;
        gateways = new address[](end - offset);
        adverts = new Advert[](end - offset);
        uint256 n;
        for (uint256 i = offset; i < end; ++i) {
            address g = _advertised[i];
            if (isLive(g)) {
                gateways[n] = g;
                adverts[n] = _adverts[g];
                ++n;
            }
        }
        assembly ("memory-safe") {
            mstore(gateways, n)
            mstore(adverts, n)
        }
    }

    /// @notice The EIP-712 domain separator gateways sign bindings under.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---- internals ----

    modifier onlyOperator(address gateway) {
        if (_gateways[gateway].operator != msg.sender || msg.sender == address(0)) {
            revert NotOperator(gateway, msg.sender);
        }
        _;
    }

    modifier onlyGatewayOrOperator(address gateway) {
        address op = _gateways[gateway].operator;
        if (op == address(0)) revert NotRegistered(gateway);
        if (msg.sender != gateway && msg.sender != op) revert NotGatewayOrOperator(gateway, msg.sender);
        _;
    }

    function _checkExpiry(uint256 expiry) private view {
        if (expiry <= block.timestamp || expiry > block.timestamp + MAX_ADVERT_TTL) revert BadExpiry(expiry);
    }

    function _chargeFee() private returns (uint256 fee) {
        fee = advertFee;
        if (fee != 0) token.safeTransferFrom(msg.sender, treasury, fee);
    }

    /// Unlists by moving the last entry into the freed position.
    function _dropAdvert(address gateway) private {
        uint256 position = _adverts[gateway].listPosition;
        if (position == 0) return;
        address last = _advertised[_advertised.length - 1];
        _advertised[position - 1] = last;
        // forge-lint: disable-next-line(unsafe-typecast) position came from a uint32 field
        _adverts[last].listPosition = uint32(position);
        _advertised.pop();
        delete _adverts[gateway];
        emit AdvertWithdrawn(gateway);
    }
}
