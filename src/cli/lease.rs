//! `dedge lease propose|accept|fee|terminate|show|invoice`: the market steps
//! of a lease, one command each. (The buyer's all-in-one `lease create`,
//! with the channel, the image and the payments, comes with the agent.)

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, U256, Uint};

use super::chain_args::{self, Chain, ChainArgs, runtime};
use super::{Error, say};
use crate::chain::tx::TxSender;
use crate::chain::{Signer, eip712, keystore};
use crate::market::{self, Capabilities};
use crate::units::{ByteSize, Edg, HumanDuration};

pub const USAGE: &str = "\
Usage: dedge lease propose --gateway ADDR --image CID [offer options] --key FILE [chain options]
       dedge lease accept LEASE --board BOARD
       dedge lease fee LEASE --key FILE [chain options]
       dedge lease terminate LEASE --paid EDG (--key FILE | --board BOARD) [chain options]
       dedge lease show LEASE [chain options] [--json]
       dedge lease invoice LEASE [chain options] [--json] [--wei]

  propose    the buyer writes its offer's EIP-712 hash on chain; prints the
             lease id and the offer (to send to the gateway)
  accept     the gateway writes the same hash: buyer and seller in contract
  fee        the buyer escrows the platform fee (dedge_fee); the lease is
             valid once accepted and funded
  terminate  each side ends the lease, reporting what the channel paid
  show       the lease's state on chain
  invoice    the Invoice emitted at settlement: both reports, fee, flags
             (8 = the two reports differ)

Offer options (propose):
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
Keys:
  --key FILE          the buyer's key file (passphrase: --passphrase-file
                      or DEDGE_PASSPHRASE); seller commands use --board's key
Output:
  --json, --wei, -h/--help
";

#[derive(Default)]
struct Args {
    chain: ChainArgs,
    lease: Option<B256>,
    key: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    gateway: Option<Address>,
    image: Option<String>,
    cpus: Option<f64>,
    memory: Option<ByteSize>,
    disk: Option<ByteSize>,
    duration: Option<HumanDuration>,
    interval: Option<HumanDuration>,
    devices: Vec<String>,
    price: Option<Edg>,
    expiry: Option<HumanDuration>,
    paid: Option<Edg>,
    json: bool,
    wei: bool,
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

fn key(a: &Args) -> Result<Signer, Error> {
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

fn now() -> u64 {
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
    let cpus = a.cpus.unwrap_or(0.5);
    // NaN and non-positive values fail the first test.
    if !cpus.is_finite() || cpus <= 0.0 || cpus * 1000.0 > f64::from(caps.cpu_millicores) {
        return Err(Error::Usage(format!(
            "--cpus {cpus}: the gateway sells up to {}",
            caps.cpu_millicores as f64 / 1000.0
        )));
    }
    let millicores = (cpus * 1000.0).round() as u32;
    let memory = a.memory.unwrap_or(ByteSize(64 << 20));
    let disk = a.disk.unwrap_or(ByteSize(256 << 20));
    let mut devices = Vec::new();
    for d in &a.devices {
        let parts: Vec<&str> = d.split(':').collect();
        let (name, cmd, mode) = match parts.as_slice() {
            [n, c] => (*n, *c, "r"),
            [n, c, m @ ("r" | "w" | "rw")] => (*n, *c, *m),
            _ => {
                return Err(Error::Usage(format!(
                    "--device {d}: expected NAME:CMD[:r|w|rw]"
                )));
            }
        };
        if !caps.sells(name, Some(cmd)) {
            return Err(Error::Usage(format!(
                "--device {d}: the gateway does not sell it"
            )));
        }
        devices.push(format!("{name}:{cmd}:{mode}"));
    }
    let price = match a.price {
        Some(p) => p.wei(),
        None => caps.lease_price(millicores, memory.bytes(), devices.len()),
    };
    let duration = a
        .duration
        .unwrap_or(HumanDuration(std::time::Duration::from_secs(3600)));
    let interval = a
        .interval
        .map_or(caps.payment_interval_s, |i| i.get().as_secs());
    let expiry = now() + a.expiry.map_or(600, |e| e.get().as_secs());
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).map_err(runtime)?;
    let u32_of = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| Error::Usage(format!("{what} is too long")))
    };
    let offer = eip712::Offer {
        buyer: buyer.address(),
        gateway,
        cpuMillicores: millicores,
        memoryBytes: memory.bytes(),
        diskBytes: disk.bytes(),
        devices,
        pricePerSecond: Uint::try_from(price)
            .map_err(|_| Error::Usage("--price is too large".into()))?,
        maxDuration: u32_of(duration.get().as_secs(), "--duration")?,
        paymentInterval: u32_of(interval, "--interval")?,
        image,
        expiry: Uint::from(expiry),
        nonce: u64::from_be_bytes(nonce),
    };
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

const STATES: [&str; 7] = [
    "none",
    "proposed",
    "accepted",
    "active",
    "terminating",
    "settled",
    "cancelled",
];

fn show(chain: &Chain, lease: B256, json: bool) -> Result<(), Error> {
    let l = market::lease(&chain.rpc, &chain.d, lease).map_err(runtime)?;
    let state = STATES
        .get(usize::from(l.state))
        .copied()
        .unwrap_or("unknown");
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

fn invoice(chain: &Chain, lease: B256, json: bool, wei: bool) -> Result<(), Error> {
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
