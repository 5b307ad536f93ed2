//! Fleet-management benchmark (not a test): an operator's command from the
//! block that holds it to the gateway applying it and to its report on
//! chain, and the gas of each, against `dedge agent` as a process (this
//! build's release binary) on a local anvil:
//!
//!     sudo cargo bench --bench fleet        # DEDGE_BENCH_COMMANDS=20
//!
//! Two chains: anvil mining each transaction at once with the dev board's
//! 0 confirmations, and anvil making a block every second with 2
//! confirmations (a command is taken once two blocks cover it). The
//! references, measured in the same run: for time, one verified read of
//! the command (`eth_getLogs` and the receipts-root check the agent does,
//! from this process); for gas, an EDG transfer. Needs root (the agent's
//! sandbox runtime) and anvil (tests/setup.sh).

// A benchmark: a failed unwrap is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use alloy_primitives::U256;
use alloy_sol_types::SolEvent;
use dedge::chain::bindings::{IAgentControl, IEDGToken};
use dedge::chain::events::{Filter, Follower, Update};
use dedge::chain::tx::Log;
use dedge::control::Command as Cmd;
use dedge::control::command::Level;
use dedge::fleet;
use dedge::store::Store;

#[path = "../tests/common/mod.rs"]
mod common;
use common::bounded;
#[path = "../tests/common/cli.rs"]
mod cli;
#[path = "../tests/common/proxy.rs"]
mod hostile;
#[path = "../tests/common/oci.rs"]
mod oci;
#[path = "../tests/common/sandbox.rs"]
mod sandbox;
#[path = "../tests/common/fleet.rs"]
mod world;
use world::{World, now};

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn p90(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 9 / 10).min(v.len() - 1)]
}

/// The gas of the transaction that emitted the gateway's report of `seq`.
fn report_gas(w: &World, seq: u64) -> u64 {
    let logs: Vec<Log> = w
        .rpc
        .call(
            "eth_getLogs",
            serde_json::json!([{"fromBlock": "0x0", "toBlock": "latest", "address": w.d.control,
                "topics": [IAgentControl::Reported::SIGNATURE_HASH, w.gateway.into_word(),
                           alloy_primitives::B256::from(U256::from(seq))]}]),
        )
        .unwrap();
    let hash = logs.last().unwrap().transaction_hash.unwrap();
    let r: serde_json::Value = w
        .rpc
        .call("eth_getTransactionReceipt", serde_json::json!([hash]))
        .unwrap();
    u64::from_str_radix(r["gasUsed"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The time of one verified read of the gateway's commands from block
/// `from`: what the agent does for each new block, from this process.
fn verified_read_ms(w: &World, from: u64) -> f64 {
    let store = Store::temporary().unwrap();
    let f = Follower::new(
        store.tree("c").unwrap(),
        "bench",
        Filter {
            addresses: vec![w.d.control],
            topics0: vec![IAgentControl::Command::SIGNATURE_HASH],
            topic1: Some(w.gateway.into_word()),
        },
        from,
        0,
    )
    .unwrap();
    let t = Instant::now();
    match f.poll(&w.rpc).unwrap() {
        Update::Logs { logs, .. } => assert!(!logs.is_empty(), "the command is there"),
        Update::Reorg { .. } => panic!("no reorg here"),
    }
    t.elapsed().as_secs_f64() * 1000.0
}

struct Figures {
    applied_ms: Vec<f64>,
    reported_ms: Vec<f64>,
    read_ms: Vec<f64>,
    post_gas: Vec<u64>,
    report_gas: Vec<u64>,
    transfer_gas: u64,
    bytes: usize,
}

fn run(anvil_args: &[&str], confirmations: u32, n: u64) -> Figures {
    let (mut w, _) = World::build(anvil_args, confirmations, None);
    w.start_agent();
    w.until("the agent advertised", || w.advert_live());
    let transfer = w
        .tx(&common::signer(0))
        .execute(
            w.d.token,
            &IEDGToken::transferCall {
                to: common::signer(4).address(),
                value: U256::from(1u64),
            },
        )
        .unwrap();
    let mut f = Figures {
        applied_ms: vec![],
        reported_ms: vec![],
        read_ms: vec![],
        post_gas: vec![],
        report_gas: vec![],
        transfer_gas: transfer.gas_used.to::<u64>(),
        bytes: 0,
    };
    for seq in 1..=n {
        let level = if seq % 2 == 0 {
            Level::Info
        } else {
            Level::Warn
        };
        let command = Cmd::LogLevel(level);
        f.bytes = dedge::control::Envelope {
            chain_id: w.d.chain_id,
            control: w.d.control,
            gateway: w.gateway,
            seq,
            expiry: now() + 600,
            expects: Some(seq - 1),
            command: command.clone(),
        }
        .encode()
        .len();
        let (posted, receipt) = fleet::post(
            &w.tx(&w.operator),
            &w.d,
            w.gateway,
            command,
            now() + 600,
            Some(seq - 1),
        )
        .unwrap();
        let mined = unix_ms();
        assert_eq!(posted, seq);
        f.post_gas.push(receipt.gas_used.to::<u64>());
        f.read_ms
            .push(verified_read_ms(&w, receipt.block_number.to::<u64>()));
        let s = w.status_until("the command taken", |s| s["commands"][0]["seq"] == seq);
        let taken = s["commands"][0]["taken_ms"].as_u64().unwrap();
        f.applied_ms.push(taken.saturating_sub(mined) as f64);
        let deadline = Instant::now() + Duration::from_secs(60);
        while w.reported() < seq {
            assert!(Instant::now() < deadline, "not reported");
            std::thread::sleep(Duration::from_millis(20));
        }
        f.reported_ms.push(unix_ms().saturating_sub(mined) as f64);
        f.report_gas.push(report_gas(&w, seq));
    }
    f
}

fn main() {
    if !sandbox::can_run("fleet bench") {
        return;
    }
    let n: u64 = std::env::var("DEDGE_BENCH_COMMANDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!("fleet bench: {n} log-level commands per chain, one at a time");
    for (label, args, confirmations) in [
        ("anvil automine, 0 confirmations", &[][..], 0),
        (
            "anvil 1 s blocks, 2 confirmations",
            &["--block-time", "1"][..],
            2,
        ),
    ] {
        let mut f = run(args, confirmations, n);
        let read = median(&mut f.read_ms);
        let applied = median(&mut f.applied_ms);
        let reported = median(&mut f.reported_ms);
        let post_gas = median(&mut f.post_gas.iter().map(|g| *g as f64).collect::<Vec<_>>());
        let report_gas = median(&mut f.report_gas.iter().map(|g| *g as f64).collect::<Vec<_>>());
        println!("\n{label}:");
        println!("  reference: one verified read of the command   median {read:>8.1} ms");
        println!(
            "  mined -> applied on the gateway               median {applied:>8.1} ms  p90 {:>8.1} ms  ({:.0}x the read)",
            p90(&mut f.applied_ms),
            applied / read
        );
        println!(
            "  mined -> its report seen on chain              median {reported:>8.1} ms  p90 {:>8.1} ms  ({:.0}x the read)",
            p90(&mut f.reported_ms),
            reported / read
        );
        println!(
            "  reference: an EDG transfer                     {:>8} gas",
            f.transfer_gas
        );
        println!(
            "  post ({} bytes of command)                     {post_gas:>8.0} gas  ({:.2}x the transfer)",
            f.bytes,
            post_gas / f.transfer_gas as f64
        );
        println!(
            "  report (applied, no detail)                    {report_gas:>8.0} gas  ({:.2}x the transfer)",
            report_gas / f.transfer_gas as f64
        );
    }
}
