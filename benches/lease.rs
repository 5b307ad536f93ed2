//! Lease benchmark (not a test): how long `dedge lease create` takes from
//! start to a running container on a local anvil (target ≤ 2 s), next to
//! `dedge sandbox run` of the same image with no market at all (import,
//! unpack, start, exit: the reference); where the time goes, step by step;
//! the agent's RSS idle and with 10 running leases, its start-up peak
//! (VmHWM), and its CPU while idle and while the leases run.
//!
//!     sudo cargo bench --bench lease        # DEDGE_BENCH_LEASES=10
//!
//! Needs root (the sandbox), anvil and the IPFS harness (tests/setup.sh).
//! Release builds of `dedge` are used throughout; anvil mines each
//! transaction at once.
//!
//! - `DEDGE_BENCH_AGENT=[LABEL=]PATH,...`: the agent binaries to measure
//!   (default: this build's `dedge`), e.g. the static musl build a gateway
//!   runs and an older one. Each gets the whole bench in turn: its own
//!   anvil, its own gateway key made by its own `dedge key new --board`
//!   (so a key file's cost is the one that binary writes), its own leases.
//!   The buyer's side is always this build's `dedge`. With more than one,
//!   a closing table gives each agent's figures as ratios to the first's.
//! - `DEDGE_BENCH_CPU_SECS=60`: the window over which the agent's CPU
//!   (utime + stime from /proc/PID/stat) is read, idle and with the leases.

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

/// The targets of issue 13 for an agent on a 512 MiB board, KiB and %.
const IDLE_RSS_TARGET_KIB: u64 = 4 << 10;
const BUSY_RSS_TARGET_KIB: u64 = 6 << 10;
const PEAK_TARGET_KIB: u64 = 16 << 10;
const IDLE_CPU_TARGET_PCT: f64 = 0.5;

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("lease bench: needs root (containers); run with sudo");
        std::process::exit(1);
    }
    let agents: Vec<(String, String)> = std::env::var("DEDGE_BENCH_AGENT")
        .unwrap_or_else(|_| DEDGE.to_string())
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| match s.split_once('=') {
            Some((label, path)) => (label.to_string(), path.to_string()),
            None => (s.to_string(), s.to_string()),
        })
        .collect();
    println!("machine: {}", common::machine());
    let mut all = Vec::new();
    for (label, path) in &agents {
        println!("\n== agent {label}: {path}");
        match bench(path) {
            Ok(f) => all.push((label, f)),
            Err(e) => {
                eprintln!("lease bench: agent {label}: {e}");
                std::process::exit(1);
            }
        }
    }
    if all.len() > 1 {
        let (_, first) = &all[0];
        println!("\nagents side by side (ratio to {}):", all[0].0);
        println!(
            "  {:<12} {:>16} {:>16} {:>16} {:>16} {:>14} {:>14}",
            "agent",
            "idle RSS KiB",
            "leases RSS KiB",
            "peak KiB",
            "binary B",
            "idle CPU %",
            "leases CPU %"
        );
        for (label, f) in &all {
            // A ratio to nothing (no CPU ticks in the first's window) is 0.
            let r = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
            println!(
                "  {label:<12} {:>7} ({:>5.2}) {:>7} ({:>5.2}) {:>7} ({:>5.2}) {:>8} ({:>4.2}) {:>6.3} ({:>4.2}) {:>6.3} ({:>4.2})",
                f.idle.0,
                r(f.idle.0 as f64, first.idle.0 as f64),
                f.busy.0,
                r(f.busy.0 as f64, first.busy.0 as f64),
                f.peak,
                r(f.peak as f64, first.peak as f64),
                f.binary,
                r(f.binary as f64, first.binary as f64),
                f.idle_cpu,
                r(f.idle_cpu, first.idle_cpu),
                f.busy_cpu,
                r(f.busy_cpu, first.busy_cpu),
            );
        }
    }
}

/// What one agent binary measured.
struct Figures {
    /// VmRSS, VmHWM (KiB) idle after advertising.
    idle: (u64, u64),
    /// VmRSS, VmHWM (KiB) with the leases running.
    busy: (u64, u64),
    /// The highest VmHWM seen: the start-up peak unless leases raised it.
    peak: u64,
    binary: u64,
    /// % of one core over the window.
    idle_cpu: f64,
    busy_cpu: f64,
}

/// utime + stime of `pid` (all its threads), seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command's closing parenthesis: state is field 3,
    // utime and stime fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    f.iter().sum::<u64>() as f64 / hz
}

/// % of one core `pid` used over `window`.
fn cpu_percent(pid: u32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_secs(pid), Instant::now());
    std::thread::sleep(window);
    (cpu_secs(pid) - c0) / t0.elapsed().as_secs_f64() * 100.0
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
fn shims_rss(except: u32, agent: &std::path::Path) -> (usize, u64, u64, u64) {
    let mut n = 0;
    let (mut total, mut pss, mut uss) = (0, 0, 0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // Shims are forks of the agent (named after the forking thread), so
        // they are known by their executable.
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        if pid != except && exe == agent {
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
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn bench(agent_bin: &str) -> Result<Figures, String> {
    let agent_path = std::fs::canonicalize(agent_bin).map_err(|e| format!("{agent_bin}: {e}"))?;
    let binary = std::fs::metadata(&agent_path)
        .map_err(|e| e.to_string())?
        .len();
    let window = Duration::from_secs(
        std::env::var("DEDGE_BENCH_CPU_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60),
    );
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
    // The gateway's key as this agent binary makes it.
    let o = bounded::output(
        Command::new(&agent_path).args(["key", "new", "--board", b]),
        bounded::DEFAULT,
    )
    .map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(String::from_utf8_lossy(&o.stderr).into_owned());
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
        Command::new(&agent_path)
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
    let idle_cpu = cpu_percent(agent.0.id(), window);

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
    let (shims, shims_kib, shims_pss, shims_uss) = shims_rss(agent.0.id(), &agent_path);
    let (agent_pss, agent_uss) = pss_uss(agent.0.id());
    let busy_cpu = cpu_percent(agent.0.id(), window);

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
    let peak = idle.1.max(busy.1);
    let mark = |ok: bool| if ok { "within" } else { "OVER" };
    println!(
        "agent targets: idle RSS {} KiB ≤ {IDLE_RSS_TARGET_KIB} {}, with {leases} leases {} KiB ≤ {BUSY_RSS_TARGET_KIB} {}, start-up peak {} KiB ≤ {PEAK_TARGET_KIB} {}",
        idle.0,
        mark(idle.0 <= IDLE_RSS_TARGET_KIB),
        busy.0,
        mark(busy.0 <= BUSY_RSS_TARGET_KIB),
        idle.1,
        mark(idle.1 <= PEAK_TARGET_KIB),
    );
    println!(
        "agent CPU over {} s (utime + stime): idle {idle_cpu:.3} % of a core ≤ {IDLE_CPU_TARGET_PCT} {}, with {leases} leases {busy_cpu:.3} %",
        window.as_secs(),
        mark(idle_cpu <= IDLE_CPU_TARGET_PCT),
    );
    Ok(Figures {
        idle,
        busy,
        peak,
        binary,
        idle_cpu,
        busy_cpu,
    })
}
