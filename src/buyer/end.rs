//! The end of a lease, the buyer's half: the payer stopped (asked through
//! a stop-request file, then its channel lock awaited), the buyer's report
//! of what it paid on chain (`dedge_terminate`), the gateway told (it stops
//! the container, reports and claims), and the invoice: the Market's
//! settlement with the gateway's metered EdgeX use.

use std::time::{Duration, Instant};

use alloy_primitives::{B256, U256};

use super::link::Link;
use super::pay::{self, Account};
use super::record::{self, LeaseRecord};
use super::wallet::Channel;
use super::{Buyer, Error, Result, chain};
use crate::chain::bindings::IMarket;
use crate::market::{self, MarketState};
use crate::p2p::Body;

/// How long a terminate waits for a running payer to let go.
const PAYER_STOP: Duration = Duration::from_secs(15);
/// How long it waits for the gateway to settle.
const SETTLE: Duration = Duration::from_secs(60);

/// The lease's channel, once the payer (if one runs) has stopped.
fn take_channel(buyer: &Buyer, r: &LeaseRecord, id: B256) -> Result<Channel> {
    let stop = record::stop_request(&buyer.data, r.lease);
    let deadline = Instant::now() + PAYER_STOP;
    let result = loop {
        match Channel::reopen(buyer, id) {
            Err(Error::Busy(why)) if Instant::now() < deadline => {
                std::fs::write(&stop, b"").map_err(|e| Error::State {
                    path: stop.clone(),
                    why: e.to_string(),
                })?;
                log::debug!("{why}: asked the payer to stop");
                std::thread::sleep(Duration::from_millis(200));
            }
            other => break other,
        }
    };
    // Given up on a payer busy in a long call: the request stays, so it
    // still stops at its next check (a new `lease pay` clears it).
    if result.is_ok() {
        let _ = std::fs::remove_file(&stop);
    }
    result
}

/// Ends lease `lease`: reports on chain what the buyer paid, has the
/// gateway stop and settle. Returns the Market's state after.
pub fn terminate(
    buyer: &Buyer,
    lease: B256,
    reason: &str,
    tell: &mut dyn FnMut(&str),
) -> Result<MarketState> {
    let r = record::load(&buyer.data, lease)?;
    let paid = match r.channel {
        Some(id) => take_channel(buyer, &r, id)?.paid_for(lease)?,
        None => U256::ZERO,
    };
    report(buyer, lease, paid, tell)?;
    match Link::connect(buyer, r.gateway, &r.endpoint).and_then(|mut link| {
        link.ask(Body::Terminate {
            lease: lease.0,
            reason: reason.into(),
        })?;
        wait_settled(&mut link, lease)
    }) {
        Ok(state) => tell(&format!("the gateway has the lease {state}")),
        Err(e) => tell(&format!(
            "{e}; the gateway settles on its own once it sees the report"
        )),
    }
    let state = market::lease_on_chain(&buyer.rpc, &buyer.d, lease)
        .map_err(chain)?
        .state;
    let name = if state == MarketState::Settled {
        "settled"
    } else {
        "terminated"
    };
    record::set_state(&buyer.data, lease, name, Some(reason.into()))?;
    Ok(state)
}

/// The buyer's report on chain, unless it is there already.
fn report(buyer: &Buyer, lease: B256, paid: U256, tell: &mut dyn FnMut(&str)) -> Result<()> {
    let l = market::lease_on_chain(&buyer.rpc, &buyer.d, lease).map_err(chain)?;
    let due = l.state == MarketState::Active
        || (l.state == MarketState::Terminating && !l.flags.buyer_terminated());
    if !due {
        return Ok(());
    }
    market::terminate(&buyer.tx()?, &buyer.d, lease, paid).map_err(chain)?;
    tell(&format!(
        "reported on chain: paid {} for lease {lease}",
        crate::units::Edg(paid.saturating_to::<u128>())
    ));
    Ok(())
}

fn wait_settled(link: &mut Link, lease: B256) -> Result<String> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let (state, _) = link.status(lease.0)?;
        if state == "settled" || Instant::now() >= deadline {
            return Ok(state);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After a payer saw the lease end on the gateway's side: the buyer's
/// report, so the Market settles now rather than after its timeout.
pub(crate) fn after_gateway_ended(
    buyer: &Buyer,
    r: &LeaseRecord,
    channel: &Channel,
    tell: &mut dyn FnMut(&str),
) -> Result<()> {
    report(buyer, r.lease, channel.paid_for(r.lease)?, tell)?;
    record::set_state(&buyer.data, r.lease, "terminated", None)
}

/// Everything the invoice shows.
pub struct Invoice {
    pub record: LeaseRecord,
    /// The Market's settlement, once there is one.
    pub settled: Option<IMarket::Invoice>,
    /// The gateway's account (with EdgeX use), when it answers.
    pub account: std::result::Result<Account, String>,
}

pub fn invoice(buyer: &Buyer, lease: B256) -> Result<Invoice> {
    let record = record::load(&buyer.data, lease)?;
    let settled = market::invoice(&buyer.rpc, &buyer.d, lease).map_err(chain)?;
    let account = Link::connect(buyer, record.gateway, &record.endpoint)
        .and_then(|mut l| pay::account(&mut l, lease.0))
        .map_err(|e| e.to_string());
    Ok(Invoice {
        record,
        settled,
        account,
    })
}
