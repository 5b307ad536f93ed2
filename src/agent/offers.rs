//! The offer desk: what the agent does with an `Offer` message. The offer
//! must come from its buyer over the link (the handshake proved who that
//! is), carry the buyer's EIP-712 signature, be proposed on chain under
//! the same hash for this gateway, and pass admission; then the agent
//! accepts on chain and records the lease. Asked again about an offer it
//! already decided, it answers the same way without a second transaction.

use std::sync::RwLock;

use alloy_primitives::{Address, B256};

use super::admission::{Policy, admit};
use super::lease::{Lease, LeaseBook, State};
use crate::chain::eip712::{self, Offer};
use crate::chain::tx::TxSender;
use crate::chain::{Deployment, Rpc};
use crate::edgex::catalogue::Catalogue;
use crate::market;
use crate::p2p::handshake::recover;
use crate::p2p::{Body, OfferTerms};

/// The Market contract's `State.Proposed`.
const PROPOSED: u8 = 1;

pub struct OfferDesk<'a> {
    pub book: &'a LeaseBook,
    pub policy: &'a Policy,
    pub catalogue: &'a RwLock<Catalogue>,
    pub rpc: &'a Rpc,
    pub deployment: &'a Deployment,
    /// Sends the gateway's transactions.
    pub seller: &'a TxSender<'a>,
}

impl OfferDesk<'_> {
    /// The answer to an `Offer` from `peer`: `OfferAccepted` or
    /// `OfferRefused` with the reason.
    pub fn take(&self, peer: Address, terms: &OfferTerms, signature: &[u8], now: u64) -> Body {
        let mut id = [0u8; 32];
        match self.decide(peer, terms, signature, now, &mut id) {
            Ok(()) => Body::OfferAccepted { lease: id },
            Err(reason) => {
                log::info!(
                    "offer 0x{} refused: {reason}",
                    alloy_primitives::hex::encode(id)
                );
                Body::OfferRefused { lease: id, reason }
            }
        }
    }

    fn decide(
        &self,
        peer: Address,
        terms: &OfferTerms,
        signature: &[u8],
        now: u64,
        id_out: &mut [u8; 32],
    ) -> Result<(), String> {
        let buyer = Address::from(terms.buyer);
        if buyer != peer {
            return Err(format!(
                "the offer names buyer {buyer}, but this link is with {peer}"
            ));
        }
        let offer = Offer::try_from(terms)?;
        let domain = eip712::market_domain(self.deployment.chain_id, self.deployment.market);
        let id: B256 = eip712::offer_hash(&offer, &domain);
        *id_out = id.0;
        let signer = recover(&id, signature).map_err(|e| format!("offer signature: {e}"))?;
        if signer != buyer {
            return Err(format!(
                "the offer is signed by {signer}, not by its buyer {buyer}"
            ));
        }
        if let Some(known) = self.book.get(&id.0).map_err(|e| e.to_string())? {
            return match known.state {
                State::Refused | State::Expired => {
                    Err(known.reason.unwrap_or_else(|| known.state.name().into()))
                }
                _ => Ok(()),
            };
        }
        let on_chain = market::lease(self.rpc, self.deployment, id)
            .map_err(|e| format!("cannot read the offer on chain: {e}"))?;
        if on_chain.state != PROPOSED
            || on_chain.buyer != buyer
            || on_chain.gateway != self.policy.gateway
        {
            return Err(format!(
                "offer {id} is not proposed on chain to this gateway (state {})",
                on_chain.state
            ));
        }
        let leases = self.book.all().map_err(|e| e.to_string())?;
        let verdict = {
            let cat = self.catalogue.read().unwrap_or_else(|p| p.into_inner());
            admit(self.policy, terms, &leases, &cat, now)
        };
        self.book
            .insert(&Lease::offered(id.0, terms.clone(), now))
            .map_err(|e| e.to_string())?;
        if let Err(reason) = verdict {
            self.refuse(&id, &reason, now);
            return Err(reason);
        }
        if let Err(e) = market::accept(self.seller, self.deployment, id) {
            let reason = format!("accepting on chain failed: {e}");
            self.refuse(&id, &reason, now);
            return Err(reason);
        }
        self.book
            .transition(&id.0, State::Accepted, now, None, |_| {})
            .map_err(|e| e.to_string())?;
        log::info!("lease {id} accepted for buyer {buyer}");
        Ok(())
    }

    fn refuse(&self, id: &B256, reason: &str, now: u64) {
        if let Err(e) =
            self.book
                .transition(&id.0, State::Refused, now, Some(reason.into()), |_| {})
        {
            log::error!("lease {id}: cannot record the refusal: {e}");
        }
    }
}
