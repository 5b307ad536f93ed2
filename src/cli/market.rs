//! `dedge market ...`: live adverts, filtered (`ls`, here), and the
//! market steps of a lease one at a time (`market_steps`).

use alloy_primitives::Address;

use super::chain_args::{self, ChainArgs, runtime};
use super::{Error, say};
use crate::market::{self, Listing};
use crate::units::Edg;

pub(crate) const USAGE: &str = "\
Usage: dedge market ls [chain options] [filters] [--json] [--wei]
       dedge market propose --gateway ADDR --image CID [offer options] --key FILE [chain options]
       dedge market accept LEASE --board BOARD
       dedge market fee LEASE --key FILE [chain options]
       dedge market report LEASE --paid EDG (--key FILE | --board BOARD) [chain options]
       dedge market show LEASE [chain options] [--json]
       dedge market invoice LEASE [chain options] [--json] [--wei]

  ls       live adverts (below)
  propose  the buyer writes its offer's EIP-712 hash on chain; prints the
           lease id and the offer (to send to the gateway)
  accept   the gateway writes the same hash: buyer and seller in contract
  fee      the buyer escrows the platform fee (dedge_fee); the lease is
           valid once accepted and funded
  report   one side's termination: what it says the lease was paid, by
           --key (the buyer) or the gateway (--board)
  show     the lease's state on chain
  invoice  the Invoice the Market emitted at settlement: both reports, fee,
           flags (8 = the two reports differ)
  (`dedge lease` runs all of these for a buyer, with payments and deploy.)

`ls`:

Lists live gateway adverts: one view call for the current state, the
Advertised events for endpoints and capability documents (each checked
against the hash on chain).

Filters:
  --arch ARCH            aarch64, armv7 or x86_64
  --device NAME[:CMD]    sells this EdgeX device (and command); repeatable
  --max-price EDG        at most this price per second for 1 core + 1 GiB
Output:
  --json                 one JSON array, for scripts
  --wei                  amounts in base units instead of EDG
  -h, --help             print this help
";

struct Filters {
    arch: Option<String>,
    devices: Vec<(String, Option<String>)>,
    max_price: Option<u128>,
}

impl Filters {
    fn keep(&self, l: &Listing) -> bool {
        if self.max_price.is_some_and(|m| l.price_per_second > m) {
            return false;
        }
        if self.arch.is_none() && self.devices.is_empty() {
            return true;
        }
        let Ok(c) = &l.capabilities else { return false };
        self.arch.as_ref().is_none_or(|a| &c.arch == a)
            && self
                .devices
                .iter()
                .all(|(d, cmd)| c.sells(d, cmd.as_deref()))
    }
}

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    match parser.next()? {
        Some(Value(v)) if v == "ls" => {}
        Some(Value(v)) => return super::market_steps::run(&v.string()?, parser),
        Some(Short('h') | Long("help")) | None => {
            return say!(
                "{USAGE}{}{}",
                super::lease_args::OFFER_HELP,
                chain_args::HELP
            );
        }
        Some(other) => return Err(other.unexpected().into()),
    }
    let mut chain = ChainArgs::default();
    let mut f = Filters {
        arch: None,
        devices: Vec::new(),
        max_price: None,
    };
    let (mut json, mut wei) = (false, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long(name) if ChainArgs::NAMES.contains(&name) => {
                let name = name.to_string();
                chain.set(&name, parser.value()?)?;
            }
            Long("arch") => {
                let a = parser.value()?.string()?;
                if !["aarch64", "armv7", "x86_64"].contains(&a.as_str()) {
                    return Err(Error::Usage(format!(
                        "--arch {a}: expected aarch64, armv7 or x86_64"
                    )));
                }
                f.arch = Some(a);
            }
            Long("device") => {
                let d = parser.value()?.string()?;
                let (name, cmd) = match d.split_once(':') {
                    Some((n, c)) => (n.to_string(), Some(c.to_string())),
                    None => (d, None),
                };
                f.devices.push((name, cmd));
            }
            Long("max-price") => {
                let v = parser.value()?.string()?;
                let edg: Edg = v
                    .parse()
                    .map_err(|e| Error::Usage(format!("--max-price: {e}")))?;
                f.max_price = Some(edg.wei());
            }
            Long("json") => json = true,
            Long("wei") => wei = true,
            Short('h') | Long("help") => return say!("{USAGE}{}", chain_args::HELP),
            other => return Err(other.unexpected().into()),
        }
    }
    let chain = chain.connect()?;
    let listings: Vec<Listing> = market::live_adverts(&chain.rpc, &chain.d)
        .map_err(runtime)?
        .into_iter()
        .filter(|l| f.keep(l))
        .collect();
    let amount = |w: u128| {
        if wei {
            w.to_string()
        } else {
            Edg(w).to_string()
        }
    };
    if json {
        let items: Vec<serde_json::Value> = listings
            .iter()
            .map(|l| {
                serde_json::json!({
                    "gateway": l.gateway, "operator": l.operator, "endpoint": l.endpoint,
                    "price_per_second": amount(l.price_per_second), "expiry": l.expiry,
                    "capabilities": l.capabilities.as_ref().ok(),
                    "capabilities_error": l.capabilities.as_ref().err(),
                })
            })
            .collect();
        return say!("{}\n", serde_json::Value::Array(items));
    }
    say!(
        "{:<42}  {:<7}  {:>6}  {:>9}  {:>7}  {:<22}  {}\n",
        "GATEWAY",
        "ARCH",
        "CPU",
        "MEMORY",
        "DEVICES",
        "PRICE/s (1 core+1 GiB)",
        "ENDPOINT"
    )?;
    for l in &listings {
        let (arch, cpu, mem, devs) = match &l.capabilities {
            Ok(c) => (
                c.arch.clone(),
                format!("{}m", c.cpu_millicores),
                crate::units::ByteSize(c.memory).to_string(),
                c.devices.len().to_string(),
            ),
            Err(_) => ("?".into(), "?".into(), "?".into(), "?".into()),
        };
        say!(
            "{:<42}  {arch:<7}  {cpu:>6}  {mem:>9}  {devs:>7}  {:<22}  {}\n",
            format_addr(l.gateway),
            amount(l.price_per_second),
            l.endpoint
        )?;
    }
    if listings.is_empty() {
        say!("(no live adverts match)\n")?;
    }
    Ok(())
}

fn format_addr(a: Address) -> String {
    a.to_checksum(None)
}
