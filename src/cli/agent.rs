//! `dedge agent`: the seller agent, and what it is doing.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::chain_args::{ChainArgs, runtime};
use super::{Error, INTERRUPTED, catch_interrupts, say};
use crate::agent::daemon::Agent;
use crate::board::BoardFile;
use crate::units::Edg;

pub(crate) const USAGE: &str = "\
Usage: dedge agent --board BOARD
       dedge agent status --board BOARD [--json]
       dedge agent hold-cgroups

  (no command)  run the seller agent: serve buyers on the board's `listen`
                address (p2p), accept offers that fit, take payments, run
                leases' images, enforce payment, settle on chain. Stops
                cleanly on SIGINT/SIGTERM; a restart resumes every lease.
  status        the running agent's leases, resources held and earnings
                (from <data_dir>/agent-status.json, written every second)
  hold-cgroups  the process of dedge-leases.service (systemd, cgroup v2):
                moves into a leaf of its delegated cgroup, enables the
                sandbox's controllers below it, and holds it for the
                agent's leases (the board's cgroup_parent) until stopped

Options:
  --json      status as JSON
  -h, --help  print this help
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let mut chain = ChainArgs::default();
    let (mut sub, mut json) = (None::<String>, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long(name) if ChainArgs::NAMES.contains(&name) => {
                let name = name.to_string();
                chain.set(&name, parser.value()?)?;
            }
            Long("json") => json = true,
            Value(v) if sub.is_none() => sub = Some(v.string()?),
            Short('h') | Long("help") => return say!("{USAGE}"),
            other => return Err(other.unexpected().into()),
        }
    }
    if sub.as_deref() == Some("hold-cgroups") {
        catch_interrupts();
        crate::agent::holder::hold(&INTERRUPTED).map_err(|e| Error::Runtime(chain_of(&e)))?;
        return Ok(());
    }
    if chain.board.is_none() {
        return Err(Error::Usage("dedge agent needs --board BOARD".into()));
    }
    match sub.as_deref() {
        None => serve(chain),
        Some("status") => status(chain.board.as_deref(), json),
        Some(other) => Err(Error::Usage(format!("unknown agent command `{other}`"))),
    }
}

fn serve(chain: ChainArgs) -> Result<(), Error> {
    // No transparent huge pages for the agent: where the kernel's policy is
    // `always` (Debian's arm64 kernels), khugepaged collapses its sparse
    // heap (sled's 20 MiB of untouched metrics counters among it) into
    // 2 MiB pages every scan, and an idle agent went from 3.8 to 29.8 MiB.
    // Forks (the shims) keep this; each container's init gives it back.
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        log::warn!("cannot opt out of transparent huge pages: {e}");
    }
    let mut chain = chain.connect()?;
    let signer = chain.gateway_signer()?;
    let policy = chain.policy();
    let board = chain
        .board
        .take()
        .ok_or_else(|| Error::Usage("dedge agent needs --board BOARD".into()))?
        .board;
    let listen = board.agent.listen;
    let listener = TcpListener::bind(listen)
        .map_err(|e| Error::Runtime(format!("listen on {listen}: {e}")))?;
    let agent = Arc::new(Agent::open(&board, signer, chain.rpc, chain.d, policy).map_err(runtime)?);
    let _endpoint = agent.serve(listener);
    catch_interrupts();
    log::info!("agent for gateway {} serving on {listen}", agent.address());
    agent.run(&INTERRUPTED, Duration::from_secs(1));
    if agent.store_failed() {
        return Err(Error::Runtime(
            "the state database failed to sync to disk: stopped so that a restart recovers it"
                .into(),
        ));
    }
    log::info!("agent stopped");
    Ok(())
}

fn status(board: Option<&std::path::Path>, json: bool) -> Result<(), Error> {
    let path: PathBuf = board
        .ok_or_else(|| Error::Usage("status needs --board BOARD".into()))?
        .into();
    let board = BoardFile::load(&path).map_err(|e| Error::Config(e.to_string()))?;
    let file = board.board.agent.data_dir.join("agent-status.json");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        Error::Runtime(format!(
            "{}: {e} (is `dedge agent --board {}` running?)",
            file.display(),
            path.display()
        ))
    })?;
    if json {
        return say!("{text}\n");
    }
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Runtime(format!("{}: {e}", file.display())))?;
    let edg = |s: &serde_json::Value| {
        s.as_str()
            .and_then(|s| s.parse::<u128>().ok())
            .map_or("?".into(), |w| Edg(w).to_string())
    };
    say!(
        "gateway {}  earned {}\n",
        v["gateway"].as_str().unwrap_or("?"),
        edg(&v["earned"])
    )?;
    for (k, r) in v["resources"].as_object().into_iter().flatten() {
        say!("  {k}: {} of {}\n", r["held"], r["of"])?;
    }
    for l in v["leases"].as_array().into_iter().flatten() {
        say!(
            "{}  {:<15}  paid {}  owed {}\n",
            l["lease"].as_str().unwrap_or("?"),
            l["state"].as_str().unwrap_or("?"),
            edg(&l["paid"]),
            edg(&l["owed"])
        )?;
        for (device, u) in l["edgex"].as_object().into_iter().flatten() {
            say!(
                "    {device}: {} reads, {} writes, {} refused\n",
                u["reads"],
                u["writes"],
                u["refused"]
            )?;
        }
    }
    Ok(())
}

/// An error and its causes on one line, outermost first.
fn chain_of(e: &dyn std::error::Error) -> String {
    crate::logger::chain(e)
}
