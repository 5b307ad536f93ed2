//! A lease as the agent keeps it, and the book that owns every lease record.
//!
//! ```text
//! Offered ─▶ Accepting ─▶ Accepted ─▶ FeePaid ─▶ ChannelProven ─▶ Deploying ─▶ Running ◀─▶ Frozen
//!    │           │            │          │             │              │           │          │
//!    ▼           ▼            ▼          ▼             ▼              ▼           ▼          ▼
//! Refused   Refused/Expired  (any lease that was accepted) ─────────────────▶ Terminating ─▶ Settled
//! ```
//!
//! What moves a lease is `machine::step`, a pure function; this module
//! keeps the result. **Ownership**: every write of a lease record is a
//! compare-and-swap of the whole record against the bytes the step read
//! (`LeaseBook::apply`); a writer that lost the race reads again and runs
//! the step again on what won. Connection threads (payments, deploys,
//! terminations) and the enforcement tick all write this way, so none can
//! write back a state it read before another writer changed it, and no
//! lock is held across a signature check, a chain call or a container
//! operation. Every write is flushed before its effects are returned, so
//! an effect is never carried out for a state that is not durable.

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use super::machine::{self, Applied, Effect, Event, Timing};
use super::{Error, Result};
use crate::channel::ChannelId;
use crate::market::LeaseId;
use crate::p2p::OfferTerms;
use crate::store::Tree;
use crate::units::{Edg, wei};

/// Record format this agent writes. Format 1 records (agents before the
/// state machine) and format 2 ones (before claims were tracked apart from
/// the Market's steps) are read and rewritten as format 3 at open.
const FORMAT: u8 = 3;

/// How many state changes a record keeps in its history.
const HISTORY: usize = 64;

/// A unix time in seconds, on the agent's clock (the one clock every rule
/// of the machine reads; chain time comes in separately, in `ChainView`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UnixTime(pub u64);

impl UnixTime {
    pub fn now() -> UnixTime {
        UnixTime(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        )
    }

    pub fn plus(self, secs: u64) -> UnixTime {
        UnixTime(self.0.saturating_add(secs))
    }

    /// Seconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: UnixTime) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// The buyer's offer is on chain; the agent has not decided.
    Offered,
    /// Refused (capacity, price, devices...): terminal.
    Refused,
    /// The agent accepted on chain; the buyer's fee is due.
    Accepted,
    /// The offer timed out before the accept was mined: terminal.
    Expired,
    /// `dedge_fee` deposited: buyer and seller are in contract.
    FeePaid,
    /// The buyer named a funded channel and sent a valid first proof.
    ChannelProven,
    /// Fetching, verifying, unpacking, starting the image.
    Deploying,
    Running,
    /// Behind on payment by more than the grace: the container is frozen.
    Frozen,
    /// Stopping the container, terminating on chain, claiming the channel.
    Terminating,
    /// Invoice emitted and funds claimed: terminal.
    Settled,
    /// Admitted; the accept transaction is recorded as about to be sent
    /// (or sent, its outcome not yet known). Appended last: format 1
    /// records' state indices stay valid.
    Accepting,
}

impl State {
    pub const ALL: [State; 12] = [
        State::Offered,
        State::Accepting,
        State::Refused,
        State::Accepted,
        State::Expired,
        State::FeePaid,
        State::ChannelProven,
        State::Deploying,
        State::Running,
        State::Frozen,
        State::Terminating,
        State::Settled,
    ];

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, State::Refused | State::Expired | State::Settled)
    }

    /// The states a lease may go to from this one.
    pub fn next(self) -> &'static [State] {
        use State::*;
        match self {
            Offered => &[Accepting, Refused],
            Accepting => &[Accepted, Refused, Expired],
            Accepted => &[FeePaid, Terminating],
            FeePaid => &[ChannelProven, Terminating],
            ChannelProven => &[Deploying, Terminating],
            Deploying => &[Running, Terminating],
            Running => &[Frozen, Terminating],
            Frozen => &[Running, Terminating],
            Terminating => &[Settled],
            Refused | Expired | Settled => &[],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            State::Offered => "offered",
            State::Accepting => "accepting",
            State::Refused => "refused",
            State::Accepted => "accepted",
            State::Expired => "expired",
            State::FeePaid => "fee paid",
            State::ChannelProven => "channel proven",
            State::Deploying => "deploying",
            State::Running => "running",
            State::Frozen => "frozen",
            State::Terminating => "terminating",
            State::Settled => "settled",
        }
    }
}

/// The offer's terms as the lease record keeps them: the record's own
/// type, so a change to the p2p message cannot silently change what is
/// on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub buyer: [u8; 20],
    pub gateway: [u8; 20],
    pub cpu_millicores: u32,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
    /// EdgeX grants, `DEVICE:COMMAND:r|w|rw`.
    pub devices: Vec<String>,
    #[serde(with = "wei")]
    pub price_per_second: Edg,
    pub max_duration: u32,
    pub payment_interval: u32,
    /// The image's CID.
    pub image: String,
    pub expiry: u64,
    pub nonce: u64,
}

impl From<&OfferTerms> for Terms {
    fn from(t: &OfferTerms) -> Terms {
        Terms {
            buyer: t.buyer,
            gateway: t.gateway,
            cpu_millicores: t.cpu_millicores,
            memory_bytes: t.memory_bytes,
            disk_bytes: t.disk_bytes,
            devices: t.devices.clone(),
            price_per_second: Edg(t.price_per_second),
            max_duration: t.max_duration,
            payment_interval: t.payment_interval,
            image: t.image.clone(),
            expiry: t.expiry,
            nonce: t.nonce,
        }
    }
}

impl Terms {
    pub fn buyer(&self) -> Address {
        Address::from(self.buyer)
    }
}

/// An on-chain step the agent committed to before sending it. It stays
/// until the chain shows the step done (or impossible), so a crash or a
/// lost receipt between recording and mining is finished, never repeated
/// with other arguments, never forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Intent {
    /// `acceptOffer`, last sent at `at`.
    Accept { at: UnixTime },
    /// `terminate(lease, paid)`: the amount is fixed when first recorded.
    Report {
        #[serde(with = "wei")]
        paid: Edg,
        at: UnixTime,
    },
    /// `finalize`, once the termination timeout has passed.
    Finalize { at: UnixTime },
    /// `cancel`: an accepted offer left unfunded past the funding window.
    Cancel { at: UnixTime },
}

/// A claim of the lease's channel, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// When it was last sent.
    pub at: UnixTime,
    /// The channel's newest proof then: a newer one is claimed at once,
    /// the same one only once the first can no longer be pending.
    #[serde(with = "wei")]
    pub(crate) upto: Edg,
}

/// Everything the agent must not forget about a lease (record format 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub format: u8,
    pub id: LeaseId,
    pub terms: Terms,
    pub state: State,
    /// When the lease entered `state`.
    pub since: UnixTime,
    /// When it started running (the meter starts then).
    pub running_since: Option<UnixTime>,
    pub channel: Option<ChannelId>,
    /// The channel's cumulative amount when it started paying this lease
    /// (channels are reused across leases; proofs are cumulative).
    #[serde(with = "wei")]
    pub(crate) channel_base: Edg,
    /// Paid for this lease so far, as of the newest durable proof; the
    /// channel receiver's record is the source of truth.
    #[serde(with = "wei")]
    pub paid: Edg,
    /// Why it was refused, expired, failed or terminated.
    pub reason: Option<String>,
    /// Each state entered, with its time (bounded).
    pub(crate) history: Vec<(State, UnixTime)>,
    /// The Market step recorded and not yet seen done.
    pub(crate) intent: Option<Intent>,
    /// A `claim` of the channel sent and not yet seen on chain. Kept apart
    /// from `intent`: a claim against a closing channel cannot wait for
    /// the Market's steps, and must not displace a report whose amount is
    /// fixed.
    pub claim: Option<Claim>,
    /// Terminating: its container is stopped and removed.
    pub stopped: bool,
    /// When the chain is next worth reading: a terminating lease waits out
    /// the Market's timeouts, a running one is watched for its channel
    /// closing (the agent does not ask every second).
    pub(crate) recheck_at: UnixTime,
}

impl Lease {
    pub fn offered(id: LeaseId, terms: Terms, now: UnixTime) -> Lease {
        Lease {
            format: FORMAT,
            id,
            terms,
            state: State::Offered,
            since: now,
            running_since: None,
            channel: None,
            channel_base: Edg::ZERO,
            paid: Edg::ZERO,
            reason: None,
            history: vec![(State::Offered, now)],
            intent: None,
            claim: None,
            stopped: false,
            recheck_at: now,
        }
    }

    /// Does this lease hold the gateway's resources? A terminating lease
    /// whose container is gone holds nothing while it settles on chain.
    pub(crate) fn holds_resources(&self) -> bool {
        match self.state {
            State::Offered | State::Refused | State::Expired | State::Settled => false,
            State::Terminating => !self.stopped,
            _ => true,
        }
    }

    /// When the lease began terminating, if it did.
    pub(crate) fn ended_at(&self) -> Option<UnixTime> {
        self.history
            .iter()
            .rev()
            .find(|(s, _)| *s == State::Terminating)
            .map(|(_, t)| *t)
    }

    /// Moves to `to` at `now`: the machine's only way to change state.
    pub(super) fn enter(&mut self, to: State, now: UnixTime, reason: Option<String>) {
        self.state = to;
        self.since = now;
        if to == State::Running && self.running_since.is_none() {
            self.running_since = Some(now);
        }
        if reason.is_some() {
            self.reason = reason;
        }
        // Bounded: a flapping lease keeps its first entry and the newest
        // (so the time it began terminating is always there).
        if self.history.len() >= HISTORY {
            self.history.remove(1);
        }
        self.history.push((to, now));
    }

    fn encode(&self) -> Result<Vec<u8>> {
        postcard::to_stdvec(self).map_err(|source| Error::Encode {
            id: self.id,
            source,
        })
    }

    /// A record of this format or of an earlier one.
    fn decode(bytes: &[u8]) -> Result<Lease> {
        let failed = |format| move |source| Error::Decode { format, source };
        match bytes.first() {
            Some(&FORMAT) => postcard::from_bytes(bytes).map_err(failed(FORMAT)),
            Some(&v2::FORMAT) => postcard::from_bytes::<v2::Lease>(bytes)
                .map(v2::Lease::upgrade)
                .map_err(failed(v2::FORMAT)),
            Some(&v1::FORMAT) => postcard::from_bytes::<v1::Lease>(bytes)
                .map(|l| l.upgrade().upgrade())
                .map_err(failed(v1::FORMAT)),
            found => Err(Error::Format {
                found: found.copied(),
                reads: FORMAT,
            }),
        }
    }
}

/// Format 1, as the agents before the state machine wrote it.
mod v1 {
    use serde::{Deserialize, Serialize};

    use super::{State, Terms, UnixTime};
    use crate::market::LeaseId;
    use crate::units::Edg;

    pub(crate) const FORMAT: u8 = 1;

    /// The terms as format 1 stored them (the p2p message of that time).
    #[derive(Serialize, Deserialize)]
    pub struct OfferTerms {
        pub buyer: [u8; 20],
        pub gateway: [u8; 20],
        pub cpu_millicores: u32,
        pub memory_bytes: u64,
        pub disk_bytes: u64,
        pub devices: Vec<String>,
        pub price_per_second: u128,
        pub max_duration: u32,
        pub payment_interval: u32,
        pub image: String,
        pub expiry: u64,
        pub nonce: u64,
    }

    #[derive(Serialize, Deserialize)]
    pub struct Lease {
        pub format: u8,
        pub id: [u8; 32],
        pub terms: OfferTerms,
        pub state: State,
        pub since: u64,
        pub running_since: Option<u64>,
        pub channel: Option<[u8; 32]>,
        pub(crate) channel_base: u128,
        pub paid: u128,
        pub reason: Option<String>,
        pub(crate) history: Vec<(State, u64)>,
    }

    impl Lease {
        /// A format 1 lease as format 2 had it: no intent recorded (the
        /// settle steps read the chain first, so none is repeated), its
        /// container not known to be stopped.
        pub(crate) fn upgrade(self) -> super::v2::Lease {
            let t = self.terms;
            super::v2::Lease {
                format: super::v2::FORMAT,
                id: LeaseId(self.id),
                terms: Terms {
                    buyer: t.buyer,
                    gateway: t.gateway,
                    cpu_millicores: t.cpu_millicores,
                    memory_bytes: t.memory_bytes,
                    disk_bytes: t.disk_bytes,
                    devices: t.devices,
                    price_per_second: Edg(t.price_per_second),
                    max_duration: t.max_duration,
                    payment_interval: t.payment_interval,
                    image: t.image,
                    expiry: t.expiry,
                    nonce: t.nonce,
                },
                state: self.state,
                since: UnixTime(self.since),
                running_since: self.running_since.map(UnixTime),
                channel: self.channel.map(crate::channel::ChannelId),
                channel_base: Edg(self.channel_base),
                paid: Edg(self.paid),
                reason: self.reason,
                history: self
                    .history
                    .into_iter()
                    .map(|(s, t)| (s, UnixTime(t)))
                    .collect(),
                intent: None,
                stopped: false,
                recheck_at: UnixTime(self.since),
            }
        }
    }
}

/// Format 2: a claim was one of the Market's steps, in the one intent slot.
mod v2 {
    use serde::{Deserialize, Serialize};

    use super::{State, Terms, UnixTime};
    use crate::channel::ChannelId;
    use crate::market::LeaseId;
    use crate::units::{Edg, wei};

    pub(crate) const FORMAT: u8 = 2;

    #[derive(Serialize, Deserialize)]
    pub(crate) enum Intent {
        Accept {
            at: UnixTime,
        },
        Report {
            #[serde(with = "wei")]
            paid: Edg,
            at: UnixTime,
        },
        Finalize {
            at: UnixTime,
        },
        Cancel {
            at: UnixTime,
        },
        Claim {
            at: UnixTime,
        },
    }

    #[derive(Serialize, Deserialize)]
    pub struct Lease {
        pub format: u8,
        pub id: LeaseId,
        pub terms: Terms,
        pub state: State,
        pub since: UnixTime,
        pub running_since: Option<UnixTime>,
        pub channel: Option<ChannelId>,
        #[serde(with = "wei")]
        pub(crate) channel_base: Edg,
        #[serde(with = "wei")]
        pub paid: Edg,
        pub reason: Option<String>,
        pub(crate) history: Vec<(State, UnixTime)>,
        pub(crate) intent: Option<Intent>,
        pub stopped: bool,
        pub(crate) recheck_at: UnixTime,
    }

    impl Lease {
        /// A format 2 lease as format 3 has it: a recorded claim moves to
        /// its own slot, every other intent stays as it was.
        pub(crate) fn upgrade(self) -> super::Lease {
            use super::Intent as New;
            let (intent, claim) = match self.intent {
                None => (None, None),
                Some(Intent::Accept { at }) => (Some(New::Accept { at }), None),
                Some(Intent::Report { paid, at }) => (Some(New::Report { paid, at }), None),
                Some(Intent::Finalize { at }) => (Some(New::Finalize { at }), None),
                Some(Intent::Cancel { at }) => (Some(New::Cancel { at }), None),
                // Its amount was not recorded: taken as the highest, so
                // the claim waits its resend rather than going twice.
                Some(Intent::Claim { at }) => (
                    None,
                    Some(super::Claim {
                        at,
                        upto: Edg(u128::MAX),
                    }),
                ),
            };
            super::Lease {
                format: super::FORMAT,
                id: self.id,
                terms: self.terms,
                state: self.state,
                since: self.since,
                running_since: self.running_since,
                channel: self.channel,
                channel_base: self.channel_base,
                paid: self.paid,
                reason: self.reason,
                history: self.history,
                intent,
                claim,
                stopped: self.stopped,
                recheck_at: self.recheck_at,
            }
        }
    }
}

/// How long a lease that ended (settled, refused, expired) stays in the
/// hot tree that every tick reads: long enough for its buyer's last
/// questions to be cheap, short enough that months of leases do not cost
/// every tick a decode each.
const KEEP_ENDED: u64 = 3600;

/// The agent's leases in sled: the one owner of lease records. Live leases
/// (and those ended within `KEEP_ENDED`) are in the hot tree; older ended
/// ones, once `prune` moved them, in the `ended` tree, read only by `get`.
pub struct LeaseBook {
    tree: Tree,
    ended: Option<Tree>,
    timing: Timing,
}

impl LeaseBook {
    /// Opens the book: every record must decode; older formats' records
    /// are rewritten as format 3 (durably) before anything reads them.
    pub fn open(tree: Tree, timing: Timing) -> Result<LeaseBook> {
        let book = LeaseBook {
            tree,
            ended: None,
            timing,
        };
        let mut upgraded = false;
        for item in book.tree.iter_bytes() {
            let (key, bytes) = item.map_err(Error::Store)?;
            let lease = Lease::decode(&bytes)?;
            if bytes.first() != Some(&FORMAT) {
                let new = lease.encode()?;
                book.tree
                    .compare_and_swap(&key, Some(&bytes), Some(&new))
                    .map_err(Error::Store)?;
                upgraded = true;
            }
        }
        if upgraded {
            book.tree.flush().map_err(Error::Store)?;
        }
        Ok(book)
    }

    pub fn timing(&self) -> &Timing {
        &self.timing
    }

    /// Keeps ended leases in `ended` once `prune` moves them there. A
    /// record found in both (a crash in the middle of a move) keeps the
    /// `ended` copy: the move was made durable before the hot one went.
    pub(crate) fn archiving_to(mut self, ended: Tree) -> Result<LeaseBook> {
        let mut removed = false;
        for item in ended.iter_bytes() {
            let (key, _) = item.map_err(Error::Store)?;
            if self.tree.get_bytes(&key).map_err(Error::Store)?.is_some() {
                self.tree.remove(&key).map_err(Error::Store)?;
                removed = true;
            }
        }
        if removed {
            self.tree.flush().map_err(Error::Store)?;
        }
        self.ended = Some(ended);
        Ok(self)
    }

    /// Moves leases that ended `KEEP_ENDED` or more before `now` out of the
    /// hot tree: copied to `ended` and made durable, then removed. How many.
    pub(crate) fn prune(&self, now: UnixTime) -> Result<usize> {
        let Some(ended) = &self.ended else {
            return Ok(0);
        };
        let mut moved = Vec::new();
        for item in self.tree.iter_bytes() {
            let (key, bytes) = item.map_err(Error::Store)?;
            let l = Lease::decode(&bytes)?;
            if l.state.is_terminal() && now.since(l.since) >= KEEP_ENDED {
                // Already there (a move cut short): nothing to copy.
                ended
                    .compare_and_swap(&key, None, Some(&bytes))
                    .map_err(Error::Store)?;
                moved.push((key, bytes));
            }
        }
        if moved.is_empty() {
            return Ok(0);
        }
        ended.flush().map_err(Error::Store)?;
        for (key, bytes) in &moved {
            // A terminal record does not change; if it did, it stays.
            self.tree
                .compare_and_swap(key, Some(bytes), None)
                .map_err(Error::Store)?;
        }
        self.tree.flush().map_err(Error::Store)?;
        Ok(moved.len())
    }

    /// A lease moved out of the hot tree, if it was.
    fn get_ended(&self, id: &LeaseId) -> Result<Option<Lease>> {
        let Some(ended) = &self.ended else {
            return Ok(None);
        };
        match ended.get_bytes(id.0).map_err(Error::Store)? {
            Some(b) => Lease::decode(&b).map(Some),
            None => Ok(None),
        }
    }

    /// Every lease moved out of the hot tree.
    pub(crate) fn all_ended(&self) -> Result<Vec<Lease>> {
        let Some(ended) = &self.ended else {
            return Ok(Vec::new());
        };
        ended
            .iter_bytes()
            .map(|item| Lease::decode(&item.map_err(Error::Store)?.1))
            .collect()
    }

    pub fn all(&self) -> Result<Vec<Lease>> {
        self.tree
            .iter_bytes()
            .map(|item| Lease::decode(&item.map_err(Error::Store)?.1))
            .collect()
    }

    pub fn get(&self, id: &LeaseId) -> Result<Option<Lease>> {
        match self.tree.get_bytes(id.0).map_err(Error::Store)? {
            Some(b) => Lease::decode(&b).map(Some),
            None => self.get_ended(id),
        }
    }

    /// The lease if `peer` is its buyer. An unknown lease and another
    /// buyer's get the same answer: a stranger learns nothing about which
    /// leases exist.
    pub fn of_buyer(&self, id: &LeaseId, peer: Address) -> Result<Lease> {
        match self.get(id)? {
            Some(l) if l.terms.buyer() == peer => Ok(l),
            _ => Err(Error::NotYours(*id)),
        }
    }

    /// Records a new offer, durably; an id already known is refused (a
    /// replayed offer must not reset a lease).
    pub fn insert(&self, lease: &Lease) -> Result<()> {
        if self.get_ended(&lease.id)?.is_some() {
            return Err(Error::Known(lease.id));
        }
        let new = lease.encode()?;
        let swapped = self
            .tree
            .compare_and_swap(lease.id.0, None, Some(&new))
            .map_err(Error::Store)?;
        if !swapped {
            return Err(Error::Known(lease.id));
        }
        self.tree.flush().map_err(Error::Store)
    }

    /// Runs `event` through the machine on the lease's current record and
    /// stores the result (compare-and-swap; on a lost race the step runs
    /// again on the winner's record), durably, before returning the
    /// effects to carry out.
    pub fn apply(&self, id: &LeaseId, event: &Event, now: UnixTime) -> Result<Applied> {
        let applied = self.apply_inner(id, event, now, &mut || {})?;
        if applied.changed {
            self.tree.flush().map_err(Error::Store)?;
        }
        Ok(applied)
    }

    /// `apply` without the flush: the caller flushes the store before it
    /// acts or acknowledges (the payment path commits its proof and the
    /// lease's new total with one fsync).
    pub(crate) fn apply_staged(
        &self,
        id: &LeaseId,
        event: &Event,
        now: UnixTime,
    ) -> Result<Applied> {
        self.apply_inner(id, event, now, &mut || {})
    }

    /// `apply` with `between` run after the record is read and before it
    /// is swapped: lets a test put another writer exactly there.
    #[cfg(test)]
    pub(crate) fn apply_racing(
        &self,
        id: &LeaseId,
        event: &Event,
        now: UnixTime,
        between: &mut dyn FnMut(),
    ) -> Result<Applied> {
        self.apply_inner(id, event, now, between)
    }

    fn apply_inner(
        &self,
        id: &LeaseId,
        event: &Event,
        now: UnixTime,
        between: &mut dyn FnMut(),
    ) -> Result<Applied> {
        loop {
            let Some(old) = self.tree.get_bytes(id.0).map_err(Error::Store)? else {
                // An ended lease moved out: it answers, never changes.
                let lease = self.get_ended(id)?.ok_or(Error::Unknown(*id))?;
                let (new, effects) = machine::step(&lease, event, &self.timing, now)?;
                if new != lease {
                    return Err(Error::NotNow {
                        id: *id,
                        state: lease.state.name(),
                        event: event.name(),
                    });
                }
                return Ok(Applied {
                    lease,
                    effects,
                    changed: false,
                });
            };
            let lease = Lease::decode(&old)?;
            let (new, effects): (Lease, Vec<Effect>) =
                machine::step(&lease, event, &self.timing, now)?;
            if new == lease {
                return Ok(Applied {
                    lease: new,
                    effects,
                    changed: false,
                });
            }
            between();
            let bytes = new.encode()?;
            if self
                .tree
                .compare_and_swap(id.0, Some(&old), Some(&bytes))
                .map_err(Error::Store)?
            {
                return Ok(Applied {
                    lease: new,
                    effects,
                    changed: true,
                });
            }
            log::debug!("lease {id}: record changed under {event:?}; stepping again");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::Store;

    pub(crate) fn terms() -> Terms {
        Terms {
            buyer: [1; 20],
            gateway: [2; 20],
            cpu_millicores: 500,
            memory_bytes: 64 << 20,
            disk_bytes: 256 << 20,
            devices: vec![],
            price_per_second: Edg(1000),
            max_duration: 3600,
            payment_interval: 5,
            image: "bafy".into(),
            expiry: 2_000_000_000,
            nonce: 1,
        }
    }

    fn book(store: &Store) -> LeaseBook {
        LeaseBook::open(store.tree("leases").unwrap(), Timing::for_tests()).unwrap()
    }

    #[test]
    fn the_machine_allows_only_its_edges_and_ends_in_terminal_states() {
        use State::*;
        for s in State::ALL {
            assert_eq!(s.is_terminal(), s.next().is_empty(), "{s:?}");
        }
        // Every state a lease reaches after the accept ends by settling.
        for s in [Accepted, FeePaid, ChannelProven, Deploying, Running, Frozen] {
            assert!(s.next().contains(&Terminating), "{s:?}");
        }
        let mut seen = vec![Offered];
        let mut i = 0;
        while i < seen.len() {
            for n in seen[i].next() {
                if !seen.contains(n) {
                    seen.push(*n);
                }
            }
            i += 1;
        }
        assert_eq!(seen.len(), State::ALL.len());
    }

    #[test]
    fn a_format_1_record_reads_and_is_rewritten_as_the_current_format() {
        let store = Store::temporary().unwrap();
        let tree = store.tree("leases").unwrap();
        let old = v1::Lease {
            format: 1,
            id: [7; 32],
            terms: v1::OfferTerms {
                buyer: [1; 20],
                gateway: [2; 20],
                cpu_millicores: 250,
                memory_bytes: 1 << 20,
                disk_bytes: 2 << 20,
                devices: vec!["d:c:r".into()],
                price_per_second: 42,
                max_duration: 60,
                payment_interval: 5,
                image: "bafyold".into(),
                expiry: 9,
                nonce: 3,
            },
            state: State::Frozen,
            since: 120,
            running_since: Some(100),
            channel: Some([5; 32]),
            channel_base: 10,
            paid: 700,
            reason: Some("behind".into()),
            history: vec![(State::Offered, 90), (State::Frozen, 120)],
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        tree.compare_and_swap([7; 32], None, Some(&bytes)).unwrap();
        let book = LeaseBook::open(tree.clone(), Timing::for_tests()).unwrap();
        let l = book.get(&LeaseId([7; 32])).unwrap().unwrap();
        assert_eq!(l.format, FORMAT);
        assert_eq!(l.state, State::Frozen);
        assert_eq!(l.since, UnixTime(120));
        assert_eq!(l.running_since, Some(UnixTime(100)));
        assert_eq!(l.channel, Some(ChannelId([5; 32])));
        assert_eq!((l.channel_base, l.paid), (Edg(10), Edg(700)));
        assert_eq!(l.terms.price_per_second, Edg(42));
        assert_eq!(l.terms.devices, vec!["d:c:r".to_string()]);
        assert_eq!((l.intent, l.claim), (None, None));
        assert!(!l.stopped);
        assert_eq!(tree.get_bytes([7; 32]).unwrap().unwrap()[0], FORMAT);
        // A record of a format this agent does not know is named, not guessed.
        tree.compare_and_swap([8; 32], None, Some(&[9u8, 0, 0]))
            .unwrap();
        let err = LeaseBook::open(tree, Timing::for_tests()).err().unwrap();
        assert!(err.to_string().contains("format 9"), "{err}");
    }

    /// Two format 2 records as the agent before format 3 (`c2f6c67`) wrote
    /// them: a terminating lease with a claim recorded, and one with a
    /// report recorded (`Lease::offered` at 1, terminating at 50 with 900
    /// paid on channel [5; 32] from base 3, stopped, recheck at 60).
    const V2_CLAIM: &str = "02010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010101010202020202020202020202020202020202020202f40380808020808080800100e807901c05046261667980a8d6b907010932010a0105050505050505050505050505050505050505050505050505050505050505050384070104646f6e650200010932010437013c";
    const V2_REPORT: &str = "02020202020202020202020202020202020202020202020202020202020202020201010101010101010101010101010101010101010202020202020202020202020202020202020202f40380808020808080800100e807901c05046261667980a8d6b907010932010a0105050505050505050505050505050505050505050505050505050505050505050384070104646f6e6502000109320101840733013c";

    #[test]
    fn a_format_2_record_reads_with_its_claim_in_its_own_slot() {
        let store = Store::temporary().unwrap();
        let tree = store.tree("leases").unwrap();
        for (id, hex) in [(1u8, V2_CLAIM), (2, V2_REPORT)] {
            let bytes = alloy_primitives::hex::decode(hex).unwrap();
            tree.compare_and_swap([id; 32], None, Some(&bytes)).unwrap();
        }
        let book = LeaseBook::open(tree.clone(), Timing::for_tests()).unwrap();
        let claim = book.get(&LeaseId([1; 32])).unwrap().unwrap();
        assert_eq!(
            (claim.intent, claim.claim),
            (
                None,
                Some(Claim {
                    at: UnixTime(55),
                    upto: Edg(u128::MAX)
                })
            )
        );
        let report = book.get(&LeaseId([2; 32])).unwrap().unwrap();
        assert_eq!(
            (report.intent, report.claim),
            (
                Some(Intent::Report {
                    paid: Edg(900),
                    at: UnixTime(51)
                }),
                None
            )
        );
        for l in [&claim, &report] {
            assert_eq!(l.format, FORMAT);
            assert_eq!(
                (l.state, l.since, l.stopped),
                (State::Terminating, UnixTime(50), true)
            );
            assert_eq!((l.paid, l.channel_base), (Edg(900), Edg(3)));
            assert_eq!(l.channel, Some(ChannelId([5; 32])));
            assert_eq!(l.reason.as_deref(), Some("done"));
            assert_eq!(l.running_since, Some(UnixTime(10)));
            assert_eq!(l.history.len(), 2);
            assert_eq!(l.recheck_at, UnixTime(60));
            assert_eq!(l.terms, terms());
            assert_eq!(tree.get_bytes(l.id.0).unwrap().unwrap()[0], FORMAT);
        }
    }

    #[test]
    fn ended_leases_leave_the_hot_tree_and_still_answer() {
        let store = Store::temporary().unwrap();
        let book = book(&store)
            .archiving_to(store.tree("leases-ended").unwrap())
            .unwrap();
        let (done, live) = (LeaseId([1; 32]), LeaseId([2; 32]));
        let mut l = Lease::offered(done, terms(), UnixTime(0));
        book.insert(&l).unwrap();
        book.apply(&done, &Event::Refused("no".into()), UnixTime(10))
            .unwrap();
        l.id = live;
        book.insert(&l).unwrap();
        assert_eq!(book.prune(UnixTime(10 + KEEP_ENDED - 1)).unwrap(), 0);
        assert_eq!(book.prune(UnixTime(10 + KEEP_ENDED)).unwrap(), 1);
        let hot: Vec<_> = book.all().unwrap().iter().map(|l| l.id).collect();
        assert_eq!(hot, vec![live], "the tick reads only the live one");
        assert_eq!(book.all_ended().unwrap().len(), 1);
        // Still found, still answers, never reset by a replayed offer.
        assert_eq!(book.get(&done).unwrap().unwrap().state, State::Refused);
        let again = book
            .apply(&done, &Event::Terminate("again".into()), UnixTime(9_999))
            .unwrap();
        assert!(!again.changed);
        assert!(matches!(
            book.insert(&Lease::offered(done, terms(), UnixTime(9_999))),
            Err(Error::Known(_))
        ));
        // A move cut short (in both trees): the hot copy goes at open.
        let hot = store.tree("leases").unwrap();
        let bytes = store
            .tree("leases-ended")
            .unwrap()
            .get_bytes(done.0)
            .unwrap()
            .unwrap();
        hot.compare_and_swap(done.0, None, Some(&bytes)).unwrap();
        let reopened = LeaseBook::open(hot.clone(), Timing::for_tests())
            .unwrap()
            .archiving_to(store.tree("leases-ended").unwrap())
            .unwrap();
        assert!(hot.get_bytes(done.0).unwrap().is_none());
        assert_eq!(reopened.get(&done).unwrap().unwrap().state, State::Refused);
    }

    #[test]
    fn a_payment_racing_a_freeze_does_not_write_back_running() {
        // Defect 1 of issue 13: the payment read the lease as Running, the
        // tick froze it, the payment wrote Running back over Frozen.
        let store = Store::temporary().unwrap();
        let book = book(&store);
        let id = LeaseId([3; 32]);
        let mut l = Lease::offered(id, terms(), UnixTime(0));
        l.state = State::Running;
        l.running_since = Some(UnixTime(0));
        l.channel = Some(ChannelId([4; 32]));
        book.insert(&l).unwrap();
        // 100 s owed 100_000; paid 0; grace 10 s → the tick freezes.
        let tick = Event::Tick {
            container: machine::Observed::Running,
        };
        let mut raced = false;
        let applied = book
            .apply_racing(
                &id,
                &Event::Paid {
                    cumulative: Edg(5_000),
                },
                UnixTime(100),
                &mut || {
                    if !raced {
                        raced = true;
                        let frozen = book.apply(&id, &tick, UnixTime(100)).unwrap();
                        assert_eq!(frozen.lease.state, State::Frozen);
                    }
                },
            )
            .unwrap();
        assert!(raced);
        let l = book.get(&id).unwrap().unwrap();
        assert_eq!(l.state, State::Frozen, "the freeze survived the payment");
        assert_eq!(l.paid, Edg(5_000), "and the payment survived the freeze");
        assert_eq!(applied.lease, l);
    }

    #[test]
    fn concurrent_payments_and_ticks_lose_nothing() {
        let store = Store::temporary().unwrap();
        let book = std::sync::Arc::new(book(&store));
        let id = LeaseId([6; 32]);
        let mut l = Lease::offered(id, terms(), UnixTime(0));
        l.state = State::Running;
        l.running_since = Some(UnixTime(0));
        l.channel = Some(ChannelId([4; 32]));
        book.insert(&l).unwrap();
        let payers: Vec<_> = (0..4u128)
            .map(|t| {
                let book = book.clone();
                std::thread::spawn(move || {
                    for i in 0..200u128 {
                        let cumulative = Edg((i * 4 + t + 1) * 1000);
                        book.apply(&id, &Event::Paid { cumulative }, UnixTime(1))
                            .unwrap();
                    }
                })
            })
            .collect();
        for n in 0..200u64 {
            let observed = match book.get(&id).unwrap().unwrap().state {
                State::Frozen => machine::Observed::Paused,
                _ => machine::Observed::Running,
            };
            book.apply(
                &id,
                &Event::Tick {
                    container: observed,
                },
                UnixTime(n),
            )
            .unwrap();
        }
        for p in payers {
            p.join().unwrap();
        }
        let l = book.get(&id).unwrap().unwrap();
        assert_eq!(l.paid, Edg(800 * 1000), "the highest proof is the total");
    }

    #[test]
    fn an_unknown_lease_and_another_buyers_get_the_same_answer() {
        let store = Store::temporary().unwrap();
        let book = book(&store);
        let id = LeaseId([1; 32]);
        book.insert(&Lease::offered(id, terms(), UnixTime(0)))
            .unwrap();
        let stranger = Address::repeat_byte(9);
        let theirs = book.of_buyer(&id, stranger).unwrap_err().to_string();
        let none = book
            .of_buyer(&LeaseId([2; 32]), stranger)
            .unwrap_err()
            .to_string();
        assert_eq!(
            theirs.replace(&id.to_string(), "X"),
            none.replace(&LeaseId([2; 32]).to_string(), "X")
        );
        assert!(book.of_buyer(&id, Address::from([1; 20])).is_ok());
        assert!(matches!(
            book.insert(&Lease::offered(id, terms(), UnixTime(5))),
            Err(Error::Known(_))
        ));
    }
}
