//! Fleet management through the chain, end to end: a real anvil with the
//! contracts, `dedge agent` as a process, the operator posting through
//! `dedge fleet post` and the library, the gateway's reports read back from
//! the chain and through `dedge fleet ls` and `dedge agent status`.
//! Needs root and cgroups for the agent's runtime (SKIP otherwise).

// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{policy, signer};
use dedge::chain::bindings::IRegistry;
use dedge::chain::tx::TxSender;
use dedge::control::command::{Capacity, Level, Prices};
use dedge::control::{Command as Cmd, Outcome};
use dedge::fleet;
use dedge::store::Store;

#[path = "common/cli.rs"]
mod cli;
#[path = "common/proxy.rs"]
mod hostile;
#[path = "common/oci.rs"]
mod oci;
#[path = "common/sandbox.rs"]
mod sandbox;
use common::bounded;
#[path = "common/fleet.rs"]
mod world;
use world::{World, now, set};

/// Every command, applied or refused with its reason, reported on chain;
/// the effective configuration shows where each value came from; a kill
/// between recording and reporting loses nothing and repeats nothing.
#[test]
fn operator_commands_end_to_end_through_the_agent_process() {
    if !sandbox::can_run("operator_commands_end_to_end_through_the_agent_process") {
        return;
    }
    let mut w = World::new();
    w.start_agent();
    w.until("the agent advertised", || w.advert_live());
    let g = format!("{}", w.gateway);

    // pause, through the CLI: applied, reported, the advert withdrawn.
    let (code, out, err) = w.fleet(&["post", "--gateway", &g, "pause"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pause posted as command 1"), "{out}");
    assert_eq!(w.outcome(1), (Outcome::Applied, String::new()));
    w.until("the advert withdrawn", || !w.advert_live());
    let s = w.status_until("paused", |s| s["selling"] == "paused");
    assert_eq!(
        set(&s, "selling"),
        ("\"paused\"".into(), "command 1".into())
    );
    assert_eq!(set(&s, "prices").1, "board");

    // prices: expects the version the gateway reported (0: a pause is
    // not a configuration version).
    let prices = Prices {
        cpu_core_second: 7_000_000_000_000,
        memory_gib_second: 3_000_000_000_000,
        device_second: None,
    };
    let seq = w.post(Cmd::Prices(prices), now() + 600, None);
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
    let s = w.status_until("the prices", |s| s["config"]["version"] == 2);
    assert_eq!(
        s["config"]["prices"]["value"]["cpu_core_second"],
        "7000000000000"
    );
    assert_eq!(s["config"]["prices"]["from"], "command 2");

    // Refusals, each with its reason; none changes the configuration.
    let refusals: Vec<(Cmd, u64, Option<u64>, &str)> = vec![
        (
            Cmd::LogLevel(Level::Info),
            now() + 600,
            Some(0),
            "conflict: written for configuration version 0",
        ),
        (Cmd::Resume, now() - 10, None, "expired at"),
        (
            Cmd::Capacity(Capacity {
                cpu_millicores: 64_000,
                memory: 1 << 30,
                disk: 1 << 30,
                max_leases: 1,
            }),
            now() + 600,
            Some(2),
            "cpu_millicores 64000 is over the board's 1000",
        ),
        (
            Cmd::Upgrade {
                release: "bafy".into(),
                version: "9.0.0".into(),
            },
            now() + 600,
            None,
            "cannot upgrade itself yet",
        ),
        (
            Cmd::Evict {
                lease: [9; 32],
                reason: "none".into(),
            },
            now() + 600,
            None,
            "is not running here",
        ),
    ];
    for (command, expiry, expects, why) in refusals {
        let seq = w.post(command, expiry, expects);
        let (outcome, detail) = w.outcome(seq);
        assert_eq!(outcome, Outcome::Refused, "{detail}");
        assert!(detail.contains(why), "{detail:?} lacks {why:?}");
    }
    let s = w.status();
    assert_eq!(s["config"]["version"], 2, "refusals change nothing");

    // log level, then a kill -9 right after the next post: the restarted
    // agent takes it once, reports it once.
    let seq = w.post(Cmd::LogLevel(Level::Debug), now() + 600, Some(2));
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
    let version = seq;
    let seq = w.post(Cmd::Drain, now() + 600, None);
    w.kill_agent();
    w.start_agent();
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
    let s = w.status_until("drained", |s| s["selling"] == "drained");
    assert_eq!(s["config"]["selling"]["from"], format!("command {seq}"));
    assert_eq!(
        w.log().matches(&format!("command {seq} (drain)")).count(),
        1,
        "taken once: {}",
        w.log()
    );

    // resume through the CLI: selling again, advertised again.
    let (code, out, err) = w.fleet(&["post", "--all", "resume"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(w.outcome(seq + 1).0, Outcome::Applied);
    w.until("advertised again", || w.advert_live());

    // The fleet view: one gateway, every command and its outcome.
    let (code, out, err) = w.fleet(&["ls", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gw = &v["gateways"][0];
    assert_eq!(v["gateways"].as_array().unwrap().len(), 1);
    assert_eq!(gw["posted"], seq + 1);
    assert_eq!(gw["reported"], seq + 1);
    assert_eq!(gw["pending"], 0);
    assert_eq!(gw["agent"], format!("dedge {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(gw["config_version"], version);
    assert_eq!(gw["advert"]["live"], true);
    let outcomes: Vec<&str> = gw["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "applied", "applied", "refused", "refused", "refused", "refused", "refused", "applied",
            "applied", "applied"
        ]
    );
    let (code, out, _) = w.fleet(&["ls"]);
    assert_eq!(code, 0);
    assert!(out.contains("#3    log-level  refused: conflict"), "{out}");
}

/// A command posted by an operator who handed the gateway over before the
/// agent saw it is refused; the new operator's commands apply.
#[test]
fn a_previous_operators_command_is_refused_after_a_transfer() {
    if !sandbox::can_run("a_previous_operators_command_is_refused_after_a_transfer") {
        return;
    }
    let mut w = World::new();
    w.start_agent();
    w.until("the agent advertised", || w.advert_live());
    // The agent stopped (SIGSTOP) while the old operator posts and hands over.
    let pid = w.agent.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on the child this test spawned.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let seq = w.post(Cmd::Pause, now() + 600, None);
    let next = signer(4);
    let _: serde_json::Value = w
        .rpc
        .call(
            "anvil_setBalance",
            serde_json::json!([next.address(), "0x56BC75E2D63100000"]),
        )
        .unwrap();
    w.tx(&w.operator)
        .execute(
            w.d.registry,
            &IRegistry::transferGatewayCall {
                gateway: w.gateway,
                to: next.address(),
            },
        )
        .unwrap();
    w.tx(&next)
        .execute(
            w.d.registry,
            &IRegistry::acceptGatewayCall { gateway: w.gateway },
        )
        .unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (outcome, detail) = w.outcome(seq);
    assert_eq!(outcome, Outcome::Refused);
    assert!(
        detail.contains("no longer this gateway's operator"),
        "{detail}"
    );
    let (seq, _) =
        fleet::post(&w.tx(&next), &w.d, w.gateway, Cmd::Pause, now() + 600, None).unwrap();
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
}

/// A command undone by a reorg (anvil reverted to before it) is undone on
/// the gateway: its configuration goes out of force; the command posted
/// on the new chain in its place is taken.
#[test]
fn a_command_undone_by_a_reorg_is_undone_on_the_gateway() {
    if !sandbox::can_run("a_command_undone_by_a_reorg_is_undone_on_the_gateway") {
        return;
    }
    let mut w = World::new();
    w.start_agent();
    w.until("the agent advertised", || w.advert_live());
    let snapshot: String = w.rpc.call("evm_snapshot", serde_json::json!([])).unwrap();
    let seq = w.post(Cmd::Pause, now() + 600, None);
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
    w.status_until("paused", |s| s["selling"] == "paused");
    // The chain goes back to before the pause, and grows past it.
    let reverted: bool = w
        .rpc
        .call("evm_revert", serde_json::json!([snapshot]))
        .unwrap();
    assert!(reverted);
    let _: serde_json::Value = w.rpc.call("anvil_mine", serde_json::json!([20])).unwrap();
    let s = w.status_until("the pause undone", |s| s["selling"] == "open");
    assert_eq!(s["config"]["version"], 0, "{s}");
    // Posted again on the new chain (a fresh sender: the old one's nonces
    // belong to the chain that was): command 1 again, taken as itself.
    let nonces = Store::temporary().unwrap();
    let tx = TxSender::new(
        &w.rpc,
        &w.operator,
        w.anvil.chain_id,
        nonces.tree("n").unwrap(),
        policy(),
    );
    let (seq, _) = fleet::post(
        &tx,
        &w.d,
        w.gateway,
        Cmd::LogLevel(Level::Warn),
        now() + 600,
        Some(0),
    )
    .unwrap();
    assert_eq!(seq, 1);
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
    let s = w.status_until("the new command 1", |s| s["config"]["version"] == 1);
    assert_eq!(s["config"]["log_level"]["from"], "command 1", "{s}");
    assert_eq!(s["selling"], "open");
    assert!(w.log().contains("undone by a reorg"), "{}", w.log());
}

/// A node that forges the `Command` log (its data rewritten) gets nothing
/// applied: the receipts check refuses it and the cursor stays; the honest
/// answer afterwards is taken.
#[test]
fn a_forged_command_log_is_refused() {
    if !sandbox::can_run("a_forged_command_log_is_refused") {
        return;
    }
    let (mut w, proxy) = World::behind(Some(hostile::Mode::Honest));
    let proxy = proxy.unwrap();
    w.start_agent();
    w.until("the agent advertised", || w.advert_live());
    proxy.set(hostile::Mode::ForgeLogs);
    let seq = w.post(Cmd::Pause, now() + 600, None);
    w.until("the forgery seen", || w.log().contains("forged"));
    assert_eq!(w.reported(), 0, "nothing reported");
    assert_eq!(w.status()["selling"], "open", "nothing applied");
    proxy.set(hostile::Mode::Honest);
    assert_eq!(w.outcome(seq).0, Outcome::Applied);
    w.status_until("paused", |s| s["selling"] == "paused");
}

/// A node that withholds command 1 but serves command 2: the agent waits
/// at the gap, takes neither, reads again from before the missing one, and
/// takes both in order once 1 arrives.
#[test]
fn a_gap_in_the_commands_is_waited_for() {
    if !sandbox::can_run("a_gap_in_the_commands_is_waited_for") {
        return;
    }
    let one = format!("0x{:064x}", 1);
    let (mut w, proxy) = World::behind(Some(hostile::Mode::WithholdTopic2(one)));
    let proxy = proxy.unwrap();
    w.start_agent();
    w.until("the agent advertised", || w.advert_live());
    assert_eq!(w.post(Cmd::LogLevel(Level::Warn), now() + 600, Some(0)), 1);
    // The agent reads past command 1's block (polls every second) before
    // command 2 comes: the gap is found in a later range than the one
    // that left 1 out, and the agent must go back for it.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(w.post(Cmd::LogLevel(Level::Info), now() + 600, Some(1)), 2);
    w.until("the gap seen", || {
        w.log().contains("arrived before command 1")
    });
    assert_eq!(w.reported(), 0);
    assert_eq!(w.status()["config"]["version"], 0, "neither taken");
    proxy.set(hostile::Mode::Honest);
    assert_eq!(w.outcome(1).0, Outcome::Applied);
    assert_eq!(w.outcome(2).0, Outcome::Applied);
    let s = w.status_until("both", |s| s["config"]["version"] == 2);
    assert_eq!(s["selling"], "open");
}
