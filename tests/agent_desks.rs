//! The agent's offer and payment desks behind its p2p endpoint, against a
//! real anvil. A buyer proposes on chain and sends the signed offer over an
//! encrypted session: a fair offer is accepted on chain (asked again, the
//! same answer without a second transaction); beyond capacity, forged,
//! unproposed, relayed and underpriced offers are refused with their reason
//! and left unaccepted. Then the channel: refused before the fee is
//! deposited, for someone else's channel or lease; proven for the buyer's.
//! Payments are acknowledged once durable; stale, forged and over-deposit
//! proofs are refused; the lease's paid amount follows, and each proof
//! costs one flush (issue 13, defect 7). An accept whose receipt comes
//! late is answered "pending" and found on chain when asked again, never
//! recorded as refused (defect 2).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex, RwLock};

use alloy_primitives::{Address, B256, U256, Uint};
use common::{Anvil, policy, signer};
use dedge::agent::admission::Policy;
use dedge::agent::endpoint;
use dedge::agent::executor::{Executor, Running};
use dedge::agent::lease::{LeaseBook, State, UnixTime};
use dedge::agent::machine::{Event, Timing};
use dedge::agent::offers::OfferDesk;
use dedge::agent::payments::PaymentDesk;
use dedge::agent::settle::MarketHands;
use dedge::board::BoardFile;
use dedge::chain::bindings::IEDGToken;
use dedge::chain::eip712::{self, Offer};
use dedge::chain::tx::TxSender;
use dedge::chain::{Deployment, Rpc, Signer};
use dedge::channel::{ChannelId, Receiver, Sender, onchain};
use dedge::edgex::catalogue::Catalogue;
use dedge::market::{self, Capabilities, LeaseId};
use dedge::p2p::{self, Body, OfferTerms};
use dedge::runtime::container::{Config, RecordStore, Runtime};
use dedge::store::Store;

struct Seller {
    rpc: Rpc,
    d: Deployment,
    gateway: Signer,
    store: Store,
    book: LeaseBook,
    policy: std::sync::RwLock<Policy>,
    catalogue: RwLock<Catalogue>,
    receiver: Receiver,
    running: Running,
    chain: Mutex<()>,
    admission: Mutex<()>,
    rules: std::sync::OnceLock<dedge::market::Rules>,
    /// No lease here gets a container; teardown finds none.
    runtime: Runtime,
    _dir: tempfile::TempDir,
}

impl Seller {
    fn seller_tx(&self) -> TxSender<'_> {
        // A receipt that does not come gives up fast: the late-accept
        // case below turns mining off.
        let tx_policy = dedge::chain::tx::TxPolicy {
            bump_after: std::time::Duration::from_secs(1),
            max_bumps: 1,
            ..policy()
        };
        TxSender::new(
            &self.rpc,
            &self.gateway,
            self.d.chain_id,
            self.store.tree("nonces").unwrap(),
            tx_policy,
        )
    }

    /// As the agent's daemon does: an executor whose chain hands send as
    /// the gateway.
    fn with_exec<R>(&self, f: impl FnOnce(&Executor<'_>) -> R) -> R {
        let hands = MarketHands {
            rpc: &self.rpc,
            deployment: &self.d,
            receiver: &self.receiver,
            rules: &self.rules,
            seller: self.seller_tx(),
            lock: &self.chain,
        };
        f(&Executor {
            book: &self.book,
            runtime: &self.runtime,
            running: &self.running,
            chain: &hands,
            defer: None,
        })
    }

    fn handle(&self, peer: Address, body: Body) -> Option<Body> {
        let now = UnixTime::now();
        match body {
            Body::Offer { terms, signature } => Some(self.with_exec(|exec| {
                OfferDesk {
                    exec,
                    policy: &self.policy,
                    catalogue: &self.catalogue,
                    rpc: &self.rpc,
                    deployment: &self.d,
                    admission: &self.admission,
                }
                .take(peer, &terms, &signature, now)
            })),
            Body::ChannelProof { lease, channel } => {
                Some(
                    self.payments()
                        .channel_proof(peer, LeaseId(lease), ChannelId(channel), now),
                )
            }
            Body::Payment {
                lease,
                channel,
                amount,
                signature,
            } => Some(self.payments().payment(
                peer,
                LeaseId(lease),
                ChannelId(channel),
                amount,
                signature,
                now,
            )),
            Body::Terminate { lease, .. } => Some(self.terminate(peer, LeaseId(lease))),
            _ => Some(Body::Error {
                message: "not handled here".into(),
            }),
        }
    }

    /// The buyer ends its lease: terminating, and the settle steps as far
    /// as they go now.
    fn terminate(&self, peer: Address, lease: LeaseId) -> Body {
        self.book.of_buyer(&lease, peer).unwrap();
        let l = self
            .with_exec(|exec| exec.feed(&lease, &Event::Terminate("buyer".into()), UnixTime::now()))
            .unwrap();
        Body::Status {
            lease: lease.0,
            state: l.state.name().into(),
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
    let dir = tempfile::tempdir().unwrap();
    let seller = Arc::new(Seller {
        rpc: anvil.rpc(),
        d,
        gateway: signer(2),
        book: LeaseBook::open(store.tree("leases").unwrap(), Timing::with_grace(10)).unwrap(),
        running: Running::default(),
        rules: std::sync::OnceLock::new(),
        chain: Mutex::new(()),
        admission: Mutex::new(()),
        runtime: Runtime::open(
            Config {
                dir: dir.path().join("containers"),
                cgroup: dedge::board::values::CgroupMode::Auto,
                cgroup_parent: format!("dedge-test/desks-{}", std::process::id()),
                cgroup_delegated: None,
                die_with_parent: false,
            },
            RecordStore::sled(&store).unwrap(),
        )
        .unwrap(),
        _dir: dir,
        receiver: Receiver::new(store.clone(), anvil.chain_id, d.channels, gateway.address())
            .unwrap(),
        store,
        policy: std::sync::RwLock::new(Policy::from_board(&board, gateway.address())),
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
    let state = |id: B256| seller.book.get(&LeaseId::from(id)).unwrap().unwrap().state;
    assert_eq!(state(id), State::Accepted);
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
    assert_eq!(state(big_id), State::Refused);
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
        "no lease",
    );
    match say(addr, &buyer, anvil.chain_id, gw, proof_of(mine.id)) {
        Body::Status { state, .. } => assert_eq!(state, "channel proven"),
        other => panic!("{other:?}"),
    }
    assert_eq!(state(id), State::ChannelProven);
    let paid = |id: B256| {
        seller
            .book
            .get(&LeaseId::from(id))
            .unwrap()
            .unwrap()
            .paid
            .wei()
    };

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
    let flushes = seller.store.flushes();
    assert_eq!(
        say(addr, &buyer, anvil.chain_id, gw, payment(&p1)),
        Body::PaymentAck {
            lease: id.0,
            amount: p1.amount.to_be_bytes()
        }
    );
    // The proof and the lease's new total: one flush, before the ack.
    assert_eq!(seller.store.flushes() - flushes, 1, "flushes for one proof");
    assert_eq!(paid(id), 1000);
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
    assert_eq!(paid(id), 1501);

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
    // The agent's next tick past the timeout (its clock agrees) finalizes.
    let later = UnixTime(now() + 86_401);
    let failed = seller.with_exec(|exec| exec.tick(later));
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(on_chain(id2), 5, "finalized");
    assert_eq!(state(id2), State::Settled);

    // An accept whose receipt does not come in time: the agent answers
    // "pending" and keeps the lease as accepting (not refused, as the
    // agent once did while the chain said accepted). Once mined, the same
    // offer asked again is found accepted; no second accept is sent.
    let late = offer(100);
    let late_id = market::propose(&buyer_tx, &d, &late).unwrap();
    let _: serde_json::Value = rpc
        .call("evm_setAutomine", serde_json::json!([false]))
        .unwrap();
    let pending = ask(&late, &buyer, &buyer);
    assert!(
        matches!(pending, Body::OfferPending { lease, .. } if lease == late_id.0),
        "{pending:?}"
    );
    assert_eq!(state(late_id), State::Accepting);
    assert_eq!(on_chain(late_id), 1, "not mined yet");
    let _: serde_json::Value = rpc.call("evm_mine", serde_json::json!([])).unwrap();
    let _: serde_json::Value = rpc
        .call("evm_setAutomine", serde_json::json!([true]))
        .unwrap();
    assert_eq!(on_chain(late_id), 2, "the late accept landed");
    assert_eq!(
        ask(&late, &buyer, &buyer),
        Body::OfferAccepted { lease: late_id.0 }
    );
    assert_eq!(state(late_id), State::Accepted);

    // A buyer who starts closing its channel while a lease is paid through
    // it: the agent's next watch ends the lease, claims every acknowledged
    // proof on the spot and reports. (It used to claim only once the
    // Market settled, a termination timeout later, by when the buyer could
    // have settled the channel and taken the seller's pay back.)
    let closer = offer(100);
    let id3 = market::propose(&buyer_tx, &d, &closer).unwrap();
    assert_eq!(
        ask(&closer, &buyer, &buyer),
        Body::OfferAccepted { lease: id3.0 }
    );
    market::deposit_fee(&buyer_tx, &d, id3).unwrap();
    let proof3 = Body::ChannelProof {
        lease: id3.0,
        channel: mine.id.0,
    };
    match say(addr, &buyer, anvil.chain_id, gw, proof3) {
        Body::Status { state, .. } => assert_eq!(state, "channel proven"),
        other => panic!("{other:?}"),
    }
    let p3 = pay.pay(mine.id, id3, U256::from(700)).unwrap();
    assert!(matches!(
        say(addr, &buyer, anvil.chain_id, gw, payment(&p3)),
        Body::PaymentAck { .. }
    ));
    assert_eq!(paid(id3), 700);
    let channel_of = |id: B256| -> dedge::chain::bindings::IChannelManager::Channel {
        dedge::chain::tx::view(
            &rpc,
            d.channels,
            &dedge::chain::bindings::IChannelManager::channelOfCall { channelId: id },
        )
        .unwrap()
    };
    onchain::start_close(&buyer_tx, &d, mine.id, U256::from(1501)).unwrap();
    let failed = seller.with_exec(|exec| exec.tick(UnixTime::now()));
    assert!(failed.is_empty(), "{failed:?}");
    let ch = channel_of(mine.id);
    assert!(!ch.settleAfter.is_zero(), "still in its challenge period");
    assert_eq!(
        ch.claimed.to::<u128>(),
        2201,
        "claimed before the close settles"
    );
    let l3 = seller.book.get(&LeaseId::from(id3)).unwrap().unwrap();
    assert_eq!(l3.state, State::Terminating);
    assert!(l3.reason.unwrap_or_default().contains("closing"));
    assert_eq!(on_chain(id3), 4, "the seller reported");
    let on3 = market::lease(&rpc, &d, id3).unwrap();
    assert_eq!(on3.sellerReported.to::<u128>(), 700);
    // The close settles at the claimed balance: the buyer gets back only
    // what it never signed for.
    let _: serde_json::Value = rpc
        .call("evm_increaseTime", serde_json::json!([86_401]))
        .unwrap();
    let _: serde_json::Value = rpc.call("evm_mine", serde_json::json!([])).unwrap();
    onchain::settle(&buyer_tx, &d, mine.id).unwrap();
    assert!(channel_of(mine.id).sender.is_zero(), "settled and deleted");
}

/// One message over a fresh session from `link`; the gateway's answer.
fn say(addr: std::net::SocketAddr, link: &Signer, chain_id: u64, gw: Address, body: Body) -> Body {
    let stream = TcpStream::connect(addr).unwrap();
    let mut s = p2p::connect(stream, link, chain_id, gw).unwrap();
    s.send(body).unwrap();
    s.recv().unwrap()
}
