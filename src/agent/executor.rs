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
//!
//! The daemon's enforcement tick never waits on a node: it runs with a
//! `ChainQueue`, and the on-chain effects its steps ask for go there, to
//! the chain worker (`ChainQueue::work`), which carries them out (and what
//! they lead to) with backoff per lease. A node that hangs for its whole
//! timeout delays only chain steps, never a freeze or a teardown.

use std::collections::{HashMap, VecDeque};
use std::sync::{Condvar, Mutex};
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
const STOP_GRACE: Duration = Duration::from_secs(5);

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
    /// Where on-chain effects go instead of being carried out here; `None`
    /// carries them out inline (the desks, which answer with the result,
    /// and the chain worker itself).
    pub defer: Option<&'a ChainQueue>,
}

/// The longest a lease's chain steps wait after failures in a row.
const MAX_BACKOFF: u64 = 300;

/// On-chain effects waiting for the chain worker, one of each kind per
/// lease, and the leases backing off after failures.
#[derive(Default)]
pub struct ChainQueue {
    state: Mutex<Queued>,
    ready: Condvar,
}

#[derive(Default)]
struct Queued {
    effects: VecDeque<(LeaseId, Effect)>,
    /// Failures in a row, and when the lease's next chain step may go.
    backoff: HashMap<LeaseId, (u32, UnixTime)>,
}

impl ChainQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queued> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `effect` for `lease`, unless the same is queued or the lease
    /// is backing off (the machine asks again: it is level-triggered).
    pub fn push(&self, lease: LeaseId, effect: Effect, now: UnixTime) {
        let mut q = self.lock();
        if q.backoff.get(&lease).is_some_and(|(_, until)| now < *until) {
            return;
        }
        if !q.effects.contains(&(lease, effect)) {
            q.effects.push_back((lease, effect));
            self.ready.notify_one();
        }
    }

    /// How many effects wait.
    pub fn len(&self) -> usize {
        self.lock().effects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `lease` is backing off at `now`.
    pub fn backing_off(&self, lease: &LeaseId, now: UnixTime) -> bool {
        self.lock()
            .backoff
            .get(lease)
            .is_some_and(|(_, until)| now < *until)
    }

    /// The next effect, waiting up to `wait` for one.
    fn pop(&self, wait: Duration) -> Option<(LeaseId, Effect)> {
        let q = self.lock();
        let (mut q, _) = self
            .ready
            .wait_timeout_while(q, wait, |q| q.effects.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        q.effects.pop_front()
    }

    /// Records how the lease's chain step went: a failure doubles its
    /// backoff (from `base` seconds up to `MAX_BACKOFF`), a success ends it.
    fn outcome(&self, lease: LeaseId, failed: bool, base: u64, now: UnixTime) {
        let mut q = self.lock();
        if !failed {
            q.backoff.remove(&lease);
            return;
        }
        let n = q
            .backoff
            .get(&lease)
            .map_or(0, |(n, _)| *n)
            .saturating_add(1);
        let wait = base
            .max(1)
            .saturating_mul(1u64 << (n - 1).min(16))
            .min(MAX_BACKOFF);
        q.backoff.insert(lease, (n, now.plus(wait)));
    }

    /// Carries out queued effects with `exec` (inline: `exec.defer` is
    /// `None`) until `stop` is set; one lease's failure backs that lease
    /// off and the worker goes on.
    pub fn work(&self, exec: &Executor<'_>, stop: &std::sync::atomic::AtomicBool) {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            if let Some((id, effect)) = self.pop(Duration::from_millis(500)) {
                self.carry_one(exec, id, effect, UnixTime::now());
            }
        }
    }

    /// Carries out, with `exec`, every effect queued now; how many.
    pub fn drain(&self, exec: &Executor<'_>, now: UnixTime) -> usize {
        let mut n = 0;
        while let Some((id, effect)) = self.pop(Duration::ZERO) {
            self.carry_one(exec, id, effect, now);
            n += 1;
        }
        n
    }

    /// Carries out one queued effect on the lease's current record.
    fn carry_one(&self, exec: &Executor<'_>, id: LeaseId, effect: Effect, now: UnixTime) {
        let lease = match exec.book.get(&id) {
            Ok(Some(l)) if !l.state.is_terminal() => l,
            Ok(_) => {
                self.lock().backoff.remove(&id);
                return;
            }
            Err(e) => return log::error!("lease {id}: {}", logger::chain(&e)),
        };
        let applied = Applied {
            lease,
            effects: vec![effect],
            changed: false,
        };
        // Any failure backs the lease off: what failed was a chain step or
        // what its answer led to.
        let failed = match exec.carry_out(applied, now) {
            Ok(_) => false,
            // The lease moved on while this waited (a desk saw the accept
            // mined): the read's answer means nothing to it now.
            Err(e @ Error::NotNow { .. }) => {
                log::debug!("lease {id}: {e}");
                false
            }
            Err(e) => {
                log::error!("lease {id}: {}", logger::chain(&e));
                true
            }
        };
        // From when the attempt ended: a dead node may take its whole
        // timeout to say so.
        self.outcome(id, failed, exec.book.timing().recheck, UnixTime::now());
    }
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
    ///
    /// A failed effect leads nowhere, but the others already asked for
    /// are still carried out (a claim that fails must not hold back the
    /// report beside it, nor a pause that fails the chain read after it);
    /// the first failure is returned at the end.
    pub(crate) fn carry_out(&self, applied: Applied, now: UnixTime) -> Result<Lease> {
        let mut lease = applied.lease;
        let mut queue: VecDeque<Effect> = applied.effects.into();
        let mut first_failure = None;
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
            if let (Some(q), true) = (self.defer, effect.on_chain()) {
                q.push(lease.id, effect, now);
                continue;
            }
            let event = match self.perform(&lease, effect) {
                Ok(Some(event)) => event,
                Ok(None) => continue,
                Err(e) => {
                    if matches!(e, Error::Chain { .. } | Error::Channel { .. }) {
                        // Back off: the next attempt waits for the
                        // recheck, so a dead node does not stall ticks.
                        lease = self.book.apply(&lease.id, &Event::ChainFailed, now)?.lease;
                    }
                    first_failure.get_or_insert(e);
                    continue;
                }
            };
            let next = self.book.apply(&lease.id, &event, now)?;
            lease = next.lease;
            queue.extend(next.effects);
        }
        match first_failure {
            Some(e) => Err(e),
            None => Ok(lease),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::lease::tests::terms;
    use crate::agent::machine::{ChainView, Timing};
    use crate::market::MarketState;
    use crate::runtime::container::{Config, RecordStore};
    use crate::store::Store;

    /// A chain whose claim fails and whose report works, recording both.
    #[derive(Default)]
    struct ClaimFails {
        calls: Mutex<Vec<&'static str>>,
    }

    fn closing() -> ChainView {
        ChainView {
            state: MarketState::Active,
            seller_reported: false,
            start: 0,
            end: 0,
            offer_expiry: 0,
            chain_time: 100,
            termination_timeout: 86_400,
            funding_window: 3_600,
            claimable: true,
            newest: Edg(700),
            channel_closing: true,
            channel_gone: false,
        }
    }

    impl Chain for ClaimFails {
        fn read(&self, _: &Lease) -> Result<ChainView> {
            Ok(closing())
        }
        fn accept(&self, _: &Lease) -> Result<()> {
            Ok(())
        }
        fn report(&self, _: &Lease, _: Edg) -> Result<()> {
            self.calls.lock().unwrap().push("report");
            Ok(())
        }
        fn finalize(&self, _: &Lease) -> Result<()> {
            Ok(())
        }
        fn cancel(&self, _: &Lease) -> Result<()> {
            Ok(())
        }
        fn claim(&self, l: &Lease) -> Result<()> {
            self.calls.lock().unwrap().push("claim");
            Err(Error::Chain {
                id: l.id,
                step: "claiming the channel",
                source: Box::new(crate::market::Error::Invalid("node down".into())),
            })
        }
    }

    #[test]
    fn a_failed_effect_does_not_hold_back_the_others_asked_for() {
        let store = Store::temporary().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::open(
            Config {
                dir: dir.path().join("containers"),
                cgroup: crate::runtime::cgroup::CgroupMode::Auto,
                cgroup_parent: format!("dedge-test/executor-{}", std::process::id()),
                cgroup_delegated: None,
                die_with_parent: false,
            },
            RecordStore::sled(&store).unwrap(),
        )
        .unwrap();
        let book = LeaseBook::open(store.tree("leases").unwrap(), Timing::for_tests()).unwrap();
        let id = LeaseId([5; 32]);
        let mut l = Lease::offered(id, terms(), UnixTime(0));
        l.state = State::Terminating;
        l.stopped = true;
        l.channel = Some(crate::channel::ChannelId([6; 32]));
        l.paid = Edg(700);
        book.insert(&l).unwrap();
        let chain = ClaimFails::default();
        let running = Running::default();
        let exec = Executor {
            book: &book,
            runtime: &runtime,
            running: &running,
            chain: &chain,
            defer: None,
        };
        // The read shows the channel closing and the lease unreported:
        // claim and report, in that order. The claim fails; the report is
        // sent all the same, and the claim's failure is what comes back.
        let err = exec
            .feed(&id, &Event::Chain(closing()), UnixTime(100))
            .unwrap_err();
        assert!(logger::chain(&err).contains("node down"), "{err}");
        assert_eq!(*chain.calls.lock().unwrap(), ["claim", "report"]);
        let after = book.get(&id).unwrap().unwrap();
        assert!(matches!(
            after.intent,
            Some(crate::agent::lease::Intent::Report { .. })
        ));
        assert_eq!(after.claim.map(|c| c.at), Some(UnixTime(100)));
    }

    #[test]
    fn the_chain_queue_keeps_one_of_each_and_backs_off_a_failing_lease() {
        let q = ChainQueue::default();
        let (a, b) = (LeaseId([1; 32]), LeaseId([2; 32]));
        let t = UnixTime(1_000);
        q.push(a, Effect::ReadChain, t);
        q.push(a, Effect::ReadChain, t);
        q.push(a, Effect::Claim, t);
        q.push(b, Effect::ReadChain, t);
        assert_eq!(q.len(), 3, "one of each effect per lease");
        assert_eq!(q.pop(Duration::ZERO), Some((a, Effect::ReadChain)));
        // Failures in a row double the wait, up to the cap; other leases
        // are not held back.
        let mut waits = Vec::new();
        for _ in 0..8 {
            q.outcome(a, true, 10, t);
            let until = q.lock().backoff[&a].1;
            waits.push(until.since(t));
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 300, 300, 300]);
        assert!(q.backing_off(&a, t.plus(299)));
        assert!(!q.backing_off(&b, t));
        q.push(a, Effect::Report { paid: Edg(1) }, t);
        assert_eq!(q.len(), 2, "a lease backing off queues nothing");
        // One success ends the backoff.
        q.outcome(a, false, 10, t);
        assert!(!q.backing_off(&a, t));
        q.push(a, Effect::ReadChain, t);
        assert_eq!(q.len(), 3);
    }
}
