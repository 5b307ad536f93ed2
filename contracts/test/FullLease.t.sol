// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {Market} from "../src/Market.sol";

/// One whole lease, every on-chain step of the paper, with the gas of each.
///
/// With `isolate = true` (foundry.toml) each call is its own transaction, so
/// a step's gas is what its receipt would show: 21000 base, calldata, cold
/// storage, refunds. `execution` is that minus the base and calldata, the
/// part the contracts control. Two leases are walked: the first on a fresh
/// deployment pays one-time costs (first EDG into the treasury, market and
/// channel manager, the buyer's first permit, the gateway's first advert);
/// the second, by the same parties, is what a lease costs on a running market.
contract FullLeaseTest is Fixture {
    /// Budget for the execution gas of a whole lease on a running market.
    uint256 internal constant LEASE_GAS_BUDGET = 400_000;

    uint256 internal txGas;
    uint256 internal execGas;

    event log_named_uint(string key, uint256 val);

    function setUp() public override {
        super.setUp();
        uint256 deadline = block.timestamp + 1 hours;
        bytes memory s = bindingSig(GATEWAY_KEY, operator, deadline);
        vm.prank(operator);
        registry.registerGateway(gateway, deadline, s);
        vm.prank(gateway);
        token.approve(address(registry), type(uint256).max);
        vm.prank(buyer);
        token.approve(address(market), type(uint256).max);
    }

    /// Base cost of a transaction carrying `data` (EIP-2028 calldata pricing).
    function intrinsic(bytes memory data) internal pure returns (uint256 cost) {
        cost = 21_000;
        for (uint256 i; i < data.length; ++i) {
            cost += data[i] == 0 ? 4 : 16;
        }
    }

    /// Sends `data` to `target` from `from` as one transaction and books its gas.
    function send(string memory name, address from, address target, bytes memory data)
        internal
        returns (bytes memory ret)
    {
        uint256 g = gasleft();
        vm.prank(from);
        bool ok;
        (ok, ret) = target.call(data);
        uint256 used = g - gasleft();
        assertTrue(ok, name);
        txGas += used;
        execGas += used - intrinsic(data);
        emit log_named_uint(name, used);
    }

    function walk(uint64 nonce, uint256 payments) internal returns (uint256 exec, uint256 total) {
        txGas = 0;
        execGas = 0;
        send(
            "advertise",
            gateway,
            address(registry),
            abi.encodeCall(
                registry.advertise,
                (
                    gateway,
                    "gw.example.net:7300",
                    keccak256("caps"),
                    "ipfs://bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
                    1e12,
                    uint40(block.timestamp + 30 days)
                )
            )
        );
        bytes32 leaseId = abi.decode(
            send("proposeOffer", buyer, address(market), abi.encodeCall(market.proposeOffer, (offerFor(nonce)))),
            (bytes32)
        );
        send("acceptOffer", gateway, address(market), abi.encodeCall(market.acceptOffer, (leaseId)));
        send("depositFee (dedge_fee)", buyer, address(market), abi.encodeCall(market.depositFee, (leaseId)));
        channelSteps(leaseId, payments * 0.0001 ether);
        uint96 paid = uint96(payments * 0.0001 ether);
        send("terminate (buyer)", buyer, address(market), abi.encodeCall(market.terminate, (leaseId, paid)));
        send(
            "terminate (gateway; invoice)", gateway, address(market), abi.encodeCall(market.terminate, (leaseId, paid))
        );
        assertTrue(market.leaseOf(leaseId).state == Market.State.Settled, "lease settled");
        assertEq(token.balanceOf(address(market)) + token.balanceOf(address(channels)), 0, "nothing left escrowed");
        emit log_named_uint("TOTAL (receipts)", txGas);
        emit log_named_uint("TOTAL (execution)", execGas);
        return (execGas, txGas);
    }

    /// Opens a channel with a permit and closes it with the final proof for `paid`.
    function channelSteps(bytes32 leaseId, uint256 paid) internal {
        bytes32 ch = openStep();
        // Off chain: many cumulative balance proofs; only the last one ever
        // reaches the chain.
        bytes memory call = abi.encodeCall(channels.close, (ch, paid, leaseId, proof(ch, paid, leaseId)));
        send("close (final proof)", gateway, address(channels), call);
    }

    function openStep() internal returns (bytes32) {
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = permit(BUYER_KEY, address(channels), 50 ether, deadline);
        bytes memory call = abi.encodeCall(channels.openWithPermit, (gateway, 50 ether, deadline, v, r, s));
        return abi.decode(send("openWithPermit", buyer, address(channels), call), (bytes32));
    }

    function test_full_lease_gas() public {
        emit log_named_uint("-- first lease on a fresh deployment", 0);
        walk(1, 1000);
        emit log_named_uint("-- a lease on a running market", 0);
        (uint256 exec,) = walk(2, 1000);
        assertLe(exec, LEASE_GAS_BUDGET, "execution gas of a lease");
    }

    /// O(1) on chain: 1 payment or 100000 payments, the same gas. (A few gas
    /// of slack: the harness's own memory use shifts with the calldata.)
    function test_gas_does_not_grow_with_payments() public {
        walk(1, 1);
        uint256 snap = vm.snapshotState();
        (uint256 one,) = walk(2, 1);
        vm.revertToState(snap);
        (uint256 many,) = walk(2, 100_000);
        assertLe(many > one ? many - one : one - many, 100, "execution gas for 1 and 100000 payments");
    }
}
