// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Registry} from "./Registry.sol";

/// @title dEdge agent control: an operator's signed commands to its gateways
/// @notice The operator of a gateway posts opaque commands for it (pause,
/// price, evict, config, upgrade: the agent defines the encoding). Each gets
/// the gateway's next sequence number, so the agent applies them in order and
/// notices a gap. The chain holds only the counter; commands live in events.
contract AgentControl {
    uint256 public constant MAX_COMMAND = 4096;

    Registry public immutable registry;
    mapping(address gateway => uint64) public sequence;

    event Command(address indexed gateway, uint64 indexed seq, address indexed operator, bytes command);

    error ZeroAddress();
    error NotOperator(address gateway, address caller);
    error BadCommand(uint256 length);

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
}
