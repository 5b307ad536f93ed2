//! The buyer's payer: a foreground loop that keeps a running lease paid one
//! payment interval ahead of what the gateway says is owed (never past the
//! lease's most), resends its newest proof when the gateway has less than
//! it signed (a proof lost on the way), reconnects when the gateway goes
//! away, and stops when asked (a signal, or `lease terminate`) or when the
//! lease leaves running/frozen. Killing it loses nothing: every proof is
//! durable before it is sent, and a new `lease pay` carries on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy_primitives::U256;

use super::link::Link;
use super::record::{self, LeaseRecord};
use super::wallet::Channel;
use super::{Buyer, Error, Result};
use crate::p2p::Body;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What the gateway's account of a lease says (EDG base units, seconds).
pub struct Account {
    pub paid: u128,
    pub(crate) owed: u128,
    pub ran: u64,
    pub edgex: Vec<crate::p2p::DeviceUse>,
}

fn amount(bytes: &[u8; 32]) -> u128 {
    U256::from_be_bytes(*bytes).saturating_to::<u128>()
}

pub fn account(link: &mut Link, lease: [u8; 32]) -> Result<Account> {
    match link.ask(Body::Account {
        lease,
        paid: [0; 32],
        owed: [0; 32],
        ran: 0,
        edgex: Vec::new(),
    })? {
        Body::Account {
            paid,
            owed,
            ran,
            edgex,
            ..
        } => Ok(Account {
            paid: amount(&paid),
            owed: amount(&owed),
            ran,
            edgex,
        }),
        other => Err(link.unexpected(&other, "Account")),
    }
}

/// What the lease should have been paid by the next round: what the
/// gateway says is owed plus one interval ahead, but never more than the
/// buyer's own clock allows (the time since it made the offer, plus the
/// interval) nor the lease's most: a gateway's word alone cannot draw the
/// whole deposit.
pub fn target(owed: u128, r: &LeaseRecord, now: u64) -> u128 {
    let interval = r.payment_interval.max(1);
    let ahead = r.price().saturating_mul(u128::from(interval));
    let elapsed = now.saturating_sub(r.created).saturating_add(interval);
    let by_clock = r.price().saturating_mul(u128::from(elapsed));
    owed.saturating_add(ahead).min(by_clock).min(r.max_cost())
}

/// One round: the lease paid up to [`target`]. Returns what the buyer has
/// now signed over for the lease.
pub fn round(link: &mut Link, channel: &Channel, r: &LeaseRecord) -> Result<u128> {
    let acct = account(link, r.lease.0)?;
    let mine = channel.paid_for(r.lease)?.saturating_to::<u128>();
    let target = target(acct.owed, r, now());
    let increment = target.saturating_sub(mine);
    if increment == 0 && acct.paid >= mine {
        return Ok(mine);
    }
    // An increment of zero re-signs the newest total: the gateway is behind
    // what was signed (a proof lost in transit or a restart).
    let proof = channel.pay(r.lease, U256::from(increment))?;
    let want = proof.amount.to_be_bytes::<32>();
    match link.ask(Body::Payment {
        lease: r.lease.0,
        channel: proof.channel.0,
        amount: want,
        signature: proof.signature,
    })? {
        Body::PaymentAck { amount, .. } if amount == want => Ok(mine.saturating_add(increment)),
        other => Err(link.unexpected(&other, "PaymentAck")),
    }
}

/// Why the payer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Asked to (a signal, or a `lease terminate` waiting for the channel).
    Stopped,
    /// The lease left running/frozen; its state as the gateway sees it.
    Lease(String),
}

/// States in which a lease is paid for.
fn payable(state: &str) -> bool {
    matches!(state, "running" | "frozen" | "deploying" | "channel proven")
}

/// Pays `r` until asked to stop or the lease ends. `tell` hears each
/// payment and each reconnect.
pub fn run(
    buyer: &Buyer,
    r: &LeaseRecord,
    channel: &Channel,
    stop: &AtomicBool,
    tell: &mut dyn FnMut(&str),
) -> Result<Ended> {
    let stop_file = record::stop_request(&buyer.data, r.lease);
    // A request left by a terminate that gave up is not for this payer.
    let _ = std::fs::remove_file(&stop_file);
    let asked = || stop.load(Ordering::SeqCst) || stop_file.exists();
    let every = Duration::from_secs(r.payment_interval.clamp(1, 3600));
    let mut link: Option<Link> = None;
    let mut last_paid = None;
    let mut backoff = Duration::from_millis(500);
    loop {
        if asked() {
            return Ok(Ended::Stopped);
        }
        let result = (|| {
            let l = match &mut link {
                Some(l) => l,
                None => link.insert(Link::connect(buyer, r.gateway, &r.endpoint)?),
            };
            let (state, detail) = l.status(r.lease.0)?;
            if !payable(&state) {
                return Ok(Some(Ended::Lease(format!("{state}: {detail}"))));
            }
            let paid = round(l, channel, r)?;
            if last_paid != Some(paid) {
                tell(&format!(
                    "lease {} {state}: paid {} in all",
                    r.lease,
                    crate::units::Edg(paid)
                ));
                last_paid = Some(paid);
            }
            Ok::<_, Error>(None)
        })();
        let wait = match result {
            Ok(Some(end)) => return Ok(end),
            Ok(None) => {
                backoff = Duration::from_millis(500);
                every
            }
            // The gateway away or the link broken: reconnect, with backoff.
            Err(e @ Error::Gateway { .. }) => {
                tell(&format!("{e}; reconnecting"));
                link = None;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                backoff
            }
            Err(e) => return Err(e),
        };
        let until = Instant::now() + wait;
        while Instant::now() < until && !asked() {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{Address, B256};

    #[test]
    fn the_payer_pays_one_interval_ahead_and_never_on_the_gateways_word_alone() {
        let r = LeaseRecord {
            lease: B256::ZERO,
            gateway: Address::ZERO,
            endpoint: String::new(),
            channel: None,
            image: String::new(),
            manifest: String::new(),
            price_per_second: "10".into(),
            payment_interval: 5,
            max_duration: 100,
            devices: vec![],
            backends: vec![],
            created: 1000,
            state: "running".into(),
            reason: None,
        };
        // Before it runs: one interval ahead.
        assert_eq!(target(0, &r, 1001), 50);
        // Owed 20 s: 25 s' worth.
        assert_eq!(target(200, &r, 1030), 250);
        // A gateway claiming the whole lease is owed after 10 s gets 15 s.
        assert_eq!(target(1000, &r, 1010), 150);
        // Never past the lease's most.
        assert_eq!(target(990, &r, 2000), 1000);
    }
}
