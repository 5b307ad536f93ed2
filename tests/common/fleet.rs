//! The fleet-management world the tests and the benchmark share: a chain
//! with the contracts, a compute-only gateway (its key made by `dedge key
//! new`) bound to an operator (its key file too), `dedge agent` as a
//! process, the operator's posts and the gateway's reports.
//!
//! The including crate declares `common`, `cli`, `hostile` (proxy.rs),
//! `oci` and `sandbox` at its root.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256};
use dedge::chain::bindings::{IAgentControl, IEDGToken, IRegistry};
use dedge::chain::tx::{TxSender, view};
use dedge::chain::{Deployment, Rpc, Signer, keystore};
use dedge::control::{Command as Cmd, Outcome};
use dedge::fleet;
use dedge::market;
use dedge::store::Store;

use crate::common::{Anvil, policy, signer};
use crate::{cli, hostile, sandbox};

pub struct World {
    pub anvil: Anvil,
    pub d: Deployment,
    pub rpc: Rpc,
    pub nonces: Store,
    pub dir: tempfile::TempDir,
    pub board: PathBuf,
    pub gateway: Address,
    pub operator: Signer,
    pub op_key: PathBuf,
    pub agent: Option<Child>,
}

impl World {
    /// A chain, a compute-only gateway key made by `dedge key new` and
    /// funded (gas, EDG for its advert), bound to an operator whose key
    /// file `dedge key new` made too.
    pub fn new() -> World {
        World::behind(None).0
    }

    /// The same, with the agent's RPC node behind a proxy in `mode`.
    pub fn behind(mode: Option<hostile::Mode>) -> (World, Option<hostile::Proxy>) {
        World::build(&[], 0, mode)
    }

    /// anvil started with `anvil_args`, the board asking `confirmations`.
    pub fn build(
        anvil_args: &[&str],
        confirmations: u32,
        mode: Option<hostile::Mode>,
    ) -> (World, Option<hostile::Proxy>) {
        let anvil = Anvil::start_with(anvil_args);
        let proxy = mode.map(|m| hostile::Proxy::start(anvil.url.clone(), m));
        let agent_rpc = proxy.as_ref().map_or(anvil.url.clone(), |p| p.url.clone());
        let d = anvil.deploy();
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut text = sandbox::dev_board_text()
            .replace(
                "chain_id = 31337",
                &format!("chain_id = {}", anvil.chain_id),
            )
            .replace("http://127.0.0.1:8545", &agent_rpc)
            .replace("127.0.0.1:7300", &format!("127.0.0.1:{port}"))
            .replace(
                "confirmations = 0 ",
                &format!("confirmations = {confirmations} "),
            );
        for (name, address) in [
            ("token", d.token),
            ("registry", d.registry),
            ("market", d.market),
            ("channels", d.channels),
            ("control", d.control),
        ] {
            let start = text.find(&format!("\n{name} = ")).unwrap() + 1;
            let end = start + text[start..].find('\n').unwrap();
            text.replace_range(start..end, &format!("{name} = \"{address}\""));
        }
        let (a, b) = (text.find("[edgex]").unwrap(), text.find("[ipfs]").unwrap());
        text.replace_range(a..b, "");
        std::fs::create_dir_all(dir.path().join("boards")).unwrap();
        std::fs::create_dir_all(dir.path().join("target/dev-gateway")).unwrap();
        std::fs::write(dir.path().join("target/dev-gateway/passphrase"), "pw\n").unwrap();
        let board = dir.path().join("boards/gw.toml");
        std::fs::write(&board, text).unwrap();
        let (code, gw, err) = cli::dedge(&["key", "new", "--board", board.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        let op_key = dir.path().join("operator.json");
        let pass = dir.path().join("target/dev-gateway/passphrase");
        let (code, _, err) = cli::dedge(&[
            "key",
            "new",
            op_key.to_str().unwrap(),
            "--passphrase-file",
            pass.to_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{err}");
        let operator = keystore::load(&op_key, b"pw").unwrap();
        let w = World {
            rpc: anvil.rpc(),
            anvil,
            d,
            nonces: Store::temporary().unwrap(),
            dir,
            board,
            gateway: gw.trim().parse().unwrap(),
            operator,
            op_key,
            agent: None,
        };
        for who in [w.gateway, w.operator.address()] {
            let _: serde_json::Value = w
                .rpc
                .call(
                    "anvil_setBalance",
                    serde_json::json!([who, "0x56BC75E2D63100000"]),
                )
                .unwrap();
        }
        w.tx(&signer(0))
            .execute(
                d.token,
                &IEDGToken::transferCall {
                    to: w.gateway,
                    value: U256::from(10u128.pow(21)),
                },
            )
            .unwrap();
        let gateway =
            keystore::load(&w.dir.path().join("target/dev-gateway/key.json"), b"pw").unwrap();
        market::register_gateway(&w.tx(&w.operator), &gateway, &w.d).unwrap();
        (w, proxy)
    }

    pub fn tx<'a>(&'a self, s: &'a Signer) -> TxSender<'a> {
        TxSender::new(
            &self.rpc,
            s,
            self.anvil.chain_id,
            self.nonces.tree("n").unwrap(),
            policy(),
        )
    }

    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .unwrap();
        self.agent = Some(
            Command::new(env!("CARGO_BIN_EXE_dedge"))
                .args(["agent", "--board", self.board.to_str().unwrap()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    pub fn kill_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            let _ = a.kill();
            let _ = a.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The operator posts `command` through the library; its sequence number.
    pub fn post(&self, command: Cmd, expiry: u64, expects: Option<u64>) -> u64 {
        fleet::post(
            &self.tx(&self.operator),
            &self.d,
            self.gateway,
            command,
            expiry,
            expects,
        )
        .unwrap()
        .0
    }

    pub fn reported(&self) -> u64 {
        view(
            &self.rpc,
            self.d.control,
            &IAgentControl::reportedCall {
                gateway: self.gateway,
            },
        )
        .unwrap()
    }

    /// Waits until the gateway reported command `seq`; its outcome and detail.
    pub fn outcome(&self, seq: u64) -> (Outcome, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.reported() < seq {
            assert!(
                Instant::now() < deadline,
                "command {seq} never reported; agent log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let v = fleet::gateway_view(&self.rpc, &self.d, self.gateway).unwrap();
        let c = v.commands.iter().find(|c| c.seq == seq).unwrap();
        (c.outcome.unwrap(), c.detail.clone())
    }

    pub fn status(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, out, _) = cli::dedge(&[
                "agent",
                "status",
                "--board",
                self.board.to_str().unwrap(),
                "--json",
            ]);
            if code == 0 {
                if let Ok(v) = serde_json::from_str(&out) {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "no status: {out}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the status says `f` (it is written every second).
    pub fn status_until(
        &self,
        what: &str,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "status never showed {what}: {s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn advert_live(&self) -> bool {
        view(
            &self.rpc,
            self.d.registry,
            &IRegistry::isLiveCall {
                gateway: self.gateway,
            },
        )
        .unwrap()
    }

    pub fn until(&self, what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(
                Instant::now() < deadline,
                "never: {what}; agent log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn deployment_file(&self) -> String {
        crate::common::repo()
            .join(format!(
                "contracts/deployments/{}.json",
                self.anvil.chain_id
            ))
            .to_str()
            .unwrap()
            .to_string()
    }

    /// `dedge fleet ARGS` as the operator, against this chain.
    pub fn fleet(&self, args: &[&str]) -> (i32, String, String) {
        let pass = self.dir.path().join("target/dev-gateway/passphrase");
        let dep = self.deployment_file();
        let mut all = vec!["fleet"];
        all.extend_from_slice(args);
        all.extend_from_slice(&[
            "--rpc",
            &self.anvil.url,
            "--deployment",
            &dep,
            "--operator-key",
            self.op_key.to_str().unwrap(),
            "--operator-passphrase-file",
            pass.to_str().unwrap(),
        ]);
        cli::dedge(&all)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_agent();
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn set(s: &serde_json::Value, key: &str) -> (String, String) {
    let v = &s["config"][key];
    (
        v["value"].to_string(),
        v["from"].as_str().unwrap_or("?").to_string(),
    )
}
