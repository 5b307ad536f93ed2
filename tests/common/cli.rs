//! Running the real `dedge` binary from a test.

#![allow(dead_code)]

use std::process::Command;

/// Runs `dedge ARGS...`; returns the exit code, trimmed stdout and stderr.
pub fn dedge(args: &[&str]) -> (i32, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_dedge"))
        .args(args)
        .output()
        .expect("run the dedge binary");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
