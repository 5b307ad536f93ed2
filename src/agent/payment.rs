//! Payment enforcement, as pure arithmetic on a lease's record: what the
//! buyer owes, and whether its container runs, freezes, thaws or stops.
//!
//! The meter runs from the moment the container starts until the lease
//! terminates, frozen time included (the resources stay reserved). A buyer
//! may be behind by up to `grace` seconds' worth; past that the container
//! is frozen; paid up again, it thaws; still behind a second `grace`
//! window after freezing, the lease is stopped and settled.

use super::lease::{Lease, State};

/// What the agent does about a lease's payments now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Freeze,
    Thaw,
    /// Behind after the second window: stop and settle.
    Stop,
    /// The lease's maximum duration is over: stop and settle.
    Over,
}

/// EDG base units owed for the time run so far.
pub fn owed(lease: &Lease, now: u64) -> u128 {
    let Some(start) = lease.running_since else {
        return 0;
    };
    let secs = now
        .saturating_sub(start)
        .min(u64::from(lease.terms.max_duration));
    lease
        .terms
        .price_per_second
        .saturating_mul(u128::from(secs))
}

/// The decision for a running or frozen lease; `grace` in seconds.
pub fn decide(lease: &Lease, grace: u64, now: u64) -> Action {
    if !matches!(lease.state, State::Running | State::Frozen) {
        return Action::Nothing;
    }
    let ran = lease.running_since.map(|start| now.saturating_sub(start));
    if ran.is_some_and(|r| r >= u64::from(lease.terms.max_duration)) {
        return Action::Over;
    }
    let behind = owed(lease, now).saturating_sub(lease.paid);
    let allowance = lease
        .terms
        .price_per_second
        .saturating_mul(u128::from(grace));
    match lease.state {
        State::Running if behind > allowance => Action::Freeze,
        State::Frozen if behind <= allowance => Action::Thaw,
        State::Frozen if now.saturating_sub(lease.since) >= grace => Action::Stop,
        _ => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::OfferTerms;

    fn running(since: u64, paid: u128) -> Lease {
        let mut l = Lease::offered(
            [1; 32],
            OfferTerms {
                buyer: [1; 20],
                gateway: [2; 20],
                cpu_millicores: 500,
                memory_bytes: 1,
                disk_bytes: 1,
                devices: vec![],
                price_per_second: 10,
                max_duration: 1000,
                payment_interval: 5,
                image: String::new(),
                expiry: 0,
                nonce: 0,
            },
            since,
        );
        l.state = State::Running;
        l.since = since;
        l.running_since = Some(since);
        l.paid = paid;
        l
    }

    #[test]
    fn a_buyer_within_grace_runs_behind_it_freezes_then_stops() {
        // 100 s run = 1000 owed; grace 10 s = 100 of allowance.
        assert_eq!(owed(&running(0, 0), 100), 1000);
        assert_eq!(decide(&running(0, 900), 10, 100), Action::Nothing);
        assert_eq!(decide(&running(0, 899), 10, 100), Action::Freeze);
        let mut frozen = running(0, 899);
        frozen.state = State::Frozen;
        frozen.since = 100;
        assert_eq!(decide(&frozen, 10, 105), Action::Nothing);
        assert_eq!(decide(&frozen, 10, 110), Action::Stop);
        frozen.paid = 1000;
        assert_eq!(decide(&frozen, 10, 105), Action::Thaw);
    }

    #[test]
    fn the_meter_stops_at_the_maximum_duration() {
        assert_eq!(owed(&running(0, 0), 5000), 10_000);
        assert_eq!(decide(&running(0, 10_000), 10, 1000), Action::Over);
        let mut offered = running(0, 0);
        offered.state = State::Deploying;
        assert_eq!(decide(&offered, 10, 50), Action::Nothing);
        offered.running_since = None;
        assert_eq!(owed(&offered, 50), 0);
    }
}
