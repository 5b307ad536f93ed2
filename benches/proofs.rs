//! Balance proofs verified and durably persisted per second, on one core.
//!
//!   taskset -c 0 cargo bench --bench proofs
//!
//! Three rates, measured in the same run with the release (size-tuned)
//! profile that ships:
//!   reference    EIP-712 digest + secp256k1 recovery only (k256): the CPU
//!                bound of checking a proof, nothing persisted
//!   one-by-one   Receiver::accept: verify, write to sled, fsync, per proof
//!   batched      Receiver::accept_batch of 64: verify each, one fsync per
//!                batch; no proof is acknowledged before its batch is durable
//! Target (issue #4): >= 5,000 proofs/s durably persisted.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256, keccak256};
use dedge::chain::{Signer, eip712, signer};
use dedge::channel::{ChannelInfo, Receiver, Sender};
use dedge::store::Store;

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
    let _ = std::fs::remove_dir_all(&base);
}

fn rate(n: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    let d = t.elapsed().max(Duration::from_nanos(1));
    n as f64 / d.as_secs_f64()
}
