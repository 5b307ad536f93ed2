//! The seller agent as one object: the board's resources, the gateway's
//! key and chain, the lease book, the channel receiver, EdgeX, the image
//! store, the runtime and the IPFS fetcher, and the desks that use them.
//! `handle` answers a buyer's message; `tick` (every second) enforces
//! payments and settles terminating leases. `dedge agent` runs both.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use alloy_primitives::{Address, U256};

use super::admission::Policy;
use super::advert::Advertiser;
use super::backends;
use super::deploy::{Deployed, Deployer, EdgexWiring, container_id, teardown};
use super::enforce::{STOP_GRACE, enforce};
use super::lease::{LeaseBook, State};
use super::offers::OfferDesk;
use super::payment::owed;
use super::payments::PaymentDesk;
use super::settle::Settler;
use super::{Error, Result, endpoint};
use crate::board::BackendPolicy;
use crate::board::Board;
use crate::chain::tx::{TxPolicy, TxSender};
use crate::chain::{Deployment, Rpc, Signer};
use crate::channel::Receiver;
use crate::edgex::bridge::BridgeLimits;
use crate::edgex::catalogue::{Catalogue, Refresher};
use crate::edgex::client::Client;
use crate::edgex::meter::Meter;
use crate::ipfs::fetch::{Fetcher, Limits as FetchLimits};
use crate::market::Capabilities;
use crate::p2p::Body;
use crate::runtime::container::{Config, RecordStore, Runtime};
use crate::runtime::image::{ImageStore, Limits as ImageLimits, Platform};
use crate::store::{Store, Tree};
use crate::tcp_server::TcpServer;

/// Largest log chunk one `Logs` answer carries.
const LOG_CHUNK: usize = 64 << 10;

pub struct Agent {
    signer: Signer,
    rpc: Rpc,
    d: Deployment,
    store: Store,
    tx_policy: TxPolicy,
    pub book: LeaseBook,
    receiver: Receiver,
    policy: Policy,
    catalogue: Arc<RwLock<Catalogue>>,
    _refresher: Option<Refresher>,
    edgex: Option<EdgexWiring>,
    images: ImageStore,
    runtime: Runtime,
    fetcher: Fetcher,
    platform: Platform,
    data: PathBuf,
    grace: u64,
    /// Running leases' containers and bridges.
    running: Mutex<HashMap<[u8; 32], Deployed>>,
    /// Held while the gateway's transactions are sent: one nonce sequence,
    /// and a lease is wound down by one thread at a time.
    chain: Mutex<()>,
    /// What the board sells (devices from the EdgeX catalogue, if any).
    caps: Capabilities,
    advertiser: Mutex<Advertiser>,
    /// The board's backend policy, and each running lease's backends.
    backends: BackendPolicy,
    backend_names: Tree,
}

fn setup(what: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::Store(format!("{what}: {e}"))
}

impl Agent {
    /// Opens (or reopens) the agent's state under the board's data dir.
    pub fn open(
        board: &Board,
        signer: Signer,
        rpc: Rpc,
        d: Deployment,
        tx_policy: TxPolicy,
    ) -> Result<Agent> {
        let data = board.agent.data_dir.clone();
        let store = Store::open(&data.join("agent")).map_err(|e| setup("state")(e.to_string()))?;
        let book = LeaseBook::open(
            store
                .tree("leases")
                .map_err(|e| setup("leases")(e.to_string()))?,
        )?;
        let receiver = Receiver::new(store.clone(), d.chain_id, d.channels, signer.address())
            .map_err(|e| setup("channels")(e.to_string()))?;
        let runtime = Runtime::open(
            Config {
                dir: data.join("containers"),
                cgroup: board.board.cgroup,
                cgroup_parent: crate::runtime::cgroup::parent_for(
                    board.agent.cgroup_parent.relative(),
                    "agent",
                    &data,
                ),
                // A named parent is someone else's: never made here.
                cgroup_delegated: board.agent.cgroup_parent.delegated().map(String::from),
                die_with_parent: false,
            },
            RecordStore::sled(&store).map_err(|e| setup("containers")(e.to_string()))?,
        )
        .map_err(|e| setup("runtime")(e.to_string()))?;
        let images = ImageStore::open(&data.join("images"), &store, ImageLimits::default())
            .map_err(|e| setup("images")(e.to_string()))?;
        let fetcher = Fetcher::new(
            board
                .ipfs
                .gateways
                .iter()
                .map(|g| g.as_str().to_string())
                .collect(),
            &data.join("ipfs-cache"),
            FetchLimits {
                max_total: board.resources.disk.bytes(),
                ..FetchLimits::default()
            },
        );
        let (catalogue, refresher, edgex) = match &board.edgex {
            Some(e) => {
                let client =
                    Arc::new(Client::from_board(e).map_err(|e| setup("edgex")(e.to_string()))?);
                let refresher =
                    Refresher::start(client.clone(), e.devices.clone(), e.refresh.get());
                let catalogue = refresher.catalogue();
                let wiring = EdgexWiring {
                    client,
                    catalogue: catalogue.clone(),
                    meter: Meter::new(
                        store
                            .tree("edgex-usage")
                            .map_err(|e| setup("edgex usage")(e.to_string()))?,
                    ),
                    limits: BridgeLimits::from_board(e),
                };
                (catalogue, Some(refresher), Some(wiring))
            }
            None => (Arc::new(RwLock::new(Catalogue::default())), None, None),
        };
        let backend_names = store
            .tree("backends")
            .map_err(|e| setup("backends")(e.to_string()))?;
        let agent = Agent {
            policy: Policy::from_board(board, signer.address()),
            platform: Platform::of(board.board.arch),
            grace: board.pricing.grace.get().as_secs(),
            signer,
            rpc,
            d,
            store,
            tx_policy,
            book,
            receiver,
            catalogue,
            _refresher: refresher,
            edgex,
            images,
            runtime,
            fetcher,
            data,
            running: Mutex::new(HashMap::new()),
            chain: Mutex::new(()),
            caps: Capabilities::from_board(board),
            backends: board.agent.backends,
            backend_names,
            advertiser: Mutex::new(Advertiser::new(board.agent.public.to_string())),
        };
        agent.reattach();
        Ok(agent)
    }

    /// After a restart: running leases get their bridges back (the
    /// runtime re-attached their containers).
    fn reattach(&self) {
        for l in self.book.all().unwrap_or_default() {
            if !matches!(l.state, State::Running | State::Frozen) {
                continue;
            }
            let name = container_id(&l.id);
            let Ok(record) = self.runtime.get(&name) else {
                log::warn!("lease {}: its container is gone; terminating", l.id_hex());
                let _ = self.book.transition(
                    &l.id,
                    State::Terminating,
                    now(),
                    Some("container lost".into()),
                    |_| {},
                );
                continue;
            };
            let bridge = match (
                &self.edgex,
                crate::edgex::bridge::grants_from_offer(&l.terms.devices),
            ) {
                (Some(w), Ok(grants)) if !grants.is_empty() => w
                    .open_bridge(&l, grants, record.init.pid)
                    .map_err(|e| log::error!("lease {}: {e}", l.id_hex()))
                    .ok(),
                _ => None,
            };
            let forwards = reopen_backends(&self.backend_names, &l, self.backends, record.init.pid);
            self.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    l.id,
                    Deployed {
                        container: name,
                        bridge,
                        forwards,
                    },
                );
        }
    }

    pub fn address(&self) -> Address {
        self.signer.address()
    }

    fn seller(&self) -> Result<TxSender<'_>> {
        // The nonce tree opens every time: cheap, and no borrow to keep.
        let nonces = self
            .store
            .tree("nonces")
            .map_err(|e| Error::Store(e.to_string()))?;
        Ok(TxSender::new(
            &self.rpc,
            &self.signer,
            self.d.chain_id,
            nonces,
            self.tx_policy.clone(),
        ))
    }

    /// Serves buyers on `listener` until the returned server is dropped.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> TcpServer {
        let me = self.clone();
        endpoint::serve(
            listener,
            self.signer.clone(),
            self.d.chain_id,
            Arc::new(move |peer, body| me.handle(peer, body)),
        )
    }

    /// The answer to one message from `peer`.
    pub fn handle(&self, peer: Address, body: Body) -> Option<Body> {
        let now = now();
        let tx = match self.seller() {
            Ok(t) => t,
            Err(e) => {
                return Some(Body::Error {
                    message: e.to_string(),
                });
            }
        };
        let payments = PaymentDesk {
            book: &self.book,
            receiver: &self.receiver,
            rpc: &self.rpc,
            deployment: &self.d,
            gateway: self.signer.address(),
        };
        Some(match body {
            Body::Offer { terms, signature } => {
                let _chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
                OfferDesk {
                    book: &self.book,
                    policy: &self.policy,
                    catalogue: &self.catalogue,
                    rpc: &self.rpc,
                    deployment: &self.d,
                    seller: &tx,
                }
                .take(peer, &terms, &signature, now)
            }
            Body::ChannelProof { lease, channel } => {
                payments.channel_proof(peer, lease, channel, now)
            }
            Body::Payment {
                lease,
                channel,
                amount,
                signature,
            } => payments.payment(peer, lease, channel, amount, signature),
            Body::Deploy {
                lease,
                image_cid,
                manifest_digest,
                backends,
            } => {
                let deployer = Deployer {
                    book: &self.book,
                    fetcher: &self.fetcher,
                    images: &self.images,
                    runtime: &self.runtime,
                    platform: self.platform.clone(),
                    incoming: self.data.join("incoming"),
                    edgex: self.edgex.as_ref(),
                    backends: self.backends,
                    wiring: &self.backend_names,
                };
                match deployer.deploy(peer, lease, &image_cid, &manifest_digest, &backends, now) {
                    Ok(d) => {
                        self.running
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(lease, d);
                        self.status(peer, lease)
                    }
                    Err(message) => Body::Error { message },
                }
            }
            Body::Status { lease, .. } => self.status(peer, lease),
            Body::Account { lease, .. } => self.account(peer, lease),
            Body::Logs {
                lease,
                stream,
                offset,
                ..
            } => self.logs(peer, lease, stream, offset),
            Body::Terminate { lease, reason } => self.terminate(peer, lease, &reason),
            other => Body::Error {
                message: format!("a gateway does not take {}", other.name()),
            },
        })
    }

    /// The lease if `peer` is its buyer; otherwise the answer to give.
    fn own(
        &self,
        peer: Address,
        lease: &[u8; 32],
    ) -> std::result::Result<super::lease::Lease, String> {
        match self.book.get(lease) {
            Ok(Some(l)) if Address::from(l.terms.buyer) == peer => Ok(l),
            Ok(_) => Err("no such lease of yours".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn status(&self, peer: Address, lease: [u8; 32]) -> Body {
        match self.own(peer, &lease) {
            Ok(l) => Body::Status {
                lease,
                state: l.state.name().into(),
                detail: format!(
                    "paid {} of {} owed{}{}",
                    l.paid,
                    owed(&l, now()),
                    self.usage_text(&l.id_hex()),
                    l.reason.map(|r| format!("; {r}")).unwrap_or_default()
                ),
            },
            Err(message) => Body::Error { message },
        }
    }

    /// What the buyer's payer and invoice need, as numbers.
    fn account(&self, peer: Address, lease: [u8; 32]) -> Body {
        match self.own(peer, &lease) {
            Ok(l) => {
                // An ended lease's account stops when it began terminating.
                let now = match l.state {
                    State::Terminating | State::Settled => l
                        .history
                        .iter()
                        .rev()
                        .find(|(s, _)| *s == State::Terminating)
                        .map_or_else(now, |(_, t)| *t),
                    _ => now(),
                };
                let edgex = self
                    .edgex
                    .as_ref()
                    .and_then(|w| w.meter.usage(&l.id_hex()).ok())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(device, u)| crate::p2p::DeviceUse {
                        device,
                        reads: u.reads,
                        writes: u.writes,
                        bytes_in: u.bytes_in,
                        bytes_out: u.bytes_out,
                        refused: u.refused,
                    })
                    .collect();
                Body::Account {
                    lease,
                    paid: U256::from(l.paid).to_be_bytes(),
                    owed: U256::from(owed(&l, now)).to_be_bytes(),
                    ran: l.running_since.map_or(0, |s| {
                        now.saturating_sub(s).min(u64::from(l.terms.max_duration))
                    }),
                    edgex,
                }
            }
            Err(message) => Body::Error { message },
        }
    }

    /// The lease's EdgeX use, per device (what its invoice lists).
    fn usage(&self, lease_hex: &str) -> serde_json::Value {
        let Some(w) = &self.edgex else {
            return serde_json::json!({});
        };
        match w.meter.usage(lease_hex) {
            Ok(u) => serde_json::Value::Object(
                u.into_iter()
                    .map(|(device, u)| {
                        (
                            device,
                            serde_json::json!({"reads": u.reads, "writes": u.writes,
                                "bytes_in": u.bytes_in, "bytes_out": u.bytes_out,
                                "refused": u.refused}),
                        )
                    })
                    .collect(),
            ),
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }
    }

    fn usage_text(&self, lease_hex: &str) -> String {
        let Some(w) = &self.edgex else {
            return String::new();
        };
        let Ok(usage) = w.meter.usage(lease_hex) else {
            return String::new();
        };
        usage
            .iter()
            .filter(|(d, _)| d.as_str() != crate::edgex::meter::NO_DEVICE)
            .map(|(d, u)| format!("; {d}: {} reads, {} writes", u.reads, u.writes))
            .collect()
    }

    fn logs(&self, peer: Address, lease: [u8; 32], stream: u8, offset: u64) -> Body {
        if let Err(message) = self.own(peer, &lease) {
            return Body::Error { message };
        }
        let (out, err) = match self.runtime.logs(&container_id(&lease)) {
            Ok(l) => l,
            Err(e) => {
                return Body::Error {
                    message: format!("logs: {e}"),
                };
            }
        };
        let all = if stream == 2 { err } else { out };
        let from = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let to = all.len().min(from + LOG_CHUNK);
        Body::Logs {
            lease,
            stream,
            offset,
            data: all[from..to].to_vec(),
        }
    }

    fn terminate(&self, peer: Address, lease: [u8; 32], reason: &str) -> Body {
        let l = match self.own(peer, &lease) {
            Ok(l) => l,
            Err(message) => return Body::Error { message },
        };
        if !l.state.is_terminal() && l.state != State::Terminating {
            let why = format!("the buyer ended it: {reason}");
            if let Err(e) =
                self.book
                    .transition(&lease, State::Terminating, now(), Some(why), |_| {})
            {
                return Body::Error {
                    message: e.to_string(),
                };
            }
        }
        self.wind_down(&lease);
        self.status(peer, lease)
    }

    /// Tears a terminating lease's container down and takes one settle step.
    fn wind_down(&self, lease: &[u8; 32]) {
        let _chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(lease);
        if let Err(e) = teardown(&self.runtime, lease, STOP_GRACE) {
            log::error!("lease 0x{}: {e}", alloy_primitives::hex::encode(lease));
        }
        let tx = match self.seller() {
            Ok(t) => t,
            Err(e) => return log::error!("settling: {e}"),
        };
        let settler = Settler {
            book: &self.book,
            receiver: &self.receiver,
            rpc: &self.rpc,
            deployment: &self.d,
            seller: &tx,
        };
        if let Err(e) = settler.step(lease, now()) {
            log::warn!(
                "lease 0x{}: settling: {e}",
                alloy_primitives::hex::encode(lease)
            );
        }
    }

    /// Once a second: payments enforced, terminating leases wound down.
    pub fn tick(&self) {
        if let Err(e) = enforce(&self.book, &self.runtime, self.grace, now()) {
            log::error!("enforcement: {e}");
        }
        for l in self.book.all().unwrap_or_default() {
            if l.state == State::Terminating {
                self.wind_down(&l.id);
            }
        }
    }

    /// What `dedge agent status` shows: each lease, the resources held
    /// and free, and earnings (what leases have been paid).
    pub fn snapshot(&self) -> serde_json::Value {
        let now = now();
        let leases = self.book.all().unwrap_or_default();
        let held: Vec<_> = leases
            .iter()
            .filter(|l| l.state.holds_resources())
            .collect();
        let sum = |f: fn(&super::lease::Lease) -> u64| held.iter().map(|l| f(l)).sum::<u64>();
        let earned: u128 = leases.iter().map(|l| l.paid).sum();
        serde_json::json!({
            "gateway": self.signer.address(),
            "time": now,
            "resources": {
                "cpu_millicores": {"held": sum(|l| u64::from(l.terms.cpu_millicores)), "of": self.policy.cpu_millicores},
                "memory": {"held": sum(|l| l.terms.memory_bytes), "of": self.policy.memory},
                "disk": {"held": sum(|l| l.terms.disk_bytes), "of": self.policy.disk},
                "leases": {"held": held.len(), "of": self.policy.max_leases},
            },
            "earned": earned.to_string(),
            "leases": leases.iter().map(|l| serde_json::json!({
                "lease": l.id_hex(),
                "buyer": Address::from(l.terms.buyer),
                "state": l.state.name(),
                "since": l.since,
                "paid": l.paid.to_string(),
                "owed": owed(l, now).to_string(),
                "edgex": self.usage(&l.id_hex()),
                "reason": l.reason,
            })).collect::<Vec<_>>(),
        })
    }

    /// Writes the snapshot to `<data_dir>/agent-status.json` atomically
    /// (the state database is the running agent's alone).
    pub fn write_status(&self) {
        let path = self.data.join("agent-status.json");
        let tmp = self.data.join("agent-status.json.tmp");
        let text = self.snapshot().to_string();
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)) {
            log::warn!("{}: {e}", path.display());
        }
    }

    /// Keeps the gateway's advert live and true to what it sells
    /// (`advert`); each check at most every few minutes.
    pub fn keep_advertised(&self) {
        let mut caps = self.caps.clone();
        if self.edgex.is_some() {
            caps.devices = self
                .catalogue
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .offers();
        }
        let _chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let tx = match self.seller() {
            Ok(t) => t,
            Err(e) => return log::error!("advert: {e}"),
        };
        self.advertiser
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .step(&tx, &self.rpc, &self.d, &caps);
    }

    /// Runs `tick` every `every` until `stop` is set, and keeps the
    /// gateway advertised from a thread of its own (an advert transaction
    /// may wait minutes for its receipt; enforcement must not).
    pub fn run(&self, stop: &std::sync::atomic::AtomicBool, every: Duration) {
        std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    self.keep_advertised();
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
            self.tick_until(stop, every);
        });
    }

    fn tick_until(&self, stop: &std::sync::atomic::AtomicBool, every: Duration) {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            self.tick();
            self.write_status();
            std::thread::sleep(every);
        }
    }
}

/// A re-attached lease's backend ports, opened again (checked again: the
/// board may have changed; a refused or failed one is logged and left out).
fn reopen_backends(
    names: &Tree,
    l: &super::lease::Lease,
    policy: BackendPolicy,
    pid: i32,
) -> Vec<crate::runtime::net::Forward> {
    let requested: Vec<String> = names.get(l.id).ok().flatten().unwrap_or_default();
    match backends::check(&requested, policy).and_then(|b| backends::open(pid, &b)) {
        Ok(f) => f,
        Err(e) => {
            log::error!("lease {}: {e}", l.id_hex());
            Vec::new()
        }
    }
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
