//! `dedge fleet post|ls`: the operator's commands to its gateways, and the
//! fleet as the chain shows it.

use std::path::PathBuf;

use alloy_primitives::Address;

use super::chain_args::{ChainArgs, runtime};
use super::{Error, say};
use crate::chain::tx::TxSender;
use crate::control::command::{Backends, Capacity, Command, DeviceSale, Level, Prices};
use crate::fleet::{self, GatewayView};
use crate::units::{ByteSize, Edg, HumanDuration};

pub(crate) const USAGE: &str = "\
Usage: dedge fleet post (--gateway ADDR... | --all) [--expires DURATION] [--expects VERSION]
                        --operator-key FILE [--operator-passphrase-file FILE] COMMAND [ARGS]
       dedge fleet ls (--operator ADDR | --operator-key FILE) [--json]

  post   posts COMMAND to each gateway named (or every gateway bound to the
         operator) through AgentControl; each gateway applies it after its
         confirmations and reports the outcome on chain. Default --expires
         1h: a command not taken by then is refused. A configuration
         command expects the configuration version the gateway last
         reported (refused if it has unreported commands) or --expects
  ls     every gateway bound to the operator: commands posted and reported,
         agent version, configuration version, advert, leases, earnings,
         and each command's outcome

Commands:
  pause | resume | drain            stop selling (leases go on) | sell again |
                                    stop selling, leases end at their term
  prices --cpu-core-second EDG --memory-gib-second EDG [--device-second EDG]
  capacity --cpu-millicores N --memory SIZE --disk SIZE --max-leases N
  devices [--add DEVICE:COMMAND:r|w|rw]... [--remove DEVICE]...
  backends none|public|any
  tenants [--allow ADDR]... [--deny ADDR]...   (replace both lists)
  evict LEASE --reason TEXT         end a lease for the time served
  log-level error|warn|info|debug|trace
  upgrade --release CID --version VERSION

The operator's passphrase: --operator-passphrase-file, or DEDGE_OPERATOR_PASSPHRASE.
The chain: --board BOARD, or --rpc URL --deployment FILE (DEDGE_RPC, DEDGE_DEPLOYMENT).

Options:
  --json      as JSON
  -h, --help  print this help
";

#[derive(Default)]
struct Args {
    chain: ChainArgs,
    gateways: Vec<Address>,
    all: bool,
    expires: Option<HumanDuration>,
    expects: Option<u64>,
    key: Option<PathBuf>,
    pass: Option<PathBuf>,
    operator: Option<Address>,
    json: bool,
    words: Vec<String>,
    cpu_core_second: Option<Edg>,
    memory_gib_second: Option<Edg>,
    device_second: Option<Edg>,
    cpu_millicores: Option<u32>,
    memory: Option<ByteSize>,
    disk: Option<ByteSize>,
    max_leases: Option<u32>,
    add: Vec<String>,
    remove: Vec<String>,
    allow: Vec<Address>,
    deny: Vec<Address>,
    reason: Option<String>,
    release: Option<String>,
    version: Option<String>,
}

fn parse<T: std::str::FromStr>(name: &str, text: String) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| Error::Usage(format!("--{name} `{text}`: {e}")))
}

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let mut a = Args::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long(name) if ChainArgs::NAMES.contains(&name) => {
                let name = name.to_string();
                a.chain.set(&name, parser.value()?)?;
            }
            Long("gateway") => a
                .gateways
                .push(parse("gateway", parser.value()?.string()?)?),
            Long("all") => a.all = true,
            Long("expires") => a.expires = Some(parse("expires", parser.value()?.string()?)?),
            Long("expects") => a.expects = Some(parse("expects", parser.value()?.string()?)?),
            Long("operator-key") => a.key = Some(parser.value()?.into()),
            Long("operator-passphrase-file") => a.pass = Some(parser.value()?.into()),
            Long("operator") => a.operator = Some(parse("operator", parser.value()?.string()?)?),
            Long("json") => a.json = true,
            Long("cpu-core-second") => {
                a.cpu_core_second = Some(parse("cpu-core-second", parser.value()?.string()?)?)
            }
            Long("memory-gib-second") => {
                a.memory_gib_second = Some(parse("memory-gib-second", parser.value()?.string()?)?)
            }
            Long("device-second") => {
                a.device_second = Some(parse("device-second", parser.value()?.string()?)?)
            }
            Long("cpu-millicores") => {
                a.cpu_millicores = Some(parse("cpu-millicores", parser.value()?.string()?)?)
            }
            Long("memory") => a.memory = Some(parse("memory", parser.value()?.string()?)?),
            Long("disk") => a.disk = Some(parse("disk", parser.value()?.string()?)?),
            Long("max-leases") => {
                a.max_leases = Some(parse("max-leases", parser.value()?.string()?)?)
            }
            Long("add") => a.add.push(parser.value()?.string()?),
            Long("remove") => a.remove.push(parser.value()?.string()?),
            Long("allow") => a.allow.push(parse("allow", parser.value()?.string()?)?),
            Long("deny") => a.deny.push(parse("deny", parser.value()?.string()?)?),
            Long("reason") => a.reason = Some(parser.value()?.string()?),
            Long("release") => a.release = Some(parser.value()?.string()?),
            Long("version") => a.version = Some(parser.value()?.string()?),
            Value(v) => a.words.push(v.string()?),
            Short('h') | Long("help") => return say!("{USAGE}"),
            other => return Err(other.unexpected().into()),
        }
    }
    let Some(sub) = a.words.first().cloned() else {
        return say!("{USAGE}");
    };
    match sub.as_str() {
        "post" => post(a),
        "ls" => ls(a),
        other => Err(Error::Usage(format!("unknown fleet command `{other}`"))),
    }
}

fn missing(what: &str, command: &str) -> Error {
    Error::Usage(format!("fleet post {command} needs --{what}"))
}

/// The command the words and options name.
fn command(a: &Args) -> Result<Command, Error> {
    let word = a.words.get(1).ok_or_else(|| {
        Error::Usage("fleet post needs a COMMAND (see dedge fleet --help)".into())
    })?;
    let arg = a.words.get(2);
    let extra = if matches!(word.as_str(), "backends" | "evict" | "log-level") {
        3
    } else {
        2
    };
    if a.words.len() > extra {
        return Err(Error::Usage(format!("unexpected `{}`", a.words[extra])));
    }
    let need_arg = |what: &str| {
        arg.cloned()
            .ok_or_else(|| Error::Usage(format!("fleet post {word} needs {what}")))
    };
    Ok(match word.as_str() {
        "pause" => Command::Pause,
        "resume" => Command::Resume,
        "drain" => Command::Drain,
        "prices" => Command::Prices(Prices {
            cpu_core_second: a
                .cpu_core_second
                .ok_or_else(|| missing("cpu-core-second", word))?
                .wei(),
            memory_gib_second: a
                .memory_gib_second
                .ok_or_else(|| missing("memory-gib-second", word))?
                .wei(),
            device_second: a.device_second.map(Edg::wei),
        }),
        "capacity" => Command::Capacity(Capacity {
            cpu_millicores: a
                .cpu_millicores
                .ok_or_else(|| missing("cpu-millicores", word))?,
            memory: a.memory.ok_or_else(|| missing("memory", word))?.bytes(),
            disk: a.disk.ok_or_else(|| missing("disk", word))?.bytes(),
            max_leases: a.max_leases.ok_or_else(|| missing("max-leases", word))?,
        }),
        "devices" => Command::Devices {
            add: devices(&a.add)?,
            remove: a.remove.clone(),
        },
        "backends" => Command::Backends(match need_arg("none, public or any")?.as_str() {
            "none" => Backends::None,
            "public" => Backends::Public,
            "any" => Backends::Any,
            other => {
                return Err(Error::Usage(format!(
                    "backends `{other}`: expected none, public or any"
                )));
            }
        }),
        "tenants" => Command::Tenants {
            allow: a.allow.clone(),
            deny: a.deny.clone(),
        },
        "evict" => Command::Evict {
            lease: fleet::lease_id(&need_arg("a LEASE id")?)
                .map_err(|e| Error::Usage(e.to_string()))?,
            reason: a.reason.clone().ok_or_else(|| missing("reason", word))?,
        },
        "log-level" => Command::LogLevel(match need_arg("a level")?.as_str() {
            "error" => Level::Error,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            other => {
                return Err(Error::Usage(format!(
                    "log-level `{other}`: expected error, warn, info, debug or trace"
                )));
            }
        }),
        "upgrade" => Command::Upgrade {
            release: a.release.clone().ok_or_else(|| missing("release", word))?,
            version: a.version.clone().ok_or_else(|| missing("version", word))?,
        },
        other => return Err(Error::Usage(format!("unknown command `{other}` to post"))),
    })
}

/// `DEVICE:COMMAND:r|w|rw` offers, merged per device in the order given.
fn devices(specs: &[String]) -> Result<Vec<DeviceSale>, Error> {
    let mut out: Vec<DeviceSale> = Vec::new();
    for spec in specs {
        let parts: Vec<&str> = spec.split(':').collect();
        let [device, command, mode] = parts.as_slice() else {
            return Err(Error::Usage(format!(
                "--add `{spec}`: expected DEVICE:COMMAND:r, :w or :rw"
            )));
        };
        let (read, write) = match *mode {
            "r" => (true, false),
            "w" => (false, true),
            "rw" => (true, true),
            _ => {
                return Err(Error::Usage(format!(
                    "--add `{spec}`: the mode is r, w or rw"
                )));
            }
        };
        let i = match out.iter().position(|d| d.name == *device) {
            Some(i) => i,
            None => {
                out.push(DeviceSale {
                    name: device.to_string(),
                    read: vec![],
                    write: vec![],
                });
                out.len() - 1
            }
        };
        if read {
            out[i].read.push(command.to_string());
        }
        if write {
            out[i].write.push(command.to_string());
        }
    }
    Ok(out)
}

fn operator_key(a: &Args) -> Result<crate::chain::Signer, Error> {
    let key = a
        .key
        .as_ref()
        .ok_or_else(|| Error::Usage("fleet post needs --operator-key FILE".into()))?;
    super::chain_args::operator_signer(key, a.pass.as_deref())
}

fn post(a: Args) -> Result<(), Error> {
    let command = command(&a)?;
    command
        .check_bounds()
        .map_err(|e| Error::Usage(format!("{}: {e}", command.name())))?;
    if a.all != a.gateways.is_empty() {
        return Err(Error::Usage(
            "fleet post needs --gateway ADDR (one or more) or --all, not both".into(),
        ));
    }
    let operator = operator_key(&a)?;
    let expires = a
        .expires
        .unwrap_or(HumanDuration(std::time::Duration::from_secs(3600)));
    let chain = a.chain.connect()?;
    let store = chain.cli_store()?;
    let nonces = store.tree("nonces").map_err(runtime)?;
    let tx = TxSender::new(
        &chain.rpc,
        &operator,
        chain.d.chain_id,
        nonces,
        chain.policy(),
    );
    let targets = if a.all {
        fleet::gateways_of(&chain.rpc, &chain.d, operator.address()).map_err(runtime)?
    } else {
        a.gateways.clone()
    };
    if targets.is_empty() {
        return Err(Error::Runtime(format!(
            "no gateway is bound to operator {}",
            operator.address()
        )));
    }
    let expiry = crate::agent::lease::UnixTime::now()
        .0
        .saturating_add(expires.get().as_secs());
    let mut failed = 0;
    for g in targets {
        match fleet::post(&tx, &chain.d, g, command.clone(), expiry, a.expects) {
            Ok((seq, _)) => say!("{g}: {} posted as command {seq}\n", command.name())?,
            Err(e) => {
                failed += 1;
                super::err_line(format_args!("{g}: {e}"));
            }
        }
    }
    if failed > 0 {
        return Err(Error::Runtime(format!("{failed} gateway(s) not reached")));
    }
    Ok(())
}

fn ls(a: Args) -> Result<(), Error> {
    let operator = match a.operator {
        Some(o) => o,
        None => operator_key(&a)?.address(),
    };
    let chain = a.chain.connect()?;
    let views: Vec<GatewayView> = fleet::gateways_of(&chain.rpc, &chain.d, operator)
        .and_then(|gs| {
            gs.into_iter()
                .map(|g| fleet::gateway_view(&chain.rpc, &chain.d, g))
                .collect()
        })
        .map_err(runtime)?;
    if a.json {
        let v: Vec<serde_json::Value> = views.iter().map(view_json).collect();
        return say!(
            "{}\n",
            serde_json::json!({"operator": operator, "gateways": v})
        );
    }
    if views.is_empty() {
        return say!("no gateway is bound to operator {operator}\n");
    }
    for v in &views {
        let (agent, version) = v
            .last_report
            .as_ref()
            .map_or(("no report yet".to_string(), 0), |r| {
                (r.agent.clone(), r.config_version)
            });
        say!(
            "{}  {}  commands {} posted, {} reported  config v{}  advert {}  earned {}\n",
            v.gateway,
            agent,
            v.posted,
            v.reported,
            version,
            if v.advert_live {
                v.endpoint.clone().unwrap_or_else(|| "live".into())
            } else {
                "none".into()
            },
            Edg(v.earned)
        )?;
        let leases: Vec<String> = v.leases.iter().map(|(s, n)| format!("{n} {s}")).collect();
        if !leases.is_empty() {
            say!("  leases: {}\n", leases.join(", "))?;
        }
        for c in &v.commands {
            say!(
                "  #{:<4} {:<10} {}{}\n",
                c.seq,
                c.command,
                c.outcome.map_or("pending", |o| o.name()),
                if c.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", c.detail)
                }
            )?;
        }
    }
    Ok(())
}

fn view_json(v: &GatewayView) -> serde_json::Value {
    serde_json::json!({
        "gateway": v.gateway,
        "posted": v.posted,
        "reported": v.reported,
        "pending": v.posted - v.reported.min(v.posted),
        "agent": v.last_report.as_ref().map(|r| r.agent.clone()),
        "config_version": v.last_report.as_ref().map(|r| r.config_version),
        "advert": {"live": v.advert_live, "expiry": v.advert_expiry, "endpoint": v.endpoint},
        "leases": v.leases,
        "earned": fleet::wei(v.earned),
        "commands": v.commands.iter().map(|c| serde_json::json!({
            "seq": c.seq,
            "command": c.command,
            "operator": c.operator,
            "outcome": c.outcome.map(|o| o.name()),
            "detail": c.detail,
        })).collect::<Vec<_>>(),
    })
}
