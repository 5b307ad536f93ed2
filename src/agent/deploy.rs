//! Deploying a lease's image: the CID must be the one the buyer signed in
//! its offer; the DAG is fetched from the board's IPFS gateways and
//! verified block by block, imported into the image store (every blob and
//! layer digest verified), and its manifest must be the one the buyer
//! named. Then the rootfs is unpacked, the container created with the
//! lease's CPU and memory, its EdgeX bridge opened in its network
//! namespace for exactly the lease's grants, and started.
//!
//! A failure after `Deploying` sends the lease to `Terminating` with the
//! reason (the buyer is not charged for a container that never ran: the
//! meter starts at `Running`).

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::{Address, B256};

use super::backends::{self, Backend};
use super::lease::{Lease, LeaseBook, State};
use crate::board::BackendPolicy;
use crate::edgex::bridge::{self, Bridge, BridgeLimits, Grants, Serving, grants_from_offer};
use crate::edgex::catalogue::Catalogue;
use crate::edgex::client::Client;
use crate::edgex::meter::Meter;
use crate::ipfs::fetch::Fetcher;
use crate::runtime::cgroup::Limits;
use crate::runtime::container::{Rootfs, Runtime, Stdio};
use crate::runtime::image::{ImageStore, Platform};
use crate::runtime::net::Forward;
use crate::runtime::spec::{Overrides, Spec};
use crate::runtime::unpack::Options;
use crate::store::Tree;

/// Processes and threads a lease may run.
pub const PIDS: u64 = 256;
/// Log bytes kept per stream (rotated).
pub const LOG_CAP: u64 = 1 << 20;

/// What the agent has to connect a container to EdgeX.
pub struct EdgexWiring {
    pub client: Arc<Client>,
    pub catalogue: Arc<RwLock<Catalogue>>,
    pub meter: Meter,
    pub limits: BridgeLimits,
}

impl EdgexWiring {
    /// The lease's bridge, served in the network namespace of `pid`.
    pub fn open_bridge(&self, lease: &Lease, grants: Grants, pid: i32) -> Result<Serving, String> {
        let b = Arc::new(Bridge::new(
            &lease.id_hex(),
            grants,
            self.catalogue.clone(),
            self.client.clone(),
            self.meter.clone(),
            self.limits,
        ));
        Serving::open(pid, b).map_err(|e| format!("bridge: {e}"))
    }
}

pub struct Deployer<'a> {
    pub book: &'a LeaseBook,
    pub fetcher: &'a Fetcher,
    pub images: &'a ImageStore,
    pub runtime: &'a Runtime,
    pub platform: Platform,
    /// Where fetched DAGs land before import (the data dir's `incoming/`).
    pub incoming: PathBuf,
    pub edgex: Option<&'a EdgexWiring>,
    pub backends: BackendPolicy,
    /// Each lease's requested backends, for re-attaching after a restart.
    pub wiring: &'a Tree,
}

/// A running lease's container, its bridge and backend ports (kept open
/// while it runs).
pub struct Deployed {
    pub container: String,
    pub bridge: Option<Serving>,
    pub forwards: Vec<Forward>,
}

/// Stops (SIGTERM, then SIGKILL after `grace`) and removes a lease's
/// container; a container that is already gone is fine.
pub fn teardown(runtime: &Runtime, lease: &[u8; 32], grace: Duration) -> Result<(), String> {
    let id = container_id(lease);
    if runtime.get(&id).is_err() {
        return Ok(());
    }
    runtime
        .kill(&id, grace)
        .map_err(|e| format!("stopping {id}: {e}"))?;
    runtime
        .delete(&id)
        .map_err(|e| format!("removing {id}: {e}"))?;
    Ok(())
}

/// The container id of a lease: short, unique enough, and a valid name.
pub fn container_id(lease: &[u8; 32]) -> String {
    format!("lease-{}", alloy_primitives::hex::encode(&lease[..8]))
}

impl Deployer<'_> {
    pub fn deploy(
        &self,
        peer: Address,
        lease: [u8; 32],
        image_cid: &str,
        manifest_digest: &str,
        backends: &[String],
        now: u64,
    ) -> Result<Deployed, String> {
        let l = self
            .book
            .get(&lease)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown lease {}", B256::from(lease)))?;
        if Address::from(l.terms.buyer) != peer {
            return Err(format!("lease {} is not yours", l.id_hex()));
        }
        if l.state != State::ChannelProven {
            return Err(format!(
                "lease {} is {}: it deploys once its channel is proven",
                l.id_hex(),
                l.state.name()
            ));
        }
        if image_cid != l.terms.image {
            return Err(format!(
                "image {image_cid} is not the one the offer names ({})",
                l.terms.image
            ));
        }
        // Refused backends leave the lease as it was: the buyer may deploy
        // again without them.
        let backends = backends::check(backends, self.backends)?;
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        self.wiring.put(lease, &names).map_err(|e| e.to_string())?;
        self.book
            .transition(&lease, State::Deploying, now, None, |_| {})
            .map_err(|e| e.to_string())?;
        let asked = std::time::Instant::now();
        match self.run(&l, manifest_digest, &backends) {
            Ok(d) => {
                // The meter starts now, not when the deploy was asked for:
                // fetching and unpacking are not the buyer's time.
                let started = now.saturating_add(asked.elapsed().as_secs());
                if let Err(e) = self
                    .book
                    .transition(&lease, State::Running, started, None, |_| {})
                {
                    // Terminated while it was being deployed: nothing may
                    // run for a lease that is ending.
                    drop(d);
                    if let Err(t) = teardown(self.runtime, &lease, Duration::ZERO) {
                        log::error!("lease {}: {t}", l.id_hex());
                    }
                    return Err(format!("lease {} ended while deploying: {e}", l.id_hex()));
                }
                log::info!("lease {} running as {}", l.id_hex(), d.container);
                Ok(d)
            }
            Err(why) => {
                let _ = self.runtime.delete(&container_id(&lease));
                if let Err(e) = self.book.transition(
                    &lease,
                    State::Terminating,
                    now,
                    Some(format!("deploy failed: {why}")),
                    |_| {},
                ) {
                    log::error!("lease {}: {e}", l.id_hex());
                }
                Err(why)
            }
        }
    }

    fn run(
        &self,
        l: &Lease,
        manifest_digest: &str,
        backends: &[Backend],
    ) -> Result<Deployed, String> {
        let cid: cid::Cid = l
            .terms
            .image
            .parse()
            .map_err(|e| format!("image CID: {e}"))?;
        std::fs::create_dir_all(&self.incoming)
            .map_err(|e| format!("{}: {e}", self.incoming.display()))?;
        let dest = self.incoming.join(l.id_hex());
        let _ = std::fs::remove_dir_all(&dest);
        self.fetcher
            .fetch(&cid, &dest)
            .map_err(|e| format!("fetching {cid}: {e}"))?;
        let name = container_id(&l.id);
        let imported = self.images.import(&dest, None, &self.platform, &name);
        let _ = std::fs::remove_dir_all(&dest);
        let image = imported.map_err(|e| format!("importing {cid}: {e}"))?;
        if image.manifest.to_string() != manifest_digest {
            return Err(format!(
                "the image's manifest is {}, the buyer named {manifest_digest}",
                image.manifest
            ));
        }
        let rootfs = self.runtime.prepare(&name).map_err(|e| e.to_string())?;
        self.images
            .unpack(&image, &rootfs, Options::default())
            .map_err(|e| format!("unpacking: {e}"))?;
        let grants = grants_from_offer(&l.terms.devices).map_err(|e| e.to_string())?;
        let wiring = match (&self.edgex, grants.is_empty()) {
            (_, true) => None,
            (Some(w), false) => Some(w),
            (None, false) => {
                return Err("the lease has device grants but EdgeX is not configured".into());
            }
        };
        let env = wiring
            .map(|_| format!("{}={}", bridge::ENV, Bridge::url()))
            .into_iter()
            .chain(super::backends::env(backends))
            .collect();
        let spec = Spec::new(
            &image.run,
            &rootfs,
            Overrides {
                cmd: vec![],
                env,
                hostname: name.clone(),
                limits: Limits {
                    cpu_millicores: Some(l.terms.cpu_millicores),
                    memory: Some(l.terms.memory_bytes),
                    pids: Some(PIDS),
                },
            },
        )
        .map_err(|e| e.to_string())?;
        let record = self
            .runtime
            .create(
                &name,
                Rootfs::Prepared,
                &spec,
                Stdio::Logs { cap: LOG_CAP },
                false,
            )
            .map_err(|e| e.to_string())?;
        let bridge = match wiring {
            Some(w) => Some(w.open_bridge(l, grants, record.init.pid)?),
            None => None,
        };
        let forwards = super::backends::open(record.init.pid, backends)?;
        self.runtime.start(&name).map_err(|e| e.to_string())?;
        Ok(Deployed {
            container: name,
            bridge,
            forwards,
        })
    }
}
