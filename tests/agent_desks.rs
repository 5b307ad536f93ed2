//! The agent's offer and payment desks behind its p2p endpoint, against a
//! real anvil. A buyer proposes on chain and sends the signed offer over an
//! encrypted session: a fair offer is accepted on chain (asked again, the
//! same answer without a second transaction); beyond capacity, forged,
//! unproposed, relayed and underpriced offers are refused with their reason
//! and left unaccepted. Then the channel: refused before the fee is
//! deposited, for someone else's channel or lease; proven for the buyer's.
//! Payments are acknowledged once durable; stale, forged and over-deposit
//! proofs are refused; the lease's paid amount follows.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, RwLock};

use alloy_primitives::{Address, B256, U256, Uint};
use common::{Anvil, policy, signer};
use dedge::agent::admission::Policy;
use dedge::agent::endpoint;
use dedge::agent::lease::{LeaseBook, State};
use dedge::agent::offers::OfferDesk;
use dedge::agent::payments::PaymentDesk;
use dedge::agent::settle::{Progress, Settler};
use dedge::board::BoardFile;
use dedge::chain::bindings::IEDGToken;
use dedge::chain::eip712::{self, Offer};
use dedge::chain::tx::TxSender;
use dedge::chain::{Deployment, Rpc, Signer};
use dedge::channel::{Receiver, Sender, onchain};
use dedge::edgex::catalogue::Catalogue;
use dedge::market::{self, Capabilities};
use dedge::p2p::{self, Body, OfferTerms};
use dedge::store::Store;

struct Seller {
    rpc: Rpc,
    d: Deployment,
    gateway: Signer,
    store: Store,
    book: LeaseBook,
    policy: Policy,
    catalogue: RwLock<Catalogue>,
    receiver: Receiver,
}

impl Seller {
    fn seller_tx(&self) -> TxSender<'_> {
        TxSender::new(
            &self.rpc,
            &self.gateway,
            self.d.chain_id,
            self.store.tree("nonces").unwrap(),
            policy(),
        )
    }

    fn handle(&self, peer: Address, body: Body) -> Option<Body> {
        match body {
            Body::Offer { terms, signature } => {
                let tx = self.seller_tx();
                let desk = OfferDesk {
                    book: &self.book,
                    policy: &self.policy,
                    catalogue: &self.catalogue,
                    rpc: &self.rpc,
                    deployment: &self.d,
                    seller: &tx,
                };
                Some(desk.take(peer, &terms, &signature, now()))
            }
            Body::ChannelProof { lease, channel } => {
                Some(self.payments().channel_proof(peer, lease, channel, now()))
            }
            Body::Payment {
                lease,
                channel,
                amount,
                signature,
            } => Some(
                self.payments()
                    .payment(peer, lease, channel, amount, signature),
            ),
            Body::Terminate { lease, .. } => Some(self.terminate(peer, lease)),
            _ => Some(Body::Error {
                message: "not handled here".into(),
            }),
        }
    }
}

impl Seller {
    /// The buyer ends its lease: terminating, then one settle step.
    fn terminate(&self, peer: Address, lease: [u8; 32]) -> Body {
        let l = self.book.get(&lease).unwrap().unwrap();
        assert_eq!(Address::from(l.terms.buyer), peer);
        if l.state != State::Terminating && l.state != State::Settled {
            self.book
                .transition(
                    &lease,
                    State::Terminating,
                    now(),
                    Some("buyer".into()),
                    |_| {},
                )
                .unwrap();
        }
        let tx = self.seller_tx();
        let settler = Settler {
            book: &self.book,
            receiver: &self.receiver,
            rpc: &self.rpc,
            deployment: &self.d,
            seller: &tx,
        };
        let progress = settler.step(&lease, now()).unwrap();
        let state = self.book.get(&lease).unwrap().unwrap().state;
        assert_eq!(progress == Progress::Settled, state == State::Settled);
        Body::Status {
            lease,
            state: state.name().into(),
            detail: String::new(),
        }
    }

    fn payments(&self) -> PaymentDesk<'_> {
        PaymentDesk {
            book: &self.book,
            receiver: &self.receiver,
            rpc: &self.rpc,
            deployment: &self.d,
            gateway: self.gateway.address(),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn offers_over_the_endpoint_are_accepted_or_refused_with_a_reason() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let nonces = Store::temporary().unwrap();
    let tx = |s| TxSender::new(&rpc, s, anvil.chain_id, nonces.tree("n").unwrap(), policy());
    let (deployer, buyer, gateway, operator) = (signer(0), signer(1), signer(2), signer(3));
    for to in [buyer.address(), signer(4).address()] {
        tx(&deployer)
            .execute(
                d.token,
                &IEDGToken::transferCall {
                    to,
                    value: U256::from(10u128.pow(21)),
                },
            )
            .unwrap();
    }
    market::register_gateway(&tx(&operator), &gateway, &d).unwrap();

    let board = BoardFile::load(&common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .board;
    let caps = Capabilities::from_board(&board);
    let store = Store::temporary().unwrap();
    let seller = Arc::new(Seller {
        rpc: anvil.rpc(),
        d,
        gateway: signer(2),
        book: LeaseBook::open(store.tree("leases").unwrap()).unwrap(),
        receiver: Receiver::new(store.clone(), anvil.chain_id, d.channels, gateway.address())
            .unwrap(),
        store,
        policy: Policy::from_board(&board, gateway.address()),
        catalogue: RwLock::new(Catalogue::default()),
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handler = {
        let s = seller.clone();
        Arc::new(move |peer, body| s.handle(peer, body))
    };
    let _endpoint = endpoint::serve(listener, signer(2), anvil.chain_id, handler);

    let domain = eip712::market_domain(anvil.chain_id, d.market);
    let mut nonce = 0u64;
    let mut offer = |cpu: u32| {
        nonce += 1;
        Offer {
            buyer: buyer.address(),
            gateway: gateway.address(),
            cpuMillicores: cpu,
            memoryBytes: 64 << 20,
            diskBytes: 256 << 20,
            devices: vec![],
            pricePerSecond: Uint::from(caps.lease_price(cpu, 64 << 20, 0)),
            maxDuration: 3600,
            paymentInterval: 5,
            image: "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi".into(),
            expiry: Uint::from(u32::MAX),
            nonce,
        }
    };
    // One session per question, as a buyer CLI would open.
    let ask = |o: &Offer, by: &Signer, link: &Signer| -> Body {
        let id = eip712::offer_hash(o, &domain);
        let signature = by.sign_hash(&id).unwrap().as_bytes().to_vec();
        let stream = TcpStream::connect(addr).unwrap();
        let mut s = p2p::connect(stream, link, anvil.chain_id, gateway.address()).unwrap();
        s.send(Body::Offer {
            terms: OfferTerms::from(o),
            signature,
        })
        .unwrap();
        s.recv().unwrap()
    };
    let on_chain = |id: B256| market::lease(&rpc, &d, id).unwrap().state;
    let buyer_tx = tx(&buyer);

    // A fair offer: accepted on chain, recorded; asked again, same answer.
    let fair = offer(500);
    let id = market::propose(&buyer_tx, &d, &fair).unwrap();
    assert_eq!(
        ask(&fair, &buyer, &buyer),
        Body::OfferAccepted { lease: id.0 }
    );
    assert_eq!(on_chain(id), 2, "accepted on chain");
    assert_eq!(
        seller.book.get(&id.0).unwrap().unwrap().state,
        State::Accepted
    );
    assert_eq!(
        ask(&fair, &buyer, &buyer),
        Body::OfferAccepted { lease: id.0 }
    );

    let refused = |answer: Body, why: &str| match answer {
        Body::OfferRefused { reason, .. } => assert!(reason.contains(why), "{reason} lacks {why}"),
        other => panic!("{why}: {other:?}"),
    };
    // Beyond capacity (500 of 1000 millicores are taken).
    let big = offer(600);
    let big_id = market::propose(&buyer_tx, &d, &big).unwrap();
    refused(
        ask(&big, &buyer, &buyer),
        "CPU (millicores): asked 600, 500 free",
    );
    assert_eq!(on_chain(big_id), 1, "still only proposed");
    assert_eq!(
        seller.book.get(&big_id.0).unwrap().unwrap().state,
        State::Refused
    );
    refused(ask(&big, &buyer, &buyer), "CPU (millicores)");
    // Signed by someone else.
    let forged = offer(100);
    market::propose(&buyer_tx, &d, &forged).unwrap();
    refused(ask(&forged, &signer(4), &buyer), "not by its buyer");
    // Never proposed on chain.
    refused(ask(&offer(100), &buyer, &buyer), "is not proposed on chain");
    // Sent over someone else's link.
    let relayed = offer(100);
    market::propose(&buyer_tx, &d, &relayed).unwrap();
    refused(ask(&relayed, &buyer, &signer(4)), "this link is with");
    // Underpriced.
    let mut cheap = offer(100);
    cheap.pricePerSecond = Uint::from(caps.lease_price(100, 64 << 20, 0) - 1);
    market::propose(&buyer_tx, &d, &cheap).unwrap();
    refused(ask(&cheap, &buyer, &buyer), "these resources cost");

    // The channel that pays for the accepted lease.
    let gw = gateway.address();
    let error = |answer: Body, why: &str| match answer {
        Body::Error { message } => assert!(message.contains(why), "{message} lacks {why}"),
        other => panic!("{why}: {other:?}"),
    };
    let mine = onchain::open(&buyer_tx, &d, gw, U256::from(10u128.pow(18))).unwrap();
    let proof_of = |channel: B256| Body::ChannelProof {
        lease: id.0,
        channel: channel.0,
    };
    error(
        say(addr, &buyer, anvil.chain_id, gw, proof_of(mine.id)),
        "the fee is not deposited",
    );
    market::deposit_fee(&buyer_tx, &d, id).unwrap();
    let stranger = signer(4);
    let theirs = onchain::open(&tx(&stranger), &d, gw, U256::from(10u128.pow(18))).unwrap();
    error(
        say(addr, &buyer, anvil.chain_id, gw, proof_of(theirs.id)),
        "not from the buyer",
    );
    error(
        say(addr, &signer(4), anvil.chain_id, gw, proof_of(theirs.id)),
        "is not yours",
    );
    match say(addr, &buyer, anvil.chain_id, gw, proof_of(mine.id)) {
        Body::Status { state, .. } => assert_eq!(state, "channel proven"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        seller.book.get(&id.0).unwrap().unwrap().state,
        State::ChannelProven
    );

    // Payments: acknowledged once durable; stale, forged and over-deposit
    // proofs refused.
    let pay = Sender::new(
        Store::temporary().unwrap(),
        anvil.chain_id,
        d.channels,
        signer(1),
    )
    .unwrap();
    pay.open(mine).unwrap();
    let payment = |p: &dedge::channel::Proof| Body::Payment {
        lease: p.lease.0,
        channel: p.channel.0,
        amount: p.amount.to_be_bytes(),
        signature: p.signature.clone(),
    };
    let p1 = pay.pay(mine.id, id, U256::from(1000)).unwrap();
    assert_eq!(
        say(addr, &buyer, anvil.chain_id, gw, payment(&p1)),
        Body::PaymentAck {
            lease: id.0,
            amount: p1.amount.to_be_bytes()
        }
    );
    assert_eq!(seller.book.get(&id.0).unwrap().unwrap().paid, 1000);
    error(
        say(addr, &buyer, anvil.chain_id, gw, payment(&p1)),
        "stale proof",
    );
    let mut forged = pay.pay(mine.id, id, U256::from(1)).unwrap();
    let digest = eip712::balance_proof_digest(
        mine.id,
        forged.amount,
        id,
        &eip712::channels_domain(anvil.chain_id, d.channels),
    );
    forged.signature = signer(4).sign_hash(&digest).unwrap().as_bytes().to_vec();
    error(
        say(addr, &buyer, anvil.chain_id, gw, payment(&forged)),
        "signature is from",
    );
    let big = U256::from(2 * 10u128.pow(18));
    let digest = eip712::balance_proof_digest(
        mine.id,
        big,
        id,
        &eip712::channels_domain(anvil.chain_id, d.channels),
    );
    let p_big = dedge::channel::Proof {
        channel: mine.id,
        amount: big,
        lease: id,
        signature: buyer.sign_hash(&digest).unwrap().as_bytes().to_vec(),
    };
    error(
        say(addr, &buyer, anvil.chain_id, gw, payment(&p_big)),
        "exceeds the deposit",
    );
    let p2 = pay.pay(mine.id, id, U256::from(500)).unwrap();
    assert!(matches!(
        say(addr, &buyer, anvil.chain_id, gw, payment(&p2)),
        Body::PaymentAck { .. }
    ));
    assert_eq!(seller.book.get(&id.0).unwrap().unwrap().paid, 1501);

    // The buyer reports and asks to end: the seller reports the same, the
    // market settles, the channel is claimed up to the newest proof.
    market::terminate(&buyer_tx, &d, id, U256::from(1501)).unwrap();
    let settled = || match say(
        addr,
        &buyer,
        anvil.chain_id,
        gw,
        Body::Terminate {
            lease: id.0,
            reason: "done".into(),
        },
    ) {
        Body::Status { state, .. } => assert_eq!(state, "settled"),
        other => panic!("{other:?}"),
    };
    settled();
    assert_eq!(on_chain(id), 5, "settled on chain");
    let invoice = market::invoice(&rpc, &d, id).unwrap().unwrap();
    assert_eq!(invoice.buyerReported.to::<u128>(), 1501);
    assert_eq!(invoice.sellerReported.to::<u128>(), 1501);
    let ch: dedge::chain::bindings::IChannelManager::Channel = dedge::chain::tx::view(
        &rpc,
        d.channels,
        &dedge::chain::bindings::IChannelManager::channelOfCall { channelId: mine.id },
    )
    .unwrap();
    assert_eq!(
        ch.claimed.to::<u128>(),
        1501,
        "claimed up to the newest proof"
    );
    // Asked again: nothing more happens.
    settled();

    // A lease only the seller reports: it waits out the termination
    // timeout, then finalizes.
    let second = offer(500);
    let id2 = market::propose(&buyer_tx, &d, &second).unwrap();
    assert_eq!(
        ask(&second, &buyer, &buyer),
        Body::OfferAccepted { lease: id2.0 }
    );
    market::deposit_fee(&buyer_tx, &d, id2).unwrap();
    let end = |lease: B256| Body::Terminate {
        lease: lease.0,
        reason: "bye".into(),
    };
    match say(addr, &buyer, anvil.chain_id, gw, end(id2)) {
        Body::Status { state, .. } => assert_eq!(state, "terminating"),
        other => panic!("{other:?}"),
    }
    assert_eq!(on_chain(id2), 4, "terminating on chain, seller reported");
    let _: serde_json::Value = rpc
        .call("evm_increaseTime", serde_json::json!([86_401]))
        .unwrap();
    let _: serde_json::Value = rpc.call("evm_mine", serde_json::json!([])).unwrap();
    // The agent's clock must agree that the timeout passed.
    let later = now() + 86_401;
    let tx2 = TxSender::new(
        &rpc,
        &gateway,
        anvil.chain_id,
        seller.store.tree("nonces").unwrap(),
        policy(),
    );
    let settler = Settler {
        book: &seller.book,
        receiver: &seller.receiver,
        rpc: &seller.rpc,
        deployment: &d,
        seller: &tx2,
    };
    assert_eq!(settler.step(&id2.0, later).unwrap(), Progress::Settled);
    assert_eq!(on_chain(id2), 5, "finalized");
}

/// One message over a fresh session from `link`; the gateway's answer.
fn say(addr: std::net::SocketAddr, link: &Signer, chain_id: u64, gw: Address, body: Body) -> Body {
    let stream = TcpStream::connect(addr).unwrap();
    let mut s = p2p::connect(stream, link, chain_id, gw).unwrap();
    s.send(body).unwrap();
    s.recv().unwrap()
}
