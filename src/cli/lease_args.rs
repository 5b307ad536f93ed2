//! The options of the lease commands, shared by the buyer's `lease` and
//! the market steps (`market propose` takes the same offer options as
//! `lease create`): parsing, the key, the offer request.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256};

use super::chain_args::{self, Chain, ChainArgs, runtime};
use super::{Error, say};
use crate::buyer::offer;
use crate::chain::tx::TxSender;
use crate::chain::{Signer, keystore};
use crate::units::{ByteSize, Edg, HumanDuration};

/// The offer options' help, in both commands' usage.
pub(super) const OFFER_HELP: &str = "\
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

/// The options after a subcommand; `None` once `--help` printed `usage`.
pub(super) fn parse(mut parser: lexopt::Parser, usage: &str) -> Result<Option<Args>, Error> {
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
                say!("{usage}{}", chain_args::HELP)?;
                return Ok(None);
            }
            Value(v) if a.lease.is_none() => a.lease = Some(parse_value("LEASE", v)?),
            other => return Err(other.unexpected().into()),
        }
    }
    Ok(Some(a))
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

pub(super) fn sender<'a>(chain: &'a Chain, signer: &'a Signer) -> Result<TxSender<'a>, Error> {
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
