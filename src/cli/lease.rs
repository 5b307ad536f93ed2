//! `dedge lease invoice LEASE`: the settled lease's invoice.

use alloy_primitives::B256;

use super::chain_args::{self, ChainArgs, runtime};
use super::{Error, say};
use crate::market;
use crate::units::Edg;

pub const USAGE: &str = "\
Usage: dedge lease invoice LEASE [chain options] [--json] [--wei]

Prints the Invoice the market emitted when LEASE (the 0x-prefixed offer
hash) was settled: buyer, seller, start, end, what each side reported as
paid through the channel, the fee, and the flags (8 = the reports differ).

Options:
  --json      one JSON object
  --wei       amounts in base units instead of EDG
  -h, --help  print this help
";

pub fn run(mut parser: lexopt::Parser) -> Result<(), Error> {
    use lexopt::prelude::*;
    match parser.next()? {
        Some(Value(v)) if v == "invoice" => {}
        Some(Short('h') | Long("help")) | None => return say!("{USAGE}{}", chain_args::HELP),
        Some(other) => return Err(other.unexpected().into()),
    }
    let mut chain = ChainArgs::default();
    let mut lease: Option<B256> = None;
    let (mut json, mut wei) = (false, false);
    while let Some(arg) = parser.next()? {
        match arg {
            Long(name) if ChainArgs::NAMES.contains(&name) => {
                let name = name.to_string();
                chain.set(&name, parser.value()?)?;
            }
            Long("json") => json = true,
            Long("wei") => wei = true,
            Short('h') | Long("help") => return say!("{USAGE}{}", chain_args::HELP),
            Value(v) if lease.is_none() => {
                let s = v.string()?;
                lease = Some(s.parse().map_err(|_| {
                    Error::Usage(format!("`{s}` is not a lease id (0x + 64 hex digits)"))
                })?);
            }
            other => return Err(other.unexpected().into()),
        }
    }
    let lease = lease.ok_or_else(|| Error::Usage("missing LEASE".into()))?;
    let chain = chain.connect()?;
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
