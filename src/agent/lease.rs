//! A lease as the agent keeps it: its state machine and its durable record.
//!
//! ```text
//! Offered ─▶ Accepted ─▶ FeePaid ─▶ ChannelProven ─▶ Deploying ─▶ Running ◀─▶ Frozen
//!    │           │          │             │              │           │          │
//!    ▼           ▼          ▼             ▼              ▼           ▼          ▼
//! Refused    Expired    (any active state) ──────────────────────▶ Terminating ─▶ Settled
//! ```
//!
//! `Refused` and `Expired` end a lease before it cost anything; every
//! lease that got as far as `Accepted` ends through `Terminating` (the
//! on-chain termination, the invoice, the channel claim) in `Settled`.
//! Every transition is written and flushed before it is acted on, so an
//! agent restarted at any point finds each lease in the last state it
//! committed to (`LeaseBook::open`).

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::p2p::OfferTerms;
use crate::store::Tree;

/// Record format; a record of another version is refused, not guessed at.
pub const FORMAT: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// The buyer's offer is on chain; the agent has not decided.
    Offered,
    /// Refused (capacity, price, devices...): terminal.
    Refused,
    /// The agent accepted on chain; the buyer's fee is due.
    Accepted,
    /// The offer or the fee deposit timed out: terminal.
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
}

impl State {
    pub const ALL: [State; 11] = [
        State::Offered,
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

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Refused | State::Expired | State::Settled)
    }

    /// Does a lease in this state hold the gateway's resources?
    pub fn holds_resources(self) -> bool {
        !matches!(
            self,
            State::Offered | State::Refused | State::Expired | State::Settled
        )
    }

    /// The states a lease may go to from this one.
    pub fn next(self) -> &'static [State] {
        use State::*;
        match self {
            Offered => &[Accepted, Refused, Expired],
            Accepted => &[FeePaid, Expired, Terminating],
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

/// Everything the agent must not forget about a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub format: u8,
    /// The offer's EIP-712 digest.
    pub id: [u8; 32],
    pub terms: OfferTerms,
    pub state: State,
    /// Unix time the lease entered `state`.
    pub since: u64,
    /// Unix time it started running (the meter starts then).
    pub running_since: Option<u64>,
    pub channel: Option<[u8; 32]>,
    /// The channel's cumulative amount when it started paying this lease
    /// (channels are reused across leases; proofs are cumulative).
    pub channel_base: u128,
    /// Paid for this lease so far, as of the newest durable proof (EDG
    /// base units); the channel receiver's record is the source of truth.
    pub paid: u128,
    /// Why it was refused, expired, failed or terminated.
    pub reason: Option<String>,
    /// Each state entered, with its time (bounded by the machine's size).
    pub history: Vec<(State, u64)>,
}

impl Lease {
    pub fn offered(id: [u8; 32], terms: OfferTerms, now: u64) -> Lease {
        Lease {
            format: FORMAT,
            id,
            terms,
            state: State::Offered,
            since: now,
            running_since: None,
            channel: None,
            channel_base: 0,
            paid: 0,
            reason: None,
            history: vec![(State::Offered, now)],
        }
    }

    /// The hex lease id, as logs and the CLI show it.
    pub fn id_hex(&self) -> String {
        format!("0x{}", alloy_primitives::hex::encode(self.id))
    }
}

/// The agent's leases in sled.
pub struct LeaseBook {
    tree: Tree,
}

impl LeaseBook {
    /// Opens the book; every record must decode and be of this format.
    pub fn open(tree: Tree) -> Result<LeaseBook> {
        let book = LeaseBook { tree };
        book.all()?;
        Ok(book)
    }

    pub fn all(&self) -> Result<Vec<Lease>> {
        let mut out = Vec::new();
        for item in self.tree.iter::<Lease>() {
            let (_, lease) = item.map_err(|e| Error::Store(e.to_string()))?;
            if lease.format != FORMAT {
                return Err(Error::Store(format!(
                    "lease {} is in record format {}, this agent reads {FORMAT}",
                    lease.id_hex(),
                    lease.format
                )));
            }
            out.push(lease);
        }
        Ok(out)
    }

    pub fn get(&self, id: &[u8; 32]) -> Result<Option<Lease>> {
        self.tree.get(id).map_err(|e| Error::Store(e.to_string()))
    }

    /// Records a new offer; an id already known is refused (a replayed
    /// offer must not reset a lease).
    pub fn insert(&self, lease: &Lease) -> Result<()> {
        if self.get(&lease.id)?.is_some() {
            return Err(Error::Lease(format!(
                "lease {} is already known",
                lease.id_hex()
            )));
        }
        self.write(lease)
    }

    /// Moves a lease to `to`, durably, if the machine allows it; `edit`
    /// updates other fields in the same write.
    pub fn transition(
        &self,
        id: &[u8; 32],
        to: State,
        now: u64,
        reason: Option<String>,
        edit: impl FnOnce(&mut Lease),
    ) -> Result<Lease> {
        let mut lease = self.get(id)?.ok_or_else(|| {
            Error::Lease(format!("no lease 0x{}", alloy_primitives::hex::encode(id)))
        })?;
        if !lease.state.next().contains(&to) {
            return Err(Error::Lease(format!(
                "lease {} cannot go from {} to {}",
                lease.id_hex(),
                lease.state.name(),
                to.name()
            )));
        }
        lease.state = to;
        lease.since = now;
        if to == State::Running && lease.running_since.is_none() {
            lease.running_since = Some(now);
        }
        if reason.is_some() {
            lease.reason = reason;
        }
        if lease.history.len() < 64 {
            lease.history.push((to, now));
        }
        edit(&mut lease);
        self.write(&lease)?;
        Ok(lease)
    }

    /// Raises the stored payment to `amount` if it is higher (proofs are
    /// cumulative); durable before it returns, so it can be acknowledged.
    pub fn record_payment(&self, id: &[u8; 32], amount: u128) -> Result<Lease> {
        let mut lease = self.get(id)?.ok_or_else(|| {
            Error::Lease(format!("no lease 0x{}", alloy_primitives::hex::encode(id)))
        })?;
        if amount > lease.paid {
            lease.paid = amount;
            self.write(&lease)?;
        }
        Ok(lease)
    }

    fn write(&self, lease: &Lease) -> Result<()> {
        self.tree
            .put(lease.id, lease)
            .and_then(|()| self.tree.flush())
            .map_err(|e| Error::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    pub(crate) fn terms() -> OfferTerms {
        OfferTerms {
            buyer: [1; 20],
            gateway: [2; 20],
            cpu_millicores: 500,
            memory_bytes: 64 << 20,
            disk_bytes: 256 << 20,
            devices: vec![],
            price_per_second: 1000,
            max_duration: 3600,
            payment_interval: 5,
            image: "bafy".into(),
            expiry: 2_000_000_000,
            nonce: 1,
        }
    }

    #[test]
    fn the_machine_allows_only_its_edges_and_ends_in_terminal_states() {
        use State::*;
        let all = State::ALL;
        for s in all {
            assert_eq!(s.is_terminal(), s.next().is_empty(), "{s:?}");
            // Every lease that held resources can only end by settling.
            if s.holds_resources() && s != Terminating {
                assert!(s.next().contains(&Terminating), "{s:?}");
            }
        }
        // Everything is reachable from Offered.
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
        assert_eq!(seen.len(), all.len());
    }

    #[test]
    fn transitions_are_durable_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let id = [9u8; 32];
        {
            let store = Store::open(dir.path()).unwrap();
            let book = LeaseBook::open(store.tree("leases").unwrap()).unwrap();
            book.insert(&Lease::offered(id, terms(), 100)).unwrap();
            assert!(book.insert(&Lease::offered(id, terms(), 100)).is_err());
            book.transition(&id, State::Accepted, 101, None, |_| {})
                .unwrap();
            let err = book
                .transition(&id, State::Running, 102, None, |_| {})
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("cannot go from accepted to running"),
                "{err}"
            );
            book.transition(&id, State::FeePaid, 103, None, |_| {})
                .unwrap();
            book.transition(&id, State::ChannelProven, 104, None, |l| {
                l.channel = Some([5; 32])
            })
            .unwrap();
            book.transition(&id, State::Deploying, 105, None, |_| {})
                .unwrap();
            book.transition(&id, State::Running, 106, None, |_| {})
                .unwrap();
            book.record_payment(&id, 500).unwrap();
            book.record_payment(&id, 400).unwrap();
        }
        // A restart finds the lease where it was, payments included.
        let store = Store::open(dir.path()).unwrap();
        let book = LeaseBook::open(store.tree("leases").unwrap()).unwrap();
        let l = book.get(&id).unwrap().unwrap();
        assert_eq!(l.state, State::Running);
        assert_eq!(l.running_since, Some(106));
        assert_eq!(l.paid, 500);
        assert_eq!(l.channel, Some([5; 32]));
        assert_eq!(l.history.len(), 6);
        let l = book
            .transition(&id, State::Frozen, 200, Some("behind".into()), |_| {})
            .unwrap();
        assert_eq!(
            l.running_since,
            Some(106),
            "freezing keeps the meter's start"
        );
        book.transition(&id, State::Running, 201, None, |_| {})
            .unwrap();
        book.transition(&id, State::Terminating, 300, Some("done".into()), |_| {})
            .unwrap();
        let l = book
            .transition(&id, State::Settled, 301, None, |_| {})
            .unwrap();
        assert_eq!(l.reason.as_deref(), Some("done"));
        assert!(
            book.transition(&id, State::Running, 302, None, |_| {})
                .is_err()
        );
    }
}
