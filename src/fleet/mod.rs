//! The operator's side of fleet management: post a command to a gateway
//! (numbered and addressed as the gateway will check it), and read the
//! fleet from the chain alone: every gateway bound to the operator, its
//! commands and their reported outcomes, its advert, leases and earnings.
//!
//! Events are read from the chain's first block (`eth_getLogs` over the
//! whole range, as `market::invoice` does): right for a devnet and for
//! nodes that allow it; a large public chain would want a start block or an
//! indexer, which this does not have yet.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::SolEvent;
use serde_json::json;

use crate::chain::bindings::{IAgentControl, IMarket, IRegistry};
use crate::chain::tx::{Log, Receipt, TxSender, view};
use crate::chain::{Deployment, Rpc};
use crate::control::{Command, Envelope, Outcome};
use crate::market::MarketState;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Chain(#[from] crate::chain::Error),
    #[error("{0}")]
    Refused(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Logs of `address` matching `topics`, from the first block.
fn logs(rpc: &Rpc, address: Address, topics: serde_json::Value) -> Result<Vec<Log>> {
    Ok(rpc.call(
        "eth_getLogs",
        json!([{"fromBlock": "0x0", "toBlock": "latest", "address": address, "topics": topics}]),
    )?)
}

/// Every gateway whose operator is `operator` now: bound to it or
/// transferred to it, and still its.
pub fn gateways_of(rpc: &Rpc, d: &Deployment, operator: Address) -> Result<Vec<Address>> {
    let who = operator.into_word();
    let mut found: Vec<Address> = Vec::new();
    for l in logs(
        rpc,
        d.registry,
        json!([IRegistry::GatewayRegistered::SIGNATURE_HASH, null, who]),
    )? {
        if let Ok(e) =
            IRegistry::GatewayRegistered::decode_raw_log(l.topics.iter().copied(), &l.data)
        {
            found.push(e.gateway);
        }
    }
    for l in logs(
        rpc,
        d.registry,
        json!([
            IRegistry::GatewayTransferred::SIGNATURE_HASH,
            null,
            null,
            who
        ]),
    )? {
        if let Ok(e) =
            IRegistry::GatewayTransferred::decode_raw_log(l.topics.iter().copied(), &l.data)
        {
            found.push(e.gateway);
        }
    }
    found.sort();
    found.dedup();
    let mut mine = Vec::new();
    for g in found {
        let now: Address = view(rpc, d.registry, &IRegistry::operatorOfCall { gateway: g })?;
        if now == operator {
            mine.push(g);
        }
    }
    Ok(mine)
}

/// One command of a gateway and what it reported of it.
#[derive(Debug, Clone)]
pub struct CommandView {
    pub seq: u64,
    pub operator: Address,
    /// Its name, or why it does not decode.
    pub command: String,
    pub outcome: Option<Outcome>,
    pub detail: String,
}

/// The gateway's last report.
#[derive(Debug, Clone)]
pub struct Report {
    pub seq: u64,
    pub outcome: Outcome,
    pub config_version: u64,
    pub agent: String,
}

#[derive(Debug, Clone)]
pub struct GatewayView {
    pub gateway: Address,
    /// Commands posted for it, and the last it reported on.
    pub posted: u64,
    pub reported: u64,
    pub last_report: Option<Report>,
    pub advert_expiry: u64,
    pub advert_live: bool,
    pub endpoint: Option<String>,
    /// Leases by the Market's state name.
    pub leases: BTreeMap<&'static str, u64>,
    /// What settled leases' invoices say the gateway was paid.
    pub earned: u128,
    pub commands: Vec<CommandView>,
}

impl GatewayView {
    /// The configuration version the gateway is at, if every command was
    /// reported (otherwise one in flight may change it).
    pub fn settled_version(&self) -> Option<u64> {
        (self.reported == self.posted)
            .then(|| self.last_report.as_ref().map_or(0, |r| r.config_version))
    }
}

/// What the chain says of `gateway`.
pub fn gateway_view(rpc: &Rpc, d: &Deployment, gateway: Address) -> Result<GatewayView> {
    let g = gateway.into_word();
    let posted: u64 = view(rpc, d.control, &IAgentControl::sequenceCall { gateway })?;
    let reported: u64 = view(rpc, d.control, &IAgentControl::reportedCall { gateway })?;
    let mut commands: BTreeMap<u64, CommandView> = BTreeMap::new();
    for l in logs(
        rpc,
        d.control,
        json!([IAgentControl::Command::SIGNATURE_HASH, g]),
    )? {
        let Ok(e) = IAgentControl::Command::decode_raw_log(l.topics.iter().copied(), &l.data)
        else {
            continue;
        };
        let command = match Envelope::decode(&e.command) {
            Ok(env) => env.command.name().to_string(),
            Err(why) => format!("? ({why})"),
        };
        commands.insert(
            e.seq,
            CommandView {
                seq: e.seq,
                operator: e.operator,
                command,
                outcome: None,
                detail: String::new(),
            },
        );
    }
    let mut last_report = None;
    for l in logs(
        rpc,
        d.control,
        json!([IAgentControl::Reported::SIGNATURE_HASH, g]),
    )? {
        let Ok(e) = IAgentControl::Reported::decode_raw_log(l.topics.iter().copied(), &l.data)
        else {
            continue;
        };
        let Some(outcome) = Outcome::from_code(e.outcome) else {
            continue;
        };
        if let Some(c) = commands.get_mut(&e.seq) {
            c.outcome = Some(outcome);
            c.detail = crate::logger::printable(&e.detail, 256);
        }
        last_report = Some(Report {
            seq: e.seq,
            outcome,
            config_version: e.configVersion,
            agent: crate::logger::printable(&e.agent, 64),
        });
    }
    let advert: IRegistry::Advert = view(rpc, d.registry, &IRegistry::advertOfCall { gateway })?;
    let advert_live: bool = view(rpc, d.registry, &IRegistry::isLiveCall { gateway })?;
    let endpoint = logs(
        rpc,
        d.registry,
        json!([IRegistry::Advertised::SIGNATURE_HASH, g]),
    )?
    .iter()
    .rev()
    .find_map(|l| IRegistry::Advertised::decode_raw_log(l.topics.iter().copied(), &l.data).ok())
    .map(|e| crate::logger::printable(&e.endpoint, 256));
    let mut leases: BTreeMap<&'static str, u64> = BTreeMap::new();
    for l in logs(
        rpc,
        d.market,
        json!([IMarket::OfferAccepted::SIGNATURE_HASH, null, null, g]),
    )? {
        let Some(id) = l.topics.get(1).copied() else {
            continue;
        };
        let lease: IMarket::Lease = view(rpc, d.market, &IMarket::leaseOfCall { leaseId: id })?;
        let state = MarketState::try_from(lease.state).map_or("unknown", |s| s.name());
        *leases.entry(state).or_default() += 1;
    }
    let mut earned: u128 = 0;
    for l in logs(
        rpc,
        d.market,
        json!([IMarket::Invoice::SIGNATURE_HASH, null, null, g]),
    )? {
        if let Ok(e) = IMarket::Invoice::decode_raw_log(l.topics.iter().copied(), &l.data) {
            earned = earned.saturating_add(e.sellerReported.to::<u128>());
        }
    }
    Ok(GatewayView {
        gateway,
        posted,
        reported,
        last_report,
        advert_expiry: advert.expiry.to::<u64>(),
        advert_live,
        endpoint,
        leases,
        earned,
        commands: commands.into_values().collect(),
    })
}

/// Posts `command` for `gateway` as the next command, good until
/// `expiry`. A configuration command names `expects`, or the version the
/// gateway reported last when every command has been reported (two changes
/// in flight would otherwise race); its sequence number is the next one.
pub fn post(
    operator: &TxSender,
    d: &Deployment,
    gateway: Address,
    command: Command,
    expiry: u64,
    expects: Option<u64>,
) -> Result<(u64, Receipt)> {
    let rpc = operator.rpc();
    let owner: Address = view(rpc, d.registry, &IRegistry::operatorOfCall { gateway })?;
    if owner != operator.address() {
        return Err(Error::Refused(format!(
            "gateway {gateway} is operated by {owner}, not by {}",
            operator.address()
        )));
    }
    if !command.is_configuration() && expects.is_some() {
        return Err(Error::Refused(format!(
            "{} is not a configuration change and takes no configuration version",
            command.name()
        )));
    }
    let expects = if command.is_configuration() {
        match expects {
            Some(v) => Some(v),
            None => Some(gateway_view(rpc, d, gateway)?.settled_version().ok_or_else(|| {
                Error::Refused(format!(
                    "gateway {gateway} has not reported on every command yet, so its configuration version is not known: wait, or pass --expects VERSION"
                ))
            })?),
        }
    } else {
        None
    };
    let posted: u64 = view(rpc, d.control, &IAgentControl::sequenceCall { gateway })?;
    let seq = posted + 1;
    let envelope = Envelope {
        chain_id: d.chain_id,
        control: d.control,
        gateway,
        seq,
        expiry,
        expects,
        command,
    };
    let receipt = operator.execute(
        d.control,
        &IAgentControl::postCall {
            gateway,
            command: envelope.encode().into(),
        },
    )?;
    Ok((seq, receipt))
}

/// `U256` wei as a decimal string (JSON keeps it exact).
pub fn wei(v: u128) -> String {
    U256::from(v).to_string()
}

/// The lease id an eviction names, from its hex text.
pub fn lease_id(text: &str) -> Result<[u8; 32]> {
    text.parse::<B256>()
        .map(|b| b.0)
        .map_err(|_| Error::Refused(format!("`{text}` is not a lease id (0x and 64 hex digits)")))
}
