//! The executor: carries out what the machine's stored steps return, on
//! the lease's container and on chain, and feeds what happened back in as
//! events, until a step asks for nothing more. Every effect it performs
//! was recorded first (`LeaseBook::apply` writes the step, intent included,
//! before returning it), so a crash mid-effect leaves a record that says
//! what was under way, and the next tick or restart carries it on.
//!
//! One lease's failure is that lease's: a tick logs it and goes on to the
//! next (a container that cannot be paused must not stop every other
//! lease's enforcement). The machine is level-triggered, so a failed
//! effect is retried by a later tick that observes the same drift.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use super::deploy::{Deployed, container_id, teardown};
use super::lease::{Lease, LeaseBook, State, UnixTime};
use super::machine::{Applied, ChainView, Effect, Event, Observed};
use super::{Error, Result};
use crate::logger;
use crate::market::LeaseId;
use crate::runtime::container::{self as rt, Runtime};
use crate::units::Edg;

/// How long a stopped lease's processes get between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// Effects one event may lead to, in a chain of steps, before the executor
/// leaves the rest to the next tick: a guard against a machine bug that
/// would ping-pong forever. A whole settlement takes seven.
const MAX_EFFECTS: usize = 16;

/// The on-chain steps, as the executor needs them. The agent's is
/// `settle::MarketHands`; tests may use their own.
pub trait Chain {
    /// The lease as the Market holds it, the chain's clock, and whether
    /// its channel has a proof above what was claimed.
    fn read(&self, lease: &Lease) -> Result<ChainView>;
    /// `acceptOffer`; Ok once mined.
    fn accept(&self, lease: &Lease) -> Result<()>;
    /// The seller's `terminate` with what the lease was paid.
    fn report(&self, lease: &Lease, paid: Edg) -> Result<()>;
    fn finalize(&self, lease: &Lease) -> Result<()>;
    fn cancel(&self, lease: &Lease) -> Result<()>;
    /// Claims the lease's channel up to its newest proof.
    fn claim(&self, lease: &Lease) -> Result<()>;
}

/// Running leases' containers, with their bridges and backend ports.
pub type Running = Mutex<HashMap<LeaseId, Deployed>>;

pub struct Executor<'a> {
    pub book: &'a LeaseBook,
    pub runtime: &'a Runtime,
    pub running: &'a Running,
    pub chain: &'a dyn Chain,
}

impl Executor<'_> {
    /// Stores `event`'s step and carries out its effects; the lease as it
    /// ends up.
    pub fn feed(&self, id: &LeaseId, event: &Event, now: UnixTime) -> Result<Lease> {
        let applied = self.book.apply(id, event, now)?;
        self.carry_out(applied, now)
    }

    /// Carries out a stored step's effects, and those of the steps they
    /// lead to.
    pub fn carry_out(&self, applied: Applied, now: UnixTime) -> Result<Lease> {
        let mut lease = applied.lease;
        let mut queue: VecDeque<Effect> = applied.effects.into();
        let mut done = 0;
        while let Some(effect) = queue.pop_front() {
            done += 1;
            if done > MAX_EFFECTS {
                log::warn!(
                    "lease {}: {MAX_EFFECTS} effects in one go; the rest waits for the next tick",
                    lease.id
                );
                break;
            }
            let event = match self.perform(&lease, effect) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(e) => {
                    if matches!(e, Error::Chain { .. } | Error::Channel { .. }) {
                        // Back off: the next attempt waits for the
                        // recheck, so a dead node does not stall ticks.
                        self.book.apply(&lease.id, &Event::ChainFailed, now)?;
                    }
                    return Err(e);
                }
            };
            let next = self.book.apply(&lease.id, &event, now)?;
            lease = next.lease;
            queue.extend(next.effects);
        }
        Ok(lease)
    }

    /// One round over the book: each lease's tick, with its container as
    /// the runtime sees it. Returns what failed, each failure already
    /// logged; the round never stops early.
    pub fn tick(&self, now: UnixTime) -> Vec<(LeaseId, Error)> {
        self.each(now, |l| Event::Tick {
            container: self.observe(l),
        })
    }

    fn each(&self, now: UnixTime, event: impl Fn(&Lease) -> Event) -> Vec<(LeaseId, Error)> {
        let leases = match self.book.all() {
            Ok(l) => l,
            Err(e) => {
                log::error!("lease book: {}", logger::chain(&e));
                return Vec::new();
            }
        };
        let mut failed = Vec::new();
        for l in leases.iter().filter(|l| !l.state.is_terminal()) {
            if let Err(e) = self.feed(&l.id, &event(l), now) {
                log::error!("lease {}: {}", l.id, logger::chain(&e));
                failed.push((l.id, e));
            }
        }
        failed
    }

    /// The lease's container, as the runtime sees it; only leases that
    /// should have one are looked at.
    fn observe(&self, l: &Lease) -> Observed {
        // A stopped terminating lease is looked at too: nothing may run
        // for a lease that ended.
        if !matches!(l.state, State::Running | State::Frozen | State::Terminating) {
            return Observed::Unknown;
        }
        let id = container_id(&l.id);
        let record = match self.runtime.get(&id) {
            Ok(r) => r,
            Err(crate::runtime::Error::NoSuchContainer(_)) => return Observed::Missing,
            Err(e) => {
                log::warn!("lease {}: container {id}: {}", l.id, logger::chain(&e));
                return Observed::Unknown;
            }
        };
        match self.runtime.wait_for(&id, Some(Duration::ZERO)) {
            Ok(Some(r)) => Observed::Exited {
                code: r.exit.map_or(rt::Exit::Unknown.code(), rt::Exit::code),
                oom: r.oom_kills > 0,
            },
            Ok(None) if record.state == rt::State::Paused => Observed::Paused,
            Ok(None) => Observed::Running,
            Err(e) => {
                log::warn!("lease {}: container {id}: {}", l.id, logger::chain(&e));
                Observed::Unknown
            }
        }
    }

    /// Performs one effect; the event it leads to, if any.
    fn perform(&self, l: &Lease, effect: Effect) -> Result<Option<Event>> {
        let container = |source| Error::Container {
            id: container_id(&l.id),
            source,
        };
        match effect {
            Effect::Pause => {
                self.runtime
                    .pause(&container_id(&l.id))
                    .map_err(container)?;
                log::info!("lease {}: container frozen", l.id);
                Ok(None)
            }
            Effect::Resume => {
                self.runtime
                    .resume(&container_id(&l.id))
                    .map_err(container)?;
                log::info!("lease {}: container thawed", l.id);
                Ok(None)
            }
            Effect::Teardown => {
                // The bridge and backend ports close before the container
                // goes: nothing serves a lease that is ending.
                self.running
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&l.id);
                teardown(self.runtime, &l.id, STOP_GRACE).map_err(container)?;
                Ok(Some(Event::TornDown))
            }
            Effect::ReadChain => Ok(Some(Event::Chain(self.chain.read(l)?))),
            Effect::SendAccept => {
                self.chain.accept(l)?;
                Ok(Some(Event::AcceptMined))
            }
            Effect::Report { paid } => {
                self.chain.report(l, paid)?;
                log::info!("lease {}: reported on chain, paid {paid}", l.id);
                Ok(Some(Event::Chain(self.chain.read(l)?)))
            }
            Effect::Finalize => {
                self.chain.finalize(l)?;
                Ok(Some(Event::Chain(self.chain.read(l)?)))
            }
            Effect::Cancel => {
                self.chain.cancel(l)?;
                Ok(Some(Event::Chain(self.chain.read(l)?)))
            }
            Effect::Claim => {
                self.chain.claim(l)?;
                Ok(Some(Event::Chain(self.chain.read(l)?)))
            }
        }
    }
}
