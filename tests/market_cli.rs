//! The newcomer's walk with the real binary against a real anvil: a key, a
//! board, bind and advertise the gateway, list it with `dedge market ls`,
//! read a settled lease's invoice.

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use alloy_primitives::{U256, Uint};
use common::edgex::Simulator;
use common::{Anvil, signer};
use dedge::chain::bindings::IEDGToken;
use dedge::chain::keystore;
use dedge::chain::tx::TxSender;
use dedge::market;
use dedge::store::Store;
use serde_json::{Value, json};

fn dedge(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let o = common::bounded::output(
        Command::new(env!("CARGO_BIN_EXE_dedge"))
            .args(args)
            .envs(env.iter().copied()),
        common::bounded::DEFAULT,
    )
    .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The dev board, pointed at this anvil (same deployer and order, so the
/// same contract addresses; another chain id and port) and at an EdgeX
/// simulator, which lives as long as the returned handle.
fn board_for(anvil: &Anvil, dir: &Path) -> (PathBuf, Simulator) {
    let sim = Simulator::start(&[]);
    let boards = dir.join("boards");
    std::fs::create_dir_all(&boards).unwrap();
    let text = std::fs::read_to_string(common::repo().join("boards/dev-x86_64.toml"))
        .unwrap()
        .replace(
            "chain_id = 31337",
            &format!("chain_id = {}", anvil.chain_id),
        )
        .replace("http://127.0.0.1:8545", &anvil.url)
        .replace("http://127.0.0.1:59881", &sim.metadata)
        .replace("http://127.0.0.1:59882", &sim.command)
        .replace("http://127.0.0.1:59880", &sim.data);
    let path = boards.join("gw.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.join("target/dev-gateway")).unwrap();
    std::fs::write(dir.join("target/dev-gateway/passphrase"), "gw-pass\n").unwrap();
    (path, sim)
}

/// A fresh gateway key on the board, funded, bound to anvil's account 3
/// and advertised, all through the binary. Returns the gateway's address.
fn gateway_on_market(
    anvil: &Anvil,
    d: &dedge::chain::Deployment,
    dir: &Path,
    board: &str,
) -> String {
    let (code, gw_addr, err) = dedge(&["key", "new", "--board", board], &[]);
    assert_eq!(code, 0, "{err}");
    let gw_addr = gw_addr.trim().to_string();

    // The new key needs ETH for gas and EDG for the advert fee.
    let rpc = anvil.rpc();
    let _: Value = rpc
        .call("anvil_setBalance", json!([gw_addr, "0x56BC75E2D63100000"]))
        .unwrap();
    let deployer = signer(0);
    let store = Store::temporary().unwrap();
    let policy = common::policy();
    let dep = TxSender::new(
        &rpc,
        &deployer,
        anvil.chain_id,
        store.tree("n").unwrap(),
        policy,
    );
    for to in [gw_addr.parse().unwrap(), signer(1).address()] {
        dep.execute(
            d.token,
            &IEDGToken::transferCall {
                to,
                value: U256::from(100u128 * 10u128.pow(18)),
            },
        )
        .unwrap();
    }

    // The operator's key file: anvil's account 3.
    let op_key = dir.join("operator.json");
    keystore::save(&op_key, &signer(3), b"op-pass").unwrap();
    let (code, out, err) = dedge(
        &[
            "gateway",
            "register",
            "--board",
            board,
            "--operator-key",
            op_key.to_str().unwrap(),
        ],
        &[("DEDGE_OPERATOR_PASSPHRASE", "op-pass")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bound to operator"), "{out}");

    let (code, out, err) = dedge(
        &["gateway", "advertise", "--board", board, "--ttl", "7d"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("advertised at 127.0.0.1:7300"), "{out}");
    gw_addr
}

#[test]
fn register_advertise_and_list_a_gateway() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let dir = tempfile::tempdir().unwrap();
    let (board, _edgex) = board_for(&anvil, dir.path());
    let board = board.to_str().unwrap();
    let deployment = common::repo().join(format!("contracts/deployments/{}.json", anvil.chain_id));
    let deployment = deployment.to_str().unwrap();
    let gw_addr = gateway_on_market(&anvil, &d, dir.path(), board);

    let ls = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "market",
            "ls",
            "--rpc",
            &anvil.url,
            "--deployment",
            deployment,
            "--json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = dedge(&args, &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let all = ls(&[]);
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0]["gateway"].as_str().unwrap().to_lowercase(),
        gw_addr.to_lowercase()
    );
    assert_eq!(all[0]["capabilities"]["arch"], "x86_64");
    // The devices are the EdgeX catalogue: profiles and value types.
    let int = all[0]["capabilities"]["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "Random-Integer-Device")
        .unwrap();
    assert_eq!(int["profile"], "Random-Integer-Device");
    assert_eq!(int["write"], serde_json::json!(["Int8"]));
    assert_eq!(
        int["commands"][0],
        serde_json::json!({"name": "Int16", "value_types": ["Int16"]})
    );
    assert_eq!(all[0]["price_per_second"], "0.00015 EDG");
    assert_eq!(ls(&["--wei"])[0]["price_per_second"], "150000000000000");
    assert_eq!(
        ls(&["--arch", "x86_64", "--device", "Random-Integer-Device:Int8"]).len(),
        1
    );
    assert!(ls(&["--arch", "aarch64"]).is_empty());
    assert!(ls(&["--device", "Random-Integer-Device:Int99"]).is_empty());
    assert!(ls(&["--max-price", "0.0001"]).is_empty());
    assert_eq!(ls(&["--max-price", "0.00015"]).len(), 1);

    // The table form, with the board giving the chain instead.
    let (code, out, err) = dedge(&["market", "ls", "--board", board], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("0.00015 EDG") && out.contains("127.0.0.1:7300"),
        "{out}"
    );

    let (code, _, err) = dedge(&["market", "ls", "--arch", "sparc", "--board", board], &[]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = dedge(&["market", "ls"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--rpc URL"), "{err}");
}

#[test]
fn invoice_of_a_settled_lease() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let rpc = anvil.rpc();
    let store = Store::temporary().unwrap();
    let policy = common::policy();
    let (deployer, buyer, gateway, operator) = (signer(0), signer(1), signer(2), signer(3));
    let tx = |s| {
        TxSender::new(
            &rpc,
            s,
            anvil.chain_id,
            store.tree("n").unwrap(),
            policy.clone(),
        )
    };
    let (dep, b, g, o) = (tx(&deployer), tx(&buyer), tx(&gateway), tx(&operator));
    dep.execute(
        d.token,
        &IEDGToken::transferCall {
            to: buyer.address(),
            value: U256::from(10u128.pow(20)),
        },
    )
    .unwrap();
    market::register_gateway(&o, &gateway, &d).unwrap();
    let offer = dedge::chain::eip712::Offer {
        buyer: buyer.address(),
        gateway: gateway.address(),
        cpuMillicores: 100,
        memoryBytes: 1 << 20,
        diskBytes: 1 << 20,
        devices: vec![],
        pricePerSecond: Uint::from(1u64),
        maxDuration: 60,
        paymentInterval: 5,
        image: "bafy".into(),
        expiry: Uint::from(u32::MAX),
        nonce: 9,
    };
    let lease = market::propose(&b, &d, &offer).unwrap();
    market::accept(&g, &d, lease).unwrap();
    market::deposit_fee(&b, &d, lease).unwrap();
    market::terminate(&b, &d, lease, U256::from(5u64)).unwrap();
    let deployment = common::repo().join(format!("contracts/deployments/{}.json", anvil.chain_id));
    let args = |extra: &[&str]| {
        let mut v: Vec<String> = vec![
            "market".into(),
            "invoice".into(),
            lease.to_string(),
            "--rpc".into(),
            anvil.url.clone(),
            "--deployment".into(),
            deployment.to_string_lossy().into_owned(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |a: Vec<String>| {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        dedge(&refs, &[])
    };
    let (code, _, err) = run(args(&[]));
    assert_eq!(code, 1, "not settled yet: {err}");
    assert!(err.contains("no invoice yet"), "{err}");
    market::terminate(&g, &d, lease, U256::from(7u64)).unwrap();
    let (code, out, err) = run(args(&["--json", "--wei"]));
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["buyer_reported"], "5");
    assert_eq!(v["seller_reported"], "7");
    assert_eq!(v["disputed"], true);
    assert_eq!(v["fee"], "1000000000000000000");
    let (code, out, _) = run(args(&[]));
    assert_eq!(code, 0);
    assert!(
        out.contains("fee              1 EDG") && out.contains("DISPUTED"),
        "{out}"
    );
    let (code, _, _) = dedge(&["market", "invoice", "0x1234"], &[]);
    assert_eq!(code, 2);
}

/// The market steps of a lease, one command each, buyer and gateway.
#[test]
fn a_lease_step_by_step_from_the_command_line() {
    let anvil = Anvil::start();
    let d = anvil.deploy();
    let dir = tempfile::tempdir().unwrap();
    let (board, _edgex) = board_for(&anvil, dir.path());
    let board = board.to_str().unwrap();
    let gw = gateway_on_market(&anvil, &d, dir.path(), board);
    let buyer_key = dir.path().join("buyer.json");
    keystore::save(&buyer_key, &signer(1), b"buyer-pass").unwrap();
    let buyer_key = buyer_key.to_str().unwrap();
    let deployment = common::repo().join(format!("contracts/deployments/{}.json", anvil.chain_id));
    let chain = [
        "--rpc",
        anvil.url.as_str(),
        "--deployment",
        deployment.to_str().unwrap(),
    ];
    let buyer_env = [("DEDGE_PASSPHRASE", "buyer-pass")];
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut all = args.to_vec();
        if !args.contains(&"--board") {
            all.extend_from_slice(&chain);
        }
        dedge(&all, env)
    };

    let (code, out, err) = run(
        &[
            "market",
            "propose",
            "--gateway",
            &gw,
            "--image",
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
            "--cpus",
            "0.5",
            "--memory",
            "64M",
            "--device",
            "Random-Integer-Device:Int8",
            "--key",
            buyer_key,
            "--json",
        ],
        &buyer_env,
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let lease = v["lease"].as_str().unwrap().to_string();
    // 0.5 core x 0.0001 + 1/16 GiB x 0.00005 + 1 device x 0.00001 EDG/s
    assert_eq!(v["offer"]["pricePerSecond"], "63125000000000");
    assert_eq!(v["offer"]["memoryBytes"], 64 << 20);

    let state = || {
        let (code, out, err) = run(&["market", "show", &lease, "--json"], &[]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state(), "proposed");
    let (code, _, err) = run(&["market", "accept", &lease, "--board", board], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(state(), "accepted");
    let (code, _, err) = run(&["market", "fee", &lease, "--key", buyer_key], &buyer_env);
    assert_eq!(code, 0, "{err}");
    assert_eq!(state(), "active");
    let (code, _, err) = run(
        &[
            "market", "report", &lease, "--paid", "0.5", "--key", buyer_key,
        ],
        &buyer_env,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(state(), "terminating");
    let (code, _, err) = run(
        &[
            "market", "report", &lease, "--paid", "0.5", "--board", board,
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(&["market", "invoice", &lease, "--json"], &[]);
    assert_eq!(code, 0, "{err}");
    let inv: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inv["buyer_reported"], "0.5 EDG");
    assert_eq!(inv["disputed"], false);

    // Bad input is a usage error, named.
    let (code, _, err) = run(
        &[
            "market",
            "propose",
            "--gateway",
            &gw,
            "--image",
            "x",
            "--device",
            "Nope:X",
            "--key",
            buyer_key,
        ],
        &buyer_env,
    );
    assert_eq!(code, 2);
    assert!(err.contains("does not sell"), "{err}");
    let (code, _, err) = run(
        &[
            "market",
            "propose",
            "--gateway",
            &gw,
            "--image",
            "x",
            "--cpus",
            "9",
            "--key",
            buyer_key,
        ],
        &buyer_env,
    );
    assert_eq!(code, 2);
    assert!(err.contains("sells up to 1"), "{err}");
    let (code, _, err) = run(&["market", "fee", &lease, "--key", buyer_key], &buyer_env);
    assert_eq!(code, 1, "fee on a settled lease reverts");
    assert!(err.contains("WrongState"), "{err}");
}
