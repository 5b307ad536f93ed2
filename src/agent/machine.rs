//! The lease state machine: `step(lease, event) -> (lease, effects)`, a
//! pure function. Nothing here touches the chain, a container or the disk;
//! the book (`lease::LeaseBook::apply`) stores what a step returns before
//! anyone carries out its effects, and the executor (`daemon`) carries them
//! out and feeds what it saw back in as events. So every rule is testable
//! without a node or root, and property tests (below) drive random event
//! sequences through it.
//!
//! The machine is level-triggered where the world can drift: each tick
//! brings what the runtime says of the container and each chain read what
//! the Market says of the lease, and the step returns the effects that
//! bring them back to what the record says (a container the record says is
//! frozen but that runs is paused again; one that exited by itself ends the
//! lease). On-chain steps are recorded as an `Intent` before they are
//! sent, and re-sent only after `Timing::resend_after` while the chain
//! still shows them undone: the Market itself refuses a second accept,
//! report, finalize or cancel, and a report is always re-sent with the
//! amount first recorded.

use super::lease::{Claim, Intent, Lease, State, UnixTime};
use super::{Error, Result};
use crate::channel::ChannelId;
use crate::market::MarketState;
use crate::units::Edg;

/// Longer than the gateway's transaction sender may take on one send (six
/// fee bumps a minute apart, then confirmations): a step is sent again only
/// once the first can no longer be waiting for its receipt.
const RESEND_AFTER: u64 = 900;

/// How often a lease with a channel is read on chain while it runs. The
/// ChannelManager's challenge period is at least an hour
/// (`MIN_CHALLENGE_PERIOD`), so a buyer who starts closing the channel is
/// seen, and its newest proof claimed, with most of that hour to spare.
const WATCH: u64 = 60;

/// The machine's clocks and patience, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How far behind (in seconds of the lease's price) a buyer may fall
    /// before its container is frozen, and how long it stays frozen before
    /// the lease is stopped (`[pricing] grace`).
    pub grace: u64,
    /// How long an on-chain step may stay unseen on chain before it is
    /// sent again.
    resend_after: u64,
    /// How long a lease may wait on its buyer (fee, channel, deploy) before
    /// the agent ends it and frees what it holds.
    buyer_wait: u64,
    /// The longest pause between chain reads of a settling lease (one
    /// `eth_call` and one block read each: cheap next to a settlement
    /// that waits on a node's clock).
    pub(crate) recheck: u64,
    /// The pause between chain reads of a lease that holds a channel and
    /// has not begun terminating: how late a buyer's close is seen.
    pub watch: u64,
}

impl Timing {
    pub fn with_grace(grace: u64) -> Timing {
        Timing {
            grace,
            resend_after: RESEND_AFTER,
            buyer_wait: 3600,
            recheck: 10,
            watch: WATCH,
        }
    }

    #[cfg(test)]
    pub(crate) fn for_tests() -> Timing {
        Timing::with_grace(10)
    }
}

/// What the runtime says of a lease's container, at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    Running,
    Paused,
    /// The container's init exited: its status as a shell reports it, and
    /// whether the kernel's OOM killer was involved.
    Exited {
        code: i32,
        oom: bool,
    },
    /// No such container.
    Missing,
    /// Not looked at (the lease is in no state that has a container), or
    /// the runtime could not say.
    Unknown,
}

/// What the Market says of a lease, with the chain's clock and what the
/// channel could still claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainView {
    pub state: MarketState,
    pub seller_reported: bool,
    /// `Lease.start`: acceptance time until funded, then the lease start.
    pub start: u64,
    /// `Lease.end`: the first termination's time.
    pub end: u64,
    pub(crate) offer_expiry: u64,
    /// The latest block's timestamp.
    pub(crate) chain_time: u64,
    pub(crate) termination_timeout: u64,
    pub(crate) funding_window: u64,
    /// The channel's newest proof is above what was claimed.
    pub(crate) claimable: bool,
    /// The channel's newest proof (cumulative), zero if none.
    pub newest: Edg,
    /// The channel's sender started an uncooperative close: once its
    /// challenge period ends, anything not claimed is refunded to it.
    pub(crate) channel_closing: bool,
    /// The lease's channel does not exist on chain (settled and deleted):
    /// proofs on it can no longer be claimed.
    pub(crate) channel_gone: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Admission passed: the accept is about to be sent.
    Admitted,
    /// Admission failed, or the chain refused the accept for good.
    Refused(String),
    /// The accept was mined.
    AcceptMined,
    /// The Market holds the fee (`Active`).
    FeeSeen,
    /// The buyer's channel checked on chain; `base` is its cumulative
    /// amount before this lease.
    ChannelProven {
        channel: ChannelId,
        base: Edg,
    },
    DeployStarted,
    /// The container runs: the meter starts.
    ContainerStarted,
    DeployFailed(String),
    /// A balance proof for this lease was accepted (durable in the
    /// channel receiver); `cumulative` is the channel's total.
    Paid {
        cumulative: Edg,
    },
    /// The clock, with the container as the runtime sees it.
    Tick {
        container: Observed,
    },
    /// The buyer ends the lease.
    Terminate(String),
    /// The gateway's operator ends the lease (`evict`): settled for the
    /// time served, like any other end.
    Evict(String),
    /// The lease's container is stopped and removed.
    TornDown,
    /// A chain read of the lease.
    Chain(ChainView),
    /// A chain read or send failed (node down, timeout): try again after
    /// `Timing::recheck`, not at every tick.
    ChainFailed,
    /// The agent started again; this lease was in the book.
    Restarted,
}

impl Event {
    pub fn name(&self) -> &'static str {
        match self {
            Event::Admitted => "admitted",
            Event::Refused(_) => "refused",
            Event::AcceptMined => "accept mined",
            Event::FeeSeen => "fee seen",
            Event::ChannelProven { .. } => "channel proven",
            Event::DeployStarted => "deploy started",
            Event::ContainerStarted => "container started",
            Event::DeployFailed(_) => "deploy failed",
            Event::Paid { .. } => "paid",
            Event::Tick { .. } => "tick",
            Event::Terminate(_) => "terminate",
            Event::Evict(_) => "evict",
            Event::TornDown => "torn down",
            Event::Chain(_) => "chain read",
            Event::ChainFailed => "chain failed",
            Event::Restarted => "restarted",
        }
    }
}

/// What the executor does after a step is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// `acceptOffer`.
    SendAccept,
    Pause,
    Resume,
    /// Stop (TERM, grace, KILL) and remove the container, then feed
    /// `TornDown`.
    Teardown,
    /// Read the lease on chain and feed `Chain`.
    ReadChain,
    /// `terminate(lease, paid)`.
    Report {
        paid: Edg,
    },
    Finalize,
    Cancel,
    /// Claim the channel up to its newest proof.
    Claim,
}

impl Effect {
    /// Whether carrying it out talks to the chain (and may wait on a node).
    pub fn on_chain(self) -> bool {
        match self {
            Effect::Pause | Effect::Resume | Effect::Teardown => false,
            Effect::SendAccept
            | Effect::ReadChain
            | Effect::Report { .. }
            | Effect::Finalize
            | Effect::Cancel
            | Effect::Claim => true,
        }
    }
}

/// A stored step: the lease as it now is, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub lease: Lease,
    pub effects: Vec<Effect>,
    /// Whether the record changed (and was written).
    pub changed: bool,
}

/// Seconds the lease's container has run by `now`: from `Running`, to the
/// end (when it began terminating) or now, capped at the maximum duration.
pub fn ran(lease: &Lease, now: UnixTime) -> u64 {
    let Some(start) = lease.running_since else {
        return 0;
    };
    let until = lease.ended_at().map_or(now, |end| end.min(now));
    until.since(start).min(u64::from(lease.terms.max_duration))
}

/// What the buyer owes for the time run so far.
pub(crate) fn owed(lease: &Lease, now: UnixTime) -> Edg {
    lease.terms.price_per_second.per_second_for(ran(lease, now))
}

/// How far behind a buyer may fall before its container is frozen.
fn allowance(lease: &Lease, t: &Timing) -> Edg {
    lease.terms.price_per_second.per_second_for(t.grace)
}

fn not_now(l: &Lease, e: &Event) -> Error {
    Error::NotNow {
        id: l.id,
        state: l.state.name(),
        event: e.name(),
    }
}

/// The transition. A lease unchanged and no effects means "nothing to do";
/// an event that has no meaning in the lease's state is an error and
/// changes nothing.
pub fn step(
    lease: &Lease,
    event: &Event,
    t: &Timing,
    now: UnixTime,
) -> Result<(Lease, Vec<Effect>)> {
    use State::*;
    let mut l = lease.clone();
    let mut fx = Vec::new();
    match (lease.state, event) {
        (Offered, Event::Admitted) => {
            l.enter(Accepting, now, None);
            l.intent = Some(Intent::Accept { at: now });
            fx.push(Effect::SendAccept);
        }
        (Offered | Accepting, Event::Refused(why)) => l.enter(Refused, now, Some(why.clone())),
        (Accepting, Event::AcceptMined) => {
            l.intent = None;
            l.enter(Accepted, now, None);
        }
        // The desk and a chain read may both report the accept.
        (Accepted | FeePaid | ChannelProven | Deploying | Running | Frozen, Event::AcceptMined) => {
        }
        (Accepting, Event::Chain(v)) => accepting_seen(&mut l, v, t, now, &mut fx),
        (Accepting, Event::Restarted) => fx.push(Effect::ReadChain),
        (Accepting, Event::Tick { .. }) if now >= l.recheck_at => fx.push(Effect::ReadChain),
        (Accepting | Terminating, Event::ChainFailed) => l.recheck_at = now.plus(t.recheck),
        (_, Event::ChainFailed) => {}
        (Offered, Event::Restarted) => l.enter(
            Refused,
            now,
            Some("the agent restarted before deciding on the offer".into()),
        ),

        (Accepted, Event::FeeSeen) => l.enter(FeePaid, now, None),
        (FeePaid | ChannelProven | Deploying | Running | Frozen, Event::FeeSeen) => {}
        (FeePaid, Event::ChannelProven { channel, base }) => {
            l.channel = Some(*channel);
            l.channel_base = *base;
            l.enter(ChannelProven, now, None);
        }
        (ChannelProven, Event::DeployStarted) => l.enter(Deploying, now, None),
        (Deploying, Event::ContainerStarted) => l.enter(Running, now, None),
        (Deploying, Event::DeployFailed(why)) => {
            terminate(&mut l, now, format!("deploy failed: {why}"), &mut fx)
        }
        (Deploying, Event::Tick { .. }) if now.since(l.since) >= t.buyer_wait => terminate(
            &mut l,
            now,
            "the deploy did not finish in time".into(),
            &mut fx,
        ),
        (Deploying, Event::Restarted) => terminate(
            &mut l,
            now,
            "the agent restarted while deploying".into(),
            &mut fx,
        ),

        (_, Event::Paid { cumulative }) if l.channel.is_some() => {
            let paid = cumulative.saturating_sub(l.channel_base);
            if paid > l.paid {
                l.paid = paid;
            }
        }

        (Accepted | FeePaid | ChannelProven, Event::Tick { .. })
            if now.since(l.since) >= t.buyer_wait =>
        {
            let why = match l.state {
                Accepted => "the buyer did not deposit the fee in time",
                FeePaid => "the buyer did not prove a channel in time",
                _ => "the buyer did not deploy in time",
            };
            terminate(&mut l, now, why.into(), &mut fx);
        }
        (Running | Frozen, Event::Tick { container }) => {
            enforce(&mut l, *container, t, now, &mut fx);
            watch(&mut l, t, now, &mut fx);
        }
        (ChannelProven | Deploying, Event::Tick { .. }) => watch(&mut l, t, now, &mut fx),
        (ChannelProven | Deploying | Running | Frozen, Event::Chain(v)) => {
            watch_seen(&mut l, v, t, now, &mut fx)
        }
        // A container seen for a lease that was torn down (a deploy that
        // lost the race with its termination): down again.
        (
            Terminating,
            Event::Tick {
                container: Observed::Running | Observed::Paused | Observed::Exited { .. },
            },
        ) if l.stopped => {
            l.stopped = false;
            fx.push(Effect::Teardown);
        }
        (Terminating, Event::Tick { .. } | Event::Restarted) => {
            if !l.stopped {
                fx.push(Effect::Teardown);
            } else if now >= l.recheck_at {
                fx.push(Effect::ReadChain);
            }
        }
        (Terminating, Event::TornDown) => {
            l.stopped = true;
            l.recheck_at = now;
            fx.push(Effect::ReadChain);
        }
        (Terminating, Event::Chain(v)) if l.stopped => settle_seen(&mut l, v, t, now, &mut fx),
        // The container is still coming down (the tick sends the teardown
        // again until it is): a closing channel's claim does not wait.
        (Terminating, Event::Chain(v)) => claim(&mut l, v, t, now, &mut fx),

        (
            Accepted | FeePaid | ChannelProven | Deploying | Running | Frozen,
            Event::Terminate(why),
        ) => terminate(&mut l, now, format!("the buyer ended it: {why}"), &mut fx),
        (Accepted | FeePaid | ChannelProven | Deploying | Running | Frozen, Event::Evict(why)) => {
            terminate(
                &mut l,
                now,
                format!("evicted by the gateway's operator: {why}"),
                &mut fx,
            )
        }
        // Ending an ended lease again is not an error: the buyer may retry,
        // a command be taken again.
        (Terminating | Settled | Refused | Expired, Event::Terminate(_) | Event::Evict(_)) => {}

        // Every state's tick and restart that has nothing to do.
        (_, Event::Tick { .. } | Event::Restarted) => {}
        _ => return Err(not_now(lease, event)),
    }
    Ok((l, fx))
}

/// Ends a lease that was accepted: the container goes first, then the
/// chain (`Terminating` carries on from `TornDown`).
fn terminate(l: &mut Lease, now: UnixTime, why: String, fx: &mut Vec<Effect>) {
    l.enter(State::Terminating, now, Some(why));
    l.stopped = false;
    l.intent = None;
    fx.push(Effect::Teardown);
}

/// Payment enforcement and the container's own health, for a running or
/// frozen lease.
fn enforce(l: &mut Lease, container: Observed, t: &Timing, now: UnixTime, fx: &mut Vec<Effect>) {
    match container {
        Observed::Exited { code, oom } => {
            let oom = if oom { ", out of memory" } else { "" };
            let why = format!("the container exited by itself (status {code}{oom})");
            return terminate(l, now, why, fx);
        }
        Observed::Missing => return terminate(l, now, "the container is gone".into(), fx),
        Observed::Running | Observed::Paused | Observed::Unknown => {}
    }
    let ran = l.running_since.map_or(0, |s| now.since(s));
    if ran >= u64::from(l.terms.max_duration) {
        return terminate(l, now, "the lease's maximum duration is over".into(), fx);
    }
    let owed = owed(l, now);
    let behind = owed.saturating_sub(l.paid);
    let allowance = allowance(l, t);
    match l.state {
        State::Running if behind > allowance => {
            let why = format!(
                "behind on payment: owed {}, paid {}",
                owed.wei(),
                l.paid.wei()
            );
            l.enter(State::Frozen, now, Some(why));
            fx.push(Effect::Pause);
        }
        State::Running if container == Observed::Paused => fx.push(Effect::Resume),
        State::Frozen if behind <= allowance => {
            l.enter(State::Running, now, Some("paid up".into()));
            fx.push(Effect::Resume);
        }
        State::Frozen if now.since(l.since) >= t.grace => {
            let why = format!(
                "stopped: still behind {} s after being frozen (owed {}, paid {})",
                t.grace,
                owed.wei(),
                l.paid.wei()
            );
            terminate(l, now, why, fx);
        }
        State::Frozen if container == Observed::Running => fx.push(Effect::Pause),
        _ => {}
    }
}

/// A lease that holds a channel is read on chain every `Timing::watch`
/// while it has not begun terminating: its buyer may start closing the
/// channel, or end the lease on the Market, without a word to the agent.
fn watch(l: &mut Lease, t: &Timing, now: UnixTime, fx: &mut Vec<Effect>) {
    let watched = matches!(
        l.state,
        State::ChannelProven | State::Deploying | State::Running | State::Frozen
    );
    if watched && l.channel.is_some() && now >= l.recheck_at {
        l.recheck_at = now.plus(t.watch);
        fx.push(Effect::ReadChain);
    }
}

/// A chain read of a lease being watched. A channel that is closing ends
/// the lease: proofs on it are worth only what is claimed before its
/// challenge period ends, so the agent claims at once and stops serving
/// (what is paid while the container comes down is claimed by
/// `settle_seen` after it). A channel gone from the chain ends it, and so
/// does a lease the Market has moved past `Active` (the buyer reported on
/// chain). Anything else (a lagging node that still says `Accepted`) is
/// left as it is.
fn watch_seen(l: &mut Lease, v: &ChainView, t: &Timing, now: UnixTime, fx: &mut Vec<Effect>) {
    l.recheck_at = now.plus(t.watch);
    if v.channel_closing {
        // Claimed first: the teardown may take its grace, or fail.
        claim(l, v, t, now, fx);
        let why = "the buyer started closing the lease's channel on chain".to_string();
        return terminate(l, now, why, fx);
    }
    // A channel the desk saw on chain when it was proven, gone a watch
    // later (not a node that has yet to see it): settled by its buyer, so
    // nothing more it pays can be claimed.
    let proven = l
        .history
        .iter()
        .rev()
        .find(|(s, _)| *s == State::ChannelProven)
        .map_or(UnixTime(0), |(_, at)| *at);
    if v.channel_gone && now.since(proven) >= t.watch {
        let why = "the lease's channel is gone on chain (its buyer settled it)".to_string();
        return terminate(l, now, why, fx);
    }
    if matches!(
        v.state,
        MarketState::Terminating | MarketState::Settled | MarketState::Cancelled
    ) {
        let why = format!("the Market has the lease {}", v.state);
        terminate(l, now, why, fx);
    }
}

/// Claims the channel when it is worth it: a proof above what was claimed,
/// and either the lease settled or the channel closing (its sender would
/// get back what is not claimed in time). A claim sent and not yet seen is
/// sent again only once due, or at once for a newer proof.
fn claim(l: &mut Lease, v: &ChainView, t: &Timing, now: UnixTime, fx: &mut Vec<Effect>) {
    if !v.claimable {
        l.claim = None;
        return;
    }
    let settled = matches!(v.state, MarketState::Settled | MarketState::Cancelled);
    if !(settled || v.channel_closing) {
        return;
    }
    if l.claim
        .is_some_and(|c| c.upto >= v.newest && !due(c.at, t, now))
    {
        return;
    }
    l.claim = Some(Claim {
        at: now,
        upto: v.newest,
    });
    fx.push(Effect::Claim);
}

/// Whether an intent recorded at `at` may be sent again.
fn due(at: UnixTime, t: &Timing, now: UnixTime) -> bool {
    now.since(at) >= t.resend_after
}

/// A chain read while the accept is pending.
fn accepting_seen(l: &mut Lease, v: &ChainView, t: &Timing, now: UnixTime, fx: &mut Vec<Effect>) {
    match v.state {
        MarketState::Accepted
        | MarketState::Active
        | MarketState::Terminating
        | MarketState::Settled => {
            l.intent = None;
            l.enter(State::Accepted, now, None);
        }
        // `acceptOffer` reverts past the expiry, so a pending accept can
        // no longer land: nothing happened on chain.
        MarketState::Proposed if v.chain_time > v.offer_expiry => {
            l.intent = None;
            let why = "the offer expired before the accept was mined".to_string();
            l.enter(State::Expired, now, Some(why));
        }
        MarketState::Proposed => match l.intent {
            Some(Intent::Accept { at }) if !due(at, t, now) => {
                let left = t.resend_after.saturating_sub(now.since(at));
                l.recheck_at = now.plus(left.clamp(1, t.recheck));
            }
            _ => {
                l.intent = Some(Intent::Accept { at: now });
                fx.push(Effect::SendAccept);
            }
        },
        MarketState::Cancelled => {
            l.intent = None;
            let why = format!("the offer is {} on chain", v.state);
            l.enter(State::Expired, now, Some(why));
        }
        // The desk saw the offer proposed: a node that knows nothing of it
        // lags or lies, and one read of it must not forget a lease that
        // may be accepted.
        MarketState::None => {
            log::warn!("lease {}: the Market has no such offer; waiting", l.id);
            l.recheck_at = now.plus(t.recheck);
        }
    }
}

/// Records `intent` unless the same kind is recorded and not yet due;
/// returns whether to send it now.
fn intend(l: &mut Lease, intent: Intent, t: &Timing, now: UnixTime) -> bool {
    let same = |a: &Intent, b: &Intent| std::mem::discriminant(a) == std::mem::discriminant(b);
    match l.intent {
        Some(ref old) if same(old, &intent) => {
            let at = match *old {
                Intent::Accept { at }
                | Intent::Report { at, .. }
                | Intent::Finalize { at }
                | Intent::Cancel { at } => at,
            };
            if !due(at, t, now) {
                return false;
            }
            // Re-sent as first recorded (a report keeps its amount).
            l.intent = Some(match (*old, intent) {
                (Intent::Report { paid, .. }, _) => Intent::Report { paid, at: now },
                (_, new) => new,
            });
            true
        }
        _ => {
            l.intent = Some(intent);
            true
        }
    }
}

/// A chain read of a terminating lease whose container is gone: the next
/// on-chain step, or settled.
fn settle_seen(l: &mut Lease, v: &ChainView, t: &Timing, now: UnixTime, fx: &mut Vec<Effect>) {
    l.recheck_at = now.plus(t.recheck);
    // First: a closing channel's deadline is the challenge period's, not
    // the Market's.
    claim(l, v, t, now, fx);
    match v.state {
        MarketState::Accepted => {
            // Never funded: cancel once the contract allows it, so a late
            // fee cannot fund a lease nobody serves.
            let allowed = v.start.saturating_add(v.funding_window);
            if v.chain_time >= allowed {
                if intend(l, Intent::Cancel { at: now }, t, now) {
                    fx.push(Effect::Cancel);
                }
            } else {
                l.recheck_at = now.plus((allowed - v.chain_time).clamp(1, t.recheck));
            }
        }
        MarketState::Active | MarketState::Terminating if !v.seller_reported => {
            let report = Intent::Report {
                paid: l.paid,
                at: now,
            };
            if intend(l, report, t, now) {
                if let Some(Intent::Report { paid, .. }) = l.intent {
                    fx.push(Effect::Report { paid });
                }
            }
        }
        MarketState::Terminating => {
            let allowed = v.end.saturating_add(v.termination_timeout);
            if v.chain_time >= allowed {
                if intend(l, Intent::Finalize { at: now }, t, now) {
                    fx.push(Effect::Finalize);
                }
            } else {
                l.recheck_at = now.plus((allowed - v.chain_time).clamp(1, t.recheck));
            }
        }
        // Settled once the claim is seen (`claim` above sent it).
        MarketState::Settled | MarketState::Cancelled if v.claimable => {}
        MarketState::Settled | MarketState::Cancelled => {
            l.intent = None;
            l.enter(State::Settled, now, None);
        }
        // A lease the Market never heard of, one still only proposed, or
        // one active though the seller reported: a wrong chain or RPC
        // node, not something to settle by guessing.
        MarketState::None | MarketState::Proposed | MarketState::Active => {
            log::warn!("lease {}: the Market has it {}; waiting", l.id, v.state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::lease::tests::terms;
    use crate::market::LeaseId;
    use proptest::prelude::*;

    const T: Timing = Timing {
        grace: 10,
        resend_after: 120,
        buyer_wait: 3600,
        recheck: 60,
        watch: 60,
    };

    fn lease() -> Lease {
        Lease::offered(LeaseId([1; 32]), terms(), UnixTime(0))
    }

    fn run(l: &Lease, e: Event, now: u64) -> (Lease, Vec<Effect>) {
        step(l, &e, &T, UnixTime(now)).unwrap()
    }

    fn view(state: MarketState) -> ChainView {
        ChainView {
            state,
            seller_reported: false,
            start: 0,
            end: 0,
            offer_expiry: 1_000,
            chain_time: 10,
            termination_timeout: 86_400,
            funding_window: 3_600,
            claimable: false,
            newest: Edg::ZERO,
            channel_closing: false,
            channel_gone: false,
        }
    }

    fn running(paid: u128) -> Lease {
        let mut l = lease();
        l.state = State::Running;
        l.running_since = Some(UnixTime(0));
        l.channel = Some(ChannelId([2; 32]));
        l.paid = Edg(paid);
        // Not watched on chain within these tests' times.
        l.recheck_at = UnixTime(1_000_000);
        l
    }

    #[test]
    fn the_accept_is_intended_before_it_is_sent_and_a_late_one_is_not_lost() {
        // Defect 2 of issue 13: the accept was sent before anything was
        // recorded, and a late receipt marked the lease refused while the
        // chain said accepted.
        let (l, fx) = run(&lease(), Event::Admitted, 1);
        assert_eq!(l.state, State::Accepting);
        assert_eq!(l.intent, Some(Intent::Accept { at: UnixTime(1) }));
        assert_eq!(fx, vec![Effect::SendAccept]);
        // The send's outcome is unknown: no event; the next ticks read the chain.
        let (l2, fx) = run(
            &l,
            Event::Tick {
                container: Observed::Unknown,
            },
            2,
        );
        assert_eq!((l2.state, fx), (State::Accepting, vec![Effect::ReadChain]));
        // Still proposed, within the resend window: nothing sent twice.
        let (l3, fx) = run(&l2, Event::Chain(view(MarketState::Proposed)), 3);
        assert!(fx.is_empty(), "{fx:?}");
        // Mined late: accepted, never refused.
        let (l4, _) = run(&l3, Event::Chain(view(MarketState::Accepted)), 400);
        assert_eq!((l4.state, l4.intent), (State::Accepted, None));
        // Never mined and the offer expired: expired (acceptOffer reverts now).
        let mut late = view(MarketState::Proposed);
        late.chain_time = 1_001;
        let (l5, fx) = run(&l3, Event::Chain(late), 400);
        assert_eq!(l5.state, State::Expired);
        assert!(fx.is_empty());
        // Still proposed after the resend window: sent again.
        let (_, fx) = run(&l3, Event::Chain(view(MarketState::Proposed)), 200);
        assert_eq!(fx, vec![Effect::SendAccept]);
    }

    #[test]
    fn a_restart_finishes_or_undoes_what_it_cut_short() {
        // Undecided: refused (nothing was sent).
        let (l, fx) = run(&lease(), Event::Restarted, 5);
        assert_eq!((l.state, fx.is_empty()), (State::Refused, true));
        // An accept that may be on its way: looked up, never forgotten.
        let (accepting, _) = run(&lease(), Event::Admitted, 1);
        let (l, fx) = run(&accepting, Event::Restarted, 5);
        assert_eq!((l.state, fx), (State::Accepting, vec![Effect::ReadChain]));
        // A deploy cut short: the lease ends and its container goes.
        let mut deploying = running(0);
        deploying.state = State::Deploying;
        deploying.running_since = None;
        let (l, fx) = run(&deploying, Event::Restarted, 5);
        assert_eq!((l.state, fx), (State::Terminating, vec![Effect::Teardown]));
        // A running lease is left to the ticks.
        let (l, fx) = run(&running(0), Event::Restarted, 5);
        assert_eq!((l.state, fx.is_empty()), (State::Running, true));
    }

    #[test]
    fn a_failing_chain_is_retried_after_the_recheck_not_at_every_tick() {
        let tick = Event::Tick {
            container: Observed::Unknown,
        };
        let (l, _) = run(&lease(), Event::Admitted, 1);
        let (l, fx) = run(&l, Event::ChainFailed, 2);
        assert_eq!((l.state, fx.is_empty()), (State::Accepting, true));
        let (l, fx) = run(&l, tick.clone(), 3);
        assert!(fx.is_empty(), "read again before the recheck: {fx:?}");
        let (_, fx) = run(&l, tick.clone(), 2 + T.recheck);
        assert_eq!(fx, vec![Effect::ReadChain]);
        // A terminating lease backs off the same way.
        let (l, _) = run(&running(0), Event::Terminate("done".into()), 5);
        let (l, _) = run(&l, Event::TornDown, 6);
        let (l, _) = run(&l, Event::ChainFailed, 6);
        let (l, fx) = run(&l, tick.clone(), 7);
        assert!(fx.is_empty(), "{fx:?}");
        let (_, fx) = run(&l, tick, 6 + T.recheck);
        assert_eq!(fx, vec![Effect::ReadChain]);
    }

    #[test]
    fn a_container_that_exits_by_itself_ends_the_lease() {
        // Defect 4: the lease stayed Running and kept accruing.
        let (l, fx) = run(
            &running(1_000_000),
            Event::Tick {
                container: Observed::Exited {
                    code: 0,
                    oom: false,
                },
            },
            5,
        );
        assert_eq!(l.state, State::Terminating);
        assert!(
            l.reason
                .as_deref()
                .unwrap_or("")
                .contains("exited by itself")
        );
        assert_eq!(fx, vec![Effect::Teardown]);
        let (l, _) = run(
            &running(1_000_000),
            Event::Tick {
                container: Observed::Missing,
            },
            5,
        );
        assert_eq!(l.state, State::Terminating);
        // The account stops when it began terminating.
        assert_eq!(l.ended_at(), Some(UnixTime(5)));
    }

    #[test]
    fn a_record_out_of_step_with_its_container_is_repaired() {
        let (l, fx) = run(
            &running(1_000_000),
            Event::Tick {
                container: Observed::Paused,
            },
            5,
        );
        assert_eq!((l.state, fx), (State::Running, vec![Effect::Resume]));
        let mut frozen = running(0);
        frozen.state = State::Frozen;
        frozen.since = UnixTime(50);
        let (l, fx) = run(
            &frozen,
            Event::Tick {
                container: Observed::Running,
            },
            52,
        );
        assert_eq!((l.state, fx), (State::Frozen, vec![Effect::Pause]));
    }

    #[test]
    fn a_buyer_within_grace_runs_behind_it_freezes_then_stops() {
        // 100 s at 1000/s = 100_000 owed; grace 10 s = 10_000 allowance.
        let tick = || Event::Tick {
            container: Observed::Running,
        };
        assert!(run(&running(90_000), tick(), 100).1.is_empty());
        let (f, fx) = run(&running(89_999), tick(), 100);
        assert_eq!((f.state, fx), (State::Frozen, vec![Effect::Pause]));
        let paused = || Event::Tick {
            container: Observed::Paused,
        };
        assert!(run(&f, paused(), 105).1.is_empty());
        let (s, fx) = run(&f, paused(), 110);
        assert_eq!((s.state, fx), (State::Terminating, vec![Effect::Teardown]));
        let (paid, _) = run(
            &f,
            Event::Paid {
                cumulative: Edg(100_000),
            },
            105,
        );
        let (r, fx) = run(&paid, paused(), 105);
        assert_eq!((r.state, fx), (State::Running, vec![Effect::Resume]));
        assert_eq!(
            r.running_since,
            Some(UnixTime(0)),
            "thawing keeps the meter's start"
        );
    }

    #[test]
    fn settling_reports_once_with_one_amount_then_finalizes_and_claims() {
        let mut l = running(5_000);
        l.state = State::Terminating;
        l.stopped = true;
        let (l, fx) = run(&l, Event::Chain(view(MarketState::Active)), 10);
        assert_eq!(fx, vec![Effect::Report { paid: Edg(5_000) }]);
        // A proof that arrives after the report was recorded does not
        // change what is re-sent.
        let (l, _) = run(
            &l,
            Event::Paid {
                cumulative: Edg(6_000),
            },
            11,
        );
        let (same, fx) = run(&l, Event::Chain(view(MarketState::Active)), 20);
        assert!(fx.is_empty(), "not due again yet: {fx:?}");
        let (_, fx) = run(&same, Event::Chain(view(MarketState::Active)), 200);
        assert_eq!(fx, vec![Effect::Report { paid: Edg(5_000) }]);
        let mut waiting = view(MarketState::Terminating);
        waiting.seller_reported = true;
        waiting.end = 10;
        let (w, fx) = run(&l, Event::Chain(waiting), 30);
        assert!(fx.is_empty());
        assert_eq!(w.recheck_at, UnixTime(90));
        waiting.chain_time = 86_410;
        let (_, fx) = run(&w, Event::Chain(waiting), 100);
        assert_eq!(fx, vec![Effect::Finalize]);
        let mut settled = view(MarketState::Settled);
        settled.claimable = true;
        let (c, fx) = run(&w, Event::Chain(settled), 100);
        assert_eq!(fx, vec![Effect::Claim]);
        settled.claimable = false;
        let (done, fx) = run(&c, Event::Chain(settled), 101);
        assert_eq!((done.state, fx), (State::Settled, vec![]));
    }

    #[test]
    fn a_channel_closing_under_a_running_lease_ends_it_and_is_claimed_at_once() {
        // A buyer could start closing the channel right after its proofs
        // were acknowledged and settle it before the lease settled on the
        // Market (the only time the agent used to claim): the seller's pay
        // refunded to the buyer.
        let tick = || Event::Tick {
            container: Observed::Running,
        };
        let mut l = running(1_000_000);
        l.recheck_at = UnixTime(T.watch);
        let (l, fx) = run(&l, tick(), T.watch - 1);
        assert!(fx.is_empty(), "{fx:?}");
        let (l, fx) = run(&l, tick(), T.watch);
        assert_eq!(fx, vec![Effect::ReadChain], "watched while running");
        assert_eq!(l.recheck_at, UnixTime(2 * T.watch));
        let (l, fx) = run(&l, tick(), T.watch + 1);
        assert!(fx.is_empty(), "not read again before the watch: {fx:?}");
        // Nothing changed on chain: it runs on.
        let (l, fx) = run(&l, Event::Chain(view(MarketState::Active)), 6);
        assert_eq!((l.state, fx.is_empty()), (State::Running, true));
        let mut closing = view(MarketState::Active);
        closing.channel_closing = true;
        closing.claimable = true;
        closing.newest = Edg(1_000_000);
        let (l, fx) = run(&l, Event::Chain(closing), 70);
        // Claimed at once, before the container comes down (its teardown
        // may take its grace, or fail).
        assert_eq!(
            (l.state, fx),
            (State::Terminating, vec![Effect::Claim, Effect::Teardown])
        );
        assert!(l.reason.as_deref().unwrap_or("").contains("closing"));
        let sent = Claim {
            at: UnixTime(70),
            upto: Edg(1_000_000),
        };
        assert_eq!(l.claim, Some(sent));
        // The claim's own read, the container not yet down: not sent twice.
        let (l, fx) = run(&l, Event::Chain(closing), 71);
        assert!(fx.is_empty(), "{fx:?}");
        // A teardown that keeps failing does not hold a claim back.
        let (stuck, fx) = run(&l, Event::Chain(closing), 70 + T.resend_after);
        assert_eq!((stuck.stopped, fx), (false, vec![Effect::Claim]));
        // Down, the first claim not yet mined: the Market is reported,
        // the same claim not sent twice.
        let (l, fx) = run(&l, Event::TornDown, 75);
        assert_eq!(fx, vec![Effect::ReadChain]);
        let (l, fx) = run(&l, Event::Chain(closing), 75);
        assert_eq!(
            fx,
            vec![Effect::Report {
                paid: Edg(1_000_000)
            }]
        );
        assert_eq!(l.claim, Some(sent));
        // A proof paid while the container came down: claimed at once.
        let mut newer = closing;
        newer.newest = Edg(1_000_500);
        let (n, fx) = run(&l, Event::Chain(newer), 76);
        assert!(fx.contains(&Effect::Claim), "{fx:?}");
        assert_eq!(n.claim.map(|c| c.upto), Some(Edg(1_000_500)));
        // Not mined yet: not sent twice within the resend window.
        let (l2, fx) = run(&l, Event::Chain(closing), 80);
        assert!(fx.is_empty(), "{fx:?}");
        // Still unclaimed after it: sent again.
        let (_, fx) = run(&l2, Event::Chain(closing), 70 + T.resend_after);
        assert!(fx.contains(&Effect::Claim), "{fx:?}");
        // Claimed: forgotten, and the Market's steps go on.
        closing.claimable = false;
        let (l, _) = run(&l, Event::Chain(closing), 81);
        assert_eq!(l.claim, None);
        // A channel gone from the chain a watch after it was proven ends
        // the lease; one a lagging node has yet to see does not.
        let mut gone = view(MarketState::Active);
        gone.channel_gone = true;
        let mut young = running(0);
        young.history.push((State::ChannelProven, UnixTime(100)));
        let (l, _) = run(&young, Event::Chain(gone), 100 + T.watch - 1);
        assert_eq!(l.state, State::Running);
        let (l, fx) = run(&young, Event::Chain(gone), 100 + T.watch);
        assert_eq!((l.state, fx), (State::Terminating, vec![Effect::Teardown]));
        assert!(l.reason.as_deref().unwrap_or("").contains("gone"));
        // A lease whose buyer reported on chain without a word ends too.
        let mut reported = view(MarketState::Terminating);
        reported.end = 3;
        let (l, fx) = run(&running(1_000_000), Event::Chain(reported), 6);
        assert_eq!((l.state, fx), (State::Terminating, vec![Effect::Teardown]));
        // A node that lags (still "accepted") does not end a running lease.
        let (l, fx) = run(&running(0), Event::Chain(view(MarketState::Accepted)), 6);
        assert_eq!((l.state, fx.is_empty()), (State::Running, true));
        // A deploy that never finishes ends, so what it holds is freed.
        let mut deploying = running(0);
        deploying.state = State::Deploying;
        deploying.recheck_at = UnixTime(u64::MAX);
        let (l, fx) = run(&deploying, tick(), T.buyer_wait);
        assert_eq!((l.state, fx), (State::Terminating, vec![Effect::Teardown]));
    }

    #[test]
    fn an_unfunded_lease_is_cancelled_once_the_contract_allows() {
        let mut l = lease();
        l.state = State::Accepted;
        let (l, fx) = run(
            &l,
            Event::Tick {
                container: Observed::Unknown,
            },
            3_600,
        );
        assert_eq!((l.state, fx), (State::Terminating, vec![Effect::Teardown]));
        let (l, fx) = run(&l, Event::TornDown, 3_600);
        assert_eq!(fx, vec![Effect::ReadChain]);
        assert!(!l.holds_resources(), "nothing is held while it settles");
        let mut v = view(MarketState::Accepted);
        v.chain_time = 3_000;
        let (early, fx) = run(&l, Event::Chain(v), 3_600);
        assert!(fx.is_empty());
        v.chain_time = 3_600;
        let (_, fx) = run(&early, Event::Chain(v), 3_700);
        assert_eq!(fx, vec![Effect::Cancel]);
        let (s, _) = run(&early, Event::Chain(view(MarketState::Cancelled)), 3_800);
        assert_eq!(s.state, State::Settled);
    }

    #[test]
    fn events_out_of_place_are_refused_and_change_nothing() {
        let e = step(&lease(), &Event::ContainerStarted, &T, UnixTime(1)).unwrap_err();
        assert!(e.to_string().contains("offered"), "{e}");
        let (l, _) = run(&lease(), Event::Refused("no".into()), 1);
        assert!(step(&l, &Event::Admitted, &T, UnixTime(2)).is_err());
        // A payment on a lease with no channel is refused.
        assert!(
            step(
                &lease(),
                &Event::Paid { cumulative: Edg(1) },
                &T,
                UnixTime(1)
            )
            .is_err()
        );
    }

    // ---- property tests ----------------------------------------------

    /// A small model of the Market and the runtime, so that the effects
    /// the machine asks for change a world the next events come from.
    #[derive(Debug, Clone)]
    struct World {
        market: MarketState,
        seller_reported: bool,
        end: u64,
        chain_time: u64,
        accepts: u32,
        reports: Vec<Edg>,
        finalizes: u32,
        cancels: u32,
        container: Observed,
        newest: Edg,
        claimed: Edg,
        claims: u32,
        lost_claims: u32,
        /// The buyer started an uncooperative close that settles then.
        settle_after: Option<u64>,
        channel_settled: bool,
    }

    #[derive(Debug, Clone)]
    enum Step {
        Tick(u64),
        Pay(u128),
        Terminate,
        Exit,
        Restart,
        /// The executor's next chain effect is lost (sent, no receipt).
        Lose,
        Fund,
        BuyerReports,
        ChainRead,
        /// A chain read or send failed.
        ChainDown,
        Deploy,
        /// The buyer starts closing the channel on chain.
        BuyerCloses,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                4 => (1u64..30).prop_map(Step::Tick),
                4 => (1u128..40_000).prop_map(Step::Pay),
                1 => Just(Step::Terminate),
                1 => Just(Step::Exit),
                1 => Just(Step::Restart),
                1 => Just(Step::Lose),
                2 => Just(Step::Fund),
                1 => Just(Step::BuyerReports),
                2 => Just(Step::ChainRead),
                1 => Just(Step::ChainDown),
                2 => Just(Step::Deploy),
                2 => Just(Step::BuyerCloses),
            ],
            1..120,
        )
    }

    /// The simulation's patience: short next to its lives' length, in the
    /// same order as the agent's (a watch and a resend well inside the
    /// channel's challenge period, `CHALLENGE`).
    const SIM: Timing = Timing {
        grace: 10,
        resend_after: 40,
        buyer_wait: 3600,
        recheck: 20,
        watch: 20,
    };

    /// The simulated ChannelManager's challenge period: a watch, a tick, a
    /// lost claim's resend and the read that sends it fit inside.
    const CHALLENGE: u64 = 150;

    struct Sim {
        l: Lease,
        w: World,
        now: u64,
        lose_next: bool,
        /// Everything a desk acknowledged: the lease's paid must cover it.
        acked: Edg,
        history: Vec<State>,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                l: lease(),
                w: World {
                    market: MarketState::Proposed,
                    seller_reported: false,
                    end: 0,
                    chain_time: 0,
                    accepts: 0,
                    reports: vec![],
                    finalizes: 0,
                    cancels: 0,
                    container: Observed::Unknown,
                    newest: Edg::ZERO,
                    claimed: Edg::ZERO,
                    claims: 0,
                    lost_claims: 0,
                    settle_after: None,
                    channel_settled: false,
                },
                now: 0,
                lose_next: false,
                acked: Edg::ZERO,
                history: vec![State::Offered],
            }
        }

        fn view(&self) -> ChainView {
            ChainView {
                state: self.w.market,
                seller_reported: self.w.seller_reported,
                start: 0,
                end: self.w.end,
                offer_expiry: 2_000,
                chain_time: self.w.chain_time,
                termination_timeout: 500,
                funding_window: 300,
                claimable: !self.w.channel_settled && self.w.newest > self.w.claimed,
                newest: self.w.newest,
                channel_closing: self.w.settle_after.is_some() && !self.w.channel_settled,
                channel_gone: self.w.channel_settled,
            }
        }

        /// Applies an event and checks the invariants on the step.
        fn apply(&mut self, e: Event) {
            let before = self.l.clone();
            let Ok((after, fx)) = step(&before, &e, &SIM, UnixTime(self.now)) else {
                return;
            };
            assert!(after.paid >= before.paid, "paid went down on {e:?}");
            if before.state.is_terminal() {
                assert_eq!(after.state, before.state, "a terminal state moved on {e:?}");
            }
            if after.state != before.state {
                assert!(
                    before.state.next().contains(&after.state),
                    "{:?} -> {:?} is not an edge",
                    before.state,
                    after.state
                );
                self.history.push(after.state);
            }
            if after.state == State::Frozen && before.state != State::Frozen {
                let behind = owed(&after, UnixTime(self.now)).saturating_sub(after.paid);
                assert!(
                    behind > allowance(&after, &SIM),
                    "frozen while within the grace"
                );
            }
            self.l = after;
            for f in fx {
                self.carry_out(f);
            }
        }

        fn carry_out(&mut self, f: Effect) {
            let lost = std::mem::take(&mut self.lose_next);
            match f {
                Effect::SendAccept => {
                    if self.w.market == MarketState::Proposed && self.w.chain_time <= 2_000 {
                        self.w.market = MarketState::Accepted;
                        self.w.accepts += 1;
                        if !lost {
                            self.apply(Event::AcceptMined);
                        }
                    }
                }
                Effect::Pause if self.w.container == Observed::Running => {
                    self.w.container = Observed::Paused
                }
                Effect::Resume if self.w.container == Observed::Paused => {
                    self.w.container = Observed::Running
                }
                Effect::Pause | Effect::Resume => {}
                Effect::Teardown => {
                    self.w.container = Observed::Missing;
                    self.apply(Event::TornDown);
                }
                Effect::ReadChain => self.apply(Event::Chain(self.view())),
                Effect::Report { paid } => {
                    assert!(!self.w.seller_reported, "reported twice on chain");
                    if matches!(
                        self.w.market,
                        MarketState::Active | MarketState::Terminating
                    ) {
                        self.w.reports.push(paid);
                        self.w.seller_reported = true;
                        if self.w.market == MarketState::Active {
                            self.w.market = MarketState::Terminating;
                            self.w.end = self.w.chain_time;
                        } else {
                            self.w.market = MarketState::Settled;
                        }
                    }
                }
                Effect::Finalize => {
                    assert_eq!(self.w.market, MarketState::Terminating);
                    assert!(self.w.chain_time >= self.w.end + 500, "finalized too early");
                    self.w.market = MarketState::Settled;
                    self.w.finalizes += 1;
                }
                Effect::Cancel => {
                    assert_eq!(
                        self.w.market,
                        MarketState::Accepted,
                        "cancel of a funded lease"
                    );
                    self.w.market = MarketState::Cancelled;
                    self.w.cancels += 1;
                }
                Effect::Claim => {
                    assert!(!self.w.channel_settled, "claim of a settled channel");
                    assert!(self.w.newest > self.w.claimed, "a stale claim");
                    if lost {
                        self.w.lost_claims += 1;
                    } else {
                        self.w.claimed = self.w.newest;
                        self.w.claims += 1;
                    }
                    self.apply(Event::Chain(self.view()));
                }
            }
        }

        fn run(&mut self, s: &Step) {
            match s {
                Step::Tick(dt) => {
                    self.now += dt;
                    self.w.chain_time += dt;
                    // The buyer settles its close the moment it may: what
                    // the seller has not claimed by then is refunded.
                    if let Some(at) = self.w.settle_after {
                        // One lost claim is made up in time; no agent
                        // outlasts a chain that drops every one.
                        if !self.w.channel_settled
                            && self.w.chain_time >= at
                            && self.w.lost_claims <= 1
                        {
                            assert_eq!(
                                self.w.claimed, self.w.newest,
                                "acknowledged proofs refunded to the buyer"
                            );
                            assert!(
                                !matches!(self.l.state, State::Running | State::Frozen),
                                "still serving a lease whose channel settled"
                            );
                            self.w.channel_settled = true;
                        }
                    }
                    let container = match self.l.state {
                        State::Running | State::Frozen | State::Terminating => self.w.container,
                        _ => Observed::Unknown,
                    };
                    self.apply(Event::Tick { container });
                }
                Step::Pay(inc) => {
                    // The desk: the receiver accepts a proof for the lease
                    // the channel pays, then the lease learns of it; none
                    // once the lease's container is gone.
                    let ended = self.l.state.is_terminal()
                        || self.l.state == State::Terminating && self.l.stopped;
                    if self.l.channel.is_some() && !ended && !self.w.channel_settled {
                        self.w.newest = Edg(self.w.newest.0 + inc);
                        self.apply(Event::Paid {
                            cumulative: self.w.newest,
                        });
                        self.acked = self.w.newest;
                    }
                }
                Step::Terminate => self.apply(Event::Terminate("done".into())),
                Step::Exit => {
                    if matches!(self.w.container, Observed::Running | Observed::Paused) {
                        self.w.container = Observed::Exited {
                            code: 0,
                            oom: false,
                        };
                    }
                }
                Step::Restart => self.apply(Event::Restarted),
                Step::Lose => self.lose_next = true,
                Step::Fund => {
                    if self.w.market == MarketState::Accepted {
                        self.w.market = MarketState::Active;
                    }
                    if self.w.market == MarketState::Active {
                        self.apply(Event::FeeSeen);
                    }
                }
                Step::BuyerReports => {
                    if self.w.market == MarketState::Active {
                        self.w.market = MarketState::Terminating;
                        self.w.end = self.w.chain_time;
                    } else if self.w.market == MarketState::Terminating && self.w.seller_reported {
                        self.w.market = MarketState::Settled;
                    }
                }
                Step::ChainRead => self.apply(Event::Chain(self.view())),
                Step::ChainDown => self.apply(Event::ChainFailed),
                Step::BuyerCloses => {
                    if self.l.channel.is_some() && self.w.settle_after.is_none() {
                        self.w.settle_after = Some(self.w.chain_time + CHALLENGE);
                    }
                }
                Step::Deploy => match self.l.state {
                    State::Offered => self.apply(Event::Admitted),
                    // The desk refuses a channel that is closing.
                    State::FeePaid if self.w.settle_after.is_some() => {}
                    State::FeePaid => self.apply(Event::ChannelProven {
                        channel: ChannelId([2; 32]),
                        base: self.w.newest,
                    }),
                    State::ChannelProven => {
                        self.apply(Event::DeployStarted);
                        self.w.container = Observed::Running;
                        self.apply(Event::ContainerStarted);
                        if self.l.state != State::Running {
                            self.w.container = Observed::Missing;
                        }
                    }
                    _ => {}
                },
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn random_lives_keep_the_invariants(script in steps()) {
            let mut sim = Sim::new();
            for s in &script {
                sim.run(s);
                // Nothing acknowledged is lost: every accepted proof counts.
                let base = sim.l.channel_base;
                prop_assert!(sim.l.paid >= sim.acked.saturating_sub(base));
            }
            // Each on-chain effect at most once per lease, and one amount.
            prop_assert!(sim.w.accepts <= 1);
            prop_assert!(sim.w.reports.len() <= 1);
            prop_assert!(sim.w.finalizes <= 1);
            prop_assert!(sim.w.cancels <= 1);
            prop_assert!(sim.w.claims <= 1);
            // A settled lease leaves nothing acknowledged unclaimed.
            if sim.l.state == State::Settled && !sim.w.channel_settled {
                prop_assert_eq!(sim.w.claimed, sim.w.newest);
            }
            // A lease that was accepted on chain ends, if it ends, by
            // terminating; one never accepted never terminates.
            if sim.l.state == State::Settled {
                prop_assert!(sim.history.contains(&State::Terminating));
            }
            if sim.history.contains(&State::Refused) || sim.history.contains(&State::Expired) {
                prop_assert_eq!(sim.w.accepts, 0, "{:?}", sim.history);
            }
            // Only a running container that is behind gets frozen, and a
            // lease with no container never holds one.
            if !matches!(sim.l.state, State::Running | State::Frozen | State::Deploying) {
                prop_assert!(
                    !matches!(sim.w.container, Observed::Running | Observed::Paused)
                        || sim.l.state == State::Terminating && !sim.l.stopped,
                    "{:?} with container {:?}", sim.l.state, sim.w.container
                );
            }
        }
    }
}
