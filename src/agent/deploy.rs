//! Deploying a lease's image: the CID must be the one the buyer signed in
//! its offer; the DAG is fetched from the board's IPFS gateways and
//! verified block by block, imported into the image store (every blob and
//! layer digest verified), and its manifest must be the one the buyer
//! named. Then the rootfs is unpacked, the container created with the
//! lease's CPU and memory, its EdgeX bridge opened in its network
//! namespace for exactly the lease's grants, and started.
//!
//! A failure after `Deploying` ends the lease (`DeployFailed`: the machine
//! sends it to `Terminating` with the reason, and the executor removes
//! what was made); the buyer is not charged for a container that never
//! ran: the meter starts at `Running`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use alloy_primitives::Address;

use super::backends::{self, Backend};
use super::executor::Executor;
use super::lease::{Lease, UnixTime};
use super::machine::Event;
use crate::board::BackendPolicy;
use crate::edgex::bridge::{self, Bridge, BridgeLimits, Serving};
use crate::edgex::catalogue::Catalogue;
use crate::edgex::client::Client;
use crate::edgex::grants::{Grants, grants_from_offer};
use crate::edgex::meter::Meter;
use crate::ipfs::fetch::Fetcher;
use crate::market::LeaseId;
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
const LOG_CAP: u64 = 1 << 20;

/// What the agent has to connect a container to EdgeX.
pub struct EdgexWiring {
    pub client: Arc<Client>,
    pub catalogue: Arc<RwLock<Catalogue>>,
    pub meter: Meter,
    pub limits: BridgeLimits,
}

impl EdgexWiring {
    /// The lease's bridge, served in the network namespace of `pid`.
    pub(crate) fn open_bridge(
        &self,
        lease: &Lease,
        grants: Grants,
        pid: i32,
    ) -> Result<Serving, String> {
        let b = Arc::new(Bridge::new(
            &lease.id.to_string(),
            grants,
            self.catalogue.clone(),
            self.client.clone(),
            self.meter.clone(),
            self.limits,
        ));
        let listener = crate::runtime::net::listen_in(pid, crate::edgex::bridge::PORT)
            .map_err(|e| format!("bridge socket: {e}"))?;
        Serving::open(listener, b).map_err(|e| format!("bridge: {e}"))
    }
}

pub struct Deployer<'a> {
    /// The lease book and the runtime, and what a failed deploy's
    /// teardown needs.
    pub exec: &'a Executor<'a>,
    pub fetcher: &'a Fetcher,
    pub images: &'a ImageStore,
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
pub fn teardown(
    runtime: &Runtime,
    lease: &LeaseId,
    grace: Duration,
) -> Result<(), crate::runtime::Error> {
    let id = container_id(lease);
    match runtime.get(&id) {
        Err(crate::runtime::Error::NoSuchContainer(_)) => return Ok(()),
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    runtime.kill(&id, grace)?;
    runtime.delete(&id)
}

/// The container id of a lease: short, unique enough, and a valid name.
pub fn container_id(lease: &LeaseId) -> String {
    format!("lease-{}", alloy_primitives::hex::encode(&lease.0[..8]))
}

impl Deployer<'_> {
    /// Deploys `lease` for `peer`, its buyer. A refusal before anything
    /// started (wrong image, refused backends, not ready) leaves the lease
    /// as it was; a failure once deploying ends the lease, container
    /// removed.
    pub fn deploy(
        &self,
        peer: Address,
        lease: LeaseId,
        image_cid: &str,
        manifest_digest: &str,
        backends: &[String],
        now: UnixTime,
    ) -> Result<Deployed, String> {
        let book = self.exec.book;
        let l = book.of_buyer(&lease, peer).map_err(|e| e.to_string())?;
        if image_cid != l.terms.image {
            return Err(format!(
                "image {image_cid} is not the one the offer names ({})",
                l.terms.image
            ));
        }
        let backends = backends::check(backends, self.backends)?;
        let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let l = book
            .apply(&lease, &Event::DeployStarted, now)
            .map_err(|e| e.to_string())?
            .lease;
        // Recorded once this deploy is the lease's, before its container
        // starts: a restart re-attaches them.
        let put = self.wiring.put(lease.0, &names).and_then(|()| {
            let code = backends::policy_code(self.backends);
            self.wiring.put(backends::policy_key(&lease.0), &code)
        });
        if let Err(e) = put {
            let _ = self
                .exec
                .feed(&lease, &Event::DeployFailed(e.to_string()), now);
            return Err(e.to_string());
        }
        let asked = std::time::Instant::now();
        match self.run(&l, manifest_digest, &backends) {
            Ok(d) => {
                // The meter starts now, not when the deploy was asked for:
                // fetching and unpacking are not the buyer's time.
                let started = now.plus(asked.elapsed().as_secs());
                if let Err(e) = book.apply(&lease, &Event::ContainerStarted, started) {
                    // Ended while it was being deployed: nothing may run
                    // for a lease that is ending.
                    drop(d);
                    if let Err(t) = teardown(self.exec.runtime, &lease, Duration::ZERO) {
                        log::error!("lease {lease}: {}", crate::logger::chain(&t));
                    }
                    return Err(format!("lease {lease} ended while deploying: {e}"));
                }
                log::info!("lease {lease} running as {}", d.container);
                Ok(d)
            }
            Err(why) => {
                let failed = Event::DeployFailed(why.clone());
                if let Err(e) = self.exec.feed(&lease, &failed, now) {
                    log::error!("lease {lease}: {}", crate::logger::chain(&e));
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
        let dest = self.incoming.join(l.id.to_string());
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
        let runtime = self.exec.runtime;
        let rootfs = runtime.prepare(&name).map_err(|e| e.to_string())?;
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
        let record = runtime
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
        runtime.start(&name).map_err(|e| e.to_string())?;
        Ok(Deployed {
            container: name,
            bridge,
            forwards,
        })
    }
}
