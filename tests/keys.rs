//! Key files interoperate with Foundry's `cast wallet`, both ways.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

fn cast() -> Command {
    Command::new(common::repo().join("contracts/node_modules/.bin/cast"))
}

fn dedge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dedge"))
}

fn out(mut c: Command) -> (i32, String, String) {
    let o = common::bounded::output(&mut c, common::bounded::DEFAULT).unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).trim().to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

#[test]
fn foundry_key_files_open_in_dedge_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cast();
    c.args(["wallet", "new"])
        .arg(dir.path())
        .args(["--unsafe-password", "pw"]);
    let (code, _, err) = out(c);
    assert_eq!(code, 0, "{err}");
    let theirs = std::fs::read_dir(dir.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut c = cast();
    c.args(["wallet", "address", "--keystore"])
        .arg(&theirs)
        .args(["--password", "pw"]);
    let (_, cast_addr, _) = out(c);
    let mut d = dedge();
    d.args(["key", "address"])
        .arg(&theirs)
        .env("DEDGE_PASSPHRASE", "pw");
    let (code, dedge_addr, err) = out(d);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dedge_addr, cast_addr);

    let ours = dir.path().join("sub/ours.json");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let mut d = dedge();
    d.args(["key", "new"])
        .arg(&ours)
        .arg("--passphrase-file")
        .arg(&pass);
    let (code, addr, err) = out(d);
    assert_eq!(code, 0, "{err}");
    let mut c = cast();
    c.args(["wallet", "address", "--keystore"])
        .arg(&ours)
        .args(["--password", "s3cret"]);
    let (_, cast_addr, err) = out(c);
    assert_eq!(cast_addr, addr, "{err}");

    let mut d = dedge();
    d.args(["key", "new"])
        .arg(&ours)
        .arg("--passphrase-file")
        .arg(&pass);
    let (code, _, err) = out(d);
    assert_eq!(code, 1, "refuses to overwrite: {err}");
}

#[test]
fn wrong_passphrase_and_missing_passphrase_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.json");
    let mut d = dedge();
    d.args(["key", "new"])
        .arg(&key)
        .env("DEDGE_PASSPHRASE", "right");
    assert_eq!(out(d).0, 0);
    let mut d = dedge();
    d.args(["key", "address"])
        .arg(&key)
        .env("DEDGE_PASSPHRASE", "wrong");
    let (code, _, err) = out(d);
    assert_eq!(code, 2);
    assert!(err.contains("wrong passphrase"), "{err}");
    let mut d = dedge();
    d.args(["key", "address"])
        .arg(&key)
        .env_remove("DEDGE_PASSPHRASE");
    let (code, _, err) = out(d);
    assert_eq!(code, 2);
    assert!(err.contains("DEDGE_PASSPHRASE"), "{err}");
}

#[test]
fn board_names_the_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let boards = dir.path().join("boards");
    std::fs::create_dir(&boards).unwrap();
    let board = boards.join("dev.toml");
    std::fs::copy(common::repo().join("boards/dev-x86_64.toml"), &board).unwrap();
    std::fs::create_dir_all(dir.path().join("target/dev-gateway")).unwrap();
    std::fs::write(dir.path().join("target/dev-gateway/passphrase"), "pw\n").unwrap();
    let mut d = dedge();
    d.args(["key", "new", "--board"]).arg(&board);
    let (code, addr, err) = out(d);
    assert_eq!(code, 0, "{err}");
    assert!(dir.path().join("target/dev-gateway/key.json").exists());
    let mut d = dedge();
    d.args(["key", "address", "--board"]).arg(&board);
    assert_eq!(out(d).1, addr);
}
