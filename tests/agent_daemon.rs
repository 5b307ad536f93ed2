//! The seller agent end to end on one machine: a real anvil with the
//! contracts, the EdgeX simulator, Kubo's blocks behind Helia, the sandbox.
//! A buyer (this test, speaking the p2p protocol) proposes, gets accepted,
//! deposits the fee, proves its channel, pays, deploys an image by CID that
//! reads a leased sensor, reads its logs, ends the lease; the agent settles
//! on chain and claims its pay. Also: `dedge agent` as a process (serving,
//! status, SIGTERM; SIGKILL mid-lease and restart), and a buyer who stops
//! paying. Needs root and cgroups (SKIP otherwise).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256, U256, Uint};
use common::edgex::Simulator;
use common::{Anvil, policy, signer};
use dedge::agent::daemon::Agent;
use dedge::agent::lease::State;
use dedge::board::{Board, BoardFile};
use dedge::chain::bindings::{IChannelManager, IEDGToken};
use dedge::chain::eip712::{self, Offer};
use dedge::chain::tx::{TxSender, view};
use dedge::chain::{Deployment, Rpc, Signer};
use dedge::channel::{ChannelInfo, Proof, Sender, onchain};
use dedge::market::{self, Capabilities};
use dedge::p2p::{self, Body, OfferTerms, Session};
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

const READ_INT8: &str =
    "wget -q -O - $DEDGE_EDGEX_URL/api/v3/device/name/Random-Integer-Device/Int8";

/// A fresh chain with the contracts, the buyer (account 1) funded, and a
/// scratch directory.
struct World {
    anvil: Anvil,
    d: Deployment,
    rpc: Rpc,
    nonces: Store,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let anvil = Anvil::start();
        let d = anvil.deploy();
        let w = World {
            rpc: anvil.rpc(),
            anvil,
            d,
            nonces: Store::temporary().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        };
        w.tx(&signer(0))
            .execute(
                d.token,
                &IEDGToken::transferCall {
                    to: signer(1).address(),
                    value: U256::from(10u128.pow(21)),
                },
            )
            .unwrap();
        w
    }

    fn tx<'a>(&'a self, s: &'a Signer) -> TxSender<'a> {
        TxSender::new(
            &self.rpc,
            s,
            self.anvil.chain_id,
            self.nonces.tree("n").unwrap(),
            policy(),
        )
    }

    /// Gas for the gateway key, bound to operator account 3.
    fn register(&self, gateway: &Signer) {
        let _: serde_json::Value = self
            .rpc
            .call(
                "anvil_setBalance",
                serde_json::json!([gateway.address(), "0x56BC75E2D63100000"]),
            )
            .unwrap();
        market::register_gateway(&self.tx(&signer(3)), gateway, &self.d).unwrap();
    }

    /// A busybox image whose Cmd is `sh -c script`, added to Kubo and
    /// served by Helia: its CID, its manifest digest, the gateway.
    fn image(&self, script: &str) -> (String, String, gateway::Gateway) {
        let (layout, manifest) = oci::script_image(self.dir.path(), script);
        let repo = self.dir.path().join("kubo");
        let cid = kubo::add(&repo, &[&layout]).pop().unwrap();
        (cid, manifest, gateway::Gateway::start(&repo))
    }

    /// The dev board pointed at this chain, `ipfs` (if any) and the
    /// simulator (no `[edgex]` without one), then `edit`ed; written under the scratch
    /// directory with a passphrase file for `key new`.
    fn board(
        &self,
        ipfs: Option<&gateway::Gateway>,
        sim: Option<&Simulator>,
        edit: impl Fn(String) -> String,
    ) -> PathBuf {
        let mut text = std::fs::read_to_string(common::repo().join("boards/dev-x86_64.toml"))
            .unwrap()
            .replace(
                "chain_id = 31337",
                &format!("chain_id = {}", self.anvil.chain_id),
            )
            .replace("http://127.0.0.1:8545", &self.anvil.url);
        if let Some(g) = ipfs {
            text = text.replace("http://127.0.0.1:8080", &g.url);
        }
        match sim {
            Some(s) => {
                text = text
                    .replace("http://127.0.0.1:59881", &s.metadata)
                    .replace("http://127.0.0.1:59882", &s.command)
                    .replace("http://127.0.0.1:59880", &s.data);
            }
            None => {
                let (a, b) = (text.find("[edgex]").unwrap(), text.find("[ipfs]").unwrap());
                text.replace_range(a..b, "");
            }
        }
        let dir = self.dir.path();
        std::fs::create_dir_all(dir.join("boards")).unwrap();
        std::fs::create_dir_all(dir.join("target/dev-gateway")).unwrap();
        std::fs::write(dir.join("target/dev-gateway/passphrase"), "pw\n").unwrap();
        let path = dir.join("boards/gw.toml");
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    /// The buyer's signed offer message for `offer`.
    fn signed(&self, offer: &Offer) -> Body {
        let digest = eip712::offer_hash(
            offer,
            &eip712::market_domain(self.anvil.chain_id, self.d.market),
        );
        Body::Offer {
            terms: OfferTerms::from(offer),
            signature: signer(1).sign_hash(&digest).unwrap().as_bytes().to_vec(),
        }
    }

    /// Fee deposited, a channel opened to `gateway`; its payer.
    fn fund(&self, lease: B256, gateway: Address) -> (ChannelInfo, Sender) {
        let buyer = signer(1);
        market::deposit_fee(&self.tx(&buyer), &self.d, lease).unwrap();
        let channel = onchain::open(
            &self.tx(&buyer),
            &self.d,
            gateway,
            U256::from(10u128.pow(18)),
        )
        .unwrap();
        let pay = Sender::new(
            Store::temporary().unwrap(),
            self.anvil.chain_id,
            self.d.channels,
            signer(1),
        )
        .unwrap();
        pay.open(channel).unwrap();
        (channel, pay)
    }

    fn claimed(&self, channel: B256) -> u128 {
        let ch: IChannelManager::Channel = view(
            &self.rpc,
            self.d.channels,
            &IChannelManager::channelOfCall { channelId: channel },
        )
        .unwrap();
        ch.claimed.to::<u128>()
    }

    fn session(&self, port: u16, gateway: Address) -> Session<TcpStream> {
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
        p2p::connect(stream, &signer(1), self.anvil.chain_id, gateway).unwrap()
    }
}

/// An offer for `image` at the board's price.
fn offer(board: &Board, gateway: Address, image: &str, devices: &[&str]) -> Offer {
    let caps = Capabilities::from_board(board);
    Offer {
        buyer: signer(1).address(),
        gateway,
        cpuMillicores: 500,
        memoryBytes: 64 << 20,
        diskBytes: 256 << 20,
        devices: devices.iter().map(|d| d.to_string()).collect(),
        pricePerSecond: Uint::from(caps.lease_price(500, 64 << 20, devices.len())),
        maxDuration: 3600,
        paymentInterval: 5,
        image: image.into(),
        expiry: Uint::from(u32::MAX),
        nonce: 1,
    }
}

/// Proposes `offer`, has it accepted over `s`, deposits the fee, opens the
/// channel and proves it: the lease id, the channel and its payer.
fn lease_up(
    w: &World,
    s: &mut Session<TcpStream>,
    offer: &Offer,
    gateway: Address,
) -> (B256, ChannelInfo, Sender) {
    let id = market::propose(&w.tx(&signer(1)), &w.d, offer).unwrap();
    assert_eq!(ask(s, w.signed(offer)), Body::OfferAccepted { lease: id.0 });
    let (channel, payer) = w.fund(id, gateway);
    let (state, detail) = state_of(ask(
        s,
        Body::ChannelProof {
            lease: id.0,
            channel: channel.id.0,
        },
    ));
    assert_eq!(state, "channel proven", "{detail}");
    (id, channel, payer)
}

fn ask(s: &mut Session<TcpStream>, b: Body) -> Body {
    s.send(b).unwrap();
    s.recv().unwrap()
}

fn state_of(b: Body) -> (String, String) {
    match b {
        Body::Status { state, detail, .. } => (state, detail),
        other => panic!("{other:?}"),
    }
}

fn status(s: &mut Session<TcpStream>, lease: B256) -> (String, String) {
    state_of(ask(
        s,
        Body::Status {
            lease: lease.0,
            state: String::new(),
            detail: String::new(),
        },
    ))
}

/// Polls the lease's state until it is `want`.
fn wait_for(s: &mut Session<TcpStream>, lease: B256, want: &str) {
    poll_until(40, || {
        let (state, detail) = status(s, lease);
        (state == want)
            .then_some(())
            .ok_or_else(|| format!("still {state} ({detail}), waiting for {want}"))
    });
}

/// Waits until the Market contract holds `lease` in `state`.
fn wait_for_market(w: &World, lease: B256, state: u8) {
    poll_until(40, || {
        let now = market::lease(&w.rpc, &w.d, lease).unwrap().state;
        (now == state)
            .then_some(())
            .ok_or_else(|| format!("market state still {now}, waiting for {state}"))
    });
}

/// Calls `check` every 200 ms until it is `Ok`; fails the test with its
/// last complaint after `secs` seconds.
fn poll_until<T>(secs: u64, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends a payment of `amount` more; it must be acknowledged.
fn pay(s: &mut Session<TcpStream>, payer: &Sender, lease: B256, channel: B256, amount: u128) {
    let p: Proof = payer.pay(channel, lease, U256::from(amount)).unwrap();
    let ack = ask(
        s,
        Body::Payment {
            lease: lease.0,
            channel: channel.0,
            amount: p.amount.to_be_bytes(),
            signature: p.signature.clone(),
        },
    );
    assert_eq!(
        ack,
        Body::PaymentAck {
            lease: lease.0,
            amount: p.amount.to_be_bytes()
        }
    );
}

fn deploy(s: &mut Session<TcpStream>, lease: B256, cid: &str, manifest: &str) {
    let (state, detail) = state_of(ask(
        s,
        Body::Deploy {
            backends: vec![],
            lease: lease.0,
            image_cid: cid.into(),
            manifest_digest: manifest.into(),
        },
    ));
    assert_eq!(state, "running", "{detail}");
}

/// The container's stdout so far.
fn stdout(s: &mut Session<TcpStream>, lease: B256) -> String {
    match ask(
        s,
        Body::Logs {
            lease: lease.0,
            stream: 1,
            offset: 0,
            data: vec![],
        },
    ) {
        Body::Logs { data, .. } => String::from_utf8_lossy(&data).into_owned(),
        other => panic!("{other:?}"),
    }
}

/// Waits for the container to have printed more than `n` Int8 readings.
fn readings_above(s: &mut Session<TcpStream>, lease: B256, n: usize) -> usize {
    poll_until(20, || {
        let count = stdout(s, lease)
            .matches("\"resourceName\":\"Int8\"")
            .count();
        (count > n)
            .then_some(count)
            .ok_or_else(|| "no new sensor reading".to_string())
    })
}

fn terminate(s: &mut Session<TcpStream>, lease: B256) -> String {
    let (state, _) = state_of(ask(
        s,
        Body::Terminate {
            lease: lease.0,
            reason: "done".into(),
        },
    ));
    if state != "terminating" {
        return state;
    }
    // The agent's tick may hold the next settle step (each is sent once);
    // the buyer CLI, too, asks until the lease settles.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (state, _) = status(s, lease);
        if state != "terminating" || Instant::now() >= deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An in-process agent serving on a free port, ticking every 200 ms.
struct Running {
    agent: Arc<Agent>,
    port: u16,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
    _endpoint: dedge::tcp_server::TcpServer,
}

impl Running {
    fn start(board: &Board, w: &World) -> Running {
        let agent = Arc::new(Agent::open(board, signer(2), w.anvil.rpc(), w.d, policy()).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let endpoint = agent.serve(listener);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (agent, stop) = (agent.clone(), stop.clone());
            std::thread::spawn(move || agent.run(&stop, Duration::from_millis(200)))
        };
        Running {
            agent,
            port,
            stop,
            ticker: Some(ticker),
            _endpoint: endpoint,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// A board for `dedge agent` as a process: on a free port of its own, with
/// a key made by `dedge key new`. The port, the board, the gateway.
fn process_board(
    w: &World,
    ipfs: Option<&gateway::Gateway>,
    sim: Option<&Simulator>,
) -> (u16, PathBuf, Address) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let board = w.board(ipfs, sim, |t| {
        t.replace("127.0.0.1:7300", &format!("127.0.0.1:{port}"))
    });
    let (code, gw, err) = cli::dedge(&["key", "new", "--board", board.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    (port, board, gw.trim().parse().unwrap())
}

/// The key `process_board` made, registered on chain.
fn registered_gateway(w: &World) -> Signer {
    let gateway =
        dedge::chain::keystore::load(&w.dir.path().join("target/dev-gateway/key.json"), b"pw")
            .unwrap();
    w.register(&gateway);
    gateway
}

/// `dedge agent --board` as a process.
fn agent_process(board: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dedge"))
        .args(["agent", "--board", board])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn a_lease_from_offer_to_settlement_through_the_agent() {
    if !sandbox::can_run("a_lease_from_offer_to_settlement_through_the_agent") {
        return;
    }
    let w = World::new();
    let gateway = signer(2);
    w.register(&gateway);
    let (cid, manifest, ipfs) = w.image(&format!("{READ_INT8}; sleep 30"));
    let sim = Simulator::start(&[]);
    let board = BoardFile::load(&w.board(Some(&ipfs), Some(&sim), |t| t))
        .unwrap()
        .board;
    let agent = Running::start(&board, &w);

    let offer = offer(
        &board,
        gateway.address(),
        &cid,
        &["Random-Integer-Device:Int8:r"],
    );
    let mut s = w.session(agent.port, gateway.address());
    let (id, channel, payer) = lease_up(&w, &mut s, &offer, gateway.address());
    let first = offer.pricePerSecond.to::<u128>() * 60;
    pay(&mut s, &payer, id, channel.id, first);
    deploy(&mut s, id, &cid, &manifest);

    // The container's output: its sensor reading, through the bridge.
    readings_above(&mut s, id, 0);
    let out = stdout(&mut s, id);
    let reading: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(reading["event"]["readings"][0]["resourceName"], "Int8");
    let (state, detail) = status(&mut s, id);
    assert_eq!(state, "running");
    assert!(detail.starts_with(&format!("paid {first} of")), "{detail}");
    assert!(
        detail.contains("Random-Integer-Device: 1 reads, 0 writes"),
        "the lease's EdgeX use: {detail}"
    );
    let snap = agent.agent.snapshot();
    assert_eq!(
        snap["leases"][0]["edgex"]["Random-Integer-Device"]["reads"],
        1
    );

    // The buyer ends it; both report, the agent settles and claims.
    market::terminate(&w.tx(&signer(1)), &w.d, id, U256::from(first)).unwrap();
    assert_eq!(terminate(&mut s, id), "settled");
    assert_eq!(market::lease(&w.rpc, &w.d, id).unwrap().state, 5);
    let invoice = market::invoice(&w.rpc, &w.d, id).unwrap().unwrap();
    assert_eq!(invoice.sellerReported.to::<u128>(), first);
    assert_eq!(w.claimed(channel.id), first);
    assert_eq!(
        agent
            .agent
            .book
            .get(&dedge::market::LeaseId::from(id))
            .unwrap()
            .unwrap()
            .state,
        State::Settled
    );
}

/// `dedge agent` as an operator runs it: serves buyers on the board's
/// address, reports its state through `agent status`, stops on SIGTERM.
#[test]
fn the_agent_command_serves_reports_and_stops_on_sigterm() {
    if !sandbox::can_run("the_agent_command_serves_reports_and_stops_on_sigterm") {
        return;
    }
    let w = World::new();
    let (port, board, gw) = process_board(&w, None, None);
    let b = board.to_str().unwrap();

    let mut agent = agent_process(b);
    let mut s = w.session(port, gw);
    assert_eq!(
        ask(
            &mut s,
            Body::Status {
                lease: [0; 32],
                state: String::new(),
                detail: String::new(),
            }
        ),
        Body::Error {
            message: format!("no lease 0x{} of yours", "0".repeat(64))
        }
    );
    let deadline = Instant::now() + Duration::from_secs(30);
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

/// A disk that cannot sync (every `fdatasync` fails with EIO, injected
/// by strace): the offer that needed a write is refused naming it, and
/// the agent stops with an error (nothing it does could be recorded) for
/// its restart to recover what is on disk.
#[test]
fn an_agent_whose_disk_cannot_sync_stops() {
    if !sandbox::can_run("an_agent_whose_disk_cannot_sync_stops") {
        return;
    }
    if Command::new("strace").arg("-V").output().is_err() {
        eprintln!("SKIPPED an_agent_whose_disk_cannot_sync_stops: no strace");
        return;
    }
    let w = World::new();
    let (port, board_path, _) = process_board(&w, None, None);
    let b = board_path.to_str().unwrap();
    let gateway = registered_gateway(&w);
    let board = BoardFile::load(&board_path).unwrap().board;
    // Its own process group, so that a failed test stops the agent too,
    // not only strace.
    let mut agent = Command::new("strace")
        .process_group(0)
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=fdatasync"])
        .args(["-e", "inject=fdatasync:error=EIO"])
        .arg(env!("CARGO_BIN_EXE_dedge"))
        .args(["agent", "--board", b])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // An offer: the first thing the agent must make durable.
    let offer = offer(&board, gateway.address(), "bafy-none", &[]);
    market::propose(&w.tx(&signer(1)), &w.d, &offer).unwrap();
    let mut s = w.session(port, gateway.address());
    let answer = ask(&mut s, w.signed(&offer));
    // Refused: what failed inside is the agent's log, not the buyer's.
    assert!(
        matches!(&answer, Body::OfferRefused { reason, .. } if reason == "lease store"),
        "{answer:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = agent.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            // SAFETY: kill(2) on the process group this test spawned.
            unsafe { libc::kill(-(agent.id() as i32), libc::SIGKILL) };
            let _ = agent.wait();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut err);
            panic!("the agent ran on after a failed sync: {err}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(agent.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    assert!(err.contains("failed to sync to disk"), "{err}");
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
    let w = World::new();
    let (cid, manifest, ipfs) = w.image(&format!(
        "while true; do {READ_INT8}; echo; sleep 0.5; done"
    ));
    let sim = Simulator::start(&[]);
    let (port, board_path, _) = process_board(&w, Some(&ipfs), Some(&sim));
    let b = board_path.to_str().unwrap();
    let gateway = registered_gateway(&w);
    let board = BoardFile::load(&board_path).unwrap().board;

    let mut agent = agent_process(b);
    let mut s = w.session(port, gateway.address());
    let offer = offer(
        &board,
        gateway.address(),
        &cid,
        &["Random-Integer-Device:Int8:r"],
    );
    let (id, channel, payer) = lease_up(&w, &mut s, &offer, gateway.address());
    let minute = offer.pricePerSecond.to::<u128>() * 60;
    pay(&mut s, &payer, id, channel.id, minute);
    pay(&mut s, &payer, id, channel.id, minute);
    deploy(&mut s, id, &cid, &manifest);
    readings_above(&mut s, id, 0);

    // SIGKILL: no chance to flush or say goodbye.
    agent.kill().unwrap();
    agent.wait().unwrap();
    let mut agent = agent_process(b);
    let mut s = w.session(port, gateway.address());
    let (state, detail) = status(&mut s, id);
    assert_eq!(state, "running");
    assert!(
        detail.starts_with(&format!("paid {} of", 2 * minute)),
        "{detail}"
    );
    // The container went on reading, and reads through the new bridge.
    let before = readings_above(&mut s, id, 0);
    readings_above(&mut s, id, before);
    pay(&mut s, &payer, id, channel.id, minute);

    // The end: everything acknowledged is reported and claimed.
    let total = 3 * minute;
    market::terminate(&w.tx(&signer(1)), &w.d, id, U256::from(total)).unwrap();
    assert_eq!(terminate(&mut s, id), "settled");
    assert_eq!(w.claimed(channel.id), total);
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
    let w = World::new();
    let gateway = signer(2);
    w.register(&gateway);
    let (cid, manifest, ipfs) = w.image("sleep 1000");
    // A 2-second grace; no EdgeX.
    let board = BoardFile::load(&w.board(Some(&ipfs), None, |t| {
        t.replace("grace = \"10s\"", "grace = \"2s\"")
    }))
    .unwrap()
    .board;
    let agent = Running::start(&board, &w);
    let offer = offer(&board, gateway.address(), &cid, &[]);
    let price = offer.pricePerSecond.to::<u128>();
    let mut s = w.session(agent.port, gateway.address());
    let (id, channel, payer) = lease_up(&w, &mut s, &offer, gateway.address());
    pay(&mut s, &payer, id, channel.id, 3 * price);
    deploy(&mut s, id, &cid, &manifest);

    // Behind by more than 2 s' worth: frozen. Paid up: running again.
    wait_for(&mut s, id, "frozen");
    pay(&mut s, &payer, id, channel.id, 5 * price);
    wait_for(&mut s, id, "running");
    // Nothing more: frozen, then stopped after a second grace; the seller
    // reports what it was paid and waits out the buyer.
    wait_for(&mut s, id, "frozen");
    wait_for(&mut s, id, "terminating");
    // The agent reports on its next tick after it stops the container.
    wait_for_market(&w, id, 4);
    let _: serde_json::Value = w
        .rpc
        .call("evm_increaseTime", serde_json::json!([86_401]))
        .unwrap();
    let _: serde_json::Value = w.rpc.call("evm_mine", serde_json::json!([])).unwrap();
    wait_for(&mut s, id, "settled");
    let total = 8 * price;
    let invoice = market::invoice(&w.rpc, &w.d, id).unwrap().unwrap();
    assert_eq!(invoice.sellerReported.to::<u128>(), total);
    assert_eq!(
        w.claimed(channel.id),
        total,
        "every acknowledged payment claimed"
    );
}

/// Two leases on one gateway at once: each container reaches exactly its
/// own grants through its own bridge (the integer sensor for one, the
/// boolean one for the other), and each settles on its own.
#[test]
fn two_concurrent_leases_stay_isolated() {
    if !sandbox::can_run("two_concurrent_leases_stay_isolated") {
        return;
    }
    let w = World::new();
    let gateway = signer(2);
    w.register(&gateway);
    let url = "$DEDGE_EDGEX_URL/api/v3/device/name";
    let (cid, manifest, ipfs) = w.image(&format!(
        "wget -q -O - {url}/Random-Integer-Device/Int8 || echo NO-INT8; echo; \
         wget -q -O - {url}/Random-Boolean-Device/Bool || echo NO-BOOL; echo; sleep 30"
    ));
    let sim = Simulator::start(&[]);
    let board = BoardFile::load(&w.board(Some(&ipfs), Some(&sim), |t| t))
        .unwrap()
        .board;
    let agent = Running::start(&board, &w);
    let mut s = w.session(agent.port, gateway.address());
    let mut leases = Vec::new();
    for (nonce, grant) in [
        (1, "Random-Integer-Device:Int8:r"),
        (2, "Random-Boolean-Device:Bool:r"),
    ] {
        let mut o = offer(&board, gateway.address(), &cid, &[grant]);
        o.nonce = nonce;
        let (id, channel, payer) = lease_up(&w, &mut s, &o, gateway.address());
        pay(
            &mut s,
            &payer,
            id,
            channel.id,
            o.pricePerSecond.to::<u128>() * 60,
        );
        deploy(&mut s, id, &cid, &manifest);
        leases.push((id, channel, o.pricePerSecond.to::<u128>() * 60));
    }
    let outputs: Vec<String> = leases
        .iter()
        .map(|(id, ..)| {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let out = stdout(&mut s, *id);
                if out.contains("NO-") && out.matches("resourceName").count() == 1 {
                    break out;
                }
                assert!(Instant::now() < deadline, "{out}");
                std::thread::sleep(Duration::from_millis(200));
            }
        })
        .collect();
    assert!(
        outputs[0].contains("\"resourceName\":\"Int8\""),
        "{}",
        outputs[0]
    );
    assert!(outputs[0].contains("NO-BOOL"), "{}", outputs[0]);
    assert!(
        outputs[1].contains("\"resourceName\":\"Bool\""),
        "{}",
        outputs[1]
    );
    assert!(outputs[1].contains("NO-INT8"), "{}", outputs[1]);
    let snapshot = agent.agent.snapshot();
    assert_eq!(snapshot["resources"]["leases"]["held"], 2);
    assert_eq!(snapshot["resources"]["cpu_millicores"]["held"], 1000);

    for (id, channel, paid) in leases {
        market::terminate(&w.tx(&signer(1)), &w.d, id, U256::from(paid)).unwrap();
        assert_eq!(terminate(&mut s, id), "settled");
        assert_eq!(
            w.claimed(channel.id),
            paid,
            "each lease's own channel claimed"
        );
    }
    assert_eq!(agent.agent.snapshot()["resources"]["leases"]["held"], 0);
}

/// A background `dedge` process with its stderr in a file; killed on drop,
/// and its stderr printed if the test is failing.
struct Bg {
    child: Child,
    log: PathBuf,
    name: &'static str,
}

impl Bg {
    fn spawn(name: &'static str, dir: &std::path::Path, args: &[&str]) -> Bg {
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_dedge"))
            .args(args)
            .env("DEDGE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Bg { child, log, name }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `sig` and waits (bounded) for the exit; returns its stdout.
    fn stop(&mut self, sig: i32) -> (std::process::ExitStatus, String) {
        // SAFETY: kill(2) on a child this test spawned and has not reaped.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        self.wait()
    }

    fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit: {}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut out).unwrap();
        }
        (status, out)
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- {} stderr ----\n{}", self.name, self.log());
        }
    }
}

/// The lease's state in `dedge agent status`.
fn agent_state(board: &str, lease: &str) -> String {
    let (code, out, err) = cli::dedge(&["agent", "status", "--board", board, "--json"]);
    if code != 0 {
        return format!("no status yet: {err}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["leases"]
        .as_array()
        .and_then(|ls| ls.iter().find(|l| l["lease"] == lease))
        .map_or("none".into(), |l| l["state"].as_str().unwrap().to_string())
}

fn wait_agent_state(board: &str, lease: &str, want: &str) {
    poll_until(60, || {
        let state = agent_state(board, lease);
        (state == want)
            .then_some(())
            .ok_or_else(|| format!("still {state}, waiting for {want}"))
    });
}

fn edg_balance(w: &World, who: Address) -> u128 {
    let b: U256 = view(
        &w.rpc,
        w.d.token,
        &IEDGToken::balanceOfCall { account: who },
    )
    .unwrap();
    b.to::<u128>()
}

/// The README's story through the real binaries: `dedge agent` advertises
/// itself; the buyer's `dedge lease create` publishes a local image to IPFS,
/// makes the offer, funds it, opens a channel, deploys, and pays in the
/// foreground; the container reads a leased sensor (`lease logs`); the
/// buyer stops paying (Ctrl-C) and the lease freezes; `lease pay` resumes
/// it; `lease terminate` stops the payer, reports and settles; the
/// invoice's two reports agree, the seller claimed exactly them, the
/// buyer's EDG went to the fee and the channel, and the sensor reads are
/// counted.
#[test]
fn the_buyer_cli_takes_a_lease_from_offer_to_invoice() {
    if !sandbox::can_run("the_buyer_cli_takes_a_lease_from_offer_to_invoice") {
        return;
    }
    let w = World::new();
    let dir = w.dir.path();
    // The buyer's IPFS node: the Helia harness, whose dag/import lands in
    // the repository its gateway serves to the agent.
    std::fs::write(dir.join("seed"), "a repo needs one block").unwrap();
    let repo = dir.join("kubo");
    kubo::add(&repo, &[&dir.join("seed")]);
    let ipfs = gateway::Gateway::start(&repo);
    // The buyer's backend: a web server on the host's loopback.
    let backend = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend_port = backend.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in backend.incoming() {
            let Ok(mut c) = conn else { return };
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut c, &mut buf);
            let _ = std::io::Write::write_all(
                &mut c,
                b"HTTP/1.0 200 OK\r\nContent-Length: 16\r\n\r\nbackend says hi\n",
            );
        }
    });
    let (layout, manifest) = oci::script_image(
        dir,
        &format!(
            "echo \"backends: $DEDGE_BACKENDS\"; wget -q -O - http://127.0.0.1:{backend_port}/; \
             while true; do {READ_INT8}; echo; sleep 1; done"
        ),
    );
    let sim = Simulator::start(&[]);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let board_path = w.board(Some(&ipfs), Some(&sim), |t| {
        t.replace("127.0.0.1:7300", &format!("127.0.0.1:{port}"))
            .replace("grace = \"10s\"", "grace = \"2s\"")
    });
    let b = board_path.to_str().unwrap();
    let (code, _, err) = cli::dedge(&["key", "new", "--board", b]);
    assert_eq!(code, 0, "{err}");
    let gateway =
        dedge::chain::keystore::load(&dir.join("target/dev-gateway/key.json"), b"pw").unwrap();
    w.register(&gateway);
    // EDG for the advert fee.
    w.tx(&signer(0))
        .execute(
            w.d.token,
            &IEDGToken::transferCall {
                to: gateway.address(),
                value: U256::from(10u128.pow(20)),
            },
        )
        .unwrap();
    let agent = Bg::spawn("agent", dir, &["agent", "--board", b]);

    // The agent advertises itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !market::live_adverts(&w.rpc, &w.d)
        .unwrap()
        .iter()
        .any(|l| l.gateway == gateway.address() && l.endpoint == format!("127.0.0.1:{port}"))
    {
        assert!(Instant::now() < deadline, "no advert: {}", agent.log());
        std::thread::sleep(Duration::from_millis(200));
    }

    let key = dir.join("buyer.json");
    dedge::chain::keystore::save(&key, &signer(1), b"buyer-pass").unwrap();
    std::fs::write(dir.join("buyer.pass"), "buyer-pass\n").unwrap();
    let deployment =
        common::repo().join(format!("contracts/deployments/{}.json", w.anvil.chain_id));
    let data = dir.join("buyer");
    let common_args: Vec<String> = [
        "--key",
        key.to_str().unwrap(),
        "--passphrase-file",
        dir.join("buyer.pass").to_str().unwrap(),
        "--rpc",
        &w.anvil.url,
        "--deployment",
        deployment.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let with = |head: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(common_args.iter().cloned())
            .collect()
    };
    let run = |head: &[&str]| {
        let args = with(head);
        cli::dedge(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let buyer_before = edg_balance(&w, signer(1).address());

    let gw = gateway.address().to_string();
    let create = with(&[
        "lease",
        "create",
        "--gateway",
        &gw,
        "--image",
        layout.to_str().unwrap(),
        "--ipfs-api",
        &ipfs.url,
        "--device",
        "Random-Integer-Device:Int8",
        "--backend",
        &format!("127.0.0.1:{backend_port}"),
        "--duration",
        "10m",
        "--json",
    ]);
    let mut payer = Bg::spawn(
        "create",
        dir,
        &create.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // The first stdout line: the lease, once its container runs.
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(payer.child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let created: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}\n{}", payer.log()));
    assert_eq!(created["state"], "running");
    assert_eq!(
        created["manifest"], manifest,
        "the manifest the buyer checked"
    );
    let lease = created["lease"].as_str().unwrap().to_string();
    let channel: B256 = created["channel"].as_str().unwrap().parse().unwrap();
    wait_agent_state(b, &lease, "running");

    // The container reaches its backend through the agent and reads its
    // leased sensor; the buyer sees both.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, out, err) = run(&["lease", "logs", &lease]);
        assert_eq!(code, 0, "{err}");
        if out.contains("\"resourceName\":\"Int8\"") {
            assert!(
                out.contains(&format!("backends: 127.0.0.1:{backend_port}")),
                "{out}"
            );
            assert!(out.contains("backend says hi"), "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "no reading in the logs: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }

    // A follower of the logs, until the lease ends.
    let follow = with(&["lease", "logs", &lease, "--follow"]);
    let mut follower = Bg::spawn(
        "logs",
        dir,
        &follow.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // Ctrl-C: the buyer stops paying and the gateway freezes the lease.
    let (status, out) = payer.stop(libc::SIGINT);
    assert!(status.success(), "{status:?} {}", payer.log());
    assert!(payer.log().contains("stopped paying"), "{}", payer.log());
    assert!(out.contains("\"ended\":false"), "{out}");
    wait_agent_state(b, &lease, "frozen");
    // `lease pay` resumes it.
    let pay = with(&["lease", "pay", &lease]);
    let mut payer = Bg::spawn(
        "pay",
        dir,
        &pay.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    wait_agent_state(b, &lease, "running");
    let (code, out, _) = run(&["lease", "ls", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains(&lease) && out.contains("\"running\""), "{out}");

    // Terminate while the payer runs: it is stopped, then both report.
    let (code, out, err) = run(&["lease", "terminate", &lease]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("settled"), "{out}\n{err}");
    let (status, _) = payer.wait();
    assert!(status.success(), "{}", payer.log());
    let (status, followed) = follower.wait();
    assert!(status.success(), "{}", follower.log());
    assert!(
        followed.matches("\"resourceName\":\"Int8\"").count() >= 3,
        "{followed}"
    );

    let (code, out, err) = run(&["lease", "invoice", &lease, "--json", "--wei"]);
    assert_eq!(code, 0, "{err}");
    let inv: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &inv["settlement"];
    assert_eq!(s["disputed"], false, "{out}");
    assert_eq!(s["buyer_reported"], s["seller_reported"], "{out}");
    let paid: u128 = s["buyer_reported"].as_str().unwrap().parse().unwrap();
    assert!(paid > 0, "{out}");
    assert_eq!(
        w.claimed(channel),
        paid,
        "the seller claimed what both reported"
    );
    let fee: u128 = s["fee"].as_str().unwrap().parse().unwrap();
    let edgex = inv["gateway_account"]["edgex"].as_array().unwrap();
    let reads = edgex
        .iter()
        .find(|u| u["device"] == "Random-Integer-Device")
        .map_or(0, |u| u["reads"].as_u64().unwrap());
    assert!(reads >= 1, "{out}");
    // The buyer's EDG: the fee and the channel's deposit left its account.
    let ch: IChannelManager::Channel = view(
        &w.rpc,
        w.d.channels,
        &IChannelManager::channelOfCall { channelId: channel },
    )
    .unwrap();
    assert_eq!(
        buyer_before - edg_balance(&w, signer(1).address()),
        fee + ch.deposit.to::<u128>(),
    );
    let (_, out, _) = run(&["lease", "ls", "--json"]);
    assert!(out.contains("\"settled\""), "{out}");

    // A second lease, of the image already on IPFS, reuses the idle
    // channel; --detach returns once the container runs.
    let image = created["image"].as_str().unwrap();
    let again = |extra: &[&str]| {
        let mut args = vec![
            "lease",
            "create",
            "--gateway",
            &gw,
            "--image",
            image,
            "--manifest",
            &manifest,
            "--duration",
            "1m",
            "--detach",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, out, err) = again(&["--json"]);
    assert_eq!(code, 0, "{err}");
    let second: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(second["channel"], created["channel"], "{err}");
    assert!(err.contains("reusing channel"), "{err}");
    let second = second["lease"].as_str().unwrap();
    let (code, out, err) = run(&["lease", "terminate", second]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("settled"), "{out}\n{err}");

    // A backend the gateway cannot wire: refused with the reason, before
    // anything runs; the funded lease is ended and settled at once (and a
    // terminate after that changes nothing).
    let (code, _, err) = again(&["--backend", "127.0.0.1:59882"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("port 59882 is not available in a container"),
        "{err}"
    );
    let (_, out, _) = run(&["lease", "ls", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    let failed = records
        .iter()
        .find(|r| r["reason"].as_str().is_some_and(|w| w.contains("59882")))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(failed["state"], "settled", "{out}");
    assert!(err.contains("ending lease"), "{err}");
    let (code, out, err) = run(&["lease", "terminate", failed["lease"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with("settled"), "{out}\n{err}");
    drop(agent);
}

/// The operator evicts a running lease through AgentControl: the agent
/// takes the command, ends the lease for the time served with the reason,
/// reports the outcome on chain; the lease settles with what was paid
/// claimed, and the buyer gets the rest of its deposit back by closing its
/// channel.
#[test]
fn an_operator_evicts_a_running_lease_and_it_settles_for_the_time_served() {
    if !sandbox::can_run("an_operator_evicts_a_running_lease_and_it_settles_for_the_time_served") {
        return;
    }
    use dedge::chain::bindings::IAgentControl;
    use dedge::control::{Command as Cmd, Outcome};
    let w = World::new();
    let gateway = signer(2);
    w.register(&gateway);
    let (cid, manifest, ipfs) = w.image("sleep 1000");
    let board = BoardFile::load(&w.board(Some(&ipfs), None, |t| t))
        .unwrap()
        .board;
    let agent = Running::start(&board, &w);
    let offer = offer(&board, gateway.address(), &cid, &[]);
    let first = offer.pricePerSecond.to::<u128>() * 60;
    let mut s = w.session(agent.port, gateway.address());
    let (id, channel, payer) = lease_up(&w, &mut s, &offer, gateway.address());
    pay(&mut s, &payer, id, channel.id, first);
    deploy(&mut s, id, &cid, &manifest);

    let expiry = dedge::agent::lease::UnixTime::now().0 + 600;
    let evict = Cmd::Evict {
        lease: id.0,
        reason: "disk maintenance".into(),
    };
    let (seq, _) = dedge::fleet::post(
        &w.tx(&signer(3)),
        &w.d,
        gateway.address(),
        evict,
        expiry,
        None,
    )
    .unwrap();
    wait_for(&mut s, id, "terminating");
    let (_, detail) = status(&mut s, id);
    assert!(
        detail.contains("evicted by the gateway's operator: disk maintenance"),
        "{detail}"
    );
    poll_until(40, || {
        let reported: u64 = view(
            &w.rpc,
            w.d.control,
            &IAgentControl::reportedCall {
                gateway: gateway.address(),
            },
        )
        .unwrap();
        (reported >= seq)
            .then_some(())
            .ok_or("not reported yet".to_string())
    });
    let v = dedge::fleet::gateway_view(&w.rpc, &w.d, gateway.address()).unwrap();
    let c = v.commands.iter().find(|c| c.seq == seq).unwrap();
    assert_eq!(
        (c.command.as_str(), c.outcome),
        ("evict", Some(Outcome::Applied))
    );

    // The seller reported what it was paid; the buyer reports the same.
    wait_for_market(&w, id, 4);
    market::terminate(&w.tx(&signer(1)), &w.d, id, U256::from(first)).unwrap();
    wait_for(&mut s, id, "settled");
    let invoice = market::invoice(&w.rpc, &w.d, id).unwrap().unwrap();
    assert_eq!(invoice.sellerReported.to::<u128>(), first);
    assert_eq!(invoice.flags & 8, 0, "undisputed (flags {})", invoice.flags);
    assert_eq!(w.claimed(channel.id), first, "the time served, claimed");

    // The buyer's unspent deposit comes back through its close.
    let balance = || -> u128 {
        let b: U256 = view(
            &w.rpc,
            w.d.token,
            &IEDGToken::balanceOfCall {
                account: signer(1).address(),
            },
        )
        .unwrap();
        b.to::<u128>()
    };
    let before = balance();
    w.tx(&signer(1))
        .execute(
            w.d.channels,
            &IChannelManager::startCloseCall {
                channelId: channel.id,
                balance: Uint::from(first),
            },
        )
        .unwrap();
    let _: serde_json::Value = w
        .rpc
        .call("evm_increaseTime", serde_json::json!([30 * 86_400]))
        .unwrap();
    let _: serde_json::Value = w.rpc.call("evm_mine", serde_json::json!([])).unwrap();
    w.tx(&signer(1))
        .execute(
            w.d.channels,
            &IChannelManager::settleCall {
                channelId: channel.id,
            },
        )
        .unwrap();
    assert_eq!(
        balance() - before,
        10u128.pow(18) - first,
        "the rest refunded"
    );
}

/// The operator's configuration commands reach what the agent sells: a
/// denied buyer's offer, one over the new capacity, one at the old price
/// and one for a device taken off sale are each refused with the rule's
/// reason, and the status shows every value's origin.
#[test]
fn configuration_commands_reach_admission_and_the_status() {
    if !sandbox::can_run("configuration_commands_reach_admission_and_the_status") {
        return;
    }
    use dedge::chain::bindings::IAgentControl;
    use dedge::control::command::{Backends, Capacity, Prices};
    use dedge::control::{Command as Cmd, Outcome};
    let w = World::new();
    let gateway = signer(2);
    w.register(&gateway);
    let sim = Simulator::start(&[]);
    let board = BoardFile::load(&w.board(None, Some(&sim), |t| t))
        .unwrap()
        .board;
    let agent = Running::start(&board, &w);
    let gw = gateway.address();
    let expiry = dedge::agent::lease::UnixTime::now().0 + 600;
    // Posts `command` (its version looked up), waits for the report.
    let command = |c: Cmd| {
        let (seq, _) = dedge::fleet::post(&w.tx(&signer(3)), &w.d, gw, c, expiry, None).unwrap();
        poll_until(40, || {
            let reported: u64 = view(
                &w.rpc,
                w.d.control,
                &IAgentControl::reportedCall { gateway: gw },
            )
            .unwrap();
            (reported >= seq)
                .then_some(())
                .ok_or("not reported".to_string())
        });
        let v = dedge::fleet::gateway_view(&w.rpc, &w.d, gw).unwrap();
        let c = v.commands.iter().find(|c| c.seq == seq).unwrap();
        assert_eq!(c.outcome, Some(Outcome::Applied), "{}", c.detail);
    };
    let image = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";
    let mut s = w.session(agent.port, gw);
    let mut nonce = 10;
    // Proposes `o` on chain and offers it: why it was refused.
    let mut refused = |mut o: Offer| -> String {
        nonce += 1;
        o.nonce = nonce;
        market::propose(&w.tx(&signer(1)), &w.d, &o).unwrap();
        match ask(&mut s, w.signed(&o)) {
            Body::OfferRefused { reason, .. } => reason,
            other => panic!("not refused: {other:?}"),
        }
    };
    let base = offer(&board, gw, image, &["Random-Integer-Device:Int8:r"]);

    command(Cmd::Tenants {
        allow: vec![],
        deny: vec![signer(1).address()],
    });
    let why = refused(base.clone());
    assert!(
        why.contains("is refused by this gateway's operator"),
        "{why}"
    );
    command(Cmd::Tenants {
        allow: vec![],
        deny: vec![],
    });

    command(Cmd::Capacity(Capacity {
        cpu_millicores: 400,
        memory: board.resources.memory.bytes(),
        disk: board.resources.disk.bytes(),
        max_leases: 2,
    }));
    let why = refused(base.clone());
    assert!(
        why.contains("CPU (millicores): asked 500, 400 free of 400"),
        "{why}"
    );
    command(Cmd::Capacity(Capacity {
        cpu_millicores: board.resources.cpu_millicores,
        memory: board.resources.memory.bytes(),
        disk: board.resources.disk.bytes(),
        max_leases: 2,
    }));

    let p = dedge::control::overlay::board_prices(&board);
    command(Cmd::Prices(Prices {
        cpu_core_second: p.cpu_core_second * 2,
        ..p
    }));
    let why = refused(base.clone());
    assert!(why.contains("these resources cost"), "{why}");

    command(Cmd::Devices {
        add: vec![],
        remove: vec!["Random-Integer-Device".into()],
    });
    let at_new_price = |o: &Offer| {
        let mut o = o.clone();
        o.pricePerSecond *= Uint::from(2);
        o
    };
    let why = refused(at_new_price(&base));
    assert!(
        why.contains("Random-Integer-Device:Int8 is not sold"),
        "{why}"
    );
    command(Cmd::Backends(Backends::None));

    let snap = agent.agent.snapshot();
    let config = &snap["config"];
    assert_eq!(config["tenants"]["from"], "command 2");
    assert_eq!(config["capacity"]["from"], "command 4");
    assert_eq!(config["prices"]["from"], "command 5");
    assert_eq!(config["devices"]["from"], "command 6");
    assert_eq!(config["backends"]["value"], "none");
    assert_eq!(config["backends"]["from"], "command 7");
    assert_eq!(config["version"], 7);
    assert_eq!(snap["resources"]["leases"]["of"], 2);
    assert_eq!(config["log_level"]["from"], "board");
}
