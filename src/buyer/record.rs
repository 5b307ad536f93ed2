//! What the buyer remembers about each lease: one JSON file per lease under
//! `<data>/leases/`, replaced by rename. Records hold no money (the channel
//! databases do), so `lease ls`, `logs` and `invoice` read them while a
//! payer runs.

use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use super::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub lease: B256,
    pub gateway: Address,
    pub endpoint: String,
    /// The channel paying for it, once chosen.
    pub channel: Option<B256>,
    pub image: String,
    pub manifest: String,
    /// EDG base units per second, decimal.
    pub price_per_second: String,
    pub payment_interval: u64,
    pub max_duration: u64,
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    pub created: u64,
    /// The last step the buyer saw: proposed, accepted, funded, channel
    /// proven, running, terminated, settled (or failed).
    pub state: String,
    /// Why it failed or ended, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LeaseRecord {
    /// Checked when the record is read (`parse`), so this never guesses.
    pub fn price(&self) -> u128 {
        self.price_per_second.parse().unwrap_or(0)
    }

    /// The most the lease can cost: its price for its whole duration.
    pub(crate) fn max_cost(&self) -> u128 {
        self.price().saturating_mul(u128::from(self.max_duration))
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "settled" | "terminated" | "failed")
    }
}

fn path(data: &Path, lease: B256) -> PathBuf {
    data.join("leases").join(format!("{lease}.json"))
}

fn state_err(p: &Path, e: impl std::fmt::Display) -> Error {
    Error::State {
        path: p.to_path_buf(),
        why: e.to_string(),
    }
}

/// Writes `r` atomically (temporary file, fsync, rename).
pub fn save(data: &Path, r: &LeaseRecord) -> Result<()> {
    use std::io::Write;
    let p = path(data, r.lease);
    let tmp = p.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(r).map_err(|e| state_err(&p, e))?;
    let mut f = std::fs::File::create(&tmp).map_err(|e| state_err(&tmp, e))?;
    f.write_all(&text)
        .and_then(|()| f.sync_all())
        .map_err(|e| state_err(&tmp, e))?;
    std::fs::rename(&tmp, &p).map_err(|e| state_err(&p, e))
}

/// A record from its file's bytes; a price that is not a whole number of
/// base units is refused, not read as zero.
fn parse(p: &Path, text: &[u8]) -> Result<LeaseRecord> {
    let r: LeaseRecord = serde_json::from_slice(text).map_err(|e| state_err(p, e))?;
    if r.price_per_second.parse::<u128>().is_err() {
        return Err(state_err(
            p,
            format!(
                "price_per_second `{}` is not a whole number of EDG base units",
                r.price_per_second
            ),
        ));
    }
    Ok(r)
}

pub fn load(data: &Path, lease: B256) -> Result<LeaseRecord> {
    let p = path(data, lease);
    let text = std::fs::read(&p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Request(format!(
            "no lease {lease} in {} (leases made by `dedge lease create` with this --data)",
            data.display()
        )),
        _ => state_err(&p, e),
    })?;
    parse(&p, &text)
}

/// Updates a record's state (and reason) in place.
pub(crate) fn set_state(
    data: &Path,
    lease: B256,
    state: &str,
    reason: Option<String>,
) -> Result<()> {
    let mut r = load(data, lease)?;
    r.state = state.into();
    if reason.is_some() {
        r.reason = reason;
    }
    save(data, &r)
}

/// Every record, oldest first; unreadable files are reported, not skipped
/// silently.
pub fn all(data: &Path) -> Result<Vec<LeaseRecord>> {
    let dir = data.join("leases");
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(state_err(&dir, e)),
    };
    for entry in entries {
        let p = entry.map_err(|e| state_err(&dir, e))?.path();
        if p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let text = std::fs::read(&p).map_err(|e| state_err(&p, e))?;
        out.push(parse(&p, &text)?);
    }
    out.sort_by_key(|r| (r.created, r.lease));
    Ok(out)
}

/// The file a `lease terminate` leaves to ask a running payer to stop.
pub(crate) fn stop_request(data: &Path, lease: B256) -> PathBuf {
    data.join("leases").join(format!("{lease}.stop"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8, created: u64) -> LeaseRecord {
        LeaseRecord {
            lease: B256::repeat_byte(n),
            gateway: Address::repeat_byte(2),
            endpoint: "127.0.0.1:7300".into(),
            channel: None,
            image: "QmX".into(),
            manifest: "sha256:00".into(),
            price_per_second: "1000".into(),
            payment_interval: 5,
            max_duration: 60,
            devices: vec![],
            backends: vec![],
            created,
            state: "proposed".into(),
            reason: None,
        }
    }

    #[test]
    fn records_round_trip_list_in_order_and_update() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("leases")).unwrap();
        save(dir.path(), &record(2, 20)).unwrap();
        save(dir.path(), &record(1, 10)).unwrap();
        let all = all(dir.path()).unwrap();
        assert_eq!(all, vec![record(1, 10), record(2, 20)]);
        assert_eq!(all[0].max_cost(), 60_000);
        set_state(dir.path(), B256::repeat_byte(1), "running", None).unwrap();
        assert_eq!(
            load(dir.path(), B256::repeat_byte(1)).unwrap().state,
            "running"
        );
        let missing = load(dir.path(), B256::repeat_byte(9)).unwrap_err();
        assert!(missing.to_string().contains("no lease"), "{missing}");
        std::fs::write(dir.path().join("leases/bad.json"), "{").unwrap();
        assert!(matches!(super::all(dir.path()), Err(Error::State { .. })));
        let mut odd = record(3, 30);
        odd.price_per_second = "1e3".into();
        save(dir.path(), &odd).unwrap();
        let e = load(dir.path(), B256::repeat_byte(3)).unwrap_err();
        assert!(e.to_string().contains("price_per_second `1e3`"), "{e}");
    }
}
