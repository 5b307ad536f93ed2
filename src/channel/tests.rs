use super::*;
use alloy_primitives::{address, keccak256};

const CHAIN: u64 = 31337;
const MANAGER: Address = address!("Cf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9");

struct Pair {
    sender: Sender,
    receiver: Receiver,
    info: ChannelInfo,
    lease: B256,
}

fn pair(deposit: u64) -> Pair {
    let buyer = Signer::random().unwrap();
    let gateway = Signer::random().unwrap();
    let info = ChannelInfo {
        id: keccak256("channel"),
        sender: buyer.address(),
        receiver: gateway.address(),
        deposit: U256::from(deposit),
    };
    let lease = keccak256("lease");
    let sender = Sender::new(Store::temporary().unwrap(), CHAIN, MANAGER, buyer).unwrap();
    sender.open(info).unwrap();
    let receiver = Receiver::new(
        Store::temporary().unwrap(),
        CHAIN,
        MANAGER,
        gateway.address(),
    )
    .unwrap();
    receiver.watch(info, lease).unwrap();
    Pair {
        sender,
        receiver,
        info,
        lease,
    }
}

/// Two fresh keys, a 50-unit channel between them, and a lease id.
fn parties() -> (Signer, Signer, ChannelInfo, B256) {
    let buyer = Signer::random().unwrap();
    let gateway = Signer::random().unwrap();
    let info = ChannelInfo {
        id: keccak256("c"),
        sender: buyer.address(),
        receiver: gateway.address(),
        deposit: U256::from(50),
    };
    (buyer, gateway, info, keccak256("l"))
}

#[test]
fn cumulative_proofs_pay_increments() {
    let p = pair(100);
    let a = p.sender.pay(p.info.id, p.lease, U256::from(10)).unwrap();
    let b = p.sender.pay(p.info.id, p.lease, U256::from(15)).unwrap();
    assert_eq!(b.amount, U256::from(25));
    assert_eq!(p.receiver.accept(a).unwrap(), U256::from(10));
    assert_eq!(p.receiver.accept(b.clone()).unwrap(), U256::from(15));
    assert_eq!(p.receiver.newest(p.info.id).unwrap(), Some(b));
}

#[test]
fn replays_and_stale_proofs_are_refused() {
    let p = pair(100);
    let a = p.sender.pay(p.info.id, p.lease, U256::from(10)).unwrap();
    let b = p.sender.pay(p.info.id, p.lease, U256::from(5)).unwrap();
    p.receiver.accept(b).unwrap();
    assert_eq!(
        p.receiver.accept(a).unwrap_err(),
        Rejected::Stale {
            amount: U256::from(10),
            newest: U256::from(15)
        }
    );
    let again = p.receiver.newest(p.info.id).unwrap().unwrap();
    assert!(
        matches!(p.receiver.accept(again), Err(Rejected::Stale { .. })),
        "replay"
    );
}

#[test]
fn over_deposit_wrong_lease_and_forgery_are_refused() {
    let p = pair(100);
    assert!(matches!(
        p.sender.pay(p.info.id, p.lease, U256::from(101)),
        Err(Rejected::OverDeposit { .. })
    ));
    let good = p.sender.pay(p.info.id, p.lease, U256::from(1)).unwrap();

    let mut other_lease = good.clone();
    other_lease.lease = keccak256("other");
    assert!(matches!(
        p.receiver.accept(other_lease),
        Err(Rejected::WrongLease { .. })
    ));

    let mut inflated = good.clone();
    inflated.amount = U256::from(99); // signature was over 1
    assert!(matches!(
        p.receiver.accept(inflated),
        Err(Rejected::BadSignature { .. })
    ));

    let mut short = good.clone();
    short.signature.truncate(64);
    assert_eq!(
        p.receiver.accept(short),
        Err(Rejected::MalformedSignature(64))
    );

    let mut over = good.clone();
    over.amount = U256::from(1000);
    assert!(matches!(
        p.receiver.accept(over),
        Err(Rejected::OverDeposit { .. })
    ));

    let mut unknown = good;
    unknown.channel = keccak256("nope");
    assert!(matches!(
        p.receiver.accept(unknown),
        Err(Rejected::UnknownChannel(_))
    ));
}

/// The same buyer key signing under another chain id or another manager
/// contract produces proofs this gateway must refuse.
#[test]
fn proofs_for_another_chain_or_contract_are_refused() {
    let (buyer, gateway, info, lease) = parties();
    let receiver = Receiver::new(
        Store::temporary().unwrap(),
        CHAIN,
        MANAGER,
        gateway.address(),
    )
    .unwrap();
    receiver.watch(info, lease).unwrap();
    for (chain, manager) in [(CHAIN + 1, MANAGER), (CHAIN, Address::repeat_byte(7))] {
        let same_key = Signer::from_bytes(&buyer.secret_bytes()).unwrap();
        let foreign = Sender::new(Store::temporary().unwrap(), chain, manager, same_key).unwrap();
        foreign.open(info).unwrap();
        let proof = foreign.pay(info.id, lease, U256::from(1)).unwrap();
        let err = receiver.accept(proof).unwrap_err();
        assert!(err.to_string().contains("another domain"), "{err}");
    }
    let home = Sender::new(Store::temporary().unwrap(), CHAIN, MANAGER, buyer).unwrap();
    home.open(info).unwrap();
    assert!(
        receiver
            .accept(home.pay(info.id, lease, U256::from(1)).unwrap())
            .is_ok(),
        "same key, right domain"
    );
}

#[test]
fn acknowledged_proofs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (buyer, gateway, info, lease) = parties();
    let sender = Sender::new(Store::temporary().unwrap(), CHAIN, MANAGER, buyer).unwrap();
    sender.open(info).unwrap();
    let proof = sender.pay(info.id, lease, U256::from(20)).unwrap();
    {
        let r = Receiver::new(
            Store::open(dir.path()).unwrap(),
            CHAIN,
            MANAGER,
            gateway.address(),
        )
        .unwrap();
        r.watch(info, lease).unwrap();
        r.accept(proof.clone()).unwrap();
    }
    let r = Receiver::new(
        Store::open(dir.path()).unwrap(),
        CHAIN,
        MANAGER,
        gateway.address(),
    )
    .unwrap();
    assert_eq!(r.newest(info.id).unwrap(), Some(proof));
}

#[test]
fn batches_report_each_proof() {
    let p = pair(100);
    let a = p.sender.pay(p.info.id, p.lease, U256::from(1)).unwrap();
    let b = p.sender.pay(p.info.id, p.lease, U256::from(1)).unwrap();
    let results = p.receiver.accept_batch(vec![b, a]);
    assert!(results[0].is_ok());
    assert!(matches!(results[1], Err(Rejected::Stale { .. })));
}

#[test]
fn a_channel_for_someone_else_is_not_watched() {
    let p = pair(100);
    let info = ChannelInfo {
        receiver: Address::repeat_byte(9),
        ..p.info
    };
    assert!(matches!(
        p.receiver.watch(info, p.lease),
        Err(Rejected::NotOurs { .. })
    ));
}

/// A proof the contract would refuse (v = 0/1, or high s) is refused here
/// too, though it recovers to the right signer.
#[test]
fn non_canonical_signatures_are_refused() {
    let p = pair(100);
    let good = p.sender.pay(p.info.id, p.lease, U256::from(1)).unwrap();
    let mut v01 = good.clone();
    v01.signature[64] -= 27;
    assert_eq!(
        p.receiver.accept(v01),
        Err(Rejected::NonCanonical("v is not 27 or 28"))
    );

    // The same signature with s' = n - s and v flipped: valid math, not canonical.
    let sig = Signature::try_from(good.signature.as_slice()).unwrap();
    let n = U256::from_be_slice(
        &alloy_primitives::hex::decode(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
        )
        .unwrap(),
    );
    let high = Signature::new(sig.r(), n - sig.s(), !sig.v());
    let mut malleated = good.clone();
    malleated.signature = high.as_bytes().to_vec();
    assert!(matches!(
        p.receiver.accept(malleated),
        Err(Rejected::NonCanonical(_))
    ));
    assert!(p.receiver.accept(good).is_ok());
}

/// Proofs are verified outside the receiver's lock: two that both pass
/// against the record as it was must not both be written, or a lower one
/// written last would take the channel's newest amount back down.
#[test]
fn concurrent_proofs_never_take_the_newest_amount_down() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 20;
    let p = pair(1_000_000);
    let receiver = std::sync::Arc::new(p.receiver);
    for round in 0..ROUNDS {
        // Signed in order, sent at once: whichever lands last, the
        // channel's newest must be the highest accepted.
        let proofs: Vec<Proof> = (0..THREADS)
            .map(|_| p.sender.pay(p.info.id, p.lease, U256::from(1)).unwrap())
            .collect();
        let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
        let accepted: Vec<Option<U256>> = proofs
            .into_iter()
            .rev()
            .map(|proof| {
                let (receiver, start) = (receiver.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let amount = proof.amount;
                    receiver.stage(proof).ok().map(|_| amount)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let highest = accepted.iter().flatten().max().copied();
        let newest = receiver.newest(p.info.id).unwrap().map(|n| n.amount);
        assert!(highest.is_some(), "round {round}: nothing accepted");
        assert_eq!(newest, highest, "round {round}: accepted {accepted:?}");
    }
}
