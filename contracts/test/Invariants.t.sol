// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Test, Vm} from "./utils/Test.sol";
import {EDGToken} from "../src/EDGToken.sol";
import {Registry} from "../src/Registry.sol";
import {Market} from "../src/Market.sol";
import {ChannelManager} from "../src/ChannelManager.sol";
import {AgentControl} from "../src/AgentControl.sol";

/// Drives every contract with random actions from a small cast of actors and
/// keeps ghost books the invariants compare against.
contract Handler is Test {
    EDGToken public token;
    Registry public registry;
    Market public market;
    ChannelManager public channels;
    AgentControl public control;
    address public treasury = address(0x7E);
    address public owner = address(0x0E);

    uint256[3] internal buyerKeys = [uint256(0xB1), 0xB2, 0xB3];
    uint256[2] internal gatewayKeys = [uint256(0x61), 0x62];
    address[2] internal operators = [address(0x01), address(0x02)];
    address[] public actors;

    bytes32[] public leaseIds;
    bytes32[] public channelIds;
    mapping(bytes32 => uint256) internal senderKeyOf;

    // ghost books
    uint256 public feesSettled;
    uint256 public advertFeesPaid;
    mapping(bytes32 => uint256) public bestClaimed;
    mapping(bytes32 => uint256) public paidToReceiver;
    mapping(bytes32 => uint256) public deposited;
    uint256 public staleAccepted;
    uint256 public unauthorizedPosts;
    mapping(address => uint64) public postsByOperator;

    constructor() {
        vm.warp(1_800_000_000);
        token = new EDGToken(address(this));
        registry = new Registry(token, treasury, 1 ether, owner);
        market = new Market(token, registry, treasury, 2 ether, owner);
        channels = new ChannelManager(token, 1 days);
        control = new AgentControl(registry);
        for (uint256 i; i < buyerKeys.length; ++i) {
            _fund(vm.addr(buyerKeys[i]));
        }
        for (uint256 i; i < gatewayKeys.length; ++i) {
            address gw = vm.addr(gatewayKeys[i]);
            _fund(gw);
            address op = operators[i];
            _fund(op);
            bytes32 structHash =
                keccak256(abi.encode(registry.BINDING_TYPEHASH(), gw, op, uint256(0), block.timestamp + 1));
            (uint8 v, bytes32 r, bytes32 s) = vm.sign(gatewayKeys[i], _digest(registry.domainSeparator(), structHash));
            vm.prank(op);
            registry.registerGateway(gw, block.timestamp + 1, abi.encodePacked(r, s, v));
            vm.prank(gw);
            registry.advertise(gw, "gw:7300", bytes32(0), "", 1e12, uint40(block.timestamp + 60 days));
            advertFeesPaid += 1 ether;
        }
        actors.push(treasury);
        actors.push(owner);
        actors.push(address(this));
    }

    function _fund(address a) internal {
        token.transfer(a, 10_000_000 ether);
        vm.startPrank(a);
        token.approve(address(market), type(uint256).max);
        token.approve(address(channels), type(uint256).max);
        token.approve(address(registry), type(uint256).max);
        vm.stopPrank();
        actors.push(a);
    }

    function _digest(bytes32 domain, bytes32 structHash) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domain, structHash));
    }

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function leaseCount() external view returns (uint256) {
        return leaseIds.length;
    }

    function channelCount() external view returns (uint256) {
        return channelIds.length;
    }

    function _buyer(uint256 seed) internal view returns (uint256 key, address a) {
        key = buyerKeys[seed % buyerKeys.length];
        a = vm.addr(key);
    }

    function _gateway(uint256 seed) internal view returns (address) {
        return vm.addr(gatewayKeys[seed % gatewayKeys.length]);
    }

    function _lease(uint256 seed) internal view returns (bytes32 id, Market.Lease memory l) {
        if (leaseIds.length == 0) return (bytes32(0), l);
        id = leaseIds[seed % leaseIds.length];
        l = market.leaseOf(id);
    }

    // ---- market actions ----

    function propose(uint256 seed, bool fund) external {
        (, address b) = _buyer(seed);
        Market.Offer memory o;
        o.buyer = b;
        o.gateway = _gateway(seed >> 8);
        o.expiry = uint40(block.timestamp + 1 hours);
        o.nonce = uint64(leaseIds.length);
        vm.prank(b);
        bytes32 id = market.proposeOffer(o);
        leaseIds.push(id);
        if (fund) {
            vm.prank(b);
            market.depositFee(id);
        }
    }

    function accept(uint256 seed) external {
        (bytes32 id, Market.Lease memory l) = _lease(seed);
        if (l.state != Market.State.Proposed) return;
        vm.prank(l.gateway);
        try market.acceptOffer(id) {} catch {}
    }

    function deposit(uint256 seed) external {
        (bytes32 id, Market.Lease memory l) = _lease(seed);
        vm.prank(l.buyer);
        try market.depositFee(id) {} catch {}
    }

    function cancel(uint256 seed, bool byGateway) external {
        (bytes32 id, Market.Lease memory l) = _lease(seed);
        vm.prank(byGateway ? l.gateway : l.buyer);
        try market.cancel(id) {} catch {}
    }

    function terminate(uint256 seed, uint96 reported, uint8 who) external {
        (bytes32 id, Market.Lease memory l) = _lease(seed);
        address caller = who % 3 == 0 ? l.buyer : who % 3 == 1 ? l.gateway : registry.operatorOf(l.gateway);
        vm.prank(caller);
        try market.terminate(id, reported) {
            if (market.leaseOf(id).state == Market.State.Settled) feesSettled += l.fee;
        } catch {}
    }

    function finalize(uint256 seed) external {
        (bytes32 id, Market.Lease memory l) = _lease(seed);
        vm.warp(block.timestamp + 1 days);
        try market.finalize(id) {
            feesSettled += l.fee;
        } catch {}
    }

    function setLeaseFee(uint256 fee) external {
        fee = bound(fee, 0, market.MAX_LEASE_FEE());
        vm.prank(owner);
        market.setLeaseFee(fee);
    }

    // ---- channel actions ----

    function open(uint256 seed, uint96 amount) external {
        (uint256 key, address b) = _buyer(seed);
        amount = uint96(bound(amount, 1, 100_000 ether));
        vm.prank(b);
        bytes32 id = channels.open(_gateway(seed >> 8), amount);
        channelIds.push(id);
        senderKeyOf[id] = key;
        deposited[id] = amount;
    }

    function topUp(uint256 seed, uint96 amount) external {
        if (channelIds.length == 0) return;
        bytes32 id = channelIds[seed % channelIds.length];
        amount = uint96(bound(amount, 1, 100_000 ether));
        vm.prank(vm.addr(senderKeyOf[id]));
        try channels.topUp(id, amount) {
            deposited[id] += amount;
        } catch {}
    }

    function _proof(bytes32 id, uint256 amount) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) =
            vm.sign(senderKeyOf[id], channels.balanceProofDigest(id, amount, bytes32("lease")));
        return abi.encodePacked(r, s, v);
    }

    function claim(uint256 seed, uint256 amount) external {
        if (channelIds.length == 0) return;
        bytes32 id = channelIds[seed % channelIds.length];
        ChannelManager.Channel memory c = channels.channelOf(id);
        if (c.sender == address(0)) return;
        amount = bound(amount, 0, c.deposit);
        bytes memory p = _proof(id, amount);
        vm.prank(c.receiver);
        try channels.claim(id, amount, bytes32("lease"), p) {
            if (amount <= bestClaimed[id]) ++staleAccepted;
            paidToReceiver[id] += amount - c.claimed;
            bestClaimed[id] = amount;
        } catch {}
    }

    function close(uint256 seed, uint256 amount) external {
        if (channelIds.length == 0) return;
        bytes32 id = channelIds[seed % channelIds.length];
        ChannelManager.Channel memory c = channels.channelOf(id);
        if (c.sender == address(0)) return;
        amount = bound(amount, 0, c.deposit);
        bytes memory p = _proof(id, amount);
        vm.prank(c.receiver);
        try channels.close(id, amount, bytes32("lease"), p) {
            if (amount < bestClaimed[id]) ++staleAccepted;
            paidToReceiver[id] += amount - c.claimed;
        } catch {}
    }

    function startClose(uint256 seed, uint96 balance) external {
        if (channelIds.length == 0) return;
        bytes32 id = channelIds[seed % channelIds.length];
        ChannelManager.Channel memory c = channels.channelOf(id);
        vm.prank(c.sender);
        try channels.startClose(id, uint96(bound(balance, 0, c.deposit))) {} catch {}
    }

    function settle(uint256 seed) external {
        if (channelIds.length == 0) return;
        bytes32 id = channelIds[seed % channelIds.length];
        ChannelManager.Channel memory c = channels.channelOf(id);
        vm.warp(block.timestamp + 1 days);
        try channels.settle(id) {
            if (c.closingBalance < bestClaimed[id]) ++staleAccepted;
            paidToReceiver[id] += c.closingBalance - c.claimed;
        } catch {}
    }

    // ---- control ----

    function post(uint256 seed, uint256 who) external {
        address gw = _gateway(seed);
        address caller = actors[who % actors.length];
        address op = registry.operatorOf(gw);
        vm.prank(caller);
        try control.post(gw, hex"01") {
            if (caller != op) ++unauthorizedPosts;
            else ++postsByOperator[gw];
        } catch {}
    }

    function gatewayAt(uint256 i) external view returns (address) {
        return vm.addr(gatewayKeys[i]);
    }
}

contract InvariantsTest is Test {
    Handler internal h;

    function setUp() public {
        h = new Handler();
    }

    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(h);
    }

    /// The handler is not inert: a fixed walk through it reaches settled
    /// leases, paid channels and posted commands, so the invariants below
    /// check real states.
    function test_handler_reaches_every_state() public {
        h.propose(0, true);
        h.accept(0);
        h.terminate(0, 5, 0);
        h.terminate(0, 5, 1);
        assertEq(h.feesSettled(), 2 ether, "a lease settled");
        h.open(0, 10 ether);
        h.claim(0, 4 ether);
        h.claim(0, 3 ether); // stale: refused
        assertEq(h.bestClaimed(h.channelIds(0)), 4 ether, "claimed");
        h.startClose(0, 1 ether);
        h.settle(0);
        assertEq(h.paidToReceiver(h.channelIds(0)), 4 ether, "settled at the best proof");
        uint256 ops = h.actorCount();
        for (uint256 i; i < ops; ++i) {
            h.post(0, i);
        }
        assertEq(h.postsByOperator(h.gatewayAt(0)), 1, "operator posted");
        assertEq(h.unauthorizedPosts(), 0, "nobody else did");
        invariant_token_conservation();
        invariant_channels_pay_at_most_their_deposit();
        invariant_fee_collected_at_most_once();
    }

    /// No EDG is created or destroyed anywhere in the system.
    function invariant_token_conservation() public view {
        EDGToken token = h.token();
        uint256 sum = token.balanceOf(address(h.market())) + token.balanceOf(address(h.channels()))
            + token.balanceOf(address(h.registry()));
        for (uint256 i; i < h.actorCount(); ++i) {
            sum += token.balanceOf(h.actors(i));
        }
        assertEq(sum, token.TOTAL_SUPPLY(), "supply conserved");
    }

    /// The channel manager holds exactly the unpaid part of open channels,
    /// and no channel ever paid out more than was deposited into it.
    function invariant_channels_pay_at_most_their_deposit() public view {
        ChannelManager channels = h.channels();
        uint256 escrow;
        for (uint256 i; i < h.channelCount(); ++i) {
            bytes32 id = h.channelIds(i);
            ChannelManager.Channel memory c = channels.channelOf(id);
            assertLe(c.claimed, c.deposit, "claimed within deposit");
            escrow += c.deposit - c.claimed;
            assertLe(h.paidToReceiver(id), h.deposited(id), "paid within deposit");
        }
        assertEq(h.token().balanceOf(address(channels)), escrow, "escrow matches open channels");
    }

    /// A stale proof never moved money past a newer one.
    function invariant_stale_proof_never_wins() public view {
        assertEq(h.staleAccepted(), 0, "stale proof accepted");
        ChannelManager channels = h.channels();
        for (uint256 i; i < h.channelCount(); ++i) {
            bytes32 id = h.channelIds(i);
            ChannelManager.Channel memory c = channels.channelOf(id);
            if (c.sender != address(0)) assertEq(c.claimed, h.bestClaimed(id), "claimed is the best proof");
        }
    }

    /// Each settled lease paid its fee to the treasury once; the market holds
    /// exactly the fees of leases not yet settled or cancelled.
    function invariant_fee_collected_at_most_once() public view {
        Market market = h.market();
        uint256 escrow;
        uint256 settled;
        for (uint256 i; i < h.leaseCount(); ++i) {
            Market.Lease memory l = market.leaseOf(h.leaseIds(i));
            if (l.state == Market.State.Settled) settled += l.fee;
            else escrow += l.fee;
        }
        assertEq(settled, h.feesSettled(), "settled fees match the books");
        assertEq(h.token().balanceOf(address(market)), escrow, "market holds open escrow only");
        assertEq(h.token().balanceOf(h.treasury()), h.advertFeesPaid() + settled, "treasury got each fee once");
    }

    /// Only a gateway's operator ever posted a command for it, in sequence.
    function invariant_only_operator_controls_its_gateway() public view {
        assertEq(h.unauthorizedPosts(), 0, "unauthorized command");
        for (uint256 i; i < 2; ++i) {
            address gw = h.gatewayAt(i);
            assertEq(h.control().sequence(gw), h.postsByOperator(gw), "sequence counts operator posts");
        }
    }
}
