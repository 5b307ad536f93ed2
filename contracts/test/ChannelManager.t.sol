// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {ChannelManager} from "../src/ChannelManager.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

contract ChannelManagerTest is Fixture {
    bytes32 internal constant LEASE = keccak256("lease");
    uint96 internal constant DEPOSIT = 100 ether;

    bytes32 internal id;

    function setUp() public override {
        super.setUp();
        id = openChannel(DEPOSIT);
    }

    function claimAs(address who, uint256 amount) internal {
        bytes memory p = proof(id, amount, LEASE);
        vm.prank(who);
        channels.claim(id, amount, LEASE, p);
    }

    // ---- constructor ----

    function test_constructor_bounds_challenge_period() public {
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.BadChallengePeriod.selector, 59 minutes));
        new ChannelManager(token, 59 minutes);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.BadChallengePeriod.selector, 31 days));
        new ChannelManager(token, 31 days);
        vm.expectRevert(ChannelManager.ZeroAddress.selector);
        new ChannelManager(IERC20(address(0)), 1 days);
    }

    // ---- open / top up ----

    function test_open_escrows_deposit() public view {
        ChannelManager.Channel memory c = channels.channelOf(id);
        assertEq(c.sender, buyer, "sender");
        assertEq(c.receiver, gateway, "receiver");
        assertEq(c.deposit, DEPOSIT, "deposit");
        assertEq(token.balanceOf(address(channels)), DEPOSIT, "escrowed");
    }

    function test_open_reverts() public {
        vm.startPrank(buyer);
        vm.expectRevert(ChannelManager.ZeroAddress.selector);
        channels.open(address(0), 1);
        vm.expectRevert(ChannelManager.SelfChannel.selector);
        channels.open(buyer, 1);
        vm.expectRevert(ChannelManager.ZeroAmount.selector);
        channels.open(gateway, 0);
        vm.stopPrank();
    }

    function test_open_with_permit_in_one_transaction() public {
        vm.prank(buyer);
        token.approve(address(channels), 0);
        (uint8 v, bytes32 r, bytes32 s) = permit(BUYER_KEY, address(channels), 5 ether, block.timestamp + 1);
        vm.prank(buyer);
        bytes32 c = channels.openWithPermit(gateway, 5 ether, block.timestamp + 1, v, r, s);
        assertEq(channels.channelOf(c).deposit, 5 ether, "opened by permit");
    }

    function test_front_run_permit_does_not_block_open() public {
        vm.prank(buyer);
        token.approve(address(channels), 0);
        (uint8 v, bytes32 r, bytes32 s) = permit(BUYER_KEY, address(channels), 5 ether, block.timestamp + 1);
        token.permit(buyer, address(channels), 5 ether, block.timestamp + 1, v, r, s); // someone else used it
        vm.prank(buyer);
        bytes32 c = channels.openWithPermit(gateway, 5 ether, block.timestamp + 1, v, r, s);
        assertEq(channels.channelOf(c).deposit, 5 ether, "opened on the allowance");
    }

    function test_each_open_gets_a_fresh_id() public {
        vm.prank(buyer);
        bytes32 second = channels.open(gateway, 1 ether);
        assertTrue(second != id, "distinct ids for the same pair");
    }

    function test_top_up_has_no_cap() public {
        vm.prank(buyer);
        channels.topUp(id, 500_000 ether);
        assertEq(channels.channelOf(id).deposit, DEPOSIT + 500_000 ether, "topped up");
    }

    function test_top_up_reverts() public {
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NotSender.selector, id, gateway));
        channels.topUp(id, 1);
        vm.prank(buyer);
        vm.expectRevert(ChannelManager.ZeroAmount.selector);
        channels.topUp(id, 0);
        vm.prank(buyer);
        channels.startClose(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.Closing.selector, id));
        channels.topUp(id, 1);
    }

    // ---- claim ----

    function test_claim_pays_the_difference_and_keeps_channel_open() public {
        claimAs(gateway, 10 ether);
        claimAs(gateway, 25 ether);
        assertEq(token.balanceOf(gateway), 1_000 ether + 25 ether, "paid cumulative");
        assertEq(channels.channelOf(id).claimed, 25 ether, "claimed");
        assertEq(token.balanceOf(address(channels)), DEPOSIT - 25 ether, "rest escrowed");
    }

    function test_claim_reverts() public {
        bytes memory p = proof(id, 10 ether, LEASE);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NotReceiver.selector, id, stranger));
        channels.claim(id, 10 ether, LEASE, p);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NoChannel.selector, bytes32(0)));
        channels.claim(bytes32(0), 10 ether, LEASE, p);
        bytes memory big = proof(id, DEPOSIT + 1, LEASE);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.OverDeposit.selector, id, DEPOSIT + 1, DEPOSIT));
        channels.claim(id, DEPOSIT + 1, LEASE, big);
        bytes memory forged = sig(GATEWAY_KEY, channels.balanceProofDigest(id, 10 ether, LEASE));
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.BadSignature.selector, id, gateway));
        channels.claim(id, 10 ether, LEASE, forged);
        claimAs(gateway, 10 ether);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.StaleProof.selector, id, 10 ether, 10 ether));
        channels.claim(id, 10 ether, LEASE, p);
    }

    // ---- replay ----

    function test_proof_is_bound_to_the_lease() public {
        bytes memory p = proof(id, 10 ether, LEASE);
        vm.prank(gateway);
        vm.expectRevert(); // recovers another signer
        channels.claim(id, 10 ether, keccak256("other lease"), p);
    }

    function test_proof_is_bound_to_the_chain() public {
        bytes memory p = proof(id, 10 ether, LEASE);
        vm.chainId(31338);
        vm.prank(gateway);
        vm.expectRevert();
        channels.claim(id, 10 ether, LEASE, p);
    }

    function test_proof_is_bound_to_the_contract() public {
        ChannelManager other = new ChannelManager(token, CHALLENGE);
        vm.startPrank(buyer);
        token.approve(address(other), type(uint256).max);
        bytes32 otherId = other.open(gateway, DEPOSIT);
        vm.stopPrank();
        bytes memory p = proof(id, 10 ether, LEASE);
        vm.prank(gateway);
        vm.expectRevert();
        other.claim(otherId, 10 ether, LEASE, p);
        assertTrue(otherId != id, "ids include the contract");
    }

    function test_closed_channel_proofs_do_not_fit_a_new_one() public {
        bytes memory p = proof(id, 10 ether, LEASE);
        vm.prank(gateway);
        channels.close(id, 10 ether, LEASE, p);
        vm.prank(buyer);
        bytes32 fresh = channels.open(gateway, DEPOSIT);
        vm.prank(gateway);
        vm.expectRevert();
        channels.claim(fresh, 10 ether, LEASE, p);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NoChannel.selector, id));
        channels.claim(id, 10 ether, LEASE, p);
    }

    // ---- cooperative close ----

    function test_receiver_closes_with_latest_proof() public {
        claimAs(gateway, 10 ether);
        bytes memory p = proof(id, 40 ether, LEASE);
        uint256 buyer0 = token.balanceOf(buyer);
        vm.prank(gateway);
        channels.close(id, 40 ether, LEASE, p);
        assertEq(token.balanceOf(gateway), 1_000 ether + 40 ether, "receiver got 40");
        assertEq(token.balanceOf(buyer) - buyer0, 60 ether, "sender refunded 60");
        assertEq(token.balanceOf(address(channels)), 0, "nothing left");
        assertEq(channels.channelOf(id).sender, address(0), "forgotten");
    }

    function test_close_may_repeat_the_claimed_proof() public {
        claimAs(gateway, 10 ether);
        bytes memory p = proof(id, 10 ether, LEASE);
        vm.prank(gateway);
        channels.close(id, 10 ether, LEASE, p);
        assertEq(token.balanceOf(address(channels)), 0, "closed");
    }

    function test_close_below_claimed_reverts() public {
        claimAs(gateway, 10 ether);
        bytes memory p = proof(id, 5 ether, LEASE);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.StaleProof.selector, id, 5 ether, 10 ether));
        channels.close(id, 5 ether, LEASE, p);
    }

    // ---- uncooperative close ----

    function test_sender_close_waits_and_settles_stated_balance() public {
        vm.prank(buyer);
        channels.startClose(id, 30 ether);
        vm.expectRevert(
            abi.encodeWithSelector(ChannelManager.TooEarly.selector, id, uint40(block.timestamp + CHALLENGE))
        );
        channels.settle(id);
        vm.warp(block.timestamp + CHALLENGE);
        uint256 buyer0 = token.balanceOf(buyer);
        vm.prank(stranger);
        channels.settle(id);
        assertEq(token.balanceOf(gateway), 1_000 ether + 30 ether, "silent receiver still paid what sender stated");
        assertEq(token.balanceOf(buyer) - buyer0, 70 ether, "sender got the rest");
    }

    function test_newer_proof_wins_during_challenge() public {
        vm.prank(buyer);
        channels.startClose(id, 5 ether); // lies low
        claimAs(gateway, 50 ether);
        vm.warp(block.timestamp + CHALLENGE);
        channels.settle(id);
        assertEq(token.balanceOf(gateway), 1_000 ether + 50 ether, "newer proof won");
    }

    function test_receiver_can_close_during_challenge() public {
        vm.prank(buyer);
        channels.startClose(id, 20 ether);
        bytes memory low = proof(id, 10 ether, LEASE);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.StaleProof.selector, id, 10 ether, 0));
        channels.close(id, 10 ether, LEASE, low);
        bytes memory p = proof(id, 60 ether, LEASE);
        vm.prank(gateway);
        channels.close(id, 60 ether, LEASE, p);
        assertEq(token.balanceOf(gateway), 1_000 ether + 60 ether, "closed at once with the newer proof");
    }

    function test_sender_cannot_state_below_claimed() public {
        claimAs(gateway, 40 ether);
        vm.prank(buyer);
        channels.startClose(id, 1 ether);
        assertEq(channels.channelOf(id).closingBalance, 40 ether, "floored at claimed");
        vm.warp(block.timestamp + CHALLENGE);
        uint256 buyer0 = token.balanceOf(buyer);
        channels.settle(id);
        assertEq(token.balanceOf(buyer) - buyer0, 60 ether, "refund");
        assertEq(token.balanceOf(gateway), 1_000 ether + 40 ether, "nothing paid twice");
    }

    function test_uncooperative_close_reverts() public {
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NotSender.selector, id, gateway));
        channels.startClose(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.OverDeposit.selector, id, DEPOSIT + 1, DEPOSIT));
        channels.startClose(id, DEPOSIT + 1);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NotClosing.selector, id));
        channels.settle(id);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.NoChannel.selector, bytes32(uint256(1))));
        channels.settle(bytes32(uint256(1)));
        vm.prank(buyer);
        channels.startClose(id, 0);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.Closing.selector, id));
        channels.startClose(id, 0);
    }

    // ---- fuzz: channel amounts ----

    /// Any sequence of proofs: the receiver ends with the highest amount it
    /// submitted, the sender with the rest, and the contract with nothing.
    function testFuzz_channel_amounts(uint96 deposit, uint256[4] memory amounts, bool senderCloses) public {
        deposit = uint96(bound(deposit, 1, 900_000 ether)); // the buyer holds 1M, 100 already in the fixture channel
        vm.prank(buyer);
        bytes32 c = channels.open(gateway, deposit);
        uint256 best;
        for (uint256 i; i < amounts.length; ++i) {
            uint256 a = bound(amounts[i], 0, deposit);
            bytes memory p = proof(c, a, LEASE);
            vm.prank(gateway);
            if (a <= best) {
                vm.expectRevert(abi.encodeWithSelector(ChannelManager.StaleProof.selector, c, a, best));
                channels.claim(c, a, LEASE, p);
            } else {
                channels.claim(c, a, LEASE, p);
                best = a;
            }
            assertEq(channels.channelOf(c).claimed, best, "claimed is the best so far");
        }
        uint256 gw0 = token.balanceOf(gateway) - best;
        uint256 buyer0 = token.balanceOf(buyer);
        if (senderCloses) {
            vm.prank(buyer);
            channels.startClose(c, 0);
            vm.warp(block.timestamp + CHALLENGE);
            channels.settle(c);
        } else {
            bytes memory p = proof(c, best, LEASE);
            vm.prank(gateway);
            channels.close(c, best, LEASE, p);
        }
        assertEq(token.balanceOf(gateway) - gw0, best, "receiver got the best proof");
        assertEq(token.balanceOf(buyer) - buyer0, deposit - best, "sender got the rest");
        assertEq(token.balanceOf(address(channels)), DEPOSIT, "only the fixture channel remains");
    }

    /// A proof above the deposit is refused whatever the amount.
    function testFuzz_never_pays_more_than_deposit(uint256 amount) public {
        vm.assume(amount > DEPOSIT);
        bytes memory p = proof(id, amount, LEASE);
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(ChannelManager.OverDeposit.selector, id, amount, DEPOSIT));
        channels.claim(id, amount, LEASE, p);
    }
}
