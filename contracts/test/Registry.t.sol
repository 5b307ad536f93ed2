// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {Registry} from "../src/Registry.sol";
import {EDGToken} from "../src/EDGToken.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

contract RegistryTest is Fixture {
    uint256 internal constant OTHER_GATEWAY_KEY = 0xC0FFEE;

    function register() internal {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(operator);
        registry.registerGateway(gateway, deadline, s);
    }

    function advertiseAs(address caller, uint40 expiry) internal {
        vm.prank(caller);
        registry.advertise(gateway, "gw.example.net:7300", keccak256("caps"), "ipfs://caps", 1e12, expiry);
    }

    function setUp() public override {
        super.setUp();
        vm.prank(gateway);
        token.approve(address(registry), type(uint256).max);
        vm.prank(operator);
        token.approve(address(registry), type(uint256).max);
    }

    // ---- constructor ----

    function test_constructor_rejects_zero_addresses_and_high_fee() public {
        vm.expectRevert(Registry.ZeroAddress.selector);
        new Registry(IERC20(address(0)), treasury, 0, owner);
        vm.expectRevert(Registry.ZeroAddress.selector);
        new Registry(token, address(0), 0, owner);
        uint256 max = registry.MAX_ADVERT_FEE();
        vm.expectRevert(abi.encodeWithSelector(Registry.FeeTooHigh.selector, max + 1, max));
        new Registry(token, treasury, max + 1, owner);
    }

    // ---- binding ----

    function test_register_binds_with_gateway_consent() public {
        register();
        assertEq(registry.operatorOf(gateway), operator, "operator bound");
        assertEq(registry.bindingNonce(gateway), 1, "nonce bumped");
    }

    function test_register_twice_reverts() public {
        register();
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, stranger, deadline);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Registry.AlreadyRegistered.selector, gateway));
        registry.registerGateway(gateway, deadline, s);
    }

    function test_register_expired_signature_reverts() public {
        uint256 deadline = block.timestamp - 1;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Registry.SignatureExpired.selector, deadline));
        registry.registerGateway(gateway, deadline, s);
    }

    function test_register_consent_for_another_operator_reverts() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(stranger);
        vm.expectRevert(); // recovers some other address: BadGatewaySignature
        registry.registerGateway(gateway, deadline, s);
        assertEq(registry.operatorOf(gateway), address(0), "still unbound");
    }

    function test_register_signed_by_wrong_key_reverts() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 structHash = keccak256(abi.encode(registry.BINDING_TYPEHASH(), gateway, operator, 0, deadline));
        bytes memory s = sig(OTHER_GATEWAY_KEY, _digest(registry.domainSeparator(), structHash));
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(Registry.BadGatewaySignature.selector, gateway, vm.addr(OTHER_GATEWAY_KEY))
        );
        registry.registerGateway(gateway, deadline, s);
    }

    function test_register_malformed_signature_reverts() public {
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(ECDSA.ECDSAInvalidSignatureLength.selector, 3));
        registry.registerGateway(gateway, block.timestamp, hex"010203");
    }

    function test_consent_cannot_be_replayed_after_revoke() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(operator);
        registry.registerGateway(gateway, deadline, s);
        vm.prank(operator);
        registry.revokeGateway(gateway);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(Registry.Revoked.selector, gateway));
        registry.registerGateway(gateway, deadline, s);
        // Even with a fresh consent from the (leaked) key: revoked is final.
        bytes memory fresh = bindingSig(GATEWAY_KEY, stranger, deadline);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Registry.Revoked.selector, gateway));
        registry.registerGateway(gateway, deadline, fresh);
    }

    function test_consent_cannot_be_replayed_after_a_transfer() public {
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(operator);
        registry.registerGateway(gateway, deadline, s);
        assertEq(registry.bindingNonce(gateway), 1, "consents are good once");
    }

    function test_consent_is_bound_to_this_registry() public {
        Registry other = new Registry(token, treasury, 0, owner);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline); // signed for `registry`
        vm.prank(operator);
        vm.expectRevert();
        other.registerGateway(gateway, deadline, s);
    }

    function test_transfer_is_two_step() public {
        register();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotOperator.selector, gateway, stranger));
        registry.transferGateway(gateway, stranger);
        vm.prank(operator);
        vm.expectRevert(Registry.ZeroAddress.selector);
        registry.transferGateway(gateway, address(0));
        vm.prank(operator);
        registry.transferGateway(gateway, stranger);
        assertEq(registry.operatorOf(gateway), operator, "unchanged until accepted");
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotPendingOperator.selector, gateway, owner));
        registry.acceptGateway(gateway);
        vm.prank(stranger);
        registry.acceptGateway(gateway);
        assertEq(registry.operatorOf(gateway), stranger, "new operator");
        assertEq(registry.pendingOperator(gateway), address(0), "pending cleared");
    }

    function test_revoke_unbinds_and_drops_advert() public {
        register();
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotOperator.selector, gateway, gateway));
        registry.revokeGateway(gateway);
        vm.prank(operator);
        registry.revokeGateway(gateway);
        assertEq(registry.operatorOf(gateway), address(0), "unbound");
        assertEq(registry.advertCount(), 0, "advert dropped");
        assertTrue(!registry.isLive(gateway), "not live");
    }

    function test_unregistered_address_has_no_operator_powers() public {
        vm.prank(address(0));
        vm.expectRevert(abi.encodeWithSelector(Registry.NotOperator.selector, gateway, address(0)));
        registry.revokeGateway(gateway);
    }

    // ---- adverts ----

    function test_advertise_charges_fee_and_lists() public {
        register();
        uint256 before = token.balanceOf(treasury);
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        assertEq(token.balanceOf(treasury) - before, ADVERT_FEE, "fee to treasury");
        Registry.Advert memory a = registry.advertOf(gateway);
        assertEq(a.pricePerSecond, 1e12, "price");
        assertEq(a.capabilitiesHash, keccak256("caps"), "caps hash");
        assertEq(a.advertisedAt, block.number, "event block");
        (address[] memory gws,) = registry.liveAdverts(0, 10);
        assertEq(gws.length, 1, "one live");
        assertEq(gws[0], gateway, "listed");
    }

    function test_operator_may_advertise_and_pays() public {
        register();
        uint256 before = token.balanceOf(operator);
        advertiseAs(operator, uint40(block.timestamp + 1 days));
        assertEq(before - token.balanceOf(operator), ADVERT_FEE, "operator paid");
    }

    function test_advertise_reverts() public {
        uint40 exp = uint40(block.timestamp + 1 days);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotRegistered.selector, gateway));
        registry.advertise(gateway, "e:1", bytes32(0), "", 1, exp);
        register();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotGatewayOrOperator.selector, gateway, stranger));
        registry.advertise(gateway, "e:1", bytes32(0), "", 1, exp);
        vm.startPrank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Registry.BadText.selector, 0));
        registry.advertise(gateway, "", bytes32(0), "", 1, exp);
        string memory long = string(new bytes(257));
        vm.expectRevert(abi.encodeWithSelector(Registry.BadText.selector, 257));
        registry.advertise(gateway, long, bytes32(0), "", 1, exp);
        string memory longUri = string(new bytes(4097));
        vm.expectRevert(abi.encodeWithSelector(Registry.BadText.selector, 4097));
        registry.advertise(gateway, "e:1", bytes32(0), longUri, 1, exp);
        vm.expectRevert(Registry.ZeroPrice.selector);
        registry.advertise(gateway, "e:1", bytes32(0), "", 0, exp);
        vm.expectRevert(abi.encodeWithSelector(Registry.BadExpiry.selector, block.timestamp));
        registry.advertise(gateway, "e:1", bytes32(0), "", 1, uint40(block.timestamp));
        uint256 far = block.timestamp + 91 days;
        vm.expectRevert(abi.encodeWithSelector(Registry.BadExpiry.selector, far));
        registry.advertise(gateway, "e:1", bytes32(0), "", 1, uint40(far));
        token.approve(address(registry), 0);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(registry), 0, ADVERT_FEE)
        );
        registry.advertise(gateway, "e:1", bytes32(0), "", 1, exp);
        vm.stopPrank();
    }

    function test_readvertise_replaces_without_duplicating() public {
        register();
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        vm.prank(gateway);
        registry.advertise(gateway, "new:1", keccak256("v2"), "", 7, uint40(block.timestamp + 2 days));
        assertEq(registry.advertCount(), 1, "still one entry");
        assertEq(registry.advertOf(gateway).pricePerSecond, 7, "updated price");
    }

    function test_renew_moves_expiry_for_a_fee() public {
        register();
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Registry.NoAdvert.selector, gateway));
        registry.renew(gateway, uint40(block.timestamp + 1 days));
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        uint256 before = token.balanceOf(treasury);
        vm.prank(operator);
        registry.renew(gateway, uint40(block.timestamp + 60 days));
        assertEq(registry.advertOf(gateway).expiry, block.timestamp + 60 days, "renewed");
        assertEq(token.balanceOf(treasury) - before, ADVERT_FEE, "renewal fee");
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Registry.BadExpiry.selector, block.timestamp - 1));
        registry.renew(gateway, uint40(block.timestamp - 1));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Registry.NotGatewayOrOperator.selector, gateway, stranger));
        registry.renew(gateway, uint40(block.timestamp + 1 days));
    }

    function test_withdraw_is_free_and_final() public {
        register();
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Registry.NoAdvert.selector, gateway));
        registry.withdraw(gateway);
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        uint256 before = token.balanceOf(gateway);
        vm.prank(gateway);
        registry.withdraw(gateway);
        assertEq(token.balanceOf(gateway), before, "no fee");
        assertEq(registry.advertCount(), 0, "gone");
    }

    function test_expired_adverts_leave_the_live_view_and_can_be_pruned() public {
        register();
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        vm.warp(block.timestamp + 1 days);
        (address[] memory gws,) = registry.liveAdverts(0, 10);
        assertEq(gws.length, 0, "expired advert not live");
        assertEq(registry.advertCount(), 1, "still listed until pruned");
        address[] memory list = new address[](2);
        list[0] = gateway;
        list[1] = stranger; // no advert: ignored
        registry.prune(list);
        assertEq(registry.advertCount(), 0, "pruned");
    }

    function test_prune_keeps_live_adverts() public {
        register();
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        address[] memory list = new address[](1);
        list[0] = gateway;
        registry.prune(list);
        assertEq(registry.advertCount(), 1, "live advert kept");
    }

    function test_live_adverts_pages() public {
        register();
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        address gw2 = vm.addr(OTHER_GATEWAY_KEY);
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(OTHER_GATEWAY_KEY, operator, deadline);
        vm.startPrank(operator);
        registry.registerGateway(gw2, deadline, s);
        registry.advertise(gw2, "b:1", bytes32(0), "", 3, uint40(block.timestamp + 1 days));
        vm.stopPrank();
        (address[] memory p1,) = registry.liveAdverts(0, 1);
        (address[] memory p2,) = registry.liveAdverts(1, 1);
        (address[] memory p3,) = registry.liveAdverts(5, 1);
        assertEq(p1.length + p2.length, 2, "two pages of one");
        assertEq(p1[0], gateway, "first");
        assertEq(p2[0], gw2, "second");
        assertEq(p3.length, 0, "past the end");
    }

    // ---- owner ----

    function test_owner_sets_fee_within_bounds_and_treasury() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.setAdvertFee(1);
        uint256 max = registry.MAX_ADVERT_FEE();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Registry.FeeTooHigh.selector, max + 1, max));
        registry.setAdvertFee(max + 1);
        vm.prank(owner);
        registry.setAdvertFee(max);
        assertEq(registry.advertFee(), max, "fee set");
        vm.prank(owner);
        vm.expectRevert(Registry.ZeroAddress.selector);
        registry.setTreasury(address(0));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        registry.setTreasury(stranger);
        vm.prank(owner);
        registry.setTreasury(stranger);
        assertEq(registry.treasury(), stranger, "treasury set");
    }

    function test_zero_fee_advertises_without_transfer() public {
        vm.prank(owner);
        registry.setAdvertFee(0);
        register();
        vm.prank(gateway);
        token.approve(address(registry), 0);
        advertiseAs(gateway, uint40(block.timestamp + 1 days));
        assertTrue(registry.isLive(gateway), "advertised for free");
    }
}

contract TokenTest is Fixture {
    function test_fixed_supply_to_initial_holder() public {
        EDGToken t = new EDGToken(stranger);
        assertEq(t.totalSupply(), 1_000_000_000 ether, "one billion");
        assertEq(t.balanceOf(stranger), t.totalSupply(), "all to the holder");
        assertEq(t.decimals(), 18, "decimals");
    }

    function test_permit_sets_allowance_once() public {
        (uint8 v, bytes32 r, bytes32 s) = permit(BUYER_KEY, stranger, 5 ether, block.timestamp + 1);
        token.permit(buyer, stranger, 5 ether, block.timestamp + 1, v, r, s);
        assertEq(token.allowance(buyer, stranger), 5 ether, "allowance");
        vm.expectRevert();
        token.permit(buyer, stranger, 5 ether, block.timestamp + 1, v, r, s);
    }
}

contract RegistryListTest is Fixture {
    /// Any mix of adverts and withdrawals leaves the list holding exactly the
    /// gateways with an advert, each once.
    function testFuzz_advert_list_stays_consistent(uint256 seed) public {
        uint256 n = 6;
        address[] memory gws = new address[](n);
        bool[] memory listed = new bool[](n);
        for (uint256 i; i < n; ++i) {
            uint256 key = 0x1000 + i;
            gws[i] = vm.addr(key);
            uint256 deadline = block.timestamp + 1;
            bytes32 structHash = keccak256(abi.encode(registry.BINDING_TYPEHASH(), gws[i], operator, 0, deadline));
            bytes memory s = sig(key, _digest(registry.domainSeparator(), structHash));
            vm.prank(operator);
            registry.registerGateway(gws[i], deadline, s);
        }
        vm.prank(operator);
        token.approve(address(registry), type(uint256).max);
        for (uint256 step; step < 24; ++step) {
            uint256 i = uint256(keccak256(abi.encode(seed, step))) % n;
            vm.prank(operator);
            if (listed[i]) {
                registry.withdraw(gws[i]);
            } else {
                registry.advertise(gws[i], "e:1", bytes32(0), "", 1, uint40(block.timestamp + 1 days));
            }
            listed[i] = !listed[i];
        }
        (address[] memory live,) = registry.liveAdverts(0, n);
        uint256 expected;
        for (uint256 i; i < n; ++i) {
            if (!listed[i]) continue;
            ++expected;
            bool found;
            for (uint256 j; j < live.length; ++j) {
                if (live[j] == gws[i]) {
                    assertTrue(!found, "listed once");
                    found = true;
                }
            }
            assertTrue(found, "advertised gateway listed");
        }
        assertEq(live.length, expected, "no stale entries");
        assertEq(registry.advertCount(), expected, "count");
    }
}
