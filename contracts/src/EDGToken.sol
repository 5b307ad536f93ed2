// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title EDG, the dEdge utility token
/// @notice ERC-20 with EIP-2612 permit, 18 decimals, a fixed supply minted once
/// at deployment to `initialHolder` (the platform treasury in a real
/// deployment; anvil's first account on the devnet). No mint, no burn, no
/// owner: the supply can never change.
contract EDGToken is ERC20, ERC20Permit {
    /// One billion EDG.
    uint256 public constant TOTAL_SUPPLY = 1_000_000_000 ether;

    constructor(address initialHolder) ERC20("dEdge Token", "EDG") ERC20Permit("dEdge Token") {
        _mint(initialHolder, TOTAL_SUPPLY);
    }
}
