//! The market flows of the paper, as library functions over the chain
//! client: bind and advertise a gateway, list live adverts, offer, accept,
//! escrow the fee, terminate, read the invoice.

pub mod capabilities;
pub mod state;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{Address, B256, Bytes, U256, Uint};
use alloy_sol_types::SolEvent;
use serde_json::{Value, json};

use crate::chain::bindings::{IEDGToken, IMarket, IRegistry};
use crate::chain::tx::{Log, Receipt, TxSender, view};
use crate::chain::{Deployment, Rpc, Signer, eip712};
pub use capabilities::Capabilities;
pub use state::{Flags, LeaseId, MarketState, Rules};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Chain(#[from] crate::chain::Error),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The operator binds `gateway`: the gateway key signs its consent, the
/// operator's transaction carries it.
pub fn register_gateway(operator: &TxSender, gateway: &Signer, d: &Deployment) -> Result<Receipt> {
    let nonce: U256 = view(
        operator.rpc(),
        d.registry,
        &IRegistry::bindingNonceCall {
            gateway: gateway.address(),
        },
    )?;
    let deadline = U256::from(now() + 3600);
    let digest = eip712::binding_digest(
        gateway.address(),
        operator.address(),
        nonce,
        deadline,
        &eip712::registry_domain(operator.chain_id(), d.registry),
    );
    let sig = gateway.sign_hash(&digest)?;
    Ok(operator.execute(
        d.registry,
        &IRegistry::registerGatewayCall {
            gateway: gateway.address(),
            deadline,
            signature: Bytes::from(sig.as_bytes().to_vec()),
        },
    )?)
}

/// Approves `spender` for `amount` of the sender's EDG if the allowance is short.
fn ensure_allowance(tx: &TxSender, d: &Deployment, spender: Address, amount: U256) -> Result<()> {
    let have: U256 = tx.view(
        d.token,
        &IEDGToken::allowanceCall {
            owner: tx.address(),
            spender,
        },
    )?;
    if have < amount {
        tx.execute(
            d.token,
            &IEDGToken::approveCall {
                spender,
                value: amount,
            },
        )?;
    }
    Ok(())
}

/// The registry's bound on a capability URI (`Registry.MAX_URI`).
const MAX_URI: usize = 4096;

/// Whether `caps` can be advertised: a price the registry takes (not
/// zero, under 2^96) and a document that fits its URI bound. Its price.
pub fn check_advert(caps: &Capabilities) -> Result<Uint<96, 2>> {
    let (_, _, uri) = caps.encode();
    if uri.len() > MAX_URI {
        return Err(Error::Invalid(format!(
            "the capability document takes {} bytes, the registry keeps {MAX_URI}",
            uri.len()
        )));
    }
    let price = caps.reference_price();
    if price == 0 {
        return Err(Error::Invalid("the advert price is zero".into()));
    }
    Uint::<96, 2>::try_from(price)
        .map_err(|_| Error::Invalid("the advert price exceeds 2^96".into()))
}

/// The gateway advertises itself (`dedge_advertise`), paying the advert fee.
pub fn advertise(
    gateway: &TxSender,
    d: &Deployment,
    endpoint: &str,
    caps: &Capabilities,
    ttl: Duration,
) -> Result<Receipt> {
    let price = check_advert(caps)?;
    let fee: U256 = gateway.view(d.registry, &IRegistry::advertFeeCall {})?;
    ensure_allowance(gateway, d, d.registry, fee)?;
    let (_, hash, uri) = caps.encode();
    Ok(gateway.execute(
        d.registry,
        &IRegistry::advertiseCall {
            gateway: gateway.address(),
            endpoint: endpoint.to_string(),
            capabilitiesHash: hash,
            capabilitiesURI: uri,
            pricePerSecond: price,
            expiry: Uint::from(now() + ttl.as_secs()),
        },
    )?)
}

/// A live advert with its endpoint and checked capability document.
#[derive(Debug, Clone)]
pub struct Listing {
    pub gateway: Address,
    pub operator: Address,
    pub endpoint: String,
    /// EDG base units per second for one core and one GiB.
    pub price_per_second: u128,
    pub expiry: u64,
    /// The document, or why it could not be read or did not match its hash.
    pub capabilities: std::result::Result<Capabilities, String>,
}

/// Every live advert: one view call for current state, then the
/// `Advertised` events holding endpoints and documents, in one batch.
pub fn live_adverts(rpc: &Rpc, d: &Deployment) -> Result<Vec<Listing>> {
    const PAGE: u64 = 200;
    let mut found = Vec::new();
    let count: U256 = view(rpc, d.registry, &IRegistry::advertCountCall {})?;
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let mut offset = 0u64;
    while offset < count {
        let page = view(
            rpc,
            d.registry,
            &IRegistry::liveAdvertsCall {
                offset: U256::from(offset),
                limit: U256::from(PAGE),
            },
        )?;
        found.extend(page.gateways.into_iter().zip(page.adverts));
        offset += PAGE;
    }
    let calls: Vec<(&str, Value)> = found
        .iter()
        .map(|(gw, a)| {
            let block = alloy_primitives::U64::from(a.advertisedAt);
            (
                "eth_getLogs",
                json!([{"fromBlock": block, "toBlock": block, "address": d.registry,
                        "topics": [IRegistry::Advertised::SIGNATURE_HASH, gw.into_word()]}]),
            )
        })
        .collect();
    let answers = rpc.batch(&calls)?;
    let mut listings = Vec::new();
    for ((gateway, advert), answer) in found.into_iter().zip(answers) {
        let logs: Vec<Log> = serde_json::from_value(answer?)
            .map_err(|e| Error::Invalid(format!("Advertised logs for {gateway}: {e}")))?;
        // The newest event in that block is the one storage reflects.
        let Some(event) = logs.iter().rev().find_map(|l| {
            IRegistry::Advertised::decode_raw_log(l.topics.iter().copied(), &l.data).ok()
        }) else {
            continue;
        };
        listings.push(Listing {
            gateway,
            operator: event.operator,
            endpoint: event.endpoint,
            price_per_second: advert.pricePerSecond.to::<u128>(),
            expiry: advert.expiry.to::<u64>(),
            capabilities: Capabilities::decode(&event.capabilitiesURI, advert.capabilitiesHash),
        });
    }
    Ok(listings)
}

/// The buyer writes its offer on chain; returns the lease id (the offer's
/// EIP-712 hash, which the contract computes too).
pub fn propose(buyer: &TxSender, d: &Deployment, offer: &eip712::Offer) -> Result<B256> {
    if offer.buyer != buyer.address() {
        return Err(Error::Invalid("the offer names another buyer".into()));
    }
    let id = eip712::offer_hash(offer, &eip712::market_domain(buyer.chain_id(), d.market));
    buyer.execute(
        d.market,
        &IMarket::proposeOfferCall {
            offer: offer.clone(),
        },
    )?;
    Ok(id)
}

pub fn accept(gateway: &TxSender, d: &Deployment, lease: B256) -> Result<Receipt> {
    Ok(gateway.execute(d.market, &IMarket::acceptOfferCall { offerHash: lease })?)
}

/// `dedge_fee`: approves exactly the fee if needed, then escrows it.
pub fn deposit_fee(buyer: &TxSender, d: &Deployment, lease: B256) -> Result<Receipt> {
    let fee: U256 = buyer.view(d.market, &IMarket::leaseFeeCall {})?;
    ensure_allowance(buyer, d, d.market, fee)?;
    Ok(buyer.execute(d.market, &IMarket::depositFeeCall { leaseId: lease })?)
}

pub fn terminate(party: &TxSender, d: &Deployment, lease: B256, paid: U256) -> Result<Receipt> {
    let paid = u128::try_from(paid)
        .ok()
        .and_then(|p| Uint::<96, 2>::try_from(p).ok())
        .ok_or_else(|| Error::Invalid("paid amount exceeds 2^96".into()))?;
    Ok(party.execute(
        d.market,
        &IMarket::terminateCall {
            leaseId: lease,
            reportedPaid: paid,
        },
    )?)
}

pub fn lease(rpc: &Rpc, d: &Deployment, lease: B256) -> Result<IMarket::Lease> {
    Ok(view(
        rpc,
        d.market,
        &IMarket::leaseOfCall { leaseId: lease },
    )?)
}

/// A lease as the Market holds it, with its state and flags typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OnChain {
    pub(crate) state: MarketState,
    pub(crate) flags: Flags,
    pub(crate) buyer: Address,
    pub(crate) gateway: Address,
    /// Acceptance time until funded, then the lease start.
    pub(crate) start: u64,
    /// The first termination's time.
    pub(crate) end: u64,
    pub(crate) offer_expiry: u64,
}

/// `leaseOf`, typed: a state outside the contract's enum is an error that
/// names it, never read as some state.
pub(crate) fn lease_on_chain(rpc: &Rpc, d: &Deployment, id: B256) -> Result<OnChain> {
    let l = lease(rpc, d, id)?;
    let state = MarketState::try_from(l.state).map_err(|v| {
        Error::Invalid(format!(
            "lease {id}: market state {v} is not one of the contract's"
        ))
    })?;
    Ok(OnChain {
        state,
        flags: Flags(l.flags),
        buyer: l.buyer,
        gateway: l.gateway,
        start: l.start.to::<u64>(),
        end: l.end.to::<u64>(),
        offer_expiry: l.offerExpiry.to::<u64>(),
    })
}

/// The deployed Market's time rules.
pub fn rules(rpc: &Rpc, d: &Deployment) -> Result<Rules> {
    let secs = |v: U256, what: &str| {
        u64::try_from(v)
            .map_err(|_| Error::Invalid(format!("Market.{what} = {v} does not fit 64 bits")))
    };
    let timeout: U256 = view(rpc, d.market, &IMarket::TERMINATION_TIMEOUTCall {})?;
    let window: U256 = view(rpc, d.market, &IMarket::FUNDING_WINDOWCall {})?;
    Ok(Rules {
        termination_timeout: secs(timeout, "TERMINATION_TIMEOUT")?,
        funding_window: secs(window, "FUNDING_WINDOW")?,
    })
}

/// The latest block's timestamp: the clock the Market's rules run on.
pub(crate) fn chain_time(rpc: &Rpc) -> Result<u64> {
    #[derive(serde::Deserialize)]
    struct Head {
        timestamp: alloy_primitives::U64,
    }
    let head: Head = rpc.call("eth_getBlockByNumber", json!(["latest", false]))?;
    Ok(head.timestamp.to::<u64>())
}

pub fn finalize(party: &TxSender, d: &Deployment, lease: B256) -> Result<Receipt> {
    Ok(party.execute(d.market, &IMarket::finalizeCall { leaseId: lease })?)
}

pub fn cancel(party: &TxSender, d: &Deployment, lease: B256) -> Result<Receipt> {
    Ok(party.execute(d.market, &IMarket::cancelCall { leaseId: lease })?)
}

/// The lease's `Invoice` event, once it has been settled.
pub fn invoice(rpc: &Rpc, d: &Deployment, lease: B256) -> Result<Option<IMarket::Invoice>> {
    let logs: Vec<Log> = rpc.call(
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "latest", "address": d.market,
                "topics": [IMarket::Invoice::SIGNATURE_HASH, lease]}]),
    )?;
    Ok(logs
        .iter()
        .find_map(|l| IMarket::Invoice::decode_raw_log(l.topics.iter().copied(), &l.data).ok()))
}
