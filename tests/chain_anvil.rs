//! The chain client against a real anvil with the real contracts: EIP-712
//! identical in Rust and Solidity, transactions, reverts, nonces, fee bumps.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use alloy_sol_types::SolEvent;
use common::{Anvil, signer};
use dedge::chain::bindings::{IChannelManager, IEDGToken, IMarket, IRegistry};
use dedge::chain::eip712::{self, Offer};
use dedge::chain::rpc::RpcConfig;
use dedge::chain::tx::{TxPolicy, TxSender};
use dedge::chain::{Deployment, Error, Rpc, Signer};
use dedge::store::Store;
use serde_json::json;

const EDG: u128 = 1_000_000_000_000_000_000;

fn fast() -> TxPolicy {
    common::policy()
}

struct World {
    anvil: Anvil,
    rpc: Rpc,
    d: Deployment,
    store: Store,
}

impl World {
    fn new() -> World {
        let anvil = Anvil::start();
        let d = anvil.deploy();
        let rpc = anvil.rpc();
        World {
            anvil,
            rpc,
            d,
            store: Store::temporary().unwrap(),
        }
    }

    fn sender<'a>(&'a self, s: &'a Signer) -> TxSender<'a> {
        TxSender::new(
            &self.rpc,
            s,
            self.anvil.chain_id,
            self.store.tree("nonces").unwrap(),
            fast(),
        )
    }

    /// Deployer (account 0) sends EDG to `to`.
    fn fund(&self, to: Address, edg: u128) {
        let deployer = signer(0);
        self.sender(&deployer)
            .execute(
                self.d.token,
                &IEDGToken::transferCall {
                    to,
                    value: U256::from(edg * EDG),
                },
            )
            .unwrap();
    }

    fn balance(&self, who: Address) -> U256 {
        let s = signer(0);
        self.sender(&s)
            .view(self.d.token, &IEDGToken::balanceOfCall { account: who })
            .unwrap()
    }

    /// Operator (account 3) binds gateway (account 2) with the gateway's
    /// Rust-made EIP-712 consent.
    fn register_gateway(&self) {
        let (gw, op) = (signer(2), signer(3));
        let deadline = U256::from(u64::MAX);
        let digest = eip712::binding_digest(
            gw.address(),
            op.address(),
            U256::ZERO,
            deadline,
            &eip712::registry_domain(self.anvil.chain_id, self.d.registry),
        );
        let sig = gw.sign_hash(&digest).unwrap();
        self.sender(&op)
            .execute(
                self.d.registry,
                &IRegistry::registerGatewayCall {
                    gateway: gw.address(),
                    deadline,
                    signature: Bytes::from(sig.as_bytes().to_vec()),
                },
            )
            .unwrap();
    }
}

fn offer(buyer: Address, gateway: Address) -> Offer {
    Offer {
        buyer,
        gateway,
        cpuMillicores: 500,
        memoryBytes: 64 << 20,
        diskBytes: 256 << 20,
        devices: vec![
            "Random-Integer-Device:Int8:r".into(),
            "Random-Boolean-Device:Bool:rw".into(),
        ],
        pricePerSecond: alloy_primitives::Uint::from(1_000_000_000_000u64),
        maxDuration: 3600,
        paymentInterval: 30,
        image: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        expiry: alloy_primitives::Uint::from(1_900_000_000u64),
        nonce: 7,
    }
}

#[test]
fn chain_id_check_refuses_the_wrong_chain() {
    let anvil = Anvil::start();
    let ok = Rpc::connect(
        vec![anvil.url.clone()],
        anvil.chain_id,
        RpcConfig::default(),
    );
    assert!(ok.is_ok());
    let err = Rpc::connect(vec![anvil.url.clone()], 1, RpcConfig::default())
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::WrongChain { expected: 1, .. }),
        "{err}"
    );
}

#[test]
fn failover_reaches_the_live_endpoint() {
    let anvil = Anvil::start();
    let rpc = Rpc::new(
        vec!["http://127.0.0.1:9".into(), anvil.url.clone()],
        RpcConfig {
            timeout: Duration::from_secs(2),
            attempts: 2,
            backoff: Duration::from_millis(5),
        },
    );
    assert_eq!(rpc.chain_id().unwrap(), anvil.chain_id);
    let answers = rpc
        .batch(&[
            ("eth_chainId", json!([])),
            ("eth_getBalance", json!(["0xnot-an-address", "latest"])),
        ])
        .unwrap();
    assert!(answers[0].is_ok());
    assert!(
        matches!(answers[1], Err(Error::Rpc { .. })),
        "per-call errors stay per call"
    );
}

/// The offer hash computed in Rust equals Market.hashOffer on chain.
#[test]
fn offer_hash_is_identical_in_rust_and_solidity() {
    let w = World::new();
    let o = offer(signer(1).address(), signer(2).address());
    let ours = eip712::offer_hash(&o, &eip712::market_domain(w.anvil.chain_id, w.d.market));
    let s = signer(0);
    let theirs: B256 = w
        .sender(&s)
        .view(w.d.market, &IMarket::hashOfferCall { offer: o.clone() })
        .unwrap();
    assert_eq!(ours, theirs);
    let mut other = o;
    other.devices.pop();
    let changed: B256 = w
        .sender(&s)
        .view(w.d.market, &IMarket::hashOfferCall { offer: other })
        .unwrap();
    assert_ne!(changed, theirs, "the device list is part of the hash");
}

/// A balance proof signed in Rust is accepted by the contract; the digest
/// the contract computes, signed by the node (eth_signTypedData_v4),
/// recovers in Rust.
#[test]
fn balance_proofs_cross_verify() {
    let w = World::new();
    let (buyer, gateway) = (signer(1), signer(2));
    w.fund(buyer.address(), 1000);
    let b = w.sender(&buyer);
    b.execute(
        w.d.token,
        &IEDGToken::approveCall {
            spender: w.d.channels,
            value: U256::MAX,
        },
    )
    .unwrap();
    let receipt = b
        .execute(
            w.d.channels,
            &IChannelManager::openCall {
                receiver: gateway.address(),
                deposit: alloy_primitives::Uint::from(100 * EDG),
            },
        )
        .unwrap();
    let opened = receipt
        .logs
        .iter()
        .find_map(|l| {
            IChannelManager::ChannelOpened::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
        })
        .expect("ChannelOpened");
    let lease = keccak256("lease");
    let amount = U256::from(7 * EDG);
    let domain = eip712::channels_domain(w.anvil.chain_id, w.d.channels);
    let digest = eip712::balance_proof_digest(opened.channelId, amount, lease, &domain);
    let on_chain: B256 = b
        .view(
            w.d.channels,
            &IChannelManager::balanceProofDigestCall {
                channelId: opened.channelId,
                amount,
                leaseId: lease,
            },
        )
        .unwrap();
    assert_eq!(digest, on_chain);

    // Rust signs, the contract verifies and pays.
    let sig = buyer.sign_hash(&digest).unwrap();
    let before = w.balance(gateway.address());
    w.sender(&gateway)
        .execute(
            w.d.channels,
            &IChannelManager::claimCall {
                channelId: opened.channelId,
                amount,
                leaseId: lease,
                signature: Bytes::from(sig.as_bytes().to_vec()),
            },
        )
        .unwrap();
    assert_eq!(w.balance(gateway.address()) - before, amount);

    // The node signs the typed data, Rust recovers the signer.
    let typed = json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}
            ],
            "BalanceProof": [
                {"name": "channelId", "type": "bytes32"}, {"name": "amount", "type": "uint256"},
                {"name": "leaseId", "type": "bytes32"}
            ]
        },
        "primaryType": "BalanceProof",
        "domain": {"name": "dEdge Channels", "version": "1", "chainId": w.anvil.chain_id, "verifyingContract": w.d.channels},
        "message": {"channelId": opened.channelId, "amount": amount.to_string(), "leaseId": lease}
    });
    let node_sig: Bytes = w
        .rpc
        .call("eth_signTypedData_v4", json!([buyer.address(), typed]))
        .unwrap();
    let sig = alloy_primitives::Signature::try_from(node_sig.as_ref()).unwrap();
    assert_eq!(
        dedge::chain::signer::recover(&digest, &sig).unwrap(),
        buyer.address()
    );
}

#[test]
fn reverts_come_back_with_their_reason() {
    let w = World::new();
    w.register_gateway();
    let buyer = signer(1);
    let b = w.sender(&buyer);
    let lease =
        dedge::market::propose(&b, &w.d, &offer(buyer.address(), signer(2).address())).unwrap();
    // The buyer is not the gateway: acceptOffer reverts at estimation.
    let err = b
        .execute(w.d.market, &IMarket::acceptOfferCall { offerHash: lease })
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("NotGateway"), "{text}");
}

#[test]
fn nonces_persist_across_restarts() {
    let w = World::new();
    let s = signer(4);
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let tx = TxSender::new(
            &w.rpc,
            &s,
            w.anvil.chain_id,
            store.tree("nonces").unwrap(),
            fast(),
        );
        tx.send(signer(3).address(), Bytes::new(), U256::from(1))
            .unwrap();
        tx.send(signer(3).address(), Bytes::new(), U256::from(1))
            .unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let next: Option<u64> = store.tree("nonces").unwrap().get(s.address()).unwrap();
    assert_eq!(next, Some(2));
    let tx = TxSender::new(
        &w.rpc,
        &s,
        w.anvil.chain_id,
        store.tree("nonces").unwrap(),
        fast(),
    );
    tx.send(signer(3).address(), Bytes::new(), U256::from(1))
        .unwrap();
    let count: alloy_primitives::U64 = w
        .rpc
        .call("eth_getTransactionCount", json!([s.address(), "latest"]))
        .unwrap();
    assert_eq!(count.to::<u64>(), 3);
}

/// With mining paused, the first transaction sits in the pool; the sender
/// re-sends it with higher fees under the same nonce, and the replacement is
/// what gets mined.
#[test]
fn stuck_transaction_is_replaced_with_higher_fees() {
    let anvil = Anvil::start();
    let rpc = anvil.rpc();
    let store = Store::temporary().unwrap();
    let s = signer(1);
    let policy = TxPolicy {
        bump_after: Duration::from_millis(400),
        ..fast()
    };
    let sender = TxSender::new(
        &rpc,
        &s,
        anvil.chain_id,
        store.tree("nonces").unwrap(),
        policy,
    );
    let _: serde_json::Value = rpc.call("evm_setAutomine", json!([false])).unwrap();
    let url = anvil.url.clone();
    let miner = std::thread::spawn(move || {
        // After the first bump, mine one block.
        std::thread::sleep(Duration::from_millis(900));
        let rpc = Rpc::new(vec![url], RpcConfig::default());
        let _: serde_json::Value = rpc.call("evm_mine", json!([])).unwrap();
        let _: serde_json::Value = rpc.call("evm_setAutomine", json!([true])).unwrap();
    });
    let receipt = sender
        .send(signer(2).address(), Bytes::new(), U256::from(5))
        .unwrap();
    miner.join().unwrap();
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Tx {
        max_fee_per_gas: U256,
        nonce: alloy_primitives::U64,
    }
    let tx: Tx = rpc
        .call(
            "eth_getTransactionByHash",
            json!([receipt.transaction_hash]),
        )
        .unwrap();
    assert_eq!(tx.nonce.to::<u64>(), 0, "same nonce");
    // What the first attempt offered: twice the base fee plus the node's tip.
    let head: serde_json::Value = rpc
        .call("eth_getBlockByNumber", json!(["0x0", false]))
        .unwrap();
    let base = U256::from_str_radix(
        head["baseFeePerGas"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let tip: U256 = rpc.call("eth_maxPriorityFeePerGas", json!([])).unwrap();
    let first_fee = base * U256::from(2) + tip;
    assert!(
        tx.max_fee_per_gas > first_fee,
        "the mined one carries bumped fees: {} vs {first_fee}",
        tx.max_fee_per_gas
    );
}

fn market_follower(w: &World, confirmations: u64) -> dedge::chain::events::Follower {
    use dedge::chain::events::{Filter, Follower};
    Follower::new(
        w.store.tree("cursors").unwrap(),
        "market",
        Filter {
            addresses: vec![w.d.market],
            topics0: vec![],
            topic1: None,
        },
        0,
        confirmations,
    )
    .unwrap()
}

/// Drains the follower: returns every log it delivers until it is caught up.
fn drain(
    f: &dedge::chain::events::Follower,
    rpc: &Rpc,
) -> Result<Vec<dedge::chain::tx::Log>, Error> {
    use dedge::chain::events::Update;
    let mut all = Vec::new();
    loop {
        match f.poll(rpc)? {
            Update::Logs { logs, cursor } => {
                let done = logs.is_empty() && f.cursor()?.as_ref() == Some(&cursor);
                all.extend(logs);
                f.commit(&cursor)?;
                if done {
                    return Ok(all);
                }
            }
            Update::Reorg { from_block } => panic!("unexpected reorg from {from_block}"),
        }
    }
}

fn accepted_ids(logs: &[dedge::chain::tx::Log]) -> Vec<B256> {
    logs.iter()
        .filter_map(|l| {
            IMarket::OfferAccepted::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
        })
        .map(|e| e.leaseId)
        .collect()
}

/// An acceptance the follower delivered is undone by a reorg; the follower
/// reports it, rewinds, and delivers the new chain (where the acceptance is
/// absent until it happens again).
#[test]
fn reorg_undoes_an_acceptance_and_the_follower_follows() {
    use dedge::chain::events::Update;
    let w = World::new();
    w.register_gateway();
    let (buyer, gateway) = (signer(1), signer(2));
    let lease = dedge::market::propose(
        &w.sender(&buyer),
        &w.d,
        &offer(buyer.address(), gateway.address()),
    )
    .unwrap();
    let f = market_follower(&w, 0).with_max_range(3);
    drain(&f, &w.rpc).unwrap();
    let snapshot: U256 = w.rpc.call("evm_snapshot", json!([])).unwrap();
    w.sender(&gateway)
        .execute(w.d.market, &IMarket::acceptOfferCall { offerHash: lease })
        .unwrap();
    let seen = drain(&f, &w.rpc).unwrap();
    assert_eq!(accepted_ids(&seen), vec![lease], "acceptance delivered");

    // The acceptance's block is replaced by empty ones.
    let reverted: bool = w.rpc.call("evm_revert", json!([snapshot])).unwrap();
    assert!(reverted);
    // The reorged-out transaction must not come back in the new blocks: in
    // the reorg simulated here the acceptance is gone for good (anvil may
    // otherwise hand it back to its pool).
    let _: serde_json::Value = w.rpc.call("anvil_dropAllTransactions", json!([])).unwrap();
    for _ in 0..3 {
        let _: serde_json::Value = w.rpc.call("evm_mine", json!([])).unwrap();
    }
    match f.poll(&w.rpc).unwrap() {
        Update::Reorg { .. } => {}
        other => panic!("expected a reorg, got {other:?}"),
    }
    let after = drain(&f, &w.rpc).unwrap();
    assert!(
        accepted_ids(&after).is_empty(),
        "the acceptance is gone from the new chain"
    );
    let state = w
        .sender(&buyer)
        .view(w.d.market, &IMarket::leaseOfCall { leaseId: lease })
        .unwrap();
    assert_eq!(state.state, 1, "back to Proposed on chain");

    // The gateway accepts again (its nonce store must follow the chain back).
    w.store
        .tree("nonces")
        .unwrap()
        .remove(gateway.address())
        .unwrap();
    w.sender(&gateway)
        .execute(w.d.market, &IMarket::acceptOfferCall { offerHash: lease })
        .unwrap();
    assert_eq!(accepted_ids(&drain(&f, &w.rpc).unwrap()), vec![lease]);
}

#[test]
fn logs_are_verified_against_the_receipts_root() {
    let w = World::new();
    w.register_gateway();
    let buyer = signer(1);
    dedge::market::propose(
        &w.sender(&buyer),
        &w.d,
        &offer(buyer.address(), signer(2).address()),
    )
    .unwrap();
    let logs = drain(&market_follower(&w, 0), &w.rpc).unwrap();
    let proposed = logs
        .iter()
        .find(|l| l.topics[0] == IMarket::OfferProposed::SIGNATURE_HASH)
        .expect("OfferProposed delivered");
    for l in &logs {
        dedge::chain::verify::log(&w.rpc, l).unwrap();
    }
    let mut relabelled = proposed.clone();
    relabelled.block_number = Some(alloy_primitives::U64::from(9999));
    let err = dedge::chain::verify::log(&w.rpc, &relabelled).unwrap_err();
    assert!(err.to_string().contains("relabelled"), "{err}");
    let mut forged = proposed.clone();
    forged.data = Bytes::from(vec![0u8; forged.data.len()]);
    let err = dedge::chain::verify::log(&w.rpc, &forged).unwrap_err();
    assert!(err.to_string().contains("forged"), "{err}");
}

/// Blocking calls run off the executor: many concurrent async calls complete
/// on a single-threaded smol executor.
#[test]
fn async_calls_do_not_block_the_executor() {
    let anvil = Anvil::start();
    let rpc = std::sync::Arc::new(anvil.rpc());
    let ids: Vec<alloy_primitives::U64> = smol::block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let rpc = rpc.clone();
                smol::spawn(async move {
                    rpc.call_async::<alloy_primitives::U64>("eth_chainId", json!([]))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await);
        }
        out
    });
    assert!(ids.iter().all(|id| id.to::<u64>() == anvil.chain_id));
}

/// The buyer's uncooperative close from Rust: start, the gateway claims a
/// newer proof during the challenge, settle after it.
#[test]
fn uncooperative_close_from_rust() {
    use dedge::channel::{Sender, onchain};
    let w = World::new();
    let (buyer, gateway) = (signer(1), signer(2));
    w.fund(buyer.address(), 100);
    let b = w.sender(&buyer);
    let g = w.sender(&gateway);
    let info = onchain::open(&b, &w.d, gateway.address(), U256::from(10 * EDG)).unwrap();
    let pay = Sender::new(
        Store::temporary().unwrap(),
        w.anvil.chain_id,
        w.d.channels,
        signer(1),
    )
    .unwrap();
    pay.open(info).unwrap();
    let lease = keccak256("l");
    let proof = pay.pay(info.id, lease, U256::from(4 * EDG)).unwrap();
    onchain::start_close(&b, &w.d, info.id, U256::from(EDG)).unwrap(); // states less than it signed
    onchain::claim(&g, &w.d, &proof).unwrap();
    let err = onchain::settle(&b, &w.d, info.id).unwrap_err();
    assert!(err.to_string().contains("TooEarly"), "{err}");
    let _: serde_json::Value = w.rpc.call("evm_increaseTime", json!([86_400])).unwrap();
    let _: serde_json::Value = w.rpc.call("evm_mine", json!([])).unwrap();
    let gw0 = w.balance(gateway.address());
    onchain::settle(&b, &w.d, info.id).unwrap();
    assert_eq!(
        w.balance(gateway.address()),
        gw0,
        "nothing more: the newer proof was already paid"
    );
    assert_eq!(w.balance(gateway.address()), U256::from(4 * EDG));
}

/// A stored nonce ahead of the node's (our last transaction left its pool):
/// the saved transaction is re-sent, and without one the nonce is reused.
#[test]
fn a_nonce_gap_is_closed() {
    use alloy_consensus::TxEip1559;
    let w = World::new();
    let s = signer(4);
    let nonces = w.store.tree("nonces").unwrap();
    // Signed but lost: nonce 0 is in our store, not in the node's pool.
    let lost = TxEip1559 {
        chain_id: w.anvil.chain_id,
        nonce: 0,
        gas_limit: 21_000,
        max_fee_per_gas: 100_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: signer(3).address().into(),
        value: U256::from(7),
        ..Default::default()
    };
    let (raw, lost_hash) = s.sign_tx(lost).unwrap();
    nonces.put(s.address(), &1u64).unwrap();
    nonces
        .put(
            [b"pending/".as_slice(), s.address().as_slice()].concat(),
            &(0u64, raw.to_vec()),
        )
        .unwrap();
    w.sender(&s)
        .send(signer(3).address(), Bytes::new(), U256::from(1))
        .unwrap();
    let lost_receipt: Option<serde_json::Value> = w
        .rpc
        .call("eth_getTransactionReceipt", json!([lost_hash]))
        .unwrap();
    assert!(
        lost_receipt.is_some(),
        "the lost transaction was re-sent and mined"
    );

    // No saved bytes for the gap: the node's nonce is reused.
    let t = signer(3);
    nonces.put(t.address(), &9u64).unwrap();
    w.sender(&t)
        .send(signer(4).address(), Bytes::new(), U256::from(1))
        .unwrap();
    let count: alloy_primitives::U64 = w
        .rpc
        .call("eth_getTransactionCount", json!([t.address(), "latest"]))
        .unwrap();
    assert_eq!(count.to::<u64>(), 1, "nonce 0 reused, no gap left behind");
}

/// A failover endpoint on another chain is never used, even when the
/// first endpoint dies.
#[test]
fn failover_never_switches_chains() {
    let right = Anvil::start();
    let wrong = Anvil::start();
    let rpc = Rpc::connect(
        vec![right.url.clone(), wrong.url.clone()],
        right.chain_id,
        RpcConfig {
            timeout: Duration::from_secs(2),
            attempts: 1,
            backoff: Duration::from_millis(5),
        },
    )
    .unwrap();
    let right_id = right.chain_id;
    drop(right);
    let answer = rpc.call::<alloy_primitives::U64>("eth_chainId", json!([]));
    assert!(
        answer.is_err(),
        "answered {answer:?}: right is {right_id}, wrong {}",
        wrong.chain_id
    );
    let err = answer.unwrap_err();
    assert!(
        err.to_string().contains("all RPC endpoints failed"),
        "{err}"
    );
    assert!(
        matches!(err, Error::AllEndpointsFailed(ref e) if matches!(**e, Error::WrongChain { .. })),
        "{err}"
    );
}
