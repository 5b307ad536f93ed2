//! One whole lease on chain, driven from Rust against a real anvil: bind,
//! advertise, list, offer, accept, fee, channel, many off-chain payments
//! (with a receiver restart in the middle), close with the newest proof,
//! both terminate, invoice.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use alloy_primitives::{Address, U256, Uint};
use common::policy;
use common::{Anvil, signer};
use dedge::board::BoardFile;
use dedge::chain::bindings::IEDGToken;
use dedge::chain::eip712::Offer;
use dedge::chain::tx::{TxSender, view};
use dedge::channel::{Receiver, Sender, onchain};
use dedge::market::{self, Capabilities};
use dedge::store::Store;

const EDG: u128 = 1_000_000_000_000_000_000;

fn balance(rpc: &dedge::chain::Rpc, token: Address, who: Address) -> U256 {
    view(rpc, token, &IEDGToken::balanceOfCall { account: who }).unwrap()
}

#[test]
fn a_whole_lease_from_rust() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let nonces = Store::temporary().unwrap();
    let tx = |s| {
        TxSender::new(
            &rpc,
            s,
            anvil.chain_id,
            nonces.tree("nonces").unwrap(),
            policy(),
        )
    };
    let (deployer, buyer, gateway, operator) = (signer(0), signer(1), signer(2), signer(3));
    let (dep_tx, buyer_tx, gw_tx, op_tx) = (tx(&deployer), tx(&buyer), tx(&gateway), tx(&operator));
    for who in [buyer.address(), gateway.address()] {
        dep_tx
            .execute(
                d.token,
                &IEDGToken::transferCall {
                    to: who,
                    value: U256::from(1_000 * EDG),
                },
            )
            .unwrap();
    }

    // Bind, advertise, discover.
    market::register_gateway(&op_tx, &gateway, &d).unwrap();
    let board = BoardFile::load(&common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .board;
    let caps = Capabilities::from_board(&board);
    market::advertise(
        &gw_tx,
        &d,
        "127.0.0.1:7300",
        &caps,
        Duration::from_secs(86_400),
    )
    .unwrap();
    let listings = market::live_adverts(&rpc, &d).unwrap();
    assert_eq!(listings.len(), 1);
    assert_eq!(listings[0].gateway, gateway.address());
    assert_eq!(listings[0].operator, operator.address());
    assert_eq!(listings[0].endpoint, "127.0.0.1:7300");
    assert_eq!(listings[0].capabilities.as_ref().unwrap(), &caps);

    // Offer, accept, fee.
    let offer = Offer {
        buyer: buyer.address(),
        gateway: gateway.address(),
        cpuMillicores: 500,
        memoryBytes: 64 << 20,
        diskBytes: 256 << 20,
        devices: vec!["Random-Integer-Device:Int8:r".into()],
        pricePerSecond: Uint::from(caps.reference_price()),
        maxDuration: 3600,
        paymentInterval: 5,
        image: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
        expiry: Uint::from(u32::MAX),
        nonce: 1,
    };
    let lease = market::propose(&buyer_tx, &d, &offer).unwrap();
    market::accept(&gw_tx, &d, lease).unwrap();
    assert_eq!(
        market::lease(&rpc, &d, lease).unwrap().state,
        2,
        "accepted, not yet valid"
    );
    let treasury0 = balance(&rpc, d.token, deployer.address());
    market::deposit_fee(&buyer_tx, &d, lease).unwrap();
    assert_eq!(
        market::lease(&rpc, &d, lease).unwrap().state,
        3,
        "valid once funded"
    );

    // Channel and payments.
    let deposit = U256::from(50 * EDG);
    let info = onchain::open(&buyer_tx, &d, gateway.address(), deposit).unwrap();
    let pay = Sender::new(
        Store::temporary().unwrap(),
        anvil.chain_id,
        d.channels,
        signer(1),
    )
    .unwrap();
    pay.open(info).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let step = U256::from(EDG / 100);
    {
        let rx = Receiver::new(
            Store::open(dir.path()).unwrap(),
            anvil.chain_id,
            d.channels,
            gateway.address(),
        )
        .unwrap();
        rx.watch(info, lease).unwrap();
        for _ in 0..60 {
            rx.accept(pay.pay(info.id, lease, step).unwrap()).unwrap();
        }
    } // the gateway's agent restarts here
    let rx = Receiver::new(
        Store::open(dir.path()).unwrap(),
        anvil.chain_id,
        d.channels,
        gateway.address(),
    )
    .unwrap();
    for _ in 0..40 {
        rx.accept(pay.pay(info.id, lease, step).unwrap()).unwrap();
    }
    let newest = rx.newest(info.id).unwrap().expect("a proof");
    let paid = step * U256::from(100);
    assert_eq!(newest.amount, paid);

    let gw0 = balance(&rpc, d.token, gateway.address());
    let buyer0 = balance(&rpc, d.token, buyer.address());
    onchain::close(&gw_tx, &d, &newest).unwrap();
    assert_eq!(
        balance(&rpc, d.token, gateway.address()) - gw0,
        paid,
        "gateway paid the newest proof"
    );
    assert_eq!(
        balance(&rpc, d.token, buyer.address()) - buyer0,
        deposit - paid,
        "buyer refunded the rest"
    );

    // Both terminate; the invoice carries both figures and the fee.
    assert!(market::invoice(&rpc, &d, lease).unwrap().is_none());
    market::terminate(&buyer_tx, &d, lease, paid).unwrap();
    market::terminate(&gw_tx, &d, lease, paid).unwrap();
    let inv = market::invoice(&rpc, &d, lease).unwrap().expect("invoice");
    assert_eq!(
        (inv.buyer, inv.seller),
        (buyer.address(), gateway.address())
    );
    assert_eq!(U256::from(inv.buyerReported), paid);
    assert_eq!(U256::from(inv.sellerReported), paid);
    assert_eq!(inv.flags & 8, 0, "not disputed");
    let fee = U256::from(inv.fee);
    assert_eq!(fee, U256::from(EDG), "the devnet's lease fee");
    // The deployer is also the devnet treasury: it received advert + lease fees.
    assert_eq!(balance(&rpc, d.token, deployer.address()) - treasury0, fee);
}
