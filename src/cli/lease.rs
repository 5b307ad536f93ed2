//! `dedge lease ...`: the buyer's commands (create, pay, ls, logs,
//! terminate, invoice; in `cli::buyer`) and the market steps of a lease,
//! one command each (propose, accept, fee, terminate --paid, show).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256};

use super::chain_args::{self, Chain, ChainArgs, runtime};
use super::{Error, say};
use crate::buyer::offer;
use crate::chain::tx::TxSender;
use crate::chain::{Signer, keystore};
use crate::market::{self, Capabilities};
use crate::units::{ByteSize, Edg, HumanDuration};

pub const USAGE: &str = "\
Usage: dedge lease create --gateway ADDR --image PATH|CID [offer options] --key FILE [chain options]
       dedge lease pay LEASE --key FILE [chain options]
       dedge lease ls [--data DIR] [--json]
       dedge lease logs LEASE [--follow] [--stderr] --key FILE [chain options]
       dedge lease terminate LEASE --key FILE [--reason TEXT] [chain options]
       dedge lease invoice LEASE [--key FILE] [chain options] [--json] [--wei]
       dedge lease propose --gateway ADDR --image CID [offer options] --key FILE [chain options]
       dedge lease accept LEASE --board BOARD
       dedge lease fee LEASE --key FILE [chain options]
       dedge lease terminate LEASE --paid EDG (--key FILE | --board BOARD) [chain options]
       dedge lease show LEASE [chain options] [--json]
       dedge lease invoice LEASE [chain options] [--json] [--wei]

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
  terminate  with a lease from `create`: stops its payer, reports what was
             paid on chain, has the gateway stop the container and settle;
             with --paid: only the on-chain report, by --key or the
             gateway (--board)
  invoice    the Invoice emitted at settlement: both reports, fee, flags
             (8 = the two reports differ); with --key and a lease from
             `create`, also the gateway's account and its EdgeX use
  propose    the buyer writes its offer's EIP-712 hash on chain; prints the
             lease id and the offer (to send to the gateway)
  accept     the gateway writes the same hash: buyer and seller in contract
  fee        the buyer escrows the platform fee (dedge_fee); the lease is
             valid once accepted and funded
  show       the lease's state on chain

Offer options (create, propose):
  --cpus N            CPU cores, fractions allowed (default 0.5)
  --memory SIZE       e.g. 64MiB or 64M (M = MiB here; default 64MiB)
  --disk SIZE         default 256MiB
  --duration D        longest the lease may run (default 1h)
  --interval D        payment interval (default: the gateway's)
  --device NAME:CMD[:MODE] an EdgeX grant, MODE r, w or rw (repeatable; r
                           when omitted)
  --price EDG         EDG per second (default: the gateway's prices for
                      what is asked)
  --expiry D          how long the offer stays open (default 10m)
  --manifest DIGEST   the image's OCI manifest digest (with --image CID)
  --backend HOST:PORT an endpoint the container reaches at 127.0.0.1:PORT,
                      relayed by the agent (repeatable, up to 4; the
                      gateway's board decides which addresses it allows);
                      listed in the container's DEDGE_BACKENDS
  --ipfs-api URL      a Kubo-compatible RPC to publish --image PATH to
  --deposit EDG       a new channel's deposit
  --detach            create returns once the container runs
Buyer state:
  --data DIR          lease records and channel databases (env DEDGE_HOME;
                      default ~/.dedge)
Keys:
  --key FILE          the buyer's key file (passphrase: --passphrase-file
                      or DEDGE_PASSPHRASE); seller commands use --board's key
Output:
  --json, --wei, -h/--help
";

#[derive(Default)]
pub(super) struct Args {
    pub(super) chain: ChainArgs,
    pub(super) lease: Option<B256>,
    pub(super) key: Option<PathBuf>,
    pub(super) passphrase_file: Option<PathBuf>,
    pub(super) gateway: Option<Address>,
    pub(super) image: Option<String>,
    pub(super) cpus: Option<f64>,
    pub(super) memory: Option<ByteSize>,
    pub(super) disk: Option<ByteSize>,
    pub(super) duration: Option<HumanDuration>,
    pub(super) interval: Option<HumanDuration>,
    pub(super) devices: Vec<String>,
    pub(super) price: Option<Edg>,
    pub(super) expiry: Option<HumanDuration>,
    pub(super) paid: Option<Edg>,
    pub(super) json: bool,
    pub(super) wei: bool,
    pub(super) manifest: Option<String>,
    pub(super) ipfs_api: Option<String>,
    pub(super) deposit: Option<Edg>,
    pub(super) data: Option<PathBuf>,
    pub(super) detach: bool,
    pub(super) follow: bool,
    pub(super) stderr: bool,
    pub(super) reason: Option<String>,
    pub(super) backends: Vec<String>,
}

/// Sizes on the command line: the board's strict units, or docker's `64M`
/// (binary: K, M, G mean KiB, MiB, GiB here).
fn cli_size(s: &str) -> Result<ByteSize, Error> {
    let t = s.trim();
    let lenient = match t.chars().last() {
        Some(u @ ('K' | 'M' | 'G' | 'k' | 'm' | 'g'))
            if t[..t.len() - 1].bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(format!(
                "{} {}iB",
                &t[..t.len() - 1],
                u.to_ascii_uppercase()
            ))
        }
        _ => None,
    };
    lenient
        .as_deref()
        .unwrap_or(t)
        .parse()
        .map_err(|e| Error::Usage(format!("{e}")))
}

fn parse_value<T: std::str::FromStr>(what: &str, v: std::ffi::OsString) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    let s = v
        .into_string()
        .map_err(|_| Error::Usage(format!("{what}: not UTF-8")))?;
    s.parse()
        .map_err(|e| Error::Usage(format!("{what} `{s}`: {e}")))
}

fn parse(mut parser: lexopt::Parser) -> Result<Option<Args>, Error> {
    use lexopt::prelude::*;
    let mut a = Args::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Long(name) if ChainArgs::NAMES.contains(&name) => {
                let name = name.to_string();
                a.chain.set(&name, parser.value()?)?;
            }
            Long("key") => a.key = Some(parser.value()?.into()),
            Long("passphrase-file") => a.passphrase_file = Some(parser.value()?.into()),
            Long("gateway") => a.gateway = Some(parse_value("--gateway", parser.value()?)?),
            Long("image") => a.image = Some(parser.value()?.string()?),
            Long("cpus") => a.cpus = Some(parse_value("--cpus", parser.value()?)?),
            Long("memory") => a.memory = Some(cli_size(&parser.value()?.string()?)?),
            Long("disk") => a.disk = Some(cli_size(&parser.value()?.string()?)?),
            Long("duration") => a.duration = Some(parse_value("--duration", parser.value()?)?),
            Long("interval") => a.interval = Some(parse_value("--interval", parser.value()?)?),
            Long("device") => a.devices.push(parser.value()?.string()?),
            Long("price") => a.price = Some(parse_value("--price", parser.value()?)?),
            Long("expiry") => a.expiry = Some(parse_value("--expiry", parser.value()?)?),
            Long("paid") => a.paid = Some(parse_value("--paid", parser.value()?)?),
            Long("manifest") => a.manifest = Some(parser.value()?.string()?),
            Long("ipfs-api") => a.ipfs_api = Some(parser.value()?.string()?),
            Long("deposit") => a.deposit = Some(parse_value("--deposit", parser.value()?)?),
            Long("data") => a.data = Some(parser.value()?.into()),
            Long("detach") => a.detach = true,
            Long("follow") => a.follow = true,
            Long("stderr") => a.stderr = true,
            Long("reason") => a.reason = Some(parser.value()?.string()?),
            Long("backend") => a.backends.push(parser.value()?.string()?),
            Long("json") => a.json = true,
            Long("wei") => a.wei = true,
            Short('h') | Long("help") => {
                say!("{USAGE}{}", chain_args::HELP)?;
                return Ok(None);
            }
            Value(v) if a.lease.is_none() => a.lease = Some(parse_value("LEASE", v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Some(a))
}

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    let sub = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}{}", chain_args::HELP),
        Some(other) => return Err(other.unexpected().into()),
    };
    let Some(mut a) = parse(parser)? else {
        return Ok(());
    };
    match sub.as_str() {
        "create" | "pay" | "ls" | "logs" => return super::buyer::run(&sub, a),
        "terminate" if a.paid.is_none() => return super::buyer::run(&sub, a),
        "invoice" if a.key.is_some() => return super::buyer::run(&sub, a),
        _ => {}
    }
    let needs_lease = sub != "propose";
    let lease = a.lease.take();
    if needs_lease && lease.is_none() {
        return Err(Error::Usage(format!(
            "lease {sub} needs LEASE (the 0x-prefixed lease id)"
        )));
    }
    let lease = lease.unwrap_or_default();
    let chain = std::mem::take(&mut a.chain).connect()?;
    match sub.as_str() {
        "propose" => propose(&chain, &a),
        "accept" => {
            let gw = chain.gateway_signer()?;
            market::accept(&sender(&chain, &gw)?, &chain.d, lease).map_err(runtime)?;
            say!("lease {lease} accepted by {}\n", gw.address())
        }
        "fee" => {
            let buyer = key(&a)?;
            market::deposit_fee(&sender(&chain, &buyer)?, &chain.d, lease).map_err(runtime)?;
            say!("fee escrowed for lease {lease}\n")
        }
        "terminate" => {
            let paid = a
                .paid
                .ok_or_else(|| Error::Usage("terminate needs --paid EDG".into()))?;
            let party = if a.key.is_some() {
                key(&a)?
            } else {
                chain.gateway_signer()?
            };
            market::terminate(
                &sender(&chain, &party)?,
                &chain.d,
                lease,
                U256::from(paid.wei()),
            )
            .map_err(runtime)?;
            say!(
                "lease {lease} terminated by {} (reported paid {paid})\n",
                party.address()
            )
        }
        "show" => show(&chain, lease, a.json),
        "invoice" => invoice(&chain, lease, a.json, a.wei),
        other => Err(Error::Usage(format!("unknown lease command `{other}`"))),
    }
}

pub(super) fn key(a: &Args) -> Result<Signer, Error> {
    let path = a
        .key
        .as_ref()
        .ok_or_else(|| Error::Usage("this command needs --key FILE".into()))?;
    let pass = keystore::passphrase(a.passphrase_file.as_deref())
        .map_err(|e| Error::Config(e.to_string()))?;
    keystore::load(path, &pass).map_err(|e| Error::Config(e.to_string()))
}

fn sender<'a>(chain: &'a Chain, signer: &'a Signer) -> Result<TxSender<'a>, Error> {
    let store = chain.cli_store()?;
    let nonces = store.tree("nonces").map_err(runtime)?;
    Ok(TxSender::new(
        &chain.rpc,
        signer,
        chain.d.chain_id,
        nonces,
        chain.policy(),
    ))
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn propose(chain: &Chain, a: &Args) -> Result<(), Error> {
    let buyer = key(a)?;
    let gateway = a
        .gateway
        .ok_or_else(|| Error::Usage("propose needs --gateway ADDR".into()))?;
    let image = a
        .image
        .clone()
        .ok_or_else(|| Error::Usage("propose needs --image CID".into()))?;
    let listing = market::live_adverts(&chain.rpc, &chain.d)
        .map_err(runtime)?
        .into_iter()
        .find(|l| l.gateway == gateway)
        .ok_or_else(|| Error::Runtime(format!("gateway {gateway} has no live advert")))?;
    let caps: Capabilities = listing
        .capabilities
        .map_err(|e| Error::Runtime(format!("gateway {gateway}: {e}")))?;
    let req = request(a, gateway)?;
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(runtime)?;
    let offer = offer::build(
        &req,
        &caps,
        buyer.address(),
        &image,
        now(),
        u64::from_be_bytes(nonce),
    )
    .map_err(|e| Error::Usage(e.to_string()))?;
    let price = offer.pricePerSecond.to::<u128>();
    let expiry = offer.expiry.to::<u64>();
    let lease = market::propose(&sender(chain, &buyer)?, &chain.d, &offer).map_err(runtime)?;
    let offer_json = serde_json::json!({
        "buyer": offer.buyer, "gateway": offer.gateway, "cpuMillicores": offer.cpuMillicores,
        "memoryBytes": offer.memoryBytes, "diskBytes": offer.diskBytes, "devices": offer.devices,
        "pricePerSecond": price.to_string(), "maxDuration": offer.maxDuration,
        "paymentInterval": offer.paymentInterval, "image": offer.image, "expiry": expiry, "nonce": offer.nonce.to_string(),
    });
    if a.json {
        return say!(
            "{}\n",
            serde_json::json!({"lease": lease, "offer": offer_json})
        );
    }
    say!(
        "lease {lease}\nprice {} per second\noffer {offer_json}\n",
        Edg(price)
    )
}

/// The buyer's request from the offer options.
pub(super) fn request(a: &Args, gateway: Address) -> Result<offer::Request, Error> {
    let mut req = offer::Request::new(gateway);
    if let Some(c) = a.cpus {
        req.cpus = c;
    }
    if let Some(m) = a.memory {
        req.memory = m.bytes();
    }
    if let Some(d) = a.disk {
        req.disk = d.bytes();
    }
    if let Some(d) = a.duration {
        req.duration = d.get().as_secs();
    }
    req.interval = a.interval.map(|i| i.get().as_secs());
    req.devices = a.devices.clone();
    req.price = a.price.map(|p| p.wei());
    if let Some(e) = a.expiry {
        req.expiry = e.get().as_secs();
    }
    req.backends = a.backends.clone();
    Ok(req)
}

fn show(chain: &Chain, lease: B256, json: bool) -> Result<(), Error> {
    let l = market::lease(&chain.rpc, &chain.d, lease).map_err(runtime)?;
    let state = market::MarketState::try_from(l.state).map_or("unknown", |s| s.name());
    if json {
        let v = serde_json::json!({
            "lease": lease, "state": state, "buyer": l.buyer, "gateway": l.gateway,
            "start": l.start.to::<u64>(), "end": l.end.to::<u64>(), "fee": l.fee.to::<u128>().to_string(), "flags": l.flags,
        });
        return say!("{v}\n");
    }
    say!(
        "lease    {lease}\nstate    {state}\nbuyer    {}\ngateway  {}\nstart    {}\nfee      {}\n",
        l.buyer,
        l.gateway,
        l.start,
        Edg(l.fee.to::<u128>())
    )
}

pub(super) fn invoice(chain: &Chain, lease: B256, json: bool, wei: bool) -> Result<(), Error> {
    let Some(inv) = market::invoice(&chain.rpc, &chain.d, lease).map_err(runtime)? else {
        return Err(Error::Runtime(format!(
            "lease {lease} has no invoice yet (not settled, or unknown)"
        )));
    };
    let amount = |w: u128| {
        if wei {
            w.to_string()
        } else {
            Edg(w).to_string()
        }
    };
    let (b, s, fee) = (
        inv.buyerReported.to::<u128>(),
        inv.sellerReported.to::<u128>(),
        inv.fee.to::<u128>(),
    );
    if json {
        let v = serde_json::json!({
            "lease": lease, "buyer": inv.buyer, "seller": inv.seller,
            "start": inv.start.to::<u64>(), "end": inv.end.to::<u64>(),
            "buyer_reported": amount(b), "seller_reported": amount(s), "fee": amount(fee),
            "flags": inv.flags, "disputed": inv.flags & 8 != 0,
        });
        return say!("{v}\n");
    }
    say!(
        "lease            {lease}\nbuyer            {}\nseller           {}\nstart            {}\nend              {}\nbuyer reported   {}\nseller reported  {}\nfee              {}\n{}",
        inv.buyer,
        inv.seller,
        inv.start,
        inv.end,
        amount(b),
        amount(s),
        amount(fee),
        if inv.flags & 8 != 0 {
            "DISPUTED: the two reports differ\n"
        } else {
            ""
        }
    )
}
