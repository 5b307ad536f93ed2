// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

/// @title dEdge payment channels (µRaiden lineage)
/// @notice Unidirectional EDG channels from a buyer (sender) to a gateway
/// (receiver). The sender signs cumulative EIP-712 balance proofs off chain;
/// the receiver can claim the latest one, or close with it, at any time.
/// The sender can only leave through a challenge period in which any newer
/// proof of the receiver's wins. contracts/README.md has the threat model.
///
/// Payee-favoured: the balance paid at settlement is the highest of (what
/// the receiver claimed, what the sender stated when closing, any proof the
/// receiver submits until settlement), so a stale proof never beats a newer
/// one and a silent receiver still gets what the sender admitted.
contract ChannelManager is EIP712, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    bytes32 public constant BALANCE_PROOF_TYPEHASH =
        keccak256("BalanceProof(bytes32 channelId,uint256 amount,bytes32 leaseId)");
    uint256 public constant MIN_CHALLENGE_PERIOD = 1 hours;
    uint256 public constant MAX_CHALLENGE_PERIOD = 30 days;

    struct Channel {
        // slot 0
        address sender;
        uint96 deposit;
        // slot 1
        address receiver;
        /// Paid to the receiver so far (cumulative).
        uint96 claimed;
        // slot 2, set by an uncooperative close
        uint96 closingBalance;
        uint40 settleAfter;
    }

    IERC20 public immutable token;
    uint256 public immutable challengePeriod;
    /// Part of every channel id, so a closed channel's proofs never fit a new
    /// one. Starts at 1 so the first open does not pay for a zero-to-nonzero write.
    uint256 public channelCount = 1;

    mapping(bytes32 channelId => Channel) private _channels;

    event ChannelOpened(bytes32 indexed channelId, address indexed sender, address indexed receiver, uint96 deposit);
    event ChannelToppedUp(bytes32 indexed channelId, uint96 added, uint96 deposit);
    event ChannelClaimed(bytes32 indexed channelId, bytes32 indexed leaseId, uint96 amount, uint96 paid);
    event ChannelCloseRequested(bytes32 indexed channelId, uint96 balance, uint40 settleAfter);
    event ChannelClosed(bytes32 indexed channelId, uint96 paidToReceiver, uint96 refundedToSender);

    error BadChallengePeriod(uint256 period);
    error ZeroAddress();
    error ZeroAmount();
    error SelfChannel();
    error NoChannel(bytes32 channelId);
    error NotSender(bytes32 channelId, address caller);
    error NotReceiver(bytes32 channelId, address caller);
    error BadSignature(bytes32 channelId, address signer);
    error OverDeposit(bytes32 channelId, uint256 amount, uint96 deposit);
    error StaleProof(bytes32 channelId, uint256 amount, uint96 claimed);
    error Closing(bytes32 channelId);
    error NotClosing(bytes32 channelId);
    error TooEarly(bytes32 channelId, uint40 settleAfter);

    constructor(IERC20 token_, uint256 challengePeriod_) EIP712("dEdge Channels", "1") {
        if (address(token_) == address(0)) revert ZeroAddress();
        if (challengePeriod_ < MIN_CHALLENGE_PERIOD || challengePeriod_ > MAX_CHALLENGE_PERIOD) {
            revert BadChallengePeriod(challengePeriod_);
        }
        token = token_;
        challengePeriod = challengePeriod_;
    }

    // ---- sender ----

    /// @notice Opens a channel to `receiver` with `deposit` EDG (allowance needed).
    function open(address receiver, uint96 deposit) public nonReentrant returns (bytes32 channelId) {
        if (receiver == address(0)) revert ZeroAddress();
        if (receiver == msg.sender) revert SelfChannel();
        if (deposit == 0) revert ZeroAmount();
        channelId = keccak256(abi.encode(block.chainid, address(this), msg.sender, receiver, channelCount++));
        // Field by field: a struct literal would also write the all-zero slot 2.
        Channel storage c = _channels[channelId];
        c.sender = msg.sender;
        c.deposit = deposit;
        c.receiver = receiver;
        emit ChannelOpened(channelId, msg.sender, receiver, deposit);
        token.safeTransferFrom(msg.sender, address(this), deposit);
    }

    /// @notice `open` with an EIP-2612 permit: one transaction, no prior approve.
    /// A permit already used (front-run) is fine if the allowance is there.
    function openWithPermit(address receiver, uint96 deposit, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        returns (bytes32)
    {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), deposit, deadline, v, r, s) {} catch {}
        return open(receiver, deposit);
    }

    /// @notice Adds to an open channel's deposit. There is no cap.
    function topUp(bytes32 channelId, uint96 amount) external nonReentrant {
        Channel storage c = _channels[channelId];
        if (c.sender != msg.sender || msg.sender == address(0)) revert NotSender(channelId, msg.sender);
        if (c.settleAfter != 0) revert Closing(channelId);
        if (amount == 0) revert ZeroAmount();
        c.deposit += amount;
        emit ChannelToppedUp(channelId, amount, c.deposit);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Uncooperative close: the sender states the balance it owes
    /// (at least what was claimed) and waits `challengePeriod`, during which
    /// the receiver may submit any newer proof.
    function startClose(bytes32 channelId, uint96 balance) external {
        Channel storage c = _channels[channelId];
        if (c.sender != msg.sender || msg.sender == address(0)) revert NotSender(channelId, msg.sender);
        if (c.settleAfter != 0) revert Closing(channelId);
        if (balance > c.deposit) revert OverDeposit(channelId, balance, c.deposit);
        c.closingBalance = balance > c.claimed ? balance : c.claimed;
        // forge-lint: disable-next-line(unsafe-typecast) 2^40 seconds is past the year 36000
        c.settleAfter = uint40(block.timestamp + challengePeriod);
        emit ChannelCloseRequested(channelId, c.closingBalance, c.settleAfter);
    }

    /// @notice Ends an uncooperative close after the challenge period: the
    /// receiver gets the highest balance seen, the sender the rest. Anyone
    /// may call it; the money only goes to the two parties.
    function settle(bytes32 channelId) external nonReentrant {
        Channel storage c = _channels[channelId];
        if (c.sender == address(0)) revert NoChannel(channelId);
        if (c.settleAfter == 0) revert NotClosing(channelId);
        if (block.timestamp < c.settleAfter) revert TooEarly(channelId, c.settleAfter);
        _close(channelId, c, c.closingBalance);
    }

    // ---- receiver ----

    /// @notice Takes payment up to the signed cumulative `amount`; the
    /// channel stays open. Also wins against an uncooperative close.
    function claim(bytes32 channelId, uint256 amount, bytes32 leaseId, bytes calldata signature) external nonReentrant {
        Channel storage c = _channels[channelId];
        uint96 total = _checkProof(channelId, c, amount, leaseId, signature);
        if (total <= c.claimed) revert StaleProof(channelId, amount, c.claimed);
        uint96 paid = total - c.claimed;
        c.claimed = total;
        if (total > c.closingBalance && c.settleAfter != 0) c.closingBalance = total;
        emit ChannelClaimed(channelId, leaseId, total, paid);
        token.safeTransfer(c.receiver, paid);
    }

    /// @notice Cooperative close by the receiver with the latest proof: pays
    /// it, refunds the rest of the deposit to the sender, at once.
    function close(bytes32 channelId, uint256 amount, bytes32 leaseId, bytes calldata signature) external nonReentrant {
        Channel storage c = _channels[channelId];
        uint96 total = _checkProof(channelId, c, amount, leaseId, signature);
        // A close may repeat the last claimed proof, never go below it or
        // below what the sender itself stated when it started closing.
        if (total < c.claimed || total < c.closingBalance) revert StaleProof(channelId, amount, c.claimed);
        _close(channelId, c, total);
    }

    // ---- views ----

    function channelOf(bytes32 channelId) external view returns (Channel memory) {
        return _channels[channelId];
    }

    /// @notice The EIP-712 digest the sender signs for a balance proof.
    function balanceProofDigest(bytes32 channelId, uint256 amount, bytes32 leaseId) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(BALANCE_PROOF_TYPEHASH, channelId, amount, leaseId)));
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ---- internals ----

    /// Receiver-only; the proof must be the sender's and within the deposit.
    function _checkProof(
        bytes32 channelId,
        Channel storage c,
        uint256 amount,
        bytes32 leaseId,
        bytes calldata signature
    ) private view returns (uint96) {
        if (c.sender == address(0)) revert NoChannel(channelId);
        if (msg.sender != c.receiver) revert NotReceiver(channelId, msg.sender);
        if (amount > c.deposit) revert OverDeposit(channelId, amount, c.deposit);
        address signer = ECDSA.recover(balanceProofDigest(channelId, amount, leaseId), signature);
        if (signer != c.sender) revert BadSignature(channelId, signer);
        // forge-lint: disable-next-line(unsafe-typecast) amount <= deposit, a uint96
        return uint96(amount);
    }

    /// Pays the receiver up to `total`, refunds the sender the rest, forgets
    /// the channel (its id can never come back: it includes channelCount).
    function _close(bytes32 channelId, Channel storage c, uint96 total) private {
        address sender = c.sender;
        address receiver = c.receiver;
        uint96 toReceiver = total - c.claimed;
        uint96 toSender = c.deposit - total;
        delete _channels[channelId];
        emit ChannelClosed(channelId, toReceiver, toSender);
        if (toReceiver != 0) token.safeTransfer(receiver, toReceiver);
        if (toSender != 0) token.safeTransfer(sender, toSender);
    }
}
