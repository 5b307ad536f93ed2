//! Following contract events: bounded `eth_getLogs` ranges behind the
//! board's confirmations, a cursor persisted in sled, reorg detection by
//! block hash, and each log verified against its block's receipts root
//! before anyone acts on it.
//!
//! Use: `poll` returns either new logs (apply them, then `commit` the batch's
//! cursor in the same breath, so a crash replays rather than skips) or a
//! reorg (undo what was applied from `from_block` on; the cursor is already
//! rewound and the next polls re-deliver the new chain's logs).

use alloy_primitives::{Address, B256, U64};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::tx::Log;
use super::{Error, Result, Rpc, verify};
use crate::store::Tree;

/// How many processed blocks' hashes are remembered for reorg detection.
const REMEMBERED: usize = 128;

#[derive(Debug, Clone)]
pub struct Filter {
    pub addresses: Vec<Address>,
    /// Event signatures (topic 0) of interest; empty means all.
    pub topics0: Vec<B256>,
    /// The first indexed argument (topic 1), when only one is of interest.
    pub topic1: Option<B256>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Cursor {
    /// First block not yet delivered.
    pub next: u64,
    /// Hashes of delivered blocks (newest last), to notice a reorg.
    seen: Vec<(u64, B256)>,
}

#[derive(Debug)]
pub enum Update {
    /// New confirmed, verified logs; `commit(cursor)` once they are applied.
    Logs { logs: Vec<Log>, cursor: Cursor },
    /// Blocks from `from_block` on were replaced: undo their effects.
    Reorg { from_block: u64 },
}

pub struct Follower {
    name: String,
    filter: Filter,
    cursors: Tree,
    confirmations: u64,
    max_range: u64,
    verify: bool,
}

impl Follower {
    /// `start` is the first block to read when no cursor is stored (the
    /// deployment block).
    pub fn new(
        cursors: Tree,
        name: &str,
        filter: Filter,
        start: u64,
        confirmations: u64,
    ) -> Result<Follower> {
        let f = Follower {
            name: name.to_string(),
            filter,
            cursors,
            confirmations,
            max_range: 2_000,
            verify: true,
        };
        if f.cursor()?.is_none() {
            f.commit(&Cursor {
                next: start,
                seen: Vec::new(),
            })?;
        }
        Ok(f)
    }

    /// Largest block span per `eth_getLogs` (public nodes cap it).
    pub fn with_max_range(mut self, blocks: u64) -> Follower {
        self.max_range = blocks.max(1);
        self
    }

    pub fn cursor(&self) -> Result<Option<Cursor>> {
        Ok(self.cursors.get(&self.name)?)
    }

    pub fn commit(&self, cursor: &Cursor) -> Result<()> {
        self.cursors.put(&self.name, cursor)?;
        Ok(())
    }

    /// Delivers again from block `to` on (something from there was left
    /// out), forgetting the hashes of the blocks from there.
    pub fn rewind(&self, to: u64) -> Result<()> {
        let mut cur = self.cursor()?.unwrap_or_default();
        if to < cur.next {
            cur.next = to;
            cur.seen.retain(|(n, _)| *n < to);
            self.commit(&cur)?;
        }
        Ok(())
    }

    pub fn poll(&self, rpc: &Rpc) -> Result<Update> {
        let mut cur = self.cursor()?.unwrap_or_default();
        if let Some(from_block) = self.find_reorg(rpc, &cur)? {
            cur.next = from_block;
            cur.seen.retain(|(n, _)| *n < from_block);
            self.commit(&cur)?;
            log::warn!("{}: reorg from block {from_block}; rewinding", self.name);
            return Ok(Update::Reorg { from_block });
        }
        let head: U64 = rpc.call("eth_blockNumber", json!([]))?;
        let Some(safe) = head.to::<u64>().checked_sub(self.confirmations) else {
            return Ok(Update::Logs {
                logs: Vec::new(),
                cursor: cur,
            });
        };
        if cur.next > safe {
            return Ok(Update::Logs {
                logs: Vec::new(),
                cursor: cur,
            });
        }
        let to = safe.min(cur.next + self.max_range - 1);
        let topics: Value = match (self.filter.topics0.is_empty(), self.filter.topic1) {
            (true, None) => json!([]),
            (true, Some(t1)) => json!([null, t1]),
            (false, None) => json!([self.filter.topics0]),
            (false, Some(t1)) => json!([self.filter.topics0, t1]),
        };
        let mut logs: Vec<Log> = rpc.call(
            "eth_getLogs",
            json!([{"fromBlock": U64::from(cur.next), "toBlock": U64::from(to), "address": self.filter.addresses, "topics": topics}]),
        )?;
        logs.sort_by_key(|l| {
            (
                l.block_number.map(|n| n.to::<u64>()),
                l.log_index.map(|i| i.to::<u64>()),
            )
        });
        for l in &logs {
            let n = l.block_number.map(|n| n.to::<u64>()).unwrap_or(u64::MAX);
            let topics_match = (self.filter.topics0.is_empty()
                || l.topics
                    .first()
                    .is_some_and(|t| self.filter.topics0.contains(t)))
                && self
                    .filter
                    .topic1
                    .is_none_or(|t1| l.topics.get(1) == Some(&t1));
            if n < cur.next
                || n > to
                || !self.filter.addresses.contains(&l.address)
                || !topics_match
            {
                return Err(Error::Unverified(format!(
                    "{}: node returned a log outside the query",
                    self.name
                )));
            }
            if self.verify {
                verify::log(rpc, l)?;
            }
            if let (Some(h), true) = (l.block_hash, cur.seen.last().is_none_or(|(m, _)| *m != n)) {
                cur.seen.push((n, h));
            }
        }
        // Remember the range's last block too, so a reorg of empty blocks is
        // seen. A node that does not have it (lagging behind its own head)
        // must not move the cursor past what it did not really answer.
        let last: Value = rpc.call("eth_getBlockByNumber", json!([U64::from(to), false]))?;
        let Some(h) = last
            .get("hash")
            .and_then(|h| serde_json::from_value::<B256>(h.clone()).ok())
        else {
            return Err(Error::BadResponse {
                method: "eth_getBlockByNumber".into(),
                message: format!(
                    "{}: the node does not have block {to}, below its own head",
                    self.name
                ),
            });
        };
        if cur.seen.last().is_none_or(|(m, _)| *m != to) {
            cur.seen.push((to, h));
        }
        let excess = cur.seen.len().saturating_sub(REMEMBERED);
        cur.seen.drain(..excess);
        cur.next = to + 1;
        Ok(Update::Logs { logs, cursor: cur })
    }

    /// The lowest remembered block whose hash changed, if any.
    fn find_reorg(&self, rpc: &Rpc, cur: &Cursor) -> Result<Option<u64>> {
        if cur.seen.is_empty() {
            return Ok(None);
        }
        let calls: Vec<(&str, Value)> = cur
            .seen
            .iter()
            .map(|(n, _)| ("eth_getBlockByNumber", json!([U64::from(*n), false])))
            .collect();
        let answers = rpc.batch(&calls)?;
        // Blocks between the last one that still matches and the first that
        // does not may have changed too (without logs we saw): rewind to
        // just after the last good one.
        let mut last_good: Option<u64> = None;
        for ((n, hash), answer) in cur.seen.iter().zip(answers) {
            // A block the node does not know is "unknown", not "changed":
            // a lagging endpoint must not trigger a rollback.
            let now = answer?
                .get("hash")
                .and_then(|h| serde_json::from_value::<B256>(h.clone()).ok())
                .ok_or_else(|| Error::BadResponse {
                    method: "eth_getBlockByNumber".into(),
                    message: format!("{}: the node does not have block {n}", self.name),
                })?;
            if now != *hash {
                return Ok(Some(last_good.map_or(*n, |g| g + 1)));
            }
            last_good = Some(*n);
        }
        Ok(None)
    }
}
