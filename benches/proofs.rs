//! Balance proofs verified and durably persisted per second, on one core.
//!
//!   taskset -c 0 cargo bench --bench proofs
//!
//! Four rates, measured in the same run with the release (size-tuned)
//! profile that ships:
//!   reference    EIP-712 digest + secp256k1 recovery only (k256): the CPU
//!                bound of checking a proof, nothing persisted
//!   one-by-one   Receiver::accept: verify, write to sled, fsync, per proof
//!   batched      Receiver::accept_batch of 64: verify each, one fsync per
//!                batch; no proof is acknowledged before its batch is durable
//!   agent path   what the agent does for a buyer's `Payment`: the frame
//!                over a p2p session (TCP on loopback, AEAD), the payment
//!                desk (the lease's buyer, its channel, the proof verified
//!                and staged, the lease's new total), one flush, the
//!                `PaymentAck` sealed and sent; 16 buyers, each on its own
//!                session waiting for each ack as `lease pay` does (their
//!                flushes coalesce: the store's group commit). The buyers
//!                run in this process but on another core when there is
//!                one (a buyer is another machine): the agent's side alone
//!                is measured on the core the reference ran on.
//! Targets: >= 5,000 proofs/s durably persisted (issue 4); the agent path
//! >= 0.9x the reference (issue 13).
//!
//! `DEDGE_BENCH_ONLY=agent` (or `desk`) runs that row alone, after the
//! reference, for a profiler: `perf record -C 0 -- taskset -c 0 ...`.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256, keccak256};
use dedge::agent::lease::{Lease, LeaseBook, Terms, UnixTime};
use dedge::agent::machine::{Event, Timing};
use dedge::agent::payments::PaymentDesk;
use dedge::chain::rpc::RpcConfig;
use dedge::chain::{Deployment, Rpc, Signer, eip712, signer};
use dedge::channel::{ChannelId, ChannelInfo, Proof, Receiver, Sender};
use dedge::market::LeaseId;
use dedge::p2p::{self, Body};
use dedge::store::Store;
use dedge::units::Edg;

const CHAIN: u64 = 31337;
const N: usize = 4096;
const BATCH: usize = 64;

fn main() {
    let manager = Address::repeat_byte(0xCF);
    let buyer = Signer::from_bytes(&[7u8; 32]).expect("key");
    let gateway = Address::repeat_byte(0x61);
    let lease = keccak256("lease");
    let info = ChannelInfo {
        id: keccak256("channel"),
        sender: buyer.address(),
        receiver: gateway,
        deposit: U256::MAX,
    };
    let sender =
        Sender::new(Store::temporary().expect("store"), CHAIN, manager, buyer).expect("sender");
    sender.open(info).expect("open");
    let proofs: Vec<_> = (0..N)
        .map(|_| sender.pay(info.id, lease, U256::from(1)).expect("pay"))
        .collect();

    let only = std::env::var("DEDGE_BENCH_ONLY").ok();
    let domain = eip712::channels_domain(CHAIN, manager);
    let reference = rate(N, || {
        for p in &proofs {
            let digest = eip712::balance_proof_digest(p.channel, p.amount, p.lease, &domain);
            let sig = alloy_primitives::Signature::try_from(p.signature.as_slice()).expect("sig");
            assert_eq!(
                signer::recover(&digest, &sig).expect("recover"),
                info.sender
            );
        }
    });

    // A real filesystem, not tmpfs: fsync must cost what it costs on disk.
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-proofs");
    let _ = std::fs::remove_dir_all(&base);
    if let Some(row) = only.as_deref() {
        let r = agent_path(&base, manager, row != "desk");
        println!(
            "  {row} alone {r:>9.0}/s  {:.2} of the reference",
            r / reference
        );
        let _ = std::fs::remove_dir_all(&base);
        return;
    }
    let receiver = |name: &str| {
        let r = Receiver::new(
            Store::open(&base.join(name)).expect("db"),
            CHAIN,
            manager,
            gateway,
        )
        .expect("receiver");
        r.watch(info, lease).expect("watch");
        r
    };

    let one = receiver("one");
    let one_by_one = rate(N, || {
        for p in &proofs {
            one.accept(p.clone()).expect("accept");
        }
    });

    let batched_rx = receiver("batched");
    let batched = rate(N, || {
        for chunk in proofs.chunks(BATCH) {
            for r in batched_rx.accept_batch(chunk.to_vec()) {
                r.expect("accept");
            }
        }
    });

    let agent = agent_path(&base, manager, true);
    let desk = agent_path(&base, manager, false);

    println!("balance proofs per second, one core, {N} proofs, release profile");
    println!("  reference (digest + recover, k256)  {reference:>9.0}/s  1.00");
    println!(
        "  one-by-one (verify + fsync each)    {one_by_one:>9.0}/s  {:.2}",
        one_by_one / reference
    );
    println!(
        "  batched x{BATCH} (one fsync per batch) {batched:>9.0}/s  {:.2}",
        batched / reference
    );
    println!(
        "  agent path (p2p -> desk -> flush -> ack) {agent:>5.0}/s  {:.2}",
        agent / reference
    );
    println!(
        "  the desk alone (no p2p session)     {desk:>9.0}/s  {:.2}",
        desk / reference
    );
    let _ = std::fs::remove_dir_all(&base);
}

/// Moves this thread off the core the bench was started on (`taskset -c
/// 0`) when the machine has another; says so once when it has not.
fn elsewhere() {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let Ok(mine) = sched_getaffinity(Pid::from_raw(0)) else {
        return;
    };
    let mut other = CpuSet::new();
    for c in 0..cores.min(CpuSet::count()) {
        if !mine.is_set(c).unwrap_or(true) {
            let _ = other.set(c);
        }
    }
    if (0..CpuSet::count()).any(|c| other.is_set(c).unwrap_or(false)) {
        let _ = sched_setaffinity(Pid::from_raw(0), &other);
    }
}

/// Buyers paying the agent's payment desk over p2p sessions.
const BUYERS: usize = 16;

/// Proofs per second through the agent's real payment path (see the top).
/// With `over_p2p` false, 16 threads call the desk as the connection
/// threads do, with no session: what the p2p link itself costs is the
/// difference.
fn agent_path(base: &std::path::Path, manager: Address, over_p2p: bool) -> f64 {
    let per_buyer = N / BUYERS;
    let gateway = Signer::from_bytes(&[0x61; 32]).expect("key");
    let store = Store::open(&base.join(if over_p2p { "agent" } else { "desk" })).expect("db");
    let book =
        LeaseBook::open(store.tree("leases").expect("tree"), Timing::with_grace(10)).expect("book");
    let receiver = Receiver::new(store.clone(), CHAIN, manager, gateway.address()).expect("rx");
    // Each buyer: a lease running on its own channel, and its proofs.
    let mut buyers = Vec::new();
    for b in 0..BUYERS {
        let key = Signer::from_bytes(&[b as u8 + 1; 32]).expect("key");
        let id = LeaseId(keccak256(format!("lease {b}")).0);
        let info = ChannelInfo {
            id: keccak256(format!("channel {b}")),
            sender: key.address(),
            receiver: gateway.address(),
            deposit: U256::MAX,
        };
        let terms = Terms {
            buyer: key.address().into_array(),
            gateway: gateway.address().into_array(),
            cpu_millicores: 100,
            memory_bytes: 1 << 20,
            disk_bytes: 1 << 20,
            devices: vec![],
            price_per_second: Edg(1),
            max_duration: 3600,
            payment_interval: 5,
            image: "bafy".into(),
            expiry: u64::MAX,
            nonce: b as u64,
        };
        let now = UnixTime::now();
        book.insert(&Lease::offered(id, terms, now))
            .expect("insert");
        let proven = Event::ChannelProven {
            channel: ChannelId(info.id.0),
            base: Edg::ZERO,
        };
        for e in [
            Event::Admitted,
            Event::AcceptMined,
            Event::FeeSeen,
            proven,
            Event::DeployStarted,
            Event::ContainerStarted,
        ] {
            book.apply(&id, &e, now).expect("step");
        }
        receiver.watch(info, id.b256()).expect("watch");
        let sender = Sender::new(
            Store::temporary().expect("store"),
            CHAIN,
            manager,
            key.clone(),
        )
        .expect("sender");
        sender.open(info).expect("open");
        let proofs: Vec<Proof> = (0..per_buyer)
            .map(|_| sender.pay(info.id, id.b256(), U256::from(1)).expect("pay"))
            .collect();
        buyers.push((key, proofs));
    }
    // Never called on the payment path; the desk holds them for proofs
    // of channels (a chain read).
    let rpc = Rpc::new(vec!["http://127.0.0.1:9".into()], RpcConfig::default());
    let deployment = Deployment {
        chain_id: CHAIN,
        token: Address::ZERO,
        registry: Address::ZERO,
        market: Address::ZERO,
        channels: manager,
        control: Address::ZERO,
    };
    let gw = gateway.address();
    let shared = Arc::new((book, receiver, rpc, deployment));
    let handler = {
        let shared = shared.clone();
        Arc::new(move |peer, body| {
            let (book, receiver, rpc, deployment) = &*shared;
            let desk = PaymentDesk {
                book,
                receiver,
                rpc,
                deployment,
                gateway: gw,
            };
            match body {
                Body::Payment {
                    lease,
                    channel,
                    amount,
                    signature,
                } => Some(desk.payment(
                    peer,
                    LeaseId(lease),
                    ChannelId(channel),
                    amount,
                    signature,
                    UnixTime::now(),
                )),
                _ => None,
            }
        })
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _server = dedge::agent::endpoint::serve(listener, gateway, CHAIN, handler.clone());

    // Sessions first: the handshakes are not the payment path.
    let start = Arc::new(Barrier::new(BUYERS + 1));
    let threads: Vec<_> = buyers
        .into_iter()
        .map(|(key, proofs)| {
            let start = start.clone();
            let handler = handler.clone();
            std::thread::spawn(move || {
                if !over_p2p {
                    start.wait();
                    for p in proofs {
                        let ack = handler(
                            key.address(),
                            Body::Payment {
                                lease: p.lease.0,
                                channel: p.channel.0,
                                amount: p.amount.to_be_bytes(),
                                signature: p.signature,
                            },
                        );
                        assert!(matches!(ack, Some(Body::PaymentAck { .. })), "{ack:?}");
                    }
                    return;
                }
                elsewhere();
                let stream = TcpStream::connect(addr).expect("connect");
                stream.set_nodelay(true).expect("nodelay");
                let mut s = p2p::connect(stream, &key, CHAIN, gw).expect("session");
                start.wait();
                for p in proofs {
                    s.send(Body::Payment {
                        lease: p.lease.0,
                        channel: p.channel.0,
                        amount: p.amount.to_be_bytes(),
                        signature: p.signature,
                    })
                    .expect("send");
                    match s.recv().expect("recv") {
                        Body::PaymentAck { .. } => {}
                        other => panic!("not acknowledged: {other:?}"),
                    }
                }
            })
        })
        .collect();
    start.wait();
    let t = Instant::now();
    let from = monotonic();
    for th in threads {
        th.join().expect("buyer");
    }
    let d = t.elapsed().max(Duration::from_nanos(1));
    if std::env::var_os("DEDGE_BENCH_ONLY").is_some() {
        // For `perf report --time FROM,TO`: perf's clock is CLOCK_MONOTONIC.
        eprintln!(
            "timed from {from:.6} to {:.6} (CLOCK_MONOTONIC)",
            monotonic()
        );
    }
    // Every acknowledged proof counted for its lease, durably.
    let (book, ..) = &*shared;
    let paid: u128 = book
        .all()
        .expect("leases")
        .iter()
        .map(|l| l.paid.wei())
        .sum();
    assert_eq!(
        paid,
        (per_buyer * BUYERS) as u128,
        "acknowledged proofs lost"
    );
    (per_buyer * BUYERS) as f64 / d.as_secs_f64()
}

fn monotonic() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    let d = t.elapsed().max(Duration::from_nanos(1));
    n as f64 / d.as_secs_f64()
}
