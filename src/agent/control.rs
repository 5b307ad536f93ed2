//! The operator's commands, followed and applied (docs/PROTOCOL.md §7).
//!
//! `Command` events of the board's AgentControl come through a
//! `chain::events::Follower`: behind the board's confirmations, each log
//! checked against its block's receipts root, reorgs seen by block hash.
//! Each command is taken in sequence order:
//!
//! - its decision (`control::decide`) is recorded, with the configuration
//!   in force after it, and made durable **before** any effect; an action
//!   (an eviction) is marked done only after it is carried out, so a
//!   restart between the two finishes it, and never decides it again;
//! - a command whose number is past the next one expected is a gap (the
//!   node left one out): the follower's cursor does not move, and the same
//!   range is read again until the missing one comes (never skipped);
//! - a reorg suspends the records of the blocks it replaced: their
//!   configuration is out of force at once. When the new chain delivers
//!   the same command (same number and bytes) it is reinstated without
//!   being applied a second time; a different one undoes the suspended
//!   ones from there and is decided afresh; one the chain no longer has
//!   (its counter is below it) is undone for good. An eviction cannot be
//!   undone: the lease it ended stays ended.
//!
//! The outcome of each is reported on chain (`AgentControl.report`), in
//! order, by `report_next`: level-triggered from the contract's counter,
//! so a report lost to a reorg is sent again.

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::SolEvent;
use serde::{Deserialize, Serialize};

use crate::chain::bindings::IAgentControl;
use crate::chain::events::{Filter, Follower, Update};
use crate::chain::tx::{TxSender, view};
use crate::chain::{Deployment, Rpc};
use crate::control::command::DeviceSale;
use crate::control::decide::{Action, Gateway, Leased};
use crate::control::{Decision, Outcome, Overlay, Posted, decide};
use crate::logger;
use crate::store::Tree;

/// How many reported records are kept (the status shows the newest).
const KEEP: u64 = 256;
/// The most of a detail a record keeps and a report carries
/// (`AgentControl.MAX_DETAIL`).
const MAX_DETAIL: usize = 256;

/// Something the record says is still to be done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Todo {
    Evict { lease: [u8; 32], reason: String },
}

/// One decided command, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub seq: u64,
    /// keccak256 of the command's bytes: the same command again is this.
    pub hash: B256,
    pub block: u64,
    /// That block's hash: the report names it, so a report signed on a
    /// chain a reorg replaced cannot be mined for the new chain's command.
    pub block_hash: B256,
    pub operator: Address,
    /// The command's name (`pause`, ...), or `?` when it did not decode.
    pub command: String,
    pub outcome: Outcome,
    pub detail: String,
    /// The configuration in force once it was taken.
    pub overlay: Overlay,
    /// An effect not yet carried out.
    pub todo: Option<Todo>,
    /// Its block was replaced by a reorg and the new chain has not yet
    /// said whether it still holds it.
    pub suspended: bool,
    /// When it was decided, unix milliseconds (the status shows it; the
    /// benchmark measures mined → applied with it).
    pub taken_ms: u64,
}

/// What the agent does for a command: read its state, carry out effects.
pub(crate) trait Effects {
    /// What running leases hold, and what of the devices they were sold
    /// (device, command, for writing). `Err`: the lease book cannot say.
    fn held(&self) -> std::result::Result<Leased, String>;
    /// What is on sale now, under `overlay`.
    fn devices(&self, overlay: &Overlay) -> Vec<DeviceSale>;
    fn has_edgex(&self) -> bool;
    /// Whether the prices in force under `overlay` include a device price.
    fn device_priced(&self, overlay: &Overlay) -> bool;
    fn ceiling(&self) -> crate::control::command::Capacity;
    /// Whether EdgeX serves `add` as offered: `Ok(Err(why))` it does not,
    /// `Err(why)` it did not answer (the command waits).
    fn check_devices(
        &self,
        add: &[DeviceSale],
    ) -> std::result::Result<std::result::Result<(), String>, String>;
    /// Whether the gateway can advertise what `overlay` sells (its
    /// capability document, with EdgeX's detail of each device, fits the
    /// registry; its price the contract): `Ok(Err(why))` it cannot,
    /// `Err(why)` EdgeX did not answer (the command waits).
    fn check_configuration(
        &self,
        overlay: &Overlay,
    ) -> std::result::Result<std::result::Result<(), String>, String>;
    /// Ends the lease for the time served. `Ok(false)`: it is not one of
    /// this gateway's live leases.
    fn evict(&self, lease: [u8; 32], reason: &str) -> std::result::Result<bool, String>;
    /// Puts `overlay` in force (the policy, the advert, the catalogue, the
    /// log level).
    fn configure(&self, overlay: &Overlay);
}

/// Whether a command was taken or must wait.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    Done,
    /// Its number is past `expected`: wait for the missing one.
    Gap {
        expected: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("the command records")]
    Store(#[source] crate::store::Error),
    #[error("the chain")]
    Chain(#[source] crate::chain::Error),
    #[error("a Command log that does not decode: {0}")]
    BadLog(String),
    /// What the decision needs cannot be read now: the command waits.
    #[error("command {seq} waits: {why}")]
    Wait { seq: u64, why: String },
}

type Result<T> = std::result::Result<T, Error>;

/// A reason as a record keeps it and a report carries it: control
/// characters escaped, at most `MAX_DETAIL` bytes (the contract's bound is
/// in bytes: a longer one would make every later report revert).
fn detail(text: &str) -> String {
    let mut out = logger::printable(text, MAX_DETAIL);
    while out.len() > MAX_DETAIL {
        out.pop();
    }
    out
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// The gateway's command records.
pub(crate) struct Controller {
    chain_id: u64,
    control: Address,
    registry: Address,
    gateway: Address,
    records: Tree,
}

impl Controller {
    pub(crate) fn new(records: Tree, d: &Deployment, gateway: Address) -> Controller {
        Controller {
            chain_id: d.chain_id,
            control: d.control,
            registry: d.registry,
            gateway,
            records,
        }
    }

    fn all(&self) -> Result<Vec<Record>> {
        self.records
            .iter::<Record>()
            .map(|r| r.map(|(_, v)| v).map_err(Error::Store))
            .collect()
    }

    fn get(&self, seq: u64) -> Result<Option<Record>> {
        self.records.get(key(seq)).map_err(Error::Store)
    }

    /// The newest record in force (not suspended).
    fn last(&self) -> Result<Option<Record>> {
        Ok(self.all()?.into_iter().rev().find(|r| !r.suspended))
    }

    /// The configuration in force: the last record's, or the board's alone.
    pub(crate) fn overlay(&self) -> Result<Overlay> {
        Ok(self.last()?.map(|r| r.overlay).unwrap_or_default())
    }

    /// The newest records, newest first, for the status.
    pub(crate) fn recent(&self, n: usize) -> Vec<Record> {
        let mut all = self.all().unwrap_or_default();
        all.reverse();
        all.truncate(n);
        all
    }

    fn write(&self, r: &Record) -> Result<()> {
        self.records.put(key(r.seq), r).map_err(Error::Store)?;
        self.records.flush().map_err(Error::Store)
    }

    /// At start: effects recorded but not carried out are carried out now.
    pub(crate) fn finish(&self, fx: &dyn Effects) -> Result<()> {
        for r in self.all()? {
            if r.todo.is_some() && !r.suspended {
                self.carry_out(r, fx)?;
            }
        }
        Ok(())
    }

    fn carry_out(&self, mut r: Record, fx: &dyn Effects) -> Result<()> {
        let Some(Todo::Evict { lease, reason }) = r.todo.take() else {
            return Ok(());
        };
        match fx.evict(lease, &reason) {
            Ok(true) => {}
            Ok(false) => {
                r.outcome = Outcome::Refused;
                r.detail = format!("lease {} is not running here", B256::from(lease));
            }
            Err(e) => {
                r.outcome = Outcome::Failed;
                r.detail = detail(&e);
            }
        }
        log::info!(
            "command {}: evict lease {}: {}",
            r.seq,
            B256::from(lease),
            r.outcome.name()
        );
        self.write(&r)
    }

    /// Takes command `posted`, mined in `block`.
    pub(crate) fn take(
        &self,
        posted: Posted<'_>,
        (block, block_hash): (u64, B256),
        operator_now: Address,
        now: u64,
        fx: &dyn Effects,
    ) -> Result<Taken> {
        let last = self.last()?;
        let expected = last.as_ref().map_or(1, |r| r.seq + 1);
        // The same command is the same bytes from the same operator.
        let hash = keccak256([posted.operator.as_slice(), posted.bytes].concat());
        if posted.seq < expected {
            // Delivered again (a replayed range after a restart): the
            // decision stands; an effect cut short is finished.
            match self.get(posted.seq)? {
                Some(mut r) if r.hash == hash => {
                    // Taken again from another block (a reorg the follower
                    // missed moved it): the report must name this one.
                    if (r.block, r.block_hash) != (block, block_hash) {
                        r.block = block;
                        r.block_hash = block_hash;
                        self.write(&r)?;
                    }
                    if r.todo.is_some() {
                        self.carry_out(r, fx)?;
                    }
                }
                Some(_) => {
                    // A verified log that differs from what was taken: the
                    // chain changed under a reorg the follower did not
                    // report (remembered too few blocks, or a crash between
                    // its rewind and the suspension). The chain wins.
                    log::warn!(
                        "command {} now reads differently from the one taken: a reorg; taking the chain's",
                        posted.seq
                    );
                    self.undo_from(posted.seq)?;
                    fx.configure(&self.overlay()?);
                    return self.take(posted, (block, block_hash), operator_now, now, fx);
                }
                None => {}
            }
            return Ok(Taken::Done);
        }
        if posted.seq > expected {
            return Ok(Taken::Gap { expected });
        }
        if let Some(mut old) = self.get(posted.seq)? {
            if old.hash == hash {
                // The same command on the new chain: back in force, not
                // applied again.
                old.suspended = false;
                old.block = block;
                old.block_hash = block_hash;
                self.write(&old)?;
                log::info!("command {}: the same on the new chain, reinstated", old.seq);
                if old.todo.is_some() {
                    self.carry_out(old.clone(), fx)?;
                }
                fx.configure(&self.overlay()?);
                return Ok(Taken::Done);
            }
            self.undo_from(posted.seq)?;
        }
        let overlay = last.map(|r| r.overlay).unwrap_or_default();
        let devices = fx.devices(&overlay);
        let wait = |why: String| Error::Wait {
            seq: posted.seq,
            why,
        };
        let Leased { held, sold } = fx.held().map_err(wait)?;
        // EdgeX is asked only once every other check passed (an expired or
        // misaddressed devices command is refused without it); EdgeX not
        // answering is not a refusal: the command is asked again at the
        // next poll, and refused once it expires.
        let envelope = crate::control::Envelope::decode(posted.bytes).ok();
        let unanswered: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        let check = |add: &[DeviceSale]| match fx.check_devices(add) {
            Ok(verdict) => verdict,
            Err(why) => {
                *unanswered.borrow_mut() = Some(why.clone());
                Err(why)
            }
        };
        let g = Gateway {
            chain_id: self.chain_id,
            control: self.control,
            address: self.gateway,
            operator: operator_now,
            now,
            overlay: &overlay,
            ceiling: fx.ceiling(),
            devices: &devices,
            has_edgex: fx.has_edgex(),
            device_priced: fx.device_priced(&overlay),
            held,
            granted: &sold,
            check_devices: &check,
        };
        let name = envelope.as_ref().map_or("?", |e| e.command.name());
        let decision = decide(posted, &g);
        if let Some(why) = unanswered.into_inner() {
            return Err(wait(why));
        }
        let mut r = Record {
            seq: posted.seq,
            hash,
            block,
            block_hash,
            operator: posted.operator,
            command: name.into(),
            outcome: Outcome::Applied,
            detail: String::new(),
            overlay: overlay.clone(),
            todo: None,
            suspended: false,
            taken_ms: unix_ms(),
        };
        match decision {
            Decision::Configure(o) => match fx.check_configuration(&o).map_err(wait)? {
                Ok(()) => r.overlay = *o,
                Err(why) => {
                    r.outcome = Outcome::Refused;
                    r.detail = detail(&why);
                }
            },
            Decision::Act(Action::Evict { lease, reason }) => {
                r.todo = Some(Todo::Evict { lease, reason })
            }
            Decision::Refuse(why) => {
                r.outcome = Outcome::Refused;
                r.detail = detail(&why);
            }
        }
        // A record that could not be stored would be decided again at
        // every poll and hold every later command up: refused instead.
        let size = postcard::to_stdvec(&r).map_or(usize::MAX, |b| b.len());
        if size > crate::store::MAX_RECORD - 512 {
            r.outcome = Outcome::Refused;
            r.detail = format!(
                "the configuration would take {size} bytes to keep, over the gateway's limit"
            );
            r.overlay = overlay;
            r.todo = None;
        }
        // Intent before effect.
        self.write(&r)?;
        log::info!(
            "command {} ({name}) from {}: {}{}",
            r.seq,
            r.operator,
            r.outcome.name(),
            if r.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", r.detail)
            }
        );
        if r.outcome == Outcome::Applied {
            fx.configure(&r.overlay);
        }
        if r.todo.is_some() {
            self.carry_out(r, fx)?;
        }
        Ok(Taken::Done)
    }

    /// Drops the records from `seq` on (a reorg replaced them).
    fn undo_from(&self, seq: u64) -> Result<()> {
        for r in self.all()? {
            if r.seq >= seq {
                log::warn!("command {} ({}): undone by a reorg", r.seq, r.command);
                self.records.remove(key(r.seq)).map_err(Error::Store)?;
            }
        }
        self.records.flush().map_err(Error::Store)
    }

    /// A reorg replaced the blocks from `from_block` on: their commands'
    /// configuration goes out of force until the new chain says.
    pub(crate) fn suspend_from(&self, from_block: u64, fx: &dyn Effects) -> Result<()> {
        let mut any = false;
        for mut r in self.all()? {
            if r.block >= from_block && !r.suspended {
                r.suspended = true;
                self.records.put(key(r.seq), &r).map_err(Error::Store)?;
                log::warn!(
                    "command {} ({}): its block was replaced by a reorg; out of force until the new chain says",
                    r.seq,
                    r.command
                );
                any = true;
            }
        }
        if any {
            self.records.flush().map_err(Error::Store)?;
            fx.configure(&self.overlay()?);
        }
        Ok(())
    }

    /// Suspended records the chain no longer has (its counter, `posted`,
    /// is below them) are undone for good.
    pub(crate) fn forget_gone(&self, posted: u64, fx: &dyn Effects) -> Result<()> {
        let gone: Vec<u64> = self
            .all()?
            .into_iter()
            .filter(|r| r.suspended && r.seq > posted)
            .map(|r| r.seq)
            .collect();
        if let Some(first) = gone.first() {
            self.undo_from(*first)?;
            fx.configure(&self.overlay()?);
        }
        Ok(())
    }

    /// The record to report after `reported`, if it is in force.
    fn to_report(&self, reported: u64) -> Result<Option<Record>> {
        let Some(next) = reported.checked_add(1) else {
            return Ok(None);
        };
        Ok(self.get(next)?.filter(|r| !r.suspended && r.todo.is_none()))
    }

    /// Old reported records go: `KEEP` stay below what the chain says was
    /// reported and what was taken here, whichever is lower (a node's word
    /// on `reported` alone must not empty the records), and the newest in
    /// force always stays (it holds the configuration).
    fn prune(&self, reported: u64) -> Result<()> {
        let Some(last) = self.last()? else {
            return Ok(());
        };
        let upto = reported.min(last.seq);
        for r in self.all()? {
            if r.seq.saturating_add(KEEP) < upto && r.seq != last.seq {
                self.records.remove(key(r.seq)).map_err(Error::Store)?;
            }
        }
        Ok(())
    }

    /// Reads new `Command` events and takes them, in order; at a gap, or
    /// on any error, the cursor stays where it was.
    /// True when it ended without a gap or a reorg (nothing to read again
    /// before the next block).
    /// The chain's logs are read and verified outside `admission`; taking
    /// the commands holds it (with the operator and counter reads they
    /// need): no offer is admitted meanwhile.
    pub(crate) fn follow(
        &self,
        follower: &Follower,
        rpc: &Rpc,
        fx: &dyn Effects,
        admission: &std::sync::Mutex<()>,
    ) -> Result<bool> {
        let update = follower.poll(rpc).map_err(Error::Chain)?;
        let _admission = admission.lock().unwrap_or_else(|p| p.into_inner());
        match update {
            Update::Reorg { from_block } => self.suspend_from(from_block, fx).map(|()| false),
            Update::Logs { logs, cursor } => {
                let now = super::lease::UnixTime::now().0;
                let mut operator_now = None;
                for l in &logs {
                    let ev =
                        IAgentControl::Command::decode_raw_log(l.topics.iter().copied(), &l.data)
                            .map_err(|e| Error::BadLog(e.to_string()))?;
                    if ev.gateway != self.gateway {
                        continue;
                    }
                    let operator = match operator_now {
                        Some(o) => o,
                        None => {
                            let o = operator_of(rpc, self.registry, self.gateway)?;
                            operator_now = Some(o);
                            o
                        }
                    };
                    let block = (
                        l.block_number.map_or(0, |n| n.to::<u64>()),
                        l.block_hash.unwrap_or_default(),
                    );
                    let posted = Posted {
                        seq: ev.seq,
                        operator: ev.operator,
                        bytes: &ev.command,
                    };
                    if let Taken::Gap { expected } = self.take(posted, block, operator, now, fx)? {
                        // The missing one is after the last taken: read
                        // again from that one's block (a node that left it
                        // out of a range already passed is asked again).
                        let from = self.last()?.map_or(0, |r| r.block);
                        log::warn!(
                            "command {} arrived before command {expected}: waiting for it (the node left it out?); reading again from block {from}",
                            ev.seq
                        );
                        return follower.rewind(from).map(|()| false).map_err(Error::Chain);
                    }
                }
                if self.all()?.iter().any(|r| r.suspended) {
                    let posted: u64 = view(
                        rpc,
                        self.control,
                        &IAgentControl::sequenceCall {
                            gateway: self.gateway,
                        },
                    )
                    .map_err(Error::Chain)?;
                    self.forget_gone(posted, fx)?;
                }
                follower
                    .commit(&cursor)
                    .map(|()| true)
                    .map_err(Error::Chain)
            }
        }
    }

    /// Reports the next unreported outcome, if there is one in force.
    /// True when one was sent.
    pub(crate) fn report_next(&self, tx: &TxSender) -> Result<bool> {
        let reported: u64 = tx
            .view(
                self.control,
                &IAgentControl::reportedCall {
                    gateway: self.gateway,
                },
            )
            .map_err(Error::Chain)?;
        self.prune(reported)?;
        let Some(r) = self.to_report(reported)? else {
            return Ok(false);
        };
        tx.execute(
            self.control,
            &IAgentControl::reportCall {
                seq: r.seq,
                outcome: r.outcome.code(),
                configVersion: r.overlay.version,
                commandBlock: alloy_primitives::U256::from(r.block),
                commandBlockHash: r.block_hash,
                agent: format!("dedge {}", env!("CARGO_PKG_VERSION")),
                detail: r.detail.clone(),
            },
        )
        .map_err(Error::Chain)?;
        log::info!("command {}: reported {} on chain", r.seq, r.outcome.name());
        Ok(true)
    }
}

fn operator_of(rpc: &Rpc, registry: Address, gateway: Address) -> Result<Address> {
    view(
        rpc,
        registry,
        &crate::chain::bindings::IRegistry::operatorOfCall { gateway },
    )
    .map_err(Error::Chain)
}

/// The follower of this gateway's `Command` events.
pub(crate) fn follower(
    cursors: Tree,
    name: &str,
    d: &Deployment,
    gateway: Address,
    start: u64,
    confirmations: u64,
) -> std::result::Result<Follower, crate::chain::Error> {
    Follower::new(
        cursors,
        name,
        Filter {
            addresses: vec![d.control],
            topics0: vec![IAgentControl::Command::SIGNATURE_HASH],
            topic1: Some(gateway.into_word()),
        },
        start,
        confirmations,
    )
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::control::command::{Capacity, Command, Envelope, Level};
    use crate::store::Store;

    const CHAIN: u64 = 31337;

    fn deployment() -> Deployment {
        Deployment {
            chain_id: CHAIN,
            token: Address::repeat_byte(1),
            registry: Address::repeat_byte(2),
            market: Address::repeat_byte(3),
            channels: Address::repeat_byte(4),
            control: Address::repeat_byte(5),
        }
    }

    fn gw() -> Address {
        Address::repeat_byte(0x9a)
    }
    fn op() -> Address {
        Address::repeat_byte(0x0e)
    }

    /// Counts what the controller did to the gateway.
    #[derive(Default)]
    struct Fake {
        evicted: RefCell<Vec<[u8; 32]>>,
        configured: RefCell<Vec<Overlay>>,
        /// Evictions fail (the process "dies" before marking them done).
        evict_fails: RefCell<bool>,
        /// EdgeX does not answer.
        edgex_down: RefCell<bool>,
    }

    impl Effects for Fake {
        fn held(&self) -> std::result::Result<Leased, String> {
            Ok(Leased::default())
        }
        fn devices(&self, o: &Overlay) -> Vec<DeviceSale> {
            o.devices
                .as_ref()
                .map(|d| d.value.clone())
                .unwrap_or_default()
        }
        fn has_edgex(&self) -> bool {
            true
        }
        fn device_priced(&self, _: &Overlay) -> bool {
            true
        }
        fn ceiling(&self) -> Capacity {
            Capacity {
                cpu_millicores: 1000,
                memory: 1 << 30,
                disk: 1 << 30,
                max_leases: 4,
            }
        }
        fn check_devices(
            &self,
            _: &[DeviceSale],
        ) -> std::result::Result<std::result::Result<(), String>, String> {
            if *self.edgex_down.borrow() {
                return Err("EdgeX did not answer".into());
            }
            Ok(Ok(()))
        }
        fn check_configuration(
            &self,
            _: &Overlay,
        ) -> std::result::Result<std::result::Result<(), String>, String> {
            Ok(Ok(()))
        }
        fn evict(&self, lease: [u8; 32], _: &str) -> std::result::Result<bool, String> {
            if *self.evict_fails.borrow() {
                return Err("the lease book failed".into());
            }
            self.evicted.borrow_mut().push(lease);
            Ok(true)
        }
        fn configure(&self, o: &Overlay) {
            self.configured.borrow_mut().push(o.clone());
        }
    }

    fn bytes(seq: u64, command: Command, expects: Option<u64>) -> Vec<u8> {
        Envelope {
            chain_id: CHAIN,
            control: deployment().control,
            gateway: gw(),
            seq,
            expiry: 2_000_000_000,
            expects,
            command,
        }
        .encode()
    }

    fn take(c: &Controller, fx: &Fake, seq: u64, b: &[u8], block: u64) -> Taken {
        c.take(
            Posted {
                seq,
                operator: op(),
                bytes: b,
            },
            (block, B256::repeat_byte(block as u8)),
            op(),
            1_000,
            fx,
        )
        .unwrap()
    }

    fn controller(store: &Store) -> Controller {
        Controller::new(store.tree("control").unwrap(), &deployment(), gw())
    }

    #[test]
    fn a_detail_fits_the_contracts_bound_in_bytes() {
        let long = "é".repeat(300);
        let d = detail(&long);
        assert!(d.len() <= MAX_DETAIL && d.starts_with("\\u{e9}"), "{d}");
        assert_eq!(detail("a\nb"), "a\\nb");
    }

    #[test]
    fn commands_are_taken_in_order_and_a_gap_waits() {
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        let pause = bytes(1, Command::LogLevel(Level::Warn), Some(0));
        let resume = bytes(2, Command::LogLevel(Level::Info), Some(1));
        let drain = bytes(3, Command::LogLevel(Level::Debug), Some(2));
        assert_eq!(take(&c, &fx, 1, &pause, 10), Taken::Done);
        assert_eq!(take(&c, &fx, 3, &drain, 12), Taken::Gap { expected: 2 });
        assert!(c.get(3).unwrap().is_none(), "nothing skipped");
        assert_eq!(take(&c, &fx, 2, &resume, 11), Taken::Done);
        assert_eq!(take(&c, &fx, 3, &drain, 12), Taken::Done);
        assert_eq!(c.overlay().unwrap().version, 3);
        // Delivered again (a restart before the cursor moved): not again.
        let before = fx.configured.borrow().len();
        assert_eq!(take(&c, &fx, 2, &resume, 11), Taken::Done);
        assert_eq!(fx.configured.borrow().len(), before);
    }

    #[test]
    fn a_refused_command_is_recorded_with_its_reason_and_changes_nothing() {
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        take(
            &c,
            &fx,
            1,
            &bytes(1, Command::LogLevel(Level::Warn), Some(7)),
            10,
        );
        let r = c.get(1).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Refused);
        assert!(r.detail.contains("conflict"), "{}", r.detail);
        assert_eq!(c.overlay().unwrap(), Overlay::default());
        assert!(fx.configured.borrow().is_empty());
        // Garbage is refused too, and takes its number.
        take(&c, &fx, 2, b"\x09nonsense", 11);
        let r = c.get(2).unwrap().unwrap();
        assert_eq!((r.outcome, r.command.as_str()), (Outcome::Refused, "?"));
        assert!(
            r.detail.contains("unknown command format 9"),
            "{}",
            r.detail
        );
        assert_eq!(c.to_report(1).unwrap().unwrap().seq, 2);
    }

    #[test]
    fn an_eviction_cut_short_is_finished_at_restart_and_never_repeated() {
        let store = Store::temporary().unwrap();
        let fx = Fake::default();
        let evict = bytes(
            1,
            Command::Evict {
                lease: [7; 32],
                reason: "maintenance".into(),
            },
            None,
        );
        *fx.evict_fails.borrow_mut() = true;
        // The decision is durable even though its effect failed: Failed,
        // reported as such, not retried by itself.
        {
            let c = controller(&store);
            take(&c, &fx, 1, &evict, 10);
            let r = c.get(1).unwrap().unwrap();
            assert_eq!(r.outcome, Outcome::Failed);
            assert!(r.todo.is_none());
        }
        // A crash between recording and carrying out: the record says so.
        let c = controller(&store);
        let mut r = c.get(1).unwrap().unwrap();
        r.outcome = Outcome::Applied;
        r.detail.clear();
        r.todo = Some(Todo::Evict {
            lease: [7; 32],
            reason: "maintenance".into(),
        });
        c.write(&r).unwrap();
        assert!(
            c.to_report(0).unwrap().is_none(),
            "not reported before done"
        );
        *fx.evict_fails.borrow_mut() = false;
        let c = controller(&store);
        c.finish(&fx).unwrap();
        assert_eq!(*fx.evicted.borrow(), vec![[7; 32]]);
        assert_eq!(c.get(1).unwrap().unwrap().outcome, Outcome::Applied);
        // Started again, delivered again: not evicted twice.
        c.finish(&fx).unwrap();
        take(&c, &fx, 1, &evict, 10);
        assert_eq!(fx.evicted.borrow().len(), 1);
        assert_eq!(c.to_report(0).unwrap().unwrap().seq, 1);
    }

    #[test]
    fn a_configuration_too_large_to_keep_is_refused_not_retried() {
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        // Two commands of ~3 KiB of device offers each: the second would
        // make a record over the store's limit.
        let sale = |prefix: &str| {
            (0..3)
                .map(|i| DeviceSale {
                    name: format!("{prefix}{i}"),
                    read: (0..15).map(|j| format!("{}{j:0>60}", prefix)).collect(),
                    write: vec![],
                })
                .collect::<Vec<_>>()
        };
        let one = bytes(
            1,
            Command::Devices {
                add: sale("a"),
                remove: vec![],
            },
            Some(0),
        );
        assert!(
            one.len() < crate::control::command::MAX_COMMAND,
            "{}",
            one.len()
        );
        take(&c, &fx, 1, &one, 10);
        assert_eq!(c.get(1).unwrap().unwrap().outcome, Outcome::Applied);
        let two = bytes(
            2,
            Command::Devices {
                add: sale("b"),
                remove: vec![],
            },
            Some(1),
        );
        assert_eq!(take(&c, &fx, 2, &two, 11), Taken::Done);
        let r = c.get(2).unwrap().unwrap();
        assert_eq!(r.outcome, Outcome::Refused);
        assert!(
            r.detail.contains("over the gateway's limit"),
            "{}",
            r.detail
        );
        assert_eq!(c.overlay().unwrap().version, 1, "the first stays in force");
    }

    #[test]
    fn a_devices_command_waits_for_edgex_but_an_expired_one_does_not() {
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        *fx.edgex_down.borrow_mut() = true;
        let sale = vec![DeviceSale {
            name: "Sensor".into(),
            read: vec!["T".into()],
            write: vec![],
        }];
        let add = bytes(
            1,
            Command::Devices {
                add: sale.clone(),
                remove: vec![],
            },
            Some(0),
        );
        let got = c.take(
            Posted {
                seq: 1,
                operator: op(),
                bytes: &add,
            },
            (10, B256::ZERO),
            op(),
            1_000,
            &fx,
        );
        assert!(matches!(got, Err(Error::Wait { seq: 1, .. })), "{got:?}");
        assert!(
            c.get(1).unwrap().is_none(),
            "nothing recorded while EdgeX is away"
        );
        // Expired meanwhile: refused without asking EdgeX.
        let got = c.take(
            Posted {
                seq: 1,
                operator: op(),
                bytes: &add,
            },
            (10, B256::ZERO),
            op(),
            3_000_000_000,
            &fx,
        );
        assert_eq!(got.unwrap(), Taken::Done);
        let r = c.get(1).unwrap().unwrap();
        assert!(r.detail.contains("expired"), "{}", r.detail);
        // EdgeX back: the next one is decided.
        *fx.edgex_down.borrow_mut() = false;
        let add = bytes(
            2,
            Command::Devices {
                add: sale,
                remove: vec![],
            },
            Some(0),
        );
        take(&c, &fx, 2, &add, 11);
        assert_eq!(c.get(2).unwrap().unwrap().outcome, Outcome::Applied);
    }

    #[test]
    fn a_nodes_word_on_reported_never_empties_the_records() {
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        take(
            &c,
            &fx,
            1,
            &bytes(1, Command::LogLevel(Level::Warn), Some(0)),
            10,
        );
        c.prune(u64::MAX).unwrap();
        assert_eq!(c.overlay().unwrap().version, 1);
        assert!(c.to_report(u64::MAX).unwrap().is_none());
    }

    #[test]
    fn a_taken_command_the_chain_now_reads_differently_is_replaced() {
        // A reorg the follower did not report (a crash between its rewind
        // and the suspension): the verified log wins.
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        take(
            &c,
            &fx,
            1,
            &bytes(1, Command::LogLevel(Level::Warn), Some(0)),
            10,
        );
        take(
            &c,
            &fx,
            2,
            &bytes(2, Command::LogLevel(Level::Info), Some(1)),
            11,
        );
        let other = bytes(1, Command::LogLevel(Level::Error), Some(0));
        assert_eq!(take(&c, &fx, 1, &other, 12), Taken::Done);
        let o = c.overlay().unwrap();
        assert_eq!((o.version, o.log_level.unwrap().value), (1, Level::Error));
        assert!(c.get(2).unwrap().is_none(), "what followed it is undone");
    }

    #[test]
    fn a_reorg_suspends_then_reinstates_replaces_or_forgets() {
        let store = Store::temporary().unwrap();
        let (c, fx) = (controller(&store), Fake::default());
        let pause = bytes(1, Command::LogLevel(Level::Warn), Some(0));
        let drain = bytes(2, Command::LogLevel(Level::Debug), Some(1));
        take(&c, &fx, 1, &pause, 10);
        take(&c, &fx, 2, &drain, 20);
        // Blocks from 15 replaced: the drain is out of force.
        c.suspend_from(15, &fx).unwrap();
        assert_eq!(c.overlay().unwrap().version, 1);
        assert!(
            c.to_report(1).unwrap().is_none(),
            "a suspended one is not reported"
        );
        // The same command in another block: back, not applied again.
        let configured = fx.configured.borrow().len();
        take(&c, &fx, 2, &drain, 21);
        assert_eq!(c.overlay().unwrap().version, 2);
        assert_eq!(c.get(2).unwrap().unwrap().block, 21);
        assert_eq!(
            fx.configured.borrow().len(),
            configured + 1,
            "put back in force once"
        );
        // Replaced by a different command 2: the old one undone, the new decided.
        c.suspend_from(21, &fx).unwrap();
        let resume = bytes(2, Command::LogLevel(Level::Error), Some(1));
        take(&c, &fx, 2, &resume, 22);
        let o = c.overlay().unwrap();
        assert_eq!(o.log_level.unwrap().value, Level::Error);
        // Gone from the chain: the counter is below it.
        c.suspend_from(22, &fx).unwrap();
        c.forget_gone(1, &fx).unwrap();
        assert!(c.get(2).unwrap().is_none());
        assert_eq!(c.overlay().unwrap().version, 1);
        // Command 2 may now come as anything.
        assert_eq!(take(&c, &fx, 2, &drain, 30), Taken::Done);
        assert_eq!(c.overlay().unwrap().version, 2);
    }
}
