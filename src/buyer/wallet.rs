//! The buyer's payment channels: one sled database per channel under
//! `<data>/channels/<id>/`, guarded by an exclusive `flock` on
//! `<id>.lock` so one process at a time signs on a channel (a payer, or a
//! terminate after the payer stopped). Proofs are cumulative per channel;
//! a lease's share is the channel's total minus its `base`, the total when
//! the lease took the channel (as the gateway counts it too). A channel
//! pays one unfinished lease at a time.

use std::fs::File;
use std::path::{Path, PathBuf};

use alloy_primitives::{B256, U256};
use nix::fcntl::{Flock, FlockArg};

use super::{Buyer, Error, Result};
use crate::channel::{ChannelInfo, Proof, Sender};
use crate::store::{Store, Tree};

/// An open, locked channel.
pub struct Channel {
    _lock: Flock<File>,
    sender: Sender,
    bases: Tree,
    store: Store,
    pub info: ChannelInfo,
}

fn dir(data: &Path) -> PathBuf {
    data.join("channels")
}

fn channel_err(e: impl std::fmt::Display) -> Error {
    Error::Channel(e.to_string())
}

/// The lock on channel `id`, or `Busy` if another process holds it.
pub(super) fn lock(data: &Path, id: B256) -> Result<Flock<File>> {
    let path = dir(data).join(format!("{id}.lock"));
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::State {
            path: path.clone(),
            why: e.to_string(),
        })?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| match errno {
        nix::errno::Errno::EWOULDBLOCK => Error::Busy(format!(
            "channel {id} is in use by another dedge process (a `lease pay`?)"
        )),
        e => Error::State {
            path,
            why: e.to_string(),
        },
    })
}

impl Channel {
    /// Opens channel `info.id`'s database (creating it for a new channel).
    pub fn open(buyer: &Buyer, info: ChannelInfo) -> Result<Channel> {
        let lock = lock(&buyer.data, info.id)?;
        let (store, sender) = open_store(buyer, dir(&buyer.data).join(info.id.to_string()))?;
        Channel::with(lock, store, sender, info)
    }

    /// Opens a channel the buyer has used before.
    pub(crate) fn reopen(buyer: &Buyer, id: B256) -> Result<Channel> {
        let path = dir(&buyer.data).join(id.to_string());
        if !path.is_dir() {
            return Err(Error::Channel(format!(
                "channel {id} is not in {}",
                dir(&buyer.data).display()
            )));
        }
        let lock = lock(&buyer.data, id)?;
        let (store, sender) = open_store(buyer, path)?;
        let info = sender.info(id).map_err(channel_err)?;
        Channel::with(lock, store, sender, info)
    }

    fn with(lock: Flock<File>, store: Store, sender: Sender, info: ChannelInfo) -> Result<Channel> {
        sender.open(info).map_err(channel_err)?;
        let bases = store.tree("lease.base").map_err(channel_err)?;
        Ok(Channel {
            _lock: lock,
            sender,
            bases,
            store,
            info,
        })
    }

    pub fn total(&self) -> Result<U256> {
        self.sender.total(self.info.id).map_err(channel_err)
    }

    pub(crate) fn remaining(&self) -> Result<U256> {
        Ok(self.info.deposit.saturating_sub(self.total()?))
    }

    /// Makes the channel pay for `lease` from now on; the base is recorded
    /// once (a repeat returns the first).
    pub(crate) fn assign(&self, lease: B256) -> Result<U256> {
        if let Some(base) = self.bases.get::<U256>(lease).map_err(channel_err)? {
            return Ok(base);
        }
        let base = self.total()?;
        self.bases.put(lease, &base).map_err(channel_err)?;
        self.store.flush().map_err(channel_err)?;
        Ok(base)
    }

    /// What the buyer has signed over for `lease`.
    pub(crate) fn paid_for(&self, lease: B256) -> Result<U256> {
        let base = self
            .bases
            .get::<U256>(lease)
            .map_err(channel_err)?
            .ok_or_else(|| Error::Channel(format!("lease {lease} is not paid by this channel")))?;
        Ok(self.total()?.saturating_sub(base))
    }

    /// Signs a proof paying `increment` more for `lease`; durable before it
    /// is returned.
    pub fn pay(&self, lease: B256, increment: U256) -> Result<Proof> {
        self.sender
            .pay(self.info.id, lease, increment)
            .map_err(channel_err)
    }
}

fn open_store(buyer: &Buyer, path: PathBuf) -> Result<(Store, Sender)> {
    let store = Store::open(&path).map_err(|e| Error::State {
        path,
        why: e.to_string(),
    })?;
    let sender = Sender::new(
        store.clone(),
        buyer.d.chain_id,
        buyer.d.channels,
        buyer.signer.clone(),
    )
    .map_err(channel_err)?;
    Ok((store, sender))
}

/// Channel ids the buyer has databases for.
pub fn known(data: &Path) -> Vec<B256> {
    let Ok(entries) = std::fs::read_dir(dir(data)) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_at_a_time_holds_a_channel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("channels")).unwrap();
        let id = B256::repeat_byte(7);
        let held = lock(dir.path(), id).unwrap();
        // flock conflicts between open file descriptions, even in one process.
        let e = lock(dir.path(), id).err().unwrap();
        assert!(matches!(e, Error::Busy(_)), "{e}");
        assert!(e.to_string().contains("in use"), "{e}");
        drop(held);
        lock(dir.path(), id).unwrap();
        // Another channel is its own.
        let _a = lock(dir.path(), id).unwrap();
        lock(dir.path(), B256::repeat_byte(8)).unwrap();
    }
}
