//! EdgeX bridge benchmark (not a test): the latency of one sensor read
//! from inside a container's network namespace through the lease's bridge
//! to the simulator and back, against the same read sent straight to the
//! simulator from the host. Both clients are the same keep-alive HTTP/1.1
//! loop; the ratio is the bridge's cost per read (grant and query checks,
//! the upstream call, metering in sled).
//!
//!     cargo build --release --example edgex-simulator
//!     sudo cargo bench --bench edgex_bridge      # DEDGE_BENCH_READS=2000
//!
//! Needs root (a network namespace, as the runtime makes for containers,
//! entered with setns: loopback only, the path a container's request takes).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use dedge::board::Device as BoardDevice;
use dedge::edgex::bridge::{self, Bridge, BridgeLimits};
use dedge::edgex::catalogue::Catalogue;
use dedge::edgex::client::Client;
use dedge::edgex::grants::{DeviceGrant, Grants};
use dedge::edgex::meter::Meter;
use dedge::store::Store;
use nix::sched::{CloneFlags, setns};

mod common;

const PATH: &str = "/api/v3/device/name/Random-Integer-Device/Int8";

fn main() {
    if let Err(e) = bench() {
        eprintln!("edgex_bridge bench: {e}");
        std::process::exit(1);
    }
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` sequential GETs on one keep-alive connection; per-read latencies.
fn reads(addr: &str, path: &str, n: usize) -> Result<Vec<Duration>, String> {
    let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut w = s.try_clone().map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut out = Vec::with_capacity(n);
    let request = format!("GET {path} HTTP/1.1\r\nHost: edgex\r\n\r\n");
    for _ in 0..n {
        let t0 = Instant::now();
        w.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
        let mut length = 0usize;
        let mut status = String::new();
        r.read_line(&mut status).map_err(|e| e.to_string())?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(format!("{addr}{path}: {status}"));
        }
        loop {
            let mut line = String::new();
            r.read_line(&mut line).map_err(|e| e.to_string())?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().map_err(|_| format!("bad length {line}"))?;
            }
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).map_err(|e| e.to_string())?;
        out.push(t0.elapsed());
    }
    Ok(out)
}

fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

fn bench() -> Result<(), String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Err("needs root for the network namespace (sudo cargo bench ...)".into());
    }
    let n: usize = std::env::var("DEDGE_BENCH_READS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000)
        .max(10);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let sim_bin = root.join("target/release/examples/edgex-simulator");
    if !sim_bin.exists() {
        return Err(format!(
            "{} missing: cargo build --release --example edgex-simulator",
            sim_bin.display()
        ));
    }
    let mut sim = Command::new(&sim_bin)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", sim_bin.display()))?;
    let mut line = String::new();
    BufReader::new(sim.stdout.take().ok_or("no stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let _sim = Kill(sim);
    let urls: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    let url = |k: &str| urls[k].as_str().unwrap_or_default().to_string();

    // A network namespace with loopback up, as a container's.
    let ns = Command::new("unshare")
        .args([
            "--net",
            "/bin/busybox",
            "sh",
            "-c",
            "ip link set lo up && exec sleep 3600",
        ])
        .spawn()
        .map_err(|e| format!("unshare: {e}"))?;
    let pid = ns.id() as i32;
    let _ns = Kill(ns);
    std::thread::sleep(Duration::from_millis(200));

    let client = Arc::new(Client::new(
        &url("metadata"),
        &url("command"),
        &url("data"),
        Duration::from_secs(5),
    ));
    let offer = BoardDevice {
        name: "Random-Integer-Device".into(),
        read: vec!["Int8".into()],
        write: vec![],
    };
    let cat = Catalogue::read(&client, &[offer]).map_err(|e| e.to_string())?;
    let grants: Grants = [(
        "Random-Integer-Device".to_string(),
        DeviceGrant {
            read: ["Int8".to_string()].into_iter().collect(),
            ..DeviceGrant::default()
        },
    )]
    .into_iter()
    .collect();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = Store::open(dir.path()).map_err(|e| e.to_string())?;
    let meter = Meter::new(store.tree("edgex-usage").map_err(|e| e.to_string())?);
    let b = Arc::new(Bridge::new(
        "bench",
        grants,
        Arc::new(RwLock::new(cat)),
        client,
        meter.clone(),
        BridgeLimits {
            rate: 1e9,
            burst: 1e9,
            ..BridgeLimits::default()
        },
    ));
    let listener = dedge::runtime::net::listen_in(pid, bridge::PORT).map_err(|e| e.to_string())?;
    let _serving = bridge::Serving::open(listener, b).map_err(|e| e.to_string())?;

    let direct_addr = url("command").trim_start_matches("http://").to_string();
    let direct_path = format!("{PATH}?ds-pushevent=false&ds-returnevent=true&ds-regexcmd=false");
    // Warm both paths, then alternate rounds so drift hits both alike.
    let inside = move |n: usize| -> Result<Vec<Duration>, String> {
        let netns =
            std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| e.to_string())?;
        std::thread::spawn(move || {
            setns(&netns, CloneFlags::CLONE_NEWNET).map_err(|e| e.to_string())?;
            reads(&format!("127.0.0.1:{}", bridge::PORT), PATH, n)
        })
        .join()
        .map_err(|_| "client thread panicked".to_string())?
    };
    reads(&direct_addr, &direct_path, 100)?;
    inside(100)?;
    let (mut direct, mut bridged) = (Vec::new(), Vec::new());
    for _ in 0..4 {
        direct.extend(reads(&direct_addr, &direct_path, n / 4)?);
        bridged.extend(inside(n / 4)?);
    }
    let mut upstream = Vec::new();
    let client = Client::new(
        &url("metadata"),
        &url("command"),
        &url("data"),
        Duration::from_secs(5),
    );
    for _ in 0..n / 4 {
        let t0 = Instant::now();
        client
            .command_get("Random-Integer-Device", "Int8", false, true)
            .map_err(|e| e.to_string())?;
        upstream.push(t0.elapsed());
    }
    let (u50, _) = summary(upstream);
    let t0 = Instant::now();
    let one = dedge::edgex::meter::Usage {
        reads: 1,
        bytes_out: 450,
        ..Default::default()
    };
    for _ in 0..n {
        meter
            .add("bench-meter", "Random-Integer-Device", &one)
            .map_err(|e| e.to_string())?;
    }
    let metering = t0.elapsed() / n as u32;
    let (d50, d99) = summary(direct);
    let (b50, b99) = summary(bridged);
    let counted = meter.usage("bench").map_err(|e| e.to_string())?;
    println!("machine: {}", common::machine());
    println!("reads per path: {} (keep-alive, sequential)", n / 4 * 4);
    println!("direct to the simulator:      median {d50:?}  p99 {d99:?}");
    println!("container -> bridge -> sim:   median {b50:?}  p99 {b99:?}");
    println!("the agent's EdgeX client alone (host -> sim): median {u50:?}");
    println!("metering one call (sled read-modify-write): mean {metering:?}");
    println!(
        "bridge / direct: {:.2} (median), {:.2} (p99); +{:?} per read",
        b50.as_secs_f64() / d50.as_secs_f64(),
        b99.as_secs_f64() / d99.as_secs_f64(),
        b50.saturating_sub(d50)
    );
    println!(
        "metered reads: {}",
        counted.get("Random-Integer-Device").map_or(0, |u| u.reads)
    );
    Ok(())
}
