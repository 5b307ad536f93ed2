// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {AgentControl} from "../src/AgentControl.sol";
import {Registry} from "../src/Registry.sol";

contract AgentControlTest is Fixture {
    function setUp() public override {
        super.setUp();
        registerAndAdvertise();
    }

    function test_constructor_rejects_zero_registry() public {
        vm.expectRevert(AgentControl.ZeroAddress.selector);
        new AgentControl(Registry(address(0)));
    }

    function test_operator_posts_in_sequence() public {
        vm.startPrank(operator);
        assertEq(control.post(gateway, hex"01"), 1, "first");
        assertEq(control.post(gateway, hex"0203"), 2, "second");
        vm.stopPrank();
        assertEq(control.sequence(gateway), 2, "counter");
    }

    function test_only_the_operator_posts() public {
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.NotOperator.selector, gateway, stranger));
        control.post(gateway, hex"01");
        vm.prank(gateway); // the gateway itself is managed, it does not manage
        vm.expectRevert(abi.encodeWithSelector(AgentControl.NotOperator.selector, gateway, gateway));
        control.post(gateway, hex"01");
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.NotOperator.selector, stranger, operator));
        control.post(stranger, hex"01"); // not a registered gateway
    }

    function test_former_operator_loses_control() public {
        vm.prank(operator);
        registry.transferGateway(gateway, stranger);
        vm.prank(stranger);
        registry.acceptGateway(gateway);
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.NotOperator.selector, gateway, operator));
        control.post(gateway, hex"01");
        vm.prank(stranger);
        assertEq(control.post(gateway, hex"01"), 1, "new operator continues the sequence");
    }

    function test_command_size_is_bounded() public {
        vm.startPrank(operator);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.BadCommand.selector, 0));
        control.post(gateway, "");
        vm.expectRevert(abi.encodeWithSelector(AgentControl.BadCommand.selector, 4097));
        control.post(gateway, new bytes(4097));
        assertEq(control.post(gateway, new bytes(4096)), 1, "max size accepted");
        vm.stopPrank();
    }

    function test_the_gateway_reports_each_command_in_order() public {
        vm.startPrank(operator);
        control.post(gateway, hex"01");
        control.post(gateway, hex"02");
        vm.stopPrank();
        vm.startPrank(gateway);
        // Nothing before the first, nothing skipped.
        vm.expectRevert(abi.encodeWithSelector(AgentControl.OutOfOrder.selector, gateway, 2, 1, 2));
        control.report(
            2, AgentControl.Outcome.Applied, 2, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", ""
        );
        control.report(
            1, AgentControl.Outcome.Refused, 0, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", "expired"
        );
        assertEq(control.reported(gateway), 1, "first reported");
        // Not twice.
        vm.expectRevert(abi.encodeWithSelector(AgentControl.OutOfOrder.selector, gateway, 1, 2, 2));
        control.report(
            1, AgentControl.Outcome.Applied, 0, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", ""
        );
        control.report(
            2, AgentControl.Outcome.Applied, 2, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", ""
        );
        // Nothing that was not posted.
        vm.expectRevert(abi.encodeWithSelector(AgentControl.OutOfOrder.selector, gateway, 3, 3, 2));
        control.report(
            3, AgentControl.Outcome.Applied, 2, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", ""
        );
        vm.stopPrank();
        assertEq(control.reported(gateway), 2, "second reported");
    }

    function test_a_report_is_the_gateways_own_and_names_an_outcome() public {
        vm.prank(operator);
        control.post(gateway, hex"01");
        // Someone else reporting reports on its own (empty) sequence.
        vm.prank(operator);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.OutOfOrder.selector, operator, 1, 1, 0));
        control.report(1, AgentControl.Outcome.Applied, 0, block.number - 1, blockhash(block.number - 1), "", "");
        vm.startPrank(gateway);
        vm.expectRevert(AgentControl.NoOutcome.selector);
        control.report(1, AgentControl.Outcome.None, 0, block.number - 1, blockhash(block.number - 1), "", "");
        vm.expectRevert(abi.encodeWithSelector(AgentControl.TextTooLong.selector, 257, 256));
        control.report(
            1, AgentControl.Outcome.Failed, 0, block.number - 1, blockhash(block.number - 1), "", string(new bytes(257))
        );
        vm.expectRevert(abi.encodeWithSelector(AgentControl.TextTooLong.selector, 65, 64));
        control.report(
            1, AgentControl.Outcome.Failed, 0, block.number - 1, blockhash(block.number - 1), string(new bytes(65)), ""
        );
        control.report(
            1,
            AgentControl.Outcome.Failed,
            0,
            block.number - 1,
            blockhash(block.number - 1),
            string(new bytes(64)),
            string(new bytes(256))
        );
        vm.stopPrank();
        assertEq(control.reported(gateway), 1, "reported at the limits");
    }

    function test_reports_continue_across_an_operator_transfer() public {
        vm.prank(operator);
        control.post(gateway, hex"01");
        vm.prank(operator);
        registry.transferGateway(gateway, stranger);
        vm.prank(stranger);
        registry.acceptGateway(gateway);
        vm.prank(stranger);
        control.post(gateway, hex"02");
        vm.startPrank(gateway);
        control.report(
            1,
            AgentControl.Outcome.Refused,
            0,
            block.number - 1,
            blockhash(block.number - 1),
            "dedge",
            "posted by a previous operator"
        );
        control.report(2, AgentControl.Outcome.Applied, 2, block.number - 1, blockhash(block.number - 1), "dedge", "");
        vm.stopPrank();
        assertEq(control.reported(gateway), 2, "both");
    }

    event log_named_uint(string key, uint256 val);

    /// The gas of a typical command (a price change, 60 bytes) and of its
    /// report, on a gateway that has had commands before (warm counters).
    function test_gas_of_a_command_and_its_report() public {
        vm.prank(operator);
        control.post(gateway, new bytes(60));
        vm.prank(gateway);
        control.report(
            1, AgentControl.Outcome.Applied, 1, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", ""
        );
        vm.prank(operator);
        uint256 g = gasleft();
        control.post(gateway, new bytes(60));
        uint256 post = g - gasleft();
        vm.prank(gateway);
        g = gasleft();
        control.report(
            2, AgentControl.Outcome.Applied, 2, block.number - 1, blockhash(block.number - 1), "dedge 0.1.0", ""
        );
        uint256 report = g - gasleft();
        emit log_named_uint("post (60-byte command, execution)", post);
        emit log_named_uint("report (applied, execution)", report);
        assertLe(post, 45_000, "post");
        assertLe(report, 40_000, "report");
    }

    /// A report naming the block its command came from is refused when the
    /// chain has another block at that height (signed on a chain a reorg
    /// replaced); one whose block is too old to check passes.
    function test_a_report_from_a_replaced_chain_is_refused() public {
        vm.roll(1000);
        vm.prank(operator);
        control.post(gateway, hex"01");
        uint256 mined = block.number;
        vm.roll(mined + 5);
        bytes32 real = blockhash(mined);
        bytes32 other = keccak256("another chain's block");
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.NotThatBlock.selector, mined, other, real));
        control.report(1, AgentControl.Outcome.Applied, 1, mined, other, "dedge", "");
        vm.prank(gateway);
        control.report(1, AgentControl.Outcome.Applied, 1, mined, real, "dedge", "");
        // Past the 256 blocks the chain keeps hashes for: not checkable.
        vm.prank(operator);
        control.post(gateway, hex"02");
        vm.roll(mined + 400);
        vm.prank(gateway);
        control.report(2, AgentControl.Outcome.Applied, 2, mined + 5, other, "dedge", "");
        assertEq(control.reported(gateway), 2, "both");
        // Never a block not yet mined (blockhash says 0 for it: unchecked).
        vm.prank(operator);
        control.post(gateway, hex"03");
        vm.prank(gateway);
        vm.expectRevert(abi.encodeWithSelector(AgentControl.NotThatBlock.selector, block.number, other, bytes32(0)));
        control.report(3, AgentControl.Outcome.Applied, 3, block.number, other, "dedge", "");
    }
}
