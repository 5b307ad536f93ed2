//! What the benchmarks share: timing a child process with its peak RSS,
//! and naming the machine the figures come from.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `cmd` (stdout discarded); returns wall time and the peak RSS in KiB
/// of the largest process of its tree. Keep the calling process small: a
/// child counts its parent's pages until it execs.
pub fn timed(cmd: &mut Command) -> Result<(Duration, u64), String> {
    let t0 = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; both out-pointers are live locals.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let elapsed = t0.elapsed();
    if pid < 0 || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("{cmd:?} failed (wait status {status})"));
    }
    Ok((elapsed, usage.ru_maxrss as u64))
}

/// CPU model, CPU count and kernel, for the figures' context.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let arch = std::env::consts::ARCH;
    format!("{cpu} ({arch}), {cpus} CPUs, Linux {}", kernel.trim())
}
