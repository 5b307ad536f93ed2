//! `dedge lease ...`, the buyer's commands: `create`, `pay`, `ls`, `logs`,
//! `terminate` and `invoice` (with the gateway's account). Steps go to stderr as lines
//! (a progress bar for uploads on a terminal); results to stdout, as JSON
//! with `--json`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use alloy_primitives::B256;

use super::chain_args::{self, Chain};
use super::lease_args::{Args, OFFER_HELP, key, parse, request};
use super::progress::Progress;
use super::{Error, INTERRUPTED, catch_interrupts, err_line, say};
use crate::buyer::create::{ImageSource, Step, create};
use crate::buyer::link::Link;
use crate::buyer::pay::{self, Ended};
use crate::buyer::record::{self, LeaseRecord};
use crate::buyer::wallet::Channel;
use crate::buyer::{self, Buyer, end};
use crate::market::MarketState;
use crate::p2p::Body;
use crate::units::Edg;

pub(crate) const USAGE: &str = "\
Usage: dedge lease create --gateway ADDR --image PATH|CID [offer options] --key FILE [chain options]
       dedge lease pay LEASE --key FILE [chain options]
       dedge lease ls [--data DIR] [--json]
       dedge lease logs LEASE [--follow] [--stderr] --key FILE [chain options]
       dedge lease terminate LEASE --key FILE [--reason TEXT] [chain options]
       dedge lease invoice LEASE --key FILE [chain options] [--json] [--wei]

  create     the whole lease: the image checked and published to IPFS (PATH;
             --ipfs-api URL or DEDGE_IPFS_API) or taken as published (CID
             with --manifest sha256:...), the offer on chain, accepted by
             the gateway, the fee, a channel (an idle one to the gateway
             reused, or one opened with --deposit, default the lease's
             most), the first interval paid, the image deployed; then pays
             in the foreground as `lease pay` does (--detach: return once
             the container runs)
  pay        keeps a lease paid one payment interval ahead of what the
             gateway says is owed, until Ctrl-C, `lease terminate`, or the
             lease ends; resumable, nothing is lost when it is killed
  ls         the buyer's leases (from --data)
  logs       the container's stdout (--stderr: stderr), --follow to go on
  terminate  stops the lease's payer, reports what was paid on chain, has
             the gateway stop the container and settle
  invoice    the settlement (both reports, fee, dispute) with the gateway's
             account: paid, seconds run, EdgeX use per device

The market steps one at a time (propose, accept, fee, report, show) are
`dedge market`'s.

";
const OPTIONS: &str = "\
Buyer state:
  --data DIR          lease records and channel databases (env DEDGE_HOME;
                      default ~/.dedge)
Keys:
  --key FILE          the buyer's key file (passphrase: --passphrase-file
                      or DEDGE_PASSPHRASE)
Output:
  --json, --wei, -h/--help
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let usage = format!("{USAGE}{OFFER_HELP}{OPTIONS}");
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{usage}{}", chain_args::HELP),
        Some(other) => return Err(other.unexpected().into()),
    };
    let Some(a) = parse(parser, &usage)? else {
        return Ok(());
    };
    if a.paid.is_some() {
        return Err(Error::Usage(
            "--paid is `dedge market report`'s: `lease terminate` reports what the payer signed"
                .into(),
        ));
    }
    command(&sub, a)
}

fn fail(e: buyer::Error) -> Error {
    match e {
        buyer::Error::Request(m) => Error::Usage(m),
        other => Error::Runtime(other.to_string()),
    }
}

/// `--data`, `DEDGE_HOME`, or `~/.dedge`.
fn data_dir(a: &Args) -> Result<PathBuf, Error> {
    if let Some(d) = &a.data {
        return Ok(d.clone());
    }
    if let Some(d) = std::env::var_os("DEDGE_HOME") {
        return Ok(d.into());
    }
    std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".dedge"))
        .ok_or_else(|| Error::Usage("no --data DIR, DEDGE_HOME or HOME".into()))
}

fn open(a: &mut Args) -> Result<Buyer, Error> {
    let signer = key(a)?;
    let data = data_dir(a)?;
    let chain: Chain = std::mem::take(&mut a.chain).connect()?;
    let policy = chain.policy();
    Buyer::open(signer, chain.rpc, chain.d, policy, &data).map_err(fail)
}

fn lease_of(a: &Args, sub: &str) -> Result<B256, Error> {
    a.lease.ok_or_else(|| {
        Error::Usage(format!(
            "lease {sub} needs LEASE (the 0x-prefixed lease id)"
        ))
    })
}

fn step(line: &str) {
    err_line(format_args!("  {line}"));
}

fn command(sub: &str, mut a: Args) -> Result<(), Error> {
    match sub {
        "ls" => ls(&a),
        "create" => {
            let b = open(&mut a)?;
            create_cmd(&b, &a)
        }
        "pay" => {
            let lease = lease_of(&a, sub)?;
            let b = open(&mut a)?;
            let r = record::load(&b.data, lease).map_err(fail)?;
            let id = r.channel.ok_or_else(|| {
                Error::Runtime(format!("lease {lease} has no channel yet ({})", r.state))
            })?;
            let channel = Channel::reopen(&b, id).map_err(fail)?;
            pay_cmd(&b, &r, &channel, a.json)
        }
        "logs" => {
            let lease = lease_of(&a, sub)?;
            let b = open(&mut a)?;
            logs(&b, lease, if a.stderr { 2 } else { 1 }, a.follow)
        }
        "terminate" => {
            let lease = lease_of(&a, sub)?;
            let b = open(&mut a)?;
            let reason = a
                .reason
                .clone()
                .unwrap_or_else(|| "the buyer ended it".into());
            let state = end::terminate(&b, lease, &reason, &mut step).map_err(fail)?;
            if a.json {
                return say!(
                    "{}\n",
                    serde_json::json!({"lease": lease, "market_state": state.name()})
                );
            }
            say!(
                "lease {lease} {}\n",
                if state == MarketState::Settled {
                    "settled"
                } else {
                    "terminated (the Market settles once both sides report, or after its timeout)"
                }
            )
        }
        "invoice" => {
            let lease = lease_of(&a, sub)?;
            let b = open(&mut a)?;
            invoice(&b, lease, a.json, a.wei)
        }
        other => Err(Error::Usage(format!("unknown lease command `{other}`"))),
    }
}

fn create_cmd(b: &Buyer, a: &Args) -> Result<(), Error> {
    let gateway = a
        .gateway
        .ok_or_else(|| Error::Usage("create needs --gateway ADDR".into()))?;
    let image = a
        .image
        .clone()
        .ok_or_else(|| Error::Usage("create needs --image PATH|CID".into()))?;
    let source = if std::path::Path::new(&image).exists() {
        let api = a
            .ipfs_api
            .clone()
            .or_else(|| std::env::var("DEDGE_IPFS_API").ok())
            .ok_or_else(|| {
                Error::Usage(format!(
                    "--image {image} is a path: publishing it needs --ipfs-api URL (or DEDGE_IPFS_API)"
                ))
            })?;
        ImageSource::Local {
            path: image.into(),
            api,
        }
    } else if image.contains('/') {
        return Err(Error::Usage(format!(
            "--image {image}: no such file or directory (an OCI layout, layout tar or docker-save tar)"
        )));
    } else {
        let manifest = a.manifest.clone().ok_or_else(|| {
            Error::Usage(format!(
                "--image {image} is not a file: as a CID it needs --manifest sha256:..."
            ))
        })?;
        ImageSource::Published {
            cid: image,
            manifest,
        }
    };
    let req = request(a, gateway)?;
    let mut bar: Option<Progress> = None;
    let created = create(
        b,
        &req,
        &source,
        a.deposit.map(|d| d.wei()),
        &mut |s| match s {
            Step::Done(line) => {
                bar = None;
                step(line);
            }
            Step::Upload(done, total) => bar
                .get_or_insert_with(|| Progress::new("uploading", Some(total)))
                .update(done),
        },
    )
    .map_err(fail)?;
    drop(bar);
    let r = &created.record;
    if a.json {
        say!(
            "{}\n",
            serde_json::json!({"lease": r.lease, "gateway": r.gateway, "channel": r.channel,
                "image": r.image, "manifest": r.manifest, "state": r.state})
        )?;
    } else {
        say!("lease {} running on gateway {}\n", r.lease, r.gateway)?;
    }
    if a.detach {
        return Ok(());
    }
    pay_cmd(b, r, &created.channel, a.json)
}

/// The foreground payer, until Ctrl-C, a terminate, or the lease's end.
fn pay_cmd(b: &Buyer, r: &LeaseRecord, channel: &Channel, json: bool) -> Result<(), Error> {
    catch_interrupts();
    step(&format!(
        "paying lease {} every {} s (Ctrl-C stops paying; `dedge lease pay` resumes)",
        r.lease, r.payment_interval
    ));
    let ended = pay::run(b, r, channel, &INTERRUPTED, &mut step).map_err(fail)?;
    match &ended {
        Ended::Stopped => step("stopped paying"),
        Ended::Lease(state) => {
            step(&format!("the gateway ended the lease ({state})"));
            end::after_gateway_ended(b, r, channel, &mut step).map_err(fail)?;
        }
    }
    let paid = channel.paid_for(r.lease).map_err(fail)?;
    if json {
        return say!(
            "{}\n",
            serde_json::json!({"lease": r.lease, "paid": paid.to_string(),
                "ended": matches!(ended, Ended::Lease(_))})
        );
    }
    say!(
        "lease {}: paid {} so far\n",
        r.lease,
        Edg(paid.saturating_to::<u128>())
    )
}

fn ls(a: &Args) -> Result<(), Error> {
    let data = data_dir(a)?;
    let all = record::all(&data).map_err(fail)?;
    if a.json {
        return say!(
            "{}\n",
            serde_json::to_string(&all).map_err(|e| Error::Runtime(e.to_string()))?
        );
    }
    if all.is_empty() {
        return say!("no leases in {}\n", data.display());
    }
    let mut text = format!(
        "{:<66}  {:<42}  {:<14}  {:>10}  IMAGE\n",
        "LEASE", "GATEWAY", "STATE", "EDG/S"
    );
    for r in &all {
        text.push_str(&format!(
            "{:<66}  {:<42}  {:<14}  {:>10}  {}\n",
            r.lease.to_string(),
            r.gateway.to_string(),
            r.state,
            Edg(r.price()).to_string(),
            r.image
        ));
    }
    say!("{text}")
}

fn logs(b: &Buyer, lease: B256, stream: u8, follow: bool) -> Result<(), Error> {
    let r = record::load(&b.data, lease).map_err(fail)?;
    let mut link = Link::connect(b, r.gateway, &r.endpoint).map_err(fail)?;
    if follow {
        catch_interrupts();
    }
    let mut offset = 0u64;
    loop {
        let answer = link
            .ask(Body::Logs {
                lease: lease.0,
                stream,
                offset,
                data: Vec::new(),
            })
            .map_err(fail)?;
        let Body::Logs { data, .. } = answer else {
            return Err(fail(link.unexpected(&answer, "Logs")));
        };
        if !data.is_empty() {
            offset += data.len() as u64;
            let mut out = std::io::stdout().lock();
            out.write_all(&data)
                .and_then(|()| out.flush())
                .map_err(|e| Error::Runtime(format!("stdout: {e}")))?;
            continue;
        }
        if !follow || INTERRUPTED.load(Ordering::SeqCst) {
            return Ok(());
        }
        let (state, _) = link.status(lease.0).map_err(fail)?;
        if !matches!(state.as_str(), "running" | "frozen" | "deploying") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn invoice(b: &Buyer, lease: B256, json: bool, wei: bool) -> Result<(), Error> {
    let inv = end::invoice(b, lease).map_err(fail)?;
    let amount = |w: u128| {
        if wei {
            w.to_string()
        } else {
            Edg(w).to_string()
        }
    };
    let settled = inv.settled.as_ref().map(|s| {
        (
            s.buyerReported.to::<u128>(),
            s.sellerReported.to::<u128>(),
            s.fee.to::<u128>(),
            s.flags,
            s.end.to::<u64>().saturating_sub(s.start.to::<u64>()),
        )
    });
    if json {
        let account = match &inv.account {
            Ok(acc) => serde_json::json!({
                "paid": amount(acc.paid), "owed": amount(acc.owed), "ran_s": acc.ran,
                "edgex": acc.edgex.iter().map(|u| serde_json::json!({
                    "device": u.device, "reads": u.reads, "writes": u.writes,
                    "bytes_in": u.bytes_in, "bytes_out": u.bytes_out, "refused": u.refused,
                })).collect::<Vec<_>>(),
            }),
            Err(e) => serde_json::json!({ "error": e }),
        };
        let v = serde_json::json!({
            "lease": lease, "gateway": inv.record.gateway, "state": inv.record.state,
            "price_per_second": amount(inv.record.price()),
            "settlement": settled.map(|(b, s, fee, flags, secs)| serde_json::json!({
                "buyer_reported": amount(b), "seller_reported": amount(s), "fee": amount(fee),
                "flags": flags, "disputed": flags & 8 != 0, "seconds": secs,
            })),
            "gateway_account": account,
        });
        return say!("{v}\n");
    }
    let mut t = format!(
        "lease            {lease}\ngateway          {}\nimage            {}\nprice            {} per second\n",
        inv.record.gateway,
        inv.record.image,
        amount(inv.record.price())
    );
    match settled {
        Some((bp, sp, fee, flags, secs)) => t.push_str(&format!(
            "settled after    {secs} s\nbuyer reported   {}\nseller reported  {}\nplatform fee     {}\n{}",
            amount(bp),
            amount(sp),
            amount(fee),
            if flags & 8 != 0 {
                "DISPUTED: the two reports differ\n"
            } else {
                ""
            }
        )),
        None => t.push_str("settlement       not yet (the Market settles once both sides report)\n"),
    }
    match &inv.account {
        Ok(acc) => {
            t.push_str(&format!(
                "gateway account  paid {} for {} s run\n",
                amount(acc.paid),
                acc.ran
            ));
            for u in acc.edgex.iter().filter(|u| u.device != "*") {
                t.push_str(&format!(
                    "EdgeX {:<22} {} reads, {} writes, {} B in, {} B out, {} refused\n",
                    u.device, u.reads, u.writes, u.bytes_in, u.bytes_out, u.refused
                ));
            }
            if let Some(u) = acc.edgex.iter().find(|u| u.device == "*") {
                t.push_str(&format!(
                    "EdgeX (unsold names)         {} refused\n",
                    u.refused
                ));
            }
        }
        Err(e) => t.push_str(&format!("gateway account  unavailable: {e}\n")),
    }
    say!("{t}")
}
