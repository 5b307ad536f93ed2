//! The market steps of a lease, one transaction or view each (`dedge
//! market propose|accept|fee|report|show|invoice`): what the buyer's
//! `lease create` and the agent do for themselves, by hand, for operators
//! and scripts.

use alloy_primitives::{B256, U256};

use super::chain_args::{Chain, runtime};
use super::lease_args::{Args, key, now, parse, request, sender};
use super::{Error, say};
use crate::buyer::offer;
use crate::market::{self, Capabilities};
use crate::units::Edg;

/// `dedge market SUB ...` for every SUB but `ls`.
pub fn run(sub: &str, parser: lexopt::Parser) -> Result<(), Error> {
    let Some(mut a) = parse(parser, super::market::USAGE)? else {
        return Ok(());
    };
    let needs_lease = sub != "propose";
    let lease = a.lease.take();
    if needs_lease && lease.is_none() {
        return Err(Error::Usage(format!(
            "market {sub} needs LEASE (the 0x-prefixed lease id)"
        )));
    }
    let lease = lease.unwrap_or_default();
    let chain = std::mem::take(&mut a.chain).connect()?;
    match sub {
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
        "report" => {
            let paid = a
                .paid
                .ok_or_else(|| Error::Usage("report needs --paid EDG".into()))?;
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
        other => Err(Error::Usage(format!("unknown market command `{other}`"))),
    }
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
