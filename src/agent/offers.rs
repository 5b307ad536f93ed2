//! The offer desk: what the agent does with an `Offer` message. The offer
//! must come from its buyer over the link (the handshake proved who that
//! is), carry the buyer's EIP-712 signature, be proposed on chain under
//! the same hash for this gateway, and pass admission. Then the lease is
//! recorded, the accept is recorded as intended (`Accepting`), and only
//! then sent: a crash or a late receipt leaves a record that says an
//! accept may be on its way, which the next tick or restart looks up on
//! chain, and never a lease the chain holds that the agent forgot.
//! Asked again about an offer it already decided, it answers the same way
//! without a second transaction.

use std::sync::{Mutex, RwLock};

use alloy_primitives::Address;

use super::admission::{Policy, admit};
use super::executor::Executor;
use super::lease::{Lease, State, Terms, UnixTime};
use super::machine::{Applied, Effect, Event};
use crate::chain::eip712::{self, Offer};
use crate::chain::{Deployment, Rpc};
use crate::edgex::catalogue::Catalogue;
use crate::market::{self, LeaseId, MarketState};
use crate::p2p::recover;
use crate::p2p::{Body, OfferTerms};

pub struct OfferDesk<'a> {
    pub exec: &'a Executor<'a>,
    /// Read once the admission lock is held: a command changing it waits
    /// for the offer in flight, and the next offer sees the change.
    pub policy: &'a RwLock<Policy>,
    pub catalogue: &'a RwLock<Catalogue>,
    pub rpc: &'a Rpc,
    pub deployment: &'a Deployment,
    /// Held from admission to the accept's record: two offers must not
    /// both fit in room for one.
    pub admission: &'a Mutex<()>,
}

/// How an offer ends at the desk.
enum Outcome {
    Accepted,
    Refused(String),
    /// The accept is sent (or about to be), its outcome unknown.
    Pending(String),
}

impl OfferDesk<'_> {
    /// The answer to an `Offer` from `peer`.
    pub fn take(&self, peer: Address, terms: &OfferTerms, signature: &[u8], now: UnixTime) -> Body {
        let mut id = LeaseId([0; 32]);
        let outcome = self
            .decide(peer, terms, signature, now, &mut id)
            .unwrap_or_else(Outcome::Refused);
        match outcome {
            Outcome::Accepted => Body::OfferAccepted { lease: id.0 },
            Outcome::Refused(reason) => {
                log::info!(
                    "offer {id} refused: {}",
                    crate::logger::untrusted(&reason, 300)
                );
                Body::OfferRefused {
                    lease: id.0,
                    reason,
                }
            }
            Outcome::Pending(detail) => Body::OfferPending {
                lease: id.0,
                detail,
            },
        }
    }

    fn decide(
        &self,
        peer: Address,
        terms: &OfferTerms,
        signature: &[u8],
        now: UnixTime,
        id_out: &mut LeaseId,
    ) -> Result<Outcome, String> {
        let buyer = Address::from(terms.buyer);
        if buyer != peer {
            return Err(format!(
                "the offer names buyer {buyer}, but this link is with {peer}"
            ));
        }
        let offer = Offer::try_from(terms)?;
        let domain = eip712::market_domain(self.deployment.chain_id, self.deployment.market);
        let digest = eip712::offer_hash(&offer, &domain);
        let id = LeaseId::from(digest);
        *id_out = id;
        let signer = recover(&digest, signature).map_err(|e| format!("offer signature: {e}"))?;
        if signer != buyer {
            return Err(format!(
                "the offer is signed by {signer}, not by its buyer {buyer}"
            ));
        }
        // An offer already decided needs no admission: its chain lookup
        // must not hold other buyers' offers up.
        if let Some(known) = self.exec.book.get(&id).map_err(|e| e.to_string())? {
            return Ok(self.known(known, now));
        }
        let admission = self.admission.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = self.exec.book.get(&id).map_err(|e| e.to_string())? {
            drop(admission);
            return Ok(self.known(known, now));
        }
        let policy = self
            .policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let on_chain = market::lease_on_chain(self.rpc, self.deployment, digest)
            .map_err(|e| format!("cannot read the offer on chain: {e}"))?;
        if on_chain.state != MarketState::Proposed
            || on_chain.buyer != buyer
            || on_chain.gateway != policy.gateway
        {
            return Err(format!(
                "offer {id} is not proposed on chain to this gateway (it is {})",
                on_chain.state
            ));
        }
        let leases = self.exec.book.all().map_err(|e| e.to_string())?;
        let verdict = {
            let cat = self.catalogue.read().unwrap_or_else(|p| p.into_inner());
            admit(&policy, terms, &leases, &cat, now.0)
        };
        let book = self.exec.book;
        book.insert(&Lease::offered(id, Terms::from(terms), now))
            .map_err(|e| e.to_string())?;
        if let Err(reason) = verdict {
            book.apply(&id, &Event::Refused(reason.clone()), now)
                .map_err(|e| e.to_string())?;
            return Ok(Outcome::Refused(reason));
        }
        // The intent is durable before the accept goes out.
        let admitted = book
            .apply(&id, &Event::Admitted, now)
            .map_err(|e| e.to_string())?;
        drop(admission);
        Ok(match self.exec.carry_out(admitted, now) {
            Ok(l) if l.state == State::Accepted => Outcome::Accepted,
            Ok(l) => Outcome::Pending(format!("lease {id} is {}", l.state.name())),
            Err(e) if refused_by_chain(&e) => {
                // A revert may be a re-sent accept losing to one already
                // mined: the chain decides, not the error.
                let current = book
                    .get(&id)
                    .map_err(|e| e.to_string())?
                    .ok_or("the lease vanished from the book")?;
                let seen = self.exec.carry_out(
                    Applied {
                        lease: current,
                        effects: vec![Effect::ReadChain],
                        changed: false,
                    },
                    now,
                );
                match seen {
                    Ok(l) if l.state == State::Accepting => {
                        // Still only proposed, and our accept reverted.
                        let reason =
                            format!("accepting on chain failed: {}", crate::logger::chain(&e));
                        book.apply(&id, &Event::Refused(reason.clone()), now)
                            .map_err(|e| e.to_string())?;
                        Outcome::Refused(reason)
                    }
                    Ok(l) => self.known(l, now),
                    Err(_) => Outcome::Pending(format!(
                        "the accept of lease {id} is not confirmed yet; send the offer again"
                    )),
                }
            }
            Err(e) => {
                log::warn!(
                    "lease {id}: accept not confirmed: {}",
                    crate::logger::untrusted(&crate::logger::chain(&e), 300)
                );
                Outcome::Pending(format!(
                    "the accept of lease {id} is sent but not confirmed yet; send the offer again"
                ))
            }
        })
    }

    /// The answer for an offer already in the book: the same as before;
    /// an accept still pending is looked up on chain first.
    fn known(&self, known: Lease, now: UnixTime) -> Outcome {
        let l = match known.state {
            State::Accepting => match self.exec.carry_out(
                Applied {
                    lease: known.clone(),
                    effects: vec![Effect::ReadChain],
                    changed: false,
                },
                now,
            ) {
                Ok(l) => l,
                Err(e) => {
                    log::warn!("lease {}: {}", known.id, crate::logger::chain(&e));
                    known
                }
            },
            _ => known,
        };
        match l.state {
            State::Refused | State::Expired => {
                Outcome::Refused(l.reason.unwrap_or_else(|| l.state.name().into()))
            }
            State::Offered | State::Accepting => Outcome::Pending(format!(
                "the accept of lease {} is not confirmed yet; send the offer again",
                l.id
            )),
            _ => Outcome::Accepted,
        }
    }
}

/// The chain said no to the accept for good: nothing happened on chain.
fn refused_by_chain(e: &super::Error) -> bool {
    match e {
        super::Error::Chain { source, .. } => {
            matches!(source.as_ref(), market::Error::Chain(c) if c.is_revert())
        }
        _ => false,
    }
}
