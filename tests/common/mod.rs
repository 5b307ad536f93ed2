//! Test harness: a real anvil on a free loopback port, killed on drop, and
//! the real deploy script.

#![allow(dead_code)]

pub mod bounded;
pub mod edgex;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dedge::chain::rpc::RpcConfig;
use dedge::chain::tx::TxPolicy;
use dedge::chain::{Deployment, Rpc, Signer};

/// anvil's well-known dev keys (accounts 0-4).
pub const KEYS: [&str; 5] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];

pub fn signer(i: usize) -> Signer {
    Signer::from_bytes(&alloy_primitives::hex::decode(KEYS[i]).unwrap()).unwrap()
}

/// Transactions for tests: anvil mines a block per transaction and no
/// other, so poll fast and wait for no blocks on top.
pub fn policy() -> TxPolicy {
    TxPolicy {
        poll: Duration::from_millis(20),
        confirmations: 0,
        bump_after: Duration::from_secs(5),
        max_bumps: 3,
        ..TxPolicy::default()
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tool's native binary (contracts/tool): npm's `.bin/anvil` is a Node
/// wrapper, and killing it would leave the real anvil running.
fn tool(name: &str) -> PathBuf {
    let out = bounded::output(
        Command::new(repo().join("contracts/tool")).arg(name),
        bounded::DEFAULT,
    )
    .expect("run contracts/tool");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

pub struct Anvil {
    child: Child,
    pub url: String,
    pub chain_id: u64,
}

/// Each anvil gets its own chain id, so deployment files never collide.
fn fresh_chain_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    100_000 + u64::from(std::process::id() % 10_000) * 100 + NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Anvil {
    pub fn start() -> Anvil {
        Anvil::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Anvil {
        // The port is free when picked but another test's anvil may take it
        // first: then ours exits, or the chain id that answers is not ours.
        for _ in 0..5 {
            if let Some(anvil) = Anvil::try_start(extra) {
                return anvil;
            }
        }
        panic!("anvil did not come up on a free port in 5 tries");
    }

    fn try_start(extra: &[&str]) -> Option<Anvil> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let chain_id = fresh_chain_id();
        let child = Command::new(tool("anvil"))
            .args([
                "--port",
                &port.to_string(),
                "--chain-id",
                &chain_id.to_string(),
                "--silent",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start anvil");
        let url = format!("http://127.0.0.1:{port}");
        let mut anvil = Anvil {
            child,
            url,
            chain_id,
        };
        let rpc = anvil.rpc();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(id) = rpc.chain_id() {
                return (id == chain_id).then_some(anvil);
            }
            if anvil.child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn rpc(&self) -> Rpc {
        Rpc::new(
            vec![self.url.clone()],
            RpcConfig {
                timeout: Duration::from_secs(10),
                attempts: 1,
                backoff: Duration::from_millis(10),
            },
        )
    }

    /// Runs contracts/deploy.sh against this node and loads what it wrote.
    pub fn deploy(&self) -> Deployment {
        let out = bounded::output(
            Command::new(repo().join("contracts/deploy.sh")).arg(&self.url),
            bounded::DEFAULT,
        )
        .expect("run deploy.sh");
        assert!(
            out.status.success(),
            "deploy.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let path = repo().join(format!("contracts/deployments/{}.json", self.chain_id));
        let d = Deployment::load(Path::new(&path)).unwrap();
        assert_eq!(d.chain_id, self.chain_id);
        d
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
