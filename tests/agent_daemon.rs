//! The seller agent end to end on one machine: a real anvil with the
//! contracts, the EdgeX simulator, Kubo's blocks behind Helia, the sandbox.
//! A buyer (this test, speaking the p2p protocol) proposes, gets accepted,
//! deposits the fee, proves its channel, pays, deploys an image by CID that
//! reads a leased sensor, reads its logs, ends the lease; the agent settles
//! on chain and claims its pay. Needs root and cgroups (SKIP otherwise).

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy_primitives::{U256, Uint};
use common::{Anvil, policy, signer};
use dedge::agent::daemon::Agent;
use dedge::agent::lease::State;
use dedge::board::BoardFile;
use dedge::chain::bindings::IEDGToken;
use dedge::chain::eip712::{self, Offer};
use dedge::chain::tx::TxSender;
use dedge::channel::{Sender, onchain};
use dedge::market::{self, Capabilities};
use dedge::p2p::{self, Body, OfferTerms};
use dedge::store::Store;

#[path = "common/cli.rs"]
mod cli;
#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/kubo.rs"]
mod kubo;
#[path = "common/oci.rs"]
mod oci;
#[path = "common/sandbox.rs"]
mod sandbox;
use common::bounded;

#[test]
fn a_lease_from_offer_to_settlement_through_the_agent() {
    if !sandbox::can_run("a_lease_from_offer_to_settlement_through_the_agent") {
        return;
    }
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let nonces = Store::temporary().unwrap();
    let tx = |s| TxSender::new(&rpc, s, anvil.chain_id, nonces.tree("n").unwrap(), policy());
    let (deployer, buyer, gateway, operator) = (signer(0), signer(1), signer(2), signer(3));
    tx(&deployer)
        .execute(
            d.token,
            &IEDGToken::transferCall {
                to: buyer.address(),
                value: U256::from(10u128.pow(21)),
            },
        )
        .unwrap();
    market::register_gateway(&tx(&operator), &gateway, &d).unwrap();

    // The buyer's image: busybox reading its sensor, by CID.
    let dir = tempfile::tempdir().unwrap();
    let script =
        "wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/Random-Integer-Device/Int8; sleep 30";
    let layout = oci::build_image(
        dir.path(),
        "v1",
        |root| oci::install_busybox(root, &[]),
        &[
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            script,
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let cid = kubo::add(&dir.path().join("kubo"), &[&layout])
        .pop()
        .unwrap();
    let ipfs = gateway::Gateway::start(&dir.path().join("kubo"));
    let sim = common::edgex::Simulator::start(&[]);

    // The gateway: the dev board pointed at these.
    let text = std::fs::read_to_string(common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "chain_id = 31337",
            &format!("chain_id = {}", anvil.chain_id),
        )
        .replace("http://127.0.0.1:8545", &anvil.url)
        .replace("http://127.0.0.1:59881", &sim.metadata)
        .replace("http://127.0.0.1:59882", &sim.command)
        .replace("http://127.0.0.1:59880", &sim.data)
        .replace("http://127.0.0.1:8080", &ipfs.url);
    std::fs::create_dir_all(dir.path().join("boards")).unwrap();
    let board_path = dir.path().join("boards/gw.toml");
    std::fs::write(&board_path, text).unwrap();
    let board = BoardFile::load(&board_path).unwrap().board;
    let agent = Arc::new(Agent::open(&board, signer(2), anvil.rpc(), d, policy()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _endpoint = agent.serve(listener);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (agent, stop) = (agent.clone(), stop.clone());
        std::thread::spawn(move || agent.run(&stop, Duration::from_millis(200)))
    };

    // Offer over one session; the agent accepts on chain.
    let caps = Capabilities::from_board(&board);
    let offer = Offer {
        buyer: buyer.address(),
        gateway: gateway.address(),
        cpuMillicores: 500,
        memoryBytes: 64 << 20,
        diskBytes: 256 << 20,
        devices: vec!["Random-Integer-Device:Int8:r".into()],
        pricePerSecond: Uint::from(caps.lease_price(500, 64 << 20, 1)),
        maxDuration: 3600,
        paymentInterval: 5,
        image: cid.clone(),
        expiry: Uint::from(u32::MAX),
        nonce: 1,
    };
    let buyer_tx = tx(&buyer);
    let id = market::propose(&buyer_tx, &d, &offer).unwrap();
    let mut s = p2p::connect(
        TcpStream::connect(addr).unwrap(),
        &buyer,
        anvil.chain_id,
        gateway.address(),
    )
    .unwrap();
    let mut ask = |b: Body| {
        s.send(b).unwrap();
        s.recv().unwrap()
    };
    let digest = eip712::offer_hash(&offer, &eip712::market_domain(anvil.chain_id, d.market));
    let answer = ask(Body::Offer {
        terms: OfferTerms::from(&offer),
        signature: buyer.sign_hash(&digest).unwrap().as_bytes().to_vec(),
    });
    assert_eq!(answer, Body::OfferAccepted { lease: id.0 });

    // Fee, channel, a first payment, the image.
    market::deposit_fee(&buyer_tx, &d, id).unwrap();
    let channel =
        onchain::open(&buyer_tx, &d, gateway.address(), U256::from(10u128.pow(18))).unwrap();
    let state_of = |b: Body| match b {
        Body::Status { state, detail, .. } => (state, detail),
        other => panic!("{other:?}"),
    };
    let (state, _) = state_of(ask(Body::ChannelProof {
        lease: id.0,
        channel: channel.id.0,
    }));
    assert_eq!(state, "channel proven");
    let pay = Sender::new(
        Store::temporary().unwrap(),
        anvil.chain_id,
        d.channels,
        signer(1),
    )
    .unwrap();
    pay.open(channel).unwrap();
    let first = offer.pricePerSecond.to::<u128>() * 60;
    let p = pay.pay(channel.id, id, U256::from(first)).unwrap();
    assert!(matches!(
        ask(Body::Payment {
            lease: id.0,
            channel: channel.id.0,
            amount: p.amount.to_be_bytes(),
            signature: p.signature.clone(),
        }),
        Body::PaymentAck { .. }
    ));
    let (state, detail) = state_of(ask(Body::Deploy {
        lease: id.0,
        image_cid: cid.clone(),
        manifest_digest: manifest,
    }));
    assert_eq!(state, "running", "{detail}");

    // The container's output: its sensor reading, through the bridge.
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let Body::Logs { data, .. } = ask(Body::Logs {
            lease: id.0,
            stream: 1,
            offset: 0,
            data: vec![],
        }) else {
            panic!("no logs")
        };
        if !data.is_empty() || Instant::now() > deadline {
            break String::from_utf8_lossy(&data).into_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let reading: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(reading["event"]["readings"][0]["resourceName"], "Int8");
    let (state, detail) = state_of(ask(Body::Status {
        lease: id.0,
        state: String::new(),
        detail: String::new(),
    }));
    assert_eq!(state, "running");
    assert!(detail.starts_with(&format!("paid {first} of")), "{detail}");

    // The buyer ends it; both report, the agent settles and claims.
    market::terminate(&buyer_tx, &d, id, U256::from(first)).unwrap();
    let (state, detail) = state_of(ask(Body::Terminate {
        lease: id.0,
        reason: "done".into(),
    }));
    assert_eq!(state, "settled", "{detail}");
    assert_eq!(market::lease(&rpc, &d, id).unwrap().state, 5);
    let invoice = market::invoice(&rpc, &d, id).unwrap().unwrap();
    assert_eq!(invoice.sellerReported.to::<u128>(), first);
    assert_eq!(
        agent.book.get(&id.0).unwrap().unwrap().state,
        State::Settled
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    ticker.join().unwrap();
}

/// `dedge agent` as an operator runs it: serves buyers on the board's
/// address, reports its state through `agent status`, stops on SIGTERM.
#[test]
fn the_agent_command_serves_reports_and_stops_on_sigterm() {
    if !sandbox::can_run("the_agent_command_serves_reports_and_stops_on_sigterm") {
        return;
    }
    let anvil = Anvil::start();
    let _d = anvil.deploy();
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "chain_id = 31337",
            &format!("chain_id = {}", anvil.chain_id),
        )
        .replace("http://127.0.0.1:8545", &anvil.url)
        .replace("127.0.0.1:7300", &format!("127.0.0.1:{port}"));
    std::fs::create_dir_all(dir.path().join("boards")).unwrap();
    std::fs::create_dir_all(dir.path().join("target/dev-gateway")).unwrap();
    std::fs::write(dir.path().join("target/dev-gateway/passphrase"), "pw\n").unwrap();
    let board = dir.path().join("boards/gw.toml");
    std::fs::write(&board, text).unwrap();
    let b = board.to_str().unwrap();
    let (code, gw, err) = cli::dedge(&["key", "new", "--board", b]);
    assert_eq!(code, 0, "{err}");
    let gw: alloy_primitives::Address = gw.trim().parse().unwrap();

    let mut agent = std::process::Command::new(env!("CARGO_BIN_EXE_dedge"))
        .args(["agent", "--board", b])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                let _ = agent.kill();
                panic!("the agent never listened: {e}");
            }
        }
    };
    let mut s = p2p::connect(stream, &signer(1), anvil.chain_id, gw).unwrap();
    s.send(Body::Status {
        lease: [0; 32],
        state: String::new(),
        detail: String::new(),
    })
    .unwrap();
    assert_eq!(
        s.recv().unwrap(),
        Body::Error {
            message: "no such lease of yours".into()
        }
    );
    let status = loop {
        let (code, out, _) = cli::dedge(&["agent", "status", "--board", b, "--json"]);
        if code == 0 || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let v: serde_json::Value =
        serde_json::from_str(&status).unwrap_or_else(|e| panic!("{status}: {e}"));
    assert_eq!(
        v["gateway"].as_str().unwrap().to_lowercase(),
        format!("{gw:#x}")
    );
    assert_eq!(v["leases"], serde_json::json!([]));
    assert_eq!(v["resources"]["cpu_millicores"]["of"], 1000);

    // SIGTERM: a clean stop.
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the agent ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{status:?}: {err}");
    assert!(err.contains("agent stopped"), "{err}");
}

/// `dedge agent` killed with SIGKILL in the middle of a running lease and
/// started again: the lease is still running, no acknowledged payment is
/// lost, the container kept running and reads its sensor again through a
/// re-attached bridge, and the lease settles with everything claimed.
#[test]
fn a_seller_killed_mid_lease_resumes_it_and_loses_no_payment() {
    if !sandbox::can_run("a_seller_killed_mid_lease_resumes_it_and_loses_no_payment") {
        return;
    }
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let nonces = Store::temporary().unwrap();
    let tx = |s| TxSender::new(&rpc, s, anvil.chain_id, nonces.tree("n").unwrap(), policy());
    let (deployer, buyer, operator) = (signer(0), signer(1), signer(3));
    tx(&deployer)
        .execute(
            d.token,
            &IEDGToken::transferCall {
                to: buyer.address(),
                value: U256::from(10u128.pow(21)),
            },
        )
        .unwrap();

    // The image reads the sensor every half second, forever.
    let dir = tempfile::tempdir().unwrap();
    let script = "while true; do wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/Random-Integer-Device/Int8; echo; sleep 0.5; done";
    let layout = oci::build_image(
        dir.path(),
        "v1",
        |root| oci::install_busybox(root, &[]),
        &[
            "--config.cmd",
            "sh",
            "--config.cmd",
            "-c",
            "--config.cmd",
            script,
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let cid = kubo::add(&dir.path().join("kubo"), &[&layout])
        .pop()
        .unwrap();
    let ipfs = gateway::Gateway::start(&dir.path().join("kubo"));
    let sim = common::edgex::Simulator::start(&[]);

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let text = std::fs::read_to_string(common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "chain_id = 31337",
            &format!("chain_id = {}", anvil.chain_id),
        )
        .replace("http://127.0.0.1:8545", &anvil.url)
        .replace("http://127.0.0.1:59881", &sim.metadata)
        .replace("http://127.0.0.1:59882", &sim.command)
        .replace("http://127.0.0.1:59880", &sim.data)
        .replace("http://127.0.0.1:8080", &ipfs.url)
        .replace("127.0.0.1:7300", &format!("127.0.0.1:{port}"));
    std::fs::create_dir_all(dir.path().join("boards")).unwrap();
    std::fs::create_dir_all(dir.path().join("target/dev-gateway")).unwrap();
    std::fs::write(dir.path().join("target/dev-gateway/passphrase"), "pw\n").unwrap();
    let board_path = dir.path().join("boards/gw.toml");
    std::fs::write(&board_path, text).unwrap();
    let b = board_path.to_str().unwrap();
    let (code, _, err) = cli::dedge(&["key", "new", "--board", b]);
    assert_eq!(code, 0, "{err}");
    let gateway =
        dedge::chain::keystore::load(&dir.path().join("target/dev-gateway/key.json"), b"pw")
            .unwrap();
    let _: serde_json::Value = rpc
        .call(
            "anvil_setBalance",
            serde_json::json!([gateway.address(), "0x56BC75E2D63100000"]),
        )
        .unwrap();
    market::register_gateway(&tx(&operator), &gateway, &d).unwrap();
    let board = BoardFile::load(&board_path).unwrap().board;

    let start_agent = || {
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_dedge"))
            .args(["agent", "--board", b])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "the agent never listened: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let s = p2p::connect(stream, &buyer, anvil.chain_id, gateway.address()).unwrap();
        (child, s)
    };
    let (mut agent, mut s) = start_agent();
    let ask = |s: &mut p2p::Session<TcpStream>, b: Body| {
        s.send(b).unwrap();
        s.recv().unwrap()
    };

    let caps = Capabilities::from_board(&board);
    let offer = Offer {
        buyer: buyer.address(),
        gateway: gateway.address(),
        cpuMillicores: 500,
        memoryBytes: 64 << 20,
        diskBytes: 256 << 20,
        devices: vec!["Random-Integer-Device:Int8:r".into()],
        pricePerSecond: Uint::from(caps.lease_price(500, 64 << 20, 1)),
        maxDuration: 3600,
        paymentInterval: 5,
        image: cid.clone(),
        expiry: Uint::from(u32::MAX),
        nonce: 1,
    };
    let buyer_tx = tx(&buyer);
    let id = market::propose(&buyer_tx, &d, &offer).unwrap();
    let digest = eip712::offer_hash(&offer, &eip712::market_domain(anvil.chain_id, d.market));
    assert_eq!(
        ask(
            &mut s,
            Body::Offer {
                terms: OfferTerms::from(&offer),
                signature: buyer.sign_hash(&digest).unwrap().as_bytes().to_vec(),
            }
        ),
        Body::OfferAccepted { lease: id.0 }
    );
    market::deposit_fee(&buyer_tx, &d, id).unwrap();
    let channel =
        onchain::open(&buyer_tx, &d, gateway.address(), U256::from(10u128.pow(18))).unwrap();
    assert!(matches!(
        ask(
            &mut s,
            Body::ChannelProof {
                lease: id.0,
                channel: channel.id.0
            }
        ),
        Body::Status { .. }
    ));
    let pay = Sender::new(
        Store::temporary().unwrap(),
        anvil.chain_id,
        d.channels,
        signer(1),
    )
    .unwrap();
    pay.open(channel).unwrap();
    let minute = offer.pricePerSecond.to::<u128>() * 60;
    let payment = |s: &mut p2p::Session<TcpStream>| {
        let p = pay.pay(channel.id, id, U256::from(minute)).unwrap();
        let ack = ask(
            s,
            Body::Payment {
                lease: id.0,
                channel: channel.id.0,
                amount: p.amount.to_be_bytes(),
                signature: p.signature.clone(),
            },
        );
        assert_eq!(
            ack,
            Body::PaymentAck {
                lease: id.0,
                amount: p.amount.to_be_bytes()
            }
        );
    };
    payment(&mut s);
    payment(&mut s);
    match ask(
        &mut s,
        Body::Deploy {
            lease: id.0,
            image_cid: cid.clone(),
            manifest_digest: manifest,
        },
    ) {
        Body::Status { state, detail, .. } => assert_eq!(state, "running", "{detail}"),
        other => panic!("{other:?}"),
    }
    let readings = |s: &mut p2p::Session<TcpStream>| -> usize {
        match ask(
            s,
            Body::Logs {
                lease: id.0,
                stream: 1,
                offset: 0,
                data: vec![],
            },
        ) {
            Body::Logs { data, .. } => String::from_utf8_lossy(&data)
                .matches("\"resourceName\":\"Int8\"")
                .count(),
            other => panic!("{other:?}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while readings(&mut s) == 0 {
        assert!(Instant::now() < deadline, "no reading");
        std::thread::sleep(Duration::from_millis(200));
    }

    // SIGKILL: no chance to flush or say goodbye.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let (mut agent, mut s) = start_agent();
    match ask(
        &mut s,
        Body::Status {
            lease: id.0,
            state: String::new(),
            detail: String::new(),
        },
    ) {
        Body::Status { state, detail, .. } => {
            assert_eq!(state, "running");
            assert!(
                detail.starts_with(&format!("paid {} of", 2 * minute)),
                "{detail}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The container went on reading, and reads through the new bridge.
    let before = readings(&mut s);
    let deadline = Instant::now() + Duration::from_secs(20);
    while readings(&mut s) <= before {
        assert!(Instant::now() < deadline, "no reading after the restart");
        std::thread::sleep(Duration::from_millis(200));
    }
    payment(&mut s);

    // The end: everything acknowledged is reported and claimed.
    let total = 3 * minute;
    market::terminate(&buyer_tx, &d, id, U256::from(total)).unwrap();
    match ask(
        &mut s,
        Body::Terminate {
            lease: id.0,
            reason: "done".into(),
        },
    ) {
        Body::Status { state, detail, .. } => assert_eq!(state, "settled", "{detail}"),
        other => panic!("{other:?}"),
    }
    let ch: dedge::chain::bindings::IChannelManager::Channel = dedge::chain::tx::view(
        &rpc,
        d.channels,
        &dedge::chain::bindings::IChannelManager::channelOfCall {
            channelId: channel.id,
        },
    )
    .unwrap();
    assert_eq!(ch.claimed.to::<u128>(), total);
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    agent.wait().unwrap();
}

/// A buyer who stops paying: frozen once behind by more than the grace,
/// thawed when it pays up, stopped when it stays behind, and the seller
/// reports and claims every payment it acknowledged (the buyer never
/// reports: the market settles after its timeout).
#[test]
fn a_buyer_who_stops_paying_is_frozen_then_stopped_and_the_seller_keeps_its_pay() {
    if !sandbox::can_run(
        "a_buyer_who_stops_paying_is_frozen_then_stopped_and_the_seller_keeps_its_pay",
    ) {
        return;
    }
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let nonces = Store::temporary().unwrap();
    let tx = |s| TxSender::new(&rpc, s, anvil.chain_id, nonces.tree("n").unwrap(), policy());
    let (deployer, buyer, gateway, operator) = (signer(0), signer(1), signer(2), signer(3));
    tx(&deployer)
        .execute(
            d.token,
            &IEDGToken::transferCall {
                to: buyer.address(),
                value: U256::from(10u128.pow(21)),
            },
        )
        .unwrap();
    market::register_gateway(&tx(&operator), &gateway, &d).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = oci::build_image(
        dir.path(),
        "v1",
        |root| oci::install_busybox(root, &[]),
        &["--config.cmd", "sleep", "--config.cmd", "1000"],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let cid = kubo::add(&dir.path().join("kubo"), &[&layout])
        .pop()
        .unwrap();
    let ipfs = gateway::Gateway::start(&dir.path().join("kubo"));
    // A 2-second grace; no EdgeX.
    let text = std::fs::read_to_string(common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "chain_id = 31337",
            &format!("chain_id = {}", anvil.chain_id),
        )
        .replace("http://127.0.0.1:8545", &anvil.url)
        .replace("http://127.0.0.1:8080", &ipfs.url)
        .replace("grace = \"10s\"", "grace = \"2s\"");
    let text =
        text[..text.find("[edgex]").unwrap()].to_string() + &text[text.find("[ipfs]").unwrap()..];
    std::fs::create_dir_all(dir.path().join("boards")).unwrap();
    let board_path = dir.path().join("boards/gw.toml");
    std::fs::write(&board_path, text).unwrap();
    let board = BoardFile::load(&board_path).unwrap().board;
    let agent = Arc::new(Agent::open(&board, signer(2), anvil.rpc(), d, policy()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let _endpoint = agent.serve(listener);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (agent, stop) = (agent.clone(), stop.clone());
        std::thread::spawn(move || agent.run(&stop, Duration::from_millis(200)))
    };

    let caps = Capabilities::from_board(&board);
    let price = caps.lease_price(500, 64 << 20, 0);
    let offer = Offer {
        buyer: buyer.address(),
        gateway: gateway.address(),
        cpuMillicores: 500,
        memoryBytes: 64 << 20,
        diskBytes: 256 << 20,
        devices: vec![],
        pricePerSecond: Uint::from(price),
        maxDuration: 3600,
        paymentInterval: 5,
        image: cid.clone(),
        expiry: Uint::from(u32::MAX),
        nonce: 1,
    };
    let buyer_tx = tx(&buyer);
    let id = market::propose(&buyer_tx, &d, &offer).unwrap();
    let mut s = p2p::connect(
        TcpStream::connect(addr).unwrap(),
        &buyer,
        anvil.chain_id,
        gateway.address(),
    )
    .unwrap();
    let mut ask = |b: Body| {
        s.send(b).unwrap();
        s.recv().unwrap()
    };
    let digest = eip712::offer_hash(&offer, &eip712::market_domain(anvil.chain_id, d.market));
    assert_eq!(
        ask(Body::Offer {
            terms: OfferTerms::from(&offer),
            signature: buyer.sign_hash(&digest).unwrap().as_bytes().to_vec(),
        }),
        Body::OfferAccepted { lease: id.0 }
    );
    market::deposit_fee(&buyer_tx, &d, id).unwrap();
    let channel =
        onchain::open(&buyer_tx, &d, gateway.address(), U256::from(10u128.pow(18))).unwrap();
    ask(Body::ChannelProof {
        lease: id.0,
        channel: channel.id.0,
    });
    let pay = Sender::new(
        Store::temporary().unwrap(),
        anvil.chain_id,
        d.channels,
        signer(1),
    )
    .unwrap();
    pay.open(channel).unwrap();
    let mut paid = 0u128;
    let mut pay_for = |ask: &mut dyn FnMut(Body) -> Body, secs: u128| {
        let p = pay.pay(channel.id, id, U256::from(price * secs)).unwrap();
        paid += price * secs;
        assert!(matches!(
            ask(Body::Payment {
                lease: id.0,
                channel: channel.id.0,
                amount: p.amount.to_be_bytes(),
                signature: p.signature.clone(),
            }),
            Body::PaymentAck { .. }
        ));
        paid
    };
    pay_for(&mut ask, 3);
    match ask(Body::Deploy {
        lease: id.0,
        image_cid: cid,
        manifest_digest: manifest,
    }) {
        Body::Status { state, detail, .. } => assert_eq!(state, "running", "{detail}"),
        other => panic!("{other:?}"),
    }
    let wait_for = |ask: &mut dyn FnMut(Body) -> Body, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            match ask(Body::Status {
                lease: id.0,
                state: String::new(),
                detail: String::new(),
            }) {
                Body::Status { state, .. } if state == want => return,
                Body::Status { state, detail, .. } => {
                    assert!(
                        Instant::now() < deadline,
                        "still {state} ({detail}), waiting for {want}"
                    )
                }
                other => panic!("{other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // Behind by more than 2 s' worth: frozen. Paid up: running again.
    wait_for(&mut ask, "frozen");
    let total = pay_for(&mut ask, 5);
    wait_for(&mut ask, "running");
    // Nothing more: frozen, then stopped after a second grace; the seller
    // reports what it was paid and waits out the buyer.
    wait_for(&mut ask, "frozen");
    wait_for(&mut ask, "terminating");
    assert_eq!(market::lease(&rpc, &d, id).unwrap().state, 4);
    let _: serde_json::Value = rpc
        .call("evm_increaseTime", serde_json::json!([86_401]))
        .unwrap();
    let _: serde_json::Value = rpc.call("evm_mine", serde_json::json!([])).unwrap();
    wait_for(&mut ask, "settled");
    let invoice = market::invoice(&rpc, &d, id).unwrap().unwrap();
    assert_eq!(invoice.sellerReported.to::<u128>(), total);
    let ch: dedge::chain::bindings::IChannelManager::Channel = dedge::chain::tx::view(
        &rpc,
        d.channels,
        &dedge::chain::bindings::IChannelManager::channelOfCall {
            channelId: channel.id,
        },
    )
    .unwrap();
    assert_eq!(
        ch.claimed.to::<u128>(),
        total,
        "every acknowledged payment claimed"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    ticker.join().unwrap();
}
