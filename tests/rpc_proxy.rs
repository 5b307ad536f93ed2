//! The RPC client behind a hostile proxy in front of a real anvil: dropped
//! connections, stalls, garbage, and a forged log the receipts check must
//! catch.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/proxy.rs"]
mod hostile;

use hostile::{Mode, proxy};

use std::time::Duration;

use common::{Anvil, signer};
use dedge::chain::bindings::IRegistry;
use dedge::chain::events::{Filter, Follower, Update};
use dedge::chain::rpc::RpcConfig;
use dedge::chain::tx::TxSender;
use dedge::chain::{Error, Rpc};
use dedge::store::Store;

fn client(urls: Vec<String>) -> Rpc {
    Rpc::new(
        urls,
        RpcConfig {
            timeout: Duration::from_millis(800),
            attempts: 3,
            backoff: Duration::from_millis(10),
        },
    )
}

#[test]
fn dropped_connections_are_retried() {
    let anvil = Anvil::start();
    let rpc = client(vec![proxy(anvil.url.clone(), Mode::DropFirst(2))]);
    assert_eq!(rpc.chain_id().unwrap(), anvil.chain_id);
}

#[test]
fn a_stalled_or_garbage_endpoint_fails_over() {
    let anvil = Anvil::start();
    for mode in [Mode::Stall, Mode::Garbage] {
        let rpc = client(vec![
            proxy(anvil.url.clone(), mode.clone()),
            anvil.url.clone(),
        ]);
        assert_eq!(rpc.chain_id().unwrap(), anvil.chain_id);
        let alone = client(vec![proxy(anvil.url.clone(), mode)]);
        assert!(matches!(
            alone.chain_id(),
            Err(Error::AllEndpointsFailed(_))
        ));
    }
}

/// A node that rewrites a log's data is caught by the receipts-root check
/// before the follower delivers anything.
#[test]
fn a_forged_log_is_rejected() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let direct = anvil.rpc();
    let store = Store::temporary().unwrap();
    let op = signer(3);
    let tx = TxSender::new(
        &direct,
        &op,
        anvil.chain_id,
        store.tree("nonces").unwrap(),
        common::policy(),
    );
    // A registry event to forge: the gateway's registration.
    let gw = signer(2);
    let deadline = alloy_primitives::U256::from(u64::MAX);
    let digest = dedge::chain::eip712::binding_digest(
        gw.address(),
        op.address(),
        alloy_primitives::U256::ZERO,
        deadline,
        &dedge::chain::eip712::registry_domain(anvil.chain_id, d.registry),
    );
    let sig = gw.sign_hash(&digest).unwrap();
    tx.execute(
        d.registry,
        &IRegistry::registerGatewayCall {
            gateway: gw.address(),
            deadline,
            signature: sig.as_bytes().to_vec().into(),
        },
    )
    .unwrap();

    let filter = Filter {
        addresses: vec![d.registry],
        topics0: vec![],
        topic1: None,
    };
    let lying = client(vec![proxy(anvil.url.clone(), Mode::ForgeLogs)]);
    let f = Follower::new(
        store.tree("cursors").unwrap(),
        "registry",
        filter.clone(),
        0,
        0,
    )
    .unwrap();
    let err = f.poll(&lying).unwrap_err();
    assert!(matches!(err, Error::Unverified(_)), "{err}");
    assert!(err.to_string().contains("forged"), "{err}");
    assert_eq!(f.cursor().unwrap().unwrap().next, 0, "nothing consumed");

    // The honest node's answer passes the same check.
    match f.poll(&direct).unwrap() {
        Update::Logs { logs, .. } => assert!(!logs.is_empty()),
        Update::Reorg { .. } => panic!("no reorg here"),
    }
}
