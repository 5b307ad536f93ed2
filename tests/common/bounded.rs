//! Running a helper process with a deadline: a hang becomes a test failure
//! that names the command and shows where each of its threads (and its
//! children's) was blocked, instead of a CI run that never ends.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// What every helper command in the tests gets unless it says otherwise.
pub const DEFAULT: Duration = Duration::from_secs(180);

/// `cmd.output()` with stdin closed and a deadline. On timeout the whole
/// process group is killed and the test panics with a report.
pub fn output(cmd: &mut Command, limit: Duration) -> std::io::Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let report = report(pid);
            // SAFETY: kill(2) on the process group this helper created.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = child.wait();
            let (out, err) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{cmd:?} still running after {limit:?}; killed.\n{report}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Every process in group `pgid` with, per thread, the syscall it sits in
/// and the kernel's wait channel: enough to tell a futex deadlock from a
/// socket read or a lock file.
fn report(pgid: i32) -> String {
    let mut text = String::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return text;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 5 (pgrp) comes after the parenthesised command name.
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|s| s.parse::<i32>().ok());
        if pgrp != Some(pgid) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        text += &format!(
            "pid {pid}: {}\n",
            String::from_utf8_lossy(&cmdline).replace('\0', " ")
        );
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let path = t.path();
            let read = |f: &str| {
                std::fs::read_to_string(path.join(f))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            text += &format!(
                "  thread {} {}: syscall {} wchan {}\n{}",
                t.file_name().to_string_lossy(),
                read("comm"),
                read("syscall"),
                read("wchan"),
                read("stack")
                    .lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            );
        }
        if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
            let fds: Vec<String> = fds
                .flatten()
                .filter_map(|f| std::fs::read_link(f.path()).ok())
                .map(|l| l.display().to_string())
                .collect();
            text += &format!("  fds: {}\n", fds.join(", "));
        }
    }
    text
}
