//! Lease benchmark (not a test): how long `dedge lease create` takes from
//! start to a running container on a local anvil (target ≤ 2 s), next to
//! `dedge sandbox run` of the same image with no market at all (import,
//! unpack, start, exit: the reference); where the time goes, step by step;
//! and the agent's RSS idle and with 10 running leases.
//!
//!     sudo cargo bench --bench lease        # DEDGE_BENCH_LEASES=10
//!
//! Needs root (the sandbox), anvil and the IPFS harness (tests/setup.sh).
//! Release builds of `dedge` are used throughout; anvil mines each
//! transaction at once.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufRead;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy_primitives::U256;
use dedge::chain::bindings::IEDGToken;
use dedge::chain::tx::TxSender;
use dedge::market;
use dedge::store::Store;

mod common;
#[path = "../tests/common/mod.rs"]
mod tcommon;
use tcommon::bounded;
#[path = "../tests/common/cli.rs"]
mod cli;
#[path = "../tests/common/gateway.rs"]
mod gateway;
#[path = "../tests/common/kubo.rs"]
mod kubo;
#[path = "../tests/common/oci.rs"]
mod oci;

const DEDGE: &str = env!("CARGO_BIN_EXE_dedge");

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("lease bench: needs root (containers); run with sudo");
        std::process::exit(1);
    }
    if let Err(e) = bench() {
        eprintln!("lease bench: {e}");
        std::process::exit(1);
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child; SIGTERM lets the agent stop.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// VmRSS and VmHWM of `pid`, KiB.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Proportional and private (unique) set sizes of `pid`, KiB: a shim is a
/// fork of the agent, so most of its RSS is pages it shares with it.
fn pss_uss(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .sum()
    };
    (
        field("Pss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    )
}

/// Count, RSS, PSS and USS (KiB) of every process running the `dedge`
/// binary but `except`: the containers' shims.
fn shims_rss(except: u32) -> (usize, u64, u64, u64) {
    let mut n = 0;
    let (mut total, mut pss, mut uss) = (0, 0, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Shims are forks of the agent (named after the forking thread), so
        // they are known by their executable.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if pid != except && exe == std::path::Path::new(DEDGE) {
            n += 1;
            total += rss(pid).0;
            let (p, u) = pss_uss(pid);
            pss += p;
            uss += u;
        }
    }
    (n, total, pss, uss)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn bench() -> Result<(), String> {
    let leases: usize = std::env::var("DEDGE_BENCH_LEASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = dir.path();
    let anvil = tcommon::Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let nonces = Store::temporary().map_err(|e| e.to_string())?;

    // The image (busybox sleeping), added to Kubo, served by Helia.
    let (layout, manifest) = oci::script_image(dir, "sleep 1000");
    let repo = dir.join("kubo");
    let cid = kubo::add(&repo, &[&layout])
        .pop()
        .ok_or("kubo added nothing")?;
    let ipfs = gateway::Gateway::start(&repo);

    // The gateway: the dev board on this chain, room for the leases, a
    // grace long enough that unpaid leases keep running while measured.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut text = std::fs::read_to_string(tcommon::repo().join("boards/dev-x86_64.toml"))
        .map_err(|e| e.to_string())?
        .replace(
            "chain_id = 31337",
            &format!("chain_id = {}", anvil.chain_id),
        )
        .replace("http://127.0.0.1:8545", &anvil.url)
        .replace("http://127.0.0.1:8080", &ipfs.url)
        .replace("127.0.0.1:7300", &format!("127.0.0.1:{port}"))
        .replace("max_leases = 4", &format!("max_leases = {}", leases + 2))
        .replace("grace = \"10s\"", "grace = \"30m\"");
    let (a, b) = (
        text.find("[edgex]").ok_or("no [edgex]")?,
        text.find("[ipfs]").ok_or("no [ipfs]")?,
    );
    text.replace_range(a..b, "");
    std::fs::create_dir_all(dir.join("boards")).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dir.join("target/dev-gateway")).map_err(|e| e.to_string())?;
    std::fs::write(dir.join("target/dev-gateway/passphrase"), "pw\n").map_err(|e| e.to_string())?;
    let board = dir.join("boards/gw.toml");
    std::fs::write(&board, text).map_err(|e| e.to_string())?;
    let b = board.to_str().ok_or("path")?;
    let (code, _, err) = cli::dedge(&["key", "new", "--board", b]);
    if code != 0 {
        return Err(err);
    }
    let gw = dedge::chain::keystore::load(&dir.join("target/dev-gateway/key.json"), b"pw")
        .map_err(|e| e.to_string())?;
    let _: serde_json::Value = rpc
        .call(
            "anvil_setBalance",
            serde_json::json!([gw.address(), "0x56BC75E2D63100000"]),
        )
        .map_err(|e| e.to_string())?;
    let tree = nonces.tree("n").map_err(|e| e.to_string())?;
    let (operator, funder) = (tcommon::signer(3), tcommon::signer(0));
    let sender = |s| TxSender::new(&rpc, s, anvil.chain_id, tree.clone(), tcommon::policy());
    market::register_gateway(&sender(&operator), &gw, &d).map_err(|e| e.to_string())?;
    for to in [gw.address(), tcommon::signer(1).address()] {
        sender(&funder)
            .execute(
                d.token,
                &IEDGToken::transferCall {
                    to,
                    value: U256::from(10u128.pow(21)),
                },
            )
            .map_err(|e| e.to_string())?;
    }
    let agent = Kill(
        Command::new(DEDGE)
            .args(["agent", "--board", b])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("agent.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !market::live_adverts(&rpc, &d)
        .map_err(|e| e.to_string())?
        .iter()
        .any(|l| l.gateway == gw.address())
    {
        if Instant::now() > deadline {
            return Err(format!(
                "the agent never advertised: {}",
                std::fs::read_to_string(dir.join("agent.log")).unwrap_or_default()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let idle = rss(agent.0.id());

    // The reference: the same image run by the sandbox alone.
    let mut sandbox = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let (code, _, err) = cli::dedge(&[
            "sandbox",
            "run",
            layout.to_str().ok_or("path")?,
            "--memory",
            "16M",
            "--",
            "true",
        ]);
        if code != 0 {
            return Err(format!("sandbox run: {err}"));
        }
        sandbox.push(t0.elapsed());
    }

    let key = dir.join("buyer.json");
    dedge::chain::keystore::save(&key, &tcommon::signer(1), b"bp").map_err(|e| e.to_string())?;
    std::fs::write(dir.join("buyer.pass"), "bp\n").map_err(|e| e.to_string())?;
    let deployment = tcommon::repo().join(format!("contracts/deployments/{}.json", anvil.chain_id));
    let data = dir.join("buyer");
    let buyer_args = |head: &[&str]| -> Vec<String> {
        head.iter()
            .map(|s| s.to_string())
            .chain(
                [
                    "--key",
                    key.to_str().unwrap_or_default(),
                    "--passphrase-file",
                    dir.join("buyer.pass").to_str().unwrap_or_default(),
                    "--rpc",
                    &anvil.url,
                    "--deployment",
                    deployment.to_str().unwrap_or_default(),
                    "--data",
                    data.to_str().unwrap_or_default(),
                ]
                .iter()
                .map(|s| s.to_string()),
            )
            .collect()
    };
    let gw_text = gw.address().to_string();
    let mut creates = Vec::new();
    let mut ids = Vec::new();
    let mut steps: Vec<(String, Duration)> = Vec::new();
    for i in 0..leases {
        let args = buyer_args(&[
            "lease",
            "create",
            "--gateway",
            &gw_text,
            "--image",
            &cid,
            "--manifest",
            &manifest,
            "--cpus",
            "0.05",
            "--memory",
            "16M",
            "--disk",
            "64M",
            "--duration",
            "10m",
            "--detach",
            "--json",
        ]);
        let t0 = Instant::now();
        let mut child = Command::new(DEDGE)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        // Each step's line on stderr, timed as it arrives.
        let stderr = child.stderr.take().ok_or("stderr")?;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.map_err(|e| e.to_string())?;
            lines.push((line, t0.elapsed()));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let took = t0.elapsed();
        if !out.status.success() {
            return Err(format!("lease create: {lines:?}"));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
        ids.push(v["lease"].as_str().ok_or("no lease")?.to_string());
        creates.push(took);
        if i == 1 {
            // The second lease: the image is in the agent's store already.
            let mut last = Duration::ZERO;
            for (line, at) in lines {
                let what: String = line.trim().chars().take(48).collect();
                steps.push((what, at - last));
                last = at;
            }
        }
    }
    let busy = rss(agent.0.id());
    let (shims, shims_kib, shims_pss, shims_uss) = shims_rss(agent.0.id());
    let (agent_pss, agent_uss) = pss_uss(agent.0.id());

    let mut terminates = Vec::new();
    for id in &ids {
        let t0 = Instant::now();
        let args = buyer_args(&["lease", "terminate", id]);
        let o = bounded::output(Command::new(DEDGE).args(&args), bounded::DEFAULT)
            .map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        terminates.push(t0.elapsed());
    }
    drop(agent);

    let reference = median(sandbox.clone());
    let first = creates[0];
    let rest = median(creates[1..].to_vec());
    println!("machine: {}", common::machine());
    println!(
        "reference: dedge sandbox run of the image (import, unpack, start, exit), median of 5: {}",
        ms(reference)
    );
    println!(
        "lease create → running (--detach), {leases} leases: first {} (image fetched from IPFS), median of the rest {} (target ≤ 2 s)",
        ms(first),
        ms(rest)
    );
    println!(
        "ratio to the reference: first {:.2}, rest {:.2}",
        first.as_secs_f64() / reference.as_secs_f64(),
        rest.as_secs_f64() / reference.as_secs_f64()
    );
    println!("where the second lease's time went (each step since the previous):");
    for (what, took) in &steps {
        println!("  {:>7}  {what}", ms(*took));
    }
    println!(
        "lease terminate (report, stop, settle, claim), median: {}",
        ms(median(terminates))
    );
    println!(
        "agent RSS: idle {} KiB (peak {}), with {leases} running leases {} KiB (peak {}): {:.2} × idle (PSS {agent_pss} KiB, private {agent_uss} KiB)",
        idle.0,
        idle.1,
        busy.0,
        busy.1,
        busy.0 as f64 / idle.0.max(1) as f64,
    );
    println!(
        "{shims} shims (forks of the agent): RSS {shims_kib} KiB in all, PSS {shims_pss} KiB, private {shims_uss} KiB ({} KiB each)",
        shims_uss / (shims.max(1) as u64)
    );
    Ok(())
}
