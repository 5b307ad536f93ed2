// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {EDGToken} from "../../src/EDGToken.sol";
import {Registry} from "../../src/Registry.sol";
import {Market} from "../../src/Market.sol";
import {ChannelManager} from "../../src/ChannelManager.sol";
import {AgentControl} from "../../src/AgentControl.sol";

/// The whole contract set with funded actors and signing helpers.
abstract contract Fixture is Test {
    uint256 internal constant GATEWAY_KEY = 0xA11CE;
    uint256 internal constant BUYER_KEY = 0xB0B;
    uint256 internal constant ADVERT_FEE = 5 ether;
    uint256 internal constant LEASE_FEE = 2 ether;
    uint256 internal constant CHALLENGE = 2 days;

    address internal owner = address(0x0E);
    address internal treasury = address(0x7E);
    address internal operator = address(0x0FE);
    address internal gateway;
    address internal buyer;
    address internal stranger = address(0x5);

    EDGToken internal token;
    Registry internal registry;
    Market internal market;
    ChannelManager internal channels;
    AgentControl internal control;

    bytes32 private constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    function setUp() public virtual {
        vm.warp(1_800_000_000);
        gateway = vm.addr(GATEWAY_KEY);
        buyer = vm.addr(BUYER_KEY);
        token = new EDGToken(address(this));
        registry = new Registry(token, treasury, ADVERT_FEE, owner);
        market = new Market(token, registry, treasury, LEASE_FEE, owner);
        channels = new ChannelManager(token, CHALLENGE);
        control = new AgentControl(registry);
        token.transfer(buyer, 1_000_000 ether);
        token.transfer(operator, 1_000_000 ether);
        token.transfer(gateway, 1_000 ether);
        vm.label(gateway, "gateway");
        vm.label(buyer, "buyer");
        vm.label(operator, "operator");
    }

    function sig(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    function bindingSig(uint256 gatewayKey, address op, uint256 deadline) internal view returns (bytes memory) {
        address gw = vm.addr(gatewayKey);
        bytes32 structHash =
            keccak256(abi.encode(registry.BINDING_TYPEHASH(), gw, op, registry.bindingNonce(gw), deadline));
        return sig(gatewayKey, _digest(registry.domainSeparator(), structHash));
    }

    function proof(bytes32 channelId, uint256 amount, bytes32 leaseId) internal view returns (bytes memory) {
        return sig(BUYER_KEY, channels.balanceProofDigest(channelId, amount, leaseId));
    }

    function permit(uint256 key, address spender, uint256 value, uint256 deadline)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        address holder = vm.addr(key);
        bytes32 structHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, holder, spender, value, token.nonces(holder), deadline));
        return vm.sign(key, _digest(token.DOMAIN_SEPARATOR(), structHash));
    }

    function _digest(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    /// Operator binds the gateway and the gateway advertises.
    function registerAndAdvertise() internal {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(operator);
        registry.registerGateway(gateway, deadline, s);
        vm.prank(gateway);
        token.approve(address(registry), type(uint256).max);
        vm.prank(gateway);
        registry.advertise(
            gateway, "gw.example.net:7300", keccak256("caps"), "ipfs://caps", 1e12, uint40(block.timestamp + 30 days)
        );
    }

    /// The buyer's offer to the gateway; `nonce` tells offers apart.
    function offerFor(uint64 nonce) internal view returns (Market.Offer memory o) {
        o.buyer = buyer;
        o.gateway = gateway;
        o.cpuMillicores = 500;
        o.memoryBytes = 64 << 20;
        o.diskBytes = 256 << 20;
        o.devices = new string[](1);
        o.devices[0] = "Random-Integer-Device:Int8:r";
        o.pricePerSecond = 1e12;
        o.maxDuration = 3600;
        o.paymentInterval = 30;
        o.image = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
        o.expiry = uint40(block.timestamp + 1 hours);
        o.nonce = nonce;
    }

    /// A funded, accepted lease; returns its id.
    function activeLease(uint64 nonce) internal returns (bytes32 leaseId) {
        vm.startPrank(buyer);
        leaseId = market.proposeOffer(offerFor(nonce));
        token.approve(address(market), type(uint256).max);
        market.depositFee(leaseId);
        vm.stopPrank();
        vm.prank(gateway);
        market.acceptOffer(leaseId);
    }

    /// Buyer opens a channel to the gateway with `deposit`.
    function openChannel(uint96 deposit) internal returns (bytes32 id) {
        vm.startPrank(buyer);
        token.approve(address(channels), type(uint256).max);
        id = channels.open(gateway, deposit);
        vm.stopPrank();
    }
}
