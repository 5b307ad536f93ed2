//! The gateway's advert, kept live by the agent: advertised at start when
//! there is none (or it runs out within `RENEW_BEFORE`, or what the
//! gateway sells changed — e.g. EdgeX came up and the catalogue filled),
//! renewed before it expires. Checked every `CHECK_EVERY`; a failure
//! (no gas, no EDG for the fee, the node away) is logged and retried at
//! the next check. A gateway no operator has bound cannot advertise: the
//! agent says so once and keeps serving.

use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};

use crate::chain::bindings::IRegistry;
use crate::chain::tx::{TxSender, view};
use crate::chain::{Deployment, Rpc};
use crate::market::{self, Capabilities};

/// How long each advert is good for.
const TTL: Duration = Duration::from_secs(24 * 3600);
/// Renew when less than this is left.
const RENEW_BEFORE: u64 = 6 * 3600;
const CHECK_EVERY: Duration = Duration::from_secs(300);

/// What to do about the advert now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// No operator has bound this gateway.
    Unregistered,
    Fresh,
    /// None yet, or it has expired.
    Advertise,
    Renew,
    /// What the gateway sells is not what the advert says.
    Changed,
    /// The operator stopped it selling (pause, drain) and an advert is live.
    Withdraw,
    /// Not selling, and no advert live.
    Withdrawn,
}

/// The decision for an advert expiring at `expiry` (0: none) whose
/// document hashes to `advertised`, when the gateway sells `selling`.
fn decide(
    registered: bool,
    open: bool,
    expiry: u64,
    advertised: B256,
    selling: B256,
    now: u64,
) -> Decision {
    if !registered {
        Decision::Unregistered
    } else if !open && expiry > now {
        Decision::Withdraw
    } else if !open {
        Decision::Withdrawn
    } else if expiry <= now {
        Decision::Advertise
    } else if expiry - now < RENEW_BEFORE {
        Decision::Renew
    } else if advertised != selling {
        Decision::Changed
    } else {
        Decision::Fresh
    }
}

pub(crate) struct Advertiser {
    endpoint: String,
    last: Option<Instant>,
    said_unregistered: bool,
}

impl Advertiser {
    pub(crate) fn new(endpoint: String) -> Advertiser {
        Advertiser {
            endpoint,
            last: None,
            said_unregistered: false,
        }
    }

    /// The next `step` checks at once (the operator changed what is sold).
    pub(crate) fn check_now(&mut self) {
        self.last = None;
    }

    /// Checks the advert if `CHECK_EVERY` has passed, and advertises
    /// `caps` when it is due; withdraws it while the gateway is not `open`
    /// (paused or draining).
    pub(crate) fn step(
        &mut self,
        tx: &TxSender,
        rpc: &Rpc,
        d: &Deployment,
        caps: &Capabilities,
        open: bool,
    ) {
        if self.last.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let gateway = tx.address();
        let read = || -> Result<(bool, IRegistry::Advert), String> {
            let operator: Address = view(rpc, d.registry, &IRegistry::operatorOfCall { gateway })
                .map_err(|e| e.to_string())?;
            let advert: IRegistry::Advert =
                view(rpc, d.registry, &IRegistry::advertOfCall { gateway })
                    .map_err(|e| e.to_string())?;
            Ok((operator != Address::ZERO, advert))
        };
        let (registered, advert) = match read() {
            Ok(r) => r,
            Err(e) => return log::warn!("advert: reading the registry: {e}"),
        };
        let (_, selling, _) = caps.encode();
        let decision = decide(
            registered,
            open,
            advert.expiry.to::<u64>(),
            advert.capabilitiesHash,
            selling,
            super::lease::UnixTime::now().0,
        );
        match decision {
            Decision::Fresh | Decision::Withdrawn => {}
            Decision::Withdraw => {
                let call = IRegistry::withdrawCall { gateway };
                match tx.execute(d.registry, &call) {
                    Ok(_) => {
                        log::info!("advert withdrawn: the operator stopped the gateway selling")
                    }
                    Err(e) => log::error!(
                        "withdrawing the advert: {e}; retrying in {} s",
                        CHECK_EVERY.as_secs()
                    ),
                }
            }
            Decision::Unregistered => {
                if !self.said_unregistered {
                    log::warn!(
                        "gateway {gateway} is not bound to an operator (dedge gateway register): not advertising"
                    );
                    self.said_unregistered = true;
                }
            }
            why => match market::advertise(tx, d, &self.endpoint, caps, TTL) {
                Ok(_) => log::info!(
                    "advertised at {} for {} h ({why:?})",
                    self.endpoint,
                    TTL.as_secs() / 3600
                ),
                Err(e) => {
                    log::error!(
                        "advert ({why:?}): {e}; retrying in {} s",
                        CHECK_EVERY.as_secs()
                    )
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adverts_are_made_renewed_and_updated_when_due() {
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let now = 1_000_000;
        assert_eq!(decide(false, true, 0, a, a, now), Decision::Unregistered);
        assert_eq!(
            decide(true, true, 0, B256::ZERO, a, now),
            Decision::Advertise
        );
        assert_eq!(decide(true, true, now, a, a, now), Decision::Advertise);
        assert_eq!(decide(true, true, now + 60, a, a, now), Decision::Renew);
        assert_eq!(
            decide(true, true, now + RENEW_BEFORE, a, a, now),
            Decision::Fresh
        );
        assert_eq!(
            decide(true, true, now + RENEW_BEFORE, a, b, now),
            Decision::Changed
        );
        // Paused or draining: the live advert goes, none is made.
        assert_eq!(decide(true, false, now + 60, a, b, now), Decision::Withdraw);
        assert_eq!(decide(true, false, 0, a, b, now), Decision::Withdrawn);
        assert_eq!(decide(true, false, now, a, a, now), Decision::Withdrawn);
    }
}
