// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {Market} from "../src/Market.sol";
import {Registry} from "../src/Registry.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract MarketTest is Fixture {
    bytes32 internal LEASE;

    function setUp() public override {
        super.setUp();
        registerAndAdvertise();
        vm.prank(buyer);
        token.approve(address(market), type(uint256).max);
    }

    function propose(uint64 nonce) internal returns (bytes32) {
        vm.prank(buyer);
        return market.proposeOffer(offerFor(nonce));
    }

    function state(bytes32 id) internal view returns (Market.State) {
        return market.leaseOf(id).state;
    }

    // ---- constructor and owner ----

    function test_constructor_reverts() public {
        vm.expectRevert(Market.ZeroAddress.selector);
        new Market(IERC20(address(0)), registry, treasury, 0, owner);
        vm.expectRevert(Market.ZeroAddress.selector);
        new Market(token, Registry(address(0)), treasury, 0, owner);
        vm.expectRevert(Market.ZeroAddress.selector);
        new Market(token, registry, address(0), 0, owner);
        uint256 max = market.MAX_LEASE_FEE();
        vm.expectRevert(abi.encodeWithSelector(Market.FeeTooHigh.selector, max + 1, max));
        new Market(token, registry, treasury, max + 1, owner);
    }

    function test_owner_controls_fee_and_treasury() public {
        uint256 max = market.MAX_LEASE_FEE();
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        market.setLeaseFee(1);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Market.FeeTooHigh.selector, max + 1, max));
        market.setLeaseFee(max + 1);
        vm.prank(owner);
        market.setLeaseFee(7);
        assertEq(market.leaseFee(), 7, "fee");
        vm.prank(owner);
        vm.expectRevert(Market.ZeroAddress.selector);
        market.setTreasury(address(0));
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        market.setTreasury(stranger);
        vm.prank(owner);
        market.setTreasury(stranger);
        assertEq(market.treasury(), stranger, "treasury");
    }

    // ---- propose ----

    function test_propose_records_offer() public {
        LEASE = propose(1);
        Market.Lease memory l = market.leaseOf(LEASE);
        assertEq(l.buyer, buyer, "buyer");
        assertEq(l.gateway, gateway, "gateway");
        assertTrue(l.state == Market.State.Proposed, "proposed");
    }

    function test_propose_reverts() public {
        LEASE = propose(1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.OfferExists.selector, LEASE));
        market.proposeOffer(offerFor(1));
        Market.Offer memory o = offerFor(2);
        o.gateway = stranger;
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.NotRegistered.selector, stranger));
        market.proposeOffer(o);
        o = offerFor(3);
        o.expiry = uint40(block.timestamp);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.BadExpiry.selector, block.timestamp));
        market.proposeOffer(o);
    }

    /// Nobody can take a buyer's lease id first: the offer names its buyer
    /// and only that buyer can propose it.
    function test_someone_else_cannot_squat_an_offer() public {
        Market.Offer memory o = offerFor(1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Market.NotBuyer.selector, bytes32(0), stranger));
        market.proposeOffer(o);
        vm.prank(buyer);
        bytes32 id = market.proposeOffer(o);
        assertEq(id, market.hashOffer(o), "the lease id is the offer's hash");
        assertEq(market.leaseOf(id).buyer, buyer, "the buyer's lease");
    }

    // ---- accept and fee ----

    function test_accept_then_fee_starts_lease() public {
        LEASE = propose(1);
        vm.prank(gateway);
        market.acceptOffer(LEASE);
        assertTrue(state(LEASE) == Market.State.Accepted, "accepted, not valid yet");
        vm.warp(block.timestamp + 10);
        uint256 before = token.balanceOf(address(market));
        vm.prank(buyer);
        market.depositFee(LEASE);
        assertTrue(state(LEASE) == Market.State.Active, "valid after fee");
        assertEq(market.leaseOf(LEASE).start, block.timestamp, "starts at funding");
        assertEq(token.balanceOf(address(market)) - before, LEASE_FEE, "fee escrowed");
    }

    function test_prefunded_offer_starts_at_acceptance() public {
        LEASE = propose(1);
        vm.prank(buyer);
        market.depositFee(LEASE);
        assertTrue(state(LEASE) == Market.State.Proposed, "funded offer still proposed");
        vm.prank(gateway);
        market.acceptOffer(LEASE);
        assertTrue(state(LEASE) == Market.State.Active, "active at once");
    }

    function test_fee_with_permit_in_one_transaction() public {
        vm.prank(buyer);
        token.approve(address(market), 0);
        LEASE = propose(1);
        (uint8 v, bytes32 r, bytes32 s) = permit(BUYER_KEY, address(market), LEASE_FEE, block.timestamp + 1);
        vm.prank(buyer);
        market.depositFeeWithPermit(LEASE, block.timestamp + 1, v, r, s);
        assertEq(market.leaseOf(LEASE).fee, LEASE_FEE, "funded by permit");
    }

    function test_accept_reverts() public {
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.None));
        market.acceptOffer(LEASE);
        LEASE = propose(1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Market.NotGateway.selector, LEASE, stranger));
        market.acceptOffer(LEASE);
        uint256 expiry = market.leaseOf(LEASE).offerExpiry;
        vm.warp(expiry + 1);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Market.OfferExpired.selector, LEASE, expiry));
        market.acceptOffer(LEASE);
    }

    function test_revoked_gateway_cannot_accept() public {
        LEASE = propose(1);
        vm.prank(operator);
        registry.revokeGateway(gateway);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Market.NotRegistered.selector, gateway));
        market.acceptOffer(LEASE);
    }

    function test_deposit_fee_reverts() public {
        LEASE = propose(1);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Market.NotBuyer.selector, LEASE, stranger));
        market.depositFee(LEASE);
        vm.prank(buyer);
        market.depositFee(LEASE);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.AlreadyFunded.selector, LEASE));
        market.depositFee(LEASE);
        vm.prank(buyer);
        market.cancel(LEASE);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.Cancelled));
        market.depositFee(LEASE);
    }

    // ---- cancel ----

    function test_cancel_prefunded_offer_refunds() public {
        LEASE = propose(1);
        vm.prank(buyer);
        market.depositFee(LEASE);
        uint256 before = token.balanceOf(buyer);
        vm.prank(buyer);
        market.cancel(LEASE);
        assertEq(token.balanceOf(buyer) - before, LEASE_FEE, "refunded");
        assertTrue(state(LEASE) == Market.State.Cancelled, "cancelled");
        assertEq(market.leaseOf(LEASE).fee, 0, "nothing left escrowed");
    }

    function test_cancel_rules() public {
        LEASE = propose(1);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Market.NotBuyer.selector, LEASE, gateway));
        market.cancel(LEASE);
        vm.prank(gateway);
        market.acceptOffer(LEASE);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Market.NotParty.selector, LEASE, stranger));
        market.cancel(LEASE);
        uint256 notBefore = block.timestamp + market.FUNDING_WINDOW();
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Market.TooEarly.selector, LEASE, notBefore));
        market.cancel(LEASE);
        vm.warp(notBefore);
        vm.prank(gateway);
        market.cancel(LEASE);
        assertTrue(state(LEASE) == Market.State.Cancelled, "gateway dropped unfunded lease");
    }

    function test_buyer_cancels_accepted_unfunded() public {
        LEASE = propose(1);
        vm.prank(gateway);
        market.acceptOffer(LEASE);
        vm.prank(buyer);
        market.cancel(LEASE);
        assertTrue(state(LEASE) == Market.State.Cancelled, "cancelled");
    }

    function test_active_lease_cannot_be_cancelled() public {
        LEASE = activeLease(1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.Active));
        market.cancel(LEASE);
    }

    // ---- termination ----

    function test_both_terminate_emits_invoice_and_collects_fee_once() public {
        LEASE = activeLease(1);
        vm.warp(block.timestamp + 3600);
        uint256 before = token.balanceOf(treasury);
        vm.prank(buyer);
        market.terminate(LEASE, 90 ether);
        assertTrue(state(LEASE) == Market.State.Terminating, "terminating");
        assertEq(token.balanceOf(treasury), before, "fee not yet moved");
        vm.prank(gateway);
        market.terminate(LEASE, 90 ether);
        Market.Lease memory l = market.leaseOf(LEASE);
        assertTrue(l.state == Market.State.Settled, "settled");
        assertEq(token.balanceOf(treasury) - before, LEASE_FEE, "fee moved");
        assertEq(l.end, block.timestamp, "end");
        assertEq(l.flags & market.DISPUTED(), 0, "agreed");
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.Settled));
        market.terminate(LEASE, 1);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.Settled));
        market.finalize(LEASE);
        assertEq(token.balanceOf(treasury) - before, LEASE_FEE, "exactly once");
    }

    function test_disagreement_is_flagged_not_arbitrated() public {
        LEASE = activeLease(1);
        vm.prank(gateway);
        market.terminate(LEASE, 100 ether);
        vm.prank(buyer);
        market.terminate(LEASE, 60 ether);
        Market.Lease memory l = market.leaseOf(LEASE);
        assertEq(l.buyerReported, 60 ether, "buyer's figure");
        assertEq(l.sellerReported, 100 ether, "seller's figure");
        assertTrue(l.flags & market.DISPUTED() != 0, "disputed");
        assertEq(l.fee, LEASE_FEE, "fee unchanged by the dispute");
    }

    function test_operator_terminates_for_a_dead_gateway() public {
        LEASE = activeLease(1);
        vm.prank(operator);
        market.terminate(LEASE, 5);
        assertEq(market.leaseOf(LEASE).sellerReported, 5, "operator spoke for the seller");
    }

    function test_terminate_reverts() public {
        LEASE = propose(1);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.Proposed));
        market.terminate(LEASE, 0);
        bytes32 other = activeLease(2);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(Market.NotParty.selector, other, stranger));
        market.terminate(other, 0);
        vm.prank(buyer);
        market.terminate(other, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(Market.AlreadyTerminated.selector, other, buyer));
        market.terminate(other, 0);
    }

    function test_abandoned_lease_finalizes_after_timeout() public {
        LEASE = activeLease(1);
        vm.expectRevert(abi.encodeWithSelector(Market.WrongState.selector, LEASE, Market.State.Active));
        market.finalize(LEASE);
        vm.prank(buyer);
        market.terminate(LEASE, 3 ether);
        uint256 notBefore = block.timestamp + market.TERMINATION_TIMEOUT();
        vm.expectRevert(abi.encodeWithSelector(Market.TooEarly.selector, LEASE, notBefore));
        market.finalize(LEASE);
        vm.warp(notBefore);
        uint256 before = token.balanceOf(treasury);
        vm.prank(stranger);
        market.finalize(LEASE);
        Market.Lease memory l = market.leaseOf(LEASE);
        assertTrue(l.state == Market.State.Settled, "settled");
        assertEq(token.balanceOf(treasury) - before, LEASE_FEE, "fee collected");
        assertEq(l.flags & market.SELLER_TERMINATED(), 0, "seller never reported");
        assertEq(l.flags & market.DISPUTED(), 0, "one report is no dispute");
    }

    // ---- fuzz: fee math ----

    /// Whatever the fee, a lease moves exactly it, once, from buyer to
    /// treasury; a cancelled funded offer returns exactly it.
    function testFuzz_fee_conservation(uint256 fee, bool cancelIt, uint96 reportA, uint96 reportB) public {
        fee = bound(fee, 0, market.MAX_LEASE_FEE());
        vm.prank(owner);
        market.setLeaseFee(fee);
        uint256 buyer0 = token.balanceOf(buyer);
        uint256 treasury0 = token.balanceOf(treasury);
        LEASE = propose(1);
        vm.prank(buyer);
        market.depositFee(LEASE);
        assertEq(token.balanceOf(address(market)), fee, "escrowed");
        if (cancelIt) {
            vm.prank(buyer);
            market.cancel(LEASE);
            assertEq(token.balanceOf(buyer), buyer0, "refunded in full");
            assertEq(token.balanceOf(treasury), treasury0, "nothing collected");
        } else {
            vm.prank(gateway);
            market.acceptOffer(LEASE);
            vm.prank(buyer);
            market.terminate(LEASE, reportA);
            vm.prank(gateway);
            market.terminate(LEASE, reportB);
            assertEq(buyer0 - token.balanceOf(buyer), fee, "buyer paid the fee");
            assertEq(token.balanceOf(treasury) - treasury0, fee, "treasury got it");
            assertTrue((market.leaseOf(LEASE).flags & market.DISPUTED() != 0) == (reportA != reportB), "dispute flag");
        }
        assertEq(token.balanceOf(address(market)), 0, "market keeps nothing");
    }

    /// A fee change after deposit does not touch the escrowed amount.
    function testFuzz_fee_is_snapshotted(uint256 newFee) public {
        newFee = bound(newFee, 0, market.MAX_LEASE_FEE());
        LEASE = activeLease(1);
        vm.prank(owner);
        market.setLeaseFee(newFee);
        uint256 before = token.balanceOf(treasury);
        vm.prank(buyer);
        market.terminate(LEASE, 0);
        vm.prank(gateway);
        market.terminate(LEASE, 0);
        assertEq(token.balanceOf(treasury) - before, LEASE_FEE, "old fee collected");
    }
}
