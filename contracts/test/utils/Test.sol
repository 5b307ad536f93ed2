// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// The few forge cheatcodes the tests use (forge-std is not installable here).
interface Vm {
    function warp(uint256) external;
    function roll(uint256) external;
    function chainId(uint256) external;
    function prank(address) external;
    function startPrank(address) external;
    function stopPrank() external;
    function expectRevert(bytes calldata) external;
    function expectRevert(bytes4) external;
    function expectRevert() external;
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function addr(uint256 privateKey) external pure returns (address);
    function assume(bool) external pure;
    function label(address, string calldata) external;
    function snapshotState() external returns (uint256);
    function revertToState(uint256) external returns (bool);
}

/// Assertions and helpers: a failed assertion reverts with the reason.
abstract contract Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    function fail(string memory why) internal pure {
        revert(why);
    }

    function assertTrue(bool c, string memory why) internal pure {
        if (!c) fail(why);
    }

    function assertEq(uint256 a, uint256 b, string memory why) internal pure {
        if (a != b) fail(string.concat(why, ": ", _u(a), " != ", _u(b)));
    }

    function assertEq(address a, address b, string memory why) internal pure {
        if (a != b) fail(why);
    }

    function assertEq(bytes32 a, bytes32 b, string memory why) internal pure {
        if (a != b) fail(why);
    }

    function assertLe(uint256 a, uint256 b, string memory why) internal pure {
        if (a > b) fail(string.concat(why, ": ", _u(a), " > ", _u(b)));
    }

    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        if (hi <= lo) return lo;
        return lo + (x % (hi - lo + 1));
    }

    function _u(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory b;
        while (v != 0) {
            b = abi.encodePacked(bytes1(uint8(48 + (v % 10))), b);
            v /= 10;
        }
        return string(b);
    }
}
