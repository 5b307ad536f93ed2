//! The agent deploys a lease: the image by the CID the offer names, from
//! an IPFS gateway (Kubo's blocks served by Helia), verified, imported,
//! unpacked and run in the sandbox with the lease's limits and an EdgeX
//! bridge for its grants; the container reads its leased sensor. A CID
//! other than the offer's, a manifest other than the buyer named, another
//! buyer's request and a lease not ready are refused. Needs root and
//! cgroups (SKIP otherwise) and tests/setup.sh's IPFS harness.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::Address;
use dedge::agent::deploy::{Deployer, EdgexWiring, container_id};
use dedge::agent::executor::{Chain, ChainQueue, Executor, Running};
use dedge::agent::lease::{Lease, LeaseBook, State, Terms, UnixTime};
use dedge::agent::machine::{ChainView, Event, Timing};
use dedge::board::Device as BoardDevice;
use dedge::board::values::Arch;
use dedge::channel::ChannelId;
use dedge::edgex::bridge::BridgeLimits;
use dedge::edgex::catalogue::Catalogue;
use dedge::edgex::meter::Meter;
use dedge::ipfs::fetch::{Fetcher, Limits};
use dedge::market::LeaseId;
use dedge::p2p::OfferTerms;
use dedge::runtime::container::Exit;
use dedge::runtime::image::Platform;
use dedge::units::Edg;

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
fn ready(book: &LeaseBook, id: LeaseId, t: OfferTerms) {
    book.insert(&Lease::offered(id, Terms::from(&t), UnixTime(1)))
        .unwrap();
    let proven = Event::ChannelProven {
        channel: ChannelId([3; 32]),
        base: Edg::ZERO,
    };
    for e in [Event::Admitted, Event::AcceptMined, Event::FeeSeen, proven] {
        book.apply(&id, &e, UnixTime(1)).unwrap();
    }
}

/// These tests are about containers: the chain is not there, and every
/// on-chain step says so (the lease stays where the machine put it; the
/// chain side is tests/agent_desks.rs's, against anvil).
struct Offline;

fn offline() -> dedge::agent::Error {
    dedge::agent::Error::Setup {
        what: "a chain (this test has none)",
        source: Box::new(std::io::Error::other("offline")),
    }
}

impl Chain for Offline {
    fn read(&self, _: &Lease) -> dedge::agent::Result<ChainView> {
        Err(offline())
    }
    fn accept(&self, _: &Lease) -> dedge::agent::Result<()> {
        Err(offline())
    }
    fn report(&self, _: &Lease, _: Edg) -> dedge::agent::Result<()> {
        Err(offline())
    }
    fn finalize(&self, _: &Lease) -> dedge::agent::Result<()> {
        Err(offline())
    }
    fn cancel(&self, _: &Lease) -> dedge::agent::Result<()> {
        Err(offline())
    }
    fn claim(&self, _: &Lease) -> dedge::agent::Result<()> {
        Err(offline())
    }
}

fn book(env: &sandbox::Env) -> LeaseBook {
    LeaseBook::open(env.store.tree("leases").unwrap(), Timing::with_grace(10)).unwrap()
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
    let book = book(&env);
    let running = Running::default();
    let exec = Executor {
        book: &book,
        runtime: env.rt(),
        running: &running,
        chain: &Offline,
        defer: None,
    };
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
        exec: &exec,
        fetcher: &fetcher,
        images: &env.images,
        platform: Platform::of(Arch::of_this_build().unwrap()),
        incoming: env.dir.path().join("incoming"),
        edgex: Some(&wiring),
        backends: dedge::board::BackendPolicy::Any,
        wiring: &env.store.tree("backends").unwrap(),
    };
    let buyer = Address::from(BUYER);

    // Refusals that leave the lease as it was.
    let id = LeaseId([5; 32]);
    ready(&book, id, terms(&cid));
    let other = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let why = deployer
        .deploy(buyer, id, other, &manifest, &[], UnixTime(2))
        .err()
        .unwrap();
    assert!(why.contains("is not the one the offer names"), "{why}");
    let why = deployer
        .deploy(
            Address::from([9; 20]),
            id,
            &cid,
            &manifest,
            &[],
            UnixTime(2),
        )
        .err()
        .unwrap();
    assert!(why.contains("of yours"), "{why}");
    assert_eq!(book.get(&id).unwrap().unwrap().state, State::ChannelProven);

    // The lease runs; the container reads its sensor through the bridge.
    let t0 = std::time::Instant::now();
    let d = deployer
        .deploy(buyer, id, &cid, &manifest, &[], UnixTime(3))
        .unwrap();
    assert_eq!(d.container, container_id(&id));
    assert_eq!(book.get(&id).unwrap().unwrap().state, State::Running);
    // The meter starts once the container runs, not when deploy was asked.
    let since = book.get(&id).unwrap().unwrap().running_since.unwrap().0;
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
    let lease_hex = id.to_string();
    let usage = wiring.meter.usage(&lease_hex).unwrap();
    assert_eq!(usage["Random-Integer-Device"].reads, 1, "{usage:?}");
    // Deployed already: not again.
    let why = deployer
        .deploy(buyer, id, &cid, &manifest, &[], UnixTime(4))
        .err()
        .unwrap();
    assert!(why.contains("is running"), "{why}");

    // A manifest other than the buyer named: the lease ends, nothing runs.
    let id2 = LeaseId([6; 32]);
    ready(&book, id2, terms(&cid));
    let wrong = format!("sha256:{}", "0".repeat(64));
    let why = deployer
        .deploy(buyer, id2, &cid, &wrong, &[], UnixTime(5))
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
/// duration is stopped too; so is one whose container exits by itself
/// (issue 13, defect 4). A container that cannot be paused fails its own
/// lease's tick, not the others' (defect 3).
#[test]
fn payment_enforcement_freezes_thaws_and_stops_the_container() {
    use dedge::runtime::container::State as Box;

    if !sandbox::can_run("payment_enforcement_freezes_thaws_and_stops_the_container") {
        return;
    }
    let env = sandbox::Env::new();
    env.image("sleeper", |_| {}, &[]);
    let book = book(&env);
    let running = Running::default();
    // As the daemon's tick runs: chain effects queued for the chain
    // worker, never waited on by enforcement.
    let queue = ChainQueue::default();
    let exec = Executor {
        book: &book,
        runtime: env.rt(),
        running: &running,
        chain: &Offline,
        defer: Some(&queue),
    };
    let start = |id: LeaseId, max_duration: u32, cmd: &[&str], run: bool| {
        let t = OfferTerms {
            price_per_second: 10,
            max_duration,
            ..terms("x")
        };
        ready(&book, id, t);
        book.apply(&id, &Event::DeployStarted, UnixTime(100))
            .unwrap();
        book.apply(&id, &Event::ContainerStarted, UnixTime(100))
            .unwrap();
        let name = container_id(&id);
        env.create(&name, "sleeper", cmd, sandbox::limits(16, 8, 100))
            .unwrap();
        if run {
            env.rt().start(&name).unwrap();
        }
        name
    };
    let pay = |id: &LeaseId, cumulative: u128| {
        book.apply(
            id,
            &Event::Paid {
                cumulative: Edg(cumulative),
            },
            UnixTime(0),
        )
        .unwrap();
    };
    let sleep = ["sleep", "1000"];
    let id = LeaseId([7; 32]);
    let name = start(id, 3600, &sleep, true);
    let state = |i: &LeaseId| book.get(i).unwrap().unwrap().state;
    let boxed = |n: &str| env.rt().get(n).unwrap().state;
    let tick = |now: u64| {
        let failed = exec.tick(UnixTime(now));
        // The chain is missing here, and enforcement never asks it.
        assert!(failed.is_empty(), "{failed:?}");
    };

    // Grace 10 s at 10 per second: 100 of allowance.
    tick(105);
    assert_eq!((state(&id), boxed(&name)), (State::Running, Box::Running));
    // The lease's watch read went to the chain worker's queue; carried
    // out there, it fails and the lease backs off, its container untouched.
    assert_eq!(queue.len(), 1, "the watch's chain read is queued");
    let worker = Executor {
        defer: None,
        ..exec
    };
    assert_eq!(queue.drain(&worker, UnixTime(105)), 1);
    assert!(queue.backing_off(&id, UnixTime(106)));
    queue.push(id, dedge::agent::machine::Effect::ReadChain, UnixTime(106));
    assert!(queue.is_empty(), "nothing queued for a lease backing off");
    assert_eq!(state(&id), State::Running);
    tick(120);
    assert_eq!((state(&id), boxed(&name)), (State::Frozen, Box::Paused));
    pay(&id, 250);
    tick(125);
    assert_eq!((state(&id), boxed(&name)), (State::Running, Box::Running));
    tick(200);
    assert_eq!((state(&id), boxed(&name)), (State::Frozen, Box::Paused));
    tick(205);
    assert_eq!(state(&id), State::Frozen);
    tick(211);
    assert_eq!(state(&id), State::Terminating);
    assert!(
        env.rt().get(&name).is_err(),
        "the stopped container is removed"
    );
    let reason = book.get(&id).unwrap().unwrap().reason.unwrap();
    assert!(
        reason.contains("still behind 10 s after being frozen"),
        "{reason}"
    );

    // Paid in full, but the lease's time is up.
    let id2 = LeaseId([8; 32]);
    let name2 = start(id2, 60, &sleep, true);
    pay(&id2, 10_000);
    tick(150);
    assert_eq!((state(&id2), boxed(&name2)), (State::Running, Box::Running));
    tick(160);
    assert_eq!(state(&id2), State::Terminating);
    assert!(env.rt().get(&name2).is_err());

    // A container that exits by itself ends its lease: the buyer stops
    // owing for a dead container.
    let id3 = LeaseId([9; 32]);
    let name3 = start(id3, 3600, &["sh", "-c", "exit 3"], true);
    pay(&id3, 1_000_000);
    env.rt()
        .wait(&name3, Some(Duration::from_secs(30)))
        .unwrap();
    tick(170);
    let l = book.get(&id3).unwrap().unwrap();
    assert_eq!(l.state, State::Terminating);
    let reason = l.reason.unwrap();
    assert!(reason.contains("exited by itself (status 3)"), "{reason}");

    // One lease whose container cannot be frozen (created, never
    // started), then one that can: the second is frozen all the same.
    let stuck = LeaseId([0x10; 32]);
    start(stuck, 3600, &sleep, false);
    let next = LeaseId([0x11; 32]);
    let next_name = start(next, 3600, &sleep, true);
    let failed = exec.tick(UnixTime(300));
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, stuck);
    assert_eq!(
        (state(&next), boxed(&next_name)),
        (State::Frozen, Box::Paused)
    );
}
