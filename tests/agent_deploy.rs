//! The agent deploys a lease: the image by the CID the offer names, from
//! an IPFS gateway (Kubo's blocks served by Helia), verified, imported,
//! unpacked and run in the sandbox with the lease's limits and an EdgeX
//! bridge for its grants; the container reads its leased sensor. A CID
//! other than the offer's, a manifest other than the buyer named, another
//! buyer's request and a lease not ready are refused. Needs root and
//! cgroups (SKIP otherwise) and tests/setup.sh's IPFS harness.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::Address;
use dedge::agent::deploy::{Deployer, EdgexWiring, container_id};
use dedge::agent::lease::{Lease, LeaseBook, State};
use dedge::board::Device as BoardDevice;
use dedge::board::values::Arch;
use dedge::edgex::bridge::BridgeLimits;
use dedge::edgex::catalogue::Catalogue;
use dedge::edgex::meter::Meter;
use dedge::ipfs::fetch::{Fetcher, Limits};
use dedge::p2p::OfferTerms;
use dedge::runtime::container::Exit;
use dedge::runtime::image::Platform;

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/edgex.rs"]
mod edgex;
#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/kubo.rs"]
mod kubo;
#[path = "common/oci.rs"]
mod oci;
#[path = "common/sandbox.rs"]
mod sandbox;

const BUYER: [u8; 20] = [1; 20];

fn terms(image: &str) -> OfferTerms {
    OfferTerms {
        buyer: BUYER,
        gateway: [2; 20],
        cpu_millicores: 500,
        memory_bytes: 64 << 20,
        disk_bytes: 256 << 20,
        devices: vec!["Random-Integer-Device:Int8:r".into()],
        price_per_second: 1,
        max_duration: 3600,
        payment_interval: 5,
        image: image.into(),
        expiry: u64::from(u32::MAX),
        nonce: 1,
    }
}

/// A lease whose channel is proven: ready to deploy.
fn ready(book: &LeaseBook, id: [u8; 32], t: OfferTerms) {
    book.insert(&Lease::offered(id, t, 1)).unwrap();
    for s in [State::Accepted, State::FeePaid, State::ChannelProven] {
        book.transition(&id, s, 1, None, |_| {}).unwrap();
    }
}

#[test]
fn a_lease_runs_its_image_by_cid_and_reads_its_sensor() {
    if !sandbox::can_run("a_lease_runs_its_image_by_cid_and_reads_its_sensor") {
        return;
    }
    let sim = edgex::Simulator::start(&[]);
    let env = sandbox::Env::new();
    let dir = env.dir.path().join("buyer");
    std::fs::create_dir_all(&dir).unwrap();
    let script = "wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/Random-Integer-Device/Int8";
    let (layout, manifest) = oci::script_image(&dir, script);
    let repo = dir.join("kubo");
    let cid = kubo::add(&repo, &[&layout]).pop().unwrap();
    let gw = gateway::Gateway::start(&repo);

    let fetcher = Fetcher::new(
        vec![gw.url.clone()],
        &env.dir.path().join("cache"),
        Limits::default(),
    );
    let book = LeaseBook::open(env.store.tree("leases").unwrap()).unwrap();
    let client = Arc::new(sim.client());
    let offers = [BoardDevice {
        name: "Random-Integer-Device".into(),
        read: vec!["Int8".into()],
        write: vec![],
    }];
    let wiring = EdgexWiring {
        catalogue: Arc::new(RwLock::new(Catalogue::read(&client, &offers).unwrap())),
        client,
        meter: Meter::new(env.store.tree("edgex-usage").unwrap()),
        limits: BridgeLimits::default(),
    };
    let deployer = Deployer {
        book: &book,
        fetcher: &fetcher,
        images: &env.images,
        runtime: env.rt(),
        platform: Platform::of(Arch::of_this_build().unwrap()),
        incoming: env.dir.path().join("incoming"),
        edgex: Some(&wiring),
        backends: dedge::board::BackendPolicy::Any,
        wiring: &env.store.tree("backends").unwrap(),
    };
    let buyer = Address::from(BUYER);

    // Refusals that leave the lease as it was.
    let id = [5u8; 32];
    ready(&book, id, terms(&cid));
    let other = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let why = deployer
        .deploy(buyer, id, other, &manifest, &[], 2)
        .err()
        .unwrap();
    assert!(why.contains("is not the one the offer names"), "{why}");
    let why = deployer
        .deploy(Address::from([9; 20]), id, &cid, &manifest, &[], 2)
        .err()
        .unwrap();
    assert!(why.contains("is not yours"), "{why}");
    assert_eq!(book.get(&id).unwrap().unwrap().state, State::ChannelProven);

    // The lease runs; the container reads its sensor through the bridge.
    let t0 = std::time::Instant::now();
    let d = deployer.deploy(buyer, id, &cid, &manifest, &[], 3).unwrap();
    assert_eq!(d.container, container_id(&id));
    assert_eq!(book.get(&id).unwrap().unwrap().state, State::Running);
    // The meter starts once the container runs, not when deploy was asked.
    let since = book.get(&id).unwrap().unwrap().running_since.unwrap();
    assert!((3..=3 + t0.elapsed().as_secs()).contains(&since), "{since}");
    let r = env
        .rt()
        .wait(&d.container, Some(Duration::from_secs(30)))
        .unwrap();
    let (out, err) = env.rt().logs(&d.container).unwrap();
    let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
    assert_eq!(r.exit, Some(Exit::Code(0)), "{out}\n{err}");
    let reading: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(reading["event"]["readings"][0]["resourceName"], "Int8");
    let lease_hex = book.get(&id).unwrap().unwrap().id_hex();
    let usage = wiring.meter.usage(&lease_hex).unwrap();
    assert_eq!(usage["Random-Integer-Device"].reads, 1, "{usage:?}");
    // Deployed already: not again.
    let why = deployer
        .deploy(buyer, id, &cid, &manifest, &[], 4)
        .err()
        .unwrap();
    assert!(why.contains("is running"), "{why}");

    // A manifest other than the buyer named: the lease ends, nothing runs.
    let id2 = [6u8; 32];
    ready(&book, id2, terms(&cid));
    let wrong = format!("sha256:{}", "0".repeat(64));
    let why = deployer
        .deploy(buyer, id2, &cid, &wrong, &[], 5)
        .err()
        .unwrap();
    assert!(why.contains("the buyer named sha256:000"), "{why}");
    let l = book.get(&id2).unwrap().unwrap();
    assert_eq!(l.state, State::Terminating);
    assert!(l.reason.unwrap().contains("deploy failed"));
    assert!(
        env.rt()
            .list()
            .unwrap()
            .iter()
            .all(|r| r.id != container_id(&id2))
    );
}

/// A buyer who falls behind is frozen, thawed when it pays, and stopped
/// when still behind a grace period after freezing; a lease at its maximum
/// duration is stopped too.
#[test]
fn payment_enforcement_freezes_thaws_and_stops_the_container() {
    use dedge::agent::enforce::enforce;
    use dedge::agent::payment::Action;
    use dedge::runtime::container::State as Box;

    if !sandbox::can_run("payment_enforcement_freezes_thaws_and_stops_the_container") {
        return;
    }
    let env = sandbox::Env::new();
    env.image("sleeper", |_| {}, &[]);
    let book = LeaseBook::open(env.store.tree("leases").unwrap()).unwrap();
    let start = |id: [u8; 32], max_duration: u32| {
        let t = OfferTerms {
            price_per_second: 10,
            max_duration,
            ..terms("x")
        };
        ready(&book, id, t);
        book.transition(&id, State::Deploying, 100, None, |_| {})
            .unwrap();
        book.transition(&id, State::Running, 100, None, |_| {})
            .unwrap();
        let name = container_id(&id);
        env.create(
            &name,
            "sleeper",
            &["sleep", "1000"],
            sandbox::limits(16, 8, 100),
        )
        .unwrap();
        env.rt().start(&name).unwrap();
        name
    };
    let id = [7u8; 32];
    let name = start(id, 3600);
    let state = |i: &[u8; 32]| book.get(i).unwrap().unwrap().state;
    let boxed = |n: &str| env.rt().get(n).unwrap().state;

    // Grace 10 s at 10 per second: 100 of allowance.
    assert!(enforce(&book, env.rt(), 10, 105).unwrap().is_empty());
    assert_eq!(
        enforce(&book, env.rt(), 10, 120).unwrap(),
        [(id, Action::Freeze)]
    );
    assert_eq!((state(&id), boxed(&name)), (State::Frozen, Box::Paused));
    book.record_payment(&id, 250).unwrap();
    assert_eq!(
        enforce(&book, env.rt(), 10, 125).unwrap(),
        [(id, Action::Thaw)]
    );
    assert_eq!((state(&id), boxed(&name)), (State::Running, Box::Running));
    assert_eq!(
        enforce(&book, env.rt(), 10, 200).unwrap(),
        [(id, Action::Freeze)]
    );
    assert!(enforce(&book, env.rt(), 10, 205).unwrap().is_empty());
    assert_eq!(
        enforce(&book, env.rt(), 10, 211).unwrap(),
        [(id, Action::Stop)]
    );
    assert_eq!(
        (state(&id), boxed(&name)),
        (State::Terminating, Box::Stopped)
    );
    let reason = book.get(&id).unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("still behind 10 s after being frozen"),
        "{reason}"
    );

    // Paid in full, but the lease's time is up.
    let id2 = [8u8; 32];
    let name2 = start(id2, 60);
    book.record_payment(&id2, 10_000).unwrap();
    assert!(enforce(&book, env.rt(), 10, 150).unwrap().is_empty());
    assert_eq!(
        enforce(&book, env.rt(), 10, 160).unwrap(),
        [(id2, Action::Over)]
    );
    assert_eq!(
        (state(&id2), boxed(&name2)),
        (State::Terminating, Box::Stopped)
    );
}
