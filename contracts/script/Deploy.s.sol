// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {EDGToken} from "../src/EDGToken.sol";
import {Registry} from "../src/Registry.sol";
import {Market} from "../src/Market.sol";
import {ChannelManager} from "../src/ChannelManager.sol";
import {AgentControl} from "../src/AgentControl.sol";

interface VmScript {
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256);
    function envOr(string calldata name, address defaultValue) external view returns (address);
    function addr(uint256 privateKey) external pure returns (address);
    function startBroadcast(uint256 privateKey) external;
    function stopBroadcast() external;
}

/// Deploys the dEdge contracts in a fixed order (token, registry, market,
/// channels, control), so a fresh chain and deployer give the same addresses
/// every time (boards/dev-x86_64.toml relies on it). deploy.sh runs it and
/// writes deployments/CHAINID.json.
///
/// Environment (all optional): DEPLOYER_KEY (default: anvil's first key),
/// TREASURY and OWNER (default: the deployer), ADVERT_FEE and LEASE_FEE in
/// wei (default 1 EDG each), CHALLENGE_PERIOD in seconds (default 1 day).
contract Deploy {
    VmScript internal constant vm = VmScript(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 internal constant ANVIL_KEY_0 = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;

    function run()
        external
        returns (EDGToken token, Registry registry, Market market, ChannelManager channels, AgentControl control)
    {
        uint256 key = vm.envOr("DEPLOYER_KEY", ANVIL_KEY_0);
        address deployer = vm.addr(key);
        address treasury = vm.envOr("TREASURY", deployer);
        address owner = vm.envOr("OWNER", deployer);
        uint256 advertFee = vm.envOr("ADVERT_FEE", uint256(1 ether));
        uint256 leaseFee = vm.envOr("LEASE_FEE", uint256(1 ether));
        uint256 challenge = vm.envOr("CHALLENGE_PERIOD", uint256(1 days));

        vm.startBroadcast(key);
        token = new EDGToken(deployer);
        registry = new Registry(token, treasury, advertFee, owner);
        market = new Market(token, registry, treasury, leaseFee, owner);
        channels = new ChannelManager(token, challenge);
        control = new AgentControl(registry);
        vm.stopBroadcast();
    }
}
