//! Per-lease, per-device counts of what the bridge did, in sled: the
//! invoice lists them. Each call is one atomic read-modify-write of one
//! key (`lease \0 device`); calls that name no leased device (pings,
//! listings, refusals of unleased names) count under [`NO_DEVICE`], so a
//! tenant cannot grow the tree with made-up names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Error;
use crate::store::Tree;

/// The device key for calls that named no leased device.
pub const NO_DEVICE: &str = "*";

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Reads and writes forwarded to EdgeX (whatever it answered).
    pub reads: u64,
    pub writes: u64,
    /// Request bodies from the tenant, response bodies to it.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Calls the bridge answered itself with an error.
    pub refused: u64,
}

impl Usage {
    fn add(&mut self, o: &Usage) {
        self.reads = self.reads.saturating_add(o.reads);
        self.writes = self.writes.saturating_add(o.writes);
        self.bytes_in = self.bytes_in.saturating_add(o.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(o.bytes_out);
        self.refused = self.refused.saturating_add(o.refused);
    }
}

#[derive(Clone)]
pub struct Meter {
    tree: Tree,
}

fn key(lease: &str, device: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(lease.len() + device.len() + 1);
    k.extend_from_slice(lease.as_bytes());
    k.push(0);
    k.extend_from_slice(device.as_bytes());
    k
}

impl Meter {
    pub fn new(tree: Tree) -> Meter {
        Meter { tree }
    }

    /// Adds `delta` to the counts of `device` in `lease`.
    pub fn add(&self, lease: &str, device: &str, delta: &Usage) -> Result<(), Error> {
        self.tree
            .update(key(lease, device), |old: Option<Usage>| {
                let mut u = old.unwrap_or_default();
                u.add(delta);
                u
            })
            .map_err(|e| Error::Store(format!("usage of {lease}/{device}: {e}")))?;
        Ok(())
    }

    /// Every device's counts in `lease`.
    pub fn usage(&self, lease: &str) -> Result<BTreeMap<String, Usage>, Error> {
        let mut out = BTreeMap::new();
        for item in self.tree.scan_prefix::<Usage>(key(lease, "")) {
            let (k, u) = item.map_err(|e| Error::Store(format!("usage of {lease}: {e}")))?;
            let device = String::from_utf8_lossy(&k[lease.len() + 1..]).into_owned();
            out.insert(device, u);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_lease_and_device() {
        let store = crate::store::Store::temporary().unwrap();
        let m = Meter::new(store.tree("u").unwrap());
        let read = Usage {
            reads: 1,
            bytes_out: 100,
            ..Usage::default()
        };
        for _ in 0..3 {
            m.add("7", "D", &read).unwrap();
        }
        m.add(
            "7",
            NO_DEVICE,
            &Usage {
                refused: 1,
                ..Usage::default()
            },
        )
        .unwrap();
        // Lease 70 shares a prefix with lease 7 but not a key.
        m.add("70", "D", &read).unwrap();
        let u = m.usage("7").unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!((u["D"].reads, u["D"].bytes_out), (3, 300));
        assert_eq!(u[NO_DEVICE].refused, 1);
        assert_eq!(m.usage("70").unwrap()["D"].reads, 1);
    }
}
