// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Registry} from "./Registry.sol";

/// @title dEdge agent control: an operator's commands to its gateways, and
/// the gateways' reports of what became of each
/// @notice The operator of a gateway posts opaque commands for it (pause,
/// prices, evict, configuration, upgrade: the agent defines the encoding,
/// docs/PROTOCOL.md §7). Each gets the gateway's next sequence number, so the
/// agent applies them in order and notices a gap. The gateway reports each
/// command's outcome, in the same order, so anyone can see how far a gateway
/// has come and what it refused. The chain holds only the two counters;
/// commands and reports live in events.
contract AgentControl {
    uint256 public constant MAX_COMMAND = 4096;
    /// Room for a refusal's reason; the agent cuts longer ones.
    uint256 public constant MAX_DETAIL = 256;
    /// Room for the agent's version string.
    uint256 public constant MAX_AGENT = 64;

    /// What became of a command. `None` is never reported.
    enum Outcome {
        None,
        Applied,
        Refused,
        Failed
    }

    Registry public immutable registry;
    mapping(address gateway => uint64) public sequence;
    /// The last sequence number the gateway reported on.
    mapping(address gateway => uint64) public reported;

    event Command(address indexed gateway, uint64 indexed seq, address indexed operator, bytes command);
    event Reported(
        address indexed gateway,
        uint64 indexed seq,
        Outcome outcome,
        uint64 configVersion,
        bytes32 commandBlockHash,
        string agent,
        string detail
    );

    error ZeroAddress();
    error NotOperator(address gateway, address caller);
    error BadCommand(uint256 length);
    error OutOfOrder(address gateway, uint64 seq, uint64 expected, uint64 posted);
    error NoOutcome();
    error TextTooLong(uint256 length, uint256 max);
    error NotThatBlock(uint256 number, bytes32 claimed, bytes32 actual);

    constructor(Registry registry_) {
        if (address(registry_) == address(0)) revert ZeroAddress();
        registry = registry_;
    }

    /// @notice Posts `command` for `gateway`; only its current operator may.
    function post(address gateway, bytes calldata command) external returns (uint64 seq) {
        address op = registry.operatorOf(gateway);
        if (op == address(0) || op != msg.sender) revert NotOperator(gateway, msg.sender);
        if (command.length == 0 || command.length > MAX_COMMAND) revert BadCommand(command.length);
        seq = ++sequence[gateway];
        emit Command(gateway, seq, msg.sender, command);
    }

    /// @notice The calling gateway reports what became of its command `seq`:
    /// the one after the last it reported, and one that was posted. Its
    /// effective configuration version and agent version go with it.
    /// `commandBlock`/`commandBlockHash` name the block the gateway took the
    /// command from: checked while the chain still has that block's hash
    /// (256 blocks), so a report signed on a chain a reorg replaced, mined
    /// again on the new one, cannot report on the command that took its
    /// number there.
    function report(
        uint64 seq,
        Outcome outcome,
        uint64 configVersion,
        uint256 commandBlock,
        bytes32 commandBlockHash,
        string calldata agent,
        string calldata detail
    ) external {
        // A command is taken from a mined block: never this one or a later.
        if (commandBlock >= block.number) revert NotThatBlock(commandBlock, commandBlockHash, bytes32(0));
        bytes32 actual = blockhash(commandBlock);
        if (actual != bytes32(0) && actual != commandBlockHash) {
            revert NotThatBlock(commandBlock, commandBlockHash, actual);
        }
        uint64 expected = reported[msg.sender] + 1;
        uint64 posted = sequence[msg.sender];
        if (seq != expected || seq > posted) revert OutOfOrder(msg.sender, seq, expected, posted);
        if (outcome == Outcome.None) revert NoOutcome();
        if (bytes(agent).length > MAX_AGENT) revert TextTooLong(bytes(agent).length, MAX_AGENT);
        if (bytes(detail).length > MAX_DETAIL) revert TextTooLong(bytes(detail).length, MAX_DETAIL);
        reported[msg.sender] = seq;
        emit Reported(msg.sender, seq, outcome, configVersion, commandBlockHash, agent, detail);
    }
}
