//! The `dedge` binary as a vendor uses it: exit codes, messages, help.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "common/bounded.rs"]
mod bounded;

const DEV_BOARD: &str = include_str!("../boards/dev-x86_64.toml");

fn dedge(args: &[&str]) -> Output {
    bounded::output(
        Command::new(env!("CARGO_BIN_EXE_dedge"))
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
        bounded::DEFAULT,
    )
    .expect("run dedge")
}

fn unit_key(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
}

fn shipped(name: &str) -> String {
    fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("boards")
            .join(name),
    )
    .unwrap()
}

/// The systemd units shipped for gateway images run command lines the
/// binary accepts; the agent's unit keeps leases' containers alive across
/// restarts and holds no cgroup (a delegated unit with controllers enabled
/// below it cannot restart on systemd 252); the leases' unit is delegated.
#[test]
fn the_systemd_units_run_the_agent_and_hold_the_leases_cgroup() {
    let agent = shipped("dedge-agent.service");
    let line = |key: &str| {
        unit_key(&agent, key).unwrap_or_else(|| panic!("no {key}= in the agent's unit"))
    };
    assert_eq!(line("KillMode"), "process");
    assert_eq!(
        unit_key(&agent, "Delegate"),
        None,
        "the agent's unit must not be delegated"
    );
    assert_eq!(line("Requires"), "dedge-leases.service");
    let exec = line("ExecStart");
    let mut args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(&args[..2], ["agent", "--board"], "{exec}");
    args.push("--help");
    let out = dedge(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("dedge agent --board BOARD"));

    let leases = shipped("dedge-leases.service");
    let line = |key: &str| {
        unit_key(&leases, key).unwrap_or_else(|| panic!("no {key}= in the leases' unit"))
    };
    assert_eq!(line("Delegate"), "yes");
    assert_eq!(line("Type"), "notify");
    let exec = line("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().skip(1).collect();
    assert_eq!(args, ["agent", "hold-cgroups"], "{exec}");
    // Every shipped gateway board on cgroup v2 puts its leases there.
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("boards")).unwrap() {
        let path = entry.unwrap().path();
        let board = fs::read_to_string(&path).unwrap_or_default();
        if path.extension().is_some_and(|e| e == "toml") && board.contains("cgroup = \"v2\"") {
            assert!(
                board.contains("cgroup_parent = \"/system.slice/dedge-leases.service\""),
                "{} runs cgroup v2 but not in dedge-leases.service",
                path.display()
            );
        }
    }
}

/// Outside systemd, `hold-cgroups` says what it needs instead of holding
/// the wrong cgroup.
#[test]
fn hold_cgroups_outside_a_delegated_v2_unit_is_refused() {
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if unified && !own.lines().any(|l| l == "0::/") {
        eprintln!(
            "SKIP: this host is unified cgroup v2 with a cgroup of its own (tests/vm/lease.sh covers hold-cgroups)"
        );
        return;
    }
    let out = dedge(&["agent", "hold-cgroups"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("Delegate=yes"),
        "{}",
        text(&out.stderr)
    );
}

/// The harness's own deadline works: a hung helper fails the test.
#[test]
#[should_panic(expected = "still running after")]
fn a_hung_helper_fails_the_test_with_a_report() {
    let _ = bounded::output(
        Command::new("sleep").arg("30"),
        std::time::Duration::from_millis(200),
    );
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes the dev board with one edit applied; the edit must match once.
fn board_with(dir: &Path, name: &str, from: &str, to: &str) -> PathBuf {
    assert_eq!(
        DEV_BOARD.matches(from).count(),
        1,
        "`{from}` must occur once"
    );
    let path = dir.join(name);
    fs::write(&path, DEV_BOARD.replacen(from, to, 1)).unwrap();
    path
}

fn line_of(path: &Path, needle: &str) -> usize {
    let text = fs::read_to_string(path).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn every_shipped_board_passes() {
    let mut boards: Vec<String> =
        fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("boards"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
    boards.sort();
    assert!(boards.len() >= 6, "boards/ lost files: {boards:?}");
    let mut args = vec!["board", "check"];
    args.extend(boards.iter().map(String::as_str));
    let out = dedge(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        boards.len()
    );
    for arch in ["aarch64", "armv7", "x86_64"] {
        assert!(
            stdout.contains(&format!("({arch},")),
            "no {arch} board: {stdout}"
        );
    }
}

/// The four kinds of mistake the foundation issue names, each with its
/// position and fix.
#[test]
fn broken_boards_exit_2_with_position_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            board_with(dir.path(), "typo.toml", "max_leases = 4", "max_lease = 4"),
            "max_lease",
            1,
            "did you mean `max_leases`?",
        ),
        (
            board_with(
                dir.path(),
                "type.toml",
                "confirmations = 0",
                "confirmations = \"zero\"",
            ),
            "confirmations =",
            17,
            "expected a whole number",
        ),
        (
            board_with(dir.path(), "missing.toml", "grace = \"10s\"\n", ""),
            "[pricing]",
            1,
            "add `grace = ...`",
        ),
        (
            board_with(
                dir.path(),
                "impossible.toml",
                "cpu_millicores = 1000",
                "cpu_millicores = 9000",
            ),
            "cpu_millicores",
            18,
            "offer at most 2000",
        ),
        (
            board_with(
                dir.path(),
                "bridge.toml",
                "auth = \"none\"",
                "auth = \"none\"\nlease_rate = 0",
            ),
            "lease_rate",
            14,
            "use 1 to 10000",
        ),
    ];
    for (file, needle, column, fix) in &cases {
        let out = dedge(&["board", "check", file.to_str().unwrap()]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", file.display());
        let position = format!("{}:{}:{column}:", file.display(), line_of(file, needle));
        assert!(stderr.contains(&position), "want {position} in:\n{stderr}");
        assert!(stderr.contains(fix), "want `{fix}` in:\n{stderr}");
    }
}

#[test]
fn one_bad_file_fails_the_batch_but_all_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let bad = board_with(dir.path(), "bad.toml", "max_leases = 4", "max_leases = 0");
    let out = dedge(&[
        "board",
        "check",
        bad.to_str().unwrap(),
        "boards/dev-x86_64.toml",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stdout).contains("ok    boards/dev-x86_64.toml"));
    assert!(text(&out.stderr).contains("1 of 2 board files are invalid"));
}

#[test]
fn unreadable_file_is_a_config_error() {
    let out = dedge(&["board", "check", "boards/no-such-board.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("boards/no-such-board.toml: cannot read board file"));
}

/// `--host` on this machine: a board that fits passes, and one whose
/// offer exceeds the machine's physical memory fails on that key.
#[test]
fn host_check_against_this_machine() {
    if std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIP host_check_against_this_machine: dev board is x86_64 only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("target/dev-gateway");
    fs::create_dir_all(&secrets).unwrap();
    for f in ["key.json", "passphrase"] {
        fs::write(secrets.join(f), "test").unwrap();
        fs::set_permissions(secrets.join(f), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let boards = dir.path().join("boards");
    fs::create_dir(&boards).unwrap();
    let fits = board_with(
        &boards,
        "fits.toml",
        "memory = \"512 MiB\"",
        "memory = \"16 MiB\"",
    );
    let out = dedge(&["board", "check", "--host", fits.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let huge = fs::read_to_string(&fits)
        .unwrap()
        .replace("memory = \"4 GiB\"", "memory = \"64 TiB\"")
        .replace("memory = \"16 MiB\"", "memory = \"32 TiB\"");
    let huge_path = boards.join("huge.toml");
    fs::write(&huge_path, huge).unwrap();
    let out = dedge(&["board", "check", huge_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "without --host the declared 64 TiB is believed"
    );
    let out = dedge(&["board", "check", "--host", huge_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("resources.memory: 32 TiB offered but this machine has"),
        "{stderr}"
    );

    fs::set_permissions(secrets.join("key.json"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = dedge(&["board", "check", "--host", fits.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("chmod 600"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_names_commit_and_target() {
    let out = dedge(&["version"]);
    assert!(out.status.success());
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("dedge {}\n", env!("CARGO_PKG_VERSION"))));
    let target = stdout
        .lines()
        .find_map(|l| l.strip_prefix("target "))
        .unwrap();
    assert!(target.starts_with(std::env::consts::ARCH), "{target}");
    let commit = stdout
        .lines()
        .find_map(|l| l.strip_prefix("commit "))
        .unwrap();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.bytes().all(|b| b.is_ascii_hexdigit())),
        "{commit}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["help"],
        &["help", "board"],
        &["board", "--help"],
        &["board", "check", "--help"],
        &["version", "--help"],
        &["key", "--help"],
        &["key", "new", "--help"],
        &["help", "key"],
        &["image", "--help"],
        &["help", "image"],
    ] {
        let out = dedge(args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage: dedge"), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["board"],
        &["board", "lint"],
        &["board", "check"],
        &["board", "check", "--bogus", "x.toml"],
        &["version", "extra"],
        &["help", "nope"],
    ] {
        let out = dedge(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).starts_with("dedge: "), "{args:?}");
    }
}

/// `dedge board check ... | head -1` must not panic when the reader leaves.
#[test]
fn closed_stdout_is_not_a_crash() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = Command::new(env!("CARGO_BIN_EXE_dedge"))
        .args(["board", "check", "boards/dev-x86_64.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status.stderr));
    assert!(status.stderr.is_empty(), "{}", text(&status.stderr));
}
