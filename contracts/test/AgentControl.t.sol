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
}
