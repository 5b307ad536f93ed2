//! Running the real `dedge` binary from a test.

#![allow(dead_code)]

use super::bounded;

use std::process::Command;

/// Runs `dedge ARGS...`; returns the exit code, trimmed stdout and stderr.
pub fn dedge(args: &[&str]) -> (i32, String, String) {
    let o = bounded::output(
        Command::new(env!("CARGO_BIN_EXE_dedge")).args(args),
        bounded::DEFAULT,
    )
    .expect("run the dedge binary");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Runs a helper tool; it must succeed. Returns its stdout's lines.
pub fn lines_of(cmd: &mut Command) -> Vec<String> {
    let out = bounded::output(cmd, bounded::DEFAULT)
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run tests/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}
